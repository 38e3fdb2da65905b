//! glibc's stub resolver as pure decisions, no I/O: which nameserver to ask for how long
//! ([`schedule`], glibc's `res_send`), when an answer ends the asking ([`Asking`]), and how the
//! answers for the search-list candidates add up to one result ([`Walk`], glibc's
//! `res_search`). The probe feeds them what the network said; the tests feed them tables.

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;

use crate::resolv_conf::{Candidate, ResolvOptions};

/// What one nameserver did with one query in one try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    Answer(Answer),
    /// Nothing before the try's time was up.
    Silent,
    /// Something came back that is not an answer (undecodable, truncated twice, …); glibc
    /// drops such datagrams and keeps waiting, so it counts as silence.
    Garbled(String),
    /// Refused (ICMP port unreachable, TCP RST) or unreachable (no route, ICMP host
    /// unreachable, a local firewall): the nameserver cannot be reached at all.
    Unreachable(String),
}

/// A DNS answer from one nameserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub(super) server: IpAddr,
    pub(super) rcode: ResponseCode,
    /// Addresses of the asked type, in answer order.
    pub(super) ips: Vec<IpAddr>,
    pub(super) rtt: Duration,
}

/// The verdict for one candidate name, in glibc's terms (`h_errno` and the answer's rcode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NameResult {
    /// NOERROR with addresses.
    Found(Answer),
    /// HOST_NOT_FOUND.
    NxDomain(Answer),
    /// NO_DATA: the name exists, no record of the type.
    NoData(Answer),
    /// TRY_AGAIN after SERVFAIL from every nameserver that answered.
    ServFail(Answer),
    /// TRY_AGAIN after REFUSED.
    Refused(Answer),
    /// NO_RECOVERY: FORMERR, NOTIMP or another error rcode.
    OtherRcode(Answer),
    /// TRY_AGAIN: at least one nameserver stayed silent and none answered.
    Timeout,
    /// Every nameserver refused or was unreachable (glibc's ECONNREFUSED); the reasons.
    NoNameserver(Vec<String>),
}

impl NameResult {
    /// Whether the search list goes on after this result (glibc: NO_DATA, HOST_NOT_FOUND and
    /// SERVFAIL do; anything else ends it).
    fn search_goes_on(&self) -> bool {
        matches!(self, NameResult::NxDomain(_) | NameResult::NoData(_) | NameResult::ServFail(_))
    }
}

/// glibc's wait for server `index` of `count`, every round: `timeout` for the first,
/// `(timeout << index) / count` for the others, at least a second (`res_send.c`, `send_dg`).
pub(super) fn server_wait(timeout_secs: u8, index: usize, count: usize) -> Duration {
    let retrans = u64::from(timeout_secs);
    let secs = if index == 0 {
        retrans
    } else {
        let shift = u32::try_from(index).unwrap_or(u32::MAX);
        retrans.checked_shl(shift).unwrap_or(u64::MAX) / u64::try_from(count.max(1)).unwrap_or(1)
    };
    Duration::from_secs(secs.max(1))
}

/// The tries of one query, `(server index, wait)`, in glibc's order: `attempts` rounds over
/// the nameservers starting at `first` (0, or a random one under `options rotate`); one round
/// under `use-vc` (glibc tries each server once over TCP). glibc with `attempts:0` sends
/// nothing at all; a probe that sends nothing says nothing, so we send one round.
pub(super) fn schedule(count: usize, options: &ResolvOptions, first: usize) -> Vec<(usize, Duration)> {
    if count == 0 {
        return Vec::new();
    }
    let rounds = if options.use_vc { 1 } else { usize::from(options.attempts.max(1)) };
    let mut out = Vec::with_capacity(rounds * count);
    for _ in 0..rounds {
        for shift in 0..count {
            let index = (first + shift) % count;
            out.push((index, server_wait(options.timeout_secs, index, count)));
        }
    }
    out
}

/// glibc's asking of the nameservers for one name (`__res_context_send`): SERVFAIL, REFUSED
/// and NOTIMP move on to the next server; any other answer ends it; silence and refusal move
/// on, remembered for the verdict.
#[derive(Debug, Default)]
pub(super) struct Asking {
    /// The last answer that made glibc move on: it stays in glibc's answer buffer and decides
    /// between SERVFAIL and the rest.
    moved_on_from: Option<Answer>,
    silent: bool,
    unreachable: Vec<String>,
}

impl Asking {
    /// Takes one try's reply; `Some` when the asking is over for this name.
    pub(super) fn record(&mut self, reply: Reply) -> Option<NameResult> {
        match reply {
            Reply::Answer(a) => match a.rcode {
                ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp => {
                    self.moved_on_from = Some(a);
                    None
                }
                ResponseCode::NoError if !a.ips.is_empty() => Some(NameResult::Found(a)),
                ResponseCode::NoError => Some(NameResult::NoData(a)),
                ResponseCode::NXDomain => Some(NameResult::NxDomain(a)),
                _ => Some(NameResult::OtherRcode(a)),
            },
            Reply::Silent | Reply::Garbled(_) => {
                self.silent = true;
                None
            }
            Reply::Unreachable(why) => {
                if !self.unreachable.contains(&why) {
                    self.unreachable.push(why);
                }
                None
            }
        }
    }

