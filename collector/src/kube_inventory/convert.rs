//! Kubernetes objects to an [`Inventory`], with no I/O. What the API holds comes from the
//! objects; what it does not (cluster domain, service CIDRs, which Service is the cluster DNS,
//! the proxy mode) from [`ClusterSettings`]. Objects that would make an invalid inventory are
//! left out and named in [`Converted::skipped`]; the rest always validates.
//!
//! - Nodes: `InternalIP` addresses, `spec.podCIDRs` (or `spec.podCIDR`).
//! - Pods: Running, not `hostNetwork` (those share their node's namespace: the node is probed
//!   instead), with `status.podIPs` (or `podIP`), on a listed node (`spec.nodeName`); ports are
//!   the containers' TCP/UDP `ports`.
//! - Services: ClusterIP, NodePort and LoadBalancer (as NodePort); `clusterIP: None` is
//!   headless; ExternalName and not-yet-allocated ones are left out. A named `targetPort` is
//!   resolved through the EndpointSlices' ports, then the backing pods' container ports.
//! - Endpoints: from EndpointSlices labelled `kubernetes.io/service-name`; `conditions.ready`
//!   unset means ready (the API's rule); a `targetRef` to a pod not in the inventory (not
//!   Running) keeps the endpoint without its pod.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use netdiag_model::inventory::{
    ClusterInfo, ContainerPort, EndpointInfo, INVENTORY_VERSION, Inventory, NodeInfo, PodInfo, Protocol,
    ProxyMode, ServiceInfo, ServiceKind, ServicePort, TrafficPolicy,
};
use netdiag_model::names::{Name, Namespace, NodeName, PodRef, Port, ServiceRef};

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Cluster-wide facts the Kubernetes API does not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    pub name: String,
    pub domain: String,
    pub service_cidrs: Vec<IpNet>,
    /// Empty: each node's own addresses as host prefixes.
    pub node_cidrs: Vec<IpNet>,
    /// The Service whose cluster IPs are the pods' nameservers.
    pub dns_service: ServiceRef,
    pub proxy_mode: ProxyMode,
}

/// An object left out of the inventory, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    /// `node`, `pod`, `service`, `service port`, `endpoint`.
    pub what: &'static str,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub inventory: Inventory,
    pub skipped: Vec<Skipped>,
}

/// The objects of the four kinds, as the reflectors' stores hold them (`Arc<K>`) or plain.
#[derive(Debug)]
pub struct Objects<'a, N, P, S, E> {
    pub nodes: &'a [N],
    pub pods: &'a [P],
    pub services: &'a [S],
    pub endpoint_slices: &'a [E],
}

fn meta_name(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    match &m.namespace {
        Some(ns) => format!("{ns}/{}", m.name.as_deref().unwrap_or_default()),
        None => m.name.clone().unwrap_or_default(),
    }
}

fn protocol(p: Option<&str>) -> Option<Protocol> {
    match p.unwrap_or("TCP") {
        "TCP" => Some(Protocol::Tcp),
        "UDP" => Some(Protocol::Udp),
        _ => None,
    }
}

fn port(n: i32) -> Option<Port> {
    u32::try_from(n).ok().and_then(|n| Port::new(n).ok())
}

