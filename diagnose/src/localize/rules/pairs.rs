//! Rule 2, one node pair (runbook 1.6): "pods on node A cannot reach pods on node B, all other
//! pairs fine: link or route A↔B". The component is the pod traffic between the two nodes,
//! cleared by any working pod-to-pod path between them and blamed when every one fails, seen
//! by the agents at both ends. The node inspections then say which: a node whose routing table
//! has no route to the other's pod CIDR is blamed as `route-missing` (with the table as
//! evidence) — and so is a node whose own probes of the other's pods come back unreachable
//! while the other node reaches its pods (the matrix's signature of a missing route, which
//! shows before the next inspection does); otherwise the pair is, with whether the nodes' own addresses still answer each
//! other (link or firewall) or not (pod routes or the overlay). A missing route is blamed on
//! the directed pair `A→B` (A's route to B's pods), the place to fix it.

use std::collections::BTreeMap;

use netdiag_model::inspect::Route;
use netdiag_model::probe::Source;
use netdiag_model::{CulpritKind, IcmpFailure, NodeName, Outcome, Severity, TcpFailure};

use ipnet::IpNet;

use super::super::context::{RouteLookup, join, route_line};
use super::super::evidence::{Analysis, Obs};
use super::super::report::{Draft, ids};
use crate::matrix::Destination;

type Pair = (NodeName, NodeName);

fn pair_of(x: &NodeName, y: &NodeName) -> Pair {
    if x <= y { (x.clone(), y.clone()) } else { (y.clone(), x.clone()) }
}

pub(super) fn broken(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    loop {
        let groups: BTreeMap<Pair, Vec<usize>> = a.group(|o| {
            let d = o.dst_node.as_ref().filter(|_| o.crosses_nodes())?;
            Some(pair_of(o.src_node(), d))
        });
        let pod_pod = |ids: &[usize]| -> Vec<usize> {
            ids.iter()
                .copied()
                .filter(|&i| a.obs[i].src_pod().is_some() && a.obs[i].dst_pod.is_some())
                .collect()
        };
        let mut best: Option<(Pair, usize)> = None;
        for (pair, ids) in &groups {
            let t = a.tally(&pod_pod(ids));
            if a.all_fail(&t) && best.as_ref().is_none_or(|(_, f)| t.failing.len() > *f) {
                best = Some((pair.clone(), t.failing.len()));
            }
        }
        let Some(((x, y), _)) = best else { return };
        let others_fine = groups.iter().filter(|(p, _)| **p != (x.clone(), y.clone())).all(|(_, ids)| {
            let t = a.tally(&pod_pod(ids));
            t.ids.is_empty() || t.working > 0
        });
        let ids = groups.get(&(x.clone(), y.clone())).cloned().unwrap_or_default();
        let t = a.tally(&ids);
        let node_cells: Vec<usize> = ids
            .iter()
            .copied()
            .filter(|&i| matches!(a.obs[i].dest, Destination::Node { port: None, .. }))
            .collect();
        let nt = a.tally(&node_cells);
        let nodes_answer = if nt.ids.is_empty() { None } else { Some(nt.working > 0) };
        a.claim(&t.failing);
        let dependents = a.claim_dependents(|o, b, _| {
            b.node
                .as_ref()
                .is_some_and(|bn| bn != o.dnat_node() && pair_of(o.dnat_node(), bn) == (x.clone(), y.clone()))
        });
        let mut failing = t.failing.clone();
        failing.extend(&dependents);
        let missing = missing_routes(a, &ids, &x, &y, nodes_answer == Some(true));
        if missing.is_empty() {
            out.push(pair_draft(a, (&x, &y), &failing, others_fine, nodes_answer));
        } else {
            for (from, to, lookups) in &missing {
                out.push(route_draft(a, from, to, lookups, &failing));
            }
        }
    }
}

/// How a node is known to lack a route to a peer's pod CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Gap {
    /// Its inspected routing table has nothing covering the CIDR.
    Missing,
    /// Only a route without device or gateway covers it (the line as `ip route` prints it).
    Blackhole(String),
    /// The matrix shows it (the node's own probes to the peer's pods come back unreachable);
    /// the last inspection, if any, still lists this route.
    Inferred(Option<String>),
    /// A route is there, through a gateway that is not the peer: the route's line, and what
    /// the gateway is (another node's address, or an address no one holds and whose ARP fails).
    WrongGateway(String, String),
    /// A policy-routing rule drops it before any table is read (the rule as `ip rule` prints it).
    Rule(String),
}

