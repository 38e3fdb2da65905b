//! Scoring a localization against the faults a scenario injected.
//!
//! A finding *names* a fault exactly when its culprit has the fault's kind and name and, for
//! directional and filter classes, its direction (read from the id: `…-inbound-…`,
//! `…-outbound-…` or `node-sources-…`, or the MTU rule's "toward N" / "from N") or source
//! group (the culprit's "… from node N" / "… from namespace NS"). It names the fault's
//! *component* when kind and name fit but a qualifier does not (the wrong direction, a pod
//! blamed whole for a filter).
//!
//! Per fault, one verdict: **correct** (a finding names it exactly), **wrong** (not correct,
//! and some of its bad cells are claimed by a finding other than the residual ones) or
//! **silent** (its bad cells are claimed only by `unexplained-failures` or `agent-quiet`, or
//! it left no bad cell at all). Per scenario: the *spurious* findings (not residual, naming no
//! injected component) and the completeness invariant (every failed or degraded pod-level cell
//! claimed exactly once, by a finding that exists).

use std::collections::HashMap;

use netdiag_model::{CellStatus, CulpritKind, Finding};

use super::fault::{Direction, Fault};
use super::{Scenario, Simulation, now};
use crate::localize::Localization;
use crate::matrix::PodKey;

/// Findings that explain nothing by themselves.
const RESIDUAL: [&str; 2] = ["unexplained-failures", "agent-quiet"];

/// One fault's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Correct,
    Wrong,
    Silent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FaultScore {
    pub fault: Fault,
    pub verdict: Verdict,
    /// Some finding names the fault's component, exactly or not.
    pub component: bool,
    /// Failed or degraded pod-level cells the fault touched.
    pub bad_cells: usize,
}

/// A scenario's score.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Score {
    pub faults: Vec<FaultScore>,
    pub findings: usize,
    /// `id culprit` of each finding that is not residual and names no injected component.
    pub spurious: Vec<String>,
    /// The scenario has an `unexplained-failures` finding.
    pub unexplained: bool,
    /// Failed or degraded pod-level cells.
    pub bad_cells: usize,
    /// Completeness violations: bad cells not claimed, claimed twice, claims of cells that are
    /// not bad or of findings that do not exist.
    pub violations: usize,
}

impl Score {
    /// Findings on a scenario without faults: every finding but `agent-quiet` (which is true
    /// of a silent agent).
    pub fn false_findings(&self) -> usize {
        self.spurious.len() + usize::from(self.unexplained)
    }
}

/// How well a finding fits a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fit {
    None,
    Component,
    Exact,
}

/// Scores `loc`, the localization of `sim`, against `scenario`'s faults.
pub fn score(scenario: &Scenario, sim: &Simulation, loc: &Localization) -> Score {
    let bad: HashMap<&PodKey, CellStatus> = sim
        .matrix
        .pod_cells(now())
        .filter(|(_, s)| matches!(s.status, CellStatus::Failed | CellStatus::Degraded))
        .map(|(k, s)| (k, s.status))
        .collect();
    let owner: HashMap<&PodKey, usize> = loc.claims.iter().map(|(k, f)| (k, *f)).collect();
    let residual = |f: usize| loc.findings.get(f).is_none_or(|f| RESIDUAL.contains(&f.id.as_str()));
    let faults = (0..)
        .zip(&scenario.faults)
        .map(|(bit, fault): (u32, &Fault)| {
            let fits: Vec<Fit> = loc.findings.iter().map(|f| fit(fault, f)).collect();
            let cells: Vec<&PodKey> = sim
                .touched
                .iter()
                .filter(|(k, mask)| mask & (1 << bit) != 0 && bad.contains_key(k))
                .map(|(k, _)| k)
                .collect();
            let explained = cells.iter().filter_map(|k| owner.get(k)).any(|&f| !residual(f));
            let verdict = if fits.contains(&Fit::Exact) {
                Verdict::Correct
            } else if explained {
                Verdict::Wrong
            } else {
                Verdict::Silent
            };
            FaultScore {
                fault: fault.clone(),
                verdict,
                component: fits.iter().any(|&f| f >= Fit::Component),
                bad_cells: cells.len(),
            }
        })
        .collect();
    let spurious = loc
        .findings
        .iter()
        .filter(|f| !RESIDUAL.contains(&f.id.as_str()))
        .filter(|f| scenario.faults.iter().all(|fault| fit(fault, f) == Fit::None))
        .map(describe)
        .collect();
    Score {
        faults,
        findings: loc.findings.len(),
        spurious,
        unexplained: loc.findings.iter().any(|f| f.id.as_str() == RESIDUAL[0]),
        bad_cells: bad.len(),
        violations: violations(&bad, loc),
    }
}

