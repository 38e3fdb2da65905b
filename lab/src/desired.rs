//! The lab's desired state as a pure function of its plan and active faults: the fault filter
//! chain of each namespace, each node's NAT rules and peer routes, pod link states and sysctls.
//! Injecting or healing a fault only changes the fault list; [`crate::reconcile`] then makes the
//! system match what these functions say.

use std::net::IpAddr;

use ipnet::IpNet;
use netdiag_model::inventory::ProxyMode;

use crate::faults::{ActiveFault, FaultSpec, FilterSource};
use crate::plan::{LabPlan, NodePlan, PodPlan, UPLINK_IF, VXLAN_IF};
use crate::rules::{self, Family};
use crate::topology::Overlay;

/// The filter chain every lab namespace jumps to first from INPUT, FORWARD and OUTPUT.
pub const FAULT_CHAIN: &str = "NETDIAG-FAULTS";

/// Default Linux values the lab restores on heal.
pub const DEFAULT_KEEPALIVE_TIME: u32 = 7200;
pub const DEFAULT_CT_ESTABLISHED_TIMEOUT: u32 = 432_000;

fn specs(faults: &[ActiveFault]) -> impl Iterator<Item = &FaultSpec> {
    faults.iter().map(|f| &f.spec)
}

fn family_of(ip: IpAddr) -> Family {
    if ip.is_ipv4() { Family::V4 } else { Family::V6 }
}

fn node_prefixes(node: &NodePlan, family: Family) -> Vec<IpNet> {
    match family {
        Family::V4 => vec![IpNet::from(IpAddr::V4(node.ip)), node.pod_cidr.into()],
        Family::V6 => node
            .ip_v6
            .map(|ip| IpNet::from(IpAddr::V6(ip)))
            .into_iter()
            .chain(node.pod_cidr_v6.map(IpNet::from))
            .collect(),
    }
}

/// `-m statistic --probability` for a share in percent.
fn probability(percent: u8) -> String {
    format!("{:.5}", f64::from(percent) / 100.0)
}

/// The source prefixes a `pod-filter` on `pod` drops, in one family: the node's addresses and
/// pod CIDR, or the namespace's other pods.
fn filter_sources(
    plan: &LabPlan,
    pod: &netdiag_model::PodRef,
    from: &FilterSource,
    family: Family,
) -> Vec<IpNet> {
    match from {
        FilterSource::Node(n) => plan.node(n).map(|n| node_prefixes(n, family)).unwrap_or_default(),
        FilterSource::Namespace(ns) => plan
            .pods
            .iter()
            .filter(|p| p.pod.namespace == *ns && p.pod != *pod)
            .flat_map(|p| p.ips())
            .filter(|ip| family_of(*ip) == family)
            .map(IpNet::from)
            .collect(),
    }
}

fn comment(fault: &ActiveFault) -> String {
    format!("-m comment --comment \"netdiag-fault-{} {}\"", fault.id, fault.spec.name())
}

/// `iptables-restore --noflush` input that replaces the fault chain's content in one namespace.
pub fn fault_chain_restore(rules: &[String]) -> String {
    let mut text = format!("*filter\n:{FAULT_CHAIN} - [0:0]\n");
    for r in rules {
        text.push_str(&format!("-A {FAULT_CHAIN} {r}\n"));
    }
    text.push_str("COMMIT\n");
    text
}

