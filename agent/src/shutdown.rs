//! The agent's stop signal: a `watch` channel that turns true once.

use tokio::sync::watch;

/// Resolves once `stop` turns true (or its sender is gone). `wait_for`'s guard is not `Send`,
/// so it is dropped here rather than held across a `select!` in a spawned task.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
