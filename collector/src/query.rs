//! The gRPC query service (`netdiag.v1.Query`) the CLI uses: the same matrix, diagnosis and
//! agent list as the HTTP API, from the same [`CollectorState`], and on-demand runs
//! (`RunProbe`) through the same [`Dispatcher`] as `POST /api/v1/probe`, streamed as they
//! happen. A run's token travels as `authorization: Bearer …` metadata; refusals map to
//! InvalidArgument / Unauthenticated / PermissionDenied / NotFound / ResourceExhausted (with
//! `retry-after` metadata) / Unavailable with the HTTP API's messages. The response metadata
//! carries the run id (`netdiag-run-id`). Dropping the stream cancels the run on the agent.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use netdiag_model::matrix::MatrixQuery;
use netdiag_model::run::ProbeRunRequest;
use netdiag_proto::v1;
use netdiag_proto::v1::query_server::{Query, QueryServer};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};

use crate::runs::auth::Credentials;
use crate::runs::dispatch::{Caller, Dispatcher, RefusalKind, Refused};
use crate::state::{CollectorState, now};

#[derive(Debug, Clone)]
pub struct QueryService {
    state: Arc<CollectorState>,
    runs: Dispatcher,
}

impl QueryService {
    pub fn new(state: Arc<CollectorState>, runs: Dispatcher) -> Self {
        Self { state, runs }
    }

    pub fn into_service(self) -> QueryServer<Self> {
        QueryServer::new(self)
    }
}

type RunStream = Pin<Box<dyn Stream<Item = Result<v1::ProbeRunEvent, Status>> + Send + 'static>>;

/// The metadata key of the run id in `RunProbe`'s response.
pub const RUN_ID_METADATA: &str = "netdiag-run-id";

fn status(r: Refused) -> Status {
    let code = match r.kind {
        RefusalKind::BadRequest => Code::InvalidArgument,
        RefusalKind::Unauthenticated => Code::Unauthenticated,
        RefusalKind::Forbidden => Code::PermissionDenied,
        RefusalKind::NotFound => Code::NotFound,
        RefusalKind::TooManyRequests => Code::ResourceExhausted,
        RefusalKind::Unavailable => Code::Unavailable,
    };
    let mut status = Status::new(code, r.message.clone());
    if let Some(secs) = r.retry_after_secs() {
        status.metadata_mut().insert("retry-after", MetadataValue::from(secs));
    }
    status
}

/// The caller's address (served through axum: `ConnectInfo`; through tonic's own server: the
/// remote address) and token.
fn caller<T>(request: &Request<T>) -> Caller {
    let addr = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .or_else(|| request.remote_addr())
        .map(|a| a.ip());
    let auth = request.metadata().get("authorization").map(|v| v.as_bytes());
    let token = request.metadata().get(crate::runs::auth::TOKEN_HEADER).map(|v| v.as_bytes());
    Caller { addr, credentials: Credentials::from_headers(auth, token) }
}

#[tonic::async_trait]
impl Query for QueryService {
    async fn get_matrix(
        &self,
        request: Request<v1::MatrixRequest>,
    ) -> Result<Response<v1::MatrixResponse>, Status> {
        let query = MatrixQuery::try_from(request.into_inner())
            .map_err(|e| Status::invalid_argument(format!("bad matrix request: {e}")))?;
        Ok(Response::new(self.state.matrix(&query, now()).into()))
    }

    async fn get_diagnosis(
        &self,
        _request: Request<v1::DiagnosisRequest>,
    ) -> Result<Response<v1::DiagnosisResponse>, Status> {
        Ok(Response::new(self.state.diagnosis(now()).into()))
    }

    type RunProbeStream = RunStream;

    async fn run_probe(&self, request: Request<v1::ProbeRunRequest>) -> Result<Response<RunStream>, Status> {
        let admitted = self.runs.admit(&caller(&request)).map_err(status)?;
        let run = ProbeRunRequest::try_from(request.into_inner())
            .map_err(|e| Status::invalid_argument(format!("bad probe request: {e}")))?;
        let stream = self.runs.start(admitted, run).await.map_err(status)?;
        let run_id = MetadataValue::try_from(stream.run_id().as_str()).ok();
        let events = stream.into_stream().map(|event| Ok(v1::ProbeRunEvent::from(event)));
        let mut response = Response::new(Box::pin(events) as RunStream);
        if let Some(id) = run_id {
            response.metadata_mut().insert(RUN_ID_METADATA, id);
        }
        Ok(response)
    }

    async fn list_agents(
        &self,
        _request: Request<v1::ListAgentsRequest>,
    ) -> Result<Response<v1::ListAgentsResponse>, Status> {
        Ok(Response::new(self.state.agents(now()).into()))
    }
}

#[cfg(test)]
mod tests;
