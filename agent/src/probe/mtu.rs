//! Path-MTU probe: ICMP echoes of exact total sizes with don't-fragment set, from a RAW socket
//! made in the source's namespace. `IP_PMTUDISC_PROBE` (IPv6: `IPV6_PMTUDISC_PROBE` and
//! `IPV6_DONTFRAG`) makes the kernel set DF, never fragment, and ignore any path MTU it has
//! cached, so every size really leaves at that size. The search ([`search`]) tries a ladder of
//! sizes, capped at the route's MTU, then narrows the gap above the largest size that came
//! back to the exact byte. Packet building and parsing are in [`packet`].

mod packet;
mod search;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::result::{Burst, PathMtu, ProbeResult};
use netdiag_model::{IcmpFailure, MtuFailure, Outcome};
use socket2::{Protocol, SockAddr, Type};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use self::packet::Answer;
use self::search::Search;
use super::common::{self, IdentLease, SendErrno, SocketError};
use super::sockopt;
use crate::source::SourceNs;

/// Total IP packet sizes tried first: the IPv4 minimum every host accepts, the IPv6 minimum,
/// common tunnel MTUs (VXLAN 1450, IPIP 1480), Ethernet and jumbo frames.
pub const DEFAULT_LADDER: [u16; 7] = [576, 1280, 1400, 1450, 1480, 1500, 9000];

/// Echoes sent per size per round, so one lost echo does not fail a size.
const ATTEMPTS: u32 = 2;

/// For `fuzz/` only: what [`packet`] reads from the bytes a RAW socket received from `from`
/// while probing `target`. Not part of the agent's API.
#[doc(hidden)]
pub fn fuzz_parse_answer(bytes: &[u8], from: IpAddr, target: IpAddr) -> Option<impl std::fmt::Debug> {
    packet::parse(bytes, from, target)
}

/// Finds the largest IP packet that reaches `target` from `src` and comes back.
///
/// The ladder's sizes below the route's MTU (the kernel's `IP_MTU` toward the target: the
/// outgoing interface's MTU, or a route's `mtu` metric, or a path MTU the kernel learned from
/// an ICMP "fragmentation needed" in the last ten minutes, in which case `Ok` means "the
/// learned MTU holds"), and that MTU itself, go out together;
/// then up to four refining rounds narrow the gap above the largest size that came back, down
/// to the byte. `timeout` is how long each round waits for its echoes: a healthy path answers
/// in one round as soon as every echo is back, a black-holed size costs one `timeout` per round.
///
/// `Ok` when the route MTU itself comes back; `Mtu(Reduced)` when only smaller sizes do (the
/// largest one is `path_mtu`); `Icmp(Timeout)` when no size comes back; `Icmp(Unreachable)` on
/// ICMP errors or no route; `LocalError` when the kernel refuses to send (a local firewall
/// answers EPERM) or the socket cannot be made. `burst` counts every echo sent and answered;
/// there is no RTT (the ICMP probe measures that).
pub async fn path_mtu(src: &SourceNs, target: &Target, ladder: &[u16], timeout: Duration) -> ProbeResult {
    let r = |outcome, detail: &str| common::result(src.source(), target, ProbeKind::Mtu, outcome, detail);
    let Some(ip) = target.ip() else {
        let detail = format!("an mtu probe needs an address, and {target} has none");
        return common::finished(r(Outcome::LocalError, &detail));
    };
    let result = match Prober::start(src, ip).await {
        Err(e) => r(e.outcome(), &common::chain(&e)),
        Ok(mut prober) => {
            let found = prober.search(ladder, timeout).await;
            ProbeResult {
                burst: Burst::new(prober.sent, prober.received).ok(),
                path_mtu: found.path_mtu.and_then(|m| PathMtu::new(m.into()).ok()),
                ..r(found.outcome, &found.detail)
            }
        }
    };
    common::finished(result)
}

/// Why the probe could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("all 65536 ICMP identifiers are held by this agent's live pingers")]
    IdentifiersExhausted,
    #[error("no route from the source to {ip}")]
    NoRoute {
        ip: IpAddr,
        #[source]
        error: io::Error,
    },
    #[error("cannot read the route MTU toward {ip} (getsockopt IP_MTU)")]
    RouteMtu {
        ip: IpAddr,
        #[source]
        error: io::Error,
    },
    #[error("cannot prepare the ICMP socket ({step})")]
    Prepare {
        step: &'static str,
        #[source]
        error: io::Error,
    },
}

