//! ICMP probe: echo bursts from inside a source's namespace, over surge-ping clients whose RAW
//! sockets were created there ([`Pinger`]). RAW, not DGRAM: Linux rewrites the identifier of
//! DGRAM ping sockets, so concurrent pings to one host collide; each pinger holds an
//! identifier no other live pinger (or MTU probe) of this process has.

mod burst;

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use netdiag_model::limits::MAX_BURST;
use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::result::ProbeResult;
use netdiag_model::{Outcome, Source};
use socket2::Type;
use surge_ping::{Client, Config, ICMP, IcmpPacket, PingIdentifier, PingSequence, SurgeError};

use self::burst::Echo;
use super::common::{self, IdentLease};
use crate::source::{SourceError, SourceNs};

/// Time between two echo requests of one burst.
pub const BURST_SPACING: Duration = Duration::from_millis(5);

/// The largest echo payload: a 65535-byte IPv4 packet less its IP and ICMP headers.
pub const MAX_PAYLOAD: usize = 65_535 - 20 - 8;

/// Why a [`Pinger`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PingerError {
    #[error("all 65536 ICMP identifiers are held by this agent's live pingers")]
    IdentifiersExhausted,
    #[error("a pinger must be created from inside a tokio runtime")]
    NoRuntime,
    #[error("the probe source's namespace worker is gone")]
    Source(#[source] SourceError),
    #[error("cannot open a RAW ICMP socket in the probe source's namespace (the agent needs CAP_NET_RAW)")]
    Socket(#[source] io::Error),
    #[error(
        "the kernel refused a RAW ICMP socket and surge-ping fell back to a DGRAM ping socket, \
         whose identifiers Linux rewrites (the agent needs CAP_NET_RAW)"
    )]
    NotRaw,
}

/// A source's ICMP echo clients (IPv4 and, when the namespace has it, IPv6), created inside
/// its namespace, with one identifier for all its echoes. Cheap to share by reference:
/// concurrent [`Pinger::ping`] calls use distinct sequence numbers.
pub struct Pinger {
    source: Source,
    v4: Client,
    /// The IPv6 client, or why there is none (IPv6 disabled in the namespace).
    v6: Result<Client, String>,
    ident: IdentLease,
    next_seq: AtomicU16,
}

impl fmt::Debug for Pinger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pinger")
            .field("source", &self.source)
            .field("ident", &self.ident.get())
            .field("v6", &self.v6.as_ref().map(|_| "raw socket"))
            .finish_non_exhaustive()
    }
}

fn raw_client(kind: ICMP) -> io::Result<Client> {
    let client = Client::new(&Config::builder().kind(kind).sock_type_hint(Type::RAW).build())?;
    if kind == ICMP::V4 && client.get_socket().get_type() == Type::RAW {
        only_answers(&client.get_socket())?;
    }
    Ok(client)
}

/// ICMP types a pinger needs to see: echo reply and the errors that can answer an echo
/// (destination unreachable, time exceeded, parameter problem).
const ANSWER_TYPES: [u8; 4] = [0, 3, 11, 12];

/// Lets only [`ANSWER_TYPES`] reach the RAW socket (`ICMP_FILTER`): a RAW socket gets a copy
/// of every ICMP packet its namespace receives, so without it each pod's pinger is woken by
/// every echo request other pods send to that pod.
fn only_answers(socket: &surge_ping::AsyncSocket) -> io::Result<()> {
    /// `ICMP_FILTER` of `<linux/icmp.h>` (a SOL_RAW option): a set bit drops that type.
    const ICMP_FILTER: libc::c_int = 1;
    let pass = ANSWER_TYPES.iter().fold(0u32, |m, t| m | 1 << t);
    // The option is a 32-bit mask, handed over with the bits of an int.
    super::sockopt::set_int(
        &SocketFd(socket.get_native_sock()),
        libc::SOL_RAW,
        ICMP_FILTER,
        !pass as libc::c_int,
    )
}