    /// The verdict once every try is used up.
    pub(super) fn finish(self) -> NameResult {
        match self.moved_on_from {
            Some(a) if a.rcode == ResponseCode::ServFail => NameResult::ServFail(a),
            Some(a) if a.rcode == ResponseCode::Refused => NameResult::Refused(a),
            Some(a) => NameResult::OtherRcode(a),
            None if self.silent => NameResult::Timeout,
            None => NameResult::NoNameserver(self.unreachable),
        }
    }
}

/// glibc's walk over the search-list candidates (`__res_context_search`).
#[derive(Debug)]
pub(super) struct Walk {
    order: Vec<Candidate>,
    next: usize,
    /// Set by a result that ends the search list; the trailing as-is try still happens.
    search_over: bool,
    /// The result of the as-is name tried first (glibc's `saved_herrno`): it is the verdict
    /// if nothing is found.
    as_is_first: Option<Named>,
    nodata: Option<Named>,
    servfail: Option<Named>,
    last: Option<Named>,
}

/// A result and the name it is for.
pub(super) type Named = (String, NameResult);

impl Walk {
    pub(super) fn new(order: Vec<Candidate>) -> Self {
        Self {
            order,
            next: 0,
            search_over: false,
            as_is_first: None,
            nodata: None,
            servfail: None,
            last: None,
        }
    }

    /// The next name to ask for.
    pub(super) fn next_name(&mut self) -> Option<String> {
        while let Some(c) = self.order.get(self.next) {
            self.next += 1;
            if c.as_is || !self.search_over {
                return Some(c.name.clone());
            }
        }
        None
    }

    /// Takes the result for the name last returned by [`Walk::next_name`]; `Some` when the
    /// walk is over: a name was found, or the name was absolute.
    pub(super) fn record(&mut self, result: NameResult) -> Option<Named> {
        let index = self.next.checked_sub(1);
        let Some(current) = index.and_then(|i| self.order.get(i)) else {
            return Some((String::new(), result));
        };
        let named = (current.name.clone(), result);
        if matches!(named.1, NameResult::Found(_)) || self.order.len() == 1 {
            return Some(named);
        }
        if current.as_is && index == Some(0) {
            self.as_is_first = Some(named.clone());
        } else if !current.as_is {
            // glibc only counts them; we keep the first, to name it.
            match &named.1 {
                NameResult::NoData(_) if self.nodata.is_none() => self.nodata = Some(named.clone()),
                NameResult::ServFail(_) if self.servfail.is_none() => self.servfail = Some(named.clone()),
                _ => {}
            }
            if !named.1.search_goes_on() {
                self.search_over = true;
            }
        }
        self.last = Some(named);
        None
    }

