//! The static inventory: what a cluster holds (nodes, pods, services, endpoints) and where each
//! pod's network namespace and resolv.conf live. The lab writes it; agents and the collector read
//! it in lab mode (the Kubernetes inventory produces the same type).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::names::{Name, Namespace, NodeName, PodRef, Port, ServiceRef};

/// Version of the inventory file format; bumped when a reader would misread a newer file.
pub const INVENTORY_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub version: u32,
    pub cluster: ClusterInfo,
    pub nodes: Vec<NodeInfo>,
    pub pods: Vec<PodInfo>,
    pub services: Vec<ServiceInfo>,
    /// Namespaces with their labels (what NetworkPolicy namespace selectors match); a
    /// namespace a pod names but this list lacks has only its `kubernetes.io/metadata.name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<crate::netpol::NamespaceObject>,
    /// `networking.k8s.io/v1` NetworkPolicies as the API (or the lab) gives them, checked
    /// where they are read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_policies: Vec<crate::netpol::NetworkPolicy>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterInfo {
    pub name: String,
    /// DNS suffix of the cluster, `cluster.local` by default.
    pub domain: String,
    pub pod_cidrs: Vec<IpNet>,
    pub service_cidrs: Vec<IpNet>,
    pub node_cidrs: Vec<IpNet>,
    /// The cluster DNS service VIPs (kube-dns), what pods have as `nameserver`.
    pub dns_ips: Vec<IpAddr>,
    /// Which kube-proxy rule style the nodes use.
    pub proxy_mode: ProxyMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    Iptables,
    Nftables,
}

impl std::fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProxyMode::Iptables => "iptables",
            ProxyMode::Nftables => "nftables",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    pub name: NodeName,
    pub ips: Vec<IpAddr>,
    pub pod_cidrs: Vec<IpNet>,
    /// Path of the node's network namespace; `None` when it is the agent's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodInfo {
    pub namespace: Namespace,
    pub name: Name,
    pub node: NodeName,
    pub ips: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Where the pod's network namespace can be entered (a bind mount or `/proc/<pid>/ns/net`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<PathBuf>,
    /// The pod's own resolv.conf as seen from the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<PathBuf>,
}