fn ips<'a>(list: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in list.into_iter().filter_map(|s| s.parse().ok()) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// Builds the inventory; never fails: what cannot be represented is skipped and reported.
pub fn inventory<N, P, S, E>(settings: &ClusterSettings, objects: Objects<'_, N, P, S, E>) -> Converted
where
    N: Borrow<Node>,
    P: Borrow<Pod>,
    S: Borrow<Service>,
    E: Borrow<EndpointSlice>,
{
    let mut skipped = Vec::new();
    let mut skip =
        |what: &'static str, name: String, reason: String| skipped.push(Skipped { what, name, reason });

    let mut nodes: BTreeMap<NodeName, NodeInfo> = BTreeMap::new();
    for n in objects.nodes.iter().map(Borrow::borrow) {
        let raw = meta_name(&n.metadata);
        let Ok(name) = NodeName::new(raw.clone()) else {
            skip("node", raw, "not a valid node name".into());
            continue;
        };
        let addresses = n.status.as_ref().and_then(|s| s.addresses.as_ref());
        let node_ips = ips(addresses
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP")
            .map(|a| a.address.as_str()));
        let spec = n.spec.as_ref();
        let cidrs = spec.and_then(|s| s.pod_cidrs.clone()).filter(|c| !c.is_empty());
        let cidrs =
            cidrs.or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c])).unwrap_or_default();
        let pod_cidrs = cidrs.iter().filter_map(|c| c.parse::<IpNet>().ok()).collect();
        nodes.insert(name.clone(), NodeInfo { name, ips: node_ips, pod_cidrs, netns: None });
    }

    let mut pods: BTreeMap<PodRef, PodInfo> = BTreeMap::new();
    for p in objects.pods.iter().map(Borrow::borrow) {
        let raw = meta_name(&p.metadata);
        let status = p.status.as_ref();
        if status.and_then(|s| s.phase.as_deref()) != Some("Running") {
            continue;
        }
        let spec = p.spec.as_ref();
        if spec.and_then(|s| s.host_network) == Some(true) {
            continue;
        }
        let pod_ips = match status.and_then(|s| s.pod_ips.as_ref()).filter(|v| !v.is_empty()) {
            Some(list) => ips(list.iter().map(|i| i.ip.as_str())),
            None => ips(status.and_then(|s| s.pod_ip.as_deref())),
        };
        if pod_ips.is_empty() {
            continue;
        }
        let (Ok(namespace), Ok(name)) = (
            Namespace::new(p.metadata.namespace.clone().unwrap_or_default()),
            Name::new(p.metadata.name.clone().unwrap_or_default()),
        ) else {
            skip("pod", raw, "not a valid namespace/name".into());
            continue;
        };
        let node = spec.and_then(|s| s.node_name.clone()).unwrap_or_default();
        let Some(node) = NodeName::new(node.clone()).ok().filter(|n| nodes.contains_key(n)) else {
            skip("pod", raw, format!("runs on node {node:?}, which is not listed"));
            continue;
        };
        let mut ports: Vec<ContainerPort> = Vec::new();
        for c in spec.into_iter().flat_map(|s| &s.containers) {
            for cp in c.ports.iter().flatten() {
                let (Some(number), Some(proto)) = (port(cp.container_port), protocol(cp.protocol.as_deref()))
                else {
                    continue;
                };
                if !ports.iter().any(|x| x.port == number && x.protocol == proto) {
                    ports.push(ContainerPort { name: cp.name.clone(), port: number, protocol: proto });
                }
            }
        }
        let info = PodInfo {
            namespace,
            name,
            node,
            ips: pod_ips,
            labels: p.metadata.labels.clone().unwrap_or_default(),
            ports,
            netns: None,
            resolv_conf: None,
        };
        pods.insert(info.pod_ref(), info);
    }

    // EndpointSlices by the Service they belong to.
    let mut slices: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in objects.endpoint_slices.iter().map(Borrow::borrow) {
        let svc = s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
        if let (Some(ns), Some(svc)) = (&s.metadata.namespace, svc) {
            slices.entry((ns.clone(), svc.clone())).or_default().push(s);
        }
    }

    let mut services: BTreeMap<ServiceRef, ServiceInfo> = BTreeMap::new();
    for s in objects.services.iter().map(Borrow::borrow) {
        let raw = meta_name(&s.metadata);
        let Some(spec) = &s.spec else { continue };
        let kind = match spec.type_.as_deref().unwrap_or("ClusterIP") {
            "ClusterIP" => ServiceKind::ClusterIP,
            "NodePort" | "LoadBalancer" => ServiceKind::NodePort,
            _ => continue,
        };
        let (Ok(namespace), Ok(name)) = (
            Namespace::new(s.metadata.namespace.clone().unwrap_or_default()),
            Name::new(s.metadata.name.clone().unwrap_or_default()),
        ) else {
            skip("service", raw, "not a valid namespace/name".into());
            continue;
        };
        let raw_ips: Vec<&str> = match spec.cluster_ips.as_ref().filter(|v| !v.is_empty()) {
            Some(v) => v.iter().map(String::as_str).collect(),
            None => spec.cluster_ip.as_deref().into_iter().collect(),
        };
        let headless = raw_ips.first() == Some(&"None");
        let cluster_ips = if headless { Vec::new() } else { ips(raw_ips) };
        if !headless && cluster_ips.is_empty() {
            skip("service", raw, "has no cluster IP yet".into());
            continue;
        }
        let own_slices =
            slices.get(&(namespace.to_string(), name.to_string())).map(Vec::as_slice).unwrap_or_default();

        let mut endpoints: Vec<EndpointInfo> = Vec::new();
        for slice in own_slices {
            for e in &slice.endpoints {
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                let pod =
                    e.target_ref.as_ref().filter(|r| r.kind.as_deref().is_none_or(|k| k == "Pod")).and_then(
                        |r| {
                            let ns = r.namespace.as_deref().or(slice.metadata.namespace.as_deref())?;
                            let pod = PodRef::new(Namespace::new(ns).ok()?, Name::new(r.name.clone()?).ok()?);
                            pods.contains_key(&pod).then_some(pod)
                        },
                    );
                let node = e.node_name.as_deref().and_then(|n| NodeName::new(n).ok());
                for ip in ips(e.addresses.iter().map(String::as_str)) {
                    if !endpoints.iter().any(|x| x.ip == ip) {
                        endpoints.push(EndpointInfo {
                            ip,
                            pod: pod.clone(),
                            node: node.clone(),
                            hostname: e.hostname.clone(),
                            ready,
                        });
                    }
                }
            }
        }
        endpoints.sort_by_key(|e| e.ip);

        let mut ports = Vec::new();
        for sp in spec.ports.iter().flatten() {
            let port_name = format!("{raw}:{}", sp.name.as_deref().unwrap_or(&sp.port.to_string()));
            let (Some(number), Some(proto)) = (port(sp.port), protocol(sp.protocol.as_deref())) else {
                skip("service port", port_name, "not a TCP or UDP port from 1 to 65535".into());
                continue;
            };
            let target = match &sp.target_port {
                None => Some(number),
                Some(IntOrString::Int(n)) => port(*n),
                Some(IntOrString::String(named)) => {
                    named_target(named, sp.name.as_deref(), proto, own_slices, &endpoints, &pods)
                }
            };
            let Some(target_port) = target else {
                skip("service port", port_name, format!("target port {:?} does not resolve", sp.target_port));
                continue;
            };
            ports.push(ServicePort {
                name: sp.name.clone(),
                port: number,
                target_port,
                node_port: if kind == ServiceKind::NodePort { sp.node_port.and_then(port) } else { None },
                protocol: proto,
            });
        }
        let external_traffic_policy = match spec.external_traffic_policy.as_deref() {
            Some("Local") => TrafficPolicy::Local,
            _ => TrafficPolicy::Cluster,
        };
        let info =
            ServiceInfo { namespace, name, kind, cluster_ips, ports, endpoints, external_traffic_policy };
        services.insert(info.service_ref(), info);
    }

    let mut pod_cidrs: Vec<IpNet> = nodes.values().flat_map(|n| n.pod_cidrs.iter().copied()).collect();
    pod_cidrs.sort();
    pod_cidrs.dedup();
    let node_cidrs = if settings.node_cidrs.is_empty() {
        let mut v: Vec<IpNet> =
            nodes.values().flat_map(|n| n.ips.iter().map(|ip| IpNet::from(*ip))).collect();
        v.sort();
        v.dedup();
        v
    } else {
        settings.node_cidrs.clone()
    };
    let dns_ips = services.get(&settings.dns_service).map(|s| s.cluster_ips.clone()).unwrap_or_default();
    let inventory = Inventory {
        version: INVENTORY_VERSION,
        cluster: ClusterInfo {
            name: settings.name.clone(),
            domain: settings.domain.clone(),
            pod_cidrs,
            service_cidrs: settings.service_cidrs.clone(),
            node_cidrs,
            dns_ips,
            proxy_mode: settings.proxy_mode,
        },
        nodes: nodes.into_values().collect(),
        pods: pods.into_values().collect(),
        services: services.into_values().collect(),
        namespaces: vec![],
        network_policies: vec![],
    };
    skipped.sort();
    Converted { inventory, skipped }
}

