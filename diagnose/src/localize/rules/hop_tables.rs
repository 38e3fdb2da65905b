//! Rule 1, the tables along a failing path's hops (runbook 1.6, "link or route A↔B"; 5,
//! "routes and rules on the nodes involved"). Each namespace a path's packets leave — the
//! sender, its node when it forwards, the far node when it forwards to its pod, and the same
//! on the way back — looks the next address up in its routing table and its neighbour table.
//! Two lines there stop a path outright:
//!
//! - a **neighbour entry** (ARP / NDP) for the next hop whose link-layer address no link
//!   holding that address has: a static entry left behind (`ip neigh replace … nud
//!   permanent`), a replaced NIC or VM whose peers cached the old MAC, an address answered by
//!   two hosts (a duplicate IP). Frames go to a MAC nobody on the link owns: `neighbour-mismatch`;
//! - a **route** that sends the address nowhere — a blackhole (or unreachable, prohibit) route
//!   covering it, a policy-routing rule dropping it, or a route through a gateway no host
//!   answers (its neighbour entry failed, no node, pod or link holds it): `route-missing`. A
//!   pod's packets to a VIP or the cluster DNS are looked up as the pod sends them, to the VIP,
//!   before any NAT. A peer's pod CIDR is the pair rule's (its verdict names the
//!   pair and the CIDR), a pod's missing default route the pod rule's; what is left here is
//!   every other address (nodes' own, a pod's specific blackholes).
//!
//! The cause sits in the inspections, so it is read first, before the symptom rules: otherwise
//! the pair or the node is blamed for a line in a table. A line convicts only with failing
//! paths that cross it; a mismatch nothing fails through (a VRRP virtual MAC, a stale entry no
//! route uses) is left alone.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use netdiag_model::inspect::{InspectionReport, Neighbour};
use netdiag_model::probe::Source;
use netdiag_model::{CulpritKind, NodeName, PodRef, Severity};

use super::super::context::{Context, join, route_line};
use super::super::evidence::{Analysis, Obs};
use super::super::report::{Draft, ids};
use super::super::routing::{self, Decision};
use crate::matrix::Destination;
use crate::matrix::key::{IpFamily, NodeAddr};

/// A line in a hop's tables that stops what crosses it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum HopFault {
    Neighbour(WrongEntry),
    Route(RouteFault),
    Gateway(DeadGateway),
}

/// A route on a hop through a gateway no host answers: its neighbour entry there failed, and no
/// node, pod or inspected link holds the address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DeadGateway {
    at: Source,
    gateway: IpAddr,
    /// The route as `ip route` prints it, and what it covers.
    route: String,
    covers: IpNet,
    /// The neighbour entry's state (`FAILED`, `INCOMPLETE`).
    state: String,
}

/// A route on a hop that sends an address nowhere, or a policy-routing rule that drops it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RouteFault {
    at: Source,
    /// The route as `ip route` prints it (or the rule as `ip rule` does), and what it covers.
    route: String,
    covers: IpNet,
    /// An `ip rule`, not a route.
    rule: bool,
}

/// A neighbour entry whose link-layer address is not that of any link holding its address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct WrongEntry {
    /// The namespace whose table holds the entry.
    at: Source,
    ip: IpAddr,
    device: String,
    lladdr: String,
    state: String,
    /// Who holds `ip` and with which MAC: `(namespace, link, MAC)`.
    holders: Vec<(Source, String, String)>,
}

impl WrongEntry {
    fn protocol(&self) -> &'static str {
        if self.ip.is_ipv4() { "ARP" } else { "NDP" }
    }

    /// The node whose address the entry is for, when it is another node's.
    fn peer_node(&self) -> Option<&NodeName> {
        self.holders.iter().find_map(|(s, _, _)| match s {
            Source::Node(n) if !matches!(&self.at, Source::Node(me) if me == n) => Some(n),
            _ => None,
        })
    }
}

