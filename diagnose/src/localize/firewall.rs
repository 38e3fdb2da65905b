//! The nodes' own firewalls, read from their inspections: a drop or reject rule that matches
//! failing paths and no working one is a cause on record, not a guess. It runs after every
//! other layer, over what they claimed:
//!
//! - a named verdict that already blames the rule's node (the node cut off, a pair with it, its
//!   forwarding) keeps its verdict and gains the rule as evidence;
//! - findings whose every path the rule matches — a port "dropped" on one pod, a pod
//!   "unreachable from node-1", the node's sources "unreachable", the residue — were the rule's
//!   symptoms scattered over components: they become one `firewall-drop` finding naming the
//!   node and quoting the rule;
//! - a finding the rule explains in part gains it as evidence.
//!
//! A packet is matched on its way out — the protocol of the probe, the source's and
//! destination's addresses of the cell's family, the destination port, and the interfaces it
//! crosses (the node's uplink — the link holding its address — or a pod's side) — and on a
//! direct path its reply on the way back, which only a stateless rule meets (conntrack calls
//! it established).
//!
//! A chain's DROP policy matches everything at its hook but drops only what no rule accepts,
//! and the usual stateful accept lets established flows through: a ping whose conntrack entry
//! stays fresh keeps working, so working ICMP paths do not clear a policy. A policy is
//! confirmed only on a node that is alive (some path from it works): a dead node's last
//! inspection is no cause. NodePort traffic kube-proxy marked for masquerading is accepted by
//! its `KUBE-FORWARD` chain, so a policy does not meet it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use netdiag_model::dns::DnsTransport;
use netdiag_model::inspect::{FilterDrop, FilterHook, FilterProtocol};
use netdiag_model::inventory::TrafficPolicy;
use netdiag_model::probe::{ProbeKind, Source};
use netdiag_model::{CellStatus, CulpritKind, NodeName, PodRef, Port, Severity};

use super::evidence::{Analysis, Obs};
use super::hooks::hooks;
use super::report::{Draft, ids};
use crate::matrix::Destination;
use crate::matrix::key::{IpFamily, NodeAddr};

/// One packet of a probe, as a node's firewall hook sees it (and its NAT, [`super::nat_rules`]).
#[derive(Debug)]
pub(super) struct Packet {
    pub(super) protocol: FilterProtocol,
    pub(super) source: Option<IpAddr>,
    pub(super) destination: Option<IpAddr>,
    pub(super) port: Option<Port>,
    /// The uplink, or a pod's side (None: any name but the uplink's).
    pub(super) in_uplink: bool,
    pub(super) out_uplink: bool,
    /// Marked by kube-proxy for masquerading (NodePort traffic after its DNAT), which its
    /// `KUBE-FORWARD` chain accepts before any chain policy is reached.
    marked: bool,
    /// The reply of an answered request: conntrack calls it established, so only a rule that
    /// meets every packet (no stateful accept before it, not a chain policy) drops it.
    pub(super) reply: bool,
    /// Where the packet was sent before kube-proxy's DNAT on this node (a VIP or a NodePort,
    /// and its port): what the NAT rules before kube-proxy's meet in the hook before routing.
    pub(super) pre_dnat: Option<(Option<IpAddr>, Option<Port>)>,
}

impl Packet {
    /// A request from `source` to `destination`, crossing the uplink `(in, out)`.
    pub(super) fn request(
        protocol: FilterProtocol,
        (source, destination): (Option<IpAddr>, Option<IpAddr>),
        port: Option<Port>,
        (in_uplink, out_uplink): (bool, bool),
    ) -> Self {
        Packet {
            protocol,
            source,
            destination,
            port,
            in_uplink,
            out_uplink,
            marked: false,
            reply: false,
            pre_dnat: None,
        }
    }

    /// The reply to a request from `source` to `destination` (the addresses swapped, the
    /// client's port, which no rule names), crossing the uplink `(in, out)`.
    fn reply_to(
        protocol: FilterProtocol,
        (source, destination): (Option<IpAddr>, Option<IpAddr>),
        uplink: (bool, bool),
    ) -> Self {
        Packet { reply: true, ..Packet::request(protocol, (destination, source), None, uplink) }
    }
}

