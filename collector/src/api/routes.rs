//! The handlers behind [`super::router`]. Each parses its query at the edge, reads the state on a
//! blocking thread (a snapshot or a diagnosis walks every cell, which can take a while on a big
//! cluster and must not stall the runtime's workers) and converts to the v1 types.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use netdiag_model::matrix::MatrixLevel;
use netdiag_model::text::excerpt;
use serde::Serialize;
use std::time::Duration;

use super::Shared;
use super::params::{self, ParamError};
use super::v1::{AgentsResponse, DiagnosisResponse, ErrorResponse, MatrixResponse, Readiness};
use crate::state::now;

/// The decoded query string, in order; a string that cannot be decoded is kept as the error.
type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// An error answer.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    body: ErrorResponse,
    /// `Retry-After`, `WWW-Authenticate`, …
    pub(super) headers: HeaderMap,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, body: ErrorResponse) -> Self {
        ApiError { status, body, headers: HeaderMap::new() }
    }

    fn internal(what: &str) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorResponse::new(format!("{what} failed inside the collector: see its log")),
        )
    }
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_response())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, self.headers, no_store(), Json(self.body)).into_response()
    }
}

pub(super) fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

fn json<T: Serialize>(value: T) -> Response {
    (no_store(), Json(value)).into_response()
}

fn pairs(query: Pairs) -> Result<Vec<(String, String)>, ParamError> {
    match query {
        Ok(Query(pairs)) => Ok(pairs),
        Err(e) => Err(ParamError::Malformed(excerpt(&e.body_text()))),
    }
}

/// Runs `f` on the blocking pool; `what` names it in the error should the task die.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "{what} failed");
        ApiError::internal(what)
    })
}

/// `GET /api/v1/matrix?level=…&kind=…&node=…&status=…`. The node level comes from the shared
/// snapshot ([`super::node_view`]), never waiting on a diagnosis.
pub(super) async fn matrix(State(s): State<Shared>, query: Pairs) -> Result<Response, ApiError> {
    let params = params::matrix_query(&pairs(query)?)?;
    if params.query.level == MatrixLevel::Node {
        let unfiltered = params.node.is_none() && params.status.is_none();
        let response = blocking("the node-level matrix", move || {
            let snapshot = s.node_view.get(&s.state);
            if unfiltered {
                let json = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
                (no_store(), json, snapshot.body(params.query.kind)).into_response()
            } else {
                json(snapshot.filtered(&params))
            }
        })
        .await?;
        return Ok(response);
    }
    let response = blocking("the matrix snapshot", move || {
        let now = now();
        let mut response =
            MatrixResponse::new(params.query.level, params.query.kind, s.state.matrix(&params.query, now));
        if params.status.is_some() {
            response.cells.retain(|c| params.keeps(c));
        }
        // Only pod-level cells carry claims.
        response.with_claims(&s.state.diagnosis_served(now))
    })
    .await?;
    Ok(json(response))
}

/// `GET /api/v1/diagnosis`.
pub(super) async fn diagnosis(State(s): State<Shared>, query: Pairs) -> Result<Response, ApiError> {
    params::no_params(&pairs(query)?)?;
    let response =
        blocking("the diagnosis", move || DiagnosisResponse::with_history(&s.state.diagnosis_served(now())))
            .await?;
    Ok(json(response))
}

/// `GET /api/v1/events?limit=…`.
pub(super) async fn events(State(s): State<Shared>, query: Pairs) -> Result<Response, ApiError> {
    let limit = params::events_limit(&pairs(query)?)?;
    let events = s.state.finding_events(limit).into_iter().map(super::v1::FindingEvent::from).collect();
    Ok(json(super::v1::EventsResponse { events }))
}

/// `GET /api/v1/agents`.
pub(super) async fn agents(State(s): State<Shared>, query: Pairs) -> Result<Response, ApiError> {
    params::no_params(&pairs(query)?)?;
    let now = now();
    Ok(json(AgentsResponse::new(s.state.agents(now), now)))
}

/// Any other `/api/…` path or method: a JSON 404 rather than an empty one.
pub(super) async fn api_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorResponse::new(format!(
            "no API endpoint {method} {}: the API has GET /api/v1/matrix, GET /api/v1/diagnosis, GET \
             /api/v1/agents and POST /api/v1/probe",
            excerpt(uri.path())
        )),
    )
}

/// `GET /metrics`.
pub(super) async fn metrics(State(s): State<Shared>) -> Result<Response, ApiError> {
    let text = blocking("the metrics scrape", move || s.metrics.render(&s.state, now())).await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE))], text)
        .into_response())
}

/// `GET /healthz`: the process is serving.
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// How long a starting collector waits for its agents before it is ready anyway: a node whose
/// agent is down must not keep it unready for ever.
pub(super) const WARMUP_LIMIT: Duration = Duration::from_secs(60);

/// The share of the inventory's nodes whose agents must have sent results for a starting
/// collector to be ready before [`WARMUP_LIMIT`].
pub(super) const WARM_SHARE: f64 = 0.95;

/// Whether a collector `since_start` old is ready: it has an inventory, and (within
/// [`WARMUP_LIMIT`]) the agents of [`WARM_SHARE`] of its nodes have a session and have sent
/// results to this process — a replica that just started has an empty matrix until then. Err:
/// why not, in words.
pub(super) fn readiness(
    inventory_nodes: usize,
    reporting_agents: usize,
    since_start: Duration,
) -> Result<(), String> {
    if inventory_nodes == 0 {
        return Err("the inventory has no node yet: it has not been loaded".to_owned());
    }
    let wanted = (inventory_nodes as f64 * WARM_SHARE).ceil() as usize;
    if reporting_agents >= wanted || since_start >= WARMUP_LIMIT {
        return Ok(());
    }
    Err(format!(
        "warming up: the agents of {reporting_agents} of {inventory_nodes} nodes have sent results; ready at \
         {wanted}, or {}s after start at the latest",
        WARMUP_LIMIT.as_secs()
    ))
}

/// `GET /readyz`: [`readiness`] (see the module docs for why agents are waited for).
pub(super) async fn readyz(State(s): State<Shared>) -> Response {
    let inventory_nodes = s.state.with_inventory(|i| i.nodes.len());
    let agents = s.state.agents(now());
    let reporting = agents.iter().filter(|a| a.connected && a.results_received > 0).count();
    let verdict = readiness(inventory_nodes, reporting, s.started.elapsed());
    let ready = verdict.is_ok();
    let body = Readiness {
        ready,
        reason: verdict.err(),
        inventory_nodes,
        agents_known: agents.len(),
        agents_connected: agents.iter().filter(|a| a.connected).count(),
        agents_reporting: reporting,
    };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, no_store(), Json(body)).into_response()
}