/// The IANA VRRP virtual-router MACs (`00:00:5e:00:01:xx` IPv4, `00:00:5e:00:02:xx` IPv6): a
/// router answers its virtual address with them, never with a link's own MAC.
fn is_vrrp(mac: &str) -> bool {
    mac.starts_with("00:00:5e:00:01:") || mac.starts_with("00:00:5e:00:02:")
}

/// Who holds each address, with the link's MAC, over every inspected namespace.
/// Who holds each address: `(namespace, link, MAC)`.
type Holders = BTreeMap<IpAddr, Vec<(Source, String, String)>>;

fn holders(ctx: &Context<'_>) -> Holders {
    let mut out: BTreeMap<IpAddr, Vec<(Source, String, String)>> = BTreeMap::new();
    for (source, report) in ctx.reports() {
        for link in &report.links {
            let Some(mac) = &link.lladdr else { continue };
            for addr in &link.addresses {
                out.entry(addr.addr()).or_default().push((
                    source.clone(),
                    link.name.as_str().to_owned(),
                    mac.as_str().to_owned(),
                ));
            }
        }
    }
    out
}

fn resolved(n: &Neighbour) -> bool {
    !matches!(n.state.as_str(), "FAILED" | "INCOMPLETE" | "NONE")
}

/// Per namespace, the addresses its routes use as gateways whose neighbour entry failed and
/// that no node, pod or inspected link holds: `(namespace, gateway, entry state)`.
fn dead_gateways(ctx: &Context<'_>, holders: &Holders) -> Vec<(Source, IpAddr, String)> {
    let mut out = Vec::new();
    for (source, report) in ctx.reports() {
        for n in report.neighbours.iter().filter(|n| !resolved(n)) {
            let used = report.routes.iter().any(|r| r.gateway == Some(n.ip));
            if used && !holders.contains_key(&n.ip) && ctx.owner_of_ip(n.ip).is_none() {
                out.push((source.clone(), n.ip, n.state.as_str().to_owned()));
            }
        }
    }
    out
}

/// Every resolved entry, in every namespace, whose MAC no holder of its address has.
fn wrong_entries(ctx: &Context<'_>, holders: &Holders) -> Vec<WrongEntry> {
    let mut out = Vec::new();
    for (source, report) in ctx.reports() {
        for n in report.neighbours.iter().filter(|n| resolved(n)) {
            let Some(mac) = &n.lladdr else { continue };
            let Some(held) = holders.get(&n.ip) else { continue };
            // The namespace's own address (a loopback entry) or a VRRP MAC: not a mismatch.
            if held.iter().any(|(s, _, m)| s == &source || m == mac.as_str()) || is_vrrp(mac.as_str()) {
                continue;
            }
            out.push(WrongEntry {
                at: source.clone(),
                ip: n.ip,
                device: n.device.as_str().to_owned(),
                lladdr: mac.as_str().to_owned(),
                state: n.state.as_str().to_owned(),
                holders: held.clone(),
            });
        }
    }
    out
}

/// The address a VIP or DNS cell's source sends to: the Service's ClusterIP of the cell's
/// family, the nameserver queried, or the cluster DNS.
fn vip_of(a: &Analysis<'_>, o: &Obs) -> Option<IpAddr> {
    match &o.dest {
        Destination::Service { family, .. } => {
            a.service_of(o)?.info.cluster_ips.iter().copied().find(|ip| IpFamily::of(*ip) == *family)
        }
        Destination::Dns { nameserver: Some(ip), .. } => Some(*ip),
        Destination::Dns { nameserver: None, .. } => a.ctx.inventory.cluster.dns_ips.first().copied(),
        _ => None,
    }
}

