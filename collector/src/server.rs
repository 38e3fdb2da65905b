//! Running a collector: the agent session service on one listener (inside the cluster; in the
//! lab, inside its underlay namespace) and, on another (the operator's side; in the lab the
//! host's loopback, the lab's only door), the HTTP API, UI, `/metrics` and the gRPC query
//! service for the CLI on the same port. Listeners are bound by the caller, who decides which
//! namespace each lives in.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use netdiag_model::inventory::Inventory;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::ingest::Ingest;
use crate::metrics::CollectorMetrics;
use crate::query::QueryService;
use crate::state::{CollectorState, now};

/// How often the inventory file is checked for changes and stale matrix cells are dropped.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("the agent session service failed")]
    Sessions(#[source] tonic::transport::Error),
    #[error("the HTTP API failed")]
    Http(#[source] std::io::Error),
    #[error("cannot use a listener")]
    Listener(#[source] std::io::Error),
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Serves until `stop` turns true. `inventory_file`, when given, is re-read when it changes.
pub async fn serve(
    state: Arc<CollectorState>,
    metrics: Arc<CollectorMetrics>,
    agents: std::net::TcpListener,
    http: std::net::TcpListener,
    inventory_file: Option<PathBuf>,
    stop: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    agents.set_nonblocking(true).map_err(ServerError::Listener)?;
    http.set_nonblocking(true).map_err(ServerError::Listener)?;
    let agents = tokio::net::TcpListener::from_std(agents).map_err(ServerError::Listener)?;
    let http = tokio::net::TcpListener::from_std(http).map_err(ServerError::Listener)?;
    info!(
        agents = %agents.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        http = %http.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "collector listening"
    );

    state.attach_metrics(metrics.clone());
    let ingest = Ingest::new(state.clone(), stop.clone());
    let sessions =
        tonic::transport::Server::builder().add_service(ingest.into_service()).serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(agents),
            stopped(stop.clone()),
        );

    let grpc =
        tonic::service::Routes::new(QueryService::new(state.clone()).into_service()).into_axum_router();
    let app = crate::api::router(state.clone(), metrics).merge(grpc);
    let api = axum::serve(http, app).with_graceful_shutdown(stopped(stop.clone()));

    let housekeeping = async {
        let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
        let mut seen = inventory_file.as_ref().and_then(modified);
        loop {
            tick.tick().await;
            state.expire(now());
            let Some(path) = &inventory_file else { continue };
            let m = modified(path);
            if m == seen {
                continue;
            }
            seen = m;
            match std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|t| Inventory::from_yaml(&t).map_err(|e| e.to_string()))
            {
                Ok(inv) => {
                    info!(path = %path.display(), "inventory reloaded");
                    state.set_inventory(inv);
                }
                Err(e) => warn!(path = %path.display(), error = %e, "keeping the previous inventory"),
            }
        }
    };

    tokio::select! {
        r = sessions => r.map_err(ServerError::Sessions),
        r = api => r.map_err(ServerError::Http),
        () = housekeeping => Ok(()),
    }
}
