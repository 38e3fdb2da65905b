//! The full plan of one node, derived from the inventory: what an agent probes when the
//! collector has not sent a plan, and what the collector sends below the sampling threshold.
//! Sources are the node itself and every pod on it; targets are every other pod (ICMP and each
//! container port), every service (VIP and each endpoint), every service's DNS name (through the
//! pod's own resolv.conf), each cluster DNS server directly (UDP and TCP), every other node
//! (ICMP, NodePorts, path MTU) and the configured HTTP checks.
//!
//! The sampled plan ([`super::sample`]) is the same code over a narrower [`Reach`].

use std::net::IpAddr;
use std::num::NonZeroU64;

use crate::dns::{DnsName, DnsTransport, RecordType};
use crate::http::HttpPath;
use crate::inventory::{EndpointInfo, Inventory, NodeInfo, PodInfo, Protocol, ServiceInfo};
use crate::names::{NodeName, Port, ServiceRef};
use crate::plan::{PlannedProbe, ProbePlan, Schedule};
use crate::probe::{ProbeKind, ServiceVia, Source, Target};
use serde::Deserialize;

/// An HTTP GET the plan runs against a service (through its VIP) from every pod source, e.g.
/// PD's `/pd/api/v1/members` as the seed's runbook checks it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    pub service: ServiceRef,
    pub port: Port,
    pub path: HttpPath,
}

/// Which pods on the node are probe sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePods {
    /// Every pod on the node: the collector's plans (it does not know namespaces; the agent
    /// skips probes from a pod it cannot enter).
    All,
    /// Only pods whose namespace the inventory names (an agent's own plan from a file).
    KnownNetns,
}

/// Which families of probes a derived plan holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    pub schedule: Schedule,
    pub http_checks: Vec<HttpCheck>,
    /// Path-MTU probes from the node to one pod on every other node.
    pub mtu: bool,
    pub sources: SourcePods,
}

/// What one node's plan reaches: every other pod and node (the full plan), or a sample.
#[derive(Debug)]
pub(crate) struct Reach<'a> {
    /// Other nodes the node probes (ICMP), each with the pod its path-MTU probe goes to.
    pub(crate) peers: Vec<(&'a NodeInfo, Option<&'a PodInfo>)>,
    /// Nodes whose NodePorts the node probes.
    pub(crate) node_ports_on: Vec<&'a NodeInfo>,
    /// Pods probed (ICMP and each TCP port) from every local pod, and by ICMP from the node.
    pub(crate) pods: Vec<&'a PodInfo>,
    /// Which service endpoints are probed through their pod IP.
    pub(crate) endpoints: EndpointReach<'a>,
}

#[derive(Debug)]
pub(crate) enum EndpointReach<'a> {
    All,
    /// Endpoints of these pods, and pod-less endpoints on these nodes (or on no known node).
    Within {
        pods: std::collections::HashSet<(&'a str, &'a str)>,
        nodes: std::collections::HashSet<&'a str>,
    },
}

impl EndpointReach<'_> {
    fn covers(&self, ep: &EndpointInfo) -> bool {
        match self {
            EndpointReach::All => true,
            EndpointReach::Within { pods, nodes } => match (&ep.pod, &ep.node) {
                (Some(pod), _) => pods.contains(&(pod.namespace.as_str(), pod.name.as_str())),
                (None, Some(node)) => nodes.contains(node.as_str()),
                (None, None) => true,
            },
        }
    }
}

impl<'a> Reach<'a> {
    /// Everything: the full mesh.
    pub(crate) fn full(inv: &'a Inventory, node: &NodeName) -> Self {
        let peers = inv
            .nodes
            .iter()
            .filter(|n| &n.name != node)
            .map(|n| (n, mtu_target(inv.pods_on(&n.name))))
            .collect();
        Reach {
            peers,
            node_ports_on: inv.nodes.iter().collect(),
            pods: inv.pods.iter().collect(),
            endpoints: EndpointReach::All,
        }
    }
}

/// The pod a node's path-MTU probe to another node goes to: the first by namespace and name
/// with an address, so it does not depend on the order an inventory lists pods in.
pub(crate) fn mtu_target<'a>(pods: impl Iterator<Item = &'a PodInfo>) -> Option<&'a PodInfo> {
    pods.filter(|p| !p.ips.is_empty()).min_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
}