/// The address a cell's probes aimed at, when it is one host's (not a VIP or a name).
fn destination_ip(ctx: &Context<'_>, o: &Obs) -> Option<IpAddr> {
    let family_ip =
        |ips: &[IpAddr], family: IpFamily| ips.iter().copied().find(|ip| IpFamily::of(*ip) == family);
    match &o.dest {
        Destination::Pod { pod, family, .. } | Destination::Endpoint { pod, family, .. } => {
            family_ip(&ctx.pod_ips(pod), *family)
        }
        Destination::Node { node, family, .. }
        | Destination::NodePort { node: NodeAddr::Node(node, family), .. } => {
            family_ip(&ctx.inventory.node(node)?.ips, *family)
        }
        Destination::NodePort { node: NodeAddr::Ip(ip), .. } => Some(*ip),
        Destination::Address { ip, .. } => Some(*ip),
        Destination::Service { .. } | Destination::Dns { .. } => None,
    }
}

/// The address `source` sends from toward `dst`'s family.
fn source_ip(ctx: &Context<'_>, source: &Source, dst: IpAddr) -> Option<IpAddr> {
    let ips = match source {
        Source::Pod(p) => ctx.pod_ips(p),
        Source::Node(n) => ctx.inventory.node(n)?.ips.clone(),
    };
    ips.into_iter().find(|ip| ip.is_ipv4() == dst.is_ipv4())
}

/// The namespaces a packet from `from` (living on node `from_node`) to `to` (on `to_node`, a
/// pod or the node itself) leaves, each with the address it is sent to: the sender, its node
/// when the node forwards it, and the far node when it forwards to its pod.
fn senders(from: &Source, from_node: &NodeName, to_pod: bool, to_node: Option<&NodeName>) -> Vec<Source> {
    let mut out = vec![from.clone()];
    let to_own_node = !to_pod && to_node == Some(from_node);
    if matches!(from, Source::Pod(_)) && !to_own_node {
        out.push(Source::Node(from_node.clone()));
    }
    if let Some(n) = to_node
        && to_pod
        && n != from_node
    {
        out.push(Source::Node(n.clone()));
    }
    out
}

/// One far end of a path: its address, the pod holding it (if a pod's) and its node.
struct FarEnd {
    ip: IpAddr,
    pod: Option<PodRef>,
    node: Option<NodeName>,
}

/// The far ends a cell's packets go to: the host probed (a NodePort's node: its first leg),
/// or for a VIP or a DNS query, each ready backend behind it (NAT on the source's node).
fn far_ends(a: &Analysis<'_>, o: &Obs) -> Vec<FarEnd> {
    if let Some(svc) = a.service_of(o).filter(|_| behind_vip(o)) {
        return svc
            .backends
            .iter()
            .map(|b| FarEnd { ip: b.ip, pod: b.pod.clone(), node: b.node.clone() })
            .collect();
    }
    destination_ip(a.ctx, o)
        .map(|ip| FarEnd { ip, pod: o.dst_pod.clone(), node: o.dst_node.clone() })
        .into_iter()
        .collect()
}

