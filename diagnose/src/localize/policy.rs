//! What the cluster's NetworkPolicies say of each cell ([`crate::policy`]'s evaluator over the
//! inventory's policies and namespaces), and the finding when the dataplane disagrees.
//!
//! - A cell that fails where policy denies it (or leaves it undefined, as written a deny — an
//!   ICMP echo to an isolated pod) is **denied, as intended**: never a finding, listed apart.
//! - A cell that works where policy (defined, not undefined) denies it is **policy not
//!   enforced**: one finding per deciding policy, blaming the node when every such path ends
//!   on that node's pods while the policy holds elsewhere (the CNI there ignores policies),
//!   the policy otherwise (no one enforces it: the plugin has no NetworkPolicy support, or the
//!   policy is not what the team thinks).
//! - A failing cell policy allows is a failure like any other.
//!
//! A service VIP is judged per ready backend (policy applies after the DNAT, on the backend's
//! pod and target port); the cell gets a verdict only when every backend gets the same one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use netdiag_model::dns::DnsTransport;
use netdiag_model::inventory::{PodInfo, TrafficPolicy};
use netdiag_model::netpol::PolicyRef;
use netdiag_model::probe::{ProbeKind, Source};
use netdiag_model::{CulpritKind, NodeName, Port, Severity};

use super::context::Context;
use super::evidence::{Analysis, Obs};
use super::report::{Draft, ids};
use crate::matrix::Destination;
use crate::matrix::key::IpFamily;
use crate::policy::{
    Decision, Endpoint, HostKind, PodEndpoint, PolicyVerdict, Side, Traffic, Transport, UndefinedReason,
    Verdict, Via,
};

/// What policy says of one cell.
#[derive(Debug, Clone)]
pub(crate) struct Expectation {
    /// The verdict (for a VIP whose backends differ, that of a backend policy may shut).
    pub(crate) verdict: PolicyVerdict,
    /// The pods whose isolation denies it (the destination for ingress, the source for
    /// egress), with their nodes.
    pub(crate) denying: Vec<(String, NodeName)>,
    /// A VIP some of whose backends policy may shut while it allows the others: failing now
    /// and then is what policy asks for.
    pub(crate) partial: bool,
}

impl Expectation {
    /// Policy may keep this path shut — a failure there is no finding: denied; undefined where
    /// the rules as written deny (an ICMP echo to a pod whose rules admit only some ports);
    /// or undefined because the address the plugin sees is not the one the rules were
    /// written for (a pod reaching itself through its Service, a NodePort's masqueraded
    /// client, a hostNetwork peer). An echo the rules as written admit is not shut: plugins
    /// let it through, so its failure is evidence like any other.
    pub(crate) fn shut(&self) -> bool {
        let v = &self.verdict;
        match v.verdict {
            Verdict::Deny => true,
            Verdict::Undefined => {
                v.as_written == Some(Decision::Deny)
                    || v.undefined.iter().any(|r| {
                        matches!(
                            r,
                            UndefinedReason::ServiceHairpin
                                | UndefinedReason::NodePortOrLoadBalancer
                                | UndefinedReason::HostNetworkPeer
                        )
                    })
            }
            Verdict::Allow | Verdict::Pending => false,
        }
    }

    /// A deny the semantics define (not left to the plugin) for every backend: a working
    /// path here is a finding.
    pub(crate) fn strictly_denied(&self) -> bool {
        self.verdict.verdict == Verdict::Deny && !self.partial
    }

    /// Policy isolates an end of this path and admits it: if it fails, policy is not why.
    pub(crate) fn allowed_under_isolation(&self) -> bool {
        self.verdict.verdict == Verdict::Allow
            && !self.partial
            && (self.verdict.egress.is_isolated() || self.verdict.ingress.is_isolated())
    }

    /// The policy verdict in one sentence, for the list of denied paths.
    pub(crate) fn reason(&self) -> String {
        if self.partial {
            format!("to some of its backends: {}", self.verdict)
        } else {
            self.verdict.to_string()
        }
    }
}

