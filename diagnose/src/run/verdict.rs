//! Reading a run's steps back into a verdict, in the runbook's order: routes on the source's
//! node, then the node level (backend and its node both silent), DNS, the service path (VIP
//! fails while backends answer), the backend pod and its ports, NodePorts, then degradations
//! (path MTU, loss, HTTP). One source sees one row of the matrix, so it cannot tell a cut node
//! pair from an isolated node, or DNS blocked from its node from DNS down everywhere: when the
//! continuous diagnosis already holds a finding of the same family on this run's path, that
//! wider finding is the verdict, with the run's failing steps added to its evidence. A run
//! whose steps all pass still reports a continuous finding on its path (a keepalive longer than
//! the path's idle cut shows on no quick probe).

use std::collections::BTreeSet;
use std::net::IpAddr;

use netdiag_model::finding::{CulpritKind, Finding, Severity};
use netdiag_model::outcome::{DnsFailure, HttpFailure, IcmpFailure, MtuFailure, Outcome, TcpFailure};
use netdiag_model::probe::ProbeKind;
use netdiag_model::run::{RunStep, StepStatus};
use netdiag_model::text::Text;
use netdiag_model::{NodeName, PodRef};

use super::expand::{ExpandedRun, StepRole};
use crate::localize::report::{Draft, ids};

/// `affected` holds one path: the run's.
const MAX_AFFECTED: usize = 8;

/// A run-only finding id: the backend's port connects but HTTP fails.
const HTTP_FAILED: &str = "http-failed";
/// A run-only finding id: the path is denied by NetworkPolicy and the dataplane agrees.
const DENIED_BY_POLICY: &str = "denied-by-policy";
/// A run-only finding id: a plain address (not a pod or node) does not answer.
const ADDRESS_UNREACHABLE: &str = "address-unreachable";

/// The run's verdict: the finding that explains its failing steps, or None when every step
/// passed and nothing the continuous diagnosis knows concerns this path.
pub fn verdict(run: &ExpandedRun, steps: &[RunStep], continuous: &[Finding]) -> Option<Finding> {
    let view = View::new(run, steps);
    if let Some(p) = run.policy.as_ref().filter(|p| p.denied) {
        return policy_verdict(p, &view).into_finding(MAX_AFFECTED);
    }
    let relevant: Vec<&Finding> = continuous.iter().filter(|f| view.concerns(f)).collect();
    let own = own_verdict(&view);
    // The run's own verdict, widened by a continuous finding of its family, comes first: a
    // hard failure both see is that failure, even while a degradation on the same path (a
    // lossy node a moment ago) is still listed.
    if let Some(draft) = &own
        && let Some(wider) = relevant.iter().find(|f| family(&draft.id).contains(&f.id.as_str()))
    {
        return Some(with_run_evidence(wider, &view, "this run's failing steps agree"));
    }
    // Timeouts on a path the matrix already knows to be lossy (or to drop large packets, or to
    // cut idle flows) are that degradation, whichever probe they happened to hit this time.
    if view.failures_are_timeouts_only()
        && let Some(degraded) = relevant.iter().find(|f| DEGRADATIONS.contains(&f.id.as_str()))
    {
        let why = if view.failing_lines().is_empty() {
            "every step of this run passed; continuous monitoring has this finding"
        } else {
            "this run's timeouts fit it"
        };
        return Some(with_run_evidence(degraded, &view, why));
    }
    match own {
        Some(draft) => draft.into_finding(MAX_AFFECTED),
        None => relevant.first().map(|f| {
            with_run_evidence(
                f,
                &view,
                "every step of this run passed; continuous monitoring has this finding",
            )
        }),
    }
}

