//! The collector's HTTP side: the JSON API under `/api/v1` (DESIGN.md, "Collector API
//! (contract)"), Prometheus metrics, health checks and the web UI, as one axum [`Router`] built
//! by [`router`] so tests drive it with `oneshot` and no socket.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/matrix?level=pod\|node&kind=icmp\|tcp\|dns\|http\|mtu\|all&status=ok\|degraded\|failed\|unknown&node=<name>` (`node`: node level only) | [`v1::MatrixResponse`]; the node level from a shared snapshot ([`node_view`]) |
//! | `GET /api/v1/diagnosis` | [`v1::DiagnosisResponse`], most severe first |
//! | `GET /api/v1/agents` | [`v1::AgentsResponse`] |
//! | `POST /api/v1/probe` | [`v1::ProbeResponse`] once the run is done ([`probe`]) |
//! | `GET /metrics` | Prometheus text format ([`crate::metrics`]) |
//! | `GET /healthz` | 200 `ok` while the process serves |
//! | `GET /readyz` | [`v1::Readiness`]: 200 once warm ([`routes::readiness`]), else 503 |
//! | `GET /`, `/ui/…` | the web UI ([`crate::ui`]) |
//!
//! Errors are JSON `{"error": "…"}` ([`v1::ErrorResponse`]): 400 for a bad query parameter
//! (naming it and its allowed values), 404 for an unknown `/api/…` path, 500 if a handler
//! task died. JSON answers carry `Cache-Control: no-store`.
//!
//! `POST /api/v1/probe` (body [`v1::ProbeRequest`]) refuses with 400 (a bad body, naming the
//! field), 401 (`WWW-Authenticate: Bearer`; the token is missing or wrong), 403 (no token is
//! configured and the caller is not on loopback, or the target is outside the cluster's ranges
//! and the allow-list), 404 (an unknown pod, service or node, named), 429 (`Retry-After`: the
//! caller's rate limit or the cap on concurrent runs) or 503 (the source's agent is not
//! connected). A run that hits the collector's time limit is still a 200: `done.end` is
//! `failed` with the reason in `done.error`, and the steps that finished are there. It takes
//! only `Content-Type: application/json` (else 415).
//!
//! Every route, and the gRPC queries sharing the port ([`guarded`]), sits behind [`guard`]: the
//! name the client used must be one the collector answers to (else 421), and a state-changing
//! request from a web page must come from one of the collector's own pages (else 403), so a
//! page elsewhere cannot use the operator's browser against the API (CSRF, DNS rebinding).
//!
//! Readiness waits for the agents (within a bound): agents reach each replica by its own name
//! through the peers Service, which lists replicas that are not ready yet, so a restarted
//! replica gets its sessions before it is ready — and a rolling update, which replaces the next
//! replica only once this one is ready, never takes down a replica while the other is still
//! empty.
//!
//! The router has no fallback of its own, so it can be merged with tonic's gRPC router (which
//! has one); unknown `/api/…` paths are answered by a wildcard route instead.

#[doc(hidden)]
pub mod fuzz;
pub mod guard;
mod node_view;
mod params;
mod probe;
mod routes;
pub mod v1;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get, post};

pub use self::guard::{AllowedHost, AllowedHostError, Connection};

use crate::metrics::CollectorMetrics;
use crate::runs::dispatch::Dispatcher;
use crate::state::CollectorState;

/// What every handler reads.
#[derive(Debug, Clone)]
struct Shared {
    state: Arc<CollectorState>,
    metrics: Arc<CollectorMetrics>,
    runs: Dispatcher,
    /// When this router was made (the collector's start): bounds readiness' wait for agents.
    started: std::time::Instant,
    node_view: Arc<node_view::NodeView>,
}

/// The collector's HTTP app: API, metrics, health and UI, behind [`guard`]. Serve it with
/// `into_make_service_with_connect_info::<Connection>()`: on-demand runs need the caller's
/// address (without it a caller is never taken for loopback) and the guard the local one.
pub fn router(state: Arc<CollectorState>, metrics: Arc<CollectorMetrics>, runs: Dispatcher) -> Router {
    let guard = guard::Guard::new(runs.config());
    let app = Router::new()
        .route("/api/v1/matrix", get(routes::matrix))
        .route("/api/v1/diagnosis", get(routes::diagnosis))
        .route("/api/v1/agents", get(routes::agents))
        .route("/api/v1/events", get(routes::events))
        .route("/api/v1/probe", post(probe::probe))
        .route("/api", any(routes::api_not_found))
        .route("/api/{*rest}", any(routes::api_not_found))
        .route("/metrics", get(routes::metrics))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .merge(crate::ui::router())
        .with_state(Shared {
            state,
            metrics,
            runs,
            started: std::time::Instant::now(),
            node_view: Arc::default(),
        });
    guarded_by(app, guard)
}

/// `other` (the gRPC query routes served on the same port) behind the same [`guard`] as
/// [`router`], with the Host rule and token of `runs`.
pub fn guarded(other: Router, runs: &Dispatcher) -> Router {
    guarded_by(other, guard::Guard::new(runs.config()))
}

fn guarded_by(app: Router, guard: guard::Guard) -> Router {
    app.layer(axum::middleware::from_fn_with_state(guard, guard::check))
}
