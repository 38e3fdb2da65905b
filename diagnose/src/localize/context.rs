//! What localization knows besides the matrix, looked up once per diagnosis: where pods and
//! IPs live (from the inventory), each service's ready backends, the cluster DNS service, and
//! the latest inspection of every node and pod with the lookups the rules need from them
//! (kube-proxy frontends, routes covering a prefix, sysctls), and the NetworkPolicies.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use netdiag_model::inspect::{InspectionReport, Link, NatProtocol, NatService, Route, RouteRule};
use netdiag_model::inventory::{Inventory, PodInfo, Protocol, ServiceInfo};
use netdiag_model::probe::Source;
use netdiag_model::{NodeName, PodRef, Port, ServiceRef};

use super::routing;
use crate::policy::PolicySet;

/// One ready backend of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backend {
    pub(crate) ip: IpAddr,
    pub(crate) pod: Option<PodRef>,
    pub(crate) node: Option<NodeName>,
}

/// A service and its ready backends.
#[derive(Debug, Clone)]
pub(crate) struct ServiceView<'a> {
    pub(crate) info: &'a ServiceInfo,
    pub(crate) backends: Vec<Backend>,
}

impl ServiceView<'_> {
    /// The target port behind service port `port` (TCP), or `port` itself when unknown.
    pub(crate) fn target_port(&self, port: Port) -> Port {
        self.info
            .ports
            .iter()
            .find(|p| p.port == port && p.protocol == Protocol::Tcp)
            .map_or(port, |p| p.target_port)
    }

    /// Whether the service's ClusterIP is one of the cluster nameservers (kube-dns).
    pub(crate) fn is_dns(&self, dns_ips: &[IpAddr]) -> bool {
        self.info.cluster_ips.iter().any(|ip| dns_ips.contains(ip))
    }
}

/// What the NAT rules of one node say about one frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NatLookup<'a> {
    /// No inspection of the node, or its NAT rules could not be read.
    Unknown,
    /// The node's rules hold no frontend for it.
    Missing { frontends: usize },
    /// A frontend that DNATs nowhere (kube-proxy's REJECT/DROP for "no endpoints").
    NoTargets,
    /// A frontend and its DNAT targets.
    Targets(&'a NatService),
}

