//! How often a planned probe runs, by what NetworkPolicy says of its path: a path the
//! policies keep shut still gets probed — that is how "policy not enforced" is noticed — but
//! only once every [`DENIED_EVERY`] rounds, so a cluster whose policies deny most pairs does
//! not spend most of its probes on failures it expects.
//!
//! Shut means what the diagnosis sets apart as denied, as intended: a defined deny, or an
//! echo the rules as written deny (ICMP to a pod isolated for ingress whose rules name only
//! ports). A Service probe is shut only when every ready backend is. Paths whose verdict is
//! left to the plugin (a pod through its own Service, NodePorts, hostNetwork peers), probes
//! from a node (the node-level matrix, few and cheap) and DNS, node and address targets keep
//! their pace.

use std::collections::HashMap;

use netdiag_model::inventory::{Inventory, PodInfo, ServiceInfo};
use netdiag_model::plan::EveryRounds;
use netdiag_model::probe::{ProbeKind, ServiceVia, Source, Target};
use netdiag_model::{PlannedProbe, PodRef, Port, ServiceRef};

use super::{Decision, Endpoint, PodEndpoint, PolicySet, Traffic, Transport, Verdict, Via};

/// Rounds between two runs of a probe whose path policy keeps shut: at the default 5 s
/// interval, one sample every 30 s, so the 60 s matrix window still holds two.
pub const DENIED_EVERY: u32 = 6;

/// The policies and the inventory's pods and services indexed once, to pace many plans
/// (every node's) made from the same inventory.
#[derive(Debug)]
pub struct Pacer {
    set: PolicySet,
    pods: HashMap<PodRef, usize>,
    services: HashMap<ServiceRef, usize>,
    every: EveryRounds,
}

impl Pacer {
    /// None when `inventory` has no NetworkPolicy: then nothing is shut and plans keep
    /// their pace.
    pub fn new(inventory: &Inventory) -> Option<Self> {
        if inventory.network_policies.is_empty() {
            return None;
        }
        let (set, _) = PolicySet::from_inventory(inventory);
        let pods = inventory.pods.iter().enumerate().map(|(i, p)| (p.pod_ref(), i)).collect();
        let services = inventory.services.iter().enumerate().map(|(i, s)| (s.service_ref(), i)).collect();
        let every = EveryRounds::new(DENIED_EVERY).unwrap_or(EveryRounds::ONE);
        Some(Self { set, pods, services, every })
    }

    /// Slows the probes of `probes` whose path policy keeps shut; returns how many.
    /// `inventory` must be the one the pacer was made from.
    pub fn pace(&self, inventory: &Inventory, probes: &mut [PlannedProbe]) -> usize {
        let mut paced = 0;
        for probe in probes.iter_mut().filter(|p| p.every.is_every_round()) {
            if self.shut(inventory, probe) {
                probe.every = self.every;
                paced += 1;
            }
        }
        paced
    }

    /// Whether policy keeps `probe`'s path shut.
    pub fn shut(&self, inventory: &Inventory, probe: &PlannedProbe) -> bool {
        let transport = |port: Option<Port>| match (probe.kind, port) {
            (ProbeKind::Icmp | ProbeKind::Mtu, _) => Some(Transport::Icmp),
            (ProbeKind::Tcp | ProbeKind::Http, Some(p)) => Some(Transport::Tcp(p)),
            _ => None,
        };
        let Source::Pod(from) = &probe.source else { return false };
        let Some(from) = self.pod(inventory, from) else { return false };
        let source = Endpoint::Pod(PodEndpoint::of(from));
        match &probe.target {
            Target::Pod { pod, ip, port } => {
                let (Some(info), Some(transport)) = (self.pod(inventory, pod), transport(*port)) else {
                    return false;
                };
                let traffic = Traffic {
                    source,
                    destination: Endpoint::Pod(PodEndpoint::of(info).at(*ip)),
                    transport,
                    via: Via::Direct,
                };
                kept_shut(&self.set, &traffic)
            }
            Target::Service { service, port, via, .. } => {
                let Some(svc) = self.service(inventory, service) else { return false };
                let Some(target_port) = svc.ports.iter().find(|p| p.port == *port).map(|p| p.target_port)
                else {
                    return false;
                };
                let Some(transport) = transport(Some(target_port)) else { return false };
                let backends: Vec<_> = match via {
                    ServiceVia::ClusterIp => svc.ready_endpoints().collect(),
                    ServiceVia::Endpoint(pod) => {
                        svc.ready_endpoints().filter(|e| e.pod.as_ref() == Some(pod)).collect()
                    }
                    // The node masquerades or keeps the client by its traffic policy, and what
                    // the plugin then sees is its own business: left at full pace.
                    ServiceVia::NodePort => return false,
                };
                let via = if matches!(via, ServiceVia::ClusterIp) { Via::ClusterIp } else { Via::Direct };
                let Some(family) = probe.target.ip().map(|ip| ip.is_ipv4()) else { return false };
                let mut judged = 0;
                for backend in backends.iter().filter(|e| e.ip.is_ipv4() == family) {
                    let destination = match backend.pod.as_ref().and_then(|p| self.pod(inventory, p)) {
                        Some(info) => Endpoint::Pod(PodEndpoint::of(info).at(backend.ip)),
                        None => return false,
                    };
                    if !kept_shut(&self.set, &Traffic { source, destination, transport, via }) {
                        return false;
                    }
                    judged += 1;
                }
                judged > 0
            }
            Target::Node { .. } | Target::Dns { .. } | Target::Address { .. } => false,
        }
    }