/// The hooks a cell's request passes, node by node, with the packet each sees: one route for
/// a direct path, one per backend for a service VIP (DNAT happens before the filter hooks).
pub(super) fn routes(
    a: &Analysis<'_>,
    ips: &Addresses<'_>,
    o: &Obs,
) -> Vec<Vec<(NodeName, FilterHook, Packet)>> {
    let protocol = match (o.kind, &o.dest) {
        (ProbeKind::Icmp | ProbeKind::Mtu, _) => FilterProtocol::Icmp,
        (ProbeKind::Tcp | ProbeKind::Http, _) => FilterProtocol::Tcp,
        (ProbeKind::Dns, Destination::Dns { transport: DnsTransport::Tcp, .. }) => FilterProtocol::Tcp,
        (ProbeKind::Dns, _) => FilterProtocol::Udp,
    };
    let src_ip = |family| match &o.source {
        Source::Pod(p) => ips.pod(p, family),
        Source::Node(n) => ips.node(n, family),
    };
    let direct = |family: IpFamily, dst_ip: Option<IpAddr>, port: Option<Port>| {
        let Some(dst) = o.dst_node.as_ref() else { return Vec::new() };
        let mut route = hops(o, protocol, src_ip(family), dst_ip, port, dst, o.dst_pod.is_some());
        route.extend(reply_hops(o, protocol, (src_ip(family), dst_ip), (dst, o.dst_pod.as_ref())));
        vec![route]
    };
    match &o.dest {
        Destination::Pod { pod, port, family } => direct(*family, ips.pod(pod, *family), *port),
        Destination::Endpoint { pod, port, family, .. } => {
            direct(*family, ips.pod(pod, *family), Some(*port))
        }
        Destination::Node { node, port, family } => direct(*family, ips.node(node, *family), *port),
        Destination::Address { ip, port } => direct(IpFamily::of(*ip), Some(*ip), *port),
        Destination::NodePort { node, port } => {
            let (family, ip) = match node {
                NodeAddr::Node(name, family) => (*family, ips.node(name, *family)),
                NodeAddr::Ip(ip) => (IpFamily::of(*ip), Some(*ip)),
            };
            let (Some(svc), Some(via)) = (a.service_of(o), o.dst_node.as_ref()) else { return Vec::new() };
            let local = svc.info.external_traffic_policy == TrafficPolicy::Local;
            let target = a.backend_port(o, svc);
            let mut out = Vec::new();
            for b in svc.backends.iter().filter(|b| IpFamily::of(b.ip) == family) {
                let Some(b_node) = b.node.as_ref() else { continue };
                if local && b_node != via {
                    continue;
                }
                out.push(node_port_route(
                    o,
                    protocol,
                    src_ip(family),
                    (ip, *port),
                    via,
                    (b.ip, target),
                    b_node,
                ));
            }
            out
        }
        Destination::Service { .. } | Destination::Dns { .. } => {
            let family = &match &o.dest {
                Destination::Service { family, .. } => *family,
                Destination::Dns { nameserver: Some(ip), .. } => IpFamily::of(*ip),
                _ => IpFamily::V4,
            };
            let Some(svc) = a.service_of(o) else { return Vec::new() };
            let port = a.backend_port(o, svc);
            svc.backends
                .iter()
                .filter(|b| IpFamily::of(b.ip) == *family)
                .filter_map(|b| {
                    let b_node = b.node.as_ref()?;
                    let mut route =
                        hops(o, protocol, src_ip(*family), Some(b.ip), port, b_node, b.pod.is_some());
                    // The source's node meets the VIP before kube-proxy's DNAT.
                    if let Some((_, _, first)) = route.first_mut() {
                        first.pre_dnat = Some(vip_of(a, o, protocol));
                    }
                    // The backend's reply keeps its own address until the client's node
                    // translates it back on the way out (POSTROUTING): its filter sees it.
                    route.extend(reply_hops(
                        o,
                        protocol,
                        (src_ip(*family), Some(b.ip)),
                        (b_node, b.pod.as_ref()),
                    ));
                    Some(route)
                })
                .collect()
        }
    }
}

