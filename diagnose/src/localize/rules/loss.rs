//! Rule 9, partial packet loss on a node (runbook 1.6): ICMP cells that work but lose
//! packets (≥ `lossy_cell`), concentrated on one node — ≥ `loss_share` of the cross-node ICMP
//! paths in or out of it are lossy (`degraded`, and losing echoes within answered bursts: a
//! path that was down and is repaired loses whole bursts only), seen by two agents. The node with the highest share is
//! blamed first and its paths claimed, so a second node is blamed only for loss its own paths
//! still show. Paths that flap (failing now, with successes in the window) through the node
//! are claimed with it.

use std::collections::{BTreeMap, BTreeSet};

use netdiag_model::probe::ProbeKind;
use netdiag_model::{CellStatus, CulpritKind, NodeName, Severity};

use super::super::evidence::{Analysis, Obs};
use super::super::report::{Draft, ids};

fn touches(o: &Obs, n: &NodeName) -> bool {
    o.crosses_nodes() && (o.src_node() == n || o.dst_node.as_ref() == Some(n))
}

pub(super) fn node_loss(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    loop {
        let mut touching: BTreeMap<NodeName, Vec<usize>> = BTreeMap::new();
        for i in a.open() {
            let o = &a.obs[i];
            let Some(dst) = o.dst_node.as_ref() else { continue };
            if o.kind != ProbeKind::Icmp || !o.crosses_nodes() || !o.works() || o.stats.packets_sent == 0 {
                continue;
            }
            touching.entry(o.src_node().clone()).or_default().push(i);
            touching.entry(dst.clone()).or_default().push(i);
        }
        // A cell that recovered reads `ok` again while its window still holds the old loss,
        // and one recovering loses whole bursts only: loss is echoes missing from answered
        // bursts.
        let lossy = |i: usize| {
            let o = &a.obs[i];
            o.stats.status == CellStatus::Degraded
                && o.stats.loss_ratio.get() >= a.th.lossy_cell
                && o.partial_loss().is_some_and(|p| p >= a.th.lossy_cell)
        };
        let mut best: Option<(f64, NodeName, Vec<usize>, usize)> = None;
        for (n, ids) in &touching {
            let bad: Vec<usize> = ids.iter().copied().filter(|&i| lossy(i)).collect();
            let observers: BTreeSet<&NodeName> = bad.iter().map(|&i| a.obs[i].src_node()).collect();
            let agents: BTreeSet<&NodeName> = ids.iter().map(|&i| a.obs[i].src_node()).collect();
            let share = bad.len() as f64 / ids.len().max(1) as f64;
            if bad.len() < a.th.min_failing_cells
                || share < a.th.loss_share
                || observers.len() < a.need(agents.len())
            {
                continue;
            }
            if best.as_ref().is_none_or(|(s, _, b, _)| share > *s || (share == *s && bad.len() > b.len())) {
                best = Some((share, n.clone(), bad, ids.len()));
            }
        }
        let Some((_, n, bad, total)) = best else { return };
        let elsewhere: Vec<usize> = touching
            .iter()
            .filter(|(m, _)| **m != n)
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|&i| !touches(&a.obs[i], &n))
            .collect::<BTreeSet<usize>>()
            .into_iter()
            .collect();
        let elsewhere_lossy = elsewhere.iter().filter(|&&i| lossy(i)).count();
        let flapping: Vec<usize> = a
            .open()
            .filter(|&i| {
                let o = &a.obs[i];
                o.failed() && o.stats.successes > 0 && touches(o, &n) && o.kind != ProbeKind::Mtu
            })
            .collect();
        // Other kinds through the node lose their share too (a connect or lookup retried).
        let collateral: Vec<usize> = a
            .open()
            .filter(|&i| {
                let o = &a.obs[i];
                o.is_bad() && !o.failed() && touches(o, &n) && !bad.contains(&i)
            })
            .collect();
        a.claim(&bad);
        a.claim(&flapping);
        a.claim(&collateral);
        // Lookups and VIP connects whose backend sits across the lossy node lose with it (a
        // resolver on that node looks degraded from everywhere).
        let dependents = a.claim_dependents(|o, b, _| {
            b.node.as_ref().is_some_and(|bn| (bn == &n) != (o.dnat_node() == &n))
        });
        // Per packet, pooled over the paths, since the loss began.
        let mean = 100.0 * a.pooled_onset(&bad).loss();
        let losses: Vec<f64> = bad.iter().map(|&i| a.obs[i].stats.loss_ratio.get()).collect();
        let max = 100.0 * losses.iter().copied().fold(0.0, f64::max);
        let clean = if elsewhere.is_empty() {
            String::new()
        } else if elsewhere_lossy == 0 {
            ", paths elsewhere are clean".to_owned()
        } else {
            format!(", {elsewhere_lossy} of {} paths elsewhere lose packets too", elsewhere.len())
        };
        let verdict = format!(
            "{n} loses packets: {} of {total} ICMP paths through it lose {mean:.0}% of their packets since it began (worst path {max:.0}% over the window){clean}",
            bad.len()
        );
        let mut evidence = a.cell_lines(&bad);
        if !flapping.is_empty() {
            evidence.push(format!(
                "{} other paths through {n} flap (failing now, working earlier)",
                flapping.len()
            ));
        }
        let mut affected = a.paths(&bad);
        affected.extend(a.paths(&flapping));
        affected.extend(a.paths(&collateral));
        affected.extend(a.paths(&dependents));
        out.push(
            Draft::new(
                ids::NODE_PACKET_LOSS,
                Severity::Warning,
                (CulpritKind::Node, n.to_string()),
                "1.6",
                verdict,
            )
            .affected(affected)
            .evidence(evidence)
            .suggestion(format!(
                "check {n}'s uplink: `ip -s link` (errors, drops), `ethtool -S` counters, a duplex or cable \
                     fault, a policer or a `-m statistic` rule (`iptables-save | grep statistic` on {n})"
            )),
        );
    }
}
