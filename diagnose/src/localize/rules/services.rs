//! Rule 6, the service path on one node (runbook 1.3 case 3 and 1.6, decision-tree step 2):
//! "backends answer, VIP does not, from node A only: service path (kube-proxy rules) broken on
//! node A". The component is a service port's VIP as the pods of one node reach it, through
//! that node's NAT rules. It is blamed when ≥ `fail_share` of those cells fail, from at least
//! two pods where there are two, while the backends answer the same node straight on; the
//! node's inspection then says whether a DNAT rule is missing, rejects, or points at stale
//! endpoints. When every node fails the same way, the service's rules are blamed once.
//!
//! NodePorts the same way: a NodePort failing on one node, seen by two agents, while it answers
//! on other nodes: its rules on that node (`nodeport-broken`), or `externalTrafficPolicy:
//! Local` on a node without a local backend (`nodeport-local-policy`, runbook 1.6).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use netdiag_model::inspect::NatProtocol;
use netdiag_model::inventory::TrafficPolicy;
use netdiag_model::probe::ProbeKind;
use netdiag_model::probe::Source;
use netdiag_model::{CulpritKind, NodeName, PodRef, Port, ServiceRef, Severity};

use super::super::context::{NatLookup, ServiceView, join};
use super::super::evidence::Analysis;
use super::super::report::{Draft, ids};
use crate::matrix::Destination;
use crate::matrix::key::NodeAddr;

/// A service port as the matrix names it: `(service, port)`.
type SvcPort = (ServiceRef, Port);

struct Broken {
    node: NodeName,
    failing: Vec<usize>,
    sources: usize,
    backends_ok: usize,
    backends: usize,
}

pub(super) fn vip_path(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let groups: BTreeMap<(SvcPort, NodeName), Vec<usize>> = a.group(|o| match &o.dest {
        Destination::Service { service, port, .. } if matches!(o.kind, ProbeKind::Tcp | ProbeKind::Http) => {
            Some(((service.clone(), *port), o.src_node().clone()))
        }
        _ => None,
    });
    let mut by_service: BTreeMap<SvcPort, (Vec<Broken>, usize, usize)> = BTreeMap::new();
    for ((sp, node), ids) in &groups {
        let entry = by_service.entry(sp.clone()).or_insert_with(|| (Vec::new(), 0, 0));
        entry.1 += 1;
        let t = a.tally(ids);
        entry.2 += usize::from(t.working > 0);
        let sources: BTreeSet<_> = t.ids.iter().map(|&i| &a.obs[i].source).collect();
        let failing_sources: BTreeSet<_> = t.failing.iter().map(|&i| &a.obs[i].source).collect();
        if t.failing.len() < a.th.min_failing_cells.min(sources.len())
            || t.failing.is_empty()
            || t.share() < a.th.fail_share
            || failing_sources.len() < a.need(sources.len())
        {
            // A share of the VIP's connections failing, with the node's rules on record sending
            // a share to an address and port that is no endpoint: that rule.
            // Bad, or ok with failures since their last repair (a share of connections refused
            // keeps a cell ok when most succeed).
            let bad: Vec<usize> = t
                .ids
                .iter()
                .copied()
                .filter(|&i| a.obs[i].is_bad() || a.obs[i].stats.since_repair.troubled())
                .collect();
            if let Some(view) = a.ctx.services.get(&sp.0)
                && !bad.is_empty()
            {
                let wrong = wrong_targets(a, view, sp.1, node);
                if !wrong.is_empty() {
                    a.claim(&bad);
                    out.push(wrong_target_draft(a, view, sp.1, node, &wrong, &bad));
                }
            }
            continue;
        }
        // The backends, straight from the same node.
        let (backends_ok, backends) = backends_from(a, &sp.0, node);
        let nat_says_broken = a.ctx.services.get(&sp.0).is_some_and(|view| {
            view.info.cluster_ips.iter().any(|ip| {
                !matches!(
                    a.ctx.nat_frontend(node, *ip, sp.1, NatProtocol::Tcp),
                    NatLookup::Targets(_) | NatLookup::Unknown
                )
            })
        });
        // Backends that fail from this node explain a flapping VIP; only when they all answer
        // (or the rules themselves are missing) is it the service path.
        let backends_answer = backends > 0 && backends_ok == backends;
        if !backends_answer && !nat_says_broken {
            continue;
        }
        entry.0.push(Broken {
            node: node.clone(),
            failing: t.failing,
            sources: sources.len(),
            backends_ok,
            backends,
        });
    }
    for ((service, port), (broken, nodes, nodes_ok)) in by_service {
        if broken.is_empty() {
            continue;
        }
        let Some(view) = a.ctx.services.get(&service) else { continue };
        if broken.len() == nodes && nodes > 1 {
            let failing: Vec<usize> = broken.iter().flat_map(|b| b.failing.iter().copied()).collect();
            a.claim(&failing);
            out.push(everywhere_draft(a, view, port, &broken, &failing));
            continue;
        }
        for b in &broken {
            a.claim(&b.failing);
            out.push(node_draft(a, view, port, b, nodes_ok));
        }
    }
}