/// The faults the packets between a cell's source and one far end meet, there and back: for
/// each namespace that sends them, its route to the other end and its neighbour entry for the
/// next hop, and for a node, its entry for the far node's own address (the underlay hop of an
/// overlay's outer packet).
fn crossed(
    ctx: &Context<'_>,
    (near, near_node): (&Source, &NodeName),
    far: &FarEnd,
    known: &Known,
) -> Vec<HopFault> {
    let Some(src) = source_ip(ctx, near, far.ip) else { return Vec::new() };
    // (sender, destination, its node, the packet's source address)
    let mut hops: Vec<(Source, IpAddr, Option<&NodeName>, IpAddr)> = Vec::new();
    for s in senders(near, near_node, far.pod.is_some(), far.node.as_ref()) {
        hops.push((s, far.ip, far.node.as_ref(), src));
    }
    let back_from = far.pod.clone().map(Source::Pod).or_else(|| far.node.clone().map(Source::Node));
    if let (Some(back_from), Some(back_node)) = (back_from, far.node.as_ref()) {
        let near_is_pod = matches!(near, Source::Pod(_));
        for s in senders(&back_from, back_node, near_is_pod, Some(near_node)) {
            hops.push((s, src, Some(near_node), far.ip));
        }
    }
    let mut out: Vec<HopFault> = Vec::new();
    let mut add = |f: HopFault| {
        if !out.contains(&f) {
            out.push(f);
        }
    };
    for (sender, toward, far_node, from) in hops {
        let Some(report) = ctx.report_of(&sender) else { continue };
        let mut addresses: Vec<IpAddr> = match hop(ctx, &sender, report, toward, from, &known.dead) {
            Hop::Fault(f) => {
                add(f);
                continue;
            }
            Hop::Next(next) => next.into_iter().collect(),
        };
        if let (Source::Node(me), Some(far)) = (&sender, far_node)
            && me != far
            && let Some(info) = ctx.inventory.node(far)
        {
            addresses.extend(info.ips.iter().copied().filter(|ip| ip.is_ipv4() == toward.is_ipv4()));
        }
        for e in known.wrong.iter().filter(|e| e.at == sender && addresses.contains(&e.ip)) {
            add(HopFault::Neighbour(e.clone()));
        }
    }
    out
}

/// What a hop's routing does with a packet, decided once.
enum Hop {
    /// A line in its tables stops the packet.
    Fault(HopFault),
    /// The address it is sent to next: the route's gateway, or the destination itself on a
    /// directly connected route; None without a route with a device or gateway.
    Next(Option<IpAddr>),
}

/// What `sender`'s routing does with a packet from `from` to `toward`: a blackhole route (no
/// device, no gateway: `blackhole`, `unreachable`, `prohibit`), a dropping `ip rule`, a route
/// through a gateway no host answers — or the next hop. A node's route to a peer's pod CIDR is
/// the pair rule's (its verdict names the pair, the CIDR and the gateway): only its next hop is
/// taken here. No route at all is not judged: routing the agent does not read (eBPF host
/// routing) can carry what no table covers.
fn hop(
    ctx: &Context<'_>,
    sender: &Source,
    report: &InspectionReport,
    toward: IpAddr,
    from: IpAddr,
    dead: &[(Source, IpAddr, String)],
) -> Hop {
    let pair_rules = matches!(sender, Source::Node(me) if ctx.pod_cidr_node(toward).is_some_and(|n| n != me));
    match routing::decide(report, toward, Some(from)) {
        Decision::Blackhole(r) if !pair_rules => Hop::Fault(HopFault::Route(RouteFault {
            at: sender.clone(),
            route: route_line(r),
            covers: r.destination.trunc(),
            rule: false,
        })),
        Decision::Rule(rule) if !pair_rules => Hop::Fault(HopFault::Route(RouteFault {
            at: sender.clone(),
            route: rule.to_string(),
            covers: rule.to.map_or_else(|| IpNet::from(toward), |net| net.trunc()),
            rule: true,
        })),
        Decision::Routed(r) => {
            let dead_gateway = r
                .gateway
                .filter(|gw| !pair_rules && *gw != toward)
                .and_then(|gw| dead.iter().find(|(at, ip, _)| at == sender && *ip == gw));
            match dead_gateway {
                Some((_, gw, state)) => Hop::Fault(HopFault::Gateway(DeadGateway {
                    at: sender.clone(),
                    gateway: *gw,
                    route: route_line(r),
                    covers: r.destination.trunc(),
                    state: state.clone(),
                })),
                None => Hop::Next(Some(r.gateway.unwrap_or(toward))),
            }
        }
        Decision::Blackhole(_) | Decision::Rule(_) | Decision::NoRoute => Hop::Next(None),
    }
}

/// What a path walk knows of the tables before it starts.
struct Known {
    wrong: Vec<WrongEntry>,
    dead: Vec<(Source, IpAddr, String)>,
}

