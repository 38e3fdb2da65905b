//! DNS probe: a name resolved from inside the source's network namespace, classified by what
//! the nameservers said.
//!
//! Two ways, chosen by the target's `nameserver`:
//!
//! * **None — as the pod resolves it** (`dns/pod.rs`): the pod's own resolv.conf (never the
//!   agent's, NOTES.md trap 2), its nameservers, search list, ndots, timeout and attempts, walked
//!   in glibc's order (`dns/glibc.rs`); each query goes through hickory-resolver, one resolver per
//!   nameserver, whose sockets are made inside the pod's namespace (`dns/provider.rs`, trap 1).
//! * **Some(ip) — that one server** (`dns/direct.rs`): our own message over one socket from the
//!   source's namespace, the name as given made absolute, so the result is that server's exact
//!   rcode and round trip.
//!
//! The target's `transport`: `udp` is what the resolver does by itself (UDP, TCP when an answer
//! is truncated); `tcp` is TCP only, like resolv.conf's `options use-vc`.
//!
//! Outcomes: NXDOMAIN → `Dns(NxDomain)`, NOERROR without a record of the type →
//! `Dns(NoRecords)`, SERVFAIL → `Dns(ServFail)` (also for FORMERR, NOTIMP and other error
//! rcodes, named in the detail), REFUSED → `Dns(Refused)`, every nameserver silent →
//! `Dns(Timeout)`, every nameserver refused or unreachable (ICMP unreachable, TCP RST, no
//! route), or none configured → `Dns(NoNameserver)`. The RTT is the time the application waits
//! for its answer (the whole search walk; a direct query's own round trip), absent when nothing
//! answered; `nameserver` is the server that gave the deciding answer.
//!
//! Nothing here panics, whatever the input; every result passes `ProbeResult::check`.

mod direct;
mod glibc;
mod pod;
mod provider;
#[cfg(test)]
mod tests;
mod wire;

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use netdiag_model::dns::{DnsName, DnsTransport, RecordType};
use netdiag_model::limits::{MAX_DNS_ANSWERS, MAX_RTT};
use netdiag_model::outcome::{DnsFailure, Outcome};
use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::result::ProbeResult;
use tokio::time::Instant;

use self::glibc::{Answer, Reply};
use self::provider::SocketLog;
pub use self::provider::TracedSocket;
use super::common::{chain, finished, rtt};
use crate::source::SourceNs;

/// How long past its timeout a probe may take to build its verdict before the outer timeout
/// cuts it off (the inner code keeps to the deadline; this is the guarantee).
const GRACE: Duration = Duration::from_millis(250);

/// Resolves `target` (a [`Target::Dns`]) from `src` within `timeout`.
///
/// A target that is not a DNS target cannot make a valid DNS result; it gets a `LocalError`
/// of the one kind that accepts any non-DNS target (`icmp`), saying so in the detail.
pub async fn resolve(src: &SourceNs, target: &Target, timeout: Duration) -> ProbeResult {
    resolve_traced(src, target, timeout).await.0
}

/// Like [`resolve`], with every socket the probe made and the network namespace it lives in
/// (`SO_NETNS_COOKIE`): the proof that the queries left from the source's namespace.
pub async fn resolve_traced(
    src: &SourceNs,
    target: &Target,
    timeout: Duration,
) -> (ProbeResult, Vec<TracedSocket>) {
    let Target::Dns { name, record, nameserver, transport } = target else {
        let detail =
            format!("a dns probe needs a dns target, and {target} is a {} target", target.type_name());
        let result =
            ProbeResult { kind: ProbeKind::Icmp, ..skeleton(src, target, Outcome::LocalError, &detail) };
        return (finished(result), Vec::new());
    };
    let timeout = timeout.min(MAX_RTT);
    let log = SocketLog::default();
    let deadline = Instant::now() + timeout;
    let query = Query { name, record: *record, transport: *transport };
    let work = async {
        match nameserver {
            Some(ip) => direct_verdict(src, &log, &query, *ip, deadline).await,
            None => pod::resolve(src, &log, &query, deadline).await,
        }
    };
    let verdict = match tokio::time::timeout(timeout + GRACE, work).await {
        Ok(v) => v,
        Err(_) => Verdict::failed(
            Outcome::Dns(DnsFailure::Timeout),
            format!("no answer within the probe's timeout of {timeout:?}"),
        ),
    };
    let result = verdict.into_result(src, target);
    (finished(result), log.sockets())
}

/// What a probe asks.
#[derive(Debug, Clone, Copy)]
struct Query<'a> {
    name: &'a DnsName,
    record: RecordType,
    transport: DnsTransport,
}

/// Why a probe could not run: the agent's problem, not the network's.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The source's namespace worker is gone (the pod was deleted).
    Gone(String),
    Local(String),
}

impl Failure {
    fn into_verdict(self) -> Verdict {
        match self {
            Failure::Gone(why) => Verdict::failed(Outcome::SourceGone, why),
            Failure::Local(why) => Verdict::failed(Outcome::LocalError, why),
        }
    }
}

/// A probe's conclusion, before it becomes a [`ProbeResult`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    outcome: Outcome,
    rtt: Option<Duration>,
    answers: Vec<IpAddr>,
    nameserver: Option<IpAddr>,
    detail: String,
}

impl Verdict {
    fn failed(outcome: Outcome, detail: String) -> Self {
        Self { outcome, rtt: None, answers: Vec::new(), nameserver: None, detail }
    }

    /// The verdict on an answer: its rcode and addresses decide; `rtt` is what the
    /// application waited.
    fn answered(a: &Answer, rtt: Duration, detail: String) -> Self {
        let outcome = outcome_of(a);
        let answers = if outcome.is_ok() { a.ips.clone() } else { Vec::new() };
        Self { outcome, rtt: Some(rtt), answers, nameserver: Some(a.server), detail }
    }