/// The rules (after `-A NETDIAG-FAULTS`) that the active faults put in namespace `netns`.
pub fn fault_rules(plan: &LabPlan, faults: &[ActiveFault], netns: &str, family: Family) -> Vec<String> {
    let mut out = Vec::new();
    for f in faults {
        let c = comment(f);
        match &f.spec {
            FaultSpec::NodePair { a, b } => {
                for (me, peer) in [(a, b), (b, a)] {
                    let (Some(me), Some(peer)) = (plan.node(me), plan.node(peer)) else { continue };
                    if me.netns != netns {
                        continue;
                    }
                    for net in node_prefixes(peer, family) {
                        out.push(format!("-s {net} {c} -j DROP"));
                        out.push(format!("-d {net} {c} -j DROP"));
                    }
                }
            }
            FaultSpec::NodeIsolate { node } => {
                if plan.node(node).is_some_and(|n| n.netns == netns) {
                    out.push(format!("-i {UPLINK_IF} {c} -j DROP"));
                    out.push(format!("-o {UPLINK_IF} {c} -j DROP"));
                }
            }
            // A closed port lives in the lab's server (its listener closes): no rule.
            FaultSpec::PortClosed { .. } => {}
            FaultSpec::PortDrop { pod, port } => {
                if plan.pod(pod).is_some_and(|p| p.netns == netns) {
                    // Inbound only: the pod's own connections to that port elsewhere stay untouched.
                    out.push(format!("-i {UPLINK_IF} -p tcp -m tcp --dport {port} {c} -j DROP"));
                }
            }
            FaultSpec::PodFilter { pod, from } => {
                if plan.pod(pod).is_none_or(|p| p.netns != netns) {
                    continue;
                }
                // Inbound on the pod's own interface, every protocol, stateful as a
                // NetworkPolicy is: nothing those sources start gets in, while replies to the
                // pod's own connections (its DNS answers, its pings) still do.
                for src in filter_sources(plan, pod, from, family) {
                    out.push(format!(
                        "-i {UPLINK_IF} -s {src} -m conntrack ! --ctstate ESTABLISHED,RELATED {c} -j DROP"
                    ));
                }
            }
            FaultSpec::DnsDown => {
                if plan.dns_pod().is_some_and(|p| p.netns == netns) {
                    out.push(format!("-i {UPLINK_IF} -p udp -m udp --dport 53 {c} -j DROP"));
                    out.push(format!("-i {UPLINK_IF} -p tcp -m tcp --dport 53 {c} -j DROP"));
                }
            }
            FaultSpec::DnsBlock { node } => {
                let (Some(n), Some(dns)) = (plan.node(node), plan.dns_pod()) else { continue };
                if n.netns != netns {
                    continue;
                }
                let dns_ips: Vec<IpAddr> =
                    dns.ips().into_iter().filter(|ip| family_of(*ip) == family).collect();
                for src in node_prefixes(n, family) {
                    for ip in &dns_ips {
                        for proto in ["udp", "tcp"] {
                            out.push(format!(
                                "-s {src} -d {ip} -p {proto} -m {proto} --dport 53 {c} -j DROP"
                            ));
                        }
                    }
                }
            }
            FaultSpec::DnsLoss { percent } => {
                if plan.dns_pod().is_some_and(|p| p.netns == netns) {
                    let p = probability(*percent);
                    for proto in ["udp", "tcp"] {
                        out.push(format!(
                            "-i {UPLINK_IF} -p {proto} -m {proto} --dport 53 -m statistic --mode random --probability {p} {c} -j DROP"
                        ));
                    }
                }
            }
            FaultSpec::Loss { node, percent, direction } => {
                if plan.node(node).is_some_and(|n| n.netns == netns) {
                    let p = probability(*percent);
                    for dir in direction.iptables_flags() {
                        out.push(format!(
                            "{dir} {UPLINK_IF} -m statistic --mode random --probability {p} {c} -j DROP"
                        ));
                    }
                }
            }
            FaultSpec::Mtu { node, size, direction } => {
                if plan.node(node).is_some_and(|n| n.netns == netns) {
                    for dir in direction.iptables_flags() {
                        out.push(format!(
                            "{dir} {UPLINK_IF} -m length --length {}:65535 {c} -j DROP",
                            u32::from(*size) + 1
                        ));
                    }
                }
            }
            FaultSpec::IdleCut { node, .. } => {
                if plan.node(node).is_some_and(|n| n.netns == netns) {
                    out.push(format!("-m conntrack --ctstate INVALID {c} -j DROP"));
                }
            }
            FaultSpec::PodDown { .. }
            | FaultSpec::DnatMissing { .. }
            | FaultSpec::DnsServfail
            | FaultSpec::RouteMissing { .. }
            | FaultSpec::Keepalive { .. }
            | FaultSpec::ForwardingOff { .. }
            // Policy faults change the policy chains (`crate::netpol`), not the fault chain.
            | FaultSpec::PolicyNotEnforced { .. }
            | FaultSpec::ExtraDeny { .. } => {}
        }
    }
    out
}

