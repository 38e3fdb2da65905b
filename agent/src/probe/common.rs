//! What the ICMP, TCP, HTTP and MTU probes share: sockets born in the source's namespace,
//! process-wide unique ICMP identifiers, RTTs that admit being below the clock's resolution,
//! the result skeleton, and the errno vocabulary of a failed send.

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::result::{Detail, ProbeResult, Rtt};
use netdiag_model::{Outcome, Source, UnixMillis};
use socket2::{Domain, Protocol, Socket, Type};

use crate::source::{SourceError, SourceNs};

/// Why a socket could not be had inside a source's namespace.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SocketError {
    #[error("the probe source's namespace worker is gone")]
    Source(#[source] SourceError),
    #[error("cannot create a {what} socket in the probe source's namespace")]
    Create {
        what: &'static str,
        #[source]
        error: io::Error,
    },
}

impl SocketError {
    /// A vanished source is `SourceGone`; a socket the kernel refused is the agent's problem.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            SocketError::Source(_) => Outcome::SourceGone,
            SocketError::Create { .. } => Outcome::LocalError,
        }
    }
}

/// A socket created on the thread parked in `src`'s namespace (asynchronously: the worker may
/// be busy with someone else's job; usually taken from the source's reserve). The socket keeps
/// that namespace for life.
pub(crate) async fn socket(
    src: &SourceNs,
    domain: Domain,
    ty: Type,
    protocol: Protocol,
    what: &'static str,
) -> Result<Socket, SocketError> {
    src.probe_socket(domain, ty, protocol)
        .await
        .map_err(SocketError::Source)?
        .map_err(|error| SocketError::Create { what, error })
}

pub(crate) fn domain_of(ip: std::net::IpAddr) -> Domain {
    if ip.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 }
}

/// A measured duration as an [`Rtt`]: whole microseconds rounded up, and a lower bound when
/// the clock saw less than a microsecond (tiny RTTs read as 0 on a veth). None only for
/// durations beyond the model's 1-hour cap.
pub(crate) fn rtt(d: Duration) -> Option<Rtt> {
    if d < Duration::from_micros(1) {
        return Rtt::from_micros(1, true).ok();
    }
    Rtt::from_duration(d, false).ok()
}

/// A duration the way people read timeouts and waits: `850µs`, `401ms`, `12.5s`.
pub(crate) fn human(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{}µs", d.as_micros())
    } else if d < Duration::from_secs(10) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The wall clock as the model's instant (a clock before 1970 reads as the first millisecond
/// rather than failing the probe).
pub(crate) fn now() -> UnixMillis {
    UnixMillis::saturating_from_system_time(SystemTime::now())
}

/// A result with only the common fields set; probes fill in their own with struct update.
pub(crate) fn result(
    source: &Source,
    target: &Target,
    kind: ProbeKind,
    outcome: Outcome,
    detail: &str,
) -> ProbeResult {
    ProbeResult {
        source: source.clone(),
        target: target.clone(),
        kind,
        outcome,
        rtt: None,
        at: now(),
        detail: Detail::lossy(detail),
        burst: None,
        http_status: None,
        path_mtu: None,
        answers: vec![],
        nameserver: None,
    }
}

/// Logs a finished probe at DEBUG with the fields a span would carry, and returns it.
pub(crate) fn finished(r: ProbeResult) -> ProbeResult {
    tracing::debug!(
        source = %r.source,
        target = %r.target,
        kind = r.kind.as_str(),
        outcome = r.outcome.as_str(),
        rtt_us = r.rtt.map(|t| t.as_micros()),
        detail = r.detail.as_str(),
        "probe finished"
    );
    r
}

pub(crate) use netdiag_model::error_chain as chain;

/// What a failed send (or connect) says about the network, by errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendErrno {
    /// EHOSTUNREACH / ENETUNREACH: no route, or the neighbour never answered.
    Unreachable,
    /// EPERM / EACCES: a local firewall rule (OUTPUT chain) rejected the packet.
    LocalFirewall,
    /// EMSGSIZE: larger than the outgoing interface's MTU with don't-fragment set.
    TooBig,
    /// Anything else: the agent's problem, not the network's.
    Other,
}

impl SendErrno {
    pub(crate) fn of(e: &io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::EHOSTUNREACH | libc::ENETUNREACH) => SendErrno::Unreachable,
            Some(libc::EPERM | libc::EACCES) => SendErrno::LocalFirewall,
            Some(libc::EMSGSIZE) => SendErrno::TooBig,
            _ => SendErrno::Other,
        }
    }
}

/// Words for an errno the way a network engineer reads it.
pub(crate) fn errno_words(e: &io::Error) -> String {
    match SendErrno::of(e) {
        SendErrno::LocalFirewall => {
            format!("a local firewall rule (OUTPUT chain) rejected the packet ({e})")
        }
        SendErrno::Unreachable => format!("no route to the target ({e})"),
        SendErrno::TooBig => format!("larger than the outgoing interface MTU ({e})"),
        SendErrno::Other => e.to_string(),
    }
}

