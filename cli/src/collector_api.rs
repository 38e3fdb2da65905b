//! How a command reaches the collector: `netdiag` over its gRPC query service at `--collector`,
//! `kubectl netdiag` over its HTTP API through the Kubernetes API server's service proxy
//! ([`KubeProxy`]; gRPC cannot pass that proxy). Either way the answers are the HTTP API's v1
//! types, so every command prints one shape.

use anyhow::{Context, Result};
use netdiag_collector::api::v1 as v1json;
use netdiag_model::agents::AgentInfo;
use netdiag_model::finding::Diagnosis;
use netdiag_model::matrix::{MatrixLevel, MatrixQuery, MatrixSnapshot};
use netdiag_proto::v1;
use netdiag_proto::v1::query_client::QueryClient;

use crate::kube_proxy::KubeProxy;

#[derive(Debug)]
pub(crate) enum Collector {
    /// The collector's gRPC address (`--collector`).
    Grpc(String),
    /// The collector's HTTP API behind its Service, through the API server.
    Proxy(Box<KubeProxy>),
}

pub(crate) async fn grpc_client(url: &str) -> Result<QueryClient<tonic::transport::Channel>> {
    QueryClient::connect(url.to_owned()).await.with_context(|| {
        format!(
            "cannot reach the collector at {url} (is `netdiag demo` or a collector running? set --collector)"
        )
    })
}

impl Collector {
    pub(crate) async fn matrix(&self, query: MatrixQuery) -> Result<v1json::MatrixResponse> {
        match self {
            Collector::Grpc(url) => {
                let mut c = grpc_client(url).await?;
                let resp =
                    c.get_matrix(v1::MatrixRequest::from(query)).await.context("matrix query failed")?;
                let snapshot = MatrixSnapshot::try_from(resp.into_inner())
                    .context("the collector sent an invalid matrix")?;
                Ok(v1json::MatrixResponse::new(query.level, query.kind, snapshot))
            }
            Collector::Proxy(p) => {
                let level = match query.level {
                    MatrixLevel::Pod => "pod",
                    MatrixLevel::Node => "node",
                };
                let kind = query.kind.map(|k| crate::query_cmd::name(&v1json::Kind::from(k)));
                let path = format!("/api/v1/matrix?level={level}&kind={}", kind.as_deref().unwrap_or("all"));
                p.get(&path).await
            }
        }
    }

    pub(crate) async fn diagnosis(&self) -> Result<v1json::DiagnosisResponse> {
        match self {
            Collector::Grpc(url) => {
                let mut c = grpc_client(url).await?;
                let resp =
                    c.get_diagnosis(v1::DiagnosisRequest {}).await.context("diagnosis query failed")?;
                let d = Diagnosis::try_from(resp.into_inner())
                    .context("the collector sent an invalid diagnosis")?;
                Ok(v1json::DiagnosisResponse::from(d))
            }
            Collector::Proxy(p) => p.get("/api/v1/diagnosis").await,
        }
    }

    pub(crate) async fn agents(&self) -> Result<v1json::AgentsResponse> {
        match self {
            Collector::Grpc(url) => {
                let mut c = grpc_client(url).await?;
                let resp = c.list_agents(v1::ListAgentsRequest {}).await.context("agents query failed")?;
                let agents = Vec::<AgentInfo>::try_from(resp.into_inner())
                    .context("the collector sent an invalid agent list")?;
                Ok(v1json::AgentsResponse::new(agents, netdiag_collector::state::now()))
            }
            Collector::Proxy(p) => p.get("/api/v1/agents").await,
        }
    }
}