/// The policy verdict of cell `o`; None without policies, for paths policy does not speak
/// to (NodePorts), or for a VIP whose backends get different verdicts.
pub(crate) fn expect(ctx: &Context<'_>, o: &Obs) -> Option<Expectation> {
    if ctx.policies.is_empty() {
        return None;
    }
    let family = family_of(&o.dest);
    let source = endpoint_of_source(ctx, &o.source, family)?;
    let transport = |port: Option<Port>| -> Option<Transport> {
        match (o.kind, &o.dest) {
            (ProbeKind::Icmp | ProbeKind::Mtu, _) => Some(Transport::Icmp),
            (ProbeKind::Dns, Destination::Dns { transport: DnsTransport::Tcp, .. }) => {
                Some(Transport::Tcp(port?))
            }
            (ProbeKind::Dns, _) => Some(Transport::Udp(port?)),
            (ProbeKind::Tcp | ProbeKind::Http, _) => Some(Transport::Tcp(port?)),
        }
    };
    let one = |dest: Endpoint<'_>, port: Option<Port>, via: Via| -> Option<Expectation> {
        let traffic = Traffic { source, destination: dest, transport: transport(port)?, via };
        let verdict = ctx.policies.evaluate(&traffic);
        let mut denying = Vec::new();
        if let (Side::Denied { .. }, Endpoint::Pod(p)) = (&verdict.ingress, &dest) {
            denying.push((format!("{}/{}", p.namespace, p.name), p.node.clone()));
        }
        if let (Side::Denied { .. }, Endpoint::Pod(p)) = (&verdict.egress, &source) {
            denying.push((format!("{}/{}", p.namespace, p.name), p.node.clone()));
        }
        Some(Expectation { verdict, denying, partial: false })
    };
    match &o.dest {
        Destination::Pod { pod, port, family } => {
            let info = ctx.pod_info(pod)?;
            one(Endpoint::Pod(pod_at(info, *family)?), *port, Via::Direct)
        }
        Destination::Endpoint { pod, port, family, .. } => {
            let info = ctx.pod_info(pod)?;
            one(Endpoint::Pod(pod_at(info, *family)?), Some(*port), Via::Direct)
        }
        Destination::Node { node, port, family } => {
            let ip = ctx.inventory.node(node)?.ips.iter().copied().find(|ip| IpFamily::of(*ip) == *family)?;
            one(Endpoint::Host { ip, node, kind: HostKind::Node }, *port, Via::Direct)
        }
        Destination::Address { ip, port } => one(address(ctx, *ip)?, *port, Via::Direct),
        Destination::Service { .. } | Destination::Dns { .. } => {
            let svc = a_service(ctx, o)?;
            let port = match &o.dest {
                Destination::Service { port, .. } => Some(svc.target_port(*port)),
                _ => Port::new(53).ok().map(|p| svc.target_port(p)),
            };
            let via = match &o.dest {
                Destination::Dns { nameserver: Some(ip), .. } if ctx.owner_of_ip(*ip).is_some() => {
                    Via::Direct
                }
                _ => Via::ClusterIp,
            };
            let mut each = Vec::new();
            for b in svc.backends.iter().filter(|b| IpFamily::of(b.ip) == family) {
                let dest = match &b.pod {
                    Some(p) => Endpoint::Pod(PodEndpoint::of(ctx.pod_info(p)?).at(b.ip)),
                    None => address(ctx, b.ip)?,
                };
                each.push(one(dest, port, via)?);
            }
            combine(each)
        }
        Destination::NodePort { port, .. } if matches!(o.kind, ProbeKind::Tcp | ProbeKind::Http) => {
            // The node owning the port DNATs to a backend; under `Cluster` it masquerades the
            // client to its own address, under `Local` it keeps it (and picks a local backend).
            let svc = ctx.service_with_node_port(*port)?;
            let via_node = o.dst_node.as_ref()?;
            let etp = svc.info.external_traffic_policy;
            let local = etp == TrafficPolicy::Local;
            let target = svc.info.ports.iter().find(|p| p.node_port == Some(*port)).map(|p| p.target_port);
            let masquerade = match ctx
                .inventory
                .node(via_node)?
                .ips
                .iter()
                .copied()
                .find(|ip| IpFamily::of(*ip) == family)
            {
                Some(ip) => Endpoint::Host { ip, node: via_node, kind: HostKind::Node },
                None => return None,
            };
            let client = if local { source } else { masquerade };
            let mut each = Vec::new();
            for b in svc.backends.iter().filter(|b| IpFamily::of(b.ip) == family) {
                if local && b.node.as_ref() != Some(via_node) {
                    continue;
                }
                let dest = match &b.pod {
                    Some(p) => Endpoint::Pod(PodEndpoint::of(ctx.pod_info(p)?).at(b.ip)),
                    None => address(ctx, b.ip)?,
                };
                let traffic = Traffic {
                    source: client,
                    destination: dest,
                    transport: Transport::Tcp(target?),
                    via: Via::NodePort { external_traffic_policy: etp },
                };
                let verdict = ctx.policies.evaluate(&traffic);
                let mut denying = Vec::new();
                if let (Side::Denied { .. }, Endpoint::Pod(p)) = (&verdict.ingress, &dest) {
                    denying.push((format!("{}/{}", p.namespace, p.name), p.node.clone()));
                }
                each.push(Expectation { verdict, denying, partial: false });
            }
            combine(each)
        }
        Destination::NodePort { .. } => None,
    }
}

