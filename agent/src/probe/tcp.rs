//! TCP probe: one handshake from inside the source's namespace, timed from `connect()` to
//! established, then closed with RST (`SO_LINGER` 0) so no conntrack entry lingers in
//! TIME_WAIT or FIN_WAIT on any node on the way. [`open`] is also the HTTP probe's first step,
//! so both classify a failed handshake the same way.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::result::ProbeResult;
use netdiag_model::{Outcome, TcpFailure};
use socket2::{Protocol, Type};
use tokio::net::{TcpSocket, TcpStream};

use super::common::{self, SendErrno, SocketError};
use crate::source::SourceNs;

/// Connects to `target`'s address and port from `src` and closes at once with RST.
///
/// `Ok` with the handshake time as RTT; `Tcp(Refused)` when an RST answers the SYN;
/// `Tcp(Timeout)` when nothing answers within `timeout`; `Tcp(Unreachable)` on an ICMP
/// unreachable or when the source has no route; `LocalError` when a local firewall rejects the
/// SYN (EPERM) or the socket cannot be made; `SourceGone` when the source's namespace worker
/// has stopped.
pub async fn connect(src: &SourceNs, target: &Target, timeout: Duration) -> ProbeResult {
    let r = |outcome, detail: &str| common::result(src.source(), target, ProbeKind::Tcp, outcome, detail);
    let Some(addr) = target.socket_addr() else {
        let detail = format!("a tcp probe needs an address and a port, and {target} has none");
        return common::finished(r(Outcome::LocalError, &detail));
    };
    let result = match open(src, addr, timeout).await {
        Ok(c) => {
            let rtt = common::rtt(c.took);
            let shown = rtt.map_or_else(|| format!("{:?}", c.took), |t| t.to_string());
            let detail = format!("handshake with {addr} completed in {shown}; closed with RST");
            // Dropping the stream closes it; SO_LINGER 0 makes that an RST.
            drop(c.stream);
            ProbeResult { rtt, ..r(Outcome::Ok, &detail) }
        }
        Err(e) => r(e.outcome(), &common::chain(&e)),
    };
    common::finished(result)
}

/// An established connection and how long the handshake took.
#[derive(Debug)]
pub(crate) struct Connected {
    /// Closes with RST when dropped (`SO_LINGER` 0).
    pub(crate) stream: TcpStream,
    pub(crate) took: Duration,
}

/// Why a handshake did not complete, named the way a network engineer reports it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("cannot prepare the TCP socket ({step})")]
    Prepare {
        step: &'static str,
        #[source]
        error: io::Error,
    },
    #[error("{addr} refused the connection: RST in answer to the SYN (nothing listens, or a rule rejects)")]
    Refused { addr: SocketAddr },
    #[error("no answer to the SYN from {addr} within {}: dropped on the way or by a firewall", common::human(*.waited))]
    Timeout { addr: SocketAddr, waited: Duration },
    #[error("{addr} is unreachable (ICMP destination unreachable, or no route from the source)")]
    Unreachable {
        addr: SocketAddr,
        #[source]
        error: io::Error,
    },
    #[error("a local firewall rule (OUTPUT chain) rejected the SYN to {addr}")]
    LocalFirewall {
        addr: SocketAddr,
        #[source]
        error: io::Error,
    },
    #[error("connecting to {addr} failed")]
    Other {
        addr: SocketAddr,
        #[source]
        error: io::Error,
    },
}

impl ConnectError {
    /// How a probe whose handshake failed this way ends.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            ConnectError::Socket(e) => e.outcome(),
            ConnectError::Refused { .. } => Outcome::Tcp(TcpFailure::Refused),
            ConnectError::Timeout { .. } => Outcome::Tcp(TcpFailure::Timeout),
            ConnectError::Unreachable { .. } => Outcome::Tcp(TcpFailure::Unreachable),
            ConnectError::Prepare { .. }
            | ConnectError::LocalFirewall { .. }
            | ConnectError::Other { .. } => Outcome::LocalError,
        }
    }

    /// Classifies the error `connect()` returned.
    fn from_io(addr: SocketAddr, waited: Duration, error: io::Error) -> Self {
        match error.raw_os_error() {
            Some(libc::ECONNREFUSED) => return ConnectError::Refused { addr },
            // The kernel gave up retransmitting the SYN before our own timeout did.
            Some(libc::ETIMEDOUT) => return ConnectError::Timeout { addr, waited },
            _ => {}
        }
        match SendErrno::of(&error) {
            SendErrno::Unreachable => ConnectError::Unreachable { addr, error },
            SendErrno::LocalFirewall => ConnectError::LocalFirewall { addr, error },
            SendErrno::TooBig | SendErrno::Other => ConnectError::Other { addr, error },
        }
    }
}

/// Opens a TCP connection to `addr` from inside `src`'s namespace within `timeout`, with
/// `SO_LINGER` 0 already set so that dropping it sends RST.
pub(crate) async fn open(
    src: &SourceNs,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Connected, ConnectError> {
    let started = Instant::now();
    let socket =
        common::socket(src, common::domain_of(addr.ip()), Type::STREAM, Protocol::TCP, "TCP").await?;
    let prepare = |step| move |error| ConnectError::Prepare { step, error };
    socket.set_nonblocking(true).map_err(prepare("non-blocking mode"))?;
    socket.set_linger(Some(Duration::ZERO)).map_err(prepare("SO_LINGER 0"))?;
    let socket = TcpSocket::from_std_stream(socket.into());
    let left = timeout.saturating_sub(started.elapsed());
    let start = Instant::now();
    let connected = tokio::time::timeout(left, socket.connect(addr)).await;
    let took = start.elapsed();
    match connected {
        Ok(Ok(stream)) => {
            tracing::debug!(%addr, took_us = took.as_micros(), "tcp handshake completed");
            Ok(Connected { stream, took })
        }
        Ok(Err(error)) => Err(ConnectError::from_io(addr, started.elapsed(), error)),
        Err(_) => Err(ConnectError::Timeout { addr, waited: started.elapsed() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(errno: i32) -> Outcome {
        let addr: SocketAddr = "10.244.2.3:2379".parse().unwrap();
        ConnectError::from_io(addr, Duration::from_secs(1), io::Error::from_raw_os_error(errno)).outcome()
    }

    #[test]
    fn connect_errors_classify_by_layer() {
        let cases = [
            (libc::ECONNREFUSED, Outcome::Tcp(TcpFailure::Refused)),
            (libc::ETIMEDOUT, Outcome::Tcp(TcpFailure::Timeout)),
            (libc::EHOSTUNREACH, Outcome::Tcp(TcpFailure::Unreachable)),
            (libc::ENETUNREACH, Outcome::Tcp(TcpFailure::Unreachable)),
            (libc::EPERM, Outcome::LocalError),
            (libc::EADDRNOTAVAIL, Outcome::LocalError),
        ];
        for (errno, want) in cases {
            assert_eq!(classify(errno), want, "errno {errno}");
        }
    }

    #[test]
    fn errors_read_like_an_engineer_writes_them() {
        let addr: SocketAddr = "10.244.2.3:2379".parse().unwrap();
        let e = ConnectError::from_io(addr, Duration::ZERO, io::Error::from_raw_os_error(libc::EPERM));
        let text = common::chain(&e);
        assert!(
            text.starts_with("a local firewall rule (OUTPUT chain) rejected the SYN to 10.244.2.3:2379: ")
        );
        let refused = ConnectError::Refused { addr }.to_string();
        assert!(refused.contains("RST in answer to the SYN"), "{refused}");
    }
}
