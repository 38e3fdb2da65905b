//! Kubernetes objects for a netdiag [`Inventory`], shaped as a real cluster would hold them:
//! Ready Nodes with InternalIP addresses and podCIDRs, Running Pods with podIPs, Services, and
//! one EndpointSlice per Service and address family, labelled `kubernetes.io/service-name` and
//! managed by the endpoint-slice controller, Namespaces (the inventory's, with their labels,
//! plus any namespace its objects name, with just `kubernetes.io/metadata.name`, as the API
//! server labels every namespace) and `networking.k8s.io/v1` NetworkPolicies as the API server
//! stores them (defaulted: `policyTypes` filled in, protocol TCP). What the inventory holds
//! beyond the API (netns paths, resolv.conf files, cluster-wide settings) has no object.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, ObjectReference, Pod,
    PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, NamespaceStatus};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use netdiag_model::inventory::{
    EndpointInfo, Inventory, NodeInfo, PodInfo, Protocol, ServiceInfo, ServiceKind, TrafficPolicy,
};
use netdiag_model::netpol::METADATA_NAME_LABEL;
use serde_json::Value;

/// The objects for an inventory, in the order a cluster creates them.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub namespaces: Vec<Namespace>,
    pub network_policies: Vec<NetworkPolicy>,
}

pub fn objects(inventory: &Inventory) -> Objects {
    Objects {
        namespaces: namespaces(inventory),
        network_policies: inventory.network_policies.iter().filter_map(network_policy).collect(),
        nodes: inventory.nodes.iter().map(node).collect(),
        pods: inventory.pods.iter().map(|p| pod(p, inventory.node(&p.node))).collect(),
        services: inventory.services.iter().map(service).collect(),
        endpoint_slices: inventory.services.iter().flat_map(endpoint_slices).collect(),
    }
}

fn protocol(p: Protocol) -> String {
    match p {
        Protocol::Tcp => "TCP".into(),
        Protocol::Udp => "UDP".into(),
    }
}

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn condition(ty: &str) -> NodeCondition {
    NodeCondition {
        type_: ty.into(),
        status: if ty == "Ready" { "True" } else { "False" }.into(),
        reason: Some(if ty == "Ready" { "KubeletReady" } else { "KubeletHasSufficientMemory" }.into()),
        ..NodeCondition::default()
    }
}

pub fn node(n: &NodeInfo) -> Node {
    let cidrs: Vec<String> = n.pod_cidrs.iter().map(|c| c.to_string()).collect();
    let mut addresses: Vec<NodeAddress> =
        n.ips.iter().map(|ip| NodeAddress { type_: "InternalIP".into(), address: ip.to_string() }).collect();
    addresses.push(NodeAddress { type_: "Hostname".into(), address: n.name.to_string() });
    Node {
        metadata: ObjectMeta {
            name: Some(n.name.to_string()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), n.name.to_string()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: cidrs.first().cloned(),
            pod_cidrs: (!cidrs.is_empty()).then_some(cidrs),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(addresses),
            conditions: Some(vec![condition("MemoryPressure"), condition("Ready")]),
            ..NodeStatus::default()
        }),
    }
}

/// A Running pod with its IPs, scheduled on its node.
pub fn pod(p: &PodInfo, node: Option<&NodeInfo>) -> Pod {
    let ports: Vec<ContainerPort> = p
        .ports
        .iter()
        .map(|c| ContainerPort {
            name: c.name.clone(),
            container_port: i32::from(c.port.get()),
            protocol: Some(protocol(c.protocol)),
            ..ContainerPort::default()
        })
        .collect();
    let ips: Vec<PodIP> = p.ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(p.name.to_string()),
            namespace: Some(p.namespace.to_string()),
            labels: (!p.labels.is_empty()).then(|| p.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(p.node.to_string()),
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                ports: (!ports.is_empty()).then_some(ports),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            host_ip: node.and_then(|n| n.ips.first()).map(|ip| ip.to_string()),
            pod_ip: p.ips.first().map(|ip| ip.to_string()),
            pod_ips: (!ips.is_empty()).then_some(ips),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..PodCondition::default()
            }]),
            qos_class: Some("BestEffort".into()),
            ..PodStatus::default()
        }),
    }
}

