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
use tonic::service::interceptor::InterceptedService;
use tracing::{info, warn};

use crate::agents_tls::{self, AgentsTransport};
use crate::ingest::Ingest;
use crate::plans::{Planner, PlansConfig};
use crate::query::QueryService;
use crate::runs::config::RunsConfig;
use crate::runs::dispatch::Dispatcher;
use crate::state::{CollectorState, now};

pub mod http;

/// How often the inventory file is checked for changes and stale matrix cells are dropped.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("the agent session service failed")]
    Sessions(#[source] tonic::transport::Error),
    #[error("cannot use a listener")]
    Listener(#[source] std::io::Error),
    #[error("cannot set up TLS for the agents' session service")]
    Tls(#[source] tonic::transport::Error),
}

/// Resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn modified(path: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Where inventory changes come from while the collector runs.
#[derive(Debug)]
pub enum InventorySource {
    /// The inventory given at start, for good.
    Fixed,
    /// A file re-read when it changes (`--inventory file:<path>`).
    File(PathBuf),
    /// Each new value replaces the inventory (`--inventory kubernetes`).
    Watch(watch::Receiver<Inventory>),
}

/// What a collector serves with, besides its state.
#[derive(Debug)]
pub struct ServeConfig {
    /// The agents' session service listener, and how agents may reach it.
    pub agents: std::net::TcpListener,
    pub agents_transport: AgentsTransport,
    /// The HTTP API, UI, metrics and the CLI's gRPC queries.
    pub http: std::net::TcpListener,
    /// Where inventory changes come from (a file re-read when it changes, or a channel).
    pub inventory: InventorySource,
    /// Who may start on-demand runs, and their limits.
    pub runs: RunsConfig,
    /// How plans are computed for agents without an inventory.
    pub plans: PlansConfig,
    /// Node conditions and Events written to the Kubernetes API (kubernetes mode, unless
    /// `--node-conditions=false`).
    pub kube_report: Option<crate::kube_report::KubeReport>,
}

/// Serves until `stop` turns true.
pub async fn serve(
    state: Arc<CollectorState>,
    config: ServeConfig,
    stop: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let ServeConfig { agents, agents_transport, http, inventory, runs, plans, kube_report } = config;
    agents.set_nonblocking(true).map_err(ServerError::Listener)?;
    http.set_nonblocking(true).map_err(ServerError::Listener)?;
    let agents = tokio::net::TcpListener::from_std(agents).map_err(ServerError::Listener)?;
    let http = tokio::net::TcpListener::from_std(http).map_err(ServerError::Listener)?;
    info!(
        agents = %agents.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        http = %http.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "collector listening"
    );

    // Pods and plans for agents without an inventory: on hello, and what changed every round.
    let planner = Planner::new(state.clone(), plans);
    let ingest = Ingest::new(state.clone(), stop.clone())
        .with_planner(planner.clone())
        .with_node_identity(agents_transport.node_identity)
        .with_tokens(agents_transport.tokens.clone())
        .with_quotas(*state.quotas());
    tokio::spawn(planner.run(ingest.clone(), stop.clone()));
    let report =
        kube_report.map(|report| tokio::spawn(crate::kube_report::run(state.clone(), report, stop.clone())));
    if runs.token.is_none() {
        info!("no API token configured: on-demand runs are accepted only from loopback callers");
    }
    let dispatcher = Dispatcher::new(state.clone(), ingest.clone(), runs);
    info!(transport = agents_transport.describe(), "agents' session service");
    // TLS, when configured, is done by `agents_tls` so renewed certificates are picked up.
    let sessions = agents_tls::serve(
        tonic::service::Routes::new(InterceptedService::new(
            ingest.into_service(),
            agents_tls::gate(&agents_transport),
        )),
        agents,
        &agents_transport,
        stopped(stop.clone()),
    );

    let grpc =
        tonic::service::Routes::new(QueryService::new(state.clone(), dispatcher.clone()).into_service())
            .into_axum_router();
    // The gRPC queries share the port, so they pass the same Host/Origin guard as the API.
    let grpc = crate::api::guarded(grpc, &dispatcher);
    let app = crate::api::router(state.clone(), state.metrics().clone(), dispatcher).merge(grpc);
    // The caller's address decides loopback-only runs and keys the rate limit; the local one
    // is the listener's own address for the Host check (both set per connection by `http`).
    let api = http::serve(http, app, http::HttpLimits::default(), stop.clone());

    let (inventory_file, mut inventory_updates) = match inventory {
        InventorySource::Fixed => (None, None),
        InventorySource::File(path) => (Some(path), None),
        InventorySource::Watch(rx) => (None, Some(rx)),
    };
    let follow = async {
        let Some(rx) = inventory_updates.as_mut() else { return std::future::pending::<()>().await };
        // A closed channel (the source stopped) keeps the last inventory.
        while rx.changed().await.is_ok() {
            let inv = rx.borrow_and_update().clone();
            info!(pods = inv.pods.len(), services = inv.services.len(), "inventory updated");
            // Indexing 150 000 pods takes a while: not on a worker ingest and the API need.
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || s.set_inventory(inv)).await;
        }
        std::future::pending::<()>().await
    };

    let housekeeping = async {
        let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
        let mut seen = inventory_file.as_ref().and_then(modified);
        loop {
            tick.tick().await;
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || s.expire(now())).await;
            // A diagnosis now and then even with nobody reading one, so the findings' history
            // (first and last seen, the events timeline) keeps time.
            let s = state.clone();
            let _ = tokio::task::spawn_blocking(move || s.diagnosis_snapshot(now())).await;
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

    let served = tokio::select! {
        r = sessions => r.map_err(ServerError::Sessions),
        () = api => Ok(()),
        () = housekeeping => Ok(()),
        () = follow => Ok(()),
    };
    // The writer releases its Lease on the way out, so a standby replica takes over at once.
    if let Some(report) = report {
        let _ = tokio::time::timeout(Duration::from_secs(3), report).await;
    }
    served
}