/// The matrix's signature of `from` lacking a route to `to`'s pods, with the nodes' own
/// addresses answering each other: `from`'s own probes of `to`'s pods come back unreachable
/// (its kernel has nowhere to send them) while `to`'s own probes of `from`'s pods work (their
/// replies go to a node address, which is routed).
fn unroutable(a: &Analysis<'_>, ids: &[usize], from: &NodeName, to: &NodeName) -> bool {
    let node_to_pods = |src: &NodeName, dst: &NodeName| -> Vec<&Obs> {
        ids.iter()
            .map(|&i| &a.obs[i])
            .filter(|o| {
                matches!(&o.source, Source::Node(n) if n == src)
                    && o.dst_pod.is_some()
                    && o.dst_node.as_ref() == Some(dst)
            })
            .collect()
    };
    let mine = node_to_pods(from, to);
    let unreachable = |o: &Obs| {
        matches!(
            o.failure(),
            Some(Outcome::Icmp(IcmpFailure::Unreachable) | Outcome::Tcp(TcpFailure::Unreachable))
        )
    };
    !mine.is_empty()
        && mine.iter().all(|o| o.failed() && unreachable(o))
        && node_to_pods(to, from).iter().any(|o| o.works())
}

/// `(node, peer, gaps)`: the peer's pod CIDRs a node does not route, and how that is known.
type RouteGaps = (NodeName, NodeName, Vec<(IpNet, Gap)>);

/// For each direction, `(node, peer, gaps)`: the peer's pod CIDRs the node does not route,
/// from its inspection, or from the matrix when the nodes' addresses answer each other.
fn missing_routes(
    a: &Analysis<'_>,
    ids: &[usize],
    x: &NodeName,
    y: &NodeName,
    nodes_answer: bool,
) -> Vec<RouteGaps> {
    let mut out = Vec::new();
    for (from, to) in [(x, y), (y, x)] {
        let inferred = nodes_answer && unroutable(a, ids, from, to);
        let mut gaps = Vec::new();
        for cidr in a.ctx.pod_cidrs_of(to) {
            let lookup = a.ctx.route_to(from, cidr);
            if let RouteLookup::Covered(r) = lookup
                && let Some(what) = wrong_gateway(a, r, from, to, cidr)
            {
                gaps.push((cidr, Gap::WrongGateway(route_line(r), what)));
                continue;
            }
            match lookup {
                RouteLookup::Missing => gaps.push((cidr, Gap::Missing)),
                RouteLookup::Blackhole(r) => gaps.push((cidr, Gap::Blackhole(route_line(r)))),
                RouteLookup::Rule(rule) => gaps.push((cidr, Gap::Rule(rule.to_string()))),
                RouteLookup::Covered(r) if inferred => gaps.push((cidr, Gap::Inferred(Some(route_line(r))))),
                RouteLookup::Unknown if inferred => gaps.push((cidr, Gap::Inferred(None))),
                RouteLookup::Covered(_) | RouteLookup::Unknown => {}
            }
        }
        if !gaps.is_empty() {
            out.push((from.clone(), to.clone(), gaps));
        }
    }
    out
}

/// What is wrong with the gateway of `from`'s route `r` to `to`'s pod CIDR `cidr`, if it is
/// not `to`: another node's address (the pods' traffic goes to the wrong node), or an address
/// no node, pod or inspected link holds whose neighbour entry on `from` is missing or failed
/// (no such host). A gateway inside `to`'s pod CIDR is an overlay's (flannel's `via
/// 10.244.3.0 dev flannel.1 onlink`) and is left alone.
fn wrong_gateway(a: &Analysis<'_>, r: &Route, from: &NodeName, to: &NodeName, cidr: IpNet) -> Option<String> {
    let gw = r.gateway?;
    let peer_ips = a.ctx.inventory.node(to).map(|n| n.ips.clone()).unwrap_or_default();
    if peer_ips.contains(&gw) || cidr.contains(&gw) {
        return None;
    }
    if let Some((pod, owner)) = a.ctx.owner_of_ip(gw) {
        return Some(match pod {
            Some(p) => format!("{gw} is pod {p}'s address, not {to}'s"),
            None => format!("{gw} is {owner}'s address, not {to}'s"),
        });
    }
    let held =
        a.ctx.reports().any(|(_, rep)| rep.links.iter().any(|l| l.addresses.iter().any(|n| n.addr() == gw)));
    if held {
        return None;
    }
    let report = a.ctx.node_reports.get(from)?;
    let entry = report.neighbours.iter().find(|n| n.ip == gw);
    match entry {
        Some(n) if !matches!(n.state.as_str(), "FAILED" | "INCOMPLETE") => None,
        Some(n) => Some(format!(
            "no node holds {gw} and {from}'s ARP for it is {} (`{gw} dev {} {}`)",
            n.state.as_str(),
            n.device.as_str(),
            n.state.as_str()
        )),
        None => Some(format!("no node holds {gw} and {from} has no neighbour entry for it")),
    }
}

