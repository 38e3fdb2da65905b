//! A name resolved the way the pod's own processes resolve it: the pod's resolv.conf, glibc's
//! search walk and nameserver order ([`super::glibc`]), each single query sent by
//! hickory-resolver through sockets made inside the pod's namespace ([`super::provider`]).
//!
//! Why one hickory resolver per nameserver rather than one for all: hickory's pool shares one
//! timeout among all nameservers (a silent first server starves the second), does not move on
//! after SERVFAIL or REFUSED as glibc does, and folds refused connections into
//! `NoConnections`; its search-list walk returns the last name's error where glibc returns
//! NO_DATA if any name had it. So the walk, the order and the per-server waits are glibc's,
//! done here; hickory does each query (UDP with its retransmissions, TCP when truncated or
//! under `use-vc`, answer validation, CNAME chains), with no cache and no hosts file.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::{Name, RecordType};
use hickory_resolver::Resolver;
use hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts, ServerOrderingStrategy,
};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::{DnsError, NetError};
use netdiag_model::dns::DnsTransport;
use netdiag_model::outcome::{DnsFailure, Outcome};
use tokio::time::Instant;
use tracing::debug;

use super::glibc::{Answer, Asking, NameResult, Reply, Walk, schedule};
use super::provider::{Event, NsProvider, SocketLog, What, serve};
use super::{Failure, Query, Verdict, answer_words, rcode_name, unreachable_words, wire};
use crate::resolv_conf::{self, ResolvConf, Scope};
use crate::source::SourceNs;

/// Queries listed in a result's detail; later ones are counted.
const MAX_TRAIL: usize = 12;
const PORT: u16 = 53;

/// Resolves `q` as the source's own resolver would, until `deadline`.
pub(super) async fn resolve(src: &SourceNs, log: &SocketLog, q: &Query<'_>, deadline: Instant) -> Verdict {
    let started = Instant::now();
    let (path, conf) = match load(src).await {
        Ok(loaded) => loaded,
        Err(f) => return f.into_verdict(),
    };
    if conf.nameservers.is_empty() {
        return Verdict::failed(
            Outcome::Dns(DnsFailure::NoNameserver),
            format!("{} lists no nameserver (glibc would then ask 127.0.0.1)", path.display()),
        );
    }
    let scopes = scope_ids(src, &conf).await;
    let (provider, orders) = NsProvider::new(log.clone(), scopes);
    let tcp_only = conf.options.use_vc || q.transport == DnsTransport::Tcp;
    let first = if conf.options.rotate { fastrand::usize(..conf.nameservers.len()) } else { 0 };
    let plan = schedule(conf.nameservers.len(), &conf.options, first);
    let longest = plan.iter().map(|(_, wait)| *wait).max().unwrap_or_default();
    let budget = deadline.saturating_duration_since(started);
    let mut resolvers = Vec::with_capacity(conf.nameservers.len());
    for ns in &conf.nameservers {
        match resolver(ns.ip, &conf, tcp_only, longest.min(budget), provider.clone()) {
            Ok(r) => resolvers.push(r),
            Err(why) => return Verdict::failed(Outcome::LocalError, why),
        }
    }
    drop(provider);
    let walk = Walking { conf: &conf, path: &path, q, log, resolvers, plan, started, deadline, tcp_only };
    let work = walk.run();
    tokio::pin!(work);
    tokio::select! {
        verdict = &mut work => verdict,
        // Ends only when every resolver is gone, i.e. never before the walk; if it did, the
        // walk still finishes (with sockets refused).
        () = serve(src, log, orders) => work.await,
    }
}

/// The path of the source's resolv.conf: the pod's own, or `/etc/resolv.conf` only for the
/// agent's own namespace (a pod's is never the agent's: setns does not change the mount
/// namespace).
pub(super) fn conf_path(src: &SourceNs) -> Result<PathBuf, Failure> {
    match (src.resolv_conf(), src.netns_path()) {
        (Some(path), _) => Ok(path.to_path_buf()),
        (None, None) => Ok(PathBuf::from("/etc/resolv.conf")),
        (None, Some(netns)) => Err(Failure::Local(format!(
            "the resolv.conf of {} is unknown (its namespace is {}; the agent's own /etc/resolv.conf \
             says nothing about it): give the source its pod's resolv.conf",
            src.source(),
            netns.display()
        ))),
    }
}

