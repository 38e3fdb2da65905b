//! Findings as rules write them ([`Draft`]: plain strings) and as the API serves them: bounded
//! text, `affected` capped with "and N more", sorted most severe first, then by id and culprit,
//! so the same input always gives the same list.

use std::borrow::Cow;
use std::cmp::Reverse;

use netdiag_model::limits::{MAX_FINDING_EVIDENCE, MAX_FINDINGS};
use netdiag_model::text::Text;
use netdiag_model::{Culprit, CulpritKind, Finding, FindingId, Severity};

/// The stable finding ids, one per verdict.
pub(crate) mod ids {
    pub(crate) const NODE_FORWARDING_DISABLED: &str = "node-forwarding-disabled";
    pub(crate) const NODE_FORWARDING_BROKEN: &str = "node-forwarding-broken";
    pub(crate) const NODE_ISOLATED: &str = "node-isolated";
    pub(crate) const NODE_PAIR_BROKEN: &str = "node-pair-broken";
    pub(crate) const ROUTE_MISSING: &str = "route-missing";
    /// A neighbour (ARP/NDP) entry holding a MAC no link with its address has.
    pub(crate) const NEIGHBOUR_MISMATCH: &str = "neighbour-mismatch";
    pub(crate) const POD_DOWN: &str = "pod-down";
    pub(crate) const SERVICE_NO_ENDPOINTS: &str = "service-no-endpoints";
    pub(crate) const DNS_DOWN: &str = "dns-down";
    pub(crate) const DNS_UNREACHABLE_FROM_NODE: &str = "dns-unreachable-from-node";
    pub(crate) const DNS_SERVFAIL: &str = "dns-servfail";
    pub(crate) const DNS_NAME_MISSING: &str = "dns-name-missing";
    pub(crate) const DNS_POD_RESOLVER: &str = "dns-pod-resolver";
    pub(crate) const SERVICE_PATH_BROKEN: &str = "service-path-broken";
    pub(crate) const NODEPORT_BROKEN: &str = "nodeport-broken";
    pub(crate) const NODEPORT_LOCAL_POLICY: &str = "nodeport-local-policy";
    pub(crate) const PORT_REFUSED: &str = "port-refused";
    pub(crate) const PORT_DROPPED: &str = "port-dropped";
    pub(crate) const MTU_BLACKHOLE: &str = "mtu-blackhole";
    pub(crate) const MTU_REDUCED: &str = "mtu-reduced";
    pub(crate) const NODE_PACKET_LOSS: &str = "node-packet-loss";
    pub(crate) const KEEPALIVE_EXCEEDS_IDLE_CUT: &str = "keepalive-exceeds-idle-cut";
    pub(crate) const KEEPALIVE_UNVERIFIED: &str = "keepalive-unverified";
    /// Working paths a NetworkPolicy denies: the dataplane does not enforce it.
    pub(crate) const POLICY_NOT_ENFORCED: &str = "policy-not-enforced";
    /// A node firewall's rule that matches failing paths and no working one.
    pub(crate) const FIREWALL_DROP: &str = "firewall-drop";
    /// A NAT rule outside kube-proxy's chains that rewrites failing paths and no working one.
    pub(crate) const NAT_REWRITE: &str = "nat-rewrite";
    /// The class layer: ICMP fails where TCP works (never a pod or node blamed).
    pub(crate) const ICMP_FILTERED: &str = "icmp-filtered";
    /// A quiet agent's frozen cells, when no finding blames its node.
    pub(crate) const AGENT_QUIET: &str = "agent-quiet";
    /// What nothing else explains: never silent.
    pub(crate) const UNEXPLAINED_FAILURES: &str = "unexplained-failures";