/// A path NetworkPolicy denies: the run still probed it, and the dataplane either agrees
/// (its backend steps fail: denied as intended) or lets it through (policy not enforced).
fn policy_verdict(p: &super::policy::RunPolicy, view: &View<'_>) -> Draft {
    let backends: Vec<&RunStep> = view
        .steps
        .iter()
        .filter(|(r, _)| {
            matches!(r, StepRole::Backend { port: Some(_), kind: ProbeKind::Tcp | ProbeKind::Http, .. })
        })
        .map(|(_, s)| *s)
        .collect();
    let through = backends.iter().filter(|s| !view.failed(s)).count();
    let culprit = (CulpritKind::NetworkPolicy, p.policies.join(", "));
    let draft = if through == 0 {
        Draft::new(
            DENIED_BY_POLICY,
            Severity::Info,
            culprit,
            "1.6",
            format!("denied by NetworkPolicy, as intended: the dataplane agrees, the connection fails. {}", p.summary),
        )
        .suggestion(
            "nothing to repair if the policy is what the team wants; otherwise add an ingress (or egress) rule              admitting this source: `kubectl describe networkpolicy` lists what each admits"
                .to_owned(),
        )
    } else {
        Draft::new(
            ids::POLICY_NOT_ENFORCED,
            Severity::Warning,
            culprit,
            "1.6",
            format!(
                "NetworkPolicy denies this path, yet {through} of {} backends answered: the policy is not enforced. {}",
                backends.len(),
                p.summary
            ),
        )
        .suggestion(
            "does the network plugin enforce NetworkPolicy (flannel alone does not)? If it does, check its agent on              the backend's node and on the source's node"
                .to_owned(),
        )
    };
    let mut evidence = vec![p.summary.clone()];
    evidence.extend(view.failing_lines());
    draft.affected(vec![view.path()]).evidence(evidence)
}

/// Findings about paths that work most of the time: one run may or may not trip over them.
const DEGRADATIONS: &[&str] = &[
    ids::NODE_PACKET_LOSS,
    ids::MTU_BLACKHOLE,
    ids::MTU_REDUCED,
    ids::KEEPALIVE_EXCEEDS_IDLE_CUT,
    ids::KEEPALIVE_UNVERIFIED,
];

/// Ids that name the same trouble at different widths.
fn family(id: &str) -> &'static [&'static str] {
    // A node firewall's rule on the path, on record, explains what the run saw of it.
    const NODE: &[&str] = &[
        ids::NODE_ISOLATED,
        ids::NODE_PAIR_BROKEN,
        ids::ROUTE_MISSING,
        ids::NODE_FORWARDING_DISABLED,
        ids::FIREWALL_DROP,
        ids::NEIGHBOUR_MISMATCH,
    ];
    const DNS: &[&str] = &[
        ids::DNS_DOWN,
        ids::DNS_UNREACHABLE_FROM_NODE,
        ids::DNS_SERVFAIL,
        ids::DNS_NAME_MISSING,
        ids::DNS_POD_RESOLVER,
    ];
    const SERVICE: &[&str] = &[
        ids::SERVICE_PATH_BROKEN,
        ids::SERVICE_NO_ENDPOINTS,
        ids::NODEPORT_BROKEN,
        ids::NODEPORT_LOCAL_POLICY,
    ];
    // A node that forwards nothing silences its pods.
    const POD: &[&str] = &[
        ids::POD_DOWN,
        ids::NODE_ISOLATED,
        ids::NODE_FORWARDING_DISABLED,
        ids::FIREWALL_DROP,
        ids::NEIGHBOUR_MISMATCH,
    ];
    const PORT: &[&str] = &[ids::PORT_REFUSED, ids::PORT_DROPPED, ids::FIREWALL_DROP];
    const MTU: &[&str] = &[ids::MTU_BLACKHOLE, ids::MTU_REDUCED];
    const LOSS: &[&str] = &[ids::NODE_PACKET_LOSS];
    match id {
        ids::NODE_ISOLATED | ids::NODE_PAIR_BROKEN | ids::ROUTE_MISSING => NODE,
        ids::DNS_DOWN
        | ids::DNS_UNREACHABLE_FROM_NODE
        | ids::DNS_SERVFAIL
        | ids::DNS_NAME_MISSING
        | ids::DNS_POD_RESOLVER => DNS,
        ids::SERVICE_PATH_BROKEN
        | ids::SERVICE_NO_ENDPOINTS
        | ids::NODEPORT_BROKEN
        | ids::NODEPORT_LOCAL_POLICY => SERVICE,
        ids::POD_DOWN => POD,
        ids::PORT_REFUSED | ids::PORT_DROPPED => PORT,
        ids::MTU_BLACKHOLE | ids::MTU_REDUCED => MTU,
        ids::NODE_PACKET_LOSS => LOSS,
        _ => &[],
    }
}

