//! Expanding an on-demand run against the inventory into the runbook's steps (`RunPlan`), in
//! the order the seed walks them by hand: resolve the name with the source's resolv.conf and
//! ask each cluster nameserver → the Service VIP → each ready backend (ICMP, TCP, HTTP when
//! asked, path MTU across nodes) and its node → the source node's NAT rules for the VIP → the
//! routes toward the backends → the NodePort on every node. Each step carries a role, so the
//! verdict can read the results back without guessing from step names.
//!
//! Safety lives here too: the source and target must be known to the inventory (404 naming
//! what is missing), and an address target must lie in the cluster's ranges or the allow-list
//! (403). Addresses learned during the run (DNS answers) are held to the same [`Scope`] by the
//! agent through `RunPlan::allowed`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use netdiag_model::dns::{DnsName, DnsTransport, RecordType};
use netdiag_model::inspect::NatProtocol;
use netdiag_model::inventory::{Inventory, PodInfo, Protocol, ServiceInfo, ServiceKind, TrafficPolicy};
use netdiag_model::plan::PlannedProbe;
use netdiag_model::probe::{ProbeKind, ServiceVia, Source, Target};
use netdiag_model::run::{ProbeRunRequest, RunId, RunRequest, RunTarget, RunTimeout, StepName};
use netdiag_model::run_plan::{PlannedStep, RunPlan, StepAction};
use netdiag_model::text::Text;
use netdiag_model::{HttpPath, NodeName, PodRef, Port, ServiceRef};

/// Backends probed one by one in a run; a larger service is sampled (the first ones, sorted).
pub const MAX_BACKENDS: usize = 16;

/// Where runs may aim: the cluster's pod, service and node ranges, every node's own addresses
/// and pod CIDRs, and the collector's allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    ranges: Vec<IpNet>,
}

impl Scope {
    pub fn new(inventory: &Inventory, allow: &[IpNet]) -> Self {
        let c = &inventory.cluster;
        let cidrs = c.pod_cidrs.iter().chain(&c.service_cidrs).chain(&c.node_cidrs).chain(allow).copied();
        let node_cidrs = inventory.nodes.iter().flat_map(|n| &n.pod_cidrs).copied();
        let addresses = (inventory.nodes.iter().flat_map(|n| &n.ips))
            .chain(inventory.pods.iter().flat_map(|p| &p.ips))
            .chain(inventory.services.iter().flat_map(|s| &s.cluster_ips))
            .chain(&c.dns_ips)
            .map(|ip| IpNet::from(*ip));
        // Aggregated (sorted, contained ranges dropped, neighbours merged) in O(n log n): a
        // scope is built for every run, and a large cluster has 100 000 pod addresses.
        let all: Vec<IpNet> = cidrs.chain(node_cidrs).chain(addresses).collect();
        Scope { ranges: IpNet::aggregate(&all) }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|n| n.contains(&ip))
    }

    pub fn ranges(&self) -> &[IpNet] {
        &self.ranges
    }
}

/// How a refused run should be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadRequest,
    NotFound,
    Forbidden,
}

/// A run that cannot be planned; the message is for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error(
        "source pod {0} is not in the inventory (check the namespace and name: `netdiag matrix` lists pods)"
    )]
    UnknownSourcePod(PodRef),
    #[error("source node {0} is not in the inventory")]
    UnknownSourceNode(NodeName),
    #[error("source pod {0} has no IP address yet; it cannot be probed from")]
    SourceWithoutIp(PodRef),
    #[error("pod {0} is not in the inventory")]
    UnknownPod(PodRef),
    #[error("pod {0} has no IP address yet")]
    PodWithoutIp(PodRef),
    #[error("service {0} is not in the inventory")]
    UnknownService(ServiceRef),
    #[error("service {service} has no port {port}; its ports: {ports}")]
    UnknownServicePort { service: ServiceRef, port: Port, ports: String },
    #[error("node {0} is not in the inventory")]
    UnknownNode(NodeName),
    #[error(
        "target {0} is outside cluster ranges (pod, service and node CIDRs) and the allow-list; \
         add it to the collector's --run-allow to probe it"
    )]
    OutsideScope(IpAddr),
    #[error("an HTTP check needs a port: give one in the target (`{target}:<port>`) or --port")]
    HttpNeedsPort { target: String },
    #[error("pod {pod} declares no TCP port to probe; give one in the target (`{pod}:<port>`) or --port")]
    NoPortToProbe { pod: PodRef },
}

