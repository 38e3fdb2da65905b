//! The completeness invariant's last step: every cell the matrix calls failed or degraded ends
//! claimed by exactly one finding. What the rules and the class layer left goes here:
//!
//! - a quiet agent's cells (frozen when it went quiet) join the finding that blames its node,
//!   or else an `agent-quiet` finding for that node — its silence is itself the news;
//! - a pod's failing probes of itself join the finding that blames the pod, or the residue;
//! - every other open failed or degraded cell goes to one `unexplained-failures` finding:
//!   the paths grouped by source node, destination and kind, the cells as evidence, the best
//!   rejected explanations and why each fell short, and the runbook's next manual step.
//!
//! Silence is never an answer: a failing path nobody explains is the worst thing a
//! diagnostic tool can show.

use std::collections::BTreeMap;

use netdiag_model::{CellStatus, CulpritKind, NodeName, Severity};

use super::cover::Rejected;
use super::evidence::{Analysis, Claim, Held, Obs};
use super::report::{Draft, ids};

/// Rejected explanations listed in the residual finding.
const MAX_REJECTED: usize = 4;

pub(crate) fn run(a: &mut Analysis<'_>, out: &mut Vec<Draft>, rejected: &[Rejected]) {
    held(a, out);
    let mut residue: Vec<usize> = a
        .open()
        .filter(|&i| matches!(a.obs[i].stats.status, CellStatus::Failed | CellStatus::Degraded))
        .collect();
    let self_probes: Vec<usize> =
        (0..a.held.len()).filter(|&h| a.held[h].2 == Claim::Open && a.held[h].1 == Held::SelfProbe).collect();
    if residue.is_empty() && self_probes.is_empty() {
        return;
    }
    let index = out.len();
    let mut groups: BTreeMap<(String, String), usize> = BTreeMap::new();
    for &i in &residue {
        let o = &a.obs[i];
        let dst = o.dst_node.as_ref().map_or_else(|| o.dest.to_string(), |n| format!("pods on {n}"));
        *groups.entry((format!("from {}", o.src_node()), format!("{dst} ({})", o.kind))).or_default() += 1;
    }
    let mut evidence: Vec<String> =
        groups.iter().map(|((s, d), n)| format!("{s} to {d}: {n} paths")).collect();
    evidence.extend(a.cell_lines(&residue));
    evidence.extend(
        self_probes.iter().take(4).map(|&h| format!("{} (the pod's probe of itself)", a.held[h].0.line())),
    );
    for r in rejected.iter().take(MAX_REJECTED) {
        evidence.push(format!("not {}", r.line()));
    }
    let n = residue.len() + self_probes.len();
    let failed = residue.iter().filter(|&&i| a.obs[i].failed()).count();
    let sources: std::collections::BTreeSet<&NodeName> =
        residue.iter().map(|&i| a.obs[i].src_node()).collect();
    let verdict = format!(
        "{n} paths are failing or degraded ({failed} failing) and no single component explains them: \
         seen from {} node(s); they are listed here so none goes unreported",
        sources.len()
    );
    let first = residue.first().map(|&i| &a.obs[i]).or_else(|| self_probes.first().map(|&h| &a.held[h].0));
    let suggestion = match first {
        Some(o) => format!(
            "walk one of them by hand, step by step: `netdiag probe --from {} --to {}`; then compare a working and a \
             failing path in `netdiag matrix --problems` (same source, same destination node, same kind)",
            match &o.source {
                netdiag_model::probe::Source::Pod(p) => p.to_string(),
                netdiag_model::probe::Source::Node(n) => format!("node/{n}"),
            },
            probe_target(o)
        ),
        None => String::new(),
    };
    let mut affected = a.paths(&residue);
    affected.extend(self_probes.iter().map(|&h| a.held[h].0.path()));
    residue.sort_unstable();
    a.claim_for(&residue, index);
    for h in self_probes {
        a.held[h].2 = Claim::Draft(index);
    }
    out.push(
        Draft::new(
            ids::UNEXPLAINED_FAILURES,
            Severity::Warning,
            (CulpritKind::Path, "unexplained paths".to_owned()),
            "1.6",
            verdict,
        )
        .affected(affected)
        .evidence(evidence)
        .suggestion(suggestion),
    );
}