fn with_run_evidence(f: &Finding, view: &View<'_>, why: &str) -> Finding {
    let mut out = f.clone();
    let mut evidence = vec![Text::lossy(&format!("{why} ({}):", view.path()))];
    evidence.extend(view.failing_lines().iter().map(|l| Text::lossy(l)));
    evidence.extend(f.evidence.iter().cloned());
    evidence.truncate(netdiag_model::limits::MAX_FINDING_EVIDENCE);
    out.evidence = evidence;
    out
}

/// The steps with their roles.
struct View<'a> {
    run: &'a ExpandedRun,
    steps: Vec<(&'a StepRole, &'a RunStep)>,
    src_node: &'a NodeName,
}

impl<'a> View<'a> {
    fn new(run: &'a ExpandedRun, steps: &'a [RunStep]) -> Self {
        // Steps arrive as they finish; the decision tree reads them in the runbook's order.
        let mut steps: Vec<(&StepRole, &RunStep)> =
            steps.iter().filter_map(|s| Some((run.roles.get(usize::try_from(s.index).ok()?)?, s))).collect();
        steps.sort_by_key(|(_, s)| s.index);
        View { run, steps, src_node: &run.node }
    }

    fn path(&self) -> String {
        format!("{} -> {}", self.run.request.from, self.run.request.to)
    }

    fn failed(&self, step: &RunStep) -> bool {
        step.status == StepStatus::Failed
    }

    fn outcome(step: &RunStep) -> Option<Outcome> {
        step.result.as_ref().map(|r| r.outcome)
    }

    /// One line per failing or warning step, then its evidence.
    fn failing_lines(&self) -> Vec<String> {
        self.lines_of(|_, s| matches!(s.status, StepStatus::Failed | StepStatus::Warning))
    }

    /// Every failing or warning step is a probe that timed out (or lost part of a burst, or a
    /// path-MTU probe): nothing refused, no rule or route missing, no DNS error answer.
    fn failures_are_timeouts_only(&self) -> bool {
        self.steps.iter().filter(|(_, s)| matches!(s.status, StepStatus::Failed | StepStatus::Warning)).all(
            |(_, s)| match View::outcome(s) {
                Some(o) => matches!(
                    o,
                    Outcome::Ok
                        | Outcome::Icmp(IcmpFailure::Timeout)
                        | Outcome::Tcp(TcpFailure::Timeout)
                        | Outcome::Http(HttpFailure::Timeout)
                        | Outcome::Dns(DnsFailure::Timeout)
                        | Outcome::Mtu(_)
                ),
                None => false,
            },
        )
    }

    fn lines_of(&self, pick: impl Fn(&StepRole, &RunStep) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for (r, s) in &self.steps {
            if pick(r, s) {
                out.push(format!("step {} {} {}: {}", s.index, s.name, s.status, s.description));
                // A passing probe's first line (its outcome) says enough.
                let brief = s.status == StepStatus::Ok && s.result.is_some();
                out.extend(
                    s.evidence.iter().take(if brief { 1 } else { usize::MAX }).map(|e| format!("  {e}")),
                );
            }
        }
        out
    }

    fn nodes_on_path(&self) -> BTreeSet<&NodeName> {
        let mut nodes: BTreeSet<&NodeName> = [self.src_node].into();
        for role in &self.run.roles {
            match role {
                StepRole::Backend { node: Some(n), .. }
                | StepRole::NodeIcmp { node: n }
                | StepRole::NodePort { node: n, .. } => {
                    nodes.insert(n);
                }
                _ => {}
            }
        }
        nodes
    }

    fn pods_on_path(&self) -> BTreeSet<&PodRef> {
        let mut pods: BTreeSet<&PodRef> = self.run.source_pod().into_iter().collect();
        for role in &self.run.roles {
            if let StepRole::Backend { pod: Some(p), .. } = role {
                pods.insert(p);
            }
        }
        pods
    }

    fn asks_dns(&self) -> bool {
        self.run.roles.iter().any(|r| matches!(r, StepRole::Resolve { .. } | StepRole::Nameserver { .. }))
    }

