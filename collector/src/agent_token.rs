//! Agents' identity from the platform (`--agent-identity token`): each agent sends its projected
//! ServiceAccount token (audience `netdiag`, rotated by the kubelet) as a bearer token when it
//! opens a session; the collector asks the API server what the token proves (a TokenReview) and
//! takes the hello only for the node the token's pod runs on — the node the review names, or
//! the pod's `spec.nodeName`. One agent cannot speak for another node, though all share one
//! client certificate. What a review's answer proves is [`verdict`] (pure); this is the I/O.

pub mod verdict;

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

use self::verdict::{Bound, ServiceAccount, TokenRefusal};

/// The audience agents' tokens are issued for (the DaemonSet's projected volume).
pub const AUDIENCE: &str = "netdiag";

/// The longest token taken (projected tokens are about 1 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How long one review (and the pod lookup behind it) may take.
pub const REVIEW_WITHIN: Duration = Duration::from_secs(5);

/// Why a session's token did not bind it to a node.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "no bearer token: an agent must send its projected ServiceAccount token (--identity-token-file) to this \
         collector (--agent-identity token)"
    )]
    Missing,
    #[error("the bearer token is not valid header text or is longer than {MAX_TOKEN_BYTES} bytes")]
    Malformed,
    #[error("{0}")]
    Refused(#[from] TokenRefusal),
    #[error("the token's pod {pod} is gone or was replaced")]
    PodGone { pod: String },
    #[error("the token is {node:?}'s, but the agent says it is {claimed:?}")]
    OtherNode { node: String, claimed: String },
    #[error(
        "cannot review the token with the API server: {0}; grant create on tokenreviews to the collector's ServiceAccount"
    )]
    Api(String),
    #[error("the API server did not review the token within {REVIEW_WITHIN:?}")]
    Timeout,
}

impl IdentityError {
    /// The gRPC status the agent sees.
    pub fn status(&self) -> tonic::Status {
        match self {
            IdentityError::Missing | IdentityError::Malformed => {
                tonic::Status::unauthenticated(self.to_string())
            }
            IdentityError::Api(_) | IdentityError::Timeout => tonic::Status::unavailable(self.to_string()),
            _ => tonic::Status::permission_denied(self.to_string()),
        }
    }
}

/// The collector's flags for it.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentIdentityArgs {
    /// How an agent proves which node it runs on, besides its client certificate: none, or
    /// token (its projected ServiceAccount token, reviewed with the API server; needs
    /// --inventory kubernetes and create on tokenreviews).
    #[arg(long = "agent-identity", env = "NETDIAG_AGENT_IDENTITY", default_value = "none", value_parser = ["none", "token"])]
    pub mode: String,
    /// The ServiceAccount agents run as (namespace/name): only its tokens are taken.
    #[arg(
        long = "agent-service-account",
        env = "NETDIAG_AGENT_SERVICE_ACCOUNT",
        default_value = "netdiag/netdiag-agent",
        value_parser = |s: &str| s.parse::<ServiceAccount>()
    )]
    pub service_account: ServiceAccount,
}

impl AgentIdentityArgs {
    pub fn tokens(&self) -> bool {
        self.mode == "token"
    }
}

/// Reviews agents' tokens with the API server.
#[derive(Clone)]
pub struct TokenReviewer {
    client: kube::Client,
    agents: ServiceAccount,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer").field("agents", &self.agents).finish_non_exhaustive()
    }
}

impl TokenReviewer {
    pub fn new(client: kube::Client, agents: ServiceAccount) -> Self {
        Self { client, agents }
    }

    /// A reviewer with a client for `config`'s API server.
    pub fn from_config(config: kube::Config, agents: ServiceAccount) -> Result<Self, kube::Error> {
        Ok(Self::new(kube::Client::try_from(config)?, agents))
    }

    /// The bearer token of a session's `authorization` metadata.
    pub fn token(metadata: &tonic::metadata::MetadataMap) -> Result<String, IdentityError> {
        let value = metadata.get("authorization").ok_or(IdentityError::Missing)?;
        let text = value.to_str().map_err(|_| IdentityError::Malformed)?;
        let token = text.strip_prefix("Bearer ").ok_or(IdentityError::Malformed)?.trim();
        if token.is_empty() {
            return Err(IdentityError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(IdentityError::Malformed);
        }
        Ok(token.to_owned())
    }

    /// Checks that `token` proves an agent on `claimed`.
    pub async fn check(&self, token: String, claimed: &str) -> Result<(), IdentityError> {
        let node = tokio::time::timeout(REVIEW_WITHIN, self.node_of(token))
            .await
            .map_err(|_| IdentityError::Timeout)??;
        if node != claimed {
            return Err(IdentityError::OtherNode { node, claimed: claimed.to_owned() });
        }
        Ok(())
    }

    /// The node the token's pod runs on.
    async fn node_of(&self, token: String) -> Result<String, IdentityError> {
        let review = TokenReview {
            spec: TokenReviewSpec { token: Some(token), audiences: Some(vec![AUDIENCE.to_owned()]) },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| IdentityError::Api(e.to_string()))?;
        let status = answer.status.unwrap_or_default();
        match verdict::bound(&status, AUDIENCE, &self.agents)? {
            Bound::Node(node) => Ok(node),
            Bound::Pod { name, uid } => {
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.agents.namespace);
                let pod = pods.get_opt(&name).await.map_err(|e| IdentityError::Api(e.to_string()))?;
                let shown = format!("{}/{name}", self.agents.namespace);
                let pod = pod.ok_or_else(|| IdentityError::PodGone { pod: shown.clone() })?;
                // A pod of the same name made since the token was issued is not its pod.
                if uid.is_some() && pod.metadata.uid != uid {
                    return Err(IdentityError::PodGone { pod: shown });
                }
                pod.spec.and_then(|s| s.node_name).ok_or(IdentityError::PodGone { pod: shown })
            }
        }
    }
}