impl StartError {
    fn outcome(&self) -> Outcome {
        match self {
            StartError::Socket(e) => e.outcome(),
            StartError::NoRoute { error, .. } if SendErrno::of(error) == SendErrno::Unreachable => {
                Outcome::Icmp(IcmpFailure::Unreachable)
            }
            _ => Outcome::LocalError,
        }
    }
}

/// What became of one size in one round.
#[derive(Debug)]
enum SizeAnswer {
    Passed,
    /// An ICMP error came back; `mtu` for "fragmentation needed" / "packet too big".
    Error {
        from: IpAddr,
        words: &'static str,
        mtu: Option<u32>,
    },
    Lost,
    NotSent(io::Error),
}

/// The search's conclusion.
#[derive(Debug)]
struct Found {
    outcome: Outcome,
    path_mtu: Option<u16>,
    detail: String,
}

/// One MTU probe's socket and counters.
struct Prober {
    socket: UdpSocket,
    ip: IpAddr,
    ident: IdentLease,
    route_mtu: u16,
    next_seq: u16,
    sent: u32,
    received: u32,
}

impl Prober {
    async fn start(src: &SourceNs, ip: IpAddr) -> Result<Self, StartError> {
        let ident = IdentLease::take().ok_or(StartError::IdentifiersExhausted)?;
        let domain = common::domain_of(ip);
        let udp = common::socket(src, domain, Type::DGRAM, Protocol::UDP, "UDP").await?;
        // Connecting a UDP socket only looks the route up; nothing is sent.
        udp.connect(&SockAddr::from(SocketAddr::new(ip, 9)))
            .map_err(|error| StartError::NoRoute { ip, error })?;
        let (level, name) = if ip.is_ipv6() {
            (libc::IPPROTO_IPV6, libc::IPV6_MTU)
        } else {
            (libc::IPPROTO_IP, libc::IP_MTU)
        };
        let route_mtu =
            sockopt::get_int(&udp, level, name).map_err(|error| StartError::RouteMtu { ip, error })?;
        let route_mtu = u16::try_from(route_mtu).unwrap_or(u16::MAX);

        let protocol = if ip.is_ipv6() { Protocol::ICMPV6 } else { Protocol::ICMPV4 };
        let raw = common::socket(src, domain, Type::RAW, protocol, "RAW ICMP").await?;
        let prepare = |step| move |error| StartError::Prepare { step, error };
        if ip.is_ipv6() {
            sockopt::set_int(&raw, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, libc::IPV6_PMTUDISC_PROBE)
                .map_err(prepare("IPV6_MTU_DISCOVER probe"))?;
            sockopt::set_int(&raw, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)
                .map_err(prepare("IPV6_DONTFRAG"))?;
        } else {
            sockopt::set_int(&raw, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_PROBE)
                .map_err(prepare("IP_MTU_DISCOVER probe"))?;
        }
        raw.set_nonblocking(true).map_err(prepare("non-blocking mode"))?;
        let socket = UdpSocket::from_std(raw.into()).map_err(prepare("registering with the runtime"))?;
        tracing::debug!(%ip, route_mtu, ident = ident.get(), "mtu probe ready");
        Ok(Self { socket, ip, ident, route_mtu, next_seq: fastrand::u16(..), sent: 0, received: 0 })
    }