pub(crate) fn probe(source: &Source, target: Target, kind: ProbeKind) -> PlannedProbe {
    PlannedProbe { source: source.clone(), target, kind, http_path: None, every: crate::EveryRounds::ONE }
}

fn tcp_ports(svc: &ServiceInfo) -> impl Iterator<Item = (Port, Port)> + '_ {
    svc.ports.iter().filter(|p| p.protocol == Protocol::Tcp).map(|p| (p.port, p.target_port))
}

/// Probes from one pod source.
fn pod_probes(
    inv: &Inventory,
    me: &PodInfo,
    reach: &Reach<'_>,
    opts: &PlanOptions,
    out: &mut Vec<PlannedProbe>,
) {
    let source = Source::Pod(me.pod_ref());
    for other in reach.pods.iter().filter(|p| !(p.namespace == me.namespace && p.name == me.name)) {
        pod_target(&source, other, out);
    }
    for svc in &inv.services {
        service_targets(&source, svc, &reach.endpoints, out);
    }
    nameservers(inv, &source, out);
    http_checks(inv, &source, opts, out);
}

/// ICMP and each TCP port of `other`, from `source`.
pub(crate) fn pod_target(source: &Source, other: &PodInfo, out: &mut Vec<PlannedProbe>) {
    for &ip in &other.ips {
        out.push(probe(source, Target::Pod { pod: other.pod_ref(), ip, port: None }, ProbeKind::Icmp));
        for cp in other.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
            let target = Target::Pod { pod: other.pod_ref(), ip, port: Some(cp.port) };
            out.push(probe(source, target, ProbeKind::Tcp));
        }
    }
}

/// A service from `source`: its VIP on each TCP port, its ready endpoints in reach on their
/// target ports, its DNS name.
pub(crate) fn service_targets(
    source: &Source,
    svc: &ServiceInfo,
    endpoints: &EndpointReach<'_>,
    out: &mut Vec<PlannedProbe>,
) {
    let service = svc.service_ref();
    for &vip in &svc.cluster_ips {
        for (port, _) in tcp_ports(svc) {
            let target =
                Target::Service { service: service.clone(), ip: vip, port, via: ServiceVia::ClusterIp };
            out.push(probe(source, target, ProbeKind::Tcp));
        }
    }
    for ep in svc.ready_endpoints().filter(|ep| endpoints.covers(ep)) {
        let Some(pod) = &ep.pod else { continue };
        for (_, target_port) in tcp_ports(svc) {
            let target = Target::Service {
                service: service.clone(),
                ip: ep.ip,
                port: target_port,
                via: ServiceVia::Endpoint(pod.clone()),
            };
            out.push(probe(source, target, ProbeKind::Tcp));
        }
    }
    // Through the search list, as an application would ask: `<svc>.<ns>` is what the
    // seed's runbook looks up, and resolves in every namespace.
    if let Ok(name) = DnsName::new(format!("{}.{}", svc.name, svc.namespace)) {
        let records =
            if svc.cluster_ips.iter().any(IpAddr::is_ipv6) || svc.endpoints.iter().any(|e| e.ip.is_ipv6()) {
                vec![RecordType::A, RecordType::Aaaa]
            } else {
                vec![RecordType::A]
            };
        for record in records {
            let target =
                Target::Dns { name: name.clone(), record, nameserver: None, transport: DnsTransport::Udp };
            out.push(probe(source, target, ProbeKind::Dns));
        }
    }
}

/// Each cluster nameserver on its own, over both transports, asked for the DNS service's own
/// name: it exists wherever the cluster DNS does.
pub(crate) fn nameservers(inv: &Inventory, source: &Source, out: &mut Vec<PlannedProbe>) {
    for &ns in &inv.cluster.dns_ips {
        let Some(dns_svc) = inv.services.iter().find(|s| s.cluster_ips.contains(&ns)) else { continue };
        let Ok(name) = DnsName::new(format!("{}.", dns_svc.dns_name(&inv.cluster.domain))) else { continue };
        let record = if ns.is_ipv6() { RecordType::Aaaa } else { RecordType::A };
        for transport in [DnsTransport::Udp, DnsTransport::Tcp] {
            let target = Target::Dns { name: name.clone(), record, nameserver: Some(ns), transport };
            out.push(probe(source, target, ProbeKind::Dns));
        }
    }
}