/// How a node's routing table covers a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteLookup<'a> {
    /// No inspection of the node, or it reported no routes at all.
    Unknown,
    /// A route (not the default route) sends the prefix somewhere.
    Covered(&'a Route),
    /// Only a route without device or gateway (blackhole, unreachable) covers it.
    Blackhole(&'a Route),
    /// Nothing but, at most, the default route covers it.
    Missing,
    /// A policy-routing rule drops it before any table is read.
    Rule(&'a RouteRule),
}

/// The lookups, built once per diagnosis.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub(crate) inventory: &'a Inventory,
    pod_nodes: BTreeMap<PodRef, NodeName>,
    ip_owners: BTreeMap<IpAddr, (Option<PodRef>, NodeName)>,
    pod_cidrs: Vec<(IpNet, NodeName)>,
    pub(crate) services: BTreeMap<ServiceRef, ServiceView<'a>>,
    /// The services whose ClusterIP is a cluster nameserver (kube-dns).
    pub(crate) dns_services: Vec<ServiceRef>,
    pub(crate) node_reports: BTreeMap<NodeName, &'a InspectionReport>,
    pub(crate) pod_reports: BTreeMap<PodRef, (&'a NodeName, &'a InspectionReport)>,
    pods: HashMap<PodRef, &'a PodInfo>,
    /// The inventory's NetworkPolicies that pass the API's validation, with its namespaces.
    pub(crate) policies: PolicySet,
    /// The policies left out, each with why (the API server would have refused them).
    pub(crate) policy_errors: Vec<String>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        inventory: &'a Inventory,
        inspections: &'a BTreeMap<Source, (NodeName, InspectionReport)>,
    ) -> Self {
        let mut pod_nodes = BTreeMap::new();
        let mut ip_owners = BTreeMap::new();
        let mut pod_cidrs = Vec::new();
        for node in &inventory.nodes {
            for &ip in &node.ips {
                ip_owners.insert(ip, (None, node.name.clone()));
            }
            for cidr in &node.pod_cidrs {
                pod_cidrs.push((cidr.trunc(), node.name.clone()));
            }
        }
        for pod in &inventory.pods {
            pod_nodes.insert(pod.pod_ref(), pod.node.clone());
            for &ip in &pod.ips {
                ip_owners.insert(ip, (Some(pod.pod_ref()), pod.node.clone()));
            }
        }
        let mut services = BTreeMap::new();
        for info in &inventory.services {
            let backends = info
                .ready_endpoints()
                .map(|e| Backend {
                    ip: e.ip,
                    pod: e.pod.clone(),
                    node: e
                        .node
                        .clone()
                        .or_else(|| e.pod.as_ref().and_then(|p| pod_nodes.get(p).cloned()))
                        .or_else(|| ip_owners.get(&e.ip).map(|(_, n)| n.clone())),
                })
                .collect();
            services.insert(info.service_ref(), ServiceView { info, backends });
        }
        let dns_ips = &inventory.cluster.dns_ips;
        let dns_services =
            services.iter().filter(|(_, s)| s.is_dns(dns_ips)).map(|(r, _)| r.clone()).collect();
        let mut node_reports = BTreeMap::new();
        let mut pod_reports = BTreeMap::new();
        for (source, (node, report)) in inspections {
            match source {
                Source::Node(n) => {
                    node_reports.insert(n.clone(), report);
                }
                Source::Pod(p) => {
                    pod_reports.insert(p.clone(), (node, report));
                }
            }
        }
        let (policies, errors) = PolicySet::from_inventory(inventory);
        let policy_errors = errors.iter().map(ToString::to_string).collect();
        Context {
            inventory,
            pods: inventory.pods.iter().map(|p| (p.pod_ref(), p)).collect(),
            policies,
            policy_errors,
            pod_nodes,
            ip_owners,
            pod_cidrs,
            services,
            dns_services,
            node_reports,
            pod_reports,
        }
    }

    /// The node a pod runs on, from the inventory (or the node that inspected it).
    pub(crate) fn pod_info(&self, pod: &PodRef) -> Option<&'a PodInfo> {
        self.pods.get(pod).copied()
    }

    pub(crate) fn node_of_pod(&self, pod: &PodRef) -> Option<&NodeName> {
        self.pod_nodes.get(pod).or_else(|| self.pod_reports.get(pod).map(|(n, _)| *n))
    }

    /// The pod (if any) and node that own `ip`: exact addresses first, then pod CIDRs.
    pub(crate) fn owner_of_ip(&self, ip: IpAddr) -> Option<(Option<&PodRef>, &NodeName)> {
        if let Some((pod, node)) = self.ip_owners.get(&ip) {
            return Some((pod.as_ref(), node));
        }
        self.pod_cidrs.iter().find(|(p, _)| p.contains(&ip)).map(|(_, n)| (None, n))
    }

    /// A pod's IPs, for verdicts.
    pub(crate) fn pod_ips(&self, pod: &PodRef) -> Vec<IpAddr> {
        self.inventory.pod(pod).map(|p| p.ips.clone()).unwrap_or_default()
    }

    /// The service whose ClusterIP is `ip`.
    pub(crate) fn service_with_vip(&self, ip: IpAddr) -> Option<&ServiceView<'a>> {
        self.services.values().find(|s| s.info.cluster_ips.contains(&ip))
    }

    /// The service that owns NodePort `port`.
    pub(crate) fn service_with_node_port(&self, port: Port) -> Option<&ServiceView<'a>> {
        self.services.values().find(|s| s.info.ports.iter().any(|p| p.node_port == Some(port)))
    }

    /// The cluster DNS service (the first one, when several own nameserver IPs).
    pub(crate) fn dns_service(&self) -> Option<&ServiceView<'a>> {
        self.dns_services.first().and_then(|r| self.services.get(r))
    }

    /// The DNS service's name, or the nameserver IPs when the inventory has no such service.
    pub(crate) fn dns_name(&self) -> String {
        match self.dns_services.first() {
            Some(r) => r.to_string(),
            None => join(&self.inventory.cluster.dns_ips),
        }
    }

    /// The cluster resolver as a culprit: `10.96.0.10 (kube-system/kube-dns)`.
    pub(crate) fn dns_culprit(&self) -> String {
        let ips = join(&self.inventory.cluster.dns_ips);
        match self.dns_services.first() {
            Some(r) if !ips.is_empty() => format!("{ips} ({r})"),
            Some(r) => r.to_string(),
            None => ips,
        }
    }

    /// The nameservers the pods on `node` use: from their inspected resolv.conf, else the
    /// cluster's DNS IPs.
    pub(crate) fn resolvers_on(&self, node: &NodeName) -> Vec<IpAddr> {
        let mut out: BTreeSet<IpAddr> = BTreeSet::new();
        for (n, report) in self.pod_reports.values() {
            if *n == node
                && let Some(conf) = &report.resolv_conf
            {
                out.extend(conf.nameservers.iter().copied());
            }
        }
        if out.is_empty() {
            out.extend(self.inventory.cluster.dns_ips.iter().copied());
        }
        out.into_iter().collect()
    }

    /// A sysctl's value in an inspection.
    pub(crate) fn sysctl<'r>(report: &'r InspectionReport, key: &str) -> Option<&'r str> {
        report.sysctls.iter().find(|s| s.key.as_str() == key).map(|s| s.value.as_str().trim())
    }

    /// What `node`'s NAT rules hold for `vip:port/protocol` (ClusterIP frontends).
    pub(crate) fn nat_frontend(
        &self,
        node: &NodeName,
        vip: IpAddr,
        port: Port,
        protocol: NatProtocol,
    ) -> NatLookup<'a> {
        let Some(report) = self.node_reports.get(node).copied() else { return NatLookup::Unknown };
        if report.proxy_mode.is_none() && report.nat_services.is_empty() {
            return NatLookup::Unknown;
        }
        let found = report
            .nat_services
            .iter()
            .find(|s| !s.node_port && s.vip == Some(vip) && s.port == port && s.protocol == protocol);
        match found {
            None => NatLookup::Missing { frontends: report.nat_services.len() },
            Some(s) if s.targets.is_empty() => NatLookup::NoTargets,
            Some(s) => NatLookup::Targets(s),
        }
    }

    /// What `node`'s NAT rules hold for NodePort `port` (TCP).
    pub(crate) fn nat_node_port(&self, node: &NodeName, port: Port) -> NatLookup<'a> {
        let Some(report) = self.node_reports.get(node).copied() else { return NatLookup::Unknown };
        if report.proxy_mode.is_none() && report.nat_services.is_empty() {
            return NatLookup::Unknown;
        }
        let found = report
            .nat_services
            .iter()
            .find(|s| s.node_port && s.port == port && s.protocol == NatProtocol::Tcp);
        match found {
            None => NatLookup::Missing { frontends: report.nat_services.len() },
            Some(s) if s.targets.is_empty() => NatLookup::NoTargets,
            Some(s) => NatLookup::Targets(s),
        }
    }

    /// How `node`'s routing covers `prefix` for what its own pods send there: the rules (a
    /// dropping one, or the table they send it to), then that table.
    pub(crate) fn route_to(&self, node: &NodeName, prefix: IpNet) -> RouteLookup<'a> {
        let Some(report) = self.node_reports.get(node).copied() else { return RouteLookup::Unknown };
        if report.routes.is_empty() {
            return RouteLookup::Unknown;
        }
        let own_pods =
            self.pod_cidrs_of(node).into_iter().find(|c| c.addr().is_ipv6() == prefix.addr().is_ipv6());
        let table = match routing::table_for(report, prefix, own_pods.map(|c| c.network())) {
            Ok(t) => t,
            Err(rule) => return RouteLookup::Rule(rule),
        };
        let covering = report.routes.iter().filter(|r| {
            let dest = r.destination.trunc();
            r.table == table && dest.prefix_len() > 0 && dest.contains(&prefix)
        });
        let mut blackhole = None;
        for route in covering {
            if route.device.is_some() || route.gateway.is_some() {
                return RouteLookup::Covered(route);
            }
            blackhole.get_or_insert(route);
        }
        match blackhole {
            Some(r) => RouteLookup::Blackhole(r),
            None => RouteLookup::Missing,
        }
    }

    /// What `pod`'s own routing table lacks (last inspection): the addresses among other
    /// nodes' pods and its own node that no route with a device or gateway covers (a default
    /// route covers all), with the table as read. None without an inspection, with a link
    /// down (its routes went with it), or when every such address is covered.
    pub(crate) fn pod_route_gap(&self, pod: &PodRef) -> Option<(Vec<IpAddr>, Vec<String>)> {
        let (node, report) = self.pod_reports.get(pod).copied()?;
        // A link down takes its routes with it: then the link is the cause, not the table.
        let mut links = report.links.iter().filter(|l| l.name.as_str() != "lo").peekable();
        links.peek()?;
        if !links.all(|l| l.up) {
            return None;
        }
        let own_ips = self.pod_ips(pod);
        let v6 = own_ips.first().is_some_and(IpAddr::is_ipv6);
        let mut targets: Vec<IpAddr> = Vec::new();
        if let Some(n) = self.inventory.node(node) {
            targets.extend(n.ips.iter().copied().filter(|ip| ip.is_ipv6() == v6).take(1));
        }
        if let Some(other) = self
            .inventory
            .pods
            .iter()
            .filter(|p| &p.node != node)
            .find_map(|p| p.ips.iter().copied().find(|ip| ip.is_ipv6() == v6))
        {
            targets.push(other);
        }
        let covered = |ip: &IpAddr| {
            report.routes.iter().any(|r| {
                (r.device.is_some() || r.gateway.is_some()) && r.table == 254 && r.destination.contains(ip)
            })
        };
        let missing: Vec<IpAddr> = targets.into_iter().filter(|ip| !covered(ip)).collect();
        if missing.is_empty() {
            return None;
        }
        let table = report.routes.iter().filter(|r| r.table == 254).map(route_line).collect();
        Some((missing, table))
    }

    /// The links of `node`'s last inspection that hold one of its addresses: its uplink.
    pub(crate) fn node_uplinks(&self, node: &NodeName) -> Vec<&'a Link> {
        match (self.node_reports.get(node), self.inventory.node(node)) {
            (Some(report), Some(info)) => links_holding(report, &info.ips),
            _ => Vec::new(),
        }
    }

    /// The links of `pod`'s last inspection that hold one of its addresses.
    pub(crate) fn pod_uplinks(&self, pod: &PodRef) -> Vec<&'a Link> {
        match self.pod_reports.get(pod) {
            Some((_, report)) => links_holding(report, &self.pod_ips(pod)),
            None => Vec::new(),
        }
    }

    /// The latest inspection of a node's or a pod's namespace.
    pub(crate) fn report_of(&self, source: &Source) -> Option<&'a InspectionReport> {
        match source {
            Source::Node(n) => self.node_reports.get(n).copied(),
            Source::Pod(p) => self.pod_reports.get(p).map(|(_, r)| *r),
        }
    }

    /// Every inspected namespace with its latest inspection, nodes first.
    pub(crate) fn reports(&self) -> impl Iterator<Item = (Source, &'a InspectionReport)> + '_ {
        let nodes = self.node_reports.iter().map(|(n, r)| (Source::Node(n.clone()), *r));
        nodes.chain(self.pod_reports.iter().map(|(p, (_, r))| (Source::Pod(p.clone()), *r)))
    }

    /// The pod's addresses (inventory) that no link of its last inspection holds: taken off
    /// its interface. Empty without an inspection, without links read, or with a link down
    /// (the link is then the cause).
    pub(crate) fn pod_addresses_unheld(&self, pod: &PodRef) -> Vec<IpAddr> {
        let Some((_, report)) = self.pod_reports.get(pod) else { return Vec::new() };
        let links: Vec<_> = report.links.iter().filter(|l| l.name.as_str() != "lo").collect();
        if links.is_empty() || links.iter().any(|l| !l.up) {
            return Vec::new();
        }
        self.pod_ips(pod)
            .into_iter()
            .filter(|ip| !links.iter().any(|l| l.addresses.iter().any(|n| n.addr() == *ip)))
            .collect()
    }

    /// The node whose pod CIDR holds `ip`.
    pub(crate) fn pod_cidr_node(&self, ip: IpAddr) -> Option<&NodeName> {
        self.pod_cidrs.iter().find(|(p, _)| p.contains(&ip)).map(|(_, n)| n)
    }

    /// The pod CIDRs of `node`.
    pub(crate) fn pod_cidrs_of(&self, node: &NodeName) -> Vec<IpNet> {
        self.pod_cidrs.iter().filter(|(_, n)| n == node).map(|(p, _)| *p).collect()
    }

    /// The routes of `node` towards other nodes' pod CIDRs, as `ip route` prints them.
    pub(crate) fn pod_routes_of(&self, node: &NodeName) -> Vec<String> {
        let Some(report) = self.node_reports.get(node) else { return Vec::new() };
        report
            .routes
            .iter()
            .filter(|r| {
                let dest = r.destination.trunc();
                self.pod_cidrs.iter().any(|(p, n)| n != node && dest.prefix_len() > 0 && dest.contains(p))
            })
            .map(route_line)
            .collect()
    }
}

/// The links in `report` holding one of `ips`.
fn links_holding<'r>(report: &'r InspectionReport, ips: &[IpAddr]) -> Vec<&'r Link> {
    report.links.iter().filter(|l| l.addresses.iter().any(|ad| ips.contains(&ad.addr()))).collect()
}

/// A route as `ip route` prints it: `10.244.2.0/24 via 172.29.0.12 dev eth0`.
pub(crate) fn route_line(r: &Route) -> String {
    let mut s = r.destination.to_string();
    if r.device.is_none() && r.gateway.is_none() {
        s = format!("blackhole {s}");
    }
    if let Some(gw) = r.gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(dev) = &r.device {
        s.push_str(&format!(" dev {dev}"));
    }
    if r.table != 254 && r.table != 0 {
        s.push_str(&format!(" table {}", r.table));
    }
    if r.metric != 0 {
        s.push_str(&format!(" metric {}", r.metric));
    }
    s
}

/// `a, b and c`.
pub(crate) fn join<T: fmt::Display>(items: &[T]) -> String {
    let words: Vec<String> = items.iter().map(ToString::to_string).collect();
    match words.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