    /// Whether a continuous finding's culprit sits on this run's path.
    fn concerns(&self, f: &Finding) -> bool {
        let Some(c) = &f.culprit else { return false };
        let name = c.name.as_str();
        let nodes = self.nodes_on_path();
        match c.kind {
            CulpritKind::Node => nodes.iter().any(|n| n.as_str() == name),
            CulpritKind::NodePair => {
                let ends: Vec<&str> = name.split(['↔', '→']).collect();
                ends.len() == 2
                    && ends.contains(&self.src_node.as_str())
                    && ends.iter().all(|e| nodes.iter().any(|n| n.as_str() == *e))
            }
            CulpritKind::Pod => self.pods_on_path().iter().any(|p| p.to_string() == name),
            CulpritKind::Port => self
                .pods_on_path()
                .iter()
                .any(|p| name.strip_prefix(&p.to_string()).is_some_and(|rest| rest.starts_with(':'))),
            CulpritKind::Service => self.run.service.as_ref().is_some_and(|(s, _, _)| s.to_string() == name),
            CulpritKind::Path => {
                let service_path = self.run.service.as_ref().is_some_and(|(s, _, _)| {
                    name.starts_with(&format!("svc/{s}:"))
                        && name.ends_with(&format!(" on {}", self.src_node))
                });
                let node_port = self.run.roles.iter().any(|r| {
                    matches!(r, StepRole::NodePort { node, port, .. } if name == format!("nodeport/{node}:{port}"))
                });
                service_path || node_port
            }
            CulpritKind::Dns => {
                self.asks_dns()
                    && match name.split_once(" from ") {
                        Some((_, node)) => node == self.src_node.as_str(),
                        None => true,
                    }
            }
            // A policy left unenforced opens paths; it never explains a failing step.
            CulpritKind::NetworkPolicy => false,
        }
    }

    /// A finding about this run's path.
    fn draft(
        &self,
        id: &'static str,
        severity: Severity,
        culprit: (CulpritKind, String),
        runbook: &'static str,
        verdict: String,
    ) -> Draft {
        Draft::new(id, severity, culprit, runbook, verdict).affected(vec![self.path()])
    }

    fn backend_steps(&self) -> impl Iterator<Item = (&StepRole, &RunStep)> + '_ {
        self.steps.iter().copied().filter(|(r, _)| matches!(r, StepRole::Backend { .. }))
    }

    /// The node-icmp step toward `node`, when there is one.
    fn node_icmp(&self, node: &NodeName) -> Option<&RunStep> {
        self.steps
            .iter()
            .find(|(r, _)| matches!(r, StepRole::NodeIcmp { node: n } if n == node))
            .map(|(_, s)| *s)
    }
}

fn pair(x: &NodeName, y: &NodeName) -> String {
    if x <= y { format!("{x}↔{y}") } else { format!("{y}↔{x}") }
}

fn own_verdict(view: &View<'_>) -> Option<Draft> {
    routes(view)
        .or_else(|| node_level(view))
        .or_else(|| dns(view))
        .or_else(|| service(view))
        .or_else(|| backends(view))
        .or_else(|| node_ports(view))
        .or_else(|| degradations(view))
        .or_else(|| answers(view))
}

/// A failing routes step: the source's node has no usable route toward a backend's node.
fn routes(view: &View<'_>) -> Option<Draft> {
    let (_, step) = view.steps.iter().find(|(r, s)| matches!(r, StepRole::Routes) && view.failed(s))?;
    let missing: Vec<IpAddr> = view
        .run
        .roles
        .iter()
        .filter_map(|r| match r {
            StepRole::Backend { ip, .. } => Some(*ip),
            _ => None,
        })
        .filter(|ip| {
            let shown = ip.to_string();
            step.evidence.iter().any(|e| {
                let e = e.as_str();
                e.contains(&shown)
                    && (e.contains("no route") || e.contains("unreachable") || e.contains("blackhole"))
            })
        })
        .collect();
    let to = view.run.roles.iter().find_map(|r| match r {
        StepRole::Backend { ip, node: Some(n), .. } if missing.contains(ip) => Some(n.clone()),
        _ => None,
    });
    let from = view.src_node;
    let (culprit, verdict) = match &to {
        Some(to) => (
            format!("{from}→{to}"),
            format!("no route on {from} toward {to}'s pods: pods on {from} cannot reach pods on {to}"),
        ),
        None => (from.to_string(), format!("{from} has no usable route toward the target")),
    };
    let kind = if to.is_some() { CulpritKind::NodePair } else { CulpritKind::Node };
    Some(view.draft(ids::ROUTE_MISSING, Severity::Critical, (kind, culprit), "1.6", verdict).evidence(view.lines_of(|r, s| matches!(r, StepRole::Routes) || (matches!(r, StepRole::Backend { .. }) && view.failed(s)))).suggestion(format!(
            "restore the pod-CIDR route on {from} (`ip route` there vs the other nodes), or restart the network \
             plugin's agent on {from} that owns the routes"
        )))
}