/// A VIP or a DNS query: NATed to a backend on the source's own node.
fn behind_vip(o: &Obs) -> bool {
    matches!(o.dest, Destination::Service { .. } | Destination::Dns { .. })
}

/// The fault that explains a bad cell: one its packets cross on a host path that fails, or,
/// behind a VIP, one crossed toward every backend (or toward some, while the others answer: a
/// degraded service).
fn explaining(a: &Analysis<'_>, o: &Obs, known: &Known) -> Option<HopFault> {
    let near = (&o.source, o.src_node());
    let first = |ends: &[FarEnd], near: (&Source, &NodeName)| -> Vec<Option<HopFault>> {
        ends.iter().map(|f| crossed(a.ctx, near, f, known).into_iter().next()).collect()
    };
    // A pod sends a VIP's packets (or a DNS query) to the VIP itself: its own table's route for
    // that address comes first, before any NAT picks a backend.
    if behind_vip(o)
        && let Source::Pod(_) = &o.source
        && let Some(vip) = vip_of(a, o)
        && let Some(report) = a.ctx.report_of(&o.source)
        && let Some(from) = source_ip(a.ctx, &o.source, vip)
        && let Hop::Fault(f) = hop(a.ctx, &o.source, report, vip, from, &known.dead)
    {
        return o.is_bad().then_some(f);
    }
    // Any of the backends behind a VIP (or a NodePort's second leg): all of them, or some
    // while the others answer.
    let behind = |firsts: Vec<Option<HopFault>>| -> Option<HopFault> {
        let hit = firsts.iter().flatten().next().cloned()?;
        let all = firsts.iter().all(Option::is_some);
        (o.is_bad() && (all || o.stats.successes > 0)).then_some(hit)
    };
    if behind_vip(o) {
        return behind(first(&far_ends(a, o), near));
    }
    if let Some(hit) = first(&far_ends(a, o), near).into_iter().flatten().next() {
        return o.failed().then_some(hit);
    }
    // A NodePort's second leg: its node, masquerading, on to each backend.
    let (Destination::NodePort { .. }, Some(via)) = (&o.dest, o.dst_node.as_ref()) else { return None };
    let svc = a.service_of(o)?;
    let backends: Vec<FarEnd> =
        svc.backends.iter().map(|b| FarEnd { ip: b.ip, pod: b.pod.clone(), node: b.node.clone() }).collect();
    behind(first(&backends, (&Source::Node(via.clone()), via)))
}

pub(super) fn along_the_path(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let holders = holders(a.ctx);
    let known = Known { wrong: wrong_entries(a.ctx, &holders), dead: dead_gateways(a.ctx, &holders) };
    // Nothing on record to find: no walk (the common case, at every size).
    let blackholes = a.ctx.reports().any(|(_, r)| {
        r.routes.iter().any(|r| r.device.is_none() && r.gateway.is_none()) || routing::has_dropping_rule(r)
    });
    if known.wrong.is_empty() && known.dead.is_empty() && !blackholes {
        return;
    }
    let mut by_fault: BTreeMap<HopFault, Vec<usize>> = BTreeMap::new();
    for i in a.open().collect::<Vec<_>>() {
        if let Some(f) = explaining(a, &a.obs[i], &known) {
            by_fault.entry(f).or_default().push(i);
        }
    }
    for (f, cells) in by_fault {
        a.claim(&cells);
        out.push(match &f {
            HopFault::Neighbour(e) => draft(a, e, &cells),
            HopFault::Route(r) => route_draft(a, r, &cells),
            HopFault::Gateway(g) => gateway_draft(a, g, &cells),
        });
    }
}