/// What an ICMP (v4) or ICMPv6 error message says, in the words of RFC 792 / RFC 4443.
pub(crate) fn icmp_error_words(v6: bool, ty: u8, code: u8) -> &'static str {
    match (v6, ty, code) {
        (false, 3, 0) => "network unreachable",
        (false, 3, 1) => "host unreachable",
        (false, 3, 2) => "protocol unreachable",
        (false, 3, 3) => "port unreachable",
        (false, 3, 4) => "fragmentation needed and DF set",
        (false, 3, 9 | 10 | 13) => "communication administratively prohibited",
        (false, 3, _) => "destination unreachable",
        (false, 11, _) => "time exceeded (TTL expired in transit: a routing loop?)",
        (false, 12, _) => "parameter problem",
        (true, 1, 0) => "no route to destination",
        (true, 1, 1) => "communication administratively prohibited",
        (true, 1, 3) => "address unreachable",
        (true, 1, 4) => "port unreachable",
        (true, 1, 5 | 6) => "source address failed policy",
        (true, 1, _) => "destination unreachable",
        (true, 2, _) => "packet too big",
        (true, 3, _) => "time exceeded (hop limit reached in transit: a routing loop?)",
        (true, 4, _) => "parameter problem",
        _ => "unexpected ICMP message",
    }
}

/// ICMP echo identifiers in use by this process, so that no two live pingers or MTU probes
/// share one: every RAW ICMP socket in a namespace sees every echo reply, and the identifier
/// is how each tells its own apart.
#[derive(Debug)]
pub(crate) struct IdentPool {
    used: Vec<u64>,
    next: u16,
}

impl IdentPool {
    pub(crate) fn new(start: u16) -> Self {
        Self { used: vec![0; 65_536 / 64], next: start }
    }

    /// The next free identifier at or after the cursor, or None when all 65536 are taken.
    pub(crate) fn take(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX {
            let id = self.next;
            self.next = self.next.wrapping_add(1);
            let (word, bit) = (usize::from(id / 64), id % 64);
            if self.used[word] & (1 << bit) == 0 {
                self.used[word] |= 1 << bit;
                return Some(id);
            }
        }
        None
    }

    pub(crate) fn release(&mut self, id: u16) {
        let (word, bit) = (usize::from(id / 64), id % 64);
        self.used[word] &= !(1 << bit);
    }
}

static IDENTS: Mutex<Option<IdentPool>> = Mutex::new(None);

/// An ICMP identifier held until drop.
#[derive(Debug)]
pub(crate) struct IdentLease(u16);

impl IdentLease {
    /// Takes a free identifier; None when 65536 pingers are alive at once.
    pub(crate) fn take() -> Option<Self> {
        let mut pool = IDENTS.lock().unwrap_or_else(PoisonError::into_inner);
        // Start at a random point so two agent processes (or an old one) rarely overlap.
        pool.get_or_insert_with(|| IdentPool::new(fastrand::u16(..))).take().map(IdentLease)
    }

    pub(crate) fn get(&self) -> u16 {
        self.0
    }
}

impl Drop for IdentLease {
    fn drop(&mut self) {
        let mut pool = IDENTS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pool.as_mut() {
            pool.release(self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ident_pool_never_hands_out_a_live_identifier_twice() {
        let mut pool = IdentPool::new(u16::MAX - 1);
        assert_eq!(pool.take(), Some(u16::MAX - 1));
        assert_eq!(pool.take(), Some(u16::MAX));
        assert_eq!(pool.take(), Some(0), "the cursor wraps");
        pool.release(u16::MAX);
        let mut seen = std::collections::BTreeSet::from([u16::MAX - 1, 0]);
        for _ in 0..65_534 {
            let id = pool.take().unwrap();
            assert!(seen.insert(id), "{id} handed out twice");
        }
        assert_eq!(pool.take(), None, "all 65536 taken");
        pool.release(7);
        assert_eq!(pool.take(), Some(7));
    }

    #[test]
    fn leases_are_unique_while_alive() {
        let a = IdentLease::take().unwrap();
        let b = IdentLease::take().unwrap();
        assert_ne!(a.get(), b.get());
    }

    #[test]
    fn tiny_rtts_are_lower_bounds() {
        let zero = rtt(Duration::ZERO).unwrap();
        assert_eq!((zero.as_micros(), zero.is_lower_bound()), (1, true));
        let small = rtt(Duration::from_nanos(1500)).unwrap();
        assert_eq!((small.as_micros(), small.is_lower_bound()), (2, false));
        assert_eq!(rtt(Duration::from_secs(7200)), None);
    }

    #[test]
    fn errnos_read_as_network_words() {
        let cases = [
            (libc::EHOSTUNREACH, SendErrno::Unreachable),
            (libc::ENETUNREACH, SendErrno::Unreachable),
            (libc::EPERM, SendErrno::LocalFirewall),
            (libc::EACCES, SendErrno::LocalFirewall),
            (libc::EMSGSIZE, SendErrno::TooBig),
            (libc::ENOBUFS, SendErrno::Other),
        ];
        for (errno, want) in cases {
            assert_eq!(SendErrno::of(&io::Error::from_raw_os_error(errno)), want, "{errno}");
        }
        assert!(errno_words(&io::Error::from_raw_os_error(libc::EPERM)).contains("local firewall"));
    }

    #[test]
    fn icmp_errors_have_names() {
        assert_eq!(icmp_error_words(false, 3, 1), "host unreachable");
        assert_eq!(icmp_error_words(false, 3, 13), "communication administratively prohibited");
        assert_eq!(icmp_error_words(true, 1, 3), "address unreachable");
        assert_eq!(icmp_error_words(true, 2, 0), "packet too big");
        assert_eq!(icmp_error_words(false, 0, 0), "unexpected ICMP message");
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(Duration::from_micros(850)), "850µs");
        assert_eq!(human(Duration::from_nanos(400_937_114)), "400ms");
        assert_eq!(human(Duration::from_millis(12_500)), "12.5s");
    }

    #[test]
    fn now_is_a_real_instant() {
        assert!(now().get() > 1_600_000_000_000);
    }
}