/// A NodePort request to `nodeport` on `via`, sent on to a backend on `b_node`: the source's
/// hooks toward `via`, `via` forwarding it after its DNAT, then (with the source masqueraded to
/// `via`'s address) the backend's node forwarding it in.
fn node_port_route(
    o: &Obs,
    protocol: FilterProtocol,
    source: Option<IpAddr>,
    nodeport: (Option<IpAddr>, Port),
    via: &NodeName,
    backend: (IpAddr, Option<Port>),
    b_node: &NodeName,
) -> Vec<(NodeName, FilterHook, Packet)> {
    let port = |p: Option<Port>| if protocol == FilterProtocol::Icmp { None } else { p };
    let cross = o.src_node() != via;
    let packet = |source, destination, port, in_uplink, out_uplink| Packet {
        marked: true,
        ..Packet::request(protocol, (source, destination), port, (in_uplink, out_uplink))
    };
    let mut out = Vec::new();
    for (i, (node, hook)) in hooks(&o.source, o.src_node(), Some((via, true))).into_iter().enumerate() {
        // Before `via`'s DNAT the packet is for the node port; from `via` on, for the backend.
        let p = if i == 0 && cross {
            Packet { marked: false, ..packet(source, nodeport.0, port(Some(nodeport.1)), false, true) }
        } else {
            // `via` meets the node port before kube-proxy's DNAT.
            let pre_dnat = Some((nodeport.0, port(Some(nodeport.1))));
            Packet { pre_dnat, ..packet(source, Some(backend.0), port(backend.1), i > 0, b_node != via) }
        };
        out.push((node, hook, p));
    }
    // The mark stays on `via` (its POSTROUTING masquerades and clears it; marks do not cross
    // the wire): the backend's node sees a plain forwarded packet.
    if b_node != via {
        let p = packet(nodeport.0, Some(backend.0), port(backend.1), true, false);
        out.push((b_node.clone(), FilterHook::Forward, Packet { marked: false, ..p }));
    }
    out
}

/// The hooks from the cell's source to a destination on `dst` (a pod there, or the node),
/// with the packet each sees ([`hooks`]).
fn hops(
    o: &Obs,
    protocol: FilterProtocol,
    source: Option<IpAddr>,
    destination: Option<IpAddr>,
    port: Option<Port>,
    dst: &NodeName,
    to_pod: bool,
) -> Vec<(NodeName, FilterHook, Packet)> {
    let port = if protocol == FilterProtocol::Icmp { None } else { port };
    let cross = o.src_node() != dst;
    hooks(&o.source, o.src_node(), Some((dst, to_pod)))
        .into_iter()
        .enumerate()
        .map(|(i, (node, hook))| {
            // Out through the uplink from the source's node when it goes elsewhere; in through
            // the uplink on the destination's.
            let uplink = if i == 0 { (false, cross) } else { (true, false) };
            (node, hook, Packet::request(protocol, (source, destination), port, uplink))
        })
        .collect()
}

/// The hooks a cell's reply meets on its way back from `dst` (a pod there, or the node
/// itself) to the source: `(source, destination)` are the request's addresses (after any
/// DNAT). The reply's port is the client's, which no rule names.
fn reply_hops(
    o: &Obs,
    protocol: FilterProtocol,
    (source, destination): (Option<IpAddr>, Option<IpAddr>),
    (dst, dst_pod): (&NodeName, Option<&PodRef>),
) -> Vec<(NodeName, FilterHook, Packet)> {
    let from = match dst_pod {
        Some(p) => Source::Pod(p.clone()),
        None => Source::Node(dst.clone()),
    };
    let cross = o.src_node() != dst;
    hooks(&from, dst, Some((o.src_node(), o.src_pod().is_some())))
        .into_iter()
        .enumerate()
        .map(|(i, (node, hook))| {
            let uplink = if i == 0 { (false, cross) } else { (true, false) };
            (node, hook, Packet::reply_to(protocol, (source, destination), uplink))
        })
        .collect()
}

/// Where a VIP or DNS cell's packet is sent before kube-proxy's DNAT: the VIP (or the
/// nameserver) and the service's port.
fn vip_of(a: &Analysis<'_>, o: &Obs, protocol: FilterProtocol) -> (Option<IpAddr>, Option<Port>) {
    let (vip, port) = match &o.dest {
        Destination::Service { service, port, family } => {
            let ip = a
                .ctx
                .services
                .get(service)
                .and_then(|s| s.info.cluster_ips.iter().copied().find(|ip| IpFamily::of(*ip) == *family));
            (ip, Some(*port))
        }
        Destination::Dns { nameserver, .. } => {
            let ip = nameserver.or_else(|| a.ctx.inventory.cluster.dns_ips.first().copied());
            (ip, Port::new(53).ok())
        }
        _ => (None, None),
    };
    (vip, if protocol == FilterProtocol::Icmp { None } else { port })
}