/// The targets `node`'s rules DNAT the service port's VIPs to that are no ready endpoint
/// (address and target port): stale rules, or rules written by hand.
fn wrong_targets(a: &Analysis<'_>, view: &ServiceView<'_>, port: Port, node: &NodeName) -> Vec<SocketAddr> {
    let target_port = view.target_port(port);
    let ready: BTreeSet<SocketAddr> =
        view.backends.iter().map(|b| SocketAddr::new(b.ip, target_port.get())).collect();
    let mut out = Vec::new();
    for &vip in &view.info.cluster_ips {
        if let NatLookup::Targets(s) = a.ctx.nat_frontend(node, vip, port, NatProtocol::Tcp) {
            out.extend(
                s.targets.iter().map(|t| SocketAddr::new(t.ip, t.port.get())).filter(|t| !ready.contains(t)),
            );
        }
    }
    out
}

fn wrong_target_draft(
    a: &Analysis<'_>,
    view: &ServiceView<'_>,
    port: Port,
    node: &NodeName,
    wrong: &[SocketAddr],
    cells: &[usize],
) -> Draft {
    let svc = view.info.service_ref();
    let target_port = view.target_port(port);
    let ready: Vec<String> =
        view.backends.iter().map(|b| SocketAddr::new(b.ip, target_port.get()).to_string()).collect();
    let vips: Vec<String> =
        view.info.cluster_ips.iter().map(|ip| SocketAddr::new(*ip, port.get()).to_string()).collect();
    let verdict = format!(
        "VIP {} ({svc}) fails part of the time from {node}: {node}'s rules send a share of its connections to {}, \
         which is no endpoint of the service — service path (kube-proxy rules) broken on {node}",
        join(&vips),
        join(wrong)
    );
    let mut evidence = vec![format!(
        "{node}'s DNAT targets for it include {} (ready endpoints: {})",
        join(wrong),
        ready.join(", ")
    )];
    evidence.extend(a.cell_lines(cells));
    let vip = view.info.cluster_ips.first().map(ToString::to_string).unwrap_or_default();
    Draft::new(
        ids::SERVICE_PATH_BROKEN,
        Severity::Critical,
        (CulpritKind::Path, format!("svc/{svc}:{port} on {node}")),
        "1.3",
        verdict,
    )
    .affected(a.paths(cells))
    .evidence(evidence)
    .suggestion(format!(
        "compare {} on {node} with `kubectl get endpointslices -l kubernetes.io/service-name={}`; restart kube-proxy on \
         {node} so it rewrites its rules (stale rules mean it stopped syncing: check its logs)",
        grep_hint(a, node, &vip),
        view.info.name
    ))
}