impl ExpandError {
    pub fn refusal(&self) -> Refusal {
        match self {
            ExpandError::UnknownSourcePod(_)
            | ExpandError::UnknownSourceNode(_)
            | ExpandError::UnknownPod(_)
            | ExpandError::UnknownService(_)
            | ExpandError::UnknownServicePort { .. }
            | ExpandError::UnknownNode(_) => Refusal::NotFound,
            ExpandError::OutsideScope(_) => Refusal::Forbidden,
            ExpandError::SourceWithoutIp(_)
            | ExpandError::PodWithoutIp(_)
            | ExpandError::HttpNeedsPort { .. }
            | ExpandError::NoPortToProbe { .. } => Refusal::BadRequest,
        }
    }
}

/// What a step means for the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepRole {
    /// The name looked up with the source's resolv.conf; `expect` are the addresses the
    /// inventory says it should answer (empty: unknown).
    Resolve { name: String, expect: Vec<IpAddr> },
    /// The same name asked of one cluster nameserver directly.
    Nameserver { nameserver: IpAddr, transport: DnsTransport },
    /// The Service VIP, by TCP or HTTP.
    Vip { service: ServiceRef, port: Port, kind: ProbeKind },
    /// One backend (a pod, a service endpoint, a node or a plain address).
    Backend { pod: Option<PodRef>, node: Option<NodeName>, ip: IpAddr, port: Option<Port>, kind: ProbeKind },
    /// A node's own address, to tell a node-level cut from a pod-level one.
    NodeIcmp { node: NodeName },
    /// Probes of the addresses a DNS step answered.
    Answers { kind: ProbeKind },
    /// The source node's NAT rules for the VIP.
    NatRules { service: ServiceRef, port: Port },
    /// Routes toward the backends.
    Routes,
    /// The NodePort on one node.
    NodePort { service: ServiceRef, node: NodeName, port: Port, local_endpoint: bool, local_policy: bool },
}

/// Whose address a destination is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub pod: Option<PodRef>,
    pub node: Option<NodeName>,
    pub ip: IpAddr,
}

/// A run ready to send: the agent that runs it, the plan, and what each step means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandedRun {
    /// The node whose agent runs it (the source's node).
    pub node: NodeName,
    pub request: ProbeRunRequest,
    pub plan: RunPlan,
    /// One per plan step.
    pub roles: Vec<StepRole>,
    /// The service the run aims at, with its ready endpoint count (for "no endpoints").
    pub service: Option<(ServiceRef, Port, usize)>,
    /// The cluster DNS as the continuous diagnosis names it (`10.96.0.10 (kube-system/kube-dns)`).
    pub dns_culprit: String,
    /// What NetworkPolicy says of the run's path, when a policy isolates either end.
    pub policy: Option<super::policy::RunPolicy>,
}

impl ExpandedRun {
    pub fn to_agent(&self, run_id: RunId, timeout: RunTimeout) -> RunRequest {
        RunRequest {
            run_id,
            source: self.request.from.clone(),
            target: self.request.to.clone(),
            http_path: self.request.http_path.clone(),
            timeout,
            plan: self.plan.clone(),
        }
    }

    pub fn source_pod(&self) -> Option<&PodRef> {
        self.request.from.pod()
    }
}

