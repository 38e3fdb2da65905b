//! Generated clusters: `N` nodes with `M` pods each (apps rotated over the nodes), a handful
//! of services whose endpoints are spread over the nodes (one a NodePort), and the cluster DNS
//! (two CoreDNS pods behind `kube-system/kube-dns`), as an [`Inventory`] written in the lab's
//! YAML like `sim::INVENTORY`. The probe plan is the production planner's
//! ([`netdiag_model::plan::Sampler`]: the full mesh below 50 nodes, a ring of `k` = 8 peers
//! with 2 pods each from there on), compiled to compact records the network model answers
//! without looking anything up by name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::num::NonZeroU64;
use std::time::Duration;

use netdiag_model::inspect::InspectionReport;
use netdiag_model::inventory::{Inventory, InventoryError};
use netdiag_model::plan::{PlanOptions, PlanPolicy, Sampler, Schedule, ScheduleError, SourcePods};
use netdiag_model::probe::{ProbeKind, ServiceVia, Source, Target};
use netdiag_model::{NodeName, PodRef, ServiceRef};

use super::inspect::node_reports;

/// The sizes the generator supports.
pub const MIN_NODES: usize = 3;
pub const MAX_NODES: usize = 500;
/// Apps per node at most: each node runs each app at most once.
pub const MAX_PODS_PER_NODE: usize = 4;

/// Why a cluster could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(
        "a generated cluster has {MIN_NODES} to {MAX_NODES} nodes and 1 to {MAX_PODS_PER_NODE} pods per node"
    )]
    Size { nodes: usize, pods: usize },
    #[error("the generated inventory does not validate")]
    Inventory(#[from] InventoryError),
    #[error("the generated probe schedule is invalid")]
    Schedule(#[from] ScheduleError),
    #[error("the planner's probe {0} names nothing the generated cluster holds")]
    Uncompiled(String),
    #[error("a generated inspection report does not parse")]
    Inspection(#[from] serde_json::Error),
}

/// An app: its namespace, name stem, TCP ports, and the service in front of a few replicas.
struct App {
    namespace: &'static str,
    stem: &'static str,
    ports: &'static [u16],
    vip: &'static str,
    /// Service port → target port, and the NodePort if it has one.
    port: u16,
    node_port: Option<u16>,
}

const APPS: [App; 4] = [
    App { namespace: "shop", stem: "web", ports: &[8080], vip: "10.96.1.10", port: 8080, node_port: None },
    App { namespace: "shop", stem: "cart", ports: &[7070], vip: "10.96.1.20", port: 7070, node_port: None },
    App {
        namespace: "pay",
        stem: "api",
        ports: &[9090],
        vip: "10.96.1.30",
        port: 9090,
        node_port: Some(30090),
    },
    App {
        namespace: "data",
        stem: "db",
        ports: &[5432, 9187],
        vip: "10.96.1.40",
        port: 5432,
        node_port: None,
    },
];

/// Endpoints per service, spread evenly over the nodes running the app.
const REPLICAS: usize = 6;

/// Either end of a path: a node's own namespace or a pod on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct End {
    pub(crate) node: u32,
    pub(crate) pod: Option<u32>,
}

/// What a probe aims at, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dst {
    /// A pod's address: ICMP, path MTU, or TCP to a port (its own or as a service endpoint).
    Pod { pod: u32, port: Option<u16> },
    /// A node's own address (ICMP).
    Node(u32),
    /// A service's ClusterIP: DNAT on the source's node to a random ready backend.
    Vip { service: u32, port: u16 },
    /// A NodePort on `node`: DNAT there to a random ready backend.
    NodePort { node: u32, service: u32, port: u16 },
    /// A lookup through the DNS VIP (a random CoreDNS pod), answered with a service's VIPs.
    Dns { answer: Option<u32> },
}

/// One planned probe, compiled.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// The node whose agent runs it.
    pub(crate) agent: u32,
    pub(crate) src: End,
    pub(crate) dst: Dst,
    pub(crate) kind: ProbeKind,
    pub(crate) source: Source,
    pub(crate) target: Target,
}

