//! What a node's agent probes when the collector has not sent a plan: derived from the
//! inventory, pure. Sources are the node itself and every pod on it; targets are every other
//! pod (ICMP and each container port), every service (VIP and each endpoint), every service's
//! DNS name (through the pod's own resolv.conf), each cluster DNS server directly (UDP and TCP),
//! every other node (ICMP, NodePorts, path MTU) and the configured HTTP checks.

use std::net::IpAddr;
use std::num::NonZeroU64;

use netdiag_model::dns::{DnsName, DnsTransport, RecordType};
use netdiag_model::http::HttpPath;
use netdiag_model::inventory::{Inventory, PodInfo, Protocol, ServiceInfo};
use netdiag_model::plan::{PlannedProbe, ProbePlan, Schedule};
use netdiag_model::probe::{ProbeKind, ServiceVia, Source, Target};
use netdiag_model::{NodeName, Port, ServiceRef};
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

/// Which families of probes a derived plan holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    pub schedule: Schedule,
    pub http_checks: Vec<HttpCheck>,
    /// Path-MTU probes from the node to one pod on every other node.
    pub mtu: bool,
}

fn probe(source: &Source, target: Target, kind: ProbeKind) -> PlannedProbe {
    PlannedProbe { source: source.clone(), target, kind, http_path: None }
}

fn tcp_ports(svc: &ServiceInfo) -> impl Iterator<Item = (Port, Port)> + '_ {
    svc.ports.iter().filter(|p| p.protocol == Protocol::Tcp).map(|p| (p.port, p.target_port))
}

/// Probes from one pod source.
fn pod_probes(inv: &Inventory, me: &PodInfo, opts: &PlanOptions, out: &mut Vec<PlannedProbe>) {
    let source = Source::Pod(me.pod_ref());
    let me_ref = me.pod_ref();
    for other in inv.pods.iter().filter(|p| p.pod_ref() != me_ref) {
        for &ip in &other.ips {
            out.push(probe(&source, Target::Pod { pod: other.pod_ref(), ip, port: None }, ProbeKind::Icmp));
            for cp in other.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
                let target = Target::Pod { pod: other.pod_ref(), ip, port: Some(cp.port) };
                out.push(probe(&source, target, ProbeKind::Tcp));
            }
        }
    }
    for svc in &inv.services {
        let service = svc.service_ref();
        for &vip in &svc.cluster_ips {
            for (port, _) in tcp_ports(svc) {
                let target =
                    Target::Service { service: service.clone(), ip: vip, port, via: ServiceVia::ClusterIp };
                out.push(probe(&source, target, ProbeKind::Tcp));
            }
        }
        for ep in svc.ready_endpoints() {
            let Some(pod) = &ep.pod else { continue };
            for (_, target_port) in tcp_ports(svc) {
                let target = Target::Service {
                    service: service.clone(),
                    ip: ep.ip,
                    port: target_port,
                    via: ServiceVia::Endpoint(pod.clone()),
                };
                out.push(probe(&source, target, ProbeKind::Tcp));
            }
        }
        // Through the search list, as an application would ask: `<svc>.<ns>` is what the
        // seed's runbook looks up, and resolves in every namespace.
        if let Ok(name) = DnsName::new(format!("{}.{}", svc.name, svc.namespace)) {
            let records = if svc.cluster_ips.iter().any(IpAddr::is_ipv6)
                || svc.endpoints.iter().any(|e| e.ip.is_ipv6())
            {
                vec![RecordType::A, RecordType::Aaaa]
            } else {
                vec![RecordType::A]
            };
            for record in records {
                let target = Target::Dns {
                    name: name.clone(),
                    record,
                    nameserver: None,
                    transport: DnsTransport::Udp,
                };
                out.push(probe(&source, target, ProbeKind::Dns));
            }
        }
    }
    // Each cluster nameserver on its own, over both transports, asked for the DNS service's
    // own name: it exists wherever the cluster DNS does.
    for &ns in &inv.cluster.dns_ips {
        let Some(dns_svc) = inv.services.iter().find(|s| s.cluster_ips.contains(&ns)) else { continue };
        let Ok(name) = DnsName::new(format!("{}.", dns_svc.dns_name(&inv.cluster.domain))) else { continue };
        let record = if ns.is_ipv6() { RecordType::Aaaa } else { RecordType::A };
        for transport in [DnsTransport::Udp, DnsTransport::Tcp] {
            let target = Target::Dns { name: name.clone(), record, nameserver: Some(ns), transport };
            out.push(probe(&source, target, ProbeKind::Dns));
        }
    }
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
            });
        }
    }
}

/// Probes from the node itself (hostNetwork).
fn node_probes(inv: &Inventory, node: &NodeName, opts: &PlanOptions, out: &mut Vec<PlannedProbe>) {
    let source = Source::Node(node.clone());
    for other in inv.nodes.iter().filter(|n| &n.name != node) {
        for &ip in &other.ips {
            out.push(probe(
                &source,
                Target::Node { node: other.name.clone(), ip, port: None },
                ProbeKind::Icmp,
            ));
        }
        if opts.mtu
            && let Some(pod) = inv.pods_on(&other.name).find(|p| !p.ips.is_empty())
        {
            for &ip in &pod.ips {
                out.push(probe(&source, Target::Pod { pod: pod.pod_ref(), ip, port: None }, ProbeKind::Mtu));
            }
        }
    }
    for pod in &inv.pods {
        for &ip in &pod.ips {
            out.push(probe(&source, Target::Pod { pod: pod.pod_ref(), ip, port: None }, ProbeKind::Icmp));
        }
    }
    // NodePorts on every node (the seed's externalTrafficPolicy check).
    for svc in &inv.services {
        for p in svc.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
            let Some(node_port) = p.node_port else { continue };
            for n in &inv.nodes {
                for &ip in &n.ips {
                    let target = Target::Service {
                        service: svc.service_ref(),
                        ip,
                        port: node_port,
                        via: ServiceVia::NodePort,
                    };
                    out.push(probe(&source, target, ProbeKind::Tcp));
                }
            }
        }
    }
}

/// The plan for `node`'s agent. Pods without a known namespace are not sources (nothing to
/// enter) but stay targets.
pub fn derive_plan(
    inv: &Inventory,
    node: &NodeName,
    opts: &PlanOptions,
    generation: NonZeroU64,
) -> ProbePlan {
    let mut probes = Vec::new();
    node_probes(inv, node, opts, &mut probes);
    for pod in inv.pods_on(node).filter(|p| p.netns.is_some()) {
        pod_probes(inv, pod, opts, &mut probes);
    }
    // A checked plan: a probe that contradicts itself is a bug here, not something to send.
    probes.retain(|p| p.check().is_ok());
    ProbePlan { generation, schedule: opts.schedule, probes }
}

#[cfg(test)]
mod tests;
