//! Serving the HTTP side (API, UI, `/metrics`, the CLI's gRPC queries) with the deadlines
//! axum's `serve` lacks: a connection must start its first request within
//! [`FIRST_REQUEST_WITHIN`] and send each later request head within [`HEADER_READ_TIMEOUT`]
//! (else it is closed, with a log line), HTTP/2 connections are pinged, and at most
//! [`API_CONNECTIONS`] connections are open at once. A client that opens connections and
//! sends half a header would otherwise hold a descriptor and a task each, for good.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::api::Connection;
use crate::connections::{ConnLimits, Gate, Limited};

/// Connections the HTTP side holds at once (operators, Prometheus, the UI: a handful).
pub const API_CONNECTIONS: ConnLimits = ConnLimits { max: 512, tcp_keepalive: Duration::from_secs(60) };
/// How soon after accept a connection's first request must have begun.
pub const FIRST_REQUEST_WITHIN: Duration = Duration::from_secs(10);
/// How long a client may take to send a request head (HTTP/1) on a kept-alive connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings (the CLI's gRPC queries): one this long after the last frame, answered within
/// the timeout or the connection is closed.
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How the HTTP side treats connections.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub connections: ConnLimits,
    pub first_request_within: Duration,
    pub header_read_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connections: API_CONNECTIONS,
            first_request_within: FIRST_REQUEST_WITHIN,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true; each request carries the
/// `ConnectInfo<Connection>` the API's guard and runs read.
pub async fn serve(listener: TcpListener, app: Router, limits: HttpLimits, stop: watch::Receiver<bool>) {
    let gate = Gate::new("API", limits.connections);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_KEEPALIVE_INTERVAL))
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
    let builder = Arc::new(builder);
    let mut stopping = stop.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            () = stopped(&mut stopping) => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin or stop serving.
                    warn!(error = %e, "cannot accept an API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(permit) = gate.admit(&tcp, peer) else { continue };
        let connection = Connection { peer, local: tcp.local_addr().ok() };
        let io = Limited::new(tcp, permit);
        tokio::spawn(serve_connection(io, connection, app.clone(), builder.clone(), limits, stop.clone()));
    }
}

async fn serve_connection(
    io: Limited<tokio::net::TcpStream>,
    connection: Connection,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let started = Arc::new(AtomicBool::new(false));
    let service = {
        let started = started.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            started.store(true, Ordering::Relaxed);
            request.extensions_mut().insert(ConnectInfo(connection));
            app.clone().oneshot(request)
        })
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let first_request = tokio::time::sleep(limits.first_request_within);
    tokio::pin!(first_request);
    let mut awaiting_first = true;
    let mut graceful = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    let served = started.load(Ordering::Relaxed);
                    log_connection_error(connection.peer, &*e, limits.header_read_timeout, served);
                }
                return;
            }
            // Checked when the deadline passes: a first request still running then (a run,
            // an event stream) is not cut.
            () = &mut first_request, if awaiting_first => {
                awaiting_first = false;
                if !started.load(Ordering::Relaxed) {
                    warn!(
                        peer = %connection.peer,
                        "API connection cut: no request within {:?} of connecting",
                        limits.first_request_within
                    );
                    return;
                }
            }
            () = stopped(&mut stop), if !graceful => {
                graceful = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Resolves once `stop` turns true (without holding the non-`Send` guard).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A connection's end worth a line: a first request header that did not come in time is the
/// client's doing and says so. After a request was served the same timeout also closes an idle
/// kept-alive connection (hyper cannot tell the two apart), which is no news: DEBUG, as are
/// resets and clients gone.
fn log_connection_error(
    peer: SocketAddr,
    e: &(dyn std::error::Error + 'static),
    within: Duration,
    served: bool,
) {
    let timed_out = e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout);
    if timed_out && !served {
        warn!(%peer, "API connection cut: its request header did not come within {within:?}");
    } else if timed_out {
        debug!(%peer, "API connection closed: idle, or its next request header did not come within {within:?}");
    } else {
        debug!(%peer, error = %e, "API connection ended");
    }
}

#[cfg(test)]
mod tests;
