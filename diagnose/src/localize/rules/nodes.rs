//! Rule 1, a node cut off (runbook 1.6): every cross-node path in and out of one node fails,
//! seen by at least two other nodes' agents (one, when only one other can see it), while other nodes still reach each other. A node
//! with any working path to another node is cleared. The isolated node's own agent usually
//! cannot report (its cells are unknown), so the verdict rests on the other agents.

use std::collections::{BTreeMap, BTreeSet};

use netdiag_model::{CulpritKind, NodeName, Severity};

use super::super::evidence::Analysis;
use super::super::report::{Draft, ids};

pub(super) fn isolated(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    loop {
        // One pass: the open cross-node cells touching each node, and the working ones overall.
        let mut touching: BTreeMap<NodeName, Vec<usize>> = BTreeMap::new();
        let mut working_cross = 0usize;
        for i in a.open() {
            let o = &a.obs[i];
            let Some(dst) = o.dst_node.as_ref().filter(|_| o.crosses_nodes()) else { continue };
            working_cross += usize::from(o.works());
            touching.entry(o.src_node().clone()).or_default().push(i);
            touching.entry(dst.clone()).or_default().push(i);
        }
        let mut best: Option<(NodeName, Vec<usize>)> = None;
        for (n, cross) in &touching {
            let t = a.tally(cross);
            let others = t.observers.iter().filter(|o| *o != n).count();
            // Two other observers where two can see it; on three nodes with one agent silent,
            // the one left.
            let could = t.agents.iter().filter(|o| *o != n).count();
            // Cleared by any working path; the other nodes must still reach each other.
            let others_fine = working_cross > t.working;
            if t.working > 0
                || !others_fine
                || t.failing.len() < a.th.min_failing_cells
                || others < a.need(could)
            {
                continue;
            }
            if best.as_ref().is_none_or(|(_, f)| t.failing.len() > f.len()) {
                best = Some((n.clone(), t.failing));
            }
        }
        let Some((n, failing)) = best else { return };
        a.claim(&failing);
        let dependents = a.claim_dependents(|o, b, _| {
            b.node.as_ref().is_some_and(|bn| (bn == &n) != (o.dnat_node() == &n))
        });
        out.push(draft(a, &n, &failing, &dependents));
    }
}

fn draft(a: &Analysis<'_>, n: &NodeName, failing: &[usize], dependents: &[usize]) -> Draft {
    let observers: BTreeSet<&NodeName> =
        failing.iter().map(|&i| a.obs[i].src_node()).filter(|o| *o != n).collect();
    let verdict = format!(
        "node {n} is cut off: every path in and out of it fails ({} cross-node paths, seen from {} other nodes), \
         other nodes reach each other",
        failing.len(),
        observers.len()
    );
    let mut evidence = Vec::new();
    if !a.agent_fresh(n) {
        evidence.push(format!(
            "{n}'s agent has not been heard from recently: its own probes are unknown, not failed \
             (the node may be down, or cut off from the collector too)"
        ));
    }
    for link in a.ctx.node_uplinks(n) {
        evidence.push(format!(
            "{n}'s uplink {} is {}, mtu {} (last inspection)",
            link.name,
            if link.up { "up" } else { "DOWN" },
            link.mtu
        ));
    }
    if !dependents.is_empty() {
        evidence.push(format!(
            "{} service and DNS paths fail because their backends sit on the other side",
            dependents.len()
        ));
    }
    evidence.extend(a.cell_lines(failing));
    let mut affected = a.paths(failing);
    affected.extend(a.paths(dependents));
    Draft::new(ids::NODE_ISOLATED, Severity::Critical, (CulpritKind::Node, n.to_string()), "1.6", verdict)
        .affected(affected)
        .evidence(evidence)
        .suggestion(format!(
            "check node {n} itself: is it Ready (`kubectl get node {n}`)? its uplink (`ip -s link`, NIC, \
             cabling), and rules dropping everything on it (`iptables-save | grep -e DROP -e REJECT` on {n})"
        ))
}