/// Pods' and nodes' addresses, looked up once per diagnosis.
pub(super) struct Addresses<'i> {
    pods: HashMap<PodRef, &'i [IpAddr]>,
    nodes: HashMap<&'i NodeName, &'i [IpAddr]>,
}

impl<'i> Addresses<'i> {
    pub(super) fn new(inventory: &'i netdiag_model::inventory::Inventory) -> Self {
        Addresses {
            pods: inventory.pods.iter().map(|p| (p.pod_ref(), p.ips.as_slice())).collect(),
            nodes: inventory.nodes.iter().map(|n| (&n.name, n.ips.as_slice())).collect(),
        }
    }

    fn pod(&self, pod: &PodRef, family: IpFamily) -> Option<IpAddr> {
        self.pods.get(pod)?.iter().copied().find(|ip| IpFamily::of(*ip) == family)
    }

    fn node(&self, node: &NodeName, family: IpFamily) -> Option<IpAddr> {
        self.nodes.get(node)?.iter().copied().find(|ip| IpFamily::of(*ip) == family)
    }
}

/// The name of `node`'s uplink: the link holding one of its addresses.
pub(super) fn uplink(a: &Analysis<'_>, node: &NodeName) -> Option<String> {
    a.ctx.node_uplinks(node).first().map(|l| l.name.as_str().to_owned())
}

fn matches(d: &FilterDrop, p: &Packet, uplink: Option<&str>) -> bool {
    if p.reply && (d.new_only || d.policy) {
        return false;
    }
    let iface = |pattern: &Option<netdiag_model::Text<64>>, on_uplink: bool| match pattern {
        None => true,
        Some(pat) => match uplink {
            Some(up) if on_uplink => FilterDrop::interface_matches(pat.as_str(), up),
            Some(up) => !FilterDrop::interface_matches(pat.as_str(), up),
            // Which interface is which is unknown: not matched.
            None => false,
        },
    };
    let addr = |net: &Option<ipnet::IpNet>, ip: Option<IpAddr>| match net {
        None => true,
        Some(net) => ip.is_some_and(|ip| net.contains(&ip)),
    };
    d.protocol.is_none_or(|pr| pr == p.protocol)
        && addr(&d.source, p.source)
        && addr(&d.destination, p.destination)
        && (d.destination_ports.is_empty()
            || p.port.is_some_and(|port| d.destination_ports.iter().any(|r| r.contains(port))))
        && iface(&d.in_interface, p.in_uplink)
        && iface(&d.out_interface, p.out_uplink)
}

/// Whose firewall a rule is: a node's, or a pod's own (its namespace's filter table).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Owner {
    Node(NodeName),
    Pod(PodRef),
}

impl Owner {
    pub(super) fn report<'r>(&self, a: &Analysis<'r>) -> Option<&'r netdiag_model::InspectionReport> {
        match self {
            Owner::Node(n) => a.ctx.node_reports.get(n).copied(),
            Owner::Pod(p) => a.ctx.pod_reports.get(p).map(|(_, r)| *r),
        }
    }

    fn rule<'r>(&self, a: &Analysis<'r>, j: usize) -> Option<&'r FilterDrop> {
        self.report(a)?.filter_drops.get(j)
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Node(n) => write!(f, "node {n}"),
            Owner::Pod(p) => write!(f, "pod {p}"),
        }
    }
}

/// The interface a pod's packets cross: the link holding its address.
pub(super) fn pod_uplink(a: &Analysis<'_>, pod: &PodRef) -> Option<String> {
    a.ctx.pod_uplinks(pod).first().map(|l| l.name.as_str().to_owned())
}