/// Plans `request` against `inventory`.
pub fn expand(
    inventory: &Inventory,
    scope: &Scope,
    request: &ProbeRunRequest,
) -> Result<ExpandedRun, ExpandError> {
    let (node, source_ip) = match &request.from {
        Source::Pod(p) => {
            let pod = inventory.pod(p).ok_or_else(|| ExpandError::UnknownSourcePod(p.clone()))?;
            let ip = pod.ips.first().copied().ok_or_else(|| ExpandError::SourceWithoutIp(p.clone()))?;
            (pod.node.clone(), ip)
        }
        Source::Node(n) => {
            let info = inventory.node(n).ok_or_else(|| ExpandError::UnknownSourceNode(n.clone()))?;
            (n.clone(), info.ips.first().copied().unwrap_or(IpAddr::from([0, 0, 0, 0])))
        }
    };
    let mut b = Builder {
        inv: inventory,
        source: request.from.clone(),
        source_node: node.clone(),
        family_v6: source_ip.is_ipv6(),
        http_path: request.http_path.clone(),
        steps: Vec::new(),
        roles: Vec::new(),
        service: None,
    };
    match &request.to {
        RunTarget::Service { service, port } => b.service_target(service, *port, None)?,
        RunTarget::Pod { pod, port } => b.pod_target(pod, *port)?,
        RunTarget::Node { node, port } => b.node_target(node, *port)?,
        RunTarget::Address { ip, port } => b.address_target(scope, *ip, *port)?,
        RunTarget::Dns { name, port } => b.dns_target(name, *port)?,
    }
    let policy = super::policy::judge(inventory, &request.from, &b.roles);
    Ok(ExpandedRun {
        policy,
        node,
        request: request.clone(),
        plan: RunPlan { steps: b.steps, allowed: scope.ranges().to_vec() },
        roles: b.roles,
        service: b.service,
        dns_culprit: dns_culprit(inventory),
    })
}

/// The cluster DNS as the continuous diagnosis names it.
pub fn dns_culprit(inventory: &Inventory) -> String {
    let ips = inventory.cluster.dns_ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    let svc = inventory
        .services
        .iter()
        .find(|s| s.cluster_ips.iter().any(|ip| inventory.cluster.dns_ips.contains(ip)))
        .map(ServiceInfo::service_ref);
    match svc {
        Some(r) if !ips.is_empty() => format!("{ips} ({r})"),
        Some(r) => r.to_string(),
        None => ips,
    }
}

struct Builder<'a> {
    inv: &'a Inventory,
    source: Source,
    source_node: NodeName,
    family_v6: bool,
    http_path: Option<HttpPath>,
    steps: Vec<PlannedStep>,
    roles: Vec<StepRole>,
    service: Option<(ServiceRef, Port, usize)>,
}

fn step_name(name: &str) -> StepName {
    // Step names here are constants that satisfy the rule; fall back rather than panic.
    StepName::new(name).unwrap_or_else(|_| StepName::new("step").unwrap_or_else(|_| unreachable!()))
}

