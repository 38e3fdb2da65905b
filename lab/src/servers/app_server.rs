//! The lab's app listeners on already-bound TCP listeners: every connection is accepted; a
//! client that speaks HTTP/1.x gets one answer from [`route`] and the connection closes; a
//! client that sends nothing is kept until it closes or [`AppTimeouts::silent`] passes (a
//! plain TCP probe connects and resets). Per listener at most [`MAX_APP_CONNECTIONS`]
//! connections are served at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout, timeout_at};
use tracing::{Instrument, debug};

use super::accept::accept_bounded;
use super::apps::{AppInfo, route};
use super::http::{HttpResponse, Status, parse_head};

/// At most this many connections per app listener are served at once.
pub const MAX_APP_CONNECTIONS: usize = 256;

/// After answering, read and discard at most this much of what the client still sends, so
/// closing does not reset the connection before the client read the answer.
const DRAIN_LIMIT: usize = 64 * 1024;

/// How long an app connection may take at each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AppTimeouts {
    /// Waiting for the first byte.
    pub(crate) silent: Duration,
    /// From the first byte to the end of the request head.
    pub(crate) head: Duration,
    /// Writing the response.
    pub(crate) write: Duration,
    /// Draining the client's leftovers after the response.
    pub(crate) linger: Duration,
}

impl Default for AppTimeouts {
    fn default() -> Self {
        Self {
            silent: Duration::from_secs(60),
            head: Duration::from_secs(10),
            write: Duration::from_secs(10),
            linger: Duration::from_secs(1),
        }
    }
}

/// Serves `app` on `listener` until the future is dropped (abort its task to stop; open
/// connections are aborted with it). Never returns otherwise; accept errors are retried.
pub async fn serve_app(listener: TcpListener, app: AppInfo) {
    let span = tracing::debug_span!("app", pod = %app.pod, port = app.port.get(), kind = ?app.kind);
    let app = Arc::new(app);
    accept_bounded(listener, MAX_APP_CONNECTIONS, move |stream, _peer| {
        let app = Arc::clone(&app);
        async move { serve_app_stream(stream, &app, AppTimeouts::default()).await }
    })
    .instrument(span)
    .await;
}

/// One connection: wait for bytes, answer one HTTP request, close.
pub(crate) async fn serve_app_stream<S>(mut stream: S, app: &AppInfo, timeouts: AppTimeouts)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut chunk = [0u8; 2048];
    let first = match timeout(timeouts.silent, stream.read(&mut chunk)).await {
        Err(_) => {
            debug!("client sent nothing; closing");
            return;
        }
        Ok(Ok(0)) => {
            debug!("client closed without sending anything");
            return;
        }
        Ok(Err(error)) => {
            debug!(%error, "connection ended before any request");
            return;
        }
        Ok(Ok(n)) => n,
    };
    let mut received = chunk.get(..first).unwrap_or_default().to_vec();
    let deadline = Instant::now() + timeouts.head;
    let response = loop {
        match parse_head(&received) {
            Ok(Some(head)) => {
                let response = route(app, &head);
                debug!(method = %head.method, path = %head.path, status = response.status.code(), "request");
                break response;
            }
            Err(error) => {
                debug!(%error, "not an HTTP/1.x request");
                break HttpResponse::error(error.status(), &error.to_string());
            }
            Ok(None) => {}
        }
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => {
                debug!("request head incomplete after the timeout");
                break HttpResponse::error(Status::RequestTimeout, "request head took too long");
            }
            Ok(Ok(0)) => {
                debug!("client closed in the middle of a request");
                return;
            }
            Ok(Err(error)) => {
                debug!(%error, "connection ended in the middle of a request");
                return;
            }
            Ok(Ok(n)) => received.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
    };
    match timeout(timeouts.write, stream.write_all(&response.to_bytes())).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            debug!(%error, "writing the response failed");
            return;
        }
        Err(_) => {
            debug!("client not reading the response; closing");
            return;
        }
    }
    let _ = timeout(timeouts.write, stream.shutdown()).await;
    drain(&mut stream, timeouts.linger).await;
}

/// Reads and discards until the client closes, `DRAIN_LIMIT` bytes, or `linger` passes.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S, linger: Duration) {
    let deadline = Instant::now() + linger;
    let mut chunk = [0u8; 2048];
    let mut total = 0;
    while total < DRAIN_LIMIT {
        match timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests;
