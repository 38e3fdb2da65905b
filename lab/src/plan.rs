//! The addressing plan: every namespace, interface, address, route and endpoint of a lab,
//! computed from a [`Topology`] without touching the system. The builder applies it; the
//! inventory and status are derived from it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netdiag_model::inventory::{
    ClusterInfo, ContainerPort, EndpointInfo, INVENTORY_VERSION, Inventory, NodeInfo, PodInfo, Protocol,
    ProxyMode, ServiceInfo, ServiceKind, ServicePort, TrafficPolicy,
};
use netdiag_model::netpol::{NamespaceObject, NetworkPolicy};
use netdiag_model::{NodeName, PodRef, Port, ServiceRef};
use serde::{Deserialize, Serialize};

use crate::topology::{AppKind, Overlay, ServiceType, Topology};

/// Where `ip netns add` puts its bind mounts.
pub const NETNS_DIR: &str = "/var/run/netns";
/// The interface name of a node's link to the underlay and of a pod's link to its node.
pub const UPLINK_IF: &str = "eth0";
/// The VXLAN device on each node (flannel's name).
pub const VXLAN_IF: &str = "flannel.1";
pub const VXLAN_ID: u32 = 1;
pub const VXLAN_PORT: u16 = 8472;
pub const VXLAN_MTU: u32 = 1450;
pub const LINK_MTU: u32 = 1500;
/// The bridge inside the underlay namespace that joins every node.
pub const UNDERLAY_BRIDGE: &str = "br0";
/// The node-side address of every pod veth: the pod's default gateway (Calico's trick of one
/// link-local gateway on every veth, so pod traffic is always routed through the node).
pub const POD_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
pub const POD_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("node {node}: pod_cidr {pod_cidr} has no /24 left for node number {index}")]
    PodCidrExhausted { node: NodeName, pod_cidr: Ipv4Net, index: usize },
    #[error("node {node} has more pods ({count}) than its /24 holds (253)")]
    TooManyPods { node: NodeName, count: usize },
    #[error("service_cidr {0} has no free address left for a cluster IP")]
    ServiceCidrExhausted(Ipv4Net),
    #[error("service {service}: cluster IP {ip} is already used by {other}")]
    DuplicateClusterIp { service: ServiceRef, ip: IpAddr, other: String },
    #[error("the DNS service VIP {0} must belong to a ClusterIP service selecting the dns pod")]
    NoDnsService(Ipv4Addr),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabPlan {
    pub name: String,
    pub proxy_mode: ProxyMode,
    pub overlay: Overlay,
    pub ipv6: bool,
    pub domain: String,
    pub pod_cidr: Ipv4Net,
    pub pod_cidr_v6: Option<Ipv6Net>,
    pub service_cidr: Ipv4Net,
    pub service_cidr_v6: Option<Ipv6Net>,
    pub node_cidr: Ipv4Net,
    pub node_cidr_v6: Option<Ipv6Net>,
    /// The namespace holding the bridge that joins the nodes (the lab's "switch").
    pub underlay_netns: String,
    /// The lab's control address on the underlay bridge (where the collector listens).
    pub control_ip: Ipv4Addr,
    pub control_ip_v6: Option<Ipv6Addr>,
    pub dns_ip: Ipv4Addr,
    pub nodes: Vec<NodePlan>,
    pub pods: Vec<PodPlan>,
    pub services: Vec<ServicePlan>,
    /// Namespaces and their labels (empty for a topology without namespaces or policies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<NamespaceObject>,
    /// The topology's NetworkPolicies (checked when the topology was loaded); the lab enforces
    /// them ([`crate::netpol`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_policies: Vec<NetworkPolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodePlan {
    pub name: NodeName,
    /// 1-based; also the third octet of the node's pod CIDR.
    pub index: usize,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub ip_v6: Option<Ipv6Addr>,
    pub pod_cidr: Ipv4Net,
    pub pod_cidr_v6: Option<Ipv6Net>,
    /// The underlay-side end of the node's uplink, inside the underlay namespace.
    pub underlay_port: String,
    /// The node's VXLAN device MAC (deterministic, so peers can be wired statically).
    pub vxlan_mac: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodPlan {
    pub pod: PodRef,
    pub node: NodeName,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub ip_v6: Option<Ipv6Addr>,
    /// The node-side end of the pod's veth, inside the node namespace.
    pub host_if: String,
    pub mtu: u32,
    pub app: AppKind,
    pub ports: Vec<Port>,
    /// Container port names, for NetworkPolicy named ports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub port_names: BTreeMap<Port, String>,
    pub labels: BTreeMap<String, String>,
    pub listen: bool,
}

impl PodPlan {
    pub fn ips(&self) -> Vec<IpAddr> {
        std::iter::once(IpAddr::V4(self.ip)).chain(self.ip_v6.map(IpAddr::V6)).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServicePlan {
    pub service: ServiceRef,
    pub kind: ServiceType,
    pub cluster_ip: Option<Ipv4Addr>,
    pub cluster_ip_v6: Option<Ipv6Addr>,
    pub ports: Vec<PortPlan>,
    /// Indexes into [`LabPlan::pods`] of the selected pods, in topology order.
    pub endpoints: Vec<usize>,
    pub external_traffic_policy: TrafficPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortPlan {
    pub name: Option<String>,
    pub port: Port,
    pub target_port: Port,
    pub node_port: Option<Port>,
    pub protocol: Protocol,
}

impl PortPlan {
    /// kube-proxy's service port name: `<ns>/<svc>` or `<ns>/<svc>:<port name>`.
    pub fn display_name(&self, svc: &ServiceRef) -> String {
        match &self.name {
            Some(n) => format!("{svc}:{n}"),
            None => svc.to_string(),
        }
    }
}

/// A stable 32-bit FNV-1a hash, for interface names and MACs that must not change between runs.
pub(crate) fn fnv32(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

fn nth_v4(net: Ipv4Net, n: u32) -> Option<Ipv4Addr> {
    let base = u32::from(net.network());
    let size = 1u64 << (32 - net.prefix_len());
    (u64::from(n) < size).then(|| Ipv4Addr::from(base + n))
}

fn nth_v6(net: Ipv6Net, n: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()) + n)
}

impl LabPlan {
    pub fn from_topology(t: &Topology) -> Result<Self, PlanError> {
        let name = t.name.clone();
        let v6 = t.ipv6;
        let control_ip = nth_v4(t.node_cidr, 1).unwrap_or(Ipv4Addr::UNSPECIFIED);

        let mut nodes = Vec::new();
        for (i, node) in t.nodes.iter().enumerate() {
            let index = i + 1;
            // Node IPs start at .11 so .1-.10 stay free for the lab's own services.
            let ip = nth_v4(t.node_cidr, 10 + index as u32).unwrap_or(Ipv4Addr::UNSPECIFIED);
            let pod_cidr =
                nth_v4(t.pod_cidr, (index as u32) << 8).and_then(|a| Ipv4Net::new(a, 24).ok()).ok_or_else(
                    || PlanError::PodCidrExhausted { node: node.clone(), pod_cidr: t.pod_cidr, index },
                )?;
            let pod_cidr_v6 = v6.then(|| {
                Ipv6Net::new(nth_v6(t.pod_cidr_v6, (index as u128) << 64), 64).unwrap_or(t.pod_cidr_v6)
            });
            nodes.push(NodePlan {
                name: node.clone(),
                index,
                netns: format!("{name}-{node}"),
                ip,
                ip_v6: v6.then(|| nth_v6(t.node_cidr_v6, 10 + index as u128)),
                pod_cidr,
                pod_cidr_v6,
                underlay_port: format!("node{index}"),
                vxlan_mac: format!("0e:6e:64:00:{:02x}:{:02x}", index >> 8, index & 0xff),
            });
        }

        let mut pods = Vec::new();
        let mut per_node: BTreeMap<&NodeName, u32> = BTreeMap::new();
        for p in &t.pods {
            let node = nodes.iter().find(|n| n.name == p.node).ok_or_else(|| {
                // Topology checking guarantees the node exists; stay total anyway.
                PlanError::TooManyPods { node: p.node.clone(), count: 0 }
            })?;
            let slot = per_node.entry(&p.node).or_insert(1);
            *slot += 1;
            if *slot > 254 {
                return Err(PlanError::TooManyPods {
                    node: p.node.clone(),
                    count: t.pods.iter().filter(|q| q.node == p.node).count(),
                });
            }
            let ip = nth_v4(node.pod_cidr, *slot).unwrap_or(Ipv4Addr::UNSPECIFIED);
            let ip_v6 = node.pod_cidr_v6.map(|n| nth_v6(n, u128::from(*slot)));
            pods.push(PodPlan {
                pod: p.pod.clone(),
                node: p.node.clone(),
                netns: format!("{name}-pod-{}-{}", p.pod.namespace, p.pod.name),
                ip,
                ip_v6,
                host_if: format!("veth{:08x}", fnv32(&p.pod.to_string())),
                mtu: match t.overlay {
                    Overlay::Routed => LINK_MTU,
                    Overlay::Vxlan => VXLAN_MTU,
                },
                app: p.app,
                ports: p.ports.clone(),
                port_names: p.port_names.clone(),
                labels: p.labels.clone(),
                listen: p.listen,
            });
        }

        let mut services: Vec<ServicePlan> = Vec::new();
        let mut used: BTreeMap<IpAddr, String> = BTreeMap::new();
        for s in &t.services {
            for ip in s.cluster_ip.map(IpAddr::V4).into_iter().chain(s.cluster_ip_v6.map(IpAddr::V6)) {
                if let Some(other) = used.insert(ip, s.service.to_string()) {
                    return Err(PlanError::DuplicateClusterIp { service: s.service.clone(), ip, other });
                }
            }
        }
        let mut next_auto = 100u32;
        for s in &t.services {
            let headless = s.kind == ServiceType::Headless;
            let cluster_ip = match (headless, s.cluster_ip) {
                (true, _) => None,
                (false, Some(ip)) => Some(ip),
                (false, None) => loop {
                    let ip = nth_v4(t.service_cidr, next_auto)
                        .ok_or(PlanError::ServiceCidrExhausted(t.service_cidr))?;
                    next_auto += 1;
                    if !used.contains_key(&IpAddr::V4(ip)) && ip != t.dns_ip {
                        used.insert(IpAddr::V4(ip), s.service.to_string());
                        break Some(ip);
                    }
                },
            };
            // The v6 VIP mirrors the v4 one's low bits unless given explicitly.
            let cluster_ip_v6 = match (v6, headless, s.cluster_ip_v6, cluster_ip) {
                (true, false, Some(ip), _) => Some(ip),
                (true, false, None, Some(v4)) => {
                    let low = u32::from(v4) & !u32::from(t.service_cidr.netmask());
                    Some(nth_v6(t.service_cidr_v6, u128::from(low)))
                }
                _ => None,
            };
            let endpoints = pods
                .iter()
                .enumerate()
                .filter(|(_, p)| {
                    p.pod.namespace == s.service.namespace
                        && !s.selector.is_empty()
                        && s.selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
                })
                .map(|(i, _)| i)
                .collect();
            services.push(ServicePlan {
                service: s.service.clone(),
                kind: s.kind,
                cluster_ip,
                cluster_ip_v6,
                ports: s
                    .ports
                    .iter()
                    .map(|p| PortPlan {
                        name: p.name.clone(),
                        port: p.port,
                        target_port: p.target_port,
                        node_port: p.node_port,
                        protocol: p.protocol,
                    })
                    .collect(),
                endpoints,
                external_traffic_policy: s.external_traffic_policy,
            });
        }
        let dns_ok = services.iter().any(|s| {
            s.cluster_ip == Some(t.dns_ip) && s.endpoints.iter().any(|&i| pods[i].app == AppKind::Dns)
        });
        if !dns_ok {
            return Err(PlanError::NoDnsService(t.dns_ip));
        }

        Ok(LabPlan {
            name,
            proxy_mode: t.proxy_mode,
            overlay: t.overlay,
            ipv6: v6,
            domain: t.cluster_domain.clone(),
            pod_cidr: t.pod_cidr,
            pod_cidr_v6: v6.then_some(t.pod_cidr_v6),
            service_cidr: t.service_cidr,
            service_cidr_v6: v6.then_some(t.service_cidr_v6),
            node_cidr: t.node_cidr,
            node_cidr_v6: v6.then_some(t.node_cidr_v6),
            underlay_netns: format!("{}-underlay", t.name),
            control_ip,
            control_ip_v6: v6.then(|| nth_v6(t.node_cidr_v6, 1)),
            dns_ip: t.dns_ip,
            nodes,
            pods,
            services,
            namespaces: t.namespaces.clone(),
            network_policies: t.network_policies.clone(),
        })
    }

    /// Every namespace of the lab, underlay first, then nodes, then pods.
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.underlay_netns.clone())
            .chain(self.nodes.iter().map(|n| n.netns.clone()))
            .chain(self.pods.iter().map(|p| p.netns.clone()))
            .collect()
    }

    pub fn node(&self, name: &NodeName) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| &n.name == name)
    }

    pub fn pod(&self, pod: &PodRef) -> Option<&PodPlan> {
        self.pods.iter().find(|p| &p.pod == pod)
    }

    pub fn service(&self, svc: &ServiceRef) -> Option<&ServicePlan> {
        self.services.iter().find(|s| &s.service == svc)
    }

    /// The pod that serves cluster DNS.
    pub fn dns_pod(&self) -> Option<&PodPlan> {
        self.pods.iter().find(|p| p.app == AppKind::Dns)
    }

    /// Every prefix the lab owns.
    pub fn prefixes(&self) -> Vec<IpNet> {
        let mut v: Vec<IpNet> = vec![self.node_cidr.into(), self.pod_cidr.into(), self.service_cidr.into()];
        v.extend(self.node_cidr_v6.map(IpNet::from));
        v.extend(self.pod_cidr_v6.map(IpNet::from));
        v.extend(self.service_cidr_v6.map(IpNet::from));
        v
    }

    pub fn netns_path(netns: &str) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(netns)
    }

    /// The pod's own resolv.conf, as the lab writes it.
    pub fn resolv_conf_text(&self, pod: &PodPlan) -> String {
        format!(
            "# written by netdiag lab for {pod}\nnameserver {dns}\nsearch {ns}.svc.{d} svc.{d} {d}\noptions ndots:5\n",
            pod = pod.pod,
            dns = self.dns_ip,
            ns = pod.pod.namespace,
            d = self.domain,
        )
    }

    /// The static inventory that agents and the collector read in lab mode.
    pub fn inventory(&self, state_dir: &std::path::Path) -> Inventory {
        let nodes = self
            .nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                ips: std::iter::once(IpAddr::V4(n.ip)).chain(n.ip_v6.map(IpAddr::V6)).collect(),
                pod_cidrs: std::iter::once(IpNet::V4(n.pod_cidr))
                    .chain(n.pod_cidr_v6.map(IpNet::V6))
                    .collect(),
                netns: Some(Self::netns_path(&n.netns)),
            })
            .collect();
        let pods = self
            .pods
            .iter()
            .map(|p| PodInfo {
                namespace: p.pod.namespace.clone(),
                name: p.pod.name.clone(),
                node: p.node.clone(),
                ips: p.ips(),
                labels: p.labels.clone(),
                ports: self
                    .listening_ports(p)
                    .into_iter()
                    .map(|(port, protocol)| ContainerPort {
                        name: p.port_names.get(&port).cloned(),
                        port,
                        protocol,
                    })
                    .collect(),
                netns: Some(Self::netns_path(&p.netns)),
                resolv_conf: Some(resolv_conf_path(state_dir, &p.pod)),
            })
            .collect();
        let services = self
            .services
            .iter()
            .map(|s| ServiceInfo {
                namespace: s.service.namespace.clone(),
                name: s.service.name.clone(),
                kind: match s.kind {
                    ServiceType::NodePort => ServiceKind::NodePort,
                    ServiceType::ClusterIP | ServiceType::Headless => ServiceKind::ClusterIP,
                },
                cluster_ips: s
                    .cluster_ip
                    .map(IpAddr::V4)
                    .into_iter()
                    .chain(s.cluster_ip_v6.map(IpAddr::V6))
                    .collect(),
                ports: s
                    .ports
                    .iter()
                    .map(|p| ServicePort {
                        name: p.name.clone(),
                        port: p.port,
                        target_port: p.target_port,
                        node_port: p.node_port,
                        protocol: p.protocol,
                    })
                    .collect(),
                endpoints: s
                    .endpoints
                    .iter()
                    .flat_map(|&i| {
                        let p = &self.pods[i];
                        p.ips().into_iter().map(move |ip| EndpointInfo {
                            ip,
                            pod: Some(p.pod.clone()),
                            node: Some(p.node.clone()),
                            hostname: (s.kind == ServiceType::Headless).then(|| p.pod.name.to_string()),
                            ready: true,
                        })
                    })
                    .collect(),
                external_traffic_policy: s.external_traffic_policy,
            })
            .collect();
        Inventory {
            version: INVENTORY_VERSION,
            cluster: ClusterInfo {
                name: self.name.clone(),
                domain: self.domain.clone(),
                pod_cidrs: std::iter::once(IpNet::V4(self.pod_cidr))
                    .chain(self.pod_cidr_v6.map(IpNet::V6))
                    .collect(),
                service_cidrs: std::iter::once(IpNet::V4(self.service_cidr))
                    .chain(self.service_cidr_v6.map(IpNet::V6))
                    .collect(),
                node_cidrs: std::iter::once(IpNet::V4(self.node_cidr))
                    .chain(self.node_cidr_v6.map(IpNet::V6))
                    .collect(),
                dns_ips: vec![IpAddr::V4(self.dns_ip)],
                proxy_mode: self.proxy_mode,
            },
            nodes,
            pods,
            services,
            namespaces: self.namespaces.clone(),
            network_policies: self.network_policies.clone(),
        }
    }

    /// The (port, protocol) pairs a pod's app listens on: its declared ports, or 53 UDP+TCP for
    /// the DNS pod.
    pub fn listening_ports(&self, pod: &PodPlan) -> Vec<(Port, Protocol)> {
        match pod.app {
            AppKind::Dns => {
                let p53 = Port::new(53).map(|p| vec![(p, Protocol::Udp), (p, Protocol::Tcp)]);
                p53.unwrap_or_default()
            }
            _ => pod.ports.iter().map(|&p| (p, Protocol::Tcp)).collect(),
        }
    }
}

/// Where the lab writes a pod's resolv.conf.
pub fn resolv_conf_path(state_dir: &std::path::Path, pod: &PodRef) -> PathBuf {
    state_dir.join("pods").join(format!("{}_{}", pod.namespace, pod.name)).join("resolv.conf")
}

#[cfg(test)]
mod tests;
