//! Rule 0, a node that does not forward for its pods (runbook 1.6, "PodIP fails: node routes,
//! network plugin"). The failing paths are the ones that need the node to forward — its pods'
//! packets to anywhere but the node itself, and anything but the node itself to its pods —
//! while what the node delivers to itself, or sends itself, works. Read first, because the
//! symptoms alone scatter: every pod on the node looks down or its ports dropped, every pair
//! with the node looks broken, while the node's own address answers everyone.
//!
//! Two forms:
//! - `node-forwarding-disabled`: the node's inspection reads `net.ipv4.ip_forward = 0`, the
//!   cause on record;
//! - `node-forwarding-broken`: no such setting, but the pattern is unmistakable — (nearly)
//!   every forwarded path fails, seen from two nodes where two can see, including pod to pod
//!   on the node itself (which no uplink or peer can explain), while the node reaches its own
//!   pods and other nodes reach the node's address. A FORWARD policy of DROP, a CNI bridge
//!   down, a broken veth setup do this.

use std::collections::{BTreeMap, BTreeSet};

use netdiag_model::inspect::FilterHook;
use netdiag_model::probe::Source;
use netdiag_model::{CulpritKind, NodeName, Severity};

use super::super::context::{Backend, Context};
use super::super::evidence::{Analysis, Obs};
use super::super::hooks::hooks;
use super::super::report::{Draft, ids};
use crate::matrix::Destination;

const KEY: &str = "net.ipv4.ip_forward";

/// Whether the path of `o` is forwarded by `n` (pod traffic in or out of it, not the node's own).
fn forwarded_by(o: &Obs, n: &NodeName) -> bool {
    let dst = o.dst_node.as_ref().map(|d| (d, o.dst_pod.is_some()));
    hooks(&o.source, o.src_node(), dst).iter().any(|(m, hook)| m == n && *hook == FilterHook::Forward)
}

/// Pod to pod on `n` itself: forwarded by `n` and by nothing else.
fn within(o: &Obs, n: &NodeName) -> bool {
    o.src_pod().is_some() && o.src_node() == n && o.dst_pod.is_some() && o.dst_node.as_ref() == Some(n)
}

/// What `n` delivers to or sends from itself: the node to its own pods, its pods to its
/// address, other nodes to its address.
fn delivered(o: &Obs, n: &NodeName) -> bool {
    let from_node_itself = matches!(&o.source, Source::Node(m) if m == n);
    // The node's own address itself: a NodePort there is DNATed to a pod and forwarded.
    let to_node_itself = matches!(&o.dest, Destination::Node { node, .. } if node == n);
    (from_node_itself && o.dst_pod.is_some() && o.dst_node.as_ref() == Some(n))
        || (to_node_itself && !from_node_itself)
}

pub(super) fn disabled(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let nodes: Vec<(NodeName, Option<String>)> = a
        .ctx
        .node_reports
        .iter()
        .map(|(n, r)| (n.clone(), Context::sysctl(r, KEY).map(str::to_owned)))
        .collect();
    for (n, value) in &nodes {
        if value.as_deref() == Some("0") {
            let failing: Vec<usize> =
                a.open().filter(|&i| a.obs[i].is_bad() && forwarded_by(&a.obs[i], n)).collect();
            if failing.is_empty() {
                continue;
            }
            let peers: Vec<&str> =
                nodes.iter().filter(|(m, _)| m != n).filter_map(|(_, v)| v.as_deref()).collect();
            let on = peers.iter().filter(|v| **v == "1").count();
            let cause = format!(
                "inspection of node {n}: {KEY} = 0{}",
                if peers.is_empty() {
                    String::new()
                } else {
                    format!(" ({on} of {} other nodes: 1)", peers.len())
                }
            );
            claim_and_report(a, out, n, &failing, Cause::Disabled(cause));
        }
    }
    // One pass over the cells, then each node judged on its own lists (a scan per node was
    // most of a 500-node diagnosis).
    let mut by_node: BTreeMap<NodeName, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for i in a.open() {
        let o = &a.obs[i];
        let ends = std::iter::once(o.src_node()).chain(o.dst_node.as_ref());
        for n in ends.collect::<BTreeSet<_>>() {
            if forwarded_by(o, n) {
                by_node.entry(n.clone()).or_default().0.push(i);
            } else if delivered(o, n) {
                by_node.entry(n.clone()).or_default().1.push(i);
            }
        }
    }
    for (n, (forwarded, delivered)) in by_node {
        if let Some((failing, contrast)) = broken(a, &n, &forwarded, &delivered) {
            claim_and_report(a, out, &n, &failing, Cause::Broken(contrast));
        }
    }
}