/// One expectation for a VIP from its backends': shut when policy may shut every backend,
/// partial when it may shut some, allowed when it allows them all.
fn combine(each: Vec<Expectation>) -> Option<Expectation> {
    let shut = each.iter().filter(|e| e.shut()).count();
    let mut pick = if shut > 0 { each.iter().find(|e| e.shut()) } else { each.first() }.cloned()?;
    pick.partial = shut > 0 && shut < each.len();
    pick.denying = each.iter().filter(|e| e.shut()).flat_map(|e| e.denying.iter().cloned()).collect();
    Some(pick)
}

fn family_of(d: &Destination) -> IpFamily {
    match d {
        Destination::Pod { family, .. }
        | Destination::Endpoint { family, .. }
        | Destination::Service { family, .. }
        | Destination::Node { family, .. } => *family,
        Destination::Address { ip, .. } | Destination::Dns { nameserver: Some(ip), .. } => IpFamily::of(*ip),
        Destination::Dns { nameserver: None, .. } => IpFamily::V4,
        Destination::NodePort { node, .. } => match node {
            crate::matrix::key::NodeAddr::Node(_, f) => *f,
            crate::matrix::key::NodeAddr::Ip(ip) => IpFamily::of(*ip),
        },
    }
}

fn pod_at(info: &PodInfo, family: IpFamily) -> Option<PodEndpoint<'_>> {
    let ip = info.ips.iter().copied().find(|ip| IpFamily::of(*ip) == family)?;
    Some(PodEndpoint::of(info).at(ip))
}

fn endpoint_of_source<'c>(ctx: &'c Context<'_>, s: &'c Source, family: IpFamily) -> Option<Endpoint<'c>> {
    match s {
        Source::Pod(p) => Some(Endpoint::Pod(pod_at(ctx.pod_info(p)?, family)?)),
        Source::Node(n) => {
            let ip = ctx.inventory.node(n)?.ips.iter().copied().find(|ip| IpFamily::of(*ip) == family)?;
            Some(Endpoint::Host { ip, node: n, kind: HostKind::Node })
        }
    }
}

fn address<'c>(ctx: &'c Context<'_>, ip: IpAddr) -> Option<Endpoint<'c>> {
    Some(match ctx.owner_of_ip(ip) {
        Some((Some(pod), _)) => Endpoint::Pod(PodEndpoint::of(ctx.pod_info(pod)?).at(ip)),
        Some((None, node)) => Endpoint::Host { ip, node, kind: HostKind::Node },
        None => Endpoint::External(ip),
    })
}

fn a_service<'c, 'a>(ctx: &'c Context<'a>, o: &Obs) -> Option<&'c super::context::ServiceView<'a>> {
    match &o.dest {
        Destination::Service { service, .. } => ctx.services.get(service),
        Destination::Dns { nameserver: Some(ip), .. } => {
            ctx.service_with_vip(*ip).or_else(|| ctx.dns_service())
        }
        Destination::Dns { nameserver: None, .. } => ctx.dns_service(),
        _ => None,
    }
}