impl PodInfo {
    pub fn pod_ref(&self) -> PodRef {
        PodRef::new(self.namespace.clone(), self.name.clone())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: Port,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceInfo {
    pub namespace: Namespace,
    pub name: Name,
    #[serde(rename = "type")]
    pub kind: ServiceKind,
    /// Empty for a headless service.
    #[serde(default)]
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    #[serde(default)]
    pub endpoints: Vec<EndpointInfo>,
    #[serde(default)]
    pub external_traffic_policy: TrafficPolicy,
}

impl ServiceInfo {
    pub fn service_ref(&self) -> ServiceRef {
        ServiceRef::new(self.namespace.clone(), self.name.clone())
    }

    pub fn is_headless(&self) -> bool {
        self.cluster_ips.is_empty()
    }

    /// `<name>.<namespace>.svc.<domain>`
    pub fn dns_name(&self, domain: &str) -> String {
        format!("{}.{}.svc.{}", self.name, self.namespace, domain)
    }

    pub fn ready_endpoints(&self) -> impl Iterator<Item = &EndpointInfo> {
        self.endpoints.iter().filter(|e| e.ready)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServiceKind {
    ClusterIP,
    NodePort,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TrafficPolicy {
    #[default]
    Cluster,
    Local,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: Port,
    pub target_port: Port,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<Port>,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointInfo {
    pub ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeName>,
    /// Kubernetes' `hostname` for headless records (`<hostname>.<svc>.<ns>.svc.<domain>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub ready: bool,
}

/// A reference inside the inventory that points at nothing, or a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("inventory file is not valid YAML/JSON for an inventory: {0}")]
    Parse(String),
    #[error(
        "inventory version {found} is not supported (this build reads version {INVENTORY_VERSION}); upgrade netdiag"
    )]
    Version { found: u32 },
    #[error("pod {pod} names node {node}, which the inventory does not list")]
    UnknownNode { pod: PodRef, node: NodeName },
    #[error("{what} {name} is listed twice")]
    Duplicate { what: &'static str, name: String },
    #[error("service {service} endpoint {ip} names pod {pod}, which the inventory does not list")]
    UnknownEndpointPod { service: ServiceRef, ip: IpAddr, pod: PodRef },
}

impl Inventory {
    /// Parses an inventory (YAML, of which JSON is a subset) and checks its references.
    pub fn from_yaml(text: &str) -> Result<Self, InventoryError> {
        let inv: Inventory =
            serde_saphyr::from_str(text).map_err(|e| InventoryError::Parse(e.to_string()))?;
        inv.validate()?;
        Ok(inv)
    }

    pub fn to_yaml(&self) -> String {
        // Serializing plain data with string keys cannot fail; JSON is valid YAML and keeps the
        // writer dependency-free of YAML quirks.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), InventoryError> {
        if self.version != INVENTORY_VERSION {
            return Err(InventoryError::Version { found: self.version });
        }
        let mut nodes = BTreeSet::new();
        for n in &self.nodes {
            if !nodes.insert(&n.name) {
                return Err(InventoryError::Duplicate { what: "node", name: n.name.to_string() });
            }
        }
        let mut pods = BTreeSet::new();
        for p in &self.pods {
            if !nodes.contains(&p.node) {
                return Err(InventoryError::UnknownNode { pod: p.pod_ref(), node: p.node.clone() });
            }
            if !pods.insert(p.pod_ref()) {
                return Err(InventoryError::Duplicate { what: "pod", name: p.pod_ref().to_string() });
            }
        }
        let mut services = BTreeSet::new();
        for s in &self.services {
            if !services.insert(s.service_ref()) {
                return Err(InventoryError::Duplicate { what: "service", name: s.service_ref().to_string() });
            }
            for e in &s.endpoints {
                if let Some(pod) = &e.pod
                    && !pods.contains(pod)
                {
                    return Err(InventoryError::UnknownEndpointPod {
                        service: s.service_ref(),
                        ip: e.ip,
                        pod: pod.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn node(&self, name: &NodeName) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| &n.name == name)
    }

    pub fn pod(&self, pod: &PodRef) -> Option<&PodInfo> {
        self.pods.iter().find(|p| p.namespace == pod.namespace && p.name == pod.name)
    }

    pub fn service(&self, svc: &ServiceRef) -> Option<&ServiceInfo> {
        self.services.iter().find(|s| s.namespace == svc.namespace && s.name == svc.name)
    }

    pub fn pods_on<'a>(&'a self, node: &'a NodeName) -> impl Iterator<Item = &'a PodInfo> + 'a {
        self.pods.iter().filter(move |p| &p.node == node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Inventory {
        Inventory::from_yaml(
            r#"
version: 1
cluster:
  name: lab
  domain: cluster.local
  pod_cidrs: [10.244.0.0/16]
  service_cidrs: [10.96.0.0/16]
  node_cidrs: [172.29.0.0/24]
  dns_ips: [10.96.0.10]
  proxy_mode: iptables
nodes:
  - name: node-1
    ips: [172.29.0.11]
    pod_cidrs: [10.244.1.0/24]
pods:
  - namespace: tidb
    name: demo-pd-0
    node: node-1
    ips: [10.244.1.2]
    ports: [{port: 2379}, {port: 2380}]
services:
  - namespace: tidb
    name: demo-pd
    type: ClusterIP
    cluster_ips: [10.96.0.20]
    ports: [{name: client, port: 2379, target_port: 2379}]
    endpoints: [{ip: 10.244.1.2, pod: tidb/demo-pd-0, node: node-1, ready: true}]
"#,
        )
        .unwrap()
    }

    #[test]
    fn parses_and_round_trips() {
        let inv = sample();
        assert_eq!(inv.pods[0].ports[0].protocol, Protocol::Tcp);
        assert_eq!(inv.services[0].dns_name("cluster.local"), "demo-pd.tidb.svc.cluster.local");
        let again = Inventory::from_yaml(&inv.to_yaml()).unwrap();
        assert_eq!(inv, again);
    }

    #[test]
    fn rejects_dangling_references() {
        let mut inv = sample();
        inv.pods[0].node = NodeName::new("node-9").unwrap();
        assert!(matches!(inv.validate(), Err(InventoryError::UnknownNode { .. })));

        let mut inv = sample();
        inv.services[0].endpoints[0].pod = Some("tidb/gone".parse().unwrap());
        assert!(matches!(inv.validate(), Err(InventoryError::UnknownEndpointPod { .. })));

        let mut inv = sample();
        inv.pods.push(inv.pods[0].clone());
        assert!(matches!(inv.validate(), Err(InventoryError::Duplicate { what: "pod", .. })));
    }

    #[test]
    fn rejects_bad_fields_and_versions() {
        let text = sample().to_yaml().replace("\"demo-pd-0\"", "\"Demo_PD\"");
        let err = Inventory::from_yaml(&text).unwrap_err().to_string();
        assert!(err.contains("Demo_PD"), "{err}");
        let text = sample().to_yaml().replace("\"version\": 1", "\"version\": 7");
        assert!(matches!(Inventory::from_yaml(&text), Err(InventoryError::Version { found: 7 })));
    }
}