/// Steady and total cells from `node` straight to the service's endpoints.
fn backends_from(a: &Analysis<'_>, service: &ServiceRef, node: &NodeName) -> (usize, usize) {
    let cells = a.obs.iter().filter(|o| {
        o.src_node() == node && matches!(&o.dest, Destination::Endpoint { service: s, .. } if s == service)
    });
    let (mut ok, mut all) = (0, 0);
    for o in cells {
        all += 1;
        ok += usize::from(o.steady());
    }
    (ok, all)
}

/// What the node's NAT rules say about the VIP, as evidence lines; true when they explain it.
fn nat_lines(a: &Analysis<'_>, view: &ServiceView<'_>, port: Port, node: &NodeName) -> (Vec<String>, bool) {
    let mut lines = Vec::new();
    let mut explained = false;
    let ready: BTreeSet<IpAddr> = view.backends.iter().map(|b| b.ip).collect();
    let target_port = view.target_port(port);
    for &vip in &view.info.cluster_ips {
        let frontend = SocketAddr::new(vip, port.get());
        match a.ctx.nat_frontend(node, vip, port, NatProtocol::Tcp) {
            NatLookup::Missing { frontends } => {
                explained = true;
                lines.push(format!(
                    "no DNAT rule for {frontend} in {node}'s rules ({frontends} service frontends there)"
                ));
            }
            NatLookup::NoTargets => {
                explained = true;
                lines.push(format!(
                    "{node}'s rules reject {frontend}: kube-proxy there believes it has no endpoints"
                ));
            }
            NatLookup::Targets(s) => {
                let stale: Vec<String> = s
                    .targets
                    .iter()
                    .filter(|t| !ready.contains(&t.ip) || t.port != target_port)
                    .map(|t| SocketAddr::new(t.ip, t.port.get()).to_string())
                    .collect();
                let to: Vec<String> =
                    s.targets.iter().map(|t| SocketAddr::new(t.ip, t.port.get()).to_string()).collect();
                if stale.is_empty() {
                    lines.push(format!(
                        "{node}'s rules DNAT {frontend} to {}: the rules look right (check conntrack and the \
                         packet path on {node})",
                        to.join(", ")
                    ));
                } else {
                    explained = true;
                    lines.push(format!(
                        "{node}'s rule for {frontend} points at a stale endpoint {} (ready endpoints: {})",
                        join(&stale),
                        join(&ready.iter().collect::<Vec<_>>())
                    ));
                }
            }
            NatLookup::Unknown => lines.push(format!("no inspection of {node}'s NAT rules yet")),
        }
    }
    (lines, explained)
}

fn grep_hint(a: &Analysis<'_>, node: &NodeName, vip: &str) -> String {
    let nft =
        a.ctx.node_reports.get(node).and_then(|r| r.proxy_mode).unwrap_or(a.ctx.inventory.cluster.proxy_mode)
            == netdiag_model::inventory::ProxyMode::Nftables;
    if nft {
        format!("`nft list map ip kube-proxy service-ips | grep {vip}`")
    } else {
        format!("`iptables-save -t nat | grep {vip}`")
    }
}