#[derive(Debug, Clone)]
pub(crate) struct PodSlot {
    pub(crate) reference: PodRef,
    pub(crate) node: u32,
    /// Index into [`Cluster::namespaces`].
    pub(crate) namespace: u32,
    /// A CoreDNS pod (port 53 is the cluster DNS).
    pub(crate) dns: bool,
    pub(crate) ports: Vec<u16>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServiceSlot {
    pub(crate) reference: ServiceRef,
    /// Ready backends, as pod indices.
    pub(crate) backends: Vec<u32>,
    pub(crate) cluster_ips: Vec<IpAddr>,
    ports: Vec<SvcPort>,
}

/// A service port and where it leads.
#[derive(Debug, Clone, Copy)]
struct SvcPort {
    port: u16,
    target: u16,
    node_port: Option<u16>,
}

impl ServiceSlot {
    /// The target port behind service port `port`.
    fn target_of(&self, port: u16) -> Option<u16> {
        self.ports.iter().find(|p| p.port == port).map(|p| p.target)
    }

    /// The target port behind NodePort `node_port`.
    fn target_of_node_port(&self, node_port: u16) -> Option<u16> {
        self.ports.iter().find(|p| p.node_port == Some(node_port)).map(|p| p.target)
    }
}

/// A generated cluster and its probe plan; scenarios share it.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub(crate) inventory: Inventory,
    pub(crate) nodes: Vec<NodeName>,
    pub(crate) pods: Vec<PodSlot>,
    pub(crate) namespaces: Vec<String>,
    pub(crate) services: Vec<ServiceSlot>,
    pub(crate) probes: Vec<Probe>,
    /// Whether the plan is the sampled one (at or above the planner's threshold).
    pub(crate) sampled: bool,
    /// The cluster DNS service (`kube-system/kube-dns`).
    pub(crate) dns_service: Option<u32>,
    /// For each pod, the sources that probe it directly (ICMP or TCP), each once.
    pub(crate) probers: Vec<Vec<End>>,
    /// For each node, the nodes its own namespace pings.
    pub(crate) peers: Vec<Vec<u32>>,
    pub(crate) inspections: BTreeMap<Source, (NodeName, InspectionReport)>,
}