/// How `netdiag probe` names a cell's destination.
fn probe_target(o: &Obs) -> String {
    use crate::matrix::Destination;
    match &o.dest {
        Destination::Pod { pod, port: Some(p), .. } => format!("{pod} --port {p}"),
        Destination::Pod { pod, .. } => pod.to_string(),
        Destination::Endpoint { pod, port, .. } => format!("{pod} --port {port}"),
        Destination::Service { service, port, .. } => format!("svc/{service}:{port}"),
        Destination::Node { node, .. } => format!("node/{node}"),
        Destination::Dns { name, .. } => name.to_string(),
        Destination::Address { ip, port: Some(p) } => format!("{ip}:{p}"),
        other => other.to_string(),
    }
}

/// Quiet agents' cells and pods' probes of themselves: to the finding that blames their
/// node or pod, else (quiet agents) an `agent-quiet` finding per node.
fn held(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let owner_of = |out: &[Draft], kind: CulpritKind, name: &str| {
        out.iter().position(|d| d.culprit.0 == kind && d.culprit.1 == name && d.severity >= Severity::Warning)
    };
    let mut quiet: BTreeMap<NodeName, Vec<usize>> = BTreeMap::new();
    for h in 0..a.held.len() {
        let (o, why, claim) = &a.held[h];
        if *claim != Claim::Open {
            continue;
        }
        match why {
            Held::Quiet => {
                let node = o.src_node().clone();
                match owner_of(out, CulpritKind::Node, node.as_str()) {
                    Some(d) => a.held[h].2 = Claim::Draft(d),
                    None => quiet.entry(node).or_default().push(h),
                }
            }
            Held::SelfProbe => {
                // The finding that explains the same destination from elsewhere explains the
                // pod's own probe of it (a dead DNS server's probe of itself), else the one
                // that blames the pod.
                let same = (0..a.obs.len())
                    .find(|&i| a.obs[i].dest == o.dest && a.obs[i].kind == o.kind && a.owner(i).is_some())
                    .and_then(|i| a.owner(i));
                let pod = o.src_pod().and_then(|p| owner_of(out, CulpritKind::Pod, &p.to_string()));
                if let Some(d) = same.or(pod) {
                    a.held[h].2 = Claim::Draft(d);
                }
            }
        }
    }
    for (node, hs) in quiet {
        let last = a.matrix.agent_last_seen(&node).map(|t| a.now.since(t).as_secs());
        let ago = last.map_or_else(|| "a while".to_owned(), |s| format!("{s} s"));
        let verdict = format!(
            "no data from {node}'s agent for {ago}: its {} failing or degraded paths are frozen where it left them",
            hs.len()
        );
        let mut evidence =
            vec![format!("{node}'s agent last reported {ago} ago; other agents report every few seconds")];
        evidence.extend(hs.iter().take(a.th.max_evidence_cells).map(|&h| a.held[h].0.line()));
        let index = out.len();
        let affected = hs.iter().map(|&h| a.held[h].0.path()).collect();
        for &h in &hs {
            a.held[h].2 = Claim::Draft(index);
        }
        out.push(
            Draft::new(
                ids::AGENT_QUIET,
                Severity::Warning,
                (CulpritKind::Node, node.to_string()),
                "1.6",
                verdict,
            )
            .affected(affected)
            .evidence(evidence)
            .suggestion(format!(
                "check netdiag's agent on {node} (`kubectl -n netdiag get pods -o wide --field-selector \
                     spec.nodeName={node}`, its logs) and whether {node} itself is reachable"
            )),
        );
    }
}