/// A named `targetPort`: the slices' port of the same service-port name (the controller has
/// resolved it per pod), else a backing pod's container port of that name.
fn named_target(
    target: &str,
    service_port_name: Option<&str>,
    proto: Protocol,
    slices: &[&EndpointSlice],
    endpoints: &[EndpointInfo],
    pods: &BTreeMap<PodRef, PodInfo>,
) -> Option<Port> {
    let wanted = service_port_name.unwrap_or_default();
    let from_slices = slices
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref().unwrap_or_default() == wanted && protocol(p.protocol.as_deref()) == Some(proto)
        })
        .and_then(|p| p.port)
        .and_then(port);
    from_slices.or_else(|| {
        let backing: BTreeSet<&PodRef> = endpoints.iter().filter_map(|e| e.pod.as_ref()).collect();
        backing
            .into_iter()
            .filter_map(|p| pods.get(p))
            .flat_map(|p| &p.ports)
            .find(|c| c.name.as_deref() == Some(target) && c.protocol == proto)
            .map(|c| c.port)
    })
}

/// Namespaces and NetworkPolicies in the model's shape (the API's own JSON, so a round trip
/// through it), sorted by name; an object that does not read is left out and said so. The
/// policies are checked where the diagnosis reads them.
pub fn policies<N, P>(
    namespaces: &[N],
    policies: &[P],
    skipped: &mut Vec<Skipped>,
) -> (Vec<netdiag_model::netpol::NamespaceObject>, Vec<netdiag_model::netpol::NetworkPolicy>)
where
    N: std::borrow::Borrow<k8s_openapi::api::core::v1::Namespace>,
    P: std::borrow::Borrow<k8s_openapi::api::networking::v1::NetworkPolicy>,
{
    fn read<K: serde::Serialize, T: serde::de::DeserializeOwned>(
        object: &K,
        what: &'static str,
        name: String,
        skipped: &mut Vec<Skipped>,
    ) -> Option<T> {
        match serde_json::to_value(object).and_then(serde_json::from_value) {
            Ok(t) => Some(t),
            Err(e) => {
                skipped.push(Skipped {
                    what,
                    name,
                    reason: format!("does not read as the API's shape: {e}"),
                });
                None
            }
        }
    }
    let mut ns: Vec<netdiag_model::netpol::NamespaceObject> = namespaces
        .iter()
        .filter_map(|n| {
            let n = n.borrow();
            read(n, "namespace", meta_name(&n.metadata), skipped)
        })
        .collect();
    ns.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut np: Vec<netdiag_model::netpol::NetworkPolicy> = policies
        .iter()
        .filter_map(|p| {
            let p = p.borrow();
            read(p, "network policy", meta_name(&p.metadata), skipped)
        })
        .collect();
    np.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    (ns, np)
}