/// `id culprit-kind culprit-name`, for reports.
pub fn describe(f: &Finding) -> String {
    match &f.culprit {
        Some(c) => format!("{} {} {}", f.id, c.kind, c.name),
        None => f.id.to_string(),
    }
}

/// Completeness violations: every bad cell claimed exactly once, by a finding that exists, and
/// nothing else claimed.
fn violations(bad: &HashMap<&PodKey, CellStatus>, loc: &Localization) -> usize {
    let mut claimed: HashMap<&PodKey, usize> = HashMap::new();
    let mut out = 0;
    for (k, f) in &loc.claims {
        *claimed.entry(k).or_default() += 1;
        if *f >= loc.findings.len() || !bad.contains_key(k) {
            out += 1;
        }
    }
    out += claimed.values().map(|&n| n.saturating_sub(1)).sum::<usize>();
    out + bad.keys().filter(|k| !claimed.contains_key(*k)).count()
}

/// The direction a finding gives its node `node`: from its id (`node-sources-…` is every
/// probe sent from the node: out of it), or the MTU rule's wording.
fn direction(f: &Finding, node: &str) -> Option<Direction> {
    let id = f.id.as_str();
    if id.contains("inbound") {
        return Some(Direction::In);
    }
    if id.contains("outbound") || id.starts_with("node-sources") {
        return Some(Direction::Out);
    }
    let verdict = f.verdict.as_str();
    if id.starts_with("mtu-") && verdict.contains(&format!(" toward {node} ")) {
        return Some(Direction::In);
    }
    if id.starts_with("mtu-") && verdict.contains(&format!(" from {node} ")) {
        return Some(Direction::Out);
    }
    None
}

/// How well finding `f` names `fault`.
fn fit(fault: &Fault, f: &Finding) -> Fit {
    let id = f.id.as_str();
    let Some(c) = f.culprit.as_ref().filter(|_| !RESIDUAL.contains(&id)) else { return Fit::None };
    let name = c.name.as_str();
    let exact_if = |yes: bool| if yes { Fit::Exact } else { Fit::Component };
    match (fault, c.kind) {
        (Fault::PodDown(p), CulpritKind::Pod) if pod_named(name, &p.to_string()) => {
            exact_if(name == p.to_string() && direction(f, "").is_none())
        }
        (Fault::PodDown(p) | Fault::Filter(p, _), CulpritKind::Port)
        | (Fault::PortRefused(p, _) | Fault::PortDropped(p, _), CulpritKind::Pod)
            if name.starts_with(&p.to_string()) =>
        {
            Fit::Component
        }
        (Fault::PortRefused(p, port) | Fault::PortDropped(p, port), CulpritKind::Port)
            if name.starts_with(&format!("{p}:")) =>
        {
            exact_if(name == format!("{p}:{port}"))
        }
        (Fault::Filter(p, g), CulpritKind::Pod) if pod_named(name, &p.to_string()) => {
            exact_if(name == format!("{p} from {g}"))
        }
        (Fault::NodeIsolated(n), CulpritKind::Node) if name == n.as_str() => {
            exact_if(direction(f, name).is_none() && id != "icmp-filtered")
        }
        (Fault::PairCut(a, b), CulpritKind::NodePair) => {
            let both = [format!("{a}↔{b}"), format!("{b}↔{a}")];
            let one = [format!("{a}→{b}"), format!("{b}→{a}")];
            if both.iter().any(|s| s == name) {
                Fit::Exact
            } else if one.iter().any(|s| s == name) {
                Fit::Component
            } else {
                Fit::None
            }
        }
        (Fault::MtuOneWay(n, d), CulpritKind::Node) if name == n.as_str() => {
            exact_if(direction(f, name) == Some(*d) && id.contains("mtu"))
        }
        (Fault::Loss { node, direction: d, .. }, CulpritKind::Node) if name == node.as_str() => {
            exact_if(direction(f, name) == *d && id != "icmp-filtered" && !id.contains("mtu"))
        }
        (Fault::IcmpFiltered(n), CulpritKind::Node) if name == n.as_str() => exact_if(id == "icmp-filtered"),
        (Fault::ForwardingBroken(n), CulpritKind::Node) if name == n.as_str() => {
            exact_if(id == "node-forwarding-broken")
        }
        (Fault::NatRewrite(n, ..), CulpritKind::Node) if name == n.as_str() => exact_if(id == "nat-rewrite"),
        (Fault::DnsDown, CulpritKind::Dns) => exact_if(!name.contains(" from ") && !id.contains("degraded")),
        (Fault::DnsLoss(_), CulpritKind::Dns) => {
            exact_if(!name.contains(" from ") && id.contains("degraded"))
        }
        _ => Fit::None,
    }
}

/// The culprit is the pod `pod`, whole or from a group of sources.
fn pod_named(name: &str, pod: &str) -> bool {
    name == pod || name.strip_prefix(pod).is_some_and(|rest| rest.starts_with(" from "))
}