fn node_draft(a: &Analysis<'_>, view: &ServiceView<'_>, port: Port, b: &Broken, nodes_ok: usize) -> Draft {
    let svc = view.info.service_ref();
    let node = &b.node;
    let vips: Vec<String> =
        view.info.cluster_ips.iter().map(|ip| SocketAddr::new(*ip, port.get()).to_string()).collect();
    let (mut nat, explained) = nat_lines(a, view, port, node);
    let only = if nodes_ok > 0 { " only" } else { "" };
    let backends = if b.backends_ok > 0 { "backends answer, " } else { "" };
    let mut verdict = format!(
        "{backends}VIP {} ({svc}) does not, from {node}{only}: service path (kube-proxy rules) broken on {node}",
        join(&vips)
    );
    if let Some(first) = nat.first().filter(|_| explained) {
        verdict.push_str(&format!(" — {first}"));
    }
    let mut evidence = std::mem::take(&mut nat);
    evidence.push(format!(
        "{} of {} pods on {node} fail to reach the VIP; {} of {} of their direct paths to the endpoints answer",
        b.failing.len().min(b.sources),
        b.sources,
        b.backends_ok,
        b.backends
    ));
    if nodes_ok > 0 {
        evidence.push(format!("the VIP answers pods on {nodes_ok} other nodes"));
    }
    evidence.extend(a.cell_lines(&b.failing));
    let first_vip = view.info.cluster_ips.first().map(ToString::to_string).unwrap_or_default();
    let runbook = if explained { "1.6" } else { "1.3" };
    Draft::new(
        ids::SERVICE_PATH_BROKEN,
        Severity::Critical,
        (CulpritKind::Path, format!("svc/{svc}:{port} on {node}")),
        runbook,
        verdict,
    )
    .affected(a.paths(&b.failing))
    .evidence(evidence)
    .suggestion(format!(
        "check kube-proxy on {node}: {} there; is kube-proxy running and syncing on {node} (its logs)? \
         restarting it rewrites the rules",
        grep_hint(a, node, &first_vip)
    ))
}

fn everywhere_draft(
    a: &Analysis<'_>,
    view: &ServiceView<'_>,
    port: Port,
    broken: &[Broken],
    failing: &[usize],
) -> Draft {
    let svc = view.info.service_ref();
    let vips: Vec<String> =
        view.info.cluster_ips.iter().map(|ip| SocketAddr::new(*ip, port.get()).to_string()).collect();
    let verdict = format!(
        "backends answer, VIP {} ({svc}) does not, from any node: the service's rules (kube-proxy) are broken \
         on every node",
        join(&vips)
    );
    let mut evidence = Vec::new();
    for b in broken.iter().take(5) {
        evidence.extend(nat_lines(a, view, port, &b.node).0);
    }
    evidence.extend(a.cell_lines(failing));
    let first_vip = view.info.cluster_ips.first().map(ToString::to_string).unwrap_or_default();
    let node = broken.first().map(|b| b.node.clone());
    let hint = node.map(|n| grep_hint(a, &n, &first_vip)).unwrap_or_default();
    Draft::new(
        ids::SERVICE_PATH_BROKEN,
        Severity::Critical,
        (CulpritKind::Service, svc.to_string()),
        "1.6",
        verdict,
    )
    .affected(a.paths(failing))
    .evidence(evidence)
    .suggestion(format!(
        "check kube-proxy everywhere (`kubectl -n kube-system get pods -l k8s-app=kube-proxy`, its logs) and \
             the rules for the VIP: {hint}; compare the service's ports and targetPorts with the endpoints"
    ))
}

pub(super) fn node_ports(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let groups: BTreeMap<(Port, NodeName), Vec<usize>> = a.group(|o| match &o.dest {
        Destination::NodePort { node: NodeAddr::Node(n, _), port } if o.kind == ProbeKind::Tcp => {
            Some((*port, n.clone()))
        }
        _ => None,
    });
    let mut answering: BTreeMap<Port, usize> = BTreeMap::new();
    for ((port, _), ids) in &groups {
        if a.tally(ids).working > 0 {
            *answering.entry(*port).or_default() += 1;
        }
    }
    for ((port, node), ids) in &groups {
        let t = a.tally(ids);
        let elsewhere = answering.get(port).copied().unwrap_or(0);
        if !a.all_fail(&t) || elsewhere == 0 {
            continue;
        }
        let service = a.ctx.service_with_node_port(*port);
        // The node must still reach the backends (its own ICMP to them), unless its rules
        // lack the NodePort: otherwise the backends' path explains it.
        let rules_missing = matches!(a.ctx.nat_node_port(node, *port), NatLookup::Missing { .. });
        if !rules_missing && !service.is_some_and(|s| reaches_backends(a, node, s)) {
            continue;
        }
        a.claim(&t.failing);
        out.push(node_port_draft(a, service, *port, node, &t.failing, elsewhere));
    }
}

