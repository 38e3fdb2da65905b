//! The gRPC query service (`netdiag.v1.Query`) the CLI uses: the same matrix, diagnosis and
//! agent list as the HTTP API, from the same [`CollectorState`].

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use netdiag_model::matrix::MatrixQuery;
use netdiag_proto::v1;
use netdiag_proto::v1::query_server::{Query, QueryServer};
use tonic::{Request, Response, Status};

use crate::state::{CollectorState, now};

#[derive(Debug, Clone)]
pub struct QueryService {
    state: Arc<CollectorState>,
}

impl QueryService {
    pub fn new(state: Arc<CollectorState>) -> Self {
        Self { state }
    }

    pub fn into_service(self) -> QueryServer<Self> {
        QueryServer::new(self)
    }
}

type RunStream = Pin<Box<dyn Stream<Item = Result<v1::ProbeRunEvent, Status>> + Send + 'static>>;

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

    async fn run_probe(&self, _request: Request<v1::ProbeRunRequest>) -> Result<Response<RunStream>, Status> {
        Err(Status::unimplemented("on-demand probe runs are not available in this collector version"))
    }

    async fn list_agents(
        &self,
        _request: Request<v1::ListAgentsRequest>,
    ) -> Result<Response<v1::ListAgentsResponse>, Status> {
        Ok(Response::new(self.state.agents(now()).into()))
    }
}
