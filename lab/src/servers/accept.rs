//! The accept loop every TCP server of the lab shares: at most `max` connections at a time,
//! each in its own task, all of them aborted when the loop's future is dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, warn};

/// Pause after a failed `accept` (out of file descriptors, memory…) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections forever and runs `handle` for each. At `max` open connections it stops
/// accepting until one ends: new clients wait in the kernel's backlog. Accept errors are logged
/// and retried, never fatal. Dropping the returned future aborts every connection task.
pub(crate) async fn accept_bounded<F, Fut>(listener: TcpListener, max: usize, mut handle: F)
where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        if connections.len() >= max.max(1) {
            reap(connections.join_next().await);
            continue;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let span = tracing::debug_span!("conn", %peer);
                    connections.spawn(handle(stream, peer).instrument(span));
                }
                Err(error) => {
                    warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            done = connections.join_next(), if !connections.is_empty() => reap(done),
        }
    }
}

fn reap(done: Option<Result<(), tokio::task::JoinError>>) {
    if let Some(Err(error)) = done {
        // Handlers do not panic; if one ever does, the listener keeps serving.
        debug!(%error, "connection task failed");
    }
}