pub fn service(s: &ServiceInfo) -> Service {
    let node_port = s.kind == ServiceKind::NodePort;
    let ips: Vec<String> = if s.is_headless() {
        vec!["None".into()]
    } else {
        s.cluster_ips.iter().map(|ip| ip.to_string()).collect()
    };
    let families: Vec<String> = s.cluster_ips.iter().map(|ip| family(ip).to_string()).collect();
    Service {
        metadata: ObjectMeta {
            name: Some(s.name.to_string()),
            namespace: Some(s.namespace.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(if node_port { "NodePort" } else { "ClusterIP" }.into()),
            cluster_ip: ips.first().cloned(),
            cluster_ips: Some(ips),
            ip_families: (!families.is_empty()).then_some(families),
            ports: Some(
                s.ports
                    .iter()
                    .map(|p| ServicePort {
                        name: p.name.clone(),
                        port: i32::from(p.port.get()),
                        target_port: Some(IntOrString::Int(i32::from(p.target_port.get()))),
                        node_port: p.node_port.map(|n| i32::from(n.get())),
                        protocol: Some(protocol(p.protocol)),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            external_traffic_policy: node_port.then(|| {
                match s.external_traffic_policy {
                    TrafficPolicy::Cluster => "Cluster",
                    TrafficPolicy::Local => "Local",
                }
                .to_string()
            }),
            session_affinity: Some("None".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn endpoint(e: &EndpointInfo, namespace: &str) -> Endpoint {
    Endpoint {
        addresses: vec![e.ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(e.ready),
            serving: Some(e.ready),
            terminating: Some(false),
        }),
        hostname: e.hostname.clone(),
        node_name: e.node.as_ref().map(|n| n.to_string()),
        target_ref: e.pod.as_ref().map(|p| ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(
                if p.namespace.as_str().is_empty() { namespace } else { p.namespace.as_str() }.into(),
            ),
            name: Some(p.name.to_string()),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

/// One slice per address family with endpoints (a service without endpoints gets an empty
/// IPv4 slice, as the controller makes).
pub fn endpoint_slices(s: &ServiceInfo) -> Vec<EndpointSlice> {
    let ports: Vec<EndpointPort> = s
        .ports
        .iter()
        .map(|p| EndpointPort {
            name: Some(p.name.clone().unwrap_or_default()),
            port: Some(i32::from(p.target_port.get())),
            protocol: Some(protocol(p.protocol)),
            ..EndpointPort::default()
        })
        .collect();
    let mut families: Vec<&'static str> = s.endpoints.iter().map(|e| family(&e.ip)).collect();
    families.sort_unstable();
    families.dedup();
    if families.is_empty() {
        families.push("IPv4");
    }
    families
        .into_iter()
        .map(|fam| EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{}-{}", s.name, if fam == "IPv4" { "v4x7k" } else { "v6q2m" })),
                namespace: Some(s.namespace.to_string()),
                generate_name: Some(format!("{}-", s.name)),
                labels: Some(BTreeMap::from([
                    ("kubernetes.io/service-name".to_string(), s.name.to_string()),
                    (
                        "endpointslice.kubernetes.io/managed-by".to_string(),
                        "endpointslice-controller.k8s.io".to_string(),
                    ),
                ])),
                ..ObjectMeta::default()
            },
            address_type: fam.into(),
            endpoints: s
                .endpoints
                .iter()
                .filter(|e| family(&e.ip) == fam)
                .map(|e| endpoint(e, s.namespace.as_str()))
                .collect(),
            ports: Some(ports.clone()),
        })
        .collect()
}

/// An Active namespace with `labels` and the API server's `kubernetes.io/metadata.name`.
pub fn namespace(name: &str, labels: Option<&BTreeMap<String, String>>) -> Namespace {
    let mut labels = labels.cloned().unwrap_or_default();
    labels.insert(METADATA_NAME_LABEL.to_owned(), name.to_owned());
    Namespace {
        metadata: ObjectMeta { name: Some(name.to_owned()), labels: Some(labels), ..ObjectMeta::default() },
        spec: Some(NamespaceSpec { finalizers: Some(vec!["kubernetes".into()]) }),
        status: Some(NamespaceStatus { phase: Some("Active".into()), ..NamespaceStatus::default() }),
    }
}

/// The inventory's namespaces, then every other namespace its pods, services and policies name.
fn namespaces(inventory: &Inventory) -> Vec<Namespace> {
    let mut out: Vec<Namespace> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for n in &inventory.namespaces {
        if let Some(name) = n.metadata.name.as_deref()
            && seen.insert(name.to_owned())
        {
            out.push(namespace(name, n.metadata.labels.as_ref()));
        }
    }
    let named = inventory
        .pods
        .iter()
        .map(|p| p.namespace.to_string())
        .chain(inventory.services.iter().map(|s| s.namespace.to_string()))
        .chain(inventory.network_policies.iter().filter_map(|p| p.metadata.namespace.clone()));
    for name in named {
        if seen.insert(name.clone()) {
            out.push(namespace(&name, None));
        }
    }
    out
}

/// A NetworkPolicy as the API server stores it: the API's own JSON shape (the inventory keeps
/// it), defaulted as `SetDefaults_NetworkPolicy` does. `None` (logged) for one whose shape
/// k8s-openapi cannot read.
pub fn network_policy(p: &netdiag_model::netpol::NetworkPolicy) -> Option<NetworkPolicy> {
    let mut v = match serde_json::to_value(p) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "cannot serialize a NetworkPolicy for the fake API server");
            return None;
        }
    };
    v["apiVersion"] = "networking.k8s.io/v1".into();
    v["kind"] = "NetworkPolicy".into();
    let spec = &mut v["spec"];
    if !spec.is_object() {
        *spec = Value::Object(serde_json::Map::new());
    }
    if spec["podSelector"].is_null() {
        spec["podSelector"] = Value::Object(serde_json::Map::new());
    }
    let has_types = spec["policyTypes"].as_array().is_some_and(|t| !t.is_empty());
    if !has_types {
        let egress = spec["egress"].as_array().is_some_and(|e| !e.is_empty());
        spec["policyTypes"] =
            if egress { serde_json::json!(["Ingress", "Egress"]) } else { serde_json::json!(["Ingress"]) };
    }
    for direction in ["ingress", "egress"] {
        for rule in spec[direction].as_array_mut().into_iter().flatten() {
            for port in rule["ports"].as_array_mut().into_iter().flatten() {
                if port["protocol"].is_null() {
                    port["protocol"] = "TCP".into();
                }
            }
        }
    }
    match serde_json::from_value(v) {
        Ok(np) => Some(np),
        Err(e) => {
            tracing::warn!(error = %e, policy = ?p.metadata.name, "a NetworkPolicy does not fit k8s-openapi's shape; not served");
            None
        }
    }
}