    fn pod<'i>(&self, inventory: &'i Inventory, pod: &PodRef) -> Option<&'i PodInfo> {
        self.pods.get(pod).and_then(|&i| inventory.pods.get(i)).filter(|p| p.pod_ref() == *pod)
    }

    fn service<'i>(&self, inventory: &'i Inventory, svc: &ServiceRef) -> Option<&'i ServiceInfo> {
        self.services.get(svc).and_then(|&i| inventory.services.get(i)).filter(|s| s.service_ref() == *svc)
    }
}

/// A defined deny, or an undefined verdict the rules as written deny (the echo case).
fn kept_shut(set: &PolicySet, traffic: &Traffic<'_>) -> bool {
    let v = set.evaluate(traffic);
    match v.verdict {
        Verdict::Deny => true,
        Verdict::Undefined => v.as_written == Some(Decision::Deny),
        Verdict::Allow | Verdict::Pending => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::World;
    use netdiag_model::plan::Schedule;
    use netdiag_model::plan::derive::{PlanOptions, SourcePods, derive_plan};
    use std::num::NonZeroU64;
    use std::time::Duration;

    fn only_tidb() -> Inventory {
        World::tidb_isolated().inventory()
    }

    fn plan_of(inv: &Inventory, node: &str) -> Vec<PlannedProbe> {
        let opts = PlanOptions {
            schedule: Schedule::new(Duration::from_secs(5), Duration::from_secs(1), 64, 500).unwrap(),
            http_checks: Vec::new(),
            mtu: true,
            sources: SourcePods::All,
        };
        derive_plan(inv, &node.parse().unwrap(), &opts, NonZeroU64::MIN).probes
    }

    fn into_tidb(p: &PlannedProbe) -> bool {
        match &p.target {
            Target::Pod { pod, .. } => pod.namespace.as_str() == "tidb",
            Target::Service { service, .. } => service.namespace.as_str() == "tidb",
            _ => false,
        }
    }

    fn from_tidb(p: &PlannedProbe) -> bool {
        matches!(&p.source, Source::Pod(p) if p.namespace.as_str() == "tidb")
    }

    #[test]
    fn paths_into_an_isolated_namespace_from_outside_are_paced_and_nothing_else() {
        let inv = only_tidb();
        let pacer = Pacer::new(&inv).unwrap();
        let mut probes = plan_of(&inv, "node-1");
        let paced = pacer.pace(&inv, &mut probes);
        assert!(paced > 0, "some pod outside tidb probes a tidb pod from node-1");
        for p in &probes {
            let denied = into_tidb(p) && !from_tidb(p) && matches!(p.source, Source::Pod(_));
            let slow = p.every.get() == DENIED_EVERY;
            assert_eq!(slow, denied, "{:?} {:?} {:?}", p.kind, p.source, p.target);
        }
        // tidb's own pods reach each other at full pace, pods elsewhere keep theirs.
        assert!(probes.iter().any(|p| into_tidb(p) && from_tidb(p) && p.every.is_every_round()));
        assert!(probes.iter().any(|p| !into_tidb(p) && p.every.is_every_round()));
    }

    #[test]
    fn without_policies_there_is_no_pacer() {
        assert!(Pacer::new(&World::healthy().inventory()).is_none());
    }

    #[test]
    fn a_node_source_and_dns_keep_their_pace() {
        let inv = only_tidb();
        let pacer = Pacer::new(&inv).unwrap();
        let mut probes = plan_of(&inv, "node-2");
        pacer.pace(&inv, &mut probes);
        for p in probes.iter().filter(|p| matches!(p.source, Source::Node(_)) || p.kind == ProbeKind::Dns) {
            assert!(p.every.is_every_round(), "{:?} {:?} {:?}", p.kind, p.source, p.target);
        }
    }

    #[test]
    fn pacing_twice_changes_nothing_more() {
        let inv = only_tidb();
        let pacer = Pacer::new(&inv).unwrap();
        let mut probes = plan_of(&inv, "node-1");
        pacer.pace(&inv, &mut probes);
        let once = probes.clone();
        assert_eq!(pacer.pace(&inv, &mut probes), 0);
        assert_eq!(probes, once);
    }
}