/// A service VIP whose DNAT entries a fault deleted: (VIP, the one port or all, every
/// (port, protocol) affected).
type MissingDnat = (IpAddr, Option<u16>, Vec<(u16, &'static str)>);

/// The node's kube-proxy rules for one family, minus the DNAT entries the active faults delete.
/// Returns the text for `iptables-restore` (iptables mode) or `nft -f` (nftables mode).
pub fn nat_rules(plan: &LabPlan, node: &NodePlan, faults: &[ActiveFault], family: Family) -> String {
    let missing: Vec<MissingDnat> = specs(faults)
        .filter_map(|s| match s {
            FaultSpec::DnatMissing { node: n, service, port } if *n == node.name => {
                let svc = plan.service(service)?;
                let ports = svc
                    .ports
                    .iter()
                    .filter(|p| port.is_none_or(|want| want == p.port))
                    .map(|p| (p.port.get(), proto_name(p.protocol)))
                    .collect();
                let vip = match family {
                    Family::V4 => svc.cluster_ip.map(IpAddr::V4),
                    Family::V6 => svc.cluster_ip_v6.map(IpAddr::V6),
                }?;
                Some((vip, port.map(|p| p.get()), ports))
            }
            _ => None,
        })
        .collect();
    match plan.proxy_mode {
        ProxyMode::Iptables => {
            let text = rules::iptables::render_iptables(plan, node, family);
            text.lines()
                .filter(|line| {
                    !missing.iter().any(|(vip, port, _)| {
                        let prefix = if vip.is_ipv4() { 32 } else { 128 };
                        line.starts_with("-A KUBE-SERVICES ")
                            && line.contains(&format!("-d {vip}/{prefix} "))
                            && port.is_none_or(|p| line.contains(&format!("--dport {p} ")))
                    })
                })
                .map(|l| format!("{l}\n"))
                .collect()
        }
        ProxyMode::Nftables => {
            let mut text = rules::nftables::render_nftables(plan, node, family);
            let table = match family {
                Family::V4 => "ip",
                Family::V6 => "ip6",
            };
            for (vip, _, ports) in &missing {
                for (port, proto) in ports {
                    text.push_str(&format!(
                        "delete element {table} kube-proxy service-ips {{ {vip} . {proto} . {port} }}\n"
                    ));
                }
            }
            text
        }
    }
}

fn proto_name(p: netdiag_model::inventory::Protocol) -> &'static str {
    match p {
        netdiag_model::inventory::Protocol::Tcp => "tcp",
        netdiag_model::inventory::Protocol::Udp => "udp",
    }
}

/// `ip route` arguments (after `route replace`) for a node's routes to a peer's pod CIDRs.
pub fn peer_routes(plan: &LabPlan, peer: &NodePlan) -> Vec<String> {
    let mut routes = Vec::new();
    match plan.overlay {
        Overlay::Routed => {
            routes.push(format!("{} via {} dev {UPLINK_IF}", peer.pod_cidr, peer.ip));
        }
        Overlay::Vxlan => {
            routes.push(format!("{} via {} dev {VXLAN_IF} onlink", peer.pod_cidr, peer.pod_cidr.network()));
        }
    }
    // IPv6 pod traffic is routed over the underlay in both overlays (flannel runs a second
    // VXLAN device for v6; the lab keeps one).
    if let (Some(cidr), Some(gw)) = (peer.pod_cidr_v6, peer.ip_v6) {
        routes.push(format!("{cidr} via {gw} dev {UPLINK_IF}"));
    }
    routes
}

/// `ip route` lines (after `ip -n <node>`) that send a node's own Service VIP traffic to the
/// underlay, so kube-proxy's OUTPUT DNAT gets to rewrite it.
pub fn service_routes(plan: &LabPlan) -> Vec<String> {
    std::iter::once(format!("route replace {} dev {UPLINK_IF}", plan.service_cidr))
        .chain(plan.service_cidr_v6.map(|c| format!("route replace {c} dev {UPLINK_IF}")))
        .collect()
}

/// Whether the faults delete `node`'s routes to `peer`.
pub fn route_missing(faults: &[ActiveFault], node: &NodePlan, peer: &NodePlan) -> bool {
    specs(faults).any(
        |s| matches!(s, FaultSpec::RouteMissing { node: n, peer: p } if *n == node.name && *p == peer.name),
    )
}

pub fn pod_link_up(faults: &[ActiveFault], pod: &PodPlan) -> bool {
    !specs(faults).any(|s| matches!(s, FaultSpec::PodDown { pod: p } if *p == pod.pod))
}

pub fn dns_servfail(faults: &[ActiveFault]) -> bool {
    specs(faults).any(|s| matches!(s, FaultSpec::DnsServfail))
}

/// The pods' ports `port-closed` faults close (the lab's server closes their listeners).
pub fn closed_ports(faults: &[ActiveFault]) -> std::collections::BTreeSet<(netdiag_model::PodRef, u16)> {
    specs(faults)
        .filter_map(|s| match s {
            FaultSpec::PortClosed { pod, port } => Some((pod.clone(), port.get())),
            _ => None,
        })
        .collect()
}

/// Sysctls the faults control: (netns, key, value); the defaults when no fault is active.
pub fn fault_sysctls(plan: &LabPlan, faults: &[ActiveFault]) -> Vec<(String, &'static str, String)> {
    let mut out = Vec::new();
    for pod in &plan.pods {
        let keepalive = specs(faults)
            .find_map(|s| match s {
                FaultSpec::Keepalive { pod: p, seconds } if *p == pod.pod => Some(*seconds),
                _ => None,
            })
            .unwrap_or(DEFAULT_KEEPALIVE_TIME);
        out.push((pod.netns.clone(), "net.ipv4.tcp_keepalive_time", keepalive.to_string()));
    }
    for node in &plan.nodes {
        let cut = specs(faults).find_map(|s| match s {
            FaultSpec::IdleCut { node: n, seconds } if *n == node.name => Some(*seconds),
            _ => None,
        });
        out.push((
            node.netns.clone(),
            "net.netfilter.nf_conntrack_tcp_timeout_established",
            cut.unwrap_or(DEFAULT_CT_ESTABLISHED_TIMEOUT).to_string(),
        ));
        let forwarding_off =
            specs(faults).any(|s| matches!(s, FaultSpec::ForwardingOff { node: n } if *n == node.name));
        out.push((
            node.netns.clone(),
            "net.ipv4.ip_forward",
            if forwarding_off { "0" } else { "1" }.to_owned(),
        ));
        // With loose pickup off, a packet of a forgotten connection is INVALID, not a new flow.
        out.push((
            node.netns.clone(),
            "net.netfilter.nf_conntrack_tcp_loose",
            if cut.is_some() { "0" } else { "1" }.to_owned(),
        ));
    }
    out
}

#[cfg(test)]
mod tests;