/// The pod hooks a direct cell's request meets — the source pod's OUTPUT, the destination
/// pod's INPUT (its own namespace's filter table) — and its reply, the other way, each with
/// the packet it sees there.
pub(super) fn pod_hops(
    ips: &Addresses<'_>,
    o: &Obs,
    protocol: FilterProtocol,
) -> Vec<(PodRef, FilterHook, Packet)> {
    let family = match &o.dest {
        Destination::Pod { family, .. } | Destination::Endpoint { family, .. } => *family,
        _ => return Vec::new(),
    };
    let Some(dst) = o.dst_pod.as_ref() else { return Vec::new() };
    let source = match &o.source {
        Source::Pod(p) => ips.pod(p, family),
        Source::Node(n) => ips.node(n, family),
    };
    let destination = ips.pod(dst, family);
    let port = if protocol == FilterProtocol::Icmp { None } else { o.dst_port };
    let packet = |uplink| Packet::request(protocol, (source, destination), port, uplink);
    let reply = |uplink| Packet::reply_to(protocol, (source, destination), uplink);
    let mut out = Vec::new();
    if let Some(src) = o.src_pod() {
        out.push((src.clone(), FilterHook::Output, packet((false, true))));
        out.push((src.clone(), FilterHook::Input, reply((true, false))));
    }
    out.push((dst.clone(), FilterHook::Input, packet((true, false))));
    out.push((dst.clone(), FilterHook::Output, reply((false, true))));
    out
}

/// The backend pod's own hooks on a VIP route (its request's destination after DNAT): its
/// INPUT for the request, its OUTPUT for the reply. The client pod's OUTPUT sees the VIP, not
/// the backend, and is left out.
pub(super) fn backend_pod_hops(
    a: &Analysis<'_>,
    route: &[(NodeName, FilterHook, Packet)],
) -> Vec<(PodRef, FilterHook, Packet)> {
    let Some((_, _, request)) = route.iter().find(|(_, _, p)| !p.reply) else { return Vec::new() };
    let Some(backend) = request.destination else { return Vec::new() };
    let Some((Some(pod), _)) = a.ctx.owner_of_ip(backend) else { return Vec::new() };
    let ends = (request.source, request.destination);
    vec![
        (
            pod.clone(),
            FilterHook::Input,
            Packet::request(request.protocol, ends, request.port, (true, false)),
        ),
        (pod.clone(), FilterHook::Output, Packet::reply_to(request.protocol, ends, (false, true))),
    ]
}

/// The client pod's own OUTPUT on a VIP or DNS cell: its packet is still for the VIP (or the
/// nameserver) and the service's port, since the DNAT happens on the node.
pub(super) fn client_pod_hop(
    a: &Analysis<'_>,
    o: &Obs,
    protocol: FilterProtocol,
) -> Vec<(PodRef, FilterHook, Packet)> {
    let Some(pod) = o.src_pod() else { return Vec::new() };
    if !matches!(o.dest, Destination::Service { .. } | Destination::Dns { .. }) {
        return Vec::new();
    }
    let (Some(vip), port) = vip_of(a, o, protocol) else { return Vec::new() };
    let source = a.ctx.pod_ips(pod).into_iter().find(|ip| ip.is_ipv4() == vip.is_ipv4());
    vec![(
        pod.clone(),
        FilterHook::Output,
        Packet::request(protocol, (source, Some(vip)), port, (false, true)),
    )]
}

/// A drop rule on a node (or in a pod) and the bad cells it matches, when it matches no
/// working one.
struct Confirmed<'r> {
    owner: Owner,
    rule: &'r FilterDrop,
    bad: BTreeSet<usize>,
    /// Cells still ok but failing part of the time through it (a VIP whose backend behind the
    /// rule is picked now and then).
    soft: BTreeSet<usize>,
}

/// What one rule matches: bad cells, troubled ok cells, and whether a working cell.
#[derive(Default)]
struct Matched {
    bad: BTreeSet<usize>,
    soft: BTreeSet<usize>,
    working: bool,
}

/// Whether a working path of `protocol` that meets `d` shows `d` does not stop it.
fn clears(d: &FilterDrop, protocol: FilterProtocol) -> bool {
    !((d.policy || d.new_only) && protocol == FilterProtocol::Icmp)
}