async fn load(src: &SourceNs) -> Result<(PathBuf, ResolvConf), Failure> {
    let path = conf_path(src)?;
    let reading = path.clone();
    match tokio::task::spawn_blocking(move || resolv_conf::read(&reading)).await {
        Ok(Ok(conf)) => Ok((path, conf)),
        Ok(Err(e)) => Err(Failure::Local(super::chain(&e))),
        Err(e) => Err(Failure::Local(format!("reading {} did not finish: {e}", path.display()))),
    }
}

/// Scope ids for scoped IPv6 nameservers; interface names are looked up inside the source's
/// namespace. A scope that cannot be resolved is left out, as glibc ignores it.
async fn scope_ids(src: &SourceNs, conf: &ResolvConf) -> HashMap<IpAddr, u32> {
    let mut ids = HashMap::new();
    let mut names = Vec::new();
    for ns in &conf.nameservers {
        match &ns.scope {
            Some(Scope::Index(i)) => {
                ids.insert(ns.ip, *i);
            }
            Some(Scope::Interface(name)) => names.push((ns.ip, name.clone())),
            None => {}
        }
    }
    if names.is_empty() {
        return ids;
    }
    let table = src
        .run(|| std::fs::read_to_string(Path::new("/proc/thread-self/net/if_inet6")).unwrap_or_default())
        .await
        .unwrap_or_default();
    for (ip, name) in names {
        match ifindex(&table, &name) {
            Some(index) => {
                ids.insert(ip, index);
            }
            None => {
                debug!(%ip, interface = %name, "nameserver scope names no interface in the source's namespace")
            }
        }
    }
    ids
}

/// The index of interface `name` in `/proc/net/if_inet6` text (address, index in hex, prefix
/// length, scope, flags, name).
pub(super) fn ifindex(if_inet6: &str, name: &str) -> Option<u32> {
    if_inet6.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, index, _, _, _, ifname] if *ifname == name => u32::from_str_radix(index, 16).ok(),
            _ => None,
        }
    })
}

/// A hickory resolver for one nameserver: no cache, no hosts file, no search list (every name
/// is absolute), no retries of its own (the glibc schedule retries).
fn resolver(
    ip: IpAddr,
    conf: &ResolvConf,
    tcp_only: bool,
    wait: Duration,
    provider: NsProvider,
) -> Result<Resolver<NsProvider>, String> {
    let server = if tcp_only { NameServerConfig::tcp(ip) } else { NameServerConfig::udp_and_tcp(ip) };
    let mut opts = ResolverOpts::default();
    opts.timeout = wait.max(Duration::from_millis(1));
    opts.attempts = 0;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.num_concurrent_reqs = 1;
    opts.server_ordering_strategy = ServerOrderingStrategy::UserProvidedOrder;
    opts.edns0 = conf.options.edns0;
    opts.ndots = 0;
    opts.case_randomization = false;
    opts.recursion_desired = true;
    Resolver::builder_with_config(ResolverConfig::from_parts(None, Vec::new(), vec![server]), provider)
        .with_options(opts)
        .build()
        .map_err(|e| format!("cannot build a resolver for nameserver {ip}: {e}"))
}

/// One walk over the search list and the nameservers.
struct Walking<'a> {
    conf: &'a ResolvConf,
    path: &'a Path,
    q: &'a Query<'a>,
    log: &'a SocketLog,
    resolvers: Vec<Resolver<NsProvider>>,
    plan: Vec<(usize, Duration)>,
    started: Instant,
    deadline: Instant,
    tcp_only: bool,
}

