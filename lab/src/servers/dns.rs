//! The lab's cluster DNS server on already-bound sockets: UDP, and TCP with the two-byte length
//! prefix (several queries per connection, closed when idle). The caller binds the sockets
//! where the lab needs them (inside the DNS pod's namespace via `netdiag_netns::socket_in`,
//! or on loopback in tests); the answers come from [`dns_response`].
//!
//! The zone can be replaced while the server runs ([`SharedZone::replace`]), and the
//! [`DnsMode`] watch channel switches lab faults on and off; both take effect from the next
//! query.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::time::timeout;
use tracing::debug;

use super::accept::accept_bounded;
use super::dns_message::{DnsMode, DnsTransport, dns_response};
use super::dns_zone::DnsZone;

/// At most this many DNS-over-TCP connections are served at once.
pub const MAX_DNS_TCP_CONNECTIONS: usize = 256;

/// Pause after a failed UDP receive, so a persistent error cannot spin a core.
const UDP_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// The zone the DNS server answers from, replaceable at runtime: readers take the current
/// `Arc<DnsZone>` for one query and never wait on a writer for longer than a pointer swap.
#[derive(Debug, Clone)]
pub struct SharedZone(Arc<RwLock<Arc<DnsZone>>>);

impl SharedZone {
    pub fn new(zone: DnsZone) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(zone))))
    }

    /// The zone as it is now; later replacements do not change the returned value.
    pub fn current(&self) -> Arc<DnsZone> {
        // Poisoning needs a panic while the lock is held, and nothing that can panic runs
        // under it; the pointer inside is valid either way.
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Makes every later query see `zone`.
    pub fn replace(&self, zone: DnsZone) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(zone);
    }
}

/// How long a DNS-over-TCP connection may sit between queries, and how long one query's bytes
/// or one answer's write may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpTimeouts {
    pub(crate) idle: Duration,
    pub(crate) io: Duration,
}

impl Default for TcpTimeouts {
    fn default() -> Self {
        // CoreDNS closes idle TCP connections after 10 s as well.
        Self { idle: Duration::from_secs(10), io: Duration::from_secs(10) }
    }
}

/// Serves DNS on `udp` and `tcp` until the future is dropped (abort its task to stop the
/// server; open TCP connections are aborted with it). Socket errors are logged and retried,
/// never fatal; hostile input is answered FORMERR or dropped, never a panic.
pub async fn serve_dns(udp: UdpSocket, tcp: TcpListener, zone: SharedZone, mode: watch::Receiver<DnsMode>) {
    let tcp_zone = zone.clone();
    let tcp_mode = mode.clone();
    let tcp = accept_bounded(tcp, MAX_DNS_TCP_CONNECTIONS, move |stream, _peer| {
        let zone = tcp_zone.clone();
        let mode = tcp_mode.clone();
        async move { serve_dns_stream(stream, &zone, &mode, TcpTimeouts::default()).await }
    });
    tokio::join!(serve_udp(udp, zone, mode), tcp);
}

async fn serve_udp(socket: UdpSocket, zone: SharedZone, mode: watch::Receiver<DnsMode>) {
    // The largest possible datagram: a longer read would be cut silently.
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(error) => {
                debug!(%error, "receiving a DNS datagram failed");
                tokio::time::sleep(UDP_ERROR_BACKOFF).await;
                continue;
            }
        };
        let request = buf.get(..len).unwrap_or_default();
        let current_mode = *mode.borrow();
        let Some(reply) = dns_response(request, &zone.current(), current_mode, DnsTransport::Udp) else {
            continue;
        };
        if let Err(error) = socket.send_to(&reply, peer).await {
            debug!(%error, %peer, "sending a DNS answer failed");
        }
    }
}

/// Answers length-prefixed queries on one stream until the client closes it, stays idle past
/// `timeouts.idle`, sends a zero length, or sends something not worth answering.
pub(crate) async fn serve_dns_stream<S>(
    mut stream: S,
    zone: &SharedZone,
    mode: &watch::Receiver<DnsMode>,
    timeouts: TcpTimeouts,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let mut prefix = [0u8; 2];
        match timeout(timeouts.idle, stream.read_exact(&mut prefix)).await {
            Err(_) => {
                debug!("closing an idle DNS TCP connection");
                return;
            }
            Ok(Err(error)) => {
                debug!(%error, "DNS TCP connection ended");
                return;
            }
            Ok(Ok(_)) => {}
        }
        let len = usize::from(u16::from_be_bytes(prefix));
        if len == 0 {
            debug!("zero-length DNS message; closing");
            return;
        }
        let mut request = vec![0u8; len];
        match timeout(timeouts.io, stream.read_exact(&mut request)).await {
            Err(_) => {
                debug!("DNS TCP client stalled mid-message; closing");
                return;
            }
            Ok(Err(error)) => {
                debug!(%error, "DNS TCP connection ended mid-message");
                return;
            }
            Ok(Ok(_)) => {}
        }
        let current_mode = *mode.borrow();
        let Some(reply) = dns_response(&request, &zone.current(), current_mode, DnsTransport::Tcp) else {
            debug!("DNS TCP message not answerable; closing");
            return;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            debug!(len = reply.len(), "DNS answer too long for TCP; closing");
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        match timeout(timeouts.io, stream.write_all(&framed)).await {
            Err(_) => {
                debug!("DNS TCP client not reading; closing");
                return;
            }
            Ok(Err(error)) => {
                debug!(%error, "writing a DNS TCP answer failed");
                return;
            }
            Ok(Ok(())) => {}
        }
    }
}

#[cfg(test)]
mod tests;