fn confirmed<'r>(a: &Analysis<'r>) -> Vec<Confirmed<'r>> {
    let mut by_rule: BTreeMap<(Owner, usize), Matched> = BTreeMap::new();
    let guarded: BTreeSet<&NodeName> =
        a.ctx.node_reports.iter().filter(|(_, r)| !r.filter_drops.is_empty()).map(|(n, _)| n).collect();
    let guarded_pods: BTreeMap<&PodRef, Option<String>> = a
        .ctx
        .pod_reports
        .iter()
        .filter(|(_, (_, r))| !r.filter_drops.is_empty())
        .map(|(p, _)| (p, pod_uplink(a, p)))
        .collect();
    if guarded.is_empty() && guarded_pods.is_empty() {
        return Vec::new();
    }
    let uplinks: BTreeMap<&NodeName, Option<String>> = guarded.iter().map(|n| (*n, uplink(a, n))).collect();
    let mut alive_pods: BTreeSet<&PodRef> = BTreeSet::new();
    let ips = Addresses::new(a.ctx.inventory);
    let mut alive: BTreeSet<&NodeName> = BTreeSet::new();
    for (i, o) in a.obs.iter().enumerate() {
        let bad = o.is_bad();
        let working = o.stats.status == CellStatus::Ok
            && o.stats.since_repair.successes > 0
            && !o.stats.since_repair.troubled();
        if working {
            alive.insert(o.src_node());
            if let Some(p) = o.src_pod() {
                alive_pods.insert(p);
            }
        }
        let soft = o.stats.status == CellStatus::Ok && o.stats.since_repair.troubled();
        if !bad && !working && !soft {
            continue;
        }
        // Only paths that touch a node with such rules (a VIP's backends may sit anywhere),
        // or a pod with its own.
        let touches_pod = o.src_pod().is_some_and(|p| guarded_pods.contains_key(p))
            || o.dst_pod.as_ref().is_some_and(|p| guarded_pods.contains_key(p));
        if !guarded.contains(o.src_node())
            && o.dst_node.as_ref().is_none_or(|d| !guarded.contains(d))
            && a.service_of(o).is_none()
            && !touches_pod
        {
            continue;
        }
        let routes = routes(a, &ips, o);
        let Some(protocol) = routes.iter().flatten().map(|(_, _, p)| p.protocol).next() else { continue };
        // A rule explains the cell when every route (every backend of a VIP) meets it; a cell
        // that fails part of the time, when some route does (the backends behind that rule).
        // (A working cell clears only what every route meets.)
        let partial = routes.len() > 1
            && !working
            && (soft || o.stats.status == CellStatus::Degraded || o.stats.since_repair.successes > 0);
        // The pods' own tables every route shares: the ends of a direct path, the client of a
        // VIP (it sees the VIP); a VIP's backend is per route.
        let behind_vip = matches!(o.dest, Destination::Service { .. } | Destination::Dns { .. });
        let mut shared_pods = if touches_pod { pod_hops(&ips, o, protocol) } else { Vec::new() };
        if behind_vip && !guarded_pods.is_empty() {
            shared_pods.extend(client_pod_hop(a, o, protocol));
        }
        let mut met: Option<BTreeSet<(Owner, usize)>> = None;
        for route in &routes {
            let mut here = BTreeSet::new();
            for (node, hook, packet) in route {
                let Some(report) = a.ctx.node_reports.get(node) else { continue };
                let up = uplinks.get(node).cloned().flatten();
                for (j, d) in report.filter_drops.iter().enumerate() {
                    // kube-proxy's KUBE-FORWARD accepts marked packets in iptables' FORWARD
                    // chain, before its policy; an nftables base chain of its own still sees them.
                    let accepted_before = d.policy && packet.marked && !d.from_nftables();
                    if d.hook == *hook && matches(d, packet, up.as_deref()) && !accepted_before {
                        here.insert((Owner::Node(node.clone()), j));
                    }
                }
            }
            let backend =
                if behind_vip && !guarded_pods.is_empty() { backend_pod_hops(a, route) } else { Vec::new() };
            for (pod, hook, packet) in shared_pods.iter().chain(&backend) {
                let Some(up) = guarded_pods.get(pod) else { continue };
                let Some((_, report)) = a.ctx.pod_reports.get(pod) else { continue };
                for (j, d) in report.filter_drops.iter().enumerate() {
                    if d.hook == *hook && matches(d, packet, up.as_deref()) {
                        here.insert((Owner::Pod(pod.clone()), j));
                    }
                }
            }
            met = Some(match met {
                None => here,
                Some(m) if partial => m.union(&here).cloned().collect(),
                Some(m) => m.intersection(&here).cloned().collect(),
            });
        }
        for (owner, j) in met.unwrap_or_default() {
            let Some(rule) = owner.rule(a, j) else { continue };
            if working && !clears(rule, protocol) {
                continue;
            }
            let e = by_rule.entry((owner, j)).or_default();
            if bad {
                e.bad.insert(i);
            } else if soft {
                e.soft.insert(i);
            } else {
                e.working = true;
            }
        }
    }
    by_rule
        .into_iter()
        .filter(|(_, m)| !m.bad.is_empty() && !m.working)
        .filter_map(|((owner, j), m)| {
            let rule = owner.rule(a, j)?;
            let live = match &owner {
                Owner::Node(n) => alive.contains(n),
                Owner::Pod(p) => alive_pods.contains(p),
            };
            (!rule.policy || live).then_some(Confirmed { owner, rule, bad: m.bad, soft: m.soft })
        })
        .collect()
}

