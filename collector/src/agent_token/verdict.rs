//! What a TokenReview's answer proves about an agent, pure: the token is valid for netdiag's
//! audience, it is the agent DaemonSet's ServiceAccount's, and it was issued to a pod — on which
//! node, when the API server says (`authentication.kubernetes.io/node-name`, Kubernetes 1.30+),
//! or through the pod's `spec.nodeName` otherwise.

use k8s_openapi::api::authentication::v1::TokenReviewStatus;

/// The extra keys a bound ServiceAccount token's review carries.
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";

/// The ServiceAccount agents run as (`namespace/name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccount {
    /// The username its tokens authenticate as.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl std::str::FromStr for ServiceAccount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self { namespace: ns.to_owned(), name: name.to_owned() })
            }
            _ => Err(format!("{s:?} is not a ServiceAccount; write namespace/name (netdiag/netdiag-agent)")),
        }
    }
}

/// Where the token says the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    /// The review names the node.
    Node(String),
    /// The review names the pod (in the ServiceAccount's namespace); its node is to be read.
    Pod { name: String, uid: Option<String> },
}

/// Why a token does not identify an agent, in words for the agent's operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the token is not valid: {0}")]
    NotAuthenticated(String),
    #[error(
        "the token is not for audience {audience:?} (it is for {got:?}); mount a projected token with that audience"
    )]
    Audience { audience: String, got: Vec<String> },
    #[error("the token is {got:?}'s, not the agents' ServiceAccount {want:?}")]
    ServiceAccount { want: String, got: String },
    #[error(
        "the token is not bound to a pod: use a projected ServiceAccount token (a pod's volume), not a Secret's"
    )]
    Unbound,
}

/// What `status` (the API server's answer to a review of a token for `audience`) proves.
pub fn bound(
    status: &TokenReviewStatus,
    audience: &str,
    agents: &ServiceAccount,
) -> Result<Bound, TokenRefusal> {
    if status.authenticated != Some(true) {
        return Err(TokenRefusal::NotAuthenticated(status.error.clone().unwrap_or_else(|| "refused".into())));
    }
    let audiences = status.audiences.clone().unwrap_or_default();
    if !audiences.iter().any(|a| a == audience) {
        return Err(TokenRefusal::Audience { audience: audience.to_owned(), got: audiences });
    }
    let user = status.user.clone().unwrap_or_default();
    let username = user.username.unwrap_or_default();
    if username != agents.username() {
        return Err(TokenRefusal::ServiceAccount { want: agents.username(), got: username });
    }
    let extra = user.extra.unwrap_or_default();
    let one = |key: &str| extra.get(key).and_then(|v| v.first()).filter(|s| !s.is_empty()).cloned();
    if let Some(node) = one(EXTRA_NODE_NAME) {
        return Ok(Bound::Node(node));
    }
    match one(EXTRA_POD_NAME) {
        Some(name) => Ok(Bound::Pod { name, uid: one(EXTRA_POD_UID) }),
        None => Err(TokenRefusal::Unbound),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::authentication::v1::UserInfo;

    use super::*;

    fn sa() -> ServiceAccount {
        "netdiag/netdiag-agent".parse().unwrap()
    }

    fn review(user: &str, audiences: &[&str], extra: &[(&str, &str)]) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
            user: Some(UserInfo {
                username: Some(user.into()),
                extra: Some(
                    extra
                        .iter()
                        .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..UserInfo::default()
            }),
            error: None,
        }
    }

    #[test]
    fn a_bound_agent_token_names_its_node_or_its_pod() {
        let agent = "system:serviceaccount:netdiag:netdiag-agent";
        let with_node =
            review(agent, &["netdiag"], &[(EXTRA_POD_NAME, "agent-x"), (EXTRA_NODE_NAME, "node-2")]);
        assert_eq!(bound(&with_node, "netdiag", &sa()), Ok(Bound::Node("node-2".into())));
        let pod_only = review(agent, &["netdiag"], &[(EXTRA_POD_NAME, "agent-x"), (EXTRA_POD_UID, "u-1")]);
        assert_eq!(
            bound(&pod_only, "netdiag", &sa()),
            Ok(Bound::Pod { name: "agent-x".into(), uid: Some("u-1".into()) })
        );
    }

    #[test]
    fn tokens_that_prove_nothing_are_refused_with_why() {
        let agent = "system:serviceaccount:netdiag:netdiag-agent";
        let invalid = TokenReviewStatus {
            authenticated: Some(false),
            error: Some("token expired".into()),
            ..Default::default()
        };
        assert_eq!(
            bound(&invalid, "netdiag", &sa()),
            Err(TokenRefusal::NotAuthenticated("token expired".into()))
        );
        let api_audience = review(agent, &["https://kubernetes.default.svc"], &[(EXTRA_NODE_NAME, "node-1")]);
        assert!(matches!(bound(&api_audience, "netdiag", &sa()), Err(TokenRefusal::Audience { .. })));
        let other =
            review("system:serviceaccount:default:builder", &["netdiag"], &[(EXTRA_NODE_NAME, "node-1")]);
        let e = bound(&other, "netdiag", &sa()).unwrap_err().to_string();
        assert!(e.contains("system:serviceaccount:default:builder"), "{e}");
        let secret_token = review(agent, &["netdiag"], &[]);
        assert_eq!(bound(&secret_token, "netdiag", &sa()), Err(TokenRefusal::Unbound));
        assert!("netdiag".parse::<ServiceAccount>().is_err());
        assert!("a/b/c".parse::<ServiceAccount>().is_err());
    }
}