fn route_draft(a: &Analysis<'_>, f: &RouteFault, cells: &[usize]) -> Draft {
    let at = named(&f.at);
    // The nodes whose own addresses the route covers: what it cuts the namespace off from.
    let mut peers: Vec<&NodeName> = a
        .ctx
        .inventory
        .nodes
        .iter()
        .filter(|n| n.ips.iter().any(|ip| f.covers.contains(ip)))
        .map(|n| &n.name)
        .filter(|n| !matches!(&f.at, Source::Node(me) if me == *n))
        .collect();
    peers.dedup();
    let culprit = match (&f.at, peers.as_slice()) {
        (Source::Node(me), [peer]) => (CulpritKind::NodePair, format!("{me}→{peer}")),
        (Source::Node(me), _) => (CulpritKind::Node, me.to_string()),
        (Source::Pod(p), _) => (CulpritKind::Pod, p.to_string()),
    };
    let whose = match peers.as_slice() {
        [] => String::new(),
        [one] => format!(" ({one}'s address)"),
        many => format!(" (the addresses of {})", join(many)),
    };
    let what = if f.rule { "a policy-routing rule" } else { "a blackhole route" };
    let verdict = format!(
        "{what} on {at} (`{}`) sends {}{whose} nowhere: the paths between {at} and those addresses fail both ways",
        f.route, f.covers
    );
    let mut evidence = Vec::new();
    if let Some(report) = a.ctx.report_of(&f.at) {
        if f.rule {
            let rules: Vec<String> = report.rules.iter().map(ToString::to_string).collect();
            evidence.push(format!("{at}'s routing rules (`ip rule`, last inspection): {}", rules.join("; ")));
        }
        let table: Vec<String> = report.routes.iter().filter(|r| r.table == 254).map(route_line).collect();
        evidence.push(format!("{at}'s main routing table (last inspection): {}", table.join("; ")));
    }
    evidence.extend(a.cell_lines(cells));
    let fix = if f.rule {
        format!(
            "remove it (`ip rule del pref {}` on {at}) and find what wrote it",
            f.route.split(':').next().unwrap_or_default()
        )
    } else {
        format!("remove it (`ip route del {}` on {at}) and find what wrote it", f.route)
    };
    Draft::new(ids::ROUTE_MISSING, Severity::Critical, culprit, "1.6", verdict)
        .affected(a.paths(cells))
        .evidence(evidence)
        .suggestion(fix)
}

fn gateway_draft(a: &Analysis<'_>, g: &DeadGateway, cells: &[usize]) -> Draft {
    let at = named(&g.at);
    let culprit = match &g.at {
        Source::Node(n) => (CulpritKind::Node, n.to_string()),
        Source::Pod(p) => (CulpritKind::Pod, p.to_string()),
    };
    let verdict = format!(
        "{at} routes {} through {}, an address no host answers (its ARP/NDP entry on {at} is {}): what it sends \
         there goes nowhere (`{}`)",
        g.covers, g.gateway, g.state, g.route
    );
    let mut evidence = vec![format!(
        "no node, pod or inspected interface holds {}, and {at}'s neighbour entry for it is {}",
        g.gateway, g.state
    )];
    if let Some(report) = a.ctx.report_of(&g.at) {
        let table: Vec<String> = report.routes.iter().filter(|r| r.table == 254).map(route_line).collect();
        evidence.push(format!("{at}'s main routing table (last inspection): {}", table.join("; ")));
    }
    evidence.extend(a.cell_lines(cells));
    Draft::new(ids::ROUTE_MISSING, Severity::Critical, culprit, "1.6", verdict)
        .affected(a.paths(cells))
        .evidence(evidence)
        .suggestion(format!(
            "delete or fix the route (`ip route del {}` in {at}'s namespace) and find what wrote it (a CNI plugin, \
             an init container, a sidecar)",
            g.covers
        ))
}

/// A namespace as a verdict names it: `node-2`, `pod tidb/demo-pd-0`.
fn named(s: &Source) -> String {
    match s {
        Source::Node(n) => n.to_string(),
        Source::Pod(p) => format!("pod {p}"),
    }
}