/// The fd of a socket surge-ping owns, for the length of one call.
struct SocketFd(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for SocketFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

impl Pinger {
    /// Opens RAW ICMP sockets inside `src`'s namespace (on its parked thread, with the current
    /// runtime entered so the clients' receive tasks run here) and takes a fresh identifier.
    pub async fn new(src: &SourceNs) -> Result<Self, PingerError> {
        let ident = IdentLease::take().ok_or(PingerError::IdentifiersExhausted)?;
        let handle = tokio::runtime::Handle::try_current().map_err(|_| PingerError::NoRuntime)?;
        let (v4, v6) = src
            .run(move || {
                let _runtime = handle.enter();
                (raw_client(ICMP::V4), raw_client(ICMP::V6))
            })
            .await
            .map_err(PingerError::Source)?;
        let v4 = v4.map_err(PingerError::Socket)?;
        if v4.get_socket().get_type() != Type::RAW {
            return Err(PingerError::NotRaw);
        }
        let v6 = match v6 {
            Ok(c) if c.get_socket().get_type() == Type::RAW => Ok(c),
            Ok(_) => Err(PingerError::NotRaw.to_string()),
            Err(e) => Err(format!("no ICMPv6 socket in this namespace: {e}")),
        };
        tracing::debug!(source = %src.source(), ident = ident.get(), "pinger ready");
        Ok(Self { source: src.source().clone(), v4, v6, ident, next_seq: AtomicU16::new(fastrand::u16(..)) })
    }

    /// The ICMP identifier of this pinger's echoes.
    pub fn ident(&self) -> u16 {
        self.ident.get()
    }

    /// Sends `count` echo requests of `payload` bytes to `target`, [`BURST_SPACING`] apart,
    /// each waiting up to `timeout` for its reply (so a burst takes at most
    /// `(count - 1) × spacing + timeout`).
    ///
    /// The result carries `Burst { sent, received }` and, when any reply came, the **median**
    /// RTT of the replies (a lower bound when below 1 µs). `Ok` if any reply came back;
    /// `Icmp(Unreachable)` when only ICMP errors came back or the kernel has no route;
    /// `Icmp(Timeout)` when nothing came back; `LocalError` when the kernel refused to send
    /// (EPERM from a local firewall rule, said so in the detail) or the request is impossible
    /// (no address, a count outside 1 to 10000, an oversized payload).
    pub async fn ping(&self, target: &Target, count: u32, payload: usize, timeout: Duration) -> ProbeResult {
        let r =
            |outcome, detail: &str| common::result(&self.source, target, ProbeKind::Icmp, outcome, detail);
        let Some(ip) = target.ip() else {
            let detail = format!("an icmp probe needs an address, and {target} has none");
            return common::finished(r(Outcome::LocalError, &detail));
        };
        if !(1..=MAX_BURST).contains(&count) {
            let detail = format!("a burst has 1 to {MAX_BURST} echo requests, not {count}");
            return common::finished(r(Outcome::LocalError, &detail));
        }
        if payload > MAX_PAYLOAD {
            let detail = format!("an echo payload of {payload} bytes does not fit one IP packet");
            return common::finished(r(Outcome::LocalError, &detail));
        }
        let client = match (ip, &self.v6) {
            (IpAddr::V4(_), _) => &self.v4,
            (IpAddr::V6(_), Ok(v6)) => v6,
            (IpAddr::V6(_), Err(why)) => return common::finished(r(Outcome::LocalError, why)),
        };
        let echoes = self.burst(client, ip, count, payload, timeout).await;
        let s = burst::summarize(ip, timeout, &echoes);
        common::finished(ProbeResult { rtt: s.rtt, burst: s.burst, ..r(s.outcome, &s.detail) })
    }

    async fn burst(
        &self,
        client: &Client,
        ip: IpAddr,
        count: u32,
        payload: usize,
        timeout: Duration,
    ) -> Vec<Echo> {
        // `count` fits u16 (MAX_BURST is 10000): reserve that many sequence numbers.
        let first = self.next_seq.fetch_add(u16::try_from(count).unwrap_or(u16::MAX), Ordering::Relaxed);
        let data = payload_bytes(payload);
        let ident = PingIdentifier(self.ident.get());
        let echoes = (0..count).map(|i| {
            let data = &data;
            async move {
                // The first echo leaves at once: a zero-length sleep still costs a timer turn.
                if i > 0 {
                    tokio::time::sleep(BURST_SPACING * i).await;
                }
                let seq = PingSequence(first.wrapping_add(i as u16));
                let mut pinger = client.pinger(ip, ident).await;
                pinger.timeout(timeout);
                let echo = echo(pinger.ping(seq, data).await);
                tracing::debug!(%ip, ident = ident.0, seq = seq.0, ?echo, "icmp echo");
                echo
            }
        });
        futures_util::future::join_all(echoes).await
    }
}

/// The usual payload's bytes, made once.
static DEFAULT_PAYLOAD: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| pattern(super::ICMP_PAYLOAD));

/// An echo's payload: a fixed pattern (borrowed for the usual size, made for others).
fn payload_bytes(len: usize) -> std::borrow::Cow<'static, [u8]> {
    if len == DEFAULT_PAYLOAD.len() {
        std::borrow::Cow::Borrowed(DEFAULT_PAYLOAD.as_slice())
    } else {
        std::borrow::Cow::Owned(pattern(len))
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// What surge-ping's answer means for one echo.
fn echo(answer: Result<(IcmpPacket, Duration), SurgeError>) -> Echo {
    match answer {
        Ok((IcmpPacket::V4(p), d)) => match p.get_icmp_type().0 {
            0 => Echo::Reply(d),
            ty => Echo::IcmpError {
                from: p.get_source().into(),
                words: common::icmp_error_words(false, ty, p.get_icmp_code().0),
            },
        },
        Ok((IcmpPacket::V6(p), d)) => match p.get_icmpv6_type().0 {
            129 => Echo::Reply(d),
            ty => Echo::IcmpError {
                from: p.get_source().into(),
                words: common::icmp_error_words(true, ty, p.get_icmpv6_code().0),
            },
        },
        Err(SurgeError::Timeout { .. }) => Echo::Lost,
        Err(SurgeError::IOError(e)) => Echo::SendFailed(e),
        Err(e) => Echo::NotSent(e.to_string()),
    }
}