impl Cluster {
    /// A cluster of `nodes` nodes with `pods_per_node` app pods each, and its plan.
    pub fn generate(nodes: usize, pods_per_node: usize) -> Result<Cluster, ScenarioError> {
        if !(MIN_NODES..=MAX_NODES).contains(&nodes) || !(1..=MAX_PODS_PER_NODE).contains(&pods_per_node) {
            return Err(ScenarioError::Size { nodes, pods: pods_per_node });
        }
        let inventory = Inventory::from_yaml(&inventory_yaml(nodes, pods_per_node))?;
        let mut cluster = Cluster::index(inventory);
        cluster.compile_plan()?;
        cluster.inspections = node_reports(&cluster.inventory, super::now())?;
        Ok(cluster)
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Probes per round (every probe runs once per sample).
    pub fn probe_count(&self) -> usize {
        self.probes.len()
    }

    pub fn is_sampled(&self) -> bool {
        self.sampled
    }

    /// The nodes' latest inspections, as `localize` takes them.
    pub fn inspections(&self) -> &BTreeMap<Source, (NodeName, InspectionReport)> {
        &self.inspections
    }

    /// Lookup tables by index; the plan is compiled separately.
    fn index(inventory: Inventory) -> Cluster {
        let nodes: Vec<NodeName> = inventory.nodes.iter().map(|n| n.name.clone()).collect();
        let node_ix: HashMap<&NodeName, u32> = nodes.iter().zip(0u32..).collect();
        let mut namespaces: Vec<String> = Vec::new();
        let mut pods = Vec::with_capacity(inventory.pods.len());
        for p in &inventory.pods {
            let ns = p.namespace.as_str();
            let namespace = match namespaces.iter().position(|n| n == ns) {
                Some(i) => i,
                None => {
                    namespaces.push(ns.to_owned());
                    namespaces.len() - 1
                }
            };
            pods.push(PodSlot {
                reference: p.pod_ref(),
                node: node_ix.get(&p.node).copied().unwrap_or_default(),
                namespace: u32::try_from(namespace).unwrap_or_default(),
                dns: p.namespace.as_str() == "kube-system",
                ports: p.ports.iter().map(|c| c.port.get()).collect(),
            });
        }
        let pod_ix: HashMap<PodRef, u32> = pods.iter().map(|p| p.reference.clone()).zip(0u32..).collect();
        let services = inventory
            .services
            .iter()
            .map(|s| ServiceSlot {
                reference: s.service_ref(),
                backends: s
                    .ready_endpoints()
                    .filter_map(|e| e.pod.as_ref().and_then(|p| pod_ix.get(p).copied()))
                    .collect(),
                cluster_ips: s.cluster_ips.clone(),
                ports: s
                    .ports
                    .iter()
                    .map(|p| SvcPort {
                        port: p.port.get(),
                        target: p.target_port.get(),
                        node_port: p.node_port.map(|n| n.get()),
                    })
                    .collect(),
            })
            .collect();
        let dns_service = inventory
            .services
            .iter()
            .position(|s| s.cluster_ips.iter().any(|ip| inventory.cluster.dns_ips.contains(ip)))
            .and_then(|i| u32::try_from(i).ok());
        Cluster {
            inventory,
            nodes,
            pods,
            namespaces,
            services,
            probes: Vec::new(),
            sampled: false,
            dns_service,
            probers: Vec::new(),
            peers: Vec::new(),
            inspections: BTreeMap::new(),
        }
    }

    /// Every node's plan from the production planner, compiled.
    fn compile_plan(&mut self) -> Result<(), ScenarioError> {
        let policy = PlanPolicy::default();
        let opts = PlanOptions {
            schedule: Schedule::new(Duration::from_secs(5), Duration::from_secs(1), 64, 1_000)?,
            http_checks: Vec::new(),
            mtu: true,
            sources: SourcePods::All,
        };
        let sampler = Sampler::new(&self.inventory, &policy, &BTreeSet::new());
        self.sampled = sampler.is_sampled();
        let lookup = Lookup::new(self);
        let mut probes = Vec::new();
        for (agent, node) in (0u32..).zip(&self.nodes) {
            for p in sampler.plan(node, &opts, NonZeroU64::MIN).probes {
                let what = || format!("{} → {} ({})", p.source, p.target, p.kind);
                let compiled = lookup.compile(self, agent, p.source.clone(), p.target.clone(), p.kind);
                probes.push(compiled.ok_or_else(|| ScenarioError::Uncompiled(what()))?);
            }
        }
        self.probes = probes;
        self.index_plan();
        Ok(())
    }

    /// Who probes each pod, and each node's pinged peers: where a fault can be seen from.
    fn index_plan(&mut self) {
        let mut probers = vec![BTreeSet::new(); self.pods.len()];
        let mut peers = vec![BTreeSet::new(); self.nodes.len()];
        for p in &self.probes {
            match (p.kind, p.dst) {
                (ProbeKind::Icmp | ProbeKind::Tcp, Dst::Pod { pod, .. }) => {
                    if let Some(set) = probers.get_mut(pod as usize) {
                        set.insert((p.src.node, p.src.pod));
                    }
                }
                (ProbeKind::Icmp, Dst::Node(n)) => {
                    if let Some(set) = peers.get_mut(p.agent as usize) {
                        set.insert(n);
                    }
                }
                _ => {}
            }
        }
        self.probers = probers
            .into_iter()
            .map(|set| set.into_iter().map(|(node, pod)| End { node, pod }).collect())
            .collect();
        self.peers = peers.into_iter().map(|set| set.into_iter().collect()).collect();
    }

    /// The pod index of a pod reference.
    pub(crate) fn pod_index(&self, pod: &PodRef) -> Option<u32> {
        self.pods.iter().position(|p| &p.reference == pod).and_then(|i| u32::try_from(i).ok())
    }

    pub(crate) fn node_index(&self, node: &NodeName) -> Option<u32> {
        self.nodes.iter().position(|n| n == node).and_then(|i| u32::try_from(i).ok())
    }

    pub(crate) fn pod(&self, i: u32) -> &PodSlot {
        &self.pods[i as usize]
    }

    pub(crate) fn node(&self, i: u32) -> &NodeName {
        &self.nodes[i as usize]
    }
}

/// Name → index maps for compiling the plan.
struct Lookup {
    nodes: HashMap<NodeName, u32>,
    node_ips: HashMap<IpAddr, u32>,
    pods: HashMap<PodRef, u32>,
    services: HashMap<ServiceRef, u32>,
    /// `<name>.<namespace>` of each service, for the answer to a lookup.
    service_names: Vec<(String, u32)>,
}

impl Lookup {
    fn new(c: &Cluster) -> Lookup {
        let nodes = c.nodes.iter().cloned().zip(0u32..).collect();
        let node_ips = c
            .inventory
            .nodes
            .iter()
            .zip(0u32..)
            .flat_map(|(n, i)| n.ips.iter().map(move |ip| (*ip, i)))
            .collect();
        let pods = c.pods.iter().map(|p| p.reference.clone()).zip(0u32..).collect();
        let services = c.services.iter().map(|s| s.reference.clone()).zip(0u32..).collect();
        let service_names = c
            .services
            .iter()
            .zip(0u32..)
            .map(|(s, i)| (format!("{}.{}", s.reference.name, s.reference.namespace), i))
            .collect();
        Lookup { nodes, node_ips, pods, services, service_names }
    }