    /// Every named verdict's id; the cover layer's symptom ids (`node-sources-unreachable`,
    /// `node-inbound-mtu-blackhole`, …) are built from a scope's stem and are not here.
    pub(crate) const ALL: [&str; 29] = [
        NEIGHBOUR_MISMATCH,
        NODE_FORWARDING_BROKEN,
        POLICY_NOT_ENFORCED,
        FIREWALL_DROP,
        NAT_REWRITE,
        NODE_FORWARDING_DISABLED,
        NODE_ISOLATED,
        NODE_PAIR_BROKEN,
        ROUTE_MISSING,
        POD_DOWN,
        SERVICE_NO_ENDPOINTS,
        DNS_DOWN,
        DNS_UNREACHABLE_FROM_NODE,
        DNS_SERVFAIL,
        DNS_NAME_MISSING,
        DNS_POD_RESOLVER,
        SERVICE_PATH_BROKEN,
        NODEPORT_BROKEN,
        NODEPORT_LOCAL_POLICY,
        PORT_REFUSED,
        PORT_DROPPED,
        MTU_BLACKHOLE,
        MTU_REDUCED,
        NODE_PACKET_LOSS,
        KEEPALIVE_EXCEEDS_IDLE_CUT,
        KEEPALIVE_UNVERIFIED,
        ICMP_FILTERED,
        AGENT_QUIET,
        UNEXPLAINED_FAILURES,
    ];
}

/// A finding as a rule writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Draft {
    pub(crate) id: Cow<'static, str>,
    pub(crate) severity: Severity,
    pub(crate) verdict: String,
    pub(crate) culprit: (CulpritKind, String),
    /// Every affected pair; capped when the finding is made.
    pub(crate) affected: Vec<String>,
    pub(crate) evidence: Vec<String>,
    pub(crate) runbook: &'static str,
    pub(crate) suggestion: String,
}

impl Draft {
    pub(crate) fn new(
        id: impl Into<Cow<'static, str>>,
        severity: Severity,
        culprit: (CulpritKind, String),
        runbook: &'static str,
        verdict: String,
    ) -> Self {
        Draft {
            id: id.into(),
            severity,
            verdict,
            culprit,
            affected: Vec::new(),
            evidence: Vec::new(),
            runbook,
            suggestion: String::new(),
        }
    }

    pub(crate) fn affected(mut self, affected: Vec<String>) -> Self {
        self.affected = affected;
        self
    }

    pub(crate) fn evidence(mut self, evidence: Vec<String>) -> Self {
        self.evidence = evidence;
        self
    }

    pub(crate) fn suggestion(mut self, suggestion: String) -> Self {
        self.suggestion = suggestion;
        self
    }

    /// The finding, with `affected` capped at `max_affected` entries plus "and N more".
    pub(crate) fn into_finding(self, max_affected: usize) -> Option<Finding> {
        let id = FindingId::new(self.id.as_ref()).ok()?;
        let mut affected: Vec<Text<_>> =
            self.affected.iter().take(max_affected).map(|a| Text::lossy(a)).collect();
        if self.affected.len() > max_affected {
            affected.push(Text::lossy(&format!("and {} more", self.affected.len() - max_affected)));
        }
        Some(Finding {
            id,
            severity: self.severity,
            verdict: Text::lossy(&self.verdict),
            culprit: Some(Culprit { kind: self.culprit.0, name: Text::lossy(&self.culprit.1) }),
            affected,
            evidence: self.evidence.iter().take(MAX_FINDING_EVIDENCE).map(|e| Text::lossy(e)).collect(),
            runbook: Some(Text::lossy(self.runbook)),
            suggestion: Text::lossy(&self.suggestion),
        })
    }
}

/// The findings, most severe first, then by id, culprit and verdict; and where each draft
/// went (its finding's index; None when it was cut by [`MAX_FINDINGS`]). A draft equal to
/// another maps to the one kept.
pub(crate) fn finish(drafts: Vec<Draft>, max_affected: usize) -> (Vec<Finding>, Vec<Option<usize>>) {
    let n = drafts.len();
    let mut made: Vec<(usize, Finding)> = drafts
        .into_iter()
        .enumerate()
        .filter_map(|(i, d)| Some((i, d.into_finding(max_affected)?)))
        .collect();
    let key = |f: &Finding| {
        (
            Reverse(f.severity),
            f.id.as_str().to_owned(),
            f.culprit.as_ref().map(|c| (c.kind, c.name.as_str().to_owned())),
            f.verdict.as_str().to_owned(),
        )
    };
    made.sort_by(|(ia, a), (ib, b)| key(a).cmp(&key(b)).then(ia.cmp(ib)));
    let mut findings: Vec<Finding> = Vec::new();
    let mut place = vec![None; n];
    for (i, f) in made {
        if findings.last() != Some(&f) {
            findings.push(f);
        }
        place[i] = Some(findings.len() - 1);
    }
    findings.truncate(MAX_FINDINGS);
    for p in &mut place {
        *p = p.filter(|&i| i < findings.len());
    }
    (findings, place)
}