impl Walking<'_> {
    async fn run(self) -> Verdict {
        let rtype = wire::qtype(self.q.record);
        let mut walk = Walk::new(resolv_conf::search_order(self.q.name, self.conf));
        let mut trail = Trail::default();
        while let Some(candidate) = walk.next_name() {
            let name = match wire::absolute(&candidate) {
                Ok(n) => n,
                Err(why) => return Verdict::failed(Outcome::LocalError, why),
            };
            let mut asking = Asking::default();
            let mut decided = None;
            for &(index, wait) in &self.plan {
                let left = self.deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return self.cut(&trail);
                }
                let Some((resolver, ns)) = self.resolvers.get(index).zip(self.conf.nameservers.get(index))
                else {
                    continue;
                };
                let server = SocketAddr::new(ns.ip, PORT);
                let reply = match self.ask(resolver, server, &name, rtype, wait.min(left)).await {
                    Ok(r) => r,
                    Err(f) => return f.into_verdict(),
                };
                trail.push(&candidate, self.q, server, &reply);
                let clipped = wait > left;
                if clipped && matches!(reply, Reply::Silent | Reply::Garbled(_)) {
                    return self.cut(&trail);
                }
                if let Some(result) = asking.record(reply) {
                    decided = Some(result);
                    break;
                }
            }
            let result = decided.unwrap_or_else(|| asking.finish());
            if let Some((name, done)) = walk.record(result) {
                return self.verdict(done, &name, &trail);
            }
        }
        match walk.conclude() {
            Some((name, result)) => self.verdict(result, &name, &trail),
            None => Verdict::failed(
                Outcome::LocalError,
                format!("no name to ask for {} under {}", self.q.name, self.path.display()),
            ),
        }
    }

    /// One try at one nameserver, read through the socket log.
    async fn ask(
        &self,
        resolver: &Resolver<NsProvider>,
        server: SocketAddr,
        name: &Name,
        rtype: RecordType,
        wait: Duration,
    ) -> Result<Reply, Failure> {
        let mark = self.log.mark();
        let sent = Instant::now();
        let result = tokio::time::timeout(wait, resolver.lookup(name.clone(), rtype)).await.ok();
        let rtt = sent.elapsed();
        let reply = reply_of(result, rtype, server, rtt, &self.log.since(mark));
        debug!(%name, %rtype, %server, ?reply, "DNS query");
        reply
    }

    /// The probe's time ran out mid-walk: the application would still be waiting.
    fn cut(&self, trail: &Trail) -> Verdict {
        let waited = self.started.elapsed();
        Verdict::failed(
            Outcome::Dns(DnsFailure::Timeout),
            format!("{}: no answer within {waited:?}; {}", self.summary(), trail.words()),
        )
    }

    fn summary(&self) -> String {
        let ns: Vec<String> = self.conf.nameservers.iter().map(ToString::to_string).collect();
        let search: Vec<&str> = self.conf.search.iter().map(|d| d.as_str()).collect();
        format!(
            "{} {} as {} resolves it (nameservers {}, search [{}], ndots {}{})",
            self.q.record,
            self.q.name,
            self.path.display(),
            ns.join(" "),
            search.join(" "),
            self.conf.options.ndots,
            if self.tcp_only { ", tcp" } else { "" },
        )
    }

    fn verdict(&self, result: NameResult, name: &str, trail: &Trail) -> Verdict {
        let waited = self.started.elapsed();
        let summary = self.summary();
        let answered = |a: &Answer, what: &str| {
            let detail =
                format!("{summary}: {what} for {name} from {} after {waited:?}; {}", a.server, trail.words());
            Verdict::answered(a, waited, detail)
        };
        match result {
            NameResult::Found(a) => answered(&a, &answer_words(&a, self.q.record)),
            NameResult::NxDomain(a) => answered(&a, "NXDOMAIN"),
            NameResult::NoData(a) => answered(&a, &format!("no {} record", self.q.record)),
            NameResult::ServFail(a) => answered(&a, "SERVFAIL"),
            NameResult::Refused(a) => answered(&a, "REFUSED"),
            NameResult::OtherRcode(a) => {
                answered(&a, &format!("{} (the nameserver could not answer)", rcode_name(a.rcode)))
            }
            NameResult::Timeout => Verdict::failed(
                Outcome::Dns(DnsFailure::Timeout),
                format!("{summary}: no nameserver answered; {}", trail.words()),
            ),
            NameResult::NoNameserver(why) => Verdict::failed(
                Outcome::Dns(DnsFailure::NoNameserver),
                format!("{summary}: no nameserver reachable: {}", why.join("; ")),
            ),
        }
    }
}

