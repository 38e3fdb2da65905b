//! Rule 8, the path MTU (runbook 1.6, "PodIP fails: node routes, network plugin"): nodes probe
//! one pod on every other node with don't-fragment echoes of decreasing size. Cells whose path
//! MTU comes back below the route MTU are *reduced*; when they concentrate on one node (≥
//! `fail_share` of the MTU paths in or out of it, seen by two agents) that node is blamed:
//! "packets over N bytes toward node B vanish". Reduced paths left over are blamed on their
//! node pair. The matrix keeps no path MTU number; it is read back from the cell's last error
//! (the agent writes "path MTU to <ip> is <n> bytes").

use std::collections::{BTreeMap, BTreeSet};

use netdiag_model::probe::ProbeKind;
use netdiag_model::{CulpritKind, MtuFailure, NodeName, Outcome, Severity};

use super::super::evidence::{Analysis, Obs};
use super::super::report::{Draft, ids};

fn is_reduced(o: &Obs) -> bool {
    o.failed() && o.failure() == Some(Outcome::Mtu(MtuFailure::Reduced))
}

/// The path MTU an agent's detail names: `path MTU to 10.244.2.2 is 1400 bytes…`.
pub(crate) fn parse_path_mtu(text: &str) -> Option<u32> {
    let after = &text[text.find("path MTU to ")? + "path MTU to ".len()..];
    let after = &after[after.find(" is ")? + " is ".len()..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub(super) fn reduced(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    mismatched_uplinks(a, out);
    loop {
        let mut touching: BTreeMap<NodeName, Vec<usize>> = BTreeMap::new();
        for i in a.open() {
            let o = &a.obs[i];
            let Some(dst) = o.dst_node.as_ref().filter(|_| o.kind == ProbeKind::Mtu && o.crosses_nodes())
            else {
                continue;
            };
            touching.entry(o.src_node().clone()).or_default().push(i);
            touching.entry(dst.clone()).or_default().push(i);
        }
        let mut best: Option<(NodeName, Vec<usize>)> = None;
        for (n, ids) in &touching {
            let t = a.tally(ids);
            let reduced: Vec<usize> = t.failing.iter().copied().filter(|&i| is_reduced(&a.obs[i])).collect();
            let observers: BTreeSet<&NodeName> = reduced.iter().map(|&i| a.obs[i].src_node()).collect();
            let share = reduced.len() as f64 / t.ids.len().max(1) as f64;
            if reduced.len() < a.th.min_failing_cells
                || share < a.th.fail_share
                || observers.len() < a.need(t.agents.len())
            {
                continue;
            }
            if best.as_ref().is_none_or(|(_, r)| reduced.len() > r.len()) {
                best = Some((n.clone(), reduced));
            }
        }
        let Some((n, reduced)) = best else { break };
        // The direction is told only where the other direction is seen carrying full-size
        // packets: an echo's reply is as large as its request, so a black hole either way
        // usually fails both directions' probes.
        let into = reduced.iter().all(|&i| a.obs[i].dst_node.as_ref() == Some(&n));
        let out_of = reduced.iter().all(|&i| a.obs[i].src_node() == &n);
        let reverse = |from_n: bool| -> Vec<usize> {
            touching
                .get(&n)
                .into_iter()
                .flatten()
                .copied()
                .filter(|&i| (a.obs[i].src_node() == &n) == from_n)
                .collect()
        };
        let clean = |cells: &[usize]| !cells.is_empty() && cells.iter().all(|&i| a.obs[i].steady());
        let (place, contrast) = match (into, out_of) {
            (true, _) if clean(&reverse(true)) => (
                format!("toward {n}"),
                Some(format!(
                    "the other direction (from {n}): {} path-MTU probes carry full-size packets",
                    reverse(true).len()
                )),
            ),
            (_, true) if clean(&reverse(false)) => (
                format!("from {n}"),
                Some(format!(
                    "the other direction (toward {n}): {} path-MTU probes carry full-size packets",
                    reverse(false).len()
                )),
            ),
            _ => (format!("through {n}"), None),
        };
        a.claim(&reduced);
        let mut d = draft(a, (CulpritKind::Node, n.to_string()), &place, Some(&n), &reduced);
        d.evidence.extend(contrast);
        out.push(d);
    }
    // What is left: a pair whose two directions are both reduced.
    let pairs: BTreeMap<(NodeName, NodeName), Vec<usize>> = a.group(|o| {
        let d = o.dst_node.as_ref().filter(|_| is_reduced(o) && o.crosses_nodes())?;
        let s = o.src_node();
        Some(if s <= d { (s.clone(), d.clone()) } else { (d.clone(), s.clone()) })
    });
    for ((x, y), ids) in pairs {
        let observers: BTreeSet<&NodeName> = ids.iter().map(|&i| a.obs[i].src_node()).collect();
        if ids.len() < a.th.min_failing_cells || observers.len() < a.need(2) {
            continue;
        }
        a.claim(&ids);
        out.push(draft(
            a,
            (CulpritKind::NodePair, format!("{x}↔{y}")),
            &format!("between {x} and {y}"),
            None,
            &ids,
        ));
    }
}

/// The link holding `n`'s address (its uplink) and its MTU, from its last inspection.
fn uplink_mtu(a: &Analysis<'_>, n: &NodeName) -> Option<(String, u32)> {
    let link = *a.ctx.node_uplinks(n).first()?;
    Some((link.name.as_str().to_owned(), link.mtu))
}

/// Nodes whose uplink MTU differs from the rest of the cluster's, on record in their
/// inspections, with large packets failing between them and others: a frame larger than the
/// receiving side's MTU is dropped without an ICMP error, so the odd node black-holes what
/// crosses it — whichever way, since an echo's reply is as large as its request. One failing
/// path is enough: the inspection is the cause; the paths only show it matters.
fn mismatched_uplinks(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let mtus: BTreeMap<NodeName, (String, u32)> =
        a.ctx.node_reports.keys().filter_map(|n| Some((n.clone(), uplink_mtu(a, n)?))).collect();
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for (_, m) in mtus.values() {
        *counts.entry(*m).or_default() += 1;
    }
    if counts.len() < 2 {
        return;
    }
    // The usual MTU: the most common one (on a tie, the larger: the smaller side drops).
    let usual = counts.iter().max_by_key(|(m, c)| (**c, **m)).map(|(m, _)| *m).unwrap_or_default();
    let by_node: BTreeMap<NodeName, Vec<usize>> = a.group(|o| {
        let d =
            o.dst_node.as_ref().filter(|_| o.kind == ProbeKind::Mtu && o.crosses_nodes() && is_reduced(o))?;
        let (s_mtu, d_mtu) = (mtus.get(o.src_node())?.1, mtus.get(d)?.1);
        match (s_mtu == usual, d_mtu == usual) {
            (true, false) => Some(d.clone()),
            (false, true) => Some(o.src_node().clone()),
            (false, false) if s_mtu != d_mtu => Some(if s_mtu < d_mtu { o.src_node() } else { d }.clone()),
            _ => None,
        }
    });
    for (n, cells) in by_node {
        let Some((link, mtu)) = mtus.get(&n).cloned() else { continue };
        a.claim(&cells);
        let (bigger, smaller) = if mtu < usual { (usual, mtu) } else { (mtu, usual) };
        let verdict = format!(
            "{n}'s uplink {link} has MTU {mtu} where the other nodes' have {usual}: frames over {smaller} bytes \
             between {n} and its peers are dropped by the smaller side without an ICMP error (a path-MTU black \
             hole), so large transfers stall while pings and handshakes work"
        );
        let mut evidence = vec![format!(
            "{n}'s inspection: {link} mtu {mtu}; the other nodes' uplinks: mtu {usual} ({} of {} nodes)",
            counts.get(&usual).copied().unwrap_or_default(),
            mtus.len()
        )];
        evidence.extend(a.cell_lines(&cells));
        out.push(
            Draft::new(ids::MTU_BLACKHOLE, Severity::Critical, (CulpritKind::Node, n.to_string()), "1.6", verdict)
                .affected(a.paths(&cells))
                .evidence(evidence)
                .suggestion(format!(
                    "set {link} on {n} back to the cluster's MTU (`ip link set {link} mtu {usual}`, and in the node's \
                     network config so it survives a reboot); an underlay with frames of {bigger} bytes on some \
                     nodes only needs every node and the pod network's MTU at the smallest"
                )),
        );
    }
}

fn draft(
    a: &Analysis<'_>,
    culprit: (CulpritKind, String),
    place: &str,
    node: Option<&NodeName>,
    cells: &[usize],
) -> Draft {
    let texts: Vec<&str> =
        cells.iter().filter_map(|&i| a.obs[i].stats.last_error.as_ref().map(|e| e.text.as_str())).collect();
    let mtu = texts.iter().filter_map(|t| parse_path_mtu(t)).min();
    let blackhole = texts.iter().any(|t| t.contains("vanished") || t.contains("black hole"));
    let mut evidence = Vec::new();
    if let Some(n) = node {
        for link in a.ctx.node_uplinks(n) {
            evidence.push(format!(
                "{n}'s uplink {} has MTU {}, larger than what the path carries",
                link.name, link.mtu
            ));
        }
    }
    if let Some(m) = mtu {
        evidence.push(format!("largest don't-fragment echo that comes back: {m} bytes"));
    }
    evidence.extend(a.cell_lines(cells));
    let size = mtu.map(|m| format!("over {m} bytes")).unwrap_or_else(|| "above the path MTU".to_owned());
    let suggestion = format!(
        "find the hop with the smaller MTU {place} (a tunnel, VXLAN overhead, a switch or VPN): lower the pod \
         network's MTU below it (the CNI's mtu setting) or raise the underlay's; make sure ICMP \
         \"fragmentation needed\" is not filtered on the way"
    );
    if blackhole || mtu.is_none() {
        let verdict = format!(
            "packets {size} {place} vanish: a path-MTU black hole (no ICMP \"fragmentation needed\" comes back), \
             so large transfers stall while pings and handshakes work"
        );
        Draft::new(ids::MTU_BLACKHOLE, Severity::Critical, culprit, "1.6", verdict)
            .affected(a.paths(cells))
            .evidence(evidence)
            .suggestion(suggestion)
    } else {
        let verdict = format!(
            "path MTU {place} is {} bytes, below the route MTU: larger packets need fragmentation or path-MTU \
             discovery",
            mtu.unwrap_or_default()
        );
        Draft::new(ids::MTU_REDUCED, Severity::Warning, culprit, "1.6", verdict)
            .affected(a.paths(cells))
            .evidence(evidence)
            .suggestion(suggestion)
    }
}