fn route_draft(
    a: &Analysis<'_>,
    from: &NodeName,
    to: &NodeName,
    gaps: &[(IpNet, Gap)],
    failing: &[usize],
) -> Draft {
    let cidrs: Vec<IpNet> = gaps.iter().map(|(p, _)| *p).collect();
    // A blackhole (or unreachable/prohibit) route is there and says so: "no route" would send
    // the reader looking for a missing line.
    let what = if let Some((_, Gap::Rule(line))) = gaps.iter().find(|(_, g)| matches!(g, Gap::Rule(_))) {
        format!("a policy-routing rule on {from} (`{line}`) drops {}", join(&cidrs))
    } else if gaps.iter().all(|(_, g)| matches!(g, Gap::Blackhole(_))) {
        format!("a blackhole route for {} on {from}", join(&cidrs))
    } else if let Some((_, Gap::WrongGateway(line, _))) =
        gaps.iter().find(|(_, g)| matches!(g, Gap::WrongGateway(..)))
    {
        format!("a route to the wrong gateway on {from} (`{line}`)")
    } else {
        format!("no route to {} on {from}", join(&cidrs))
    };
    let verdict = format!(
        "{what}: pods on {from} cannot reach pods on {to}, and replies from {to}'s pods to {from}'s are lost too"
    );
    let mut evidence = Vec::new();
    for (cidr, gap) in gaps {
        evidence.push(match gap {
            Gap::Blackhole(line) => format!("{from}'s routing table sends {cidr} nowhere: {line}"),
            Gap::Rule(line) => format!(
                "{from}'s routing rules (`ip rule`) drop {cidr} ({to}'s pod CIDR) before any table is read: {line}"
            ),
            Gap::Missing => format!("{from}'s routing table has no route covering {cidr} ({to}'s pod CIDR)"),
            Gap::WrongGateway(line, what) => {
                format!("{from} sends {cidr} ({to}'s pod CIDR) by `{line}`: {what}")
            }
            Gap::Inferred(last) => {
                let mut line = format!(
                    "{from}'s own probes of {to}'s pods come back unreachable (its kernel has no route for \
                     {cidr}) while {to} reaches {from}'s pods and the nodes' addresses answer each other"
                );
                if let Some(route) = last {
                    line.push_str(&format!(
                        "; {from}'s last inspection still lists `{route}`: it predates the failure, or the route \
                         is unusable (`ip route get {}` on {from})",
                        cidr.network()
                    ));
                }
                line
            }
        });
    }
    let have = a.ctx.pod_routes_of(from);
    if !have.is_empty() {
        evidence.push(format!("{from}'s routes to other nodes' pod CIDRs: {}", have.join("; ")));
    }
    evidence.extend(a.cell_lines(failing));
    let gateway = a.ctx.inventory.node(to).and_then(|n| n.ips.first().copied());
    let example = match (cidrs.first(), gateway) {
        (Some(c), Some(gw)) => format!("`ip route replace {c} via {gw}` (host-gw style) on {from}"),
        _ => format!("the route on {from}"),
    };
    Draft::new(
        ids::ROUTE_MISSING,
        Severity::Critical,
        (CulpritKind::NodePair, format!("{from}→{to}")),
        "1.6",
        verdict,
    )
    .affected(a.paths(failing))
    .evidence(evidence)
    .suggestion(match gaps.iter().find_map(|(_, g)| if let Gap::Rule(line) = g { Some(line) } else { None }) {
        Some(line) => format!(
            "remove the rule (`ip rule del pref {}` on {from}) and find what wrote it (a VPN or \
             multi-homing script, a CNI's policy routing); `ip route get {}` on {from} shows the decision",
            line.split(':').next().unwrap_or_default(),
            cidrs.first().map(|c| c.network().to_string()).unwrap_or_default()
        ),
        None => format!(
            "restore {example}, or restart the network plugin's agent on {from} (flannel, calico-node) that \
             owns the pod routes; compare `ip route` on {from} with the other nodes"
        ),
    })
}

fn pair_draft(
    a: &Analysis<'_>,
    (x, y): (&NodeName, &NodeName),
    failing: &[usize],
    others_fine: bool,
    nodes_answer: Option<bool>,
) -> Draft {
    let others = if others_fine { ", all other pairs fine" } else { "" };
    let how = match nodes_answer {
        Some(false) => "; the nodes' own addresses do not answer each other either",
        Some(true) => "; the nodes' own addresses still answer each other, so pod routes or the overlay",
        None => "",
    };
    let verdict = format!("pods on {x} cannot reach pods on {y}{others}: link or route {x}↔{y}{how}");
    let mut evidence = Vec::new();
    for n in [x, y] {
        let routes = a.ctx.pod_routes_of(n);
        if !routes.is_empty() {
            evidence.push(format!("{n}'s routes to other nodes' pod CIDRs: {}", routes.join("; ")));
        }
    }
    evidence.extend(a.cell_lines(failing));
    let suggestion = match nodes_answer {
        Some(true) => format!(
            "the underlay works: compare `ip route` on {x} and {y} for each other's pod CIDRs, and `ip rule` \
             (policy routing, which netdiag does not read: `ip route get <a pod IP of the other node>` shows \
             the route the kernel really takes), and check the overlay (VXLAN: `ip -d link show flannel.1`, \
             UDP 8472 between the nodes)"
        ),
        _ => format!(
            "check the link and firewalls between {x} and {y}: `ping` each other's node address, \
             `iptables-save | grep DROP` on both, security groups / ACLs between them"
        ),
    };
    Draft::new(
        ids::NODE_PAIR_BROKEN,
        Severity::Critical,
        (CulpritKind::NodePair, format!("{x}↔{y}")),
        "1.6",
        verdict,
    )
    .affected(a.paths(failing))
    .evidence(evidence)
    .suggestion(suggestion)
}
