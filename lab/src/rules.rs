//! kube-proxy's NAT rules for one lab node, rendered as text in the shapes real kube-proxy
//! produces: `iptables-restore` input ([`iptables`]) and an `nft -f` script ([`nftables`]).
//!
//! Everything here is a pure function of the [`LabPlan`]: no I/O. The builder loads the text
//! into each node's namespace; [`expected_nat`] lists what the loaded rules implement, so a test
//! can compare it with what an inspector reads back.
//!
//! Both renderers share one view of a node (`NodeView`): the service ports that get rules in a
//! family, each with its endpoints in kube-proxy's order (sorted by `ip:port` text, as
//! kube-proxy's endpoint-slice cache sorts them) and which of them run on this node.
//!
//! Chain names hash exactly like kube-proxy's (SHA-256, then RFC 4648 base32, truncated): the
//! agent must follow jumps and never recompute names, but the lab's names are still the ones a
//! real cluster would show for the same service.

pub mod iptables;
pub mod nftables;
mod sha256;

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use netdiag_model::inventory::{Protocol, ProxyMode, TrafficPolicy};
use netdiag_model::{Port, ServiceRef};

use crate::plan::{LabPlan, NodePlan, PortPlan};
use crate::topology::ServiceType;

/// An IP family: kube-proxy runs one proxier per family, each with its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The command that loads [`iptables::render_iptables`] output for this family.
    pub fn restore_command(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    /// The command that reads iptables rules back for this family.
    pub fn save_command(self) -> &'static str {
        match self {
            Family::V4 => "iptables-save",
            Family::V6 => "ip6tables-save",
        }
    }

    /// The nftables family of the `kube-proxy` table (`ip` or `ip6`).
    pub fn nft_family(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// The rules for `node` in the lab's proxy mode: [`iptables::render_iptables`] or
/// [`nftables::render_nftables`].
pub fn render(plan: &LabPlan, node: &NodePlan, family: Family) -> String {
    match plan.proxy_mode {
        ProxyMode::Iptables => iptables::render_iptables(plan, node, family),
        ProxyMode::Nftables => nftables::render_nftables(plan, node, family),
    }
}

/// How traffic reaches a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Frontend {
    /// To the cluster IP and service port.
    ClusterIp,
    /// To this node's address and the node port, from outside the node.
    NodePort,
}

/// What the rules do with a new connection to a frontend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NatOutcome {
    /// DNAT to one of these endpoints, chosen at random, in the order the rules list them.
    Dnat(Vec<SocketAddr>),
    /// The service has no endpoints at all: rejected with ICMP port unreachable.
    Reject,
    /// `externalTrafficPolicy: Local` and no endpoint on this node: dropped.
    Drop,
}

/// One (service port, frontend) that a node's rules implement, in one family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExpectedNat {
    pub service: ServiceRef,
    pub port_name: Option<String>,
    pub frontend: Frontend,
    /// The cluster IP, or for [`Frontend::NodePort`] this node's address in the family.
    pub ip: IpAddr,
    /// The service port, or the node port.
    pub port: Port,
    pub protocol: Protocol,
    pub outcome: NatOutcome,
}

impl ExpectedNat {
    pub fn destination(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.get())
    }
}

/// Every (service port, frontend) the rules of `node` implement in `family`, in plan order:
/// for each service port its cluster IP, then its node port if it has one. Headless services
/// and services without an address in the family have none. A node port's targets are those
/// reached by traffic from outside the node (only local endpoints under
/// `externalTrafficPolicy: Local`).
pub fn expected_nat(plan: &LabPlan, node: &NodePlan, family: Family) -> Vec<ExpectedNat> {
    let Some(view) = NodeView::new(plan, node, family) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for sp in &view.ports {
        let all: Vec<SocketAddr> = sp.endpoints.iter().map(|e| e.addr).collect();
        let entry = |frontend, ip, port, outcome| ExpectedNat {
            service: sp.service.clone(),
            port_name: sp.port.name.clone(),
            frontend,
            ip,
            port,
            protocol: sp.port.protocol,
            outcome,
        };
        let cluster = if all.is_empty() { NatOutcome::Reject } else { NatOutcome::Dnat(all.clone()) };
        out.push(entry(Frontend::ClusterIp, sp.cluster_ip, sp.port.port, cluster));
        if let Some(node_port) = sp.port.node_port {
            let external = if all.is_empty() {
                NatOutcome::Reject
            } else if sp.etp_local {
                let local: Vec<SocketAddr> = sp.local_endpoints().map(|e| e.addr).collect();
                if local.is_empty() { NatOutcome::Drop } else { NatOutcome::Dnat(local) }
            } else {
                NatOutcome::Dnat(all)
            };
            out.push(entry(Frontend::NodePort, view.node_ip, node_port, external));
        }
    }
    out
}