    async fn search(&mut self, ladder: &[u16], timeout: Duration) -> Found {
        let (ip, route_mtu) = (self.ip, self.route_mtu);
        // PathMtu's floor is IPv4's minimum MTU; smaller sizes say nothing useful.
        let min = packet::overhead(ip.is_ipv6()).max(68);
        let mut search = Search::default();
        let mut sizes = search::first_round(ladder, min, route_mtu);
        let smallest = sizes.first().copied().unwrap_or(route_mtu);
        // What the smallest failing size above the best met, per size.
        let mut fates: HashMap<u16, String> = HashMap::new();
        let mut unreachable: Option<String> = None;
        let mut not_sent: Option<io::Error> = None;
        for _ in 0..=search::MAX_REFINE_ROUNDS {
            let answers = self.round(&sizes, timeout).await;
            for (size, answer) in sizes.iter().copied().zip(answers) {
                tracing::debug!(%ip, size, ?answer, "mtu echo");
                search.record(size, matches!(answer, SizeAnswer::Passed));
                match answer {
                    SizeAnswer::Passed | SizeAnswer::Lost => {}
                    SizeAnswer::Error { from, words, mtu: Some(m) } => {
                        search.hint(u16::try_from(m).unwrap_or(u16::MAX));
                        fates.insert(size, format!("were refused by {from}: ICMP {words}, next-hop MTU {m}"));
                    }
                    SizeAnswer::Error { from, words, mtu: None } => {
                        fates.insert(size, format!("met ICMP {words} from {from}"));
                        unreachable.get_or_insert(format!("ICMP {words} from {from}"));
                    }
                    SizeAnswer::NotSent(e) => {
                        fates.insert(size, format!("could not be sent: {}", common::errno_words(&e)));
                        not_sent.get_or_insert(e);
                    }
                }
            }
            if search.best().is_none() {
                break;
            }
            sizes = search.next_round();
            if sizes.is_empty() {
                break;
            }
        }
        let Some(best) = search.best() else {
            let (outcome, why) = match (&unreachable, &not_sent) {
                (Some(u), _) => (Outcome::Icmp(IcmpFailure::Unreachable), u.clone()),
                (None, Some(e)) if SendErrno::of(e) == SendErrno::Unreachable => {
                    (Outcome::Icmp(IcmpFailure::Unreachable), common::errno_words(e))
                }
                (None, Some(e)) => (Outcome::LocalError, format!("not sent: {}", common::errno_words(e))),
                (None, None) => (
                    Outcome::Icmp(IcmpFailure::Timeout),
                    format!("no echo reply within {}", common::human(timeout)),
                ),
            };
            let detail = format!(
                "no echo of any size from {smallest} to {route_mtu} bytes came back from {ip} with \
                 don't-fragment set: {why}"
            );
            return Found { outcome, path_mtu: None, detail };
        };
        if best >= route_mtu {
            let detail = format!(
                "{best}-byte echoes with don't-fragment set come back from {ip}: the path carries the \
                 route MTU ({route_mtu})"
            );
            return Found { outcome: Outcome::Ok, path_mtu: Some(best), detail };
        }
        let above = search.smallest_failed_above_best().unwrap_or(route_mtu);
        let fate = fates
            .get(&above)
            .cloned()
            .unwrap_or_else(|| "vanished without an ICMP error (a path-MTU black hole)".to_owned());
        let exact = if above == best.saturating_add(1) { String::new() } else { " (or larger)".to_owned() };
        let detail = format!(
            "path MTU to {ip} is {best} bytes{exact}, below the route MTU {route_mtu}: {above}-byte echoes {fate}"
        );
        Found { outcome: Outcome::Mtu(MtuFailure::Reduced), path_mtu: Some(best), detail }
    }

    /// Sends [`ATTEMPTS`] echoes of each size, then collects answers until every echo is
    /// accounted for or `timeout` has passed. A reply for any attempt passes the size.
    async fn round(&mut self, sizes: &[u16], timeout: Duration) -> Vec<SizeAnswer> {
        let (ip, v6, ident) = (self.ip, self.ip.is_ipv6(), self.ident.get());
        let mut answers: Vec<Option<SizeAnswer>> = sizes.iter().map(|_| None).collect();
        // seq → index of its size in `sizes`.
        let mut outstanding: HashMap<u16, usize> = HashMap::new();
        for (i, size) in sizes.iter().copied().enumerate() {
            for _ in 0..ATTEMPTS {
                let seq = self.next_seq;
                self.next_seq = seq.wrapping_add(1);
                let Some(echo) = packet::echo_request(v6, ident, seq, size) else { break };
                match self.socket.send_to(&echo, SocketAddr::new(ip, 0)).await {
                    Ok(_) => {
                        self.sent += 1;
                        outstanding.insert(seq, i);
                    }
                    Err(e) => {
                        answers[i].get_or_insert(SizeAnswer::NotSent(e));
                        break;
                    }
                }
            }
        }
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_536];
        while !outstanding.is_empty() {
            let (n, from) = match tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await {
                Err(_) => break,
                Ok(Ok(got)) => got,
                Ok(Err(e)) => {
                    tracing::debug!(%ip, error = %e, "mtu probe: receive failed");
                    break;
                }
            };
            match packet::parse(&buf[..n], from.ip(), ip) {
                Some(Answer::Reply { ident: id, seq }) if id == ident => {
                    if let Some(i) = outstanding.remove(&seq) {
                        self.received += 1;
                        answers[i] = Some(SizeAnswer::Passed);
                    }
                }
                Some(Answer::Error { ident: id, seq, from, ty, code, mtu }) if id == ident => {
                    if let Some(i) = outstanding.remove(&seq) {
                        let words = common::icmp_error_words(v6, ty, code);
                        answers[i].get_or_insert(SizeAnswer::Error { from, words, mtu });
                    }
                }
                _ => {}
            }
        }
        answers.into_iter().map(|a| a.unwrap_or(SizeAnswer::Lost)).collect()
    }
}