    /// glibc's final `h_errno` once no candidate is left: the as-is result if it was tried
    /// first, else NO_DATA if any search name had it, else SERVFAIL if any had it, else the
    /// last result; with the name it is for. None when no name was asked at all.
    pub(super) fn conclude(self) -> Option<Named> {
        self.as_is_first.or(self.nodata).or(self.servfail).or(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolv_conf::parse;

    fn answer(rcode: ResponseCode, ips: &[&str]) -> Answer {
        Answer {
            server: "10.96.0.10".parse().unwrap(),
            rcode,
            ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            rtt: Duration::from_millis(1),
        }
    }

    #[test]
    fn waits_follow_send_dg() {
        let secs = |t, i, n| server_wait(t, i, n).as_secs();
        assert_eq!((secs(5, 0, 1), secs(5, 0, 3), secs(5, 1, 3), secs(5, 2, 3)), (5, 5, 3, 6));
        assert_eq!((secs(5, 1, 2), secs(1, 1, 3), secs(0, 0, 1)), (5, 1, 1), "never below a second");
        assert_eq!(secs(30, 2, 3), 40);
    }

    #[test]
    fn schedule_rounds_over_servers() {
        let o = parse("options attempts:2 timeout:2\n").options;
        let order: Vec<usize> = schedule(3, &o, 0).into_iter().map(|(i, _)| i).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
        let rotated: Vec<usize> = schedule(3, &o, 2).into_iter().map(|(i, _)| i).collect();
        assert_eq!(rotated, [2, 0, 1, 2, 0, 1]);
        assert_eq!(schedule(2, &parse("options use-vc attempts:5\n").options, 0).len(), 2);
        assert_eq!(schedule(1, &parse("options attempts:0\n").options, 0).len(), 1);
        assert!(schedule(0, &o, 0).is_empty());
    }

    #[test]
    fn asking_moves_on_like_res_send() {
        use ResponseCode::*;
        let cases: Vec<(Vec<Reply>, &str)> = vec![
            (vec![Reply::Answer(answer(NoError, &["10.96.0.20"]))], "found"),
            (vec![Reply::Answer(answer(NoError, &[]))], "nodata"),
            (vec![Reply::Answer(answer(NXDomain, &[]))], "nxdomain"),
            (vec![Reply::Answer(answer(FormErr, &[]))], "other"),
            (vec![Reply::Answer(answer(ServFail, &[])), Reply::Silent], "servfail"),
            (vec![Reply::Silent, Reply::Answer(answer(Refused, &[]))], "refused"),
            (vec![Reply::Answer(answer(NotImp, &[]))], "other"),
            (vec![Reply::Silent, Reply::Unreachable("refused".into())], "timeout"),
            (vec![Reply::Garbled("junk".into())], "timeout"),
            (vec![Reply::Unreachable("a".into()), Reply::Unreachable("a".into())], "nonameserver"),
        ];
        for (replies, want) in cases {
            let mut asking = Asking::default();
            let mut verdict = None;
            for r in replies.clone() {
                if let Some(v) = asking.record(r) {
                    verdict = Some(v);
                    break;
                }
            }
            let verdict = verdict.unwrap_or_else(|| asking.finish());
            let got = match &verdict {
                NameResult::Found(_) => "found",
                NameResult::NoData(_) => "nodata",
                NameResult::NxDomain(_) => "nxdomain",
                NameResult::ServFail(_) => "servfail",
                NameResult::Refused(_) => "refused",
                NameResult::OtherRcode(_) => "other",
                NameResult::Timeout => "timeout",
                NameResult::NoNameserver(why) => {
                    assert_eq!(why, &["a".to_owned()], "reasons are kept once");
                    "nonameserver"
                }
            };
            assert_eq!(got, want, "{replies:?}");
        }
    }

    /// Walks the candidates of `name` under `conf`, answering each from `results` in order;
    /// returns the names asked and the verdict.
    fn walk(conf: &str, name: &str, results: &[NameResult]) -> (Vec<String>, NameResult) {
        let (asked, (_, verdict)) = walk_named(conf, name, results);
        (asked, verdict)
    }

    fn walk_named(conf: &str, name: &str, results: &[NameResult]) -> (Vec<String>, Named) {
        let conf = parse(conf);
        let order = crate::resolv_conf::search_order(&name.parse().unwrap(), &conf);
        let mut w = Walk::new(order);
        let mut asked = Vec::new();
        let mut results = results.iter().cloned();
        while let Some(n) = w.next_name() {
            asked.push(n);
            let r = results.next().expect("a result for every name asked");
            if let Some(done) = w.record(r) {
                return (asked, done);
            }
        }
        (asked, w.conclude().expect("something was asked"))
    }

    const POD: &str = "search tidb.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n";

    #[test]
    fn walk_follows_res_search() {
        let nx = || NameResult::NxDomain(answer(ResponseCode::NXDomain, &[]));
        let nodata = || NameResult::NoData(answer(ResponseCode::NoError, &[]));
        let found = || NameResult::Found(answer(ResponseCode::NoError, &["10.96.0.20"]));
        let servfail = || NameResult::ServFail(answer(ResponseCode::ServFail, &[]));

        let (asked, v) = walk(POD, "demo-pd", &[found()]);
        assert_eq!((asked.len(), v), (1, found()), "first search domain answers");

        let (asked, v) = walk(POD, "nope", &[nx(), nx(), nx(), nx()]);
        assert_eq!((asked.len(), v), (4, nx()), "all four names, NXDOMAIN");

        let (asked, v) = walk(POD, "demo-pd", &[nodata(), nx(), nx(), nx()]);
        assert_eq!((asked.len(), v), (4, nodata()), "NO_DATA from a search name beats a later NXDOMAIN");

        let (asked, v) = walk(POD, "demo-pd", &[servfail(), nx(), nx(), nx()]);
        assert_eq!((asked.len(), v), (4, servfail()), "SERVFAIL goes on, and is the verdict");

        let (asked, v) = walk(POD, "demo-pd", &[NameResult::Timeout, NameResult::Timeout]);
        assert_eq!(asked, ["demo-pd.tidb.svc.cluster.local.", "demo-pd."], "a timeout ends the search list");
        assert_eq!(v, NameResult::Timeout);

        let (asked, v) = walk("search corp.example\n", "a.b", &[nodata(), nx()]);
        assert_eq!(asked, ["a.b.", "a.b.corp.example."], "as-is first with enough dots");
        assert_eq!(v, nodata(), "the as-is result is the verdict");

        let (asked, v) = walk(POD, "demo-pd.tidb.svc.cluster.local.", &[nx()]);
        assert_eq!((asked.len(), v), (1, nx()), "absolute: one name");

        let (_, v) = walk("search a.example\n", "h", &[nx(), found()]);
        assert_eq!(v, found(), "the trailing as-is try can still find it");

        let (_, (name, v)) = walk_named(POD, "demo-pd", &[servfail(), servfail(), nx(), servfail()]);
        assert_eq!(
            (name.as_str(), v),
            ("demo-pd.tidb.svc.cluster.local.", servfail()),
            "the verdict names its name"
        );
    }
}