/// `policy-not-enforced` findings: working cells policy denies. Each such cell is the fault of
/// the nodes whose pods should have refused it (the destination's for ingress, the source's
/// for egress); cells are grouped on the node most of them share. A node whose group it is,
/// while policies hold on other nodes (denied paths fail there), is named; what is left — no
/// node enforces — is one finding per policy set. They claim nothing (their cells are ok).
pub(crate) fn not_enforced(a: &Analysis<'_>) -> Vec<Draft> {
    if a.unenforced.is_empty() {
        return Vec::new();
    }
    // The nodes where policy demonstrably holds: a denied path failing there.
    let holds_on: BTreeSet<&NodeName> =
        a.expected.iter().flat_map(|(_, e)| e.denying.iter().map(|(_, n)| n)).collect();
    let mut per_node: BTreeMap<&NodeName, usize> = BTreeMap::new();
    for (_, e) in &a.unenforced {
        for n in e.denying.iter().map(|(_, n)| n).collect::<BTreeSet<_>>() {
            *per_node.entry(n).or_default() += 1;
        }
    }
    let mut by_node: BTreeMap<&NodeName, Vec<usize>> = BTreeMap::new();
    let mut by_policy: BTreeMap<Vec<PolicyRef>, Vec<usize>> = BTreeMap::new();
    for (k, (_, e)) in a.unenforced.iter().enumerate() {
        let home = e
            .denying
            .iter()
            .map(|(_, n)| n)
            .max_by_key(|n| (per_node.get(n).copied().unwrap_or(0), std::cmp::Reverse(*n)));
        match home {
            Some(n) if holds_on.iter().any(|h| h != &n) => by_node.entry(n).or_default().push(k),
            _ => by_policy
                .entry(e.verdict.deciding_policies().into_iter().cloned().collect())
                .or_default()
                .push(k),
        }
    }
    let policies_of = |members: &[usize]| -> String {
        let set: BTreeSet<String> = members
            .iter()
            .flat_map(|&k| a.unenforced[k].1.verdict.deciding_policies().into_iter().map(ToString::to_string))
            .collect();
        set.into_iter().collect::<Vec<_>>().join(", ")
    };
    let mut out = Vec::new();
    for (node, members) in by_node {
        let names = policies_of(&members);
        let elsewhere: Vec<String> =
            holds_on.iter().filter(|h| **h != node).map(ToString::to_string).collect();
        let verdict = format!(
            "NetworkPolicy is not enforced on node {node}: {} paths that {names} deny connect there, while policy holds on {}",
            members.len(),
            elsewhere.join(", ")
        );
        let suggestion = format!(
            "check the network plugin's agent on {node} (its pod and logs, and its policy rules: `iptables-save` or \
             `nft list ruleset` in the pods' namespaces and on the node): it does not apply {names}"
        );
        out.push(draft(a, &members, (CulpritKind::Node, node.to_string()), verdict, suggestion));
    }
    for (policies, members) in by_policy {
        let names = policies.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let first = &a.unenforced[members[0]].1.verdict;
        let verdict = format!("{names} is not enforced: {} paths it denies connect ({first})", members.len());
        let suggestion = format!(
            "does the network plugin enforce NetworkPolicy at all (flannel alone does not)? If it does, read \
             `kubectl describe networkpolicy` for {names}: is it what the team thinks it is?"
        );
        out.push(draft(a, &members, (CulpritKind::NetworkPolicy, names), verdict, suggestion));
    }
    out
}

/// Adds to each finding over failing paths a policy admits (an end isolated, a rule allowing
/// it) the line that says so: the first question about a failing path in a cluster with
/// policies is whether one of them is the cause.
pub(crate) fn note_allowed(a: &Analysis<'_>, drafts: &mut [Draft]) {
    let mut noted = BTreeSet::new();
    for (&i, sentence) in &a.policy_allowed {
        let Some(d) = a.owner(i) else { continue };
        if !noted.insert(d) {
            continue;
        }
        if let Some(draft) = drafts.get_mut(d) {
            draft.evidence.insert(
                0,
                format!(
                    "nothing in NetworkPolicy denies these paths, yet they fail ({}: {sentence})",
                    a.obs[i].path()
                ),
            );
        }
    }
}

fn draft(
    a: &Analysis<'_>,
    members: &[usize],
    culprit: (CulpritKind, String),
    verdict: String,
    suggestion: String,
) -> Draft {
    let cells: Vec<usize> = members.iter().map(|&k| a.unenforced[k].0).collect();
    let mut evidence: Vec<String> = Vec::new();
    for &k in members.iter().take(3) {
        let (i, e) = &a.unenforced[k];
        evidence.push(format!("{}: {} — yet it connects", a.obs[*i].path(), e.verdict));
    }
    evidence.extend(a.cell_lines(&cells));
    Draft::new(ids::POLICY_NOT_ENFORCED, Severity::Warning, culprit, "1.6", verdict)
        .affected(a.paths(&cells))
        .evidence(evidence)
        .suggestion(suggestion)
}