/// Whether the draft is a named verdict that already blames `node` (the node, or a pair with
/// it): a cover-layer symptom on the node (its sources "unreachable") is not one.
fn blames(d: &Draft, owner: &Owner) -> bool {
    // "Link or route between the two" is what a rule on one of them looks like from outside.
    if !ids::ALL.contains(&d.id.as_ref()) || d.id == ids::NODE_PAIR_BROKEN {
        return false;
    }
    let node = match owner {
        Owner::Node(n) => n,
        Owner::Pod(p) => {
            let name = p.to_string();
            // A port "refused" or "dropped" on the pod is what its own rule does to that port:
            // the rule is the cause ("nothing listens" would send the reader to the app).
            return match d.culprit.0 {
                CulpritKind::Pod => d.culprit.1 == name,
                _ => false,
            };
        }
    };
    match d.culprit.0 {
        CulpritKind::Node => d.culprit.1 == node.as_str(),
        CulpritKind::NodePair => d.culprit.1.split(['↔', '→']).any(|n| n == node.as_str()),
        _ => false,
    }
}

fn rule_line(owner: &Owner, d: &FilterDrop) -> String {
    let verb = if d.reject { "rejects" } else { "drops" };
    format!("{owner}'s firewall {verb} these paths: {}", d.rule)
}

/// A rule on record that explains failing cells: whose it is, the cells, the evidence line a
/// finding it explains in part gains, and its own finding when it takes findings over.
pub(super) struct Cause<'f> {
    pub(super) owner: Owner,
    pub(super) bad: BTreeSet<usize>,
    pub(super) soft: BTreeSet<usize>,
    pub(super) line: String,
    /// The rule's finding, from the failing cells it takes over and what they read as without
    /// it (`id [culprit]` of each finding absorbed); its affected paths are added after.
    pub(super) finding: FindingOf<'f>,
}

/// Builds a cause's finding from the cells it takes over and what they read as without it.
pub(super) type FindingOf<'f> = Box<dyn FnOnce(&Analysis<'_>, &[usize], &[String]) -> Draft + 'f>;

/// Applies the confirmed rules to the drafts; returns the drafts with the claims moved.
pub(crate) fn run(a: &mut Analysis<'_>, drafts: Vec<Draft>) -> Vec<Draft> {
    let causes: Vec<Cause<'_>> = confirmed(a)
        .into_iter()
        .map(|c| {
            let (owner, rule) = (c.owner.clone(), c.rule);
            Cause {
                line: rule_line(&c.owner, rule),
                owner: c.owner,
                bad: c.bad,
                soft: c.soft,
                finding: Box::new(move |a, cells, was| drop_finding(a, &owner, rule, cells, was)),
            }
        })
        .collect();
    absorb(a, drafts, causes)
}