/// The configured HTTP checks, through each VIP of their service.
pub(crate) fn http_checks(inv: &Inventory, source: &Source, opts: &PlanOptions, out: &mut Vec<PlannedProbe>) {
    for check in &opts.http_checks {
        let Some(svc) = inv.service(&check.service) else { continue };
        for &vip in &svc.cluster_ips {
            let target = Target::Service {
                service: check.service.clone(),
                ip: vip,
                port: check.port,
                via: ServiceVia::ClusterIp,
            };
            out.push(PlannedProbe {
                source: source.clone(),
                target,
                kind: ProbeKind::Http,
                http_path: Some(check.path.clone()),
                every: crate::EveryRounds::ONE,
            });
        }
    }
}

/// Probes from the node itself (hostNetwork).
fn node_probes(
    inv: &Inventory,
    node: &NodeName,
    reach: &Reach<'_>,
    opts: &PlanOptions,
    out: &mut Vec<PlannedProbe>,
) {
    let source = Source::Node(node.clone());
    node_peers(&source, reach, opts, out);
    for pod in &reach.pods {
        for &ip in &pod.ips {
            out.push(probe(&source, Target::Pod { pod: pod.pod_ref(), ip, port: None }, ProbeKind::Icmp));
        }
    }
    node_ports(&source, inv.services.iter(), &reach.node_ports_on, out);
}

/// ICMP to each peer node, and path MTU to its chosen pod.
pub(crate) fn node_peers(
    source: &Source,
    reach: &Reach<'_>,
    opts: &PlanOptions,
    out: &mut Vec<PlannedProbe>,
) {
    for &(other, mtu_pod) in &reach.peers {
        for &ip in &other.ips {
            out.push(probe(
                source,
                Target::Node { node: other.name.clone(), ip, port: None },
                ProbeKind::Icmp,
            ));
        }
        if opts.mtu
            && let Some(pod) = mtu_pod
        {
            for &ip in &pod.ips {
                out.push(probe(source, Target::Pod { pod: pod.pod_ref(), ip, port: None }, ProbeKind::Mtu));
            }
        }
    }
}

/// The NodePorts of `services` on every node of `on` (the seed's externalTrafficPolicy check).
pub(crate) fn node_ports<'s>(
    source: &Source,
    services: impl Iterator<Item = &'s ServiceInfo>,
    on: &[&NodeInfo],
    out: &mut Vec<PlannedProbe>,
) {
    for svc in services {
        for p in svc.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
            let Some(node_port) = p.node_port else { continue };
            for n in on {
                for &ip in &n.ips {
                    let target = Target::Service {
                        service: svc.service_ref(),
                        ip,
                        port: node_port,
                        via: ServiceVia::NodePort,
                    };
                    out.push(probe(source, target, ProbeKind::Tcp));
                }
            }
        }
    }
}

/// The full plan for `node`'s agent. With [`SourcePods::KnownNetns`], pods without a known
/// namespace are not sources (nothing to enter) but stay targets.
pub fn derive_plan(
    inv: &Inventory,
    node: &NodeName,
    opts: &PlanOptions,
    generation: NonZeroU64,
) -> ProbePlan {
    let sources: Vec<&PodInfo> = inv.pods_on(node).collect();
    plan_within(inv, node, &sources, &Reach::full(inv, node), opts, generation)
}

/// The plan for `node` with `local` as its pods, reaching `reach`.
pub(crate) fn plan_within(
    inv: &Inventory,
    node: &NodeName,
    local: &[&PodInfo],
    reach: &Reach<'_>,
    opts: &PlanOptions,
    generation: NonZeroU64,
) -> ProbePlan {
    let mut probes = Vec::new();
    node_probes(inv, node, reach, opts, &mut probes);
    let sources = local.iter().filter(|p| match opts.sources {
        SourcePods::All => true,
        SourcePods::KnownNetns => p.netns.is_some(),
    });
    for pod in sources {
        pod_probes(inv, pod, reach, opts, &mut probes);
    }
    // A checked plan: a probe that contradicts itself is a bug here, not something to send.
    probes.retain(|p| p.check().is_ok());
    ProbePlan { generation, schedule: opts.schedule, probes }
}

#[cfg(test)]
pub(crate) mod tests;
