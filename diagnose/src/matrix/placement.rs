//! Where things live, for the node-level matrix: an index built once from an [`Inventory`]
//! snapshot that answers "which node runs this pod / owns this IP" and "is this a Service VIP"
//! without scanning the inventory per result.

use std::net::IpAddr;

use hashbrown::{HashMap, HashSet};
use ipnet::IpNet;

use netdiag_model::inventory::Inventory;
use netdiag_model::{NodeName, PodRef};

/// What an IP address is, as far as the inventory knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// A pod's IP, a node's own IP, or an address inside a node's pod CIDR.
    Node(&'a NodeName),
    /// A Service ClusterIP, or an address inside a service CIDR.
    ServiceVip,
}

/// Lookups from one inventory snapshot. Rebuild it when the inventory changes; an empty index
/// (`Default`) places nothing, so the node level then holds only node-to-node, VIP and DNS cells
/// whose places need no lookup.
#[derive(Debug, Clone, Default)]
pub struct InventoryIndex {
    pod_nodes: HashMap<PodRef, NodeName>,
    /// Pod IPs and node IPs.
    ip_nodes: HashMap<IpAddr, NodeName>,
    /// Node IPs only (for NodePort labels).
    node_ips: HashMap<IpAddr, NodeName>,
    cluster_ips: HashSet<IpAddr>,
    pod_cidrs: Vec<(IpNet, NodeName)>,
    service_cidrs: Vec<IpNet>,
}

impl InventoryIndex {
    pub fn new(inv: &Inventory) -> Self {
        let mut index = Self::default();
        for node in &inv.nodes {
            for &ip in &node.ips {
                index.ip_nodes.insert(ip, node.name.clone());
                index.node_ips.insert(ip, node.name.clone());
            }
            for cidr in &node.pod_cidrs {
                index.pod_cidrs.push((cidr.trunc(), node.name.clone()));
            }
        }
        for pod in &inv.pods {
            index.pod_nodes.insert(pod.pod_ref(), pod.node.clone());
            for &ip in &pod.ips {
                index.ip_nodes.insert(ip, pod.node.clone());
            }
        }
        for svc in &inv.services {
            for &ip in &svc.cluster_ips {
                index.cluster_ips.insert(ip);
            }
            for ep in &svc.endpoints {
                if let Some(node) = &ep.node {
                    index.ip_nodes.entry(ep.ip).or_insert_with(|| node.clone());
                }
            }
        }
        index.service_cidrs = inv.cluster.service_cidrs.iter().map(IpNet::trunc).collect();
        index
    }

    /// The node a pod runs on.
    pub fn node_of_pod(&self, pod: &PodRef) -> Option<&NodeName> {
        self.pod_nodes.get(pod)
    }

    /// The node whose own address `ip` is (not its pods').
    pub fn node_with_ip(&self, ip: IpAddr) -> Option<&NodeName> {
        self.node_ips.get(&ip)
    }

    /// What `ip` is: exact addresses first (pods, nodes, endpoints, VIPs), then prefixes (pod
    /// CIDRs, service CIDRs). None for an address outside the cluster.
    pub fn place_of_ip(&self, ip: IpAddr) -> Option<Place<'_>> {
        if let Some(node) = self.ip_nodes.get(&ip) {
            return Some(Place::Node(node));
        }
        if self.cluster_ips.contains(&ip) {
            return Some(Place::ServiceVip);
        }
        if let Some((_, node)) = self.pod_cidrs.iter().find(|(p, _)| p.contains(&ip)) {
            return Some(Place::Node(node));
        }
        if self.service_cidrs.iter().any(|p| p.contains(&ip)) {
            return Some(Place::ServiceVip);
        }
        None
    }
}