    fn into_result(self, src: &SourceNs, target: &Target) -> ProbeResult {
        let mut detail = self.detail;
        let mut answers = self.answers;
        if answers.len() > MAX_DNS_ANSWERS {
            detail.push_str(&format!(" ({} addresses, the first {MAX_DNS_ANSWERS} kept)", answers.len()));
            answers.truncate(MAX_DNS_ANSWERS);
        }
        ProbeResult {
            rtt: self.rtt.and_then(rtt),
            answers,
            nameserver: self.nameserver,
            ..skeleton(src, target, self.outcome, &detail)
        }
    }
}

/// The outcome an answer stands for.
fn outcome_of(a: &Answer) -> Outcome {
    match a.rcode {
        ResponseCode::NoError if !a.ips.is_empty() => Outcome::Ok,
        ResponseCode::NoError => Outcome::Dns(DnsFailure::NoRecords),
        ResponseCode::NXDomain => Outcome::Dns(DnsFailure::NxDomain),
        ResponseCode::Refused => Outcome::Dns(DnsFailure::Refused),
        // SERVFAIL, and the error rcodes the model has no word for (FORMERR, NOTIMP, …): the
        // nameserver could not answer; the detail names the rcode.
        _ => Outcome::Dns(DnsFailure::ServFail),
    }
}

/// One answer in words: `NXDOMAIN`, `NOERROR, 3 addresses`, `NOERROR, no A record`.
fn answer_words(a: &Answer, record: RecordType) -> String {
    match (a.rcode, a.ips.len()) {
        (ResponseCode::NoError, 0) => format!("NOERROR, no {record} record"),
        (ResponseCode::NoError, 1) => format!("NOERROR, {}", a.ips[0]),
        (ResponseCode::NoError, n) => format!("NOERROR, {n} addresses"),
        (rcode, _) => rcode_name(rcode),
    }
}

/// An rcode the way dig prints it: `NXDOMAIN`, `SERVFAIL`, `RCODE24`.
fn rcode_name(rcode: ResponseCode) -> String {
    use ResponseCode::*;
    let name = match rcode {
        NoError => "NOERROR",
        FormErr => "FORMERR",
        ServFail => "SERVFAIL",
        NXDomain => "NXDOMAIN",
        NotImp => "NOTIMP",
        Refused => "REFUSED",
        YXDomain => "YXDOMAIN",
        YXRRSet => "YXRRSET",
        NXRRSet => "NXRRSET",
        NotAuth => "NOTAUTH",
        NotZone => "NOTZONE",
        BADVERS => "BADVERS",
        BADSIG => "BADSIG",
        BADKEY => "BADKEY",
        BADTIME => "BADTIME",
        BADMODE => "BADMODE",
        BADNAME => "BADNAME",
        BADALG => "BADALG",
        BADTRUNC => "BADTRUNC",
        BADCOOKIE => "BADCOOKIE",
        Unknown(_) => return format!("RCODE{}", u16::from(rcode)),
    };
    name.to_owned()
}

/// Words for an errno that says a nameserver cannot be reached; None for errors that are the
/// agent's own.
fn unreachable_words(errno: Option<i32>) -> Option<&'static str> {
    Some(match errno? {
        libc::ECONNREFUSED => "refused (ICMP port unreachable or TCP RST): nothing listens on port 53",
        libc::ECONNRESET => "connection reset by the nameserver or a firewall",
        libc::EHOSTUNREACH => "host unreachable (ICMP, or no neighbour answered)",
        libc::ENETUNREACH => "network unreachable: no route from the source",
        libc::ENETDOWN => "network down",
        libc::EADDRNOTAVAIL => "no local address can reach it",
        libc::EPERM | libc::EACCES => "a local firewall rule (OUTPUT chain) rejected the packet",
        _ => return None,
    })
}

/// Asks one nameserver directly and turns its reply into a verdict.
async fn direct_verdict(
    src: &SourceNs,
    log: &SocketLog,
    q: &Query<'_>,
    server: IpAddr,
    deadline: Instant,
) -> Verdict {
    let started = Instant::now();
    let name = match wire::absolute(q.name.as_str()) {
        Ok(n) => n,
        Err(why) => return Verdict::failed(Outcome::LocalError, why),
    };
    let asked = match direct::ask(src, log, server, &name, wire::qtype(q.record), q.transport, deadline).await
    {
        Ok(a) => a,
        Err(f) => return f.into_verdict(),
    };
    let via =
        if asked.retried_over_tcp { "udp (truncated), then tcp".to_owned() } else { q.transport.to_string() };
    let asked_for = format!("{} {name} @{server}/{via}", q.record);
    match asked.reply {
        Reply::Answer(a) => {
            let detail = format!("{asked_for}: {} in {:?}", answer_words(&a, q.record), a.rtt);
            Verdict::answered(&a, a.rtt, detail)
        }
        Reply::Silent => Verdict::failed(
            Outcome::Dns(DnsFailure::Timeout),
            format!("{asked_for}: no answer in {:?}", started.elapsed()),
        ),
        Reply::Garbled(why) => Verdict::failed(
            Outcome::Dns(DnsFailure::ServFail),
            format!("{asked_for}: no usable answer: {why}"),
        ),
        Reply::Unreachable(why) => {
            Verdict::failed(Outcome::Dns(DnsFailure::NoNameserver), format!("{asked_for}: {why}"))
        }
    }
}

/// A result with the fields every DNS probe sets.
fn skeleton(src: &SourceNs, target: &Target, outcome: Outcome, detail: &str) -> ProbeResult {
    super::common::result(src.source(), target, ProbeKind::Dns, outcome, detail)
}
