//! Kubernetes `networking.k8s.io/v1` NetworkPolicy: the wire form and its checked form.
//!
//! The wire types here ([`NetworkPolicy`] and what it holds) follow the API's documented JSON
//! shape (camelCase, every field optional, unknown fields ignored), so they read both what the
//! API server returns and a hand-written YAML or JSON policy. Enum-like fields (`policyTypes`,
//! `protocol`, a selector's `operator`) stay text on the wire so that a bad value becomes a
//! validation error naming its field, not a parse failure.
//!
//! [`NetworkPolicy::check`] ([`check`]) turns one into a [`Policy`]: the API server's
//! defaulting applied (`policyTypes`, protocol TCP) and its validation enforced, each failure a
//! [`PolicyError`] naming the policy and the field path. The selectors ([`selector`]) and the
//! namespaces they match ([`namespace`]) are checked the same way. Only checked types are
//! evaluated (`netdiag_diagnose::policy`).
//!
//! Semantics follow `/work/shared/NETPOL.md` (the Kubernetes docs and API reference).

pub mod check;
pub mod error;
pub mod namespace;
pub mod selector;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use self::check::{IpBlock, Peer, Policy, PolicyPort, PolicyProtocol, PolicyRef, PortRule, Rule};
pub use self::error::{PolicyError, PolicyProblem};
pub use self::namespace::{METADATA_NAME_LABEL, NamespaceLabels, NamespaceObject};
pub use self::selector::{LabelSelector, LabelSelectorRequirement, Requirement, Selector, SelectorOp};

/// A NetworkPolicy object as the API returns it or a person writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NetworkPolicySpec,
}

/// The part of `metadata` policies and namespaces need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// `spec`: which pods the policy selects and the rules it grants them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Omitted means `{}`: every pod in the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// `Ingress` and/or `Egress`; omitted or empty is defaulted (see [`check`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<IngressRule>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<EgressRule>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    /// Omitted or empty matches every source, pod or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<NetworkPolicyPeer>>,
    /// Omitted or empty matches every port and protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<NetworkPolicyPort>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// Omitted or empty matches every destination, pod or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<NetworkPolicyPeer>>,
    /// Omitted or empty matches every port and protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<NetworkPolicyPort>>,
}

/// One `from`/`to` item. The two selectors in one item are ANDed; `ipBlock` stands alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyPeer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlockSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpBlockSpec {
    #[serde(default)]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyPort {
    /// `TCP`, `UDP` or `SCTP`; omitted means TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// A number or a container port's name; omitted means every port of the protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i64>,
}

/// Kubernetes' `IntOrString`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}