fn draft(a: &Analysis<'_>, e: &WrongEntry, cells: &[usize]) -> Draft {
    let holders: Vec<String> =
        e.holders.iter().map(|(s, link, mac)| format!("{}'s {link} is {mac}", named(s))).collect();
    let owner = match e.holders.as_slice() {
        [(s, _, _)] => format!("{}'s address {}", named(s), e.ip),
        _ => e.ip.to_string(),
    };
    let (culprit, runbook) = match (&e.at, e.peer_node()) {
        (Source::Node(me), Some(peer)) => ((CulpritKind::NodePair, format!("{me}→{peer}")), "1.6"),
        (Source::Node(me), None) => ((CulpritKind::Node, me.to_string()), "1.6"),
        (Source::Pod(p), _) => ((CulpritKind::Pod, p.to_string()), "1.6"),
    };
    let verdict = format!(
        "{at}'s {proto} entry for {owner} points at {mac}, a MAC no link holding that address has: frames \
         from {at} to it go nowhere, so the paths through that hop fail both ways",
        at = named(&e.at),
        proto = e.protocol(),
        mac = e.lladdr,
    );
    let mut evidence = vec![format!(
        "{at}'s neighbour table: `{ip} dev {dev} lladdr {mac} {state}`",
        at = named(&e.at),
        ip = e.ip,
        dev = e.device,
        mac = e.lladdr,
        state = e.state,
    )];
    evidence.push(format!("the address is held by: {}", holders.join("; ")));
    evidence.extend(a.cell_lines(cells));
    let right = e.holders.first().map_or_else(String::new, |(_, _, mac)| mac.clone());
    let fix = if e.state == "PERMANENT" {
        format!(
            "a static entry: remove it (`ip neigh del {ip} dev {dev}` on {at}) or correct it (`ip neigh replace {ip} \
             lladdr {right} dev {dev} nud permanent`), and find what wrote it (a node bootstrap script, a CNI plugin)",
            ip = e.ip,
            dev = e.device,
            at = named(&e.at),
        )
    } else {
        format!(
            "a learned entry: another host answers {proto} for {ip} (a duplicate address: `arping -D -I {dev} {ip}`), \
             or the holder's MAC changed; `ip neigh flush {ip} dev {dev}` on {at} and see who answers",
            proto = e.protocol(),
            ip = e.ip,
            dev = e.device,
            at = named(&e.at),
        )
    };
    Draft::new(ids::NEIGHBOUR_MISMATCH, Severity::Critical, culprit, runbook, verdict)
        .affected(a.paths(cells))
        .evidence(evidence)
        .suggestion(fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vrrp_macs_are_told_apart() {
        assert!(is_vrrp("00:00:5e:00:01:0a"));
        assert!(is_vrrp("00:00:5e:00:02:01"));
        assert!(!is_vrrp("02:00:00:de:ad:01"));
    }

    #[test]
    fn senders_follow_who_forwards() {
        let (n1, n2) = ("node-1".parse::<NodeName>().unwrap(), "node-2".parse::<NodeName>().unwrap());
        let pod: Source = Source::Pod("tidb/a".parse().unwrap());
        let node1 = Source::Node(n1.clone());
        let node2 = Source::Node(n2.clone());
        // Pod to a pod on another node: the pod, its node, the far node.
        assert_eq!(senders(&pod, &n1, true, Some(&n2)), vec![pod.clone(), node1.clone(), node2.clone()]);
        // Pod to its own node's address: the pod alone.
        assert_eq!(senders(&pod, &n1, false, Some(&n1)), vec![pod.clone()]);
        // Node to another node's address: the node alone; to a pod there: and the far node.
        assert_eq!(senders(&node1, &n1, false, Some(&n2)), vec![node1.clone()]);
        assert_eq!(senders(&node1, &n1, true, Some(&n2)), vec![node1.clone(), node2]);
        // Node to its own pod: the node alone.
        assert_eq!(senders(&node1, &n1, true, Some(&n1)), vec![node1]);
    }
}