/// The failing forwarded paths of `n` and the contrast, when the pattern holds.
fn broken(
    a: &Analysis<'_>,
    n: &NodeName,
    forwarded: &[usize],
    delivered: &[usize],
) -> Option<(Vec<usize>, String)> {
    let failing: Vec<usize> =
        forwarded.iter().copied().filter(|&i| a.is_open(i) && a.obs[i].failed()).collect();
    if failing.len() < a.th.min_failing_cells {
        return None;
    }
    let working = forwarded.iter().filter(|&&i| a.obs[i].works() && !a.obs[i].failed()).count();
    let share = failing.len() as f64 / (failing.len() + working).max(1) as f64;
    let inside_failing = failing.iter().filter(|&&i| within(&a.obs[i], n)).count();
    let delivered_ok = delivered.iter().filter(|&&i| a.obs[i].works() && !a.obs[i].failed()).count();
    let delivered_bad = delivered.iter().filter(|&&i| a.obs[i].failed()).count();
    // Independent observers of the outside: other nodes' agents.
    let observers: BTreeSet<&NodeName> =
        failing.iter().map(|&i| a.obs[i].src_node()).filter(|m| *m != n).collect();
    let could: BTreeSet<&NodeName> =
        forwarded.iter().map(|&i| a.obs[i].src_node()).filter(|m| *m != n).collect();
    let holds = failing.len() >= a.th.min_failing_cells
        && share >= a.th.fail_share
        && inside_failing > 0
        && delivered_ok > 0
        && delivered_bad == 0
        && observers.len() >= a.need(could.len());
    holds.then(|| {
        (
            failing.clone(),
            format!(
                "{} of {} paths {n} forwards fail (pod to pod on {n} itself among them: {inside_failing}), while {delivered_ok} paths {n} delivers itself work ({n} to its pods, its pods and other nodes to its address)",
                failing.len(),
                failing.len() + working
            ),
        )
    })
}

enum Cause {
    /// The inspection line that says forwarding is off.
    Disabled(String),
    /// The contrast that says forwarding fails.
    Broken(String),
}

fn claim_and_report(
    a: &mut Analysis<'_>,
    out: &mut Vec<Draft>,
    n: &NodeName,
    failing: &[usize],
    cause: Cause,
) {
    let working =
        a.open().filter(|&i| a.obs[i].works() && !a.obs[i].failed() && forwarded_by(&a.obs[i], n)).count();
    a.claim(failing);
    // Service paths to a backend on the node, unless the node's own namespace reaches it
    // through its own NAT rules (delivered, not forwarded).
    let behind = |o: &Obs, b: &Backend| {
        let local = matches!(&o.source, Source::Node(m) if m == n) && o.dnat_node() == n;
        b.node.as_ref() == Some(n) && !local
    };
    let dependents = a.claim_dependents(|o, b, _| behind(o, b));
    // Paths that lost something through the node without (yet) reading degraded — a VIP
    // whose backend on the node fails a third of the connects — are its doing too, not
    // evidence of a second fault.
    let touched: Vec<usize> = a
        .open()
        .filter(|&i| {
            let o = &a.obs[i];
            o.stats.since_repair.troubled()
                && (forwarded_by(o, n)
                    || a.service_of(o).is_some_and(|s| s.backends.iter().any(|b| behind(o, b))))
        })
        .collect();
    a.claim(&touched);
    let (id, first, verdict, suggestion) = match cause {
        Cause::Disabled(line) => (
            ids::NODE_FORWARDING_DISABLED,
            line,
            format!(
                "node {n} does not forward packets ({KEY} = 0): its pods cannot reach or be reached from anywhere but {n} itself ({} paths fail), while its own address answers",
                failing.len()
            ),
            format!(
                "turn forwarding back on: `sysctl -w {KEY}=1` on {n}, and find what turned it off (a sysctl.d file, \
                 a security hardening profile, the network plugin's own setting) so it stays on"
            ),
        ),
        Cause::Broken(contrast) => (
            ids::NODE_FORWARDING_BROKEN,
            contrast,
            format!(
                "node {n} forwards nothing for its pods: {} paths through it fail, pod to pod on {n} too, while {n} itself reaches its pods and its address answers",
                failing.len()
            ),
            format!(
                "on {n}: the FORWARD chain's policy and drops (`iptables -S FORWARD`, `nft list ruleset`), \
                 `sysctl {KEY}`, the CNI bridge and the pods' veths (`ip -d link`, `bridge link`), the network plugin's pod on {n}"
            ),
        ),
    };
    let mut evidence = vec![first];
    if working > 0 {
        evidence.push(format!(
            "{working} paths through it still work (established flows, or not yet probed since the change)"
        ));
    }
    evidence.extend(a.cell_lines(failing));
    if !dependents.is_empty() {
        evidence.push(format!("{} service paths with backends on {n} fail with it", dependents.len()));
    }
    let mut affected = a.paths(failing);
    affected.extend(a.paths(&dependents));
    out.push(
        Draft::new(id, Severity::Critical, (CulpritKind::Node, n.to_string()), "1.6", verdict)
            .affected(affected)
            .evidence(evidence)
            .suggestion(suggestion),
    );
}