/// A `firewall-drop` finding for `rule`.
fn drop_finding(
    a: &Analysis<'_>,
    owner: &Owner,
    rule: &FilterDrop,
    cells: &[usize],
    was: &[String],
) -> Draft {
    let verb = if rule.reject { "rejects" } else { "drops" };
    let mut evidence = vec![format!("rule on {owner}: {}", rule.rule)];
    evidence.push(format!(
        "every path it matches fails, none works; without it the paths read as: {}",
        was.join(", ")
    ));
    evidence.extend(a.cell_lines(cells));
    Draft::new(
        ids::FIREWALL_DROP,
        Severity::Critical,
        match (owner, rule.destination_ports.as_slice()) {
            (Owner::Node(n), _) => (CulpritKind::Node, n.to_string()),
            // A pod's own rule for one of its ports: the port is the component.
            (Owner::Pod(p), [one]) if one.first == one.last => (CulpritKind::Port, format!("{p}:{}", one.first)),
            (Owner::Pod(p), _) => (CulpritKind::Pod, p.to_string()),
        },
        "1.5",
        format!("{owner}'s firewall {verb} {} failing paths ({} hook): {}", cells.len(), rule.hook, rule.rule),
    )
    .evidence(evidence)
    .suggestion(match owner {
        Owner::Node(n) => format!(
            "read the rule in context on {n}: `iptables-save -t filter` (or `nft list ruleset`); find who wrote \
             it (a host firewall, a security agent, a NetworkPolicy implementation) and remove or narrow it"
        ),
        Owner::Pod(p) => format!(
            "read the rule in {p}'s own network namespace (`nsenter -n -t <its pid> iptables-save -t filter`); \
             no NetworkPolicy asks for it: find who wrote it (an init container, a sidecar, a policy agent) and \
             remove or narrow it"
        ),
    })
}

/// Moves to each cause the findings it wholly explains (its symptoms, scattered: they become
/// its one finding), and quotes it in those it explains in part; returns the drafts with the
/// claims moved.
pub(super) fn absorb(a: &mut Analysis<'_>, drafts: Vec<Draft>, causes: Vec<Cause<'_>>) -> Vec<Draft> {
    if causes.is_empty() {
        return drafts;
    }
    let mut drafts: Vec<Option<Draft>> = drafts.into_iter().map(Some).collect();
    let mut moved: BTreeMap<usize, usize> = BTreeMap::new();
    let mut added: Vec<Draft> = Vec::new();
    let n_old = drafts.len();
    for c in causes {
        let mut claimed: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..a.obs.len() {
            if a.obs[i].is_bad()
                && let Some(d) = a.owner(i)
            {
                claimed.entry(d).or_default().push(i);
            }
        }
        let owners: BTreeSet<usize> = c.bad.iter().filter_map(|&i| a.owner(i)).collect();
        let mut absorbed = Vec::new();
        // A degradation finding owns no bad cell; it is the rule's when its every path is one
        // the rule matches.
        let matched: BTreeSet<String> =
            a.paths(&c.bad.iter().chain(&c.soft).copied().collect::<Vec<_>>()).into_iter().collect();
        for (d, draft) in drafts.iter().enumerate().take(n_old) {
            let Some(draft) = draft else { continue };
            if !claimed.contains_key(&d)
                && !draft.affected.is_empty()
                && !blames(draft, &c.owner)
                && draft.affected.iter().all(|p| matched.contains(p))
            {
                absorbed.push(d);
            }
        }
        for d in owners {
            let Some(Some(draft)) = drafts.get_mut(d) else { continue };
            let whole = claimed.get(&d).is_some_and(|cells| cells.iter().all(|i| c.bad.contains(i)));
            if whole && !blames(draft, &c.owner) && d < n_old {
                absorbed.push(d);
            } else {
                draft.evidence.insert(0, c.line.clone());
            }
        }
        if absorbed.is_empty() {
            continue;
        }
        let index = n_old + added.len();
        let cells: Vec<usize> =
            absorbed.iter().flat_map(|d| claimed.get(d).cloned().unwrap_or_default()).collect();
        let mut affected = Vec::new();
        let mut was = Vec::new();
        for &d in &absorbed {
            if let Some(old) = drafts.get_mut(d).and_then(Option::take) {
                was.push(format!("{} [{}]", old.id, old.culprit.1));
                affected.extend(old.affected);
            }
            moved.insert(d, index);
        }
        added.push((c.finding)(a, &cells, &was).affected(affected));
    }
    a.remap_claims(|d| moved.get(&d).copied().unwrap_or(d));
    // Drop the absorbed drafts and renumber what follows them.
    let mut index_of = vec![None; n_old + added.len()];
    let mut out = Vec::new();
    for (d, draft) in drafts.into_iter().chain(added.into_iter().map(Some)).enumerate() {
        if let Some(draft) = draft {
            index_of[d] = Some(out.len());
            out.push(draft);
        }
    }
    a.remap_claims(|d| index_of.get(d).copied().flatten().unwrap_or(d));
    out
}
