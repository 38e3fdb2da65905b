//! Rule 0, a node that does not forward (runbook 1.6, "PodIP fails: node routes, network
//! plugin"): its inspection reads `net.ipv4.ip_forward = 0`, and the failing paths are the
//! ones that need the node to forward — its pods' packets to anywhere but the node itself, and
//! anything but the node itself to its pods. Read first, from the inspection, because the
//! symptom alone scatters: every pod on the node looks down or its ports dropped, every pair
//! with the node looks broken, while the node's own address answers everyone.

use netdiag_model::probe::Source;
use netdiag_model::{CulpritKind, NodeName, Severity};

use super::super::context::{Backend, Context};
use super::super::evidence::{Analysis, Obs};
use super::super::report::{Draft, ids};

const KEY: &str = "net.ipv4.ip_forward";

/// Whether the path of `o` is forwarded by `n` (pod traffic in or out of it, not the node's own).
fn forwarded_by(o: &Obs, n: &NodeName) -> bool {
    let src_pod_here = o.src_pod().is_some() && o.src_node() == n;
    let to_node_itself = o.dst_pod.is_none() && o.dst_node.as_ref() == Some(n);
    let dst_pod_here = o.dst_pod.is_some() && o.dst_node.as_ref() == Some(n);
    let from_node_itself = matches!(&o.source, Source::Node(m) if m == n);
    (src_pod_here && !to_node_itself) || (dst_pod_here && !from_node_itself)
}

pub(super) fn disabled(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let off: Vec<NodeName> = a
        .ctx
        .node_reports
        .iter()
        .filter(|(_, r)| Context::sysctl(r, KEY) == Some("0"))
        .map(|(n, _)| n.clone())
        .collect();
    for n in off {
        let failing: Vec<usize> =
            a.open().filter(|&i| a.obs[i].is_bad() && forwarded_by(&a.obs[i], &n)).collect();
        if failing.is_empty() {
            continue;
        }
        let working = a.open().filter(|&i| a.obs[i].works() && forwarded_by(&a.obs[i], &n)).count();
        a.claim(&failing);
        // Service paths to a backend on the node, unless the node's own namespace reaches it
        // through its own NAT rules (delivered, not forwarded).
        let behind = |o: &Obs, b: &Backend| {
            let local = matches!(&o.source, Source::Node(m) if m == &n) && o.dnat_node() == &n;
            b.node.as_ref() == Some(&n) && !local
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
                    && (forwarded_by(o, &n)
                        || a.service_of(o).is_some_and(|s| s.backends.iter().any(|b| behind(o, b))))
            })
            .collect();
        a.claim(&touched);
        let peers: Vec<String> = a
            .ctx
            .node_reports
            .iter()
            .filter(|(m, _)| **m != n)
            .filter_map(|(_, r)| Context::sysctl(r, KEY).map(str::to_owned))
            .collect();
        let on = peers.iter().filter(|v| v.as_str() == "1").count();
        let mut evidence = vec![format!(
            "inspection of node {n}: {KEY} = 0{}",
            if peers.is_empty() {
                String::new()
            } else {
                format!(" ({on} of {} other nodes: 1)", peers.len())
            }
        )];
        if working > 0 {
            evidence.push(format!(
                "{working} paths through it still work (established flows, or not yet probed since the change)"
            ));
        }
        evidence.extend(a.cell_lines(&failing));
        if !dependents.is_empty() {
            evidence.push(format!("{} service paths with backends on {n} fail with it", dependents.len()));
        }
        let mut affected = a.paths(&failing);
        affected.extend(a.paths(&dependents));
        out.push(
            Draft::new(
                ids::NODE_FORWARDING_DISABLED,
                Severity::Critical,
                (CulpritKind::Node, n.to_string()),
                "1.6",
                format!(
                    "node {n} does not forward packets ({KEY} = 0): its pods cannot reach or be reached from anywhere but {n} itself ({} paths fail), while its own address answers",
                    failing.len()
                ),
            )
            .affected(affected)
            .evidence(evidence)
            .suggestion(format!(
                "turn forwarding back on: `sysctl -w {KEY}=1` on {n}, and find what turned it off (a sysctl.d file, \
                 a security hardening profile, the network plugin's own setting) so it stays on"
            )),
        );
    }
}
