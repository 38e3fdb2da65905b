//! Where a drawn fault goes: a random component of its class that the plan can see (a pair the
//! planner probes, a filter whose source group probes the pod and whose pod other sources
//! still reach), on nodes no other fault of the scenario occupies where the cluster allows.

use std::collections::BTreeSet;

use netdiag_model::NodeName;

use super::cluster::{Cluster, End, dns_nodes};
use super::fault::{Direction, Fault, FaultClass, Group};
use super::rng::Rng;

/// Random picks tried before giving up on keeping faults on separate nodes.
const TRIES: usize = 64;

/// A fault of `class`, preferably on nodes outside `used`; adds the nodes it occupies.
pub(crate) fn place(
    c: &Cluster,
    class: FaultClass,
    rng: &mut Rng,
    used: &mut BTreeSet<u32>,
) -> Option<Fault> {
    for attempt in 0..2 * TRIES {
        // The second half of the attempts lets faults share nodes.
        let strict = attempt < TRIES;
        let Some((fault, nodes)) = candidate(c, class, rng) else { continue };
        if strict && nodes.iter().any(|n| used.contains(n)) {
            continue;
        }
        used.extend(nodes);
        return Some(fault);
    }
    None
}

/// One random fault of `class` and the nodes it occupies.
fn candidate(c: &Cluster, class: FaultClass, rng: &mut Rng) -> Option<(Fault, Vec<u32>)> {
    let node = |rng: &mut Rng| u32::try_from(rng.below(c.nodes.len())).ok();
    let name = |n: u32| -> NodeName { c.node(n).clone() };
    let loss = |rng: &mut Rng| rng.range(0.05, 0.5);
    Some(match class {
        FaultClass::PodDown => {
            let p = app_pod(c, rng)?;
            (Fault::PodDown(c.pod(p).reference.clone()), vec![c.pod(p).node])
        }
        FaultClass::NodeIsolated => {
            let n = node(rng)?;
            (Fault::NodeIsolated(name(n)), vec![n])
        }
        FaultClass::PairCut => {
            let a = node(rng)?;
            let b = *rng.pick(c.peers.get(a as usize)?)?;
            (Fault::PairCut(name(a), name(b)), vec![a, b])
        }
        FaultClass::PortRefused | FaultClass::PortDropped => {
            let p = app_pod(c, rng)?;
            let slot = c.pod(p);
            let port = *rng.pick(&slot.ports)?;
            let fault = if class == FaultClass::PortRefused {
                Fault::PortRefused(slot.reference.clone(), port)
            } else {
                Fault::PortDropped(slot.reference.clone(), port)
            };
            (fault, vec![slot.node])
        }
        FaultClass::FilterFromNode => {
            let p = app_pod(c, rng)?;
            let slot = c.pod(p);
            let probers = c.probers.get(p as usize)?;
            let nodes: Vec<u32> = probers.iter().map(|e| e.node).filter(|&n| n != slot.node).collect();
            let g = *rng.pick(&nodes)?;
            let group = |e: &End| e.node == g;
            if !partial(probers, group) {
                return None;
            }
            (Fault::Filter(slot.reference.clone(), Group::Node(name(g))), vec![slot.node, g])
        }
        FaultClass::FilterFromNamespace => {
            let p = app_pod(c, rng)?;
            let slot = c.pod(p);
            let probers = c.probers.get(p as usize)?;
            let spaces: Vec<u32> = probers.iter().filter_map(|e| Some(c.pod(e.pod?).namespace)).collect();
            let ns = *rng.pick(&spaces)?;
            let group = |e: &End| e.pod.is_some_and(|q| c.pod(q).namespace == ns);
            if !partial(probers, group) {
                return None;
            }
            let ns = c.namespaces.get(ns as usize)?.clone();
            (Fault::Filter(slot.reference.clone(), Group::Namespace(ns)), vec![slot.node])
        }
        FaultClass::MtuInto | FaultClass::MtuOutOf => {
            let n = node(rng)?;
            let d = if class == FaultClass::MtuInto { Direction::In } else { Direction::Out };
            (Fault::MtuOneWay(name(n), d), vec![n])
        }
        FaultClass::LossBothWays | FaultClass::LossInto | FaultClass::LossOutOf => {
            let n = node(rng)?;
            let direction = match class {
                FaultClass::LossInto => Some(Direction::In),
                FaultClass::LossOutOf => Some(Direction::Out),
                _ => None,
            };
            (Fault::Loss { node: name(n), share: loss(rng), direction }, vec![n])
        }
        FaultClass::DnsDown | FaultClass::DnsLoss => {
            let nodes = dns_nodes(c.nodes.len()).iter().filter_map(|&n| u32::try_from(n).ok()).collect();
            let fault = if class == FaultClass::DnsDown {
                Fault::DnsDown
            } else {
                Fault::DnsLoss(rng.range(0.1, 0.4))
            };
            (fault, nodes)
        }
        FaultClass::ForwardingBroken => {
            let n = node(rng)?;
            (Fault::ForwardingBroken(name(n)), vec![n])
        }
        FaultClass::IcmpFiltered => {
            let n = node(rng)?;
            (Fault::IcmpFiltered(name(n)), vec![n])
        }
        FaultClass::NatRewrite => {
            // On the pod's own node (every source but the node itself), or on a node some of
            // whose pods probe it (those pods only).
            let p = app_pod(c, rng)?;
            let slot = c.pod(p);
            let port = *rng.pick(&slot.ports)?;
            let probers = c.probers.get(p as usize)?;
            let others: Vec<u32> =
                probers.iter().filter(|e| e.pod.is_some() && e.node != slot.node).map(|e| e.node).collect();
            let n = if rng.chance(0.5) { slot.node } else { *rng.pick(&others)? };
            (Fault::NatRewrite(name(n), slot.reference.clone(), port), vec![n, slot.node])
        }
    })
}

/// A random app pod (not a DNS pod: DNS faults have classes of their own).
fn app_pod(c: &Cluster, rng: &mut Rng) -> Option<u32> {
    let apps: Vec<u32> = (0u32..).zip(&c.pods).filter(|(_, p)| !p.dns).map(|(i, _)| i).collect();
    rng.pick(&apps).copied()
}

/// A filter the plan can tell from a dead pod: at least two of the pod's probers are in the
/// group and at least one is not.
fn partial(probers: &[End], in_group: impl Fn(&End) -> bool) -> bool {
    let inside = probers.iter().filter(|e| in_group(e)).count();
    inside >= 2 && inside < probers.len()
}

/// A node for a silent agent: one no fault occupies and no DNS pod runs on.
pub(crate) fn quiet_node(c: &Cluster, rng: &mut Rng, used: &BTreeSet<u32>) -> Option<NodeName> {
    let dns = dns_nodes(c.nodes.len());
    let free: Vec<u32> = (0u32..)
        .zip(&c.nodes)
        .map(|(i, _)| i)
        .filter(|i| !used.contains(i) && !dns.contains(&(*i as usize)))
        .collect();
    rng.pick(&free).map(|&n| c.node(n).clone())
}