    fn end(&self, source: &Source, agent: u32) -> Option<End> {
        match source {
            Source::Node(_) => Some(End { node: agent, pod: None }),
            Source::Pod(p) => Some(End { node: agent, pod: Some(*self.pods.get(p)?) }),
        }
    }

    fn compile(
        &self,
        c: &Cluster,
        agent: u32,
        source: Source,
        target: Target,
        kind: ProbeKind,
    ) -> Option<Probe> {
        let service_slot = |s: u32| c.services.get(s as usize);
        let src = self.end(&source, agent)?;
        let dst = match &target {
            Target::Pod { pod, port, .. } => {
                Dst::Pod { pod: *self.pods.get(pod)?, port: port.map(|p| p.get()) }
            }
            Target::Node { node, .. } => Dst::Node(*self.nodes.get(node)?),
            Target::Service { service, port, via: ServiceVia::ClusterIp, .. } => {
                let service = *self.services.get(service)?;
                Dst::Vip { service, port: service_slot(service)?.target_of(port.get())? }
            }
            Target::Service { port, via: ServiceVia::Endpoint(pod), .. } => {
                Dst::Pod { pod: *self.pods.get(pod)?, port: Some(port.get()) }
            }
            Target::Service { service, ip, port, via: ServiceVia::NodePort } => {
                let service = *self.services.get(service)?;
                let port = service_slot(service)?.target_of_node_port(port.get())?;
                Dst::NodePort { node: *self.node_ips.get(ip)?, service, port }
            }
            Target::Dns { name, .. } => {
                let asked = name.as_str();
                let answer =
                    self.service_names.iter().find(|(n, _)| asked.starts_with(n.as_str())).map(|(_, i)| *i);
                Dst::Dns { answer }
            }
            Target::Address { .. } => return None,
        };
        Some(Probe { agent, src, dst, kind, source, target })
    }
}

/// Node `i`'s address: 172.16.0.0/16, 250 per /24.
fn node_ip(i: usize) -> String {
    format!("172.16.{}.{}", i / 250, i % 250 + 1)
}

/// Node `i`'s pod CIDR: a /24 out of 10.128.0.0/9.
fn pod_cidr(i: usize) -> (String, String) {
    let prefix = format!("10.{}.{}", 128 + i / 256, i % 256);
    (format!("{prefix}.0/24"), prefix)
}

fn node_name(i: usize) -> String {
    format!("node-{i:03}")
}

/// The app (index into [`APPS`]) pod `j` of node `i` runs: apps rotate so every app is
/// spread over the nodes.
fn app_of(i: usize, j: usize) -> usize {
    (i + j) % APPS.len()
}

/// The nodes hosting the two CoreDNS pods.
pub(crate) fn dns_nodes(nodes: usize) -> [usize; 2] {
    [0, nodes / 2]
}

const HEADER: &str = "\
version: 1
cluster:
  name: bench
  domain: cluster.local
  pod_cidrs: [10.128.0.0/9]
  service_cidrs: [10.96.0.0/16]
  node_cidrs: [172.16.0.0/16]
  dns_ips: [10.96.0.10]
  proxy_mode: iptables
";

const KUBE_DNS: &str = concat!(
    "  - namespace: kube-system\n",
    "    name: kube-dns\n",
    "    type: ClusterIP\n",
    "    cluster_ips: [10.96.0.10]\n",
    "    ports:\n",
    "      - {name: dns, port: 53, target_port: 53, protocol: UDP}\n",
    "      - {name: dns-tcp, port: 53, target_port: 53}\n",
);

/// A pod as a service endpoint.
struct Replica {
    pod: String,
    ip: String,
    node: usize,
}

impl Replica {
    fn yaml(&self) -> String {
        format!("{{ip: {}, pod: {}, node: {}, ready: true}}", self.ip, self.pod, node_name(self.node))
    }
}

/// The inventory, as the lab's YAML.
fn inventory_yaml(nodes: usize, per_node: usize) -> String {
    let mut y = String::from(HEADER);
    y.push_str("nodes:\n");
    for i in 0..nodes {
        let (name, ip, cidr) = (node_name(i), node_ip(i), pod_cidr(i).0);
        let _ = writeln!(y, "  - {{name: {name}, ips: [{ip}], pod_cidrs: [{cidr}]}}");
    }
    y.push_str("pods:\n");
    let replicas = app_pods(&mut y, nodes, per_node);
    let dns = dns_pods(&mut y, nodes);
    y.push_str("services:\n");
    y.push_str(KUBE_DNS);
    let _ = writeln!(y, "    endpoints: [{}]", dns.iter().map(Replica::yaml).collect::<Vec<_>>().join(", "));
    for (app, pods) in APPS.iter().zip(&replicas) {
        let endpoints: Vec<String> =
            spread(pods.len(), REPLICAS).into_iter().map(|k| pods[k].yaml()).collect();
        let (kind, node_port) = match app.node_port {
            Some(np) => ("NodePort", format!(", node_port: {np}")),
            None => ("ClusterIP", String::new()),
        };
        let _ = writeln!(y, "  - namespace: {}\n    name: {}\n    type: {kind}", app.namespace, app.stem);
        let _ = writeln!(y, "    cluster_ips: [{}]", app.vip);
        let _ = writeln!(y, "    ports: [{{port: {p}, target_port: {p}{node_port}}}]", p = app.port);
        let _ = writeln!(y, "    endpoints: [{}]", endpoints.join(", "));
    }
    y
}

/// Writes every app pod; returns each app's pods in node order.
fn app_pods(y: &mut String, nodes: usize, per_node: usize) -> Vec<Vec<Replica>> {
    let mut replicas: Vec<Vec<Replica>> = APPS.iter().map(|_| Vec::new()).collect();
    for i in 0..nodes {
        let prefix = pod_cidr(i).1;
        for j in 0..per_node {
            let a = app_of(i, j);
            let app = &APPS[a];
            let name = format!("{}-{i:03}", app.stem);
            let ip = format!("{prefix}.{}", j + 2);
            let ports: Vec<String> = app.ports.iter().map(|p| format!("{{port: {p}}}")).collect();
            let _ = writeln!(
                y,
                "  - {{namespace: {}, name: {name}, node: {}, ips: [{ip}], ports: [{}]}}",
                app.namespace,
                node_name(i),
                ports.join(", ")
            );
            replicas[a].push(Replica { pod: format!("{}/{name}", app.namespace), ip, node: i });
        }
    }
    replicas
}

/// Writes the CoreDNS pods; returns them.
fn dns_pods(y: &mut String, nodes: usize) -> Vec<Replica> {
    let mut out = Vec::new();
    for (c, &i) in dns_nodes(nodes).iter().enumerate() {
        let ip = format!("{}.{}", pod_cidr(i).1, 200 + c);
        let ports = "[{port: 53, protocol: UDP}, {port: 53}]";
        let node = node_name(i);
        let _ = writeln!(
            y,
            "  - {{namespace: kube-system, name: coredns-{c}, node: {node}, ips: [{ip}], ports: {ports}}}"
        );
        out.push(Replica { pod: format!("kube-system/coredns-{c}"), ip, node: i });
    }
    out
}

/// Up to `want` indices out of `0..len`, evenly spaced.
fn spread(len: usize, want: usize) -> Vec<usize> {
    let n = want.min(len);
    (0..n).map(|k| k * len / n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_validate_and_plans_switch_to_sampling_at_fifty_nodes() {
        let small = Cluster::generate(3, 3).expect("3 nodes");
        assert_eq!(small.inventory.nodes.len(), 3);
        assert_eq!(small.inventory.pods.len(), 3 * 3 + 2);
        assert!(!small.is_sampled());
        let big = Cluster::generate(50, 3).expect("50 nodes");
        assert!(big.is_sampled());
        // The sampled plan's fan-out does not grow with the cluster.
        let per_node = big.probe_count() / 50;
        assert!(per_node < 600, "{per_node} probes per node");
        assert!(Cluster::generate(2, 3).is_err());
        assert!(Cluster::generate(3, 5).is_err());
    }

    #[test]
    fn plans_hold_every_kind_of_destination() {
        // Generation fails on a planned probe it cannot compile, so this also checks that
        // every probe of the plan was compiled.
        let c = Cluster::generate(5, 4).expect("5 nodes");
        assert!(c.probes.iter().any(|p| matches!(p.dst, Dst::Vip { .. })));
        assert!(c.probes.iter().any(|p| matches!(p.dst, Dst::NodePort { .. })));
        assert!(c.probes.iter().any(|p| matches!(p.dst, Dst::Dns { answer: Some(_) })));
        assert!(c.probes.iter().any(|p| p.kind == ProbeKind::Mtu));
    }
}