/// What one hickory lookup at one nameserver amounts to. `result` is None when the try's wait
/// ran out; `events` are the socket events during the try, which say what hickory's errors
/// hide (a refused port reads as `NoConnections` there).
pub(super) fn reply_of(
    result: Option<Result<Lookup, NetError>>,
    rtype: RecordType,
    server: SocketAddr,
    rtt: Duration,
    events: &[Event],
) -> Result<Reply, Failure> {
    for e in events {
        if let What::NotMade { gone, error } = &e.what {
            return Err(if *gone { Failure::Gone(error.clone()) } else { Failure::Local(error.clone()) });
        }
    }
    let answer = |rcode, ips| Ok(Reply::Answer(Answer { server: server.ip(), rcode, ips, rtt }));
    let error = match result {
        None => return Ok(Reply::Silent),
        Some(Ok(lookup)) => {
            return answer(
                hickory_proto::op::ResponseCode::NoError,
                wire::addresses(lookup.answers(), rtype),
            );
        }
        Some(Err(e)) => e,
    };
    match &error {
        NetError::Dns(DnsError::NoRecordsFound(no)) => return answer(no.response_code, Vec::new()),
        NetError::Dns(DnsError::ResponseCode(rcode)) => return answer(*rcode, Vec::new()),
        NetError::Timeout => return Ok(Reply::Silent),
        _ => {}
    }
    // What the sockets saw during this try: the last error, unless an answer came after it.
    let last_failure =
        events.iter().rev().take_while(|e| e.what != What::Received).find_map(|e| match &e.what {
            What::Failed { errno, error } => Some((e.transport, *errno, error.clone())),
            _ => None,
        });
    let io_errno = match &error {
        NetError::Io(io) => io.raw_os_error(),
        _ => None,
    };
    match last_failure {
        Some((transport, errno, text)) => match unreachable_words(errno) {
            Some(words) => Ok(Reply::Unreachable(format!("{server}/{transport}: {words}"))),
            None => Err(Failure::Local(format!("talking to {server}/{transport} failed: {text}"))),
        },
        None => match (unreachable_words(io_errno), &error) {
            (Some(words), _) => Ok(Reply::Unreachable(format!("{server}: {words}"))),
            (None, NetError::NoConnections) => Ok(Reply::Silent),
            (None, other) => Ok(Reply::Garbled(format!("{server}: {other}"))),
        },
    }
}

/// The queries of one probe, for its detail.
#[derive(Debug, Default)]
struct Trail {
    lines: Vec<String>,
    more: usize,
}

impl Trail {
    fn push(&mut self, name: &str, q: &Query<'_>, server: SocketAddr, reply: &Reply) {
        if self.lines.len() >= MAX_TRAIL {
            self.more += 1;
            return;
        }
        let what = match reply {
            Reply::Answer(a) => format!("{} in {:?}", answer_words(a, q.record), a.rtt),
            Reply::Silent => "no answer".to_owned(),
            Reply::Garbled(why) => format!("no usable answer ({why})"),
            Reply::Unreachable(why) => why.clone(),
        };
        self.lines.push(format!("{name} @{}: {what}", server.ip()));
    }

    fn words(&self) -> String {
        let mut out = format!("asked: {}", self.lines.join(", "));
        if self.more > 0 {
            out.push_str(&format!(" and {} more", self.more));
        }
        out
    }
}