/// One node's view of the cluster in one family: what both renderers turn into rules.
#[derive(Debug, Clone)]
pub(crate) struct NodeView<'a> {
    pub(crate) family: Family,
    pub(crate) node_ip: IpAddr,
    /// The cluster's pod CIDR: kube-proxy's `--detect-local-mode=ClusterCIDR`.
    pub(crate) cluster_cidr: IpNet,
    pub(crate) service_cidr: IpNet,
    /// Service ports with a cluster IP in this family, in plan order.
    pub(crate) ports: Vec<SvcPort<'a>>,
}

/// A service port as one kube-proxy proxier sees it.
#[derive(Debug, Clone)]
pub(crate) struct SvcPort<'a> {
    pub(crate) service: &'a ServiceRef,
    pub(crate) port: &'a PortPlan,
    /// kube-proxy's service port name, `ns/svc:port` (`ns/svc` for an unnamed port).
    pub(crate) name: String,
    pub(crate) cluster_ip: IpAddr,
    /// Ready endpoints in this family, sorted by `ip:port` text.
    pub(crate) endpoints: Vec<Endpoint>,
    /// `externalTrafficPolicy: Local` on an externally reachable (NodePort) port.
    pub(crate) etp_local: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) addr: SocketAddr,
    /// The endpoint's pod runs on the node the rules are for.
    pub(crate) local: bool,
}

impl SvcPort<'_> {
    /// `tcp` or `udp`, as kube-proxy writes protocols.
    pub(crate) fn proto(&self) -> &'static str {
        match self.port.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub(crate) fn local_endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.iter().filter(|e| e.local)
    }

    pub(crate) fn has_local_endpoints(&self) -> bool {
        self.endpoints.iter().any(|e| e.local)
    }
}

impl<'a> NodeView<'a> {
    /// `None` when the lab has nothing in `family` (an IPv4-only lab asked for IPv6).
    pub(crate) fn new(plan: &'a LabPlan, node: &'a NodePlan, family: Family) -> Option<Self> {
        let (node_ip, cluster_cidr, service_cidr) = match family {
            Family::V4 => (IpAddr::V4(node.ip), IpNet::V4(plan.pod_cidr), IpNet::V4(plan.service_cidr)),
            Family::V6 => {
                (IpAddr::V6(node.ip_v6?), IpNet::V6(plan.pod_cidr_v6?), IpNet::V6(plan.service_cidr_v6?))
            }
        };
        let mut ports = Vec::new();
        for svc in &plan.services {
            let cluster_ip = match family {
                Family::V4 => svc.cluster_ip.map(IpAddr::V4),
                Family::V6 => svc.cluster_ip_v6.map(IpAddr::V6),
            };
            let Some(cluster_ip) = cluster_ip else { continue };
            if svc.kind == ServiceType::Headless {
                continue;
            }
            for port in &svc.ports {
                let mut endpoints: Vec<Endpoint> = svc
                    .endpoints
                    .iter()
                    .filter_map(|&i| plan.pods.get(i))
                    .filter_map(|pod| {
                        let ip = match family {
                            Family::V4 => Some(IpAddr::V4(pod.ip)),
                            Family::V6 => pod.ip_v6.map(IpAddr::V6),
                        }?;
                        Some(Endpoint {
                            addr: SocketAddr::new(ip, port.target_port.get()),
                            local: pod.node == node.name,
                        })
                    })
                    .collect();
                // kube-proxy's endpoint-slice cache sorts endpoints by their `ip:port` string.
                endpoints.sort_by_cached_key(|e| e.addr.to_string());
                endpoints.dedup();
                ports.push(SvcPort {
                    service: &svc.service,
                    port,
                    name: port.display_name(&svc.service),
                    cluster_ip,
                    endpoints,
                    etp_local: port.node_port.is_some()
                        && svc.external_traffic_policy == TrafficPolicy::Local,
                });
            }
        }
        Some(NodeView { family, node_ip, cluster_cidr, service_cidr, ports })
    }
}

/// RFC 4648 base32 (standard alphabet, no padding) of `bytes`, as Go's
/// `base32.StdEncoding.EncodeToString` minus its trailing `=`.
pub(crate) fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buf: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buf >> bits) & 31) as usize]));
        }
        buf &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buf << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The first `len` characters of base32(sha256(`input`)): kube-proxy's chain-name hash.
pub(crate) fn hash_prefix(input: &str, len: usize) -> String {
    let mut s = base32(&sha256::digest(input.as_bytes()));
    s.truncate(len);
    s
}

#[cfg(test)]
mod tests;