impl Builder<'_> {
    fn push(&mut self, name: &str, description: String, action: StepAction, role: StepRole) -> u32 {
        let index = u32::try_from(self.steps.len()).unwrap_or(u32::MAX);
        self.steps.push(PlannedStep {
            name: step_name(name),
            description: Text::lossy(&description),
            action,
        });
        self.roles.push(role);
        index
    }

    fn probe(
        &mut self,
        name: &str,
        description: String,
        target: Target,
        kind: ProbeKind,
        role: StepRole,
    ) -> u32 {
        let http_path = if kind == ProbeKind::Http { self.http_path.clone() } else { None };
        let probe = PlannedProbe {
            source: self.source.clone(),
            target,
            kind,
            http_path,
            every: netdiag_model::EveryRounds::ONE,
        };
        self.push(name, description, StepAction::Probe { probe }, role)
    }

    fn record(&self) -> RecordType {
        if self.family_v6 { RecordType::Aaaa } else { RecordType::A }
    }

    /// The address of the source's family, else the first.
    fn pick(&self, ips: &[IpAddr]) -> Option<IpAddr> {
        ips.iter().find(|ip| ip.is_ipv6() == self.family_v6).or(ips.first()).copied()
    }

    /// Resolve with the source's resolv.conf (pods only: a node's resolv.conf is the host's, not
    /// the cluster's), then ask every cluster nameserver directly over UDP and TCP.
    fn resolve_steps(&mut self, name: &DnsName, fqdn: Option<&str>, expect: &[IpAddr]) -> Option<u32> {
        let record = self.record();
        let shown_expect = if expect.is_empty() {
            String::new()
        } else {
            format!(" (expect {})", expect.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
        };
        let resolve = if matches!(self.source, Source::Pod(_)) {
            let target =
                Target::Dns { name: name.clone(), record, nameserver: None, transport: DnsTransport::Udp };
            Some(self.probe(
                "resolve",
                format!("resolve {name} ({record}) with the pod's resolv.conf{shown_expect}"),
                target,
                ProbeKind::Dns,
                StepRole::Resolve { name: name.to_string(), expect: expect.to_vec() },
            ))
        } else {
            None
        };
        // Nameservers see the name without the pod's search list: ask for the full name.
        let asked = fqdn.and_then(|f| DnsName::new(f).ok()).unwrap_or_else(|| name.clone());
        for ns in self.inv.cluster.dns_ips.clone() {
            for transport in [DnsTransport::Udp, DnsTransport::Tcp] {
                let target = Target::Dns { name: asked.clone(), record, nameserver: Some(ns), transport };
                self.probe(
                    "nameserver",
                    format!("ask nameserver {ns} over {transport} for {asked} ({record}){shown_expect}"),
                    target,
                    ProbeKind::Dns,
                    StepRole::Nameserver { nameserver: ns, transport },
                );
            }
        }
        resolve
    }

    fn service_target(
        &mut self,
        service: &ServiceRef,
        port: Port,
        asked_name: Option<&DnsName>,
    ) -> Result<(), ExpandError> {
        let inv = self.inv;
        let svc = inv.service(service).ok_or_else(|| ExpandError::UnknownService(service.clone()))?;
        let sp =
            svc.ports.iter().find(|p| p.port == port).ok_or_else(|| ExpandError::UnknownServicePort {
                service: service.clone(),
                port,
                ports: svc
                    .ports
                    .iter()
                    .map(|p| match &p.name {
                        Some(n) => format!("{} ({n})", p.port),
                        None => p.port.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let ready: Vec<_> = svc.ready_endpoints().collect();
        self.service = Some((service.clone(), port, ready.len()));
        let fqdn = svc.dns_name(&inv.cluster.domain);
        let short = format!("{}.{}.svc", svc.name, svc.namespace);
        let name = match asked_name {
            Some(n) => n.clone(),
            None => DnsName::new(&short).map_err(|_| ExpandError::UnknownService(service.clone()))?,
        };
        let expect: Vec<IpAddr> = if svc.is_headless() {
            ready.iter().map(|e| e.ip).filter(|ip| ip.is_ipv6() == self.family_v6).collect()
        } else {
            svc.cluster_ips.iter().copied().filter(|ip| ip.is_ipv6() == self.family_v6).collect()
        };
        self.resolve_steps(&name, Some(&fqdn), &expect);

        let tcp = sp.protocol == Protocol::Tcp;
        for vip in svc.cluster_ips.clone() {
            if vip.is_ipv6() != self.family_v6 && svc.cluster_ips.len() > 1 {
                continue;
            }
            let target =
                Target::Service { service: service.clone(), ip: vip, port, via: ServiceVia::ClusterIp };
            if tcp {
                self.probe(
                    "tcp",
                    format!("TCP connect {} (service {service})", SocketAddr::new(vip, port.get())),
                    target.clone(),
                    ProbeKind::Tcp,
                    StepRole::Vip { service: service.clone(), port, kind: ProbeKind::Tcp },
                );
            }
            if tcp && let Some(path) = self.http_path.clone() {
                self.probe(
                    "http",
                    format!("HTTP GET http://{}{path} (service {service})", SocketAddr::new(vip, port.get())),
                    target,
                    ProbeKind::Http,
                    StepRole::Vip { service: service.clone(), port, kind: ProbeKind::Http },
                );
            }
            self.push(
                "nat-rules",
                format!(
                    "look up {}/{} in {}'s kube-proxy NAT rules (expect {} ready endpoint(s))",
                    SocketAddr::new(vip, port.get()),
                    sp.protocol,
                    self.source_node,
                    ready.len()
                ),
                StepAction::NatRules {
                    service: Some(service.clone()),
                    vip,
                    port,
                    protocol: nat_protocol(sp.protocol),
                    expected: ready.iter().map(|e| SocketAddr::new(e.ip, sp.target_port.get())).collect(),
                    node_port: false,
                },
                StepRole::NatRules { service: service.clone(), port },
            );
        }

        let mut backends: Vec<(Option<PodRef>, Option<NodeName>, IpAddr)> = ready
            .iter()
            .filter(|e| e.ip.is_ipv6() == self.family_v6 || ready.len() == 1)
            .map(|e| (e.pod.clone(), e.node.clone(), e.ip))
            .collect();
        backends.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
        backends.truncate(MAX_BACKENDS);
        let ports = if tcp { vec![sp.target_port] } else { vec![] };
        for (pod, node, ip) in &backends {
            let dest = Destination {
                pod: pod.clone(),
                node: node.clone().or_else(|| pod.as_ref().and_then(|p| inv.pod(p)).map(|p| p.node.clone())),
                ip: *ip,
            };
            self.backend_steps(&dest, &ports, Some(service));
        }
        self.node_steps(backends.iter().filter_map(|b| b.1.clone()));
        self.routes_step(backends.iter().map(|b| b.2).collect());

        if svc.kind == ServiceKind::NodePort
            && let Some(node_port) = sp.node_port
            && tcp
        {
            let local_policy = svc.external_traffic_policy == TrafficPolicy::Local;
            for node in &inv.nodes {
                let Some(ip) = self.pick(&node.ips) else { continue };
                let local_endpoint = ready.iter().any(|e| e.node.as_ref() == Some(&node.name));
                let target = Target::Service {
                    service: service.clone(),
                    ip,
                    port: node_port,
                    via: ServiceVia::NodePort,
                };
                self.probe(
                    "nodeport",
                    format!(
                        "TCP connect NodePort {} on {} ({})",
                        SocketAddr::new(ip, node_port.get()),
                        node.name,
                        if local_endpoint { "runs a backend" } else { "no local backend" }
                    ),
                    target,
                    ProbeKind::Tcp,
                    StepRole::NodePort {
                        service: service.clone(),
                        node: node.name.clone(),
                        port: node_port,
                        local_endpoint,
                        local_policy,
                    },
                );
            }
        }
        Ok(())
    }

    /// ICMP, then each port by TCP (and HTTP when asked), then path MTU when the destination is
    /// on another node.
    fn backend_steps(&mut self, dest: &Destination, ports: &[Port], via_service: Option<&ServiceRef>) {
        let whose = match (&dest.pod, &dest.node) {
            (Some(p), _) => format!("pod {p}"),
            (None, Some(n)) => format!("node {n}"),
            (None, None) => "address".to_owned(),
        };
        let role = |port, kind| StepRole::Backend {
            pod: dest.pod.clone(),
            node: dest.node.clone(),
            ip: dest.ip,
            port,
            kind,
        };
        let target = |port: Option<Port>| match (&dest.pod, via_service, port) {
            (Some(pod), Some(svc), Some(port)) => Target::Service {
                service: svc.clone(),
                ip: dest.ip,
                port,
                via: ServiceVia::Endpoint(pod.clone()),
            },
            (Some(pod), _, _) => Target::Pod { pod: pod.clone(), ip: dest.ip, port },
            (None, _, _) => match (&dest.node, self.inv.nodes.iter().find(|n| n.ips.contains(&dest.ip))) {
                (Some(node), Some(_)) => Target::Node { node: node.clone(), ip: dest.ip, port },
                _ => Target::Address { ip: dest.ip, port },
            },
        };
        self.probe(
            "icmp",
            format!("ping {} ({whose})", dest.ip),
            target(None),
            ProbeKind::Icmp,
            role(None, ProbeKind::Icmp),
        );
        for port in ports {
            let addr = SocketAddr::new(dest.ip, port.get());
            self.probe(
                "tcp",
                format!("TCP connect {addr} ({whose})"),
                target(Some(*port)),
                ProbeKind::Tcp,
                role(Some(*port), ProbeKind::Tcp),
            );
            if let Some(path) = self.http_path.clone() {
                self.probe(
                    "http",
                    format!("HTTP GET http://{addr}{path} ({whose})"),
                    target(Some(*port)),
                    ProbeKind::Http,
                    role(Some(*port), ProbeKind::Http),
                );
            }
        }
        let crosses = dest.node.as_ref().is_some_and(|n| *n != self.source_node);
        if crosses && dest.pod.is_some() {
            self.probe(
                "mtu",
                format!(
                    "path MTU toward {} ({whose}, on {})",
                    dest.ip,
                    dest.node.as_ref().map_or("?", |n| n.as_str())
                ),
                target(None),
                ProbeKind::Mtu,
                role(None, ProbeKind::Mtu),
            );
        }
    }

    /// A ping of each other node that holds a destination: a cut node pair loses both.
    fn node_steps(&mut self, nodes: impl Iterator<Item = NodeName>) {
        let nodes: BTreeSet<NodeName> = nodes.filter(|n| *n != self.source_node).collect();
        for node in nodes {
            let Some(ip) = self.inv.node(&node).and_then(|n| self.pick(&n.ips)) else { continue };
            self.probe(
                "node-icmp",
                format!("ping node {node} ({ip}) from {}", self.source),
                Target::Node { node: node.clone(), ip, port: None },
                ProbeKind::Icmp,
                StepRole::NodeIcmp { node },
            );
        }
    }

    fn routes_step(&mut self, destinations: Vec<IpAddr>) {
        let destinations: Vec<IpAddr> =
            destinations.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        if destinations.is_empty() {
            return;
        }
        let mut shown = String::new();
        for (i, d) in destinations.iter().take(4).enumerate() {
            let _ = write!(shown, "{}{d}", if i > 0 { ", " } else { "" });
        }
        if destinations.len() > 4 {
            let _ = write!(shown, " and {} more", destinations.len() - 4);
        }
        let where_ = match &self.source {
            Source::Pod(p) => format!("pod {p} and node {}", self.source_node),
            Source::Node(n) => format!("node {n}"),
        };
        self.push(
            "routes",
            format!("look up the routes toward {shown} in {where_}"),
            StepAction::Routes { destinations },
            StepRole::Routes,
        );
    }

    fn pod_target(&mut self, pod: &PodRef, port: Option<Port>) -> Result<(), ExpandError> {
        let info: &PodInfo = self.inv.pod(pod).ok_or_else(|| ExpandError::UnknownPod(pod.clone()))?;
        let ip = self.pick(&info.ips).ok_or_else(|| ExpandError::PodWithoutIp(pod.clone()))?;
        let ports: Vec<Port> = match port {
            Some(p) => vec![p],
            None => info.ports.iter().filter(|p| p.protocol == Protocol::Tcp).map(|p| p.port).collect(),
        };
        if self.http_path.is_some() && ports.is_empty() {
            return Err(ExpandError::HttpNeedsPort { target: pod.to_string() });
        }
        let dest = Destination { pod: Some(pod.clone()), node: Some(info.node.clone()), ip };
        self.backend_steps(&dest, &ports, None);
        self.node_steps(std::iter::once(info.node.clone()));
        self.routes_step(vec![ip]);
        Ok(())
    }

    fn node_target(&mut self, node: &NodeName, port: Option<Port>) -> Result<(), ExpandError> {
        let info = self.inv.node(node).ok_or_else(|| ExpandError::UnknownNode(node.clone()))?;
        let ip = self.pick(&info.ips).ok_or_else(|| ExpandError::UnknownNode(node.clone()))?;
        if self.http_path.is_some() && port.is_none() {
            return Err(ExpandError::HttpNeedsPort { target: format!("node/{node}") });
        }
        let dest = Destination { pod: None, node: Some(node.clone()), ip };
        self.backend_steps(&dest, &port.into_iter().collect::<Vec<_>>(), None);
        self.routes_step(vec![ip]);
        Ok(())
    }

    /// A known address is planned as what it is (a VIP as its service, a pod IP as the pod);
    /// anything else inside the scope as a plain address.
    fn address_target(&mut self, scope: &Scope, ip: IpAddr, port: Option<Port>) -> Result<(), ExpandError> {
        if !scope.contains(ip) {
            return Err(ExpandError::OutsideScope(ip));
        }
        let inv = self.inv;
        if let Some(port) = port
            && let Some(svc) = inv.services.iter().find(|s| s.cluster_ips.contains(&ip))
            && svc.ports.iter().any(|p| p.port == port)
        {
            return self.service_target(&svc.service_ref(), port, None);
        }
        if let Some(pod) = inv.pods.iter().find(|p| p.ips.contains(&ip)) {
            let ports: Vec<Port> = port.into_iter().collect();
            if self.http_path.is_some() && ports.is_empty() {
                return Err(ExpandError::HttpNeedsPort { target: ip.to_string() });
            }
            let dest = Destination { pod: Some(pod.pod_ref()), node: Some(pod.node.clone()), ip };
            self.backend_steps(&dest, &ports, None);
            self.node_steps(std::iter::once(pod.node.clone()));
            self.routes_step(vec![ip]);
            return Ok(());
        }
        if self.http_path.is_some() && port.is_none() {
            return Err(ExpandError::HttpNeedsPort { target: ip.to_string() });
        }
        let node = inv.nodes.iter().find(|n| n.ips.contains(&ip)).map(|n| n.name.clone());
        let dest = Destination { pod: None, node, ip };
        self.backend_steps(&dest, &port.into_iter().collect::<Vec<_>>(), None);
        self.routes_step(vec![ip]);
        Ok(())
    }

    /// A name the inventory knows as a service (`svc.ns`, `svc.ns.svc`, the full name) with a
    /// port is planned as the service, resolved by the name as given; any other name is
    /// resolved, then its answers probed (inside the scope only).
    fn dns_target(&mut self, name: &DnsName, port: Option<Port>) -> Result<(), ExpandError> {
        let inv = self.inv;
        let asked = name.as_str().trim_end_matches('.');
        let known = inv.services.iter().find(|s| {
            let short = format!("{}.{}", s.name, s.namespace);
            asked == short || asked == format!("{short}.svc") || asked == s.dns_name(&inv.cluster.domain)
        });
        if let (Some(svc), Some(port)) = (known, port)
            && svc.ports.iter().any(|p| p.port == port)
        {
            return self.service_target(&svc.service_ref(), port, Some(name));
        }
        if self.http_path.is_some() && port.is_none() {
            return Err(ExpandError::HttpNeedsPort { target: name.to_string() });
        }
        let fqdn = known.map(|s| s.dns_name(&inv.cluster.domain));
        let expect: Vec<IpAddr> = known.map(|s| s.cluster_ips.clone()).unwrap_or_default();
        let Some(resolve) = self.resolve_steps(name, fqdn.as_deref(), &expect) else {
            // A node source has no cluster resolv.conf to follow; the nameserver steps say
            // whether the name resolves.
            return Ok(());
        };
        let mut kinds = vec![(ProbeKind::Icmp, None)];
        if let Some(p) = port {
            kinds.push((ProbeKind::Tcp, Some(p)));
            if self.http_path.is_some() {
                kinds.push((ProbeKind::Http, Some(p)));
            }
        }
        for (kind, port) in kinds {
            let http_path = if kind == ProbeKind::Http { self.http_path.clone() } else { None };
            let what = match port {
                Some(p) => format!("{kind} to port {p} of"),
                None => format!("{kind} to"),
            };
            self.push(
                kind.as_str(),
                format!("{what} every address {name} resolves to (inside the cluster's ranges)"),
                StepAction::ProbeAnswers { resolve_step: resolve, kind, port, http_path },
                StepRole::Answers { kind },
            );
        }
        Ok(())
    }
}

fn nat_protocol(p: Protocol) -> NatProtocol {
    match p {
        Protocol::Tcp => NatProtocol::Tcp,
        Protocol::Udp => NatProtocol::Udp,
    }
}

#[cfg(test)]
mod tests;