/// Whether `node` itself reaches every backend of `svc` it probes (ICMP from the node).
fn reaches_backends(a: &Analysis<'_>, node: &NodeName, svc: &ServiceView<'_>) -> bool {
    let pods: BTreeSet<&PodRef> = svc.backends.iter().filter_map(|b| b.pod.as_ref()).collect();
    let mut cells = a.obs.iter().filter(|o| {
        o.kind == ProbeKind::Icmp
            && matches!(&o.source, Source::Node(n) if n == node)
            && o.dst_pod.as_ref().is_some_and(|p| pods.contains(p))
    });
    let mut any = false;
    cells.all(|o| {
        any = true;
        o.works()
    }) && any
}

fn node_port_draft(
    a: &Analysis<'_>,
    service: Option<&ServiceView<'_>>,
    port: Port,
    node: &NodeName,
    failing: &[usize],
    elsewhere: usize,
) -> Draft {
    let name =
        service.map(|s| s.info.service_ref().to_string()).unwrap_or_else(|| "an unknown service".to_owned());
    let local = service.is_some_and(|s| {
        s.info.external_traffic_policy == TrafficPolicy::Local
            && !s.backends.iter().any(|b| b.node.as_ref() == Some(node))
    });
    let mut evidence = Vec::new();
    if local {
        evidence.push(format!("{name} has externalTrafficPolicy: Local and no ready backend on {node}"));
    }
    match a.ctx.nat_node_port(node, port) {
        NatLookup::Missing { frontends } => evidence.push(format!(
            "no NodePort rule for {port} in {node}'s rules ({frontends} service frontends there)"
        )),
        NatLookup::NoTargets => {
            evidence.push(format!("{node}'s rules drop NodePort {port}: no (local) endpoint"))
        }
        NatLookup::Targets(s) => {
            let to: Vec<String> =
                s.targets.iter().map(|t| SocketAddr::new(t.ip, t.port.get()).to_string()).collect();
            evidence.push(format!("{node}'s rules DNAT NodePort {port} to {}", to.join(", ")));
        }
        NatLookup::Unknown => {}
    }
    evidence.push(format!("NodePort {port} answers on {elsewhere} other nodes"));
    evidence.extend(a.cell_lines(failing));
    if local {
        let verdict = format!(
            "NodePort {port} ({name}) answers only on nodes that run a backend: externalTrafficPolicy=Local, and \
             {node} has none"
        );
        return Draft::new(
            ids::NODEPORT_LOCAL_POLICY,
            Severity::Info,
            (CulpritKind::Service, name),
            "1.6",
            verdict,
        )
        .affected(a.paths(failing))
        .evidence(evidence)
        .suggestion(
            "send NodePort traffic only to nodes with a backend (the load balancer's health check does), or \
                 set externalTrafficPolicy: Cluster if the client IP need not be kept"
                .to_owned(),
        );
    }
    let verdict = format!(
        "NodePort {port} ({name}) fails on {node} only, from every node that tries it: its NodePort rules \
         (kube-proxy) on {node}"
    );
    Draft::new(
        ids::NODEPORT_BROKEN,
        Severity::Critical,
        (CulpritKind::Path, format!("nodeport/{node}:{port}")),
        "1.6",
        verdict,
    )
    .affected(a.paths(failing))
    .evidence(evidence)
    .suggestion(format!(
        "check kube-proxy on {node}: `iptables-save -t nat | grep {port}` (KUBE-NODEPORTS) there, its logs, \
         and host firewalls for port {port} on {node}"
    ))
}