/// A backend on another node and that node's own address both silent: the node pair.
fn node_level(view: &View<'_>) -> Option<Draft> {
    let from = view.src_node;
    for (role, step) in view.backend_steps() {
        let StepRole::Backend { node: Some(node), kind: ProbeKind::Icmp, .. } = role else { continue };
        if node == from || !view.failed(step) {
            continue;
        }
        let Some(node_step) = view.node_icmp(node) else { continue };
        if !view.failed(node_step) {
            continue;
        }
        let verdict = format!(
            "from {}, pods on {node} and {node} itself do not answer: link or route {from}↔{node}",
            view.run.request.from
        );
        return Some(view.draft(ids::NODE_PAIR_BROKEN, Severity::Critical, (CulpritKind::NodePair, pair(from, node)), "1.6", verdict).evidence(view.failing_lines()).suggestion(format!(
                "check the link and firewalls between {from} and {node}: `ping` each other's node address, \
                 `iptables-save | grep DROP` on both; `netdiag matrix --level node` shows whether other pairs work"
            )));
    }
    None
}

fn dns(view: &View<'_>) -> Option<Draft> {
    let resolve = view.steps.iter().find(|(r, _)| matches!(r, StepRole::Resolve { .. }));
    let nameservers: Vec<(&StepRole, &RunStep)> =
        view.steps.iter().copied().filter(|(r, _)| matches!(r, StepRole::Nameserver { .. })).collect();
    let resolve_failed = resolve.is_some_and(|(_, s)| view.failed(s));
    let ns_failed: Vec<&RunStep> =
        nameservers.iter().filter(|(_, s)| view.failed(s)).map(|(_, s)| *s).collect();
    if !resolve_failed && ns_failed.is_empty() {
        return None;
    }
    let outcomes: Vec<Outcome> =
        resolve.iter().map(|(_, s)| *s).chain(ns_failed.iter().copied()).filter_map(View::outcome).collect();
    let has = |f: DnsFailure| outcomes.contains(&Outcome::Dns(f));
    let evidence = view.lines_of(|r, _| matches!(r, StepRole::Resolve { .. } | StepRole::Nameserver { .. }));
    let src = &view.run.request.from;
    let node = view.src_node;
    let dns = &view.run.dns_culprit;
    if has(DnsFailure::ServFail) || has(DnsFailure::Refused) {
        return Some(view.draft(ids::DNS_SERVFAIL, Severity::Critical, (CulpritKind::Dns, dns.clone()), "1.2", format!("DNS fails from {src}: the cluster DNS answers SERVFAIL (or refuses)")).evidence(evidence).suggestion("check the DNS pods' logs (`kubectl -n kube-system logs -l k8s-app=kube-dns`) and their upstreams"
                .to_owned()));
    }
    if has(DnsFailure::NxDomain) || has(DnsFailure::NoRecords) {
        let name = match resolve {
            Some((StepRole::Resolve { name, .. }, _)) => name.clone(),
            _ => view.run.request.to.to_string(),
        };
        return Some(view.draft(ids::DNS_NAME_MISSING, Severity::Critical, (CulpritKind::Dns, name.clone()), "1.2", format!("DNS from {src}: {name} does not exist (NXDOMAIN or no records)")).evidence(evidence).suggestion(format!("check the name and namespace: `kubectl get svc -A | grep {name}`; a headless service needs ready pods")));
    }
    let all_ns_fail = !nameservers.is_empty() && ns_failed.len() == nameservers.len();
    if resolve_failed && !nameservers.is_empty() && ns_failed.is_empty() {
        let pod = src.pod().map(ToString::to_string).unwrap_or_else(|| src.to_string());
        return Some(
            view.draft(
                ids::DNS_POD_RESOLVER,
                Severity::Warning,
                (CulpritKind::Pod, pod.clone()),
                "1.2",
                format!(
                    "DNS fails from {pod} with its own resolv.conf while the cluster nameservers answer it"
                ),
            )
            .evidence(evidence)
            .suggestion(format!(
                "compare {pod}'s /etc/resolv.conf (nameserver, search, ndots) with the cluster's DNS service"
            )),
        );
    }
    let shown = view
        .steps
        .iter()
        .find_map(|(r, _)| match r {
            StepRole::Nameserver { nameserver, .. } => Some(nameserver.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| dns.clone());
    let how = if all_ns_fail { "does not answer" } else { "answers only some queries" };
    Some(view.draft(ids::DNS_UNREACHABLE_FROM_NODE, Severity::Critical, (CulpritKind::Dns, format!("{shown} from {node}")), "1.2", format!("DNS fails from {src}: nameserver {shown} {how} from {node} (timeout)")).evidence(evidence).suggestion(format!(
            "find what drops DNS from {node}: `iptables-save | grep -e 'dport 53' -e {shown}` on {node}; is the \
             DNS service up anywhere (`netdiag diagnose`)?"
        )))
}

/// The VIP fails: no ready endpoints, or the backends answer and the source node's NAT rules
/// are the break.
fn service(view: &View<'_>) -> Option<Draft> {
    let (svc, port, ready) = view.run.service.as_ref()?;
    let vip_failed = view.steps.iter().any(|(r, s)| matches!(r, StepRole::Vip { .. }) && view.failed(s));
    let node = view.src_node;
    if *ready == 0 {
        return Some(
            view.draft(
                ids::SERVICE_NO_ENDPOINTS,
                Severity::Critical,
                (CulpritKind::Service, svc.to_string()),
                "1.5",
                format!("service {svc} has no ready endpoints"),
            )
            .evidence(view.lines_of(|r, _| matches!(r, StepRole::Vip { .. } | StepRole::NatRules { .. })))
            .suggestion(format!(
                "`kubectl -n {} get endpoints {}`: are its pods ready and do the labels match the selector?",
                svc.namespace, svc.name
            )),
        );
    }
    if !vip_failed {
        return None;
    }
    let backend_tcp: Vec<&RunStep> = view
        .backend_steps()
        .filter(|(r, _)| matches!(r, StepRole::Backend { kind: ProbeKind::Tcp, .. }))
        .map(|(_, s)| s)
        .collect();
    // Backends yes, VIP no: the path through the source node's rules. A failing backend
    // explains a failing VIP on its own (the VIP picked it), unless the rules are missing.
    let all_backends_answer =
        !backend_tcp.is_empty() && backend_tcp.iter().all(|s| s.status == StepStatus::Ok);
    let nat_failed = view.steps.iter().any(|(r, s)| matches!(r, StepRole::NatRules { .. }) && view.failed(s));
    let some_backend_answers = backend_tcp.iter().any(|s| s.status == StepStatus::Ok);
    if !(all_backends_answer || (nat_failed && some_backend_answers)) {
        return None;
    }
    let why = if nat_failed { ": its NAT rules for the VIP are missing" } else { "" };
    Some(view.draft(ids::SERVICE_PATH_BROKEN, Severity::Critical, (CulpritKind::Path, format!("svc/{svc}:{port} on {node}")), if nat_failed { "1.6" } else { "1.3" }, format!("backends answer, VIP does not, from {node}: service path (kube-proxy rules) broken on {node}{why}")).evidence(view.lines_of(|r, s| matches!(r, StepRole::Vip { .. } | StepRole::NatRules { .. }) || (matches!(r, StepRole::Backend { kind: ProbeKind::Tcp, .. }) && s.status == StepStatus::Ok))).suggestion(format!("check kube-proxy on {node}: `iptables-save -t nat | grep {svc_name}` there; is kube-proxy running and syncing on {node}?", svc_name = svc.name)))
}

/// A backend pod that does not answer ICMP (its node does), or a port that refuses or drops.
fn backends(view: &View<'_>) -> Option<Draft> {
    for (role, step) in view.backend_steps() {
        let StepRole::Backend { pod, node, ip, port, kind } = role else { continue };
        if !view.failed(step) {
            continue;
        }
        let whose = pod.as_ref().map_or_else(|| ip.to_string(), ToString::to_string);
        match (kind, View::outcome(step)) {
            (ProbeKind::Icmp, _) => {
                let Some(pod) = pod else {
                    return Some(unreachable_address(view, *ip, node.as_ref()));
                };
                return Some(view.draft(ids::POD_DOWN, Severity::Critical, (CulpritKind::Pod, pod.to_string()), "1.5", format!("pod {pod} ({ip}) does not answer ICMP or its ports from {}; its node answers", view.run.request.from)).evidence(view.failing_lines()).suggestion(format!("`kubectl -n {} describe pod {}`: is it running, its interface up (`ip link` inside it)?", pod.namespace, pod.name)));
            }
            (ProbeKind::Tcp, Some(Outcome::Tcp(how))) => {
                let Some(port) = port else { continue };
                let icmp_ok = view.backend_steps().any(|(r, s)| {
                    matches!(r, StepRole::Backend { ip: i, kind: ProbeKind::Icmp, .. } if i == ip)
                        && s.status != StepStatus::Failed
                });
                let (id, verdict, suggestion) = match how {
                    TcpFailure::Refused => (
                        ids::PORT_REFUSED,
                        format!(
                            "port {port} refused on {whose}: nothing listens there (containerPort / app config mismatch)"
                        ),
                        format!(
                            "check that the app in {whose} listens on {port} (`ss -ltn` in its namespace) and matches the containerPort"
                        ),
                    ),
                    TcpFailure::Timeout if icmp_ok => (
                        ids::PORT_DROPPED,
                        format!(
                            "port {port} on {whose} times out while ICMP answers: dropped (policy, firewall)"
                        ),
                        format!(
                            "look for NetworkPolicies and firewall rules that drop port {port} toward {whose}"
                        ),
                    ),
                    TcpFailure::Timeout | TcpFailure::Unreachable => (
                        ids::PORT_DROPPED,
                        format!("port {port} on {whose} does not answer (timeout / unreachable)"),
                        format!("look for NetworkPolicies, firewalls and routes toward {whose}"),
                    ),
                };
                return Some(
                    view.draft(
                        id,
                        Severity::Critical,
                        (CulpritKind::Port, format!("{whose}:{port}")),
                        "1.5",
                        verdict,
                    )
                    .evidence(view.failing_lines())
                    .suggestion(suggestion),
                );
            }
            _ => {}
        }
    }
    None
}

fn unreachable_address(view: &View<'_>, ip: IpAddr, node: Option<&NodeName>) -> Draft {
    let (kind, name) = match node {
        Some(n) => (CulpritKind::NodePair, pair(view.src_node, n)),
        None => (CulpritKind::Path, format!("{} -> {ip}", view.src_node)),
    };
    view.draft(
        ADDRESS_UNREACHABLE,
        Severity::Critical,
        (kind, name),
        "1.6",
        format!("{ip} does not answer from {}", view.run.request.from),
    )
    .evidence(view.failing_lines())
    .suggestion(format!(
        "check the routes toward {ip} and the firewalls on the way (`ip route get {ip}` on {})",
        view.src_node
    ))
}

/// NodePorts: failing only where no backend runs with externalTrafficPolicy Local is the
/// policy at work; any other failing node's NodePort path is broken.
fn node_ports(view: &View<'_>) -> Option<Draft> {
    let failing: Vec<&StepRole> = view
        .steps
        .iter()
        .filter(|(r, s)| matches!(r, StepRole::NodePort { .. }) && view.failed(s))
        .map(|(r, _)| *r)
        .collect();
    let first = failing.first()?;
    let StepRole::NodePort { service, node, port, .. } = first else { return None };
    let policy = failing
        .iter()
        .all(|r| matches!(r, StepRole::NodePort { local_policy: true, local_endpoint: false, .. }));
    let evidence = view.lines_of(|r, _| matches!(r, StepRole::NodePort { .. }));
    if policy {
        return Some(view.draft(ids::NODEPORT_LOCAL_POLICY, Severity::Info, (CulpritKind::Service, service.to_string()), "1.6", format!("NodePort {port} answers only on nodes that run a backend: externalTrafficPolicy=Local ({node} has none)")).evidence(evidence).suggestion("send NodePort traffic only to nodes with a backend, or set externalTrafficPolicy: Cluster if the client IP need not be kept".to_owned()));
    }
    let broken = failing
        .iter()
        .find(|r| !matches!(r, StepRole::NodePort { local_policy: true, local_endpoint: false, .. }))
        .unwrap_or(first);
    let StepRole::NodePort { node, port, .. } = broken else { return None };
    Some(view.draft(ids::NODEPORT_BROKEN, Severity::Critical, (CulpritKind::Path, format!("nodeport/{node}:{port}")), "1.6", format!("NodePort {port} does not answer on {node} while the service's backends do: NodePort path (kube-proxy) on {node}")).evidence(evidence).suggestion(format!("check kube-proxy on {node}: `iptables-save -t nat | grep {port}` (KUBE-NODEPORTS) there")))
}

/// Path MTU, partial loss, HTTP errors on a port that connects.
fn degradations(view: &View<'_>) -> Option<Draft> {
    let from = view.src_node;
    for (role, step) in view.backend_steps() {
        let StepRole::Backend { pod, node, ip, port, kind } = role else { continue };
        let to = node.as_ref();
        match (kind, View::outcome(step), step.result.as_ref()) {
            (ProbeKind::Mtu, Some(o), result) if !o.is_ok() && o.is_network_failure() => {
                let mtu = result.and_then(|r| r.path_mtu).map(u32::from);
                let (id, severity, what) = match (o, mtu) {
                    (Outcome::Mtu(MtuFailure::Reduced), Some(m)) => (
                        ids::MTU_REDUCED,
                        Severity::Warning,
                        format!("path MTU toward {ip} is {m} bytes, below the interface MTU"),
                    ),
                    _ => (
                        ids::MTU_BLACKHOLE,
                        Severity::Critical,
                        format!("large packets toward {ip} vanish (path-MTU black hole)"),
                    ),
                };
                let name = to.map_or_else(|| format!("{from} -> {ip}"), |t| pair(from, t));
                return Some(view.draft(id, severity, (if to.is_some() { CulpritKind::NodePair } else { CulpritKind::Path }, name), "1.6", format!("{what}: small packets pass, full-size ones do not")).evidence(view.failing_lines()).suggestion("compare the MTU of the pod interfaces, the overlay and the underlay on both nodes; look for rules dropping by length".to_owned()));
            }
            (ProbeKind::Icmp, _, Some(r))
                if step.status == StepStatus::Warning
                    || r.burst.is_some_and(|b| b.received() > 0 && b.received() < b.sent()) =>
            {
                let Some(to) = to else { continue };
                let loss = r.burst.map_or(0.0, |b| b.loss_ratio() * 100.0);
                return Some(view.draft(ids::NODE_PACKET_LOSS, Severity::Warning, (CulpritKind::Node, to.to_string()), "1.6", format!("{loss:.0}% of echoes toward {} on {to} lost within bursts that got replies: packet loss on the path", pod.as_ref().map_or_else(|| ip.to_string(), ToString::to_string))).evidence(view.failing_lines()).suggestion(format!("check interface errors and drops on {to} (`ip -s link`), and the links between {from} and {to}")));
            }
            (ProbeKind::Http, Some(o), _) if !o.is_ok() => {
                let Some(port) = port else { continue };
                let whose = pod.as_ref().map_or_else(|| ip.to_string(), ToString::to_string);
                return Some(
                    view.draft(
                        HTTP_FAILED,
                        Severity::Warning,
                        (CulpritKind::Port, format!("{whose}:{port}")),
                        "1.3",
                        format!("{whose}:{port} accepts connections but its HTTP check fails ({o})"),
                    )
                    .evidence(view.failing_lines())
                    .suggestion(format!(
                        "check the app on {whose}: the path asked, its logs, and its readiness"
                    )),
                );
            }
            _ => {}
        }
    }
    None
}

/// Probes of a DNS target's answers.
fn answers(view: &View<'_>) -> Option<Draft> {
    let (_, step) =
        view.steps.iter().find(|(r, s)| matches!(r, StepRole::Answers { .. }) && view.failed(s))?;
    let result = step.result.as_ref()?;
    let ip = result.target.ip()?;
    let (id, what) = match result.outcome {
        Outcome::Tcp(TcpFailure::Refused) => (ids::PORT_REFUSED, "refuses the connection"),
        Outcome::Tcp(_) => (ids::PORT_DROPPED, "does not answer the connection (timeout)"),
        _ => (ADDRESS_UNREACHABLE, "does not answer"),
    };
    let name = match result.target.port() {
        Some(p) => format!("{ip}:{p}"),
        None => ip.to_string(),
    };
    let source = &view.run.request.from;
    Some(
        view.draft(
            id,
            Severity::Critical,
            (
                if result.target.port().is_some() { CulpritKind::Port } else { CulpritKind::Path },
                name.clone(),
            ),
            "1.5",
            format!("{} resolves to {ip}, which {what} from {source}", view.run.request.to),
        )
        .evidence(view.failing_lines())
        .suggestion(format!("check what runs at {name} and the firewalls toward it")),
    )
}

#[cfg(test)]
mod tests;
