//! Why a NetworkPolicy (or a Namespace) was rejected: the object, the field path in the API's
//! own notation (`spec.ingress[0].from[1].ipBlock.except[0]`) and the rule it broke.

/// A policy that the API server's validation would refuse, or that lacks what evaluation needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {field}: {problem}")]
pub struct PolicyError {
    /// `network policy <namespace>/<name>` as written (`?` for a missing part), or
    /// `namespace <name>`.
    pub object: String,
    /// The offending field's path, e.g. `spec.egress[0].ports[1].endPort`.
    pub field: String,
    pub problem: PolicyProblem,
}

/// The rule a field broke. Quoted values are shortened: hostile input can be megabytes long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyProblem {
    #[error("is required")]
    Missing,
    #[error("{0}")]
    BadName(#[from] crate::names::NameError),
    #[error("unsupported policy type {0:?}: use Ingress or Egress")]
    UnknownPolicyType(String),
    #[error("lists {0} policy types; at most two (Ingress, Egress) are allowed")]
    TooManyPolicyTypes(usize),
    #[error("must specify a peer: podSelector, namespaceSelector or ipBlock")]
    EmptyPeer,
    #[error("ipBlock may not be combined with podSelector or namespaceSelector in one peer")]
    IpBlockWithSelector,
    #[error("{0:?} is not a CIDR (such as 10.0.0.0/16 or fd00::/64)")]
    BadCidr(String),
    #[error("{except} must be a strict subset of cidr {cidr}")]
    ExceptNotStrictSubset { except: String, cidr: String },
    #[error("unsupported protocol {0:?}: use TCP, UDP or SCTP")]
    UnknownProtocol(String),
    #[error("{0} is not a port number from 1 to 65535")]
    BadPortNumber(i64),
    #[error(
        "{0:?} is not a valid port name: 1 to 15 lowercase letters, digits and '-', with at least one letter, no '--', not starting or ending with '-'"
    )]
    BadPortName(String),
    #[error("may not be specified when port is a name")]
    EndPortWithNamedPort,
    #[error("may not be specified when port is not specified")]
    EndPortWithoutPort,
    #[error("{end_port} must be greater than or equal to port {port}")]
    EndPortBelowPort { port: i64, end_port: i64 },
    #[error("unsupported selector operator {0:?}: use In, NotIn, Exists or DoesNotExist")]
    UnknownOperator(String),
    #[error("operator {0} needs at least one value")]
    ValuesRequired(&'static str),
    #[error("operator {0} takes no values")]
    ValuesForbidden(&'static str),
    #[error("label key is empty")]
    EmptyLabelKey,
}
