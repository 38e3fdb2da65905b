//! Caps and deadlines for the connections both listeners accept, before any protocol runs: at
//! most [`ConnLimits::max`] open at once (the rest are closed on accept, with a log line at most
//! every [`REFUSAL_LOG_EVERY`]), TCP keepalive on each (a peer that vanished without a FIN is
//! found by the kernel), and, where asked, the first bytes within a deadline: a client that
//! connects and says nothing, or half of the HTTP/2 preface, holds a descriptor and a task
//! until it is cut.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tracing::warn;

/// Refusals for a full listener are logged at most this often (a flood would flood the log).
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// The HTTP/2 connection preface every gRPC client sends first.
pub const H2_PREFACE_LEN: usize = 24;

/// What one listener allows.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections open at once.
    pub max: usize,
    /// The kernel's keepalive idle time on each connection.
    pub tcp_keepalive: Duration,
}

/// Admission to one listener: the connection cap and the connections' settings.
#[derive(Debug, Clone)]
pub struct Gate {
    permits: Arc<Semaphore>,
    limits: ConnLimits,
    /// What the listener serves, for log lines ("agent", "API").
    what: &'static str,
    /// When a refusal was last logged, in ms since `epoch` (0: never).
    last_refusal_log: Arc<AtomicU64>,
    epoch: Instant,
    /// See [`Limited::log_silent_close`].
    silence: Option<Duration>,
}

impl Gate {
    pub fn new(what: &'static str, limits: ConnLimits) -> Self {
        Gate {
            permits: Arc::new(Semaphore::new(limits.max)),
            limits,
            what,
            last_refusal_log: Arc::default(),
            epoch: Instant::now(),
            silence: None,
        }
    }

    /// Connections this gate admits log a close after `after` of silence from their peer
    /// ([`Limited::log_silent_close`]).
    pub fn with_silence(mut self, after: Duration) -> Self {
        self.silence = Some(after);
        self
    }

    pub fn silence(&self) -> Option<Duration> {
        self.silence
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.limits.max.saturating_sub(self.permits.available_permits())
    }

    /// A place for `tcp` under the cap (None: the caller drops it, closing it), with TCP
    /// keepalive turned on.
    pub fn admit(&self, tcp: &TcpStream, peer: SocketAddr) -> Option<OwnedSemaphorePermit> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.log_refusal(peer);
            return None;
        };
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(self.limits.tcp_keepalive)
            .with_interval(self.limits.tcp_keepalive / 4);
        if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
            tracing::debug!(%peer, error = %e, "cannot turn on TCP keepalive");
        }
        Some(permit)
    }

    fn log_refusal(&self, peer: SocketAddr) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
        let last = self.last_refusal_log.load(Ordering::Relaxed);
        let every = u64::try_from(REFUSAL_LOG_EVERY.as_millis()).unwrap_or(u64::MAX);
        if (last == 0 || now.saturating_sub(last) >= every)
            && self.last_refusal_log.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            warn!(
                %peer,
                max = self.limits.max,
                "{} connection refused: {} connections are open, the cap (further refusals are logged every {REFUSAL_LOG_EVERY:?})",
                self.what,
                self.limits.max
            );
        }
    }
}

/// An accepted connection holding its place under the cap until dropped, and, when asked, cut
/// (reads fail with `TimedOut`, logged once) unless its first `min_bytes` arrive in time.
#[derive(Debug)]
pub struct Limited<IO> {
    io: IO,
    _permit: OwnedSemaphorePermit,
    first_bytes: Option<FirstBytes>,
    /// When bytes last came in, whether the peer closed its side, and after how much silence
    /// our closing it is the HTTP/2 keepalive's doing (said when it is dropped).
    last_read: Instant,
    peer_closed: bool,
    silence: Option<Silence>,
}

#[derive(Debug)]
struct Silence {
    after: Duration,
    peer: SocketAddr,
    what: &'static str,
}

#[derive(Debug)]
struct FirstBytes {
    deadline: Pin<Box<Sleep>>,
    within: Duration,
    missing: usize,
    peer: SocketAddr,
    what: &'static str,
}

impl<IO> Limited<IO> {
    pub fn new(io: IO, permit: OwnedSemaphorePermit) -> Self {
        Limited {
            io,
            _permit: permit,
            first_bytes: None,
            last_read: Instant::now(),
            peer_closed: false,
            silence: None,
        }
    }

    /// Says so when the connection is closed while its peer, still connected, had sent nothing
    /// for `after` (the HTTP/2 keepalive interval plus its timeout): the server closed it for
    /// not answering pings, which the server itself does not log.
    pub fn log_silent_close(mut self, after: Duration, peer: SocketAddr, what: &'static str) -> Self {
        self.silence = Some(Silence { after, peer, what });
        self
    }

    /// Cuts the connection unless `min_bytes` arrive within `within` of now.
    pub fn first_bytes_within(
        mut self,
        min_bytes: usize,
        within: Duration,
        peer: SocketAddr,
        what: &'static str,
    ) -> Self {
        self.first_bytes = Some(FirstBytes {
            deadline: Box::pin(tokio::time::sleep(within)),
            within,
            missing: min_bytes,
            peer,
            what,
        });
        self
    }

    pub fn get_ref(&self) -> &IO {
        &self.io
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Limited<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            if buf.filled().len() > before {
                this.last_read = Instant::now();
            } else {
                this.peer_closed = true;
            }
        }
        let Some(first) = &mut this.first_bytes else { return polled };
        if let Poll::Ready(Ok(())) = polled {
            first.missing = first.missing.saturating_sub(buf.filled().len() - before);
            if first.missing == 0 {
                this.first_bytes = None;
            }
            return polled;
        }
        if polled.is_pending() && first.deadline.as_mut().poll(cx).is_ready() {
            warn!(
                peer = %first.peer,
                "{} connection cut: its first bytes did not come within {:?}",
                first.what,
                first.within
            );
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no request in time")));
        }
        polled
    }
}

impl<IO> Drop for Limited<IO> {
    fn drop(&mut self) {
        let Some(silence) = &self.silence else { return };
        let quiet = self.last_read.elapsed();
        if !self.peer_closed && self.first_bytes.is_none() && quiet >= silence.after {
            warn!(
                peer = %silence.peer,
                "{} connection closed: its peer sent nothing for {quiet:.0?}, not even an answer to the HTTP/2 keepalive ping",
                silence.what
            );
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Limited<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Limited<IO> {
    type ConnectInfo = IO::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests;
