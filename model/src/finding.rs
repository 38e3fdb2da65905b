//! Findings: the collector's verdicts, with a severity, a culprit and the evidence behind them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_DETAIL_BYTES, MAX_LINE_BYTES};
use crate::text::{Text, TextError, check_token, excerpt, is_id_char, token_type};
use crate::time::UnixMillis;

fn check_finding_id(s: &str) -> Result<(), TextError> {
    check_token("finding id", s, 128, is_id_char)
}

token_type!(
    /// A stable id for a kind of finding (`dns-nxdomain`, `node-pair-loss`, …), for runbooks.
    FindingId,
    check = check_finding_id
);

/// How urgent a finding is; ordered `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// What kind of thing a finding blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CulpritKind {
    Pod,
    Node,
    NodePair,
    Service,
    Dns,
    Port,
    Path,
    /// One or more NetworkPolicies (`namespace/name`, comma-separated).
    NetworkPolicy,
}

impl CulpritKind {
    pub const ALL: [CulpritKind; 8] = [
        CulpritKind::Pod,
        CulpritKind::Node,
        CulpritKind::NodePair,
        CulpritKind::Service,
        CulpritKind::Dns,
        CulpritKind::Port,
        CulpritKind::Path,
        CulpritKind::NetworkPolicy,
    ];

    /// The wire name: `pod`, `node`, `node_pair`, `service`, `dns`, `port`, `path` or
    /// `network_policy`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CulpritKind::Pod => "pod",
            CulpritKind::Node => "node",
            CulpritKind::NodePair => "node_pair",
            CulpritKind::Service => "service",
            CulpritKind::Dns => "dns",
            CulpritKind::Port => "port",
            CulpritKind::Path => "path",
            CulpritKind::NetworkPolicy => "network_policy",
        }
    }
}

impl fmt::Display for CulpritKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A culprit type the model does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a culprit type: use pod, node, node_pair, service, dns, port or path")]
pub struct UnknownCulpritKind(String);

impl FromStr for CulpritKind {
    type Err = UnknownCulpritKind;
    fn from_str(s: &str) -> Result<Self, UnknownCulpritKind> {
        CulpritKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownCulpritKind(excerpt(s)))
    }
}

/// The component a finding blames (`node_pair` `node-1→node-2`, `service` `tidb/demo-pd`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Culprit {
    pub kind: CulpritKind,
    pub name: Text<MAX_LINE_BYTES>,
}

/// A verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub id: FindingId,
    pub severity: Severity,
    /// One line a network engineer reads first.
    pub verdict: Text<MAX_LINE_BYTES>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub culprit: Option<Culprit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<Text<MAX_LINE_BYTES>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Text<MAX_DETAIL_BYTES>>,
    /// Where to read more (a URL or a runbook anchor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<Text<MAX_LINE_BYTES>>,
    #[serde(default, skip_serializing_if = "Text::is_empty")]
    pub suggestion: Text<MAX_DETAIL_BYTES>,
}

/// The collector's current findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub findings: Vec<Finding>,
    pub generated_at: UnixMillis,
    /// Failing paths NetworkPolicy keeps shut, as intended (never findings), at most
    /// [`crate::limits::MAX_POLICY_DENIALS`] of them, in path order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_by_policy: Vec<PolicyDenial>,
    /// How many there are in all (the list may be cut).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub denied_by_policy_total: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A failing path NetworkPolicy denies, as intended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDenial {
    /// `source -> destination kind`, as a finding's affected paths read.
    pub path: Text<MAX_LINE_BYTES>,
    /// The policy verdict in one sentence ("denied: ingress is isolated by policy …").
    pub reason: Text<MAX_DETAIL_BYTES>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_are_ordered() {
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
        let worst = [Severity::Warning, Severity::Critical, Severity::Info].into_iter().max();
        assert_eq!(worst, Some(Severity::Critical));
    }

    #[test]
    fn culprit_kinds_parse_their_wire_names() {
        for k in CulpritKind::ALL {
            assert_eq!(k.as_str().parse::<CulpritKind>(), Ok(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert!("nodepair".parse::<CulpritKind>().is_err());
    }

    #[test]
    fn finding_ids() {
        assert!(FindingId::new("dns-nxdomain").is_ok());
        assert!(FindingId::new("dns nxdomain").is_err());
    }
}
