//! The topology file: what a lab should contain (nodes, pods, services and how they are wired),
//! parsed and checked with the line and field of every mistake named.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netdiag_model::inventory::{Protocol, ProxyMode, TrafficPolicy};
use netdiag_model::netpol::{METADATA_NAME_LABEL, NamespaceObject, NetworkPolicy, ObjectMeta};
use netdiag_model::{Name, Namespace, NodeName, PodRef, Port, ServiceRef};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// The seed's TiDB cluster on 3 nodes with no NetworkPolicy: every path open. The fault tests'
/// baseline, where any failing path is the fault's.
pub const OPEN_TOPOLOGY: &str = include_str!("../topologies/open.yaml");
/// The default lab (`netdiag lab up`, the demo): the open cluster plus a `monitoring` namespace
/// and a NetworkPolicy set the lab enforces.
pub const DEFAULT_TOPOLOGY: &str = include_str!("../topologies/default.yaml");

/// A mistake in a topology file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("topology file: {0}")]
    Syntax(String),
    #[error("topology file line {line}: field `{field}`: {message}")]
    Field { line: u64, field: String, message: String },
}

fn field_err(line: u64, field: impl Into<String>, message: impl Into<String>) -> TopologyError {
    TopologyError::Field { line, field: field.into(), message: message.into() }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlay {
    /// Host-gateway routing: each node routes the other nodes' pod CIDRs over the underlay.
    #[default]
    Routed,
    /// A flannel-style VXLAN overlay between nodes (VNI 1, UDP 8472, MTU 1450).
    Vxlan,
}

/// What a pod's listeners pretend to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    Pd,
    Tikv,
    Tidb,
    Discovery,
    /// The cluster DNS server (answers the lab's names on port 53).
    Dns,
    #[default]
    Generic,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
enum RawServiceType {
    #[default]
    ClusterIP,
    NodePort,
    Headless,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default = "default_name")]
    name: Spanned<String>,
    #[serde(default)]
    proxy_mode: Option<ProxyMode>,
    #[serde(default)]
    overlay: Overlay,
    #[serde(default)]
    ipv6: bool,
    #[serde(default = "default_node_cidr")]
    node_cidr: Spanned<Ipv4Net>,
    #[serde(default = "default_pod_cidr")]
    pod_cidr: Spanned<Ipv4Net>,
    #[serde(default = "default_service_cidr")]
    service_cidr: Spanned<Ipv4Net>,
    #[serde(default = "default_node_cidr6")]
    node_cidr_v6: Spanned<Ipv6Net>,
    #[serde(default = "default_pod_cidr6")]
    pod_cidr_v6: Spanned<Ipv6Net>,
    #[serde(default = "default_service_cidr6")]
    service_cidr_v6: Spanned<Ipv6Net>,
    #[serde(default = "default_domain")]
    cluster_domain: String,
    #[serde(default = "default_dns_ip")]
    dns_ip: Spanned<std::net::Ipv4Addr>,
    nodes: Vec<Spanned<RawNode>>,
    #[serde(default)]
    pods: Vec<Spanned<RawPod>>,
    #[serde(default)]
    services: Vec<Spanned<RawService>>,
    /// Namespaces with labels (what NetworkPolicy namespace selectors match).
    #[serde(default)]
    namespaces: Option<Vec<Spanned<RawNamespace>>>,
    /// `networking.k8s.io/v1` NetworkPolicy objects, in the Kubernetes shape.
    #[serde(default)]
    network_policies: Option<Vec<Spanned<NetworkPolicy>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamespace {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// A pod port: a number, or a named container port (`{ name: client, port: 2379 }`), which
/// NetworkPolicies can name.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawPodPort {
    Number(u32),
    Named(RawNamedPort),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamedPort {
    name: String,
    port: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPod {
    namespace: String,
    name: String,
    node: String,
    #[serde(default)]
    app: AppKind,
    #[serde(default)]
    ports: Vec<RawPodPort>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// false: the pod exists (namespace, address) but its app never listens, like a
    /// crash-looping container.
    #[serde(default = "yes")]
    listen: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    namespace: String,
    name: String,
    #[serde(default, rename = "type")]
    kind: RawServiceType,
    #[serde(default)]
    cluster_ip: Option<std::net::Ipv4Addr>,
    #[serde(default)]
    cluster_ip_v6: Option<std::net::Ipv6Addr>,
    #[serde(default)]
    selector: BTreeMap<String, String>,
    ports: Vec<RawServicePort>,
    #[serde(default)]
    external_traffic_policy: TrafficPolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServicePort {
    #[serde(default)]
    name: Option<String>,
    port: u32,
    #[serde(default)]
    target_port: Option<u32>,
    #[serde(default)]
    node_port: Option<u32>,
    #[serde(default)]
    protocol: Protocol,
}

fn yes() -> bool {
    true
}
fn unspanned<T>(value: T) -> Spanned<T> {
    let loc = serde_saphyr::Location::UNKNOWN;
    Spanned::new(value, loc, loc)
}
fn default_name() -> Spanned<String> {
    unspanned("lab".into())
}
fn default_node_cidr() -> Spanned<Ipv4Net> {
    unspanned(Ipv4Net::new_assert([172, 29, 0, 0].into(), 24))
}
fn default_pod_cidr() -> Spanned<Ipv4Net> {
    unspanned(Ipv4Net::new_assert([10, 244, 0, 0].into(), 16))
}
fn default_service_cidr() -> Spanned<Ipv4Net> {
    unspanned(Ipv4Net::new_assert([10, 96, 0, 0].into(), 16))
}
fn default_node_cidr6() -> Spanned<Ipv6Net> {
    unspanned(Ipv6Net::new_assert("fd42:29::".parse().unwrap_or(std::net::Ipv6Addr::UNSPECIFIED), 64))
}
fn default_pod_cidr6() -> Spanned<Ipv6Net> {
    unspanned(Ipv6Net::new_assert("fd42:244::".parse().unwrap_or(std::net::Ipv6Addr::UNSPECIFIED), 56))
}
fn default_service_cidr6() -> Spanned<Ipv6Net> {
    unspanned(Ipv6Net::new_assert("fd42:96::".parse().unwrap_or(std::net::Ipv6Addr::UNSPECIFIED), 112))
}
fn default_domain() -> String {
    "cluster.local".into()
}
fn default_dns_ip() -> Spanned<std::net::Ipv4Addr> {
    unspanned([10, 96, 0, 10].into())
}

/// A checked topology: every name valid, every reference resolved, no duplicate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Topology {
    pub name: String,
    pub proxy_mode: ProxyMode,
    pub overlay: Overlay,
    pub ipv6: bool,
    pub node_cidr: Ipv4Net,
    pub pod_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    pub node_cidr_v6: Ipv6Net,
    pub pod_cidr_v6: Ipv6Net,
    pub service_cidr_v6: Ipv6Net,
    pub cluster_domain: String,
    pub dns_ip: std::net::Ipv4Addr,
    pub nodes: Vec<NodeName>,
    pub pods: Vec<PodSpec>,
    pub services: Vec<ServiceSpec>,
    /// Every namespace with its labels (`kubernetes.io/metadata.name` always set): those the
    /// file lists, then those its pods, services and policies name with just that label. Empty
    /// when the file has neither `namespaces` nor `network_policies`, so a policy-free lab's
    /// inventory stays as it was.
    pub namespaces: Vec<NamespaceObject>,
    /// The file's NetworkPolicies, each checked (`NetworkPolicy::check`) at load.
    pub network_policies: Vec<NetworkPolicy>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PodSpec {
    pub pod: PodRef,
    pub node: NodeName,
    pub app: AppKind,
    pub ports: Vec<Port>,
    /// Container port names (what a NetworkPolicy's named port resolves to on this pod).
    pub port_names: BTreeMap<Port, String>,
    pub labels: BTreeMap<String, String>,
    pub listen: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    Headless,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServiceSpec {
    pub service: ServiceRef,
    pub kind: ServiceType,
    pub cluster_ip: Option<std::net::Ipv4Addr>,
    pub cluster_ip_v6: Option<std::net::Ipv6Addr>,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePortSpec>,
    pub external_traffic_policy: TrafficPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServicePortSpec {
    pub name: Option<String>,
    pub port: Port,
    pub target_port: Port,
    pub node_port: Option<Port>,
    pub protocol: Protocol,
}

/// Line numbers of the range fields, for error messages (0 when not from a file).
#[derive(Debug, Default)]
struct RangeLines {
    node: u64,
    pod: u64,
    service: u64,
    node6: u64,
    pod6: u64,
    service6: u64,
    dns: u64,
}

/// Command-line changes to a topology (`netdiag lab up --nftables --ipv6 …`).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub name: Option<String>,
    pub proxy_mode: Option<ProxyMode>,
    pub overlay: Option<Overlay>,
    pub ipv6: bool,
}

fn check_lab_name(name: &str, line: u64) -> Result<(), TopologyError> {
    // No '-': the name ends at the first '-' of every namespace name, so `<name>-` can never
    // match another lab's namespaces when a crashed lab is cleaned up by prefix.
    let ok = !name.is_empty()
        && name.len() <= 12
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(field_err(
            line,
            "name",
            format!(
                "lab name {name:?} must be 1 to 12 lowercase letters or digits (it prefixes every namespace)"
            ),
        ))
    }
}

/// Checks each policy as the API server would (`NetworkPolicy::check`); an error names the
/// policy's line and the field path inside it.
fn check_policies(raw: &[Spanned<NetworkPolicy>]) -> Result<Vec<NetworkPolicy>, TopologyError> {
    let mut out: Vec<NetworkPolicy> = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let line = p.referenced.line();
        let policy = &p.value;
        if let Some(v) = policy.api_version.as_deref()
            && v != "networking.k8s.io/v1"
        {
            return Err(field_err(
                line,
                format!("network_policies[{i}].apiVersion"),
                format!("{:?} is not networking.k8s.io/v1 (or leave apiVersion out)", shorten(v)),
            ));
        }
        if let Some(k) = policy.kind.as_deref()
            && k != "NetworkPolicy"
        {
            return Err(field_err(
                line,
                format!("network_policies[{i}].kind"),
                format!("{:?} is not NetworkPolicy (or leave kind out)", shorten(k)),
            ));
        }
        let checked = policy.check().map_err(|e| {
            field_err(
                line,
                format!("network_policies[{i}].{}", e.field),
                format!("{}: {}", e.object, e.problem),
            )
        })?;
        if out.iter().any(|q| {
            q.metadata.namespace.as_deref() == Some(checked.namespace().as_str())
                && q.metadata.name.as_deref() == Some(checked.id().name.as_str())
        }) {
            return Err(field_err(
                line,
                format!("network_policies[{i}].metadata.name"),
                format!("network policy {} is listed twice", checked.id()),
            ));
        }
        out.push(policy.clone());
    }
    Ok(out)
}

/// The policy wire type ignores unknown fields (as a client of the API must); in a hand-written
/// file an unknown field is a typo (`podselector`, `ingres`) that would silently widen or drop
/// a rule, so each policy is read a second time as plain data and every key that did not make
/// it into the parsed object is an error. `metadata` may hold more (annotations, …).
fn reject_unknown_policy_fields(text: &str, parsed: &[Spanned<NetworkPolicy>]) -> Result<(), TopologyError> {
    #[derive(Deserialize)]
    struct PoliciesOnly {
        #[serde(default)]
        network_policies: Vec<serde_json::Value>,
    }
    let plain: PoliciesOnly =
        serde_saphyr::from_str(text).map_err(|e| TopologyError::Syntax(e.to_string()))?;
    for (i, (raw, p)) in plain.network_policies.iter().zip(parsed).enumerate() {
        let known = serde_json::to_value(&p.value).unwrap_or_default();
        if let Some(field) = unknown_field(raw, &known, "", true) {
            return Err(field_err(
                p.referenced.line(),
                format!("network_policies[{i}]{field}"),
                "unknown field (NetworkPolicy fields are camelCase: podSelector, policyTypes, ingress, egress, from, to, ports, namespaceSelector, ipBlock, cidr, except, protocol, port, endPort, matchLabels, matchExpressions)",
            ));
        }
    }
    Ok(())
}

/// The path of the first key in `raw` (not null) that `known` lacks.
fn unknown_field(raw: &serde_json::Value, known: &serde_json::Value, at: &str, top: bool) -> Option<String> {
    use serde_json::Value;
    match (raw, known) {
        (Value::Object(r), Value::Object(k)) => r.iter().find_map(|(key, v)| {
            if v.is_null() || (top && key == "metadata") {
                return None;
            }
            let path = format!("{at}.{key}");
            match k.get(key) {
                None => Some(path),
                Some(kv) => unknown_field(v, kv, &path, false),
            }
        }),
        (Value::Array(r), Value::Array(k)) => r
            .iter()
            .zip(k)
            .enumerate()
            .find_map(|(i, (rv, kv))| unknown_field(rv, kv, &format!("{at}[{i}]"), false)),
        _ => None,
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The listed namespaces (names checked, no duplicate, `kubernetes.io/metadata.name` set to
/// the name as the API server does), then every other namespace the lab's objects name.
fn check_namespaces(
    raw: &[Spanned<RawNamespace>],
    pods: &[PodSpec],
    services: &[ServiceSpec],
    policies: &[NetworkPolicy],
) -> Result<Vec<NamespaceObject>, TopologyError> {
    let mut out: Vec<NamespaceObject> = Vec::new();
    let object = |name: &Namespace, mut labels: BTreeMap<String, String>| {
        labels.insert(METADATA_NAME_LABEL.to_owned(), name.as_str().to_owned());
        NamespaceObject {
            metadata: ObjectMeta { name: Some(name.to_string()), namespace: None, labels: Some(labels) },
        }
    };
    let mut seen: BTreeSet<Namespace> = BTreeSet::new();
    for n in raw {
        let line = n.referenced.line();
        let name = Namespace::new(n.value.name.clone())
            .map_err(|e| field_err(line, "namespaces[].name", e.to_string()))?;
        if !seen.insert(name.clone()) {
            return Err(field_err(line, "namespaces[].name", format!("namespace {name} is listed twice")));
        }
        if n.value.labels.keys().any(String::is_empty) {
            return Err(field_err(line, "namespaces[].labels", "a label key is empty"));
        }
        if let Some(v) = n.value.labels.get(METADATA_NAME_LABEL)
            && v != name.as_str()
        {
            return Err(field_err(
                line,
                "namespaces[].labels",
                format!(
                    "{METADATA_NAME_LABEL} is always the namespace's name ({name}), not {:?}; leave it out",
                    shorten(v)
                ),
            ));
        }
        out.push(object(&name, n.value.labels.clone()));
    }
    let named = pods
        .iter()
        .map(|p| p.pod.namespace.clone())
        .chain(services.iter().map(|s| s.service.namespace.clone()))
        .chain(policies.iter().filter_map(|p| p.metadata.namespace.as_deref()?.parse().ok()));
    for ns in named {
        if seen.insert(ns.clone()) {
            out.push(object(&ns, BTreeMap::new()));
        }
    }
    Ok(out)
}

/// NodePorts must come from Kubernetes' default range.
const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

impl Topology {
    /// The embedded default topology, with its NetworkPolicies.
    pub fn default_lab() -> Result<Self, TopologyError> {
        Self::parse(DEFAULT_TOPOLOGY)
    }

    /// The embedded open topology: the default cluster without NetworkPolicies.
    pub fn open_lab() -> Result<Self, TopologyError> {
        Self::parse(OPEN_TOPOLOGY)
    }

    /// Parses and checks a topology file.
    pub fn parse(text: &str) -> Result<Self, TopologyError> {
        let raw: RawTopology =
            serde_saphyr::from_str(text).map_err(|e| TopologyError::Syntax(e.to_string()))?;
        if let Some(policies) = &raw.network_policies {
            reject_unknown_policy_fields(text, policies)?;
        }
        Self::check(raw)
    }

    fn check(raw: RawTopology) -> Result<Self, TopologyError> {
        let name = raw.name.value.clone();
        check_lab_name(&name, raw.name.referenced.line())?;
        let domain = raw.cluster_domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || Name::new(domain.clone()).is_err() {
            return Err(field_err(
                0,
                "cluster_domain",
                format!("{:?} is not a DNS domain", raw.cluster_domain),
            ));
        }
        if raw.nodes.is_empty() {
            return Err(field_err(0, "nodes", "a lab needs at least one node"));
        }
        let max_nodes = 200;
        if raw.nodes.len() > max_nodes {
            return Err(field_err(
                raw.nodes[max_nodes].referenced.line(),
                "nodes",
                format!("at most {max_nodes} nodes fit the lab's addressing"),
            ));
        }

        let mut nodes = Vec::new();
        for n in &raw.nodes {
            let line = n.referenced.line();
            let node = NodeName::new(n.value.name.clone())
                .map_err(|e| field_err(line, "nodes[].name", e.to_string()))?;
            if node.as_str() == "underlay" || node.as_str().starts_with("pod-") {
                return Err(field_err(
                    line,
                    "nodes[].name",
                    format!("node name {node} is reserved (it would clash with the lab's own namespaces)"),
                ));
            }
            if nodes.contains(&node) {
                return Err(field_err(line, "nodes[].name", format!("node {node} is listed twice")));
            }
            nodes.push(node);
        }

        let mut pods: Vec<PodSpec> = Vec::new();
        for p in &raw.pods {
            let line = p.referenced.line();
            let r = &p.value;
            let namespace = Namespace::new(r.namespace.clone())
                .map_err(|e| field_err(line, "pods[].namespace", e.to_string()))?;
            let name =
                Name::new(r.name.clone()).map_err(|e| field_err(line, "pods[].name", e.to_string()))?;
            if name.as_str().len() > 63 {
                return Err(field_err(line, "pods[].name", "pod names in the lab are at most 63 characters"));
            }
            let pod = PodRef::new(namespace, name);
            let node =
                NodeName::new(r.node.clone()).map_err(|e| field_err(line, "pods[].node", e.to_string()))?;
            if !nodes.contains(&node) {
                return Err(field_err(
                    line,
                    "pods[].node",
                    format!("pod {pod} is placed on node {node}, which `nodes` does not list"),
                ));
            }
            if pods.iter().any(|q| q.pod == pod) {
                return Err(field_err(line, "pods[].name", format!("pod {pod} is listed twice")));
            }
            let mut ports = Vec::new();
            let mut port_names: BTreeMap<Port, String> = BTreeMap::new();
            for raw_port in &r.ports {
                let (n, port_name) = match raw_port {
                    RawPodPort::Number(n) => (*n, None),
                    RawPodPort::Named(named) => (named.port, Some(&named.name)),
                };
                let port = Port::new(n).map_err(|e| field_err(line, "pods[].ports", e.to_string()))?;
                if ports.contains(&port) {
                    return Err(field_err(line, "pods[].ports", format!("port {port} is listed twice")));
                }
                if let Some(port_name) = port_name {
                    if !netdiag_model::netpol::check::is_port_name(port_name) {
                        return Err(field_err(
                            line,
                            "pods[].ports[].name",
                            format!(
                                "{:?} is not a container port name: 1 to 15 lowercase letters, digits and '-', with a letter",
                                port_name.chars().take(64).collect::<String>()
                            ),
                        ));
                    }
                    if port_names.values().any(|n| n == port_name) {
                        return Err(field_err(
                            line,
                            "pods[].ports[].name",
                            format!("port name {port_name} is used twice in pod {pod}"),
                        ));
                    }
                    port_names.insert(port, port_name.clone());
                }
                ports.push(port);
            }
            if r.app == AppKind::Dns && !ports.is_empty() {
                return Err(field_err(line, "pods[].ports", "a dns pod listens on 53; leave `ports` out"));
            }
            pods.push(PodSpec {
                pod,
                node,
                app: r.app,
                ports,
                port_names,
                labels: r.labels.clone(),
                listen: r.listen,
            });
        }
        if pods.iter().filter(|p| p.app == AppKind::Dns).count() == 0 {
            return Err(field_err(
                0,
                "pods",
                "the lab needs one pod with `app: dns` (the cluster DNS behind dns_ip)",
            ));
        }

        let mut services: Vec<ServiceSpec> = Vec::new();
        for s in &raw.services {
            let line = s.referenced.line();
            let r = &s.value;
            let namespace = Namespace::new(r.namespace.clone())
                .map_err(|e| field_err(line, "services[].namespace", e.to_string()))?;
            let name =
                Name::new(r.name.clone()).map_err(|e| field_err(line, "services[].name", e.to_string()))?;
            if name.as_str().contains('.') || name.as_str().len() > 63 {
                return Err(field_err(
                    line,
                    "services[].name",
                    "service names are DNS labels: no '.', at most 63 characters",
                ));
            }
            let service = ServiceRef::new(namespace, name);
            if services.iter().any(|q| q.service == service) {
                return Err(field_err(line, "services[].name", format!("service {service} is listed twice")));
            }
            let kind = match r.kind {
                RawServiceType::ClusterIP => ServiceType::ClusterIP,
                RawServiceType::NodePort => ServiceType::NodePort,
                RawServiceType::Headless => ServiceType::Headless,
            };
            if kind == ServiceType::Headless && (r.cluster_ip.is_some() || r.cluster_ip_v6.is_some()) {
                return Err(field_err(line, "services[].cluster_ip", "a headless service has no cluster IP"));
            }
            if let Some(ip) = r.cluster_ip
                && !raw.service_cidr.value.contains(&ip)
            {
                return Err(field_err(
                    line,
                    "services[].cluster_ip",
                    format!("{ip} is outside service_cidr {}", raw.service_cidr.value),
                ));
            }
            if r.ports.is_empty() {
                return Err(field_err(line, "services[].ports", format!("service {service} has no ports")));
            }
            let mut ports: Vec<ServicePortSpec> = Vec::new();
            for sp in &r.ports {
                let port = Port::new(sp.port)
                    .map_err(|e| field_err(line, "services[].ports[].port", e.to_string()))?;
                let target_port = Port::new(sp.target_port.unwrap_or(sp.port))
                    .map_err(|e| field_err(line, "services[].ports[].target_port", e.to_string()))?;
                let node_port = match sp.node_port {
                    None => None,
                    Some(_) if kind != ServiceType::NodePort => {
                        return Err(field_err(
                            line,
                            "services[].ports[].node_port",
                            "node_port needs `type: NodePort`",
                        ));
                    }
                    Some(n) => {
                        let p = Port::new(n).ok().filter(|p| NODE_PORT_RANGE.contains(&p.get())).ok_or_else(
                            || {
                                field_err(
                                    line,
                                    "services[].ports[].node_port",
                                    format!("{n} is outside the NodePort range 30000-32767"),
                                )
                            },
                        )?;
                        Some(p)
                    }
                };
                if kind == ServiceType::NodePort && node_port.is_none() {
                    return Err(field_err(
                        line,
                        "services[].ports[].node_port",
                        "a NodePort service needs node_port on each port",
                    ));
                }
                if ports.iter().any(|q| q.port == port && q.protocol == sp.protocol) {
                    return Err(field_err(
                        line,
                        "services[].ports[].port",
                        format!("port {port}/{} is listed twice", sp.protocol),
                    ));
                }
                ports.push(ServicePortSpec {
                    name: sp.name.clone(),
                    port,
                    target_port,
                    node_port,
                    protocol: sp.protocol,
                });
            }
            services.push(ServiceSpec {
                service,
                kind,
                cluster_ip: r.cluster_ip,
                cluster_ip_v6: r.cluster_ip_v6,
                selector: r.selector.clone(),
                ports,
                external_traffic_policy: r.external_traffic_policy,
            });
        }
        let mut node_ports = BTreeSet::new();
        for s in &services {
            for p in &s.ports {
                if let Some(np) = p.node_port
                    && !node_ports.insert((np, p.protocol))
                {
                    return Err(field_err(
                        0,
                        "services[].ports[].node_port",
                        format!("node_port {np} is used by two services"),
                    ));
                }
            }
        }

        let network_policies = check_policies(raw.network_policies.as_deref().unwrap_or_default())?;
        let namespaces = if raw.namespaces.is_none() && raw.network_policies.is_none() {
            Vec::new()
        } else {
            check_namespaces(
                raw.namespaces.as_deref().unwrap_or_default(),
                &pods,
                &services,
                &network_policies,
            )?
        };

        let topo = Topology {
            name,
            proxy_mode: raw.proxy_mode.unwrap_or(ProxyMode::Iptables),
            overlay: raw.overlay,
            ipv6: raw.ipv6,
            node_cidr: raw.node_cidr.value,
            pod_cidr: raw.pod_cidr.value,
            service_cidr: raw.service_cidr.value,
            node_cidr_v6: raw.node_cidr_v6.value,
            pod_cidr_v6: raw.pod_cidr_v6.value,
            service_cidr_v6: raw.service_cidr_v6.value,
            cluster_domain: domain,
            dns_ip: raw.dns_ip.value,
            nodes,
            pods,
            services,
            namespaces,
            network_policies,
        };
        let lines = RangeLines {
            node: raw.node_cidr.referenced.line(),
            pod: raw.pod_cidr.referenced.line(),
            service: raw.service_cidr.referenced.line(),
            node6: raw.node_cidr_v6.referenced.line(),
            pod6: raw.pod_cidr_v6.referenced.line(),
            service6: raw.service_cidr_v6.referenced.line(),
            dns: raw.dns_ip.referenced.line(),
        };
        topo.check_ranges(&lines)?;
        Ok(topo)
    }

    /// Applies command-line overrides and re-checks what they can break.
    pub fn with_overrides(mut self, o: &Overrides) -> Result<Self, TopologyError> {
        if let Some(name) = &o.name {
            check_lab_name(name, 0)?;
            self.name = name.clone();
        }
        if let Some(mode) = o.proxy_mode {
            self.proxy_mode = mode;
        }
        if let Some(overlay) = o.overlay {
            self.overlay = overlay;
        }
        if o.ipv6 {
            self.ipv6 = true;
        }
        self.check_ranges(&RangeLines::default())?;
        Ok(self)
    }

    fn check_ranges(&self, raw: &RangeLines) -> Result<(), TopologyError> {
        let v4: [(&str, Ipv4Net, u64); 3] = [
            ("node_cidr", self.node_cidr, raw.node),
            ("pod_cidr", self.pod_cidr, raw.pod),
            ("service_cidr", self.service_cidr, raw.service),
        ];
        for (i, (a, na, line)) in v4.iter().enumerate() {
            for (b, nb, _) in &v4[i + 1..] {
                if na.contains(nb) || nb.contains(na) {
                    return Err(field_err(*line, *a, format!("{a} {na} overlaps {b} {nb}")));
                }
            }
        }
        if self.ipv6 {
            let v6 = [
                ("node_cidr_v6", self.node_cidr_v6, raw.node6),
                ("pod_cidr_v6", self.pod_cidr_v6, raw.pod6),
                ("service_cidr_v6", self.service_cidr_v6, raw.service6),
            ];
            for (i, (a, na, line)) in v6.iter().enumerate() {
                for (b, nb, _) in &v6[i + 1..] {
                    if na.contains(nb) || nb.contains(na) {
                        return Err(field_err(*line, *a, format!("{a} {na} overlaps {b} {nb}")));
                    }
                }
            }
            if self.pod_cidr_v6.prefix_len() > 56 {
                return Err(field_err(
                    raw.pod6,
                    "pod_cidr_v6",
                    "pod_cidr_v6 must be /56 or larger (each node gets a /64)",
                ));
            }
        }
        if self.node_cidr.prefix_len() > 24 {
            return Err(field_err(raw.node, "node_cidr", "node_cidr must be /24 or larger"));
        }
        if self.pod_cidr.prefix_len() > 16 {
            return Err(field_err(
                raw.pod,
                "pod_cidr",
                "pod_cidr must be /16 or larger (each node gets a /24)",
            ));
        }
        if !self.service_cidr.contains(&self.dns_ip) {
            return Err(field_err(
                raw.dns,
                "dns_ip",
                format!("{} is outside service_cidr {}", self.dns_ip, self.service_cidr),
            ));
        }
        Ok(())
    }

    /// Every prefix the lab owns, for overlap checks against the host.
    pub fn prefixes(&self) -> Vec<IpNet> {
        let mut v = vec![self.node_cidr.into(), self.pod_cidr.into(), self.service_cidr.into()];
        if self.ipv6 {
            v.extend([IpNet::from(self.node_cidr_v6), self.pod_cidr_v6.into(), self.service_cidr_v6.into()]);
        }
        v
    }

    /// The pods a service selects (all labels of the selector match), in file order.
    pub fn selected_pods<'a>(&'a self, svc: &'a ServiceSpec) -> impl Iterator<Item = &'a PodSpec> + 'a {
        self.pods.iter().filter(move |p| {
            p.pod.namespace == svc.service.namespace
                && !svc.selector.is_empty()
                && svc.selector.iter().all(|(k, v)| p.labels.get(k) == Some(v))
        })
    }

    /// True when `ip` is one of the lab's addresses in any family.
    pub fn owns(&self, ip: IpAddr) -> bool {
        self.prefixes().iter().any(|n| n.contains(&ip))
    }
}

#[cfg(test)]
mod tests;
