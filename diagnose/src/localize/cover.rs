//! The class layer: failing or degraded cells the runbook's rules left unexplained, explained
//! by the component class that fits them best — not by a rule written for one fault.
//!
//! Every open bad cell proposes the components it crosses, as *candidates*: a pod or node in
//! one direction or both, a directed or undirected node pair, a destination pod seen from a
//! group of sources (a node's pods, a namespace's pods: what a NetworkPolicy or a host
//! firewall cuts), a service from one node or everywhere, the cluster DNS from one node or
//! everywhere — each for every kind or narrowed to one (ICMP only, path MTU only). A candidate
//! counts the open cells in its scope: *hits* (bad) and *misses* (working). It may be chosen
//! when the hit ratio is high (SCORE's hit ratio: one working path through a component
//! clears it of a hard fault), its hits come from enough independent observers (two where
//! two exist, so it works on three nodes), and it has at least two hits. The best is chosen
//! (most hits weighted by the ratio; on a tie the more general component), claims its hits,
//! and the rest are scored again: a greedy cover, so several faults at once are found one by
//! one and a component's blast radius does not hide another's cells.
//!
//! Two passes: hard failures first, then degradations, so a lossy node and a dead pod behind
//! it are two findings. Magnitudes are read over each cell's onset window
//! ([`crate::matrix::Onset`]): per packet for ICMP, per lookup or connect otherwise.

use std::collections::BTreeSet;
use std::fmt;

use netdiag_model::probe::{ProbeKind, Source};
use netdiag_model::{CellStatus, CulpritKind, Namespace, NodeName, PodRef, ServiceRef, Severity};

use super::evidence::{Analysis, Obs, pooled};
use super::report::{Draft, ids};
use crate::matrix::Destination;

/// A set of sources that a filter may single out.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Group {
    /// The node's own namespace and every pod on it.
    Node(NodeName),
    /// Every pod of the namespace.
    Namespace(Namespace),
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Node(n) => write!(f, "node {n}"),
            Group::Namespace(ns) => write!(f, "namespace {ns}"),
        }
    }
}

/// Which cells a candidate covers. Pod and node scopes hold direct paths only (a destination
/// placed on a node); service and DNS scopes hold their own cells.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    /// Every cell the node's agent reports: probes sent from the node and its pods.
    Agent(NodeName),
    /// Cross-node paths into and out of the node.
    Node(NodeName),
    IntoNode(NodeName),
    OutOfNode(NodeName),
    /// Paths to and from the pod.
    Pod(PodRef),
    IntoPod(PodRef),
    OutOfPod(PodRef),
    /// Paths between two nodes, both ways (the names sorted).
    Pair(NodeName, NodeName),
    /// Paths from the first node to the second only.
    OneWay(NodeName, NodeName),
    /// Paths into the pod from one group of sources.
    Filter(PodRef, Group),
    /// A service's VIP (and NodePort) cells from everywhere, or from one node.
    Service(ServiceRef),
    ServiceFrom(ServiceRef, NodeName),
    /// Every DNS cell, or those from one node.
    Dns,
    DnsFrom(NodeName),
}

impl Scope {
    /// Larger is wider: a tie between two candidates goes to the wider component, which
    /// explains the same cells with one claim instead of several.
    fn generality(&self) -> u8 {
        match self {
            Scope::Dns | Scope::Agent(_) => 9,
            Scope::Node(_) => 8,
            Scope::IntoNode(_) | Scope::OutOfNode(_) | Scope::DnsFrom(_) => 7,
            Scope::Pair(..) => 6,
            Scope::OneWay(..) => 5,
            Scope::Service(_) => 5,
            Scope::ServiceFrom(..) => 4,
            Scope::Pod(_) => 3,
            Scope::IntoPod(_) | Scope::OutOfPod(_) => 2,
            Scope::Filter(..) => 1,
        }
    }

    /// The observers that must be independent: the source nodes for node-level scopes, the
    /// sources themselves for pod-level ones; for scopes with one fixed source, the
    /// destinations instead.
    fn observer(&self, o: &Obs) -> String {
        match self {
            Scope::Agent(_)
            | Scope::OutOfNode(_)
            | Scope::OutOfPod(_)
            | Scope::DnsFrom(_)
            | Scope::ServiceFrom(..) => o.dest.to_string(),
            Scope::IntoPod(_) | Scope::Pod(_) | Scope::Filter(..) => o.source.to_string(),
            Scope::Node(_)
            | Scope::IntoNode(_)
            | Scope::Pair(..)
            | Scope::OneWay(..)
            | Scope::Service(_)
            | Scope::Dns => o.src_node().to_string(),
        }
    }

    fn contains(&self, o: &Obs) -> bool {
        let direct =
            o.dst_node.is_some() && !matches!(o.dest, Destination::Service { .. } | Destination::Dns { .. });
        let src = o.src_node();
        let dst = o.dst_node.as_ref();
        let into_pod = |p: &PodRef| o.dst_pod.as_ref() == Some(p) && o.src_pod() != Some(p);
        let out_of_pod = |p: &PodRef| direct && o.src_pod() == Some(p) && o.dst_pod.as_ref() != Some(p);
        match self {
            Scope::Agent(n) => src == n,
            Scope::Node(n) => direct && o.crosses_nodes() && (src == n || dst == Some(n)),
            Scope::IntoNode(n) => direct && dst == Some(n) && src != n,
            Scope::OutOfNode(n) => direct && src == n && dst.is_some_and(|d| d != n),
            Scope::Pod(p) => direct && (into_pod(p) || out_of_pod(p)),
            Scope::IntoPod(p) => direct && into_pod(p),
            Scope::OutOfPod(p) => out_of_pod(p),
            Scope::Pair(a, b) => {
                direct && ((src == a && dst == Some(b)) || (src == b && dst == Some(a))) && a != b
            }
            Scope::OneWay(a, b) => direct && src == a && dst == Some(b) && a != b,
            Scope::Filter(p, g) => direct && into_pod(p) && in_group(o, g),
            Scope::Service(s) => service_of(o) == Some(s),
            Scope::ServiceFrom(s, n) => service_of(o) == Some(s) && src == n,
            Scope::Dns => o.kind == ProbeKind::Dns,
            Scope::DnsFrom(n) => o.kind == ProbeKind::Dns && src == n,
        }
    }

    /// The finding id's stem and the culprit.
    fn culprit(&self) -> (&'static str, CulpritKind, String) {
        match self {
            Scope::Agent(n) => ("node-sources", CulpritKind::Node, n.to_string()),
            Scope::Node(n) => ("node", CulpritKind::Node, n.to_string()),
            Scope::IntoNode(n) => ("node-inbound", CulpritKind::Node, n.to_string()),
            Scope::OutOfNode(n) => ("node-outbound", CulpritKind::Node, n.to_string()),
            Scope::Pod(p) => ("pod", CulpritKind::Pod, p.to_string()),
            Scope::IntoPod(p) => ("pod-inbound", CulpritKind::Pod, p.to_string()),
            Scope::OutOfPod(p) => ("pod-outbound", CulpritKind::Pod, p.to_string()),
            Scope::Pair(a, b) => ("node-pair", CulpritKind::NodePair, format!("{a}↔{b}")),
            Scope::OneWay(a, b) => ("node-pair-one-way", CulpritKind::NodePair, format!("{a}→{b}")),
            Scope::Filter(p, g) => ("source-group", CulpritKind::Pod, format!("{p} from {g}")),
            Scope::Service(s) => ("service", CulpritKind::Service, s.to_string()),
            Scope::ServiceFrom(s, n) => ("service-from-node", CulpritKind::Path, format!("svc/{s} from {n}")),
            Scope::Dns => ("dns", CulpritKind::Dns, "cluster DNS".to_owned()),
            Scope::DnsFrom(n) => ("dns-from-node", CulpritKind::Dns, format!("cluster DNS from {n}")),
        }
    }

    /// The component in words, for the verdict.
    fn describe(&self) -> String {
        match self {
            Scope::Agent(n) => format!("probes sent from node {n} and its pods, to anywhere"),
            Scope::Node(n) => format!("paths in and out of node {n}"),
            Scope::IntoNode(n) => format!("paths into node {n} (its pods and its own address)"),
            Scope::OutOfNode(n) => format!("paths out of node {n}"),
            Scope::Pod(p) => format!("paths to and from pod {p}"),
            Scope::IntoPod(p) => format!("paths into pod {p}"),
            Scope::OutOfPod(p) => format!("paths out of pod {p}"),
            Scope::Pair(a, b) => format!("paths between {a} and {b}"),
            Scope::OneWay(a, b) => format!("paths from {a} to {b}"),
            Scope::Filter(p, g) => format!("pod {p} from {g}"),
            Scope::Service(s) => format!("service {s}"),
            Scope::ServiceFrom(s, n) => format!("service {s} from {n}"),
            Scope::Dns => "cluster DNS lookups".to_owned(),
            Scope::DnsFrom(n) => format!("cluster DNS lookups from {n}"),
        }
    }

    /// The same component the other way round, whose working paths are the contrast a
    /// one-way verdict rests on.
    fn reverse(&self) -> Option<Scope> {
        match self {
            Scope::IntoNode(n) => Some(Scope::OutOfNode(n.clone())),
            Scope::OutOfNode(n) => Some(Scope::IntoNode(n.clone())),
            Scope::IntoPod(p) => Some(Scope::OutOfPod(p.clone())),
            Scope::OutOfPod(p) => Some(Scope::IntoPod(p.clone())),
            Scope::OneWay(a, b) => Some(Scope::OneWay(b.clone(), a.clone())),
            _ => None,
        }
    }
}

fn in_group(o: &Obs, g: &Group) -> bool {
    match g {
        Group::Node(n) => o.src_node() == n,
        Group::Namespace(ns) => o.src_pod().is_some_and(|p| &p.namespace == ns),
    }
}

fn service_of(o: &Obs) -> Option<&ServiceRef> {
    match &o.dest {
        Destination::Service { service, .. } if matches!(o.kind, ProbeKind::Tcp | ProbeKind::Http) => {
            Some(service)
        }
        _ => None,
    }
}

/// Every kind, or one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kinds {
    All,
    /// ICMP echoes and path-MTU probes (echoes too): what an ICMP filter hits.
    Icmp,
    Only(ProbeKind),
}

impl Kinds {
    fn admits(self, o: &Obs) -> bool {
        match self {
            Kinds::All => true,
            Kinds::Icmp => matches!(o.kind, ProbeKind::Icmp | ProbeKind::Mtu),
            Kinds::Only(k) => o.kind == k,
        }
    }

    fn label(self) -> String {
        match self {
            Kinds::All => String::new(),
            Kinds::Icmp => " (icmp)".to_owned(),
            Kinds::Only(k) => format!(" ({k})"),
        }
    }
}

/// Hard failures or degradations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    Hard,
    Soft,
}

impl Pass {
    /// The cell is bad the way this pass explains. The soft pass runs second and takes any
    /// bad cell the hard pass left that still works at times: a lossy path fails now and then,
    /// twice in a row at times.
    pub(crate) fn hit(self, o: &Obs) -> bool {
        match self {
            Pass::Hard => o.failed(),
            Pass::Soft => o.is_bad() && o.stats.successes > 0,
        }
    }

    /// The cell says anything to this pass: a path that never worked in the window is no
    /// evidence of degradation, one way or the other.
    fn counts(self, o: &Obs) -> bool {
        self == Pass::Hard || o.stats.since_repair.successes > 0
    }

    /// The cell lost something since its latest repair (a failed attempt, a lost echo) yet
    /// works at times: what pooled degradation evidence is made of, whether or not the cell
    /// alone is significant enough to be `degraded`. An outage that ended is not evidence.
    fn troubled(self, o: &Obs) -> bool {
        self == Pass::Soft && o.stats.since_repair.successes > 0 && o.stats.since_repair.troubled()
    }

    /// The cell shows the component working.
    fn miss(self, o: &Obs) -> bool {
        match self {
            Pass::Hard => o.works() && !o.failed(),
            Pass::Soft => o.stats.status == CellStatus::Ok && o.stats.successes > 0,
        }
    }
}

/// A component hypothesis.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Candidate {
    pub(crate) scope: Scope,
    pub(crate) kinds: Kinds,
}

/// A candidate's counts over the open cells.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fit {
    pub(crate) hits: Vec<usize>,
    pub(crate) misses: Vec<usize>,
    observers: BTreeSet<String>,
    available: BTreeSet<String>,
    /// Soft pass: cells with any loss in scope (see [`Pass::troubled`]).
    troubled: Vec<usize>,
    /// Packets (an attempt is one packet, an echo burst its echoes) sent and lost by every
    /// open cell in scope, since each cell's latest repair.
    sent: u64,
    lost: u64,
    /// Attempts (probes) of those cells: the independent trials. An echo burst's packets are
    /// not independent — a stray timeout or a congested moment takes all of them — so the
    /// significance test counts probes, not packets.
    probes: u64,
    /// The soft pass's evidence: the log-likelihood ratio of the scope's loss rate against the
    /// rest of the cluster's.
    llr: f64,
}

impl Fit {
    pub(crate) fn ratio(&self) -> f64 {
        let n = self.hits.len() + self.misses.len();
        if n == 0 { 0.0 } else { self.hits.len() as f64 / n as f64 }
    }

    fn rate(&self) -> f64 {
        if self.sent == 0 { 0.0 } else { self.lost as f64 / self.sent as f64 }
    }

    fn score(&self, pass: Pass) -> f64 {
        match pass {
            Pass::Hard => self.hits.len() as f64 * self.ratio(),
            Pass::Soft => self.llr,
        }
    }
}

/// Why a candidate was not chosen, for the residual finding.
#[derive(Debug, Clone)]
pub(crate) struct Rejected {
    pub(crate) candidate: Candidate,
    pub(crate) fit: Fit,
    pub(crate) reason: String,
}

impl Rejected {
    pub(crate) fn line(&self) -> String {
        let (_, _, name) = self.candidate.scope.culprit();
        let kinds = self.candidate.kinds.label();
        format!(
            "{}{kinds} ({name}): {} of {} paths fail — {}",
            self.candidate.scope.describe(),
            self.fit.hits.len(),
            self.fit.hits.len() + self.fit.misses.len(),
            self.reason
        )
    }
}

/// The candidates around the open bad cells of `pass`.
fn candidates(a: &Analysis<'_>, pass: Pass, done: &[bool]) -> BTreeSet<Candidate> {
    let mut out = BTreeSet::new();
    for i in a.open() {
        let o = &a.obs[i];
        if done.get(i).copied().unwrap_or(false) || !(pass.hit(o) || pass.troubled(o)) {
            continue;
        }
        let src = o.src_node().clone();
        let mut scopes = vec![Scope::Agent(src.clone())];
        if o.kind == ProbeKind::Dns {
            scopes.push(Scope::Dns);
            scopes.push(Scope::DnsFrom(src.clone()));
        }
        if let Some(s) = service_of(o) {
            scopes.push(Scope::Service(s.clone()));
            scopes.push(Scope::ServiceFrom(s.clone(), src.clone()));
        }
        if let Some(dst) = &o.dst_node {
            if dst != &src {
                scopes.push(Scope::Node(dst.clone()));
                scopes.push(Scope::Node(src.clone()));
                scopes.push(Scope::IntoNode(dst.clone()));
                scopes.push(Scope::OutOfNode(src.clone()));
                let (x, y) = if src < *dst { (src.clone(), dst.clone()) } else { (dst.clone(), src.clone()) };
                scopes.push(Scope::Pair(x, y));
                scopes.push(Scope::OneWay(src.clone(), dst.clone()));
            }
            if let Some(p) = &o.dst_pod {
                scopes.push(Scope::Pod(p.clone()));
                scopes.push(Scope::IntoPod(p.clone()));
                scopes.push(Scope::Filter(p.clone(), Group::Node(src.clone())));
                if let Source::Pod(sp) = &o.source {
                    scopes.push(Scope::Filter(p.clone(), Group::Namespace(sp.namespace.clone())));
                }
            }
            if let Some(sp) = o.src_pod() {
                scopes.push(Scope::Pod(sp.clone()));
                scopes.push(Scope::OutOfPod(sp.clone()));
            }
        }
        for scope in scopes {
            out.insert(Candidate { scope: scope.clone(), kinds: Kinds::All });
            if matches!(o.kind, ProbeKind::Icmp | ProbeKind::Mtu) {
                out.insert(Candidate { scope: scope.clone(), kinds: Kinds::Icmp });
            }
            out.insert(Candidate { scope, kinds: Kinds::Only(o.kind) });
        }
    }
    out
}

/// The cells by source node, destination node, destination and source pod, service, and the
/// DNS cells: a scope's cells are found through one or two lists instead of every cell (at
/// 500 nodes a scan per candidate was most of a diagnosis' time).
#[derive(Debug, Default)]
pub(crate) struct ScopeIndex {
    by_src_node: std::collections::HashMap<NodeName, Vec<usize>>,
    by_dst_node: std::collections::HashMap<NodeName, Vec<usize>>,
    by_dst_pod: std::collections::HashMap<PodRef, Vec<usize>>,
    by_src_pod: std::collections::HashMap<PodRef, Vec<usize>>,
    by_service: std::collections::HashMap<ServiceRef, Vec<usize>>,
    dns: Vec<usize>,
}

impl ScopeIndex {
    fn new(a: &Analysis<'_>) -> Self {
        let mut x = ScopeIndex::default();
        for (i, o) in a.obs.iter().enumerate() {
            x.by_src_node.entry(o.src_node().clone()).or_default().push(i);
            if let Some(d) = &o.dst_node {
                x.by_dst_node.entry(d.clone()).or_default().push(i);
            }
            if let Some(p) = &o.dst_pod {
                x.by_dst_pod.entry(p.clone()).or_default().push(i);
            }
            if let Some(p) = o.src_pod() {
                x.by_src_pod.entry(p.clone()).or_default().push(i);
            }
            if let Some(s) = service_of(o) {
                x.by_service.entry(s.clone()).or_default().push(i);
            }
            if o.kind == ProbeKind::Dns {
                x.dns.push(i);
            }
        }
        x
    }

    /// Every cell that may be in `scope` (a superset; `Scope::contains` decides), each once.
    fn cells(&self, scope: &Scope) -> impl Iterator<Item = usize> + '_ {
        fn get<'m, K: std::hash::Hash + Eq>(
            m: &'m std::collections::HashMap<K, Vec<usize>>,
            k: &K,
        ) -> &'m [usize] {
            m.get(k).map_or(&[], Vec::as_slice)
        }
        let none: &[usize] = &[];
        let pods = get::<PodRef>;
        let (first, second): (&[usize], &[usize]) = match scope {
            Scope::Agent(n) | Scope::OutOfNode(n) | Scope::DnsFrom(n) => (get(&self.by_src_node, n), none),
            Scope::Node(n) => (get(&self.by_src_node, n), get(&self.by_dst_node, n)),
            Scope::IntoNode(n) => (get(&self.by_dst_node, n), none),
            Scope::Pod(p) => (pods(&self.by_dst_pod, p), pods(&self.by_src_pod, p)),
            Scope::IntoPod(p) | Scope::Filter(p, _) => (pods(&self.by_dst_pod, p), none),
            Scope::OutOfPod(p) => (pods(&self.by_src_pod, p), none),
            Scope::Pair(x, y) => (get(&self.by_src_node, x), get(&self.by_src_node, y)),
            Scope::OneWay(x, _) => (get(&self.by_src_node, x), none),
            Scope::Service(s) | Scope::ServiceFrom(s, _) => {
                (self.by_service.get(s).map_or(none, Vec::as_slice), none)
            }
            Scope::Dns => (self.dns.as_slice(), none),
        };
        // Node(n) and Pod(p) take both lists; a cell in both would be a node's or pod's path to
        // itself, which no such scope contains, so nothing is counted twice.
        first.iter().chain(second).copied()
    }
}

fn fit(a: &Analysis<'_>, c: &Candidate, pass: Pass, done: &[bool]) -> Fit {
    let mut f = Fit::default();
    let index = a.scope_index.get_or_init(|| ScopeIndex::new(a));
    for i in index.cells(&c.scope).filter(|&i| a.is_open(i)) {
        let o = &a.obs[i];
        if done.get(i).copied().unwrap_or(false)
            || !c.kinds.admits(o)
            || !c.scope.contains(o)
            || !pass.counts(o)
        {
            continue;
        }
        if pass.troubled(o) {
            f.troubled.push(i);
            if pass == Pass::Soft {
                f.observers.insert(c.scope.observer(o));
            }
        }
        f.sent += o.stats.since_repair.packets_sent;
        f.lost += o.stats.since_repair.lost();
        f.probes += o.stats.since_repair.successes + o.stats.since_repair.failures;
        if pass.hit(o) {
            f.hits.push(i);
            if pass == Pass::Hard {
                f.observers.insert(c.scope.observer(o));
            }
            f.available.insert(c.scope.observer(o));
        } else if pass.miss(o) {
            f.misses.push(i);
            f.available.insert(c.scope.observer(o));
        }
    }
    f
}

/// The loss rate assumed outside a scope is at least this (a quiet cluster loses nothing,
/// which would make any loss at all look significant).
const BASELINE_MIN: f64 = 0.005;
/// The scope's loss must be at least this, and twice the rest's.
const DEGRADED_MIN_RATE: f64 = 0.02;
/// The family-wise false-finding rate the significance test holds, over all candidates.
const ALPHA: f64 = 0.01;

/// The Kullback-Leibler divergence of Bernoulli(q) from Bernoulli(p).
fn kl(q: f64, p: f64) -> f64 {
    let term = |x: f64, y: f64| if x > 0.0 { x * (x / y).ln() } else { 0.0 };
    term(q, p) + term(1.0 - q, 1.0 - p)
}

/// Why `f` does not convict its candidate, if it does not. `outside` is the packets sent and
/// lost by the open cells of the candidate's kinds, in scope or not; `tests` the number of
/// candidates judged together.
///
/// Hard failures need a high hit ratio (one working path clears a component). Degradations
/// are judged on pooled packets: the scope must lose markedly more than the rest of the
/// cluster, significantly — n·KL(rate ‖ baseline) above ln(tests / α), the Chernoff bound on
/// the binomial tail with a Bonferroni correction — so noise spread over a flaky agent's
/// cells convicts nothing, however the per-cell statuses fall.
fn objection(a: &Analysis<'_>, f: &mut Fit, pass: Pass, outside: (u64, u64), tests: usize) -> Option<String> {
    if pass == Pass::Hard && f.hits.len() < a.th.min_failing_cells {
        return Some(format!("fewer than {} paths fail", a.th.min_failing_cells));
    }
    // Degradations are judged on pooled packets: a 8 % lookup failure rate shows on no single
    // cell as significant, yet on a resolver's hundred lookups it is unmistakable.
    if pass == Pass::Soft && f.troubled.len() < a.th.min_failing_cells {
        return Some(format!("fewer than {} paths lose anything", a.th.min_failing_cells));
    }

    let share = a.th.fail_share;
    if pass == Pass::Hard && f.ratio() < share {
        return Some(format!(
            "{} of its paths work ({:.0}% bad, {:.0}% needed)",
            f.misses.len(),
            100.0 * f.ratio(),
            100.0 * share
        ));
    }
    let need = a.need(f.available.len());
    if f.observers.len() < need {
        return Some(format!("seen from {} observer(s), {need} needed", f.observers.len()));
    }
    if pass == Pass::Soft {
        let (sent, lost) = (outside.0.saturating_sub(f.sent), outside.1.saturating_sub(f.lost));
        let rest = if sent == 0 { 0.0 } else { lost as f64 / sent as f64 };
        let baseline = rest.max(BASELINE_MIN);
        let rate = f.rate();
        if rate < DEGRADED_MIN_RATE || rate < 2.0 * baseline {
            return Some(format!(
                "its paths lose {:.1}%, not markedly more than the rest ({:.1}%)",
                100.0 * rate,
                100.0 * rest
            ));
        }
        f.llr = f.probes.min(f.sent) as f64 * kl(rate, baseline);
        if f.llr < (tests.max(1) as f64 / ALPHA).ln() {
            return Some(format!("too few packets to tell from background loss ({:.1}%)", 100.0 * rest));
        }
        // ... but one round of failures, however correlated, is a fault starting, not yet a
        // degradation: losses in two rounds at least since the scope's latest repair, and two
        // rounds since its onset (a cell that lost in an earlier fault's time does not make a
        // new fault older).
        let ids: Vec<usize> = f.hits.iter().chain(&f.troubled).copied().collect();
        let series = a.pooled_history(&ids);
        if pooled::trouble_rounds(&series) < 2 || pooled::rounds_since_onset(&series) < 2 {
            return Some("its losses all fell in one round of probes".to_owned());
        }
        // ... and still going on: the latest rounds lose too (a repaired path's window
        // remembers its outage for a while; that is history, not a degradation).
        let recent = pooled::recent_loss(&a.pooled_history(&f.troubled));
        if recent < DEGRADED_MIN_RATE.min(rate / 2.0) || recent < baseline {
            return Some(format!("its latest probes lose {:.1}%: over", 100.0 * recent));
        }
    }
    None
}

/// Packets sent and lost by the open cells of `kinds` this pass counts and no finding of it
/// has taken yet: what a candidate's loss is compared against.
fn packets(a: &Analysis<'_>, kinds: Kinds, pass: Pass, done: &[bool]) -> (u64, u64) {
    a.open()
        .filter(|&i| !done.get(i).copied().unwrap_or(false))
        .map(|i| &a.obs[i])
        .filter(|o| kinds.admits(o) && pass.counts(o))
        .fold((0, 0), |(s, l), o| (s + o.stats.since_repair.packets_sent, l + o.stats.since_repair.lost()))
}

/// Runs both passes; every draft it writes owns the cells it claims.
pub(crate) fn run(a: &mut Analysis<'_>, out: &mut Vec<Draft>) -> Vec<Rejected> {
    let mut rejected = Vec::new();
    for pass in [Pass::Hard, Pass::Soft] {
        // Cells a finding of this pass already accounts for (claimed or, in the soft pass,
        // merely lossy without being degraded): they weigh nothing in later candidates.
        let mut done = vec![false; a.obs.len()];
        if pass == Pass::Soft {
            behind_earlier_findings(a, &mut done);
        }
        loop {
            let mut best: Option<(Candidate, Fit)> = None;
            let all = candidates(a, pass, &done);
            let tests = all.len();
            let mut totals: std::collections::HashMap<Kinds, (u64, u64)> = std::collections::HashMap::new();
            for c in all {
                let mut f = fit(a, &c, pass, &done);
                let outside = *totals.entry(c.kinds).or_insert_with(|| packets(a, c.kinds, pass, &done));
                if let Some(reason) = objection(a, &mut f, pass, outside, tests) {
                    if !f.hits.is_empty() {
                        rejected.push(Rejected { candidate: c, fit: f, reason });
                    }
                    continue;
                }
                let better = match &best {
                    None => true,
                    Some((bc, bf)) => {
                        let (s, bs) = (f.score(pass), bf.score(pass));
                        s > bs + 1e-9 || ((s - bs).abs() <= 1e-9 && (rank(&c), &c) > (rank(bc), bc))
                    }
                };
                if better {
                    best = Some((c, f));
                }
            }
            let Some((c, f)) = best else { break };
            // One finding per component: a narrower kind chosen first is widened to every
            // kind when every kind convicts the component too (the loss that fails echoes
            // fails lookups and connects through the same node).
            let (c, f) = match c.kinds {
                Kinds::All => (c, f),
                _ => {
                    let wide = Candidate { scope: c.scope.clone(), kinds: Kinds::All };
                    let mut wf = fit(a, &wide, pass, &done);
                    let outside = packets(a, Kinds::All, pass, &done);
                    if objection(a, &mut wf, pass, outside, tests).is_none() { (wide, wf) } else { (c, f) }
                }
            };
            let index = out.len();
            // A degraded node also degrades its own lookups and VIP connects (they leave
            // through it), which no direct path shows.
            let collateral: Vec<usize> = match (&c.scope, pass, c.kinds) {
                (Scope::Node(n) | Scope::OutOfNode(n), Pass::Soft, Kinds::All) => a
                    .open()
                    .filter(|&i| {
                        let o = &a.obs[i];
                        o.src_node() == n && o.dst_node.is_none() && pass.hit(o) && !f.hits.contains(&i)
                    })
                    .collect(),
                _ => Vec::new(),
            };
            // Service and DNS paths whose backends sit behind the component fail with it.
            let dependents = if c.kinds == Kinds::All {
                a.claim_dependents(|o, b, _| behind(&c.scope, o, b))
            } else {
                Vec::new()
            };
            let mut d = draft(a, &c, &f, pass);
            if !collateral.is_empty() {
                d.affected.extend(a.paths(&collateral));
                d.evidence.push(format!(
                    "{} lookups and service connects from the node degrade with it",
                    collateral.len()
                ));
            }
            if !dependents.is_empty() {
                d.affected.extend(a.paths(&dependents));
                d.evidence.push(format!(
                    "{} service paths whose backends sit behind it fail or degrade with it",
                    dependents.len()
                ));
            }
            for &i in f.hits.iter().chain(&f.troubled) {
                done[i] = true;
            }
            // The same verdict on the same culprit (a rule's and this layer's) is one finding.
            if let Some(j) = out.iter().position(|x| x.id == d.id && x.culprit == d.culprit) {
                a.claim_for(&f.hits, j);
                a.claim_for(&collateral, j);
                a.settle(&out[j..=j], j);
                let mut extra = d.affected;
                out[j].affected.append(&mut extra);
                continue;
            }
            a.claim_for(&f.hits, index);
            a.claim_for(&collateral, index);
            out.push(d);
            a.settle(&out[index..], index);
        }
    }
    rejected.retain(|r| r.fit.hits.iter().any(|&i| a.is_open(i)));
    rejected.sort_by(|x, y| {
        (y.fit.hits.len(), y.fit.ratio())
            .partial_cmp(&(x.fit.hits.len(), x.fit.ratio()))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| x.candidate.cmp(&y.candidate))
    });
    rejected
}

/// Marks the service cells whose source's own direct path to one of their backends is
/// already explained by a finding: a VIP in front of one dead (or filtered, or cut-off)
/// backend of three fails now and then without being degraded, and that is the backend
/// path's doing, not a degradation of the service.
fn behind_earlier_findings(a: &Analysis<'_>, done: &mut [bool]) {
    let broken: std::collections::HashSet<(&Source, &PodRef)> = (0..a.obs.len())
        .filter(|&i| a.owner(i).is_some())
        .filter_map(|i| Some((&a.obs[i].source, a.obs[i].dst_pod.as_ref()?)))
        .collect();
    if broken.is_empty() {
        return;
    }
    for i in a.open() {
        let o = &a.obs[i];
        let Some(svc) = a.service_of(o) else { continue };
        if svc.backends.iter().any(|b| b.pod.as_ref().is_some_and(|p| broken.contains(&(&o.source, p))))
            && let Some(d) = done.get_mut(i)
        {
            *d = true;
        }
    }
}

/// Whether the backend `b` of the service cell `o` sits behind the component `scope` (so the
/// cell's failures are the component's).
fn behind(scope: &Scope, o: &Obs, b: &super::context::Backend) -> bool {
    let via = o.dnat_node();
    let on = |n: &NodeName| b.node.as_ref() == Some(n);
    match scope {
        Scope::Pod(p) | Scope::IntoPod(p) => b.pod.as_ref() == Some(p),
        Scope::Filter(p, g) => b.pod.as_ref() == Some(p) && in_group(o, g),
        Scope::Node(n) | Scope::IntoNode(n) => on(n) && via != n,
        Scope::OutOfNode(n) => via == n && !on(n),
        Scope::Pair(x, y) => (via == x && on(y)) || (via == y && on(x)),
        Scope::OneWay(x, y) => via == x && on(y),
        Scope::Agent(_)
        | Scope::OutOfPod(_)
        | Scope::Service(_)
        | Scope::ServiceFrom(..)
        | Scope::Dns
        | Scope::DnsFrom(_) => false,
    }
}

/// Tie-break: a wider component, then every kind over one kind.
fn rank(c: &Candidate) -> (u8, u8) {
    (c.scope.generality(), u8::from(c.kinds == Kinds::All))
}

/// Whether the candidate's ICMP echoes lose packets (2 % or more, pooled).
fn icmp_loss(a: &Analysis<'_>, f: &Fit) -> bool {
    let icmp: Vec<usize> = f
        .hits
        .iter()
        .chain(&f.misses)
        .chain(&f.troubled)
        .copied()
        .filter(|&i| a.obs[i].kind == ProbeKind::Icmp)
        .collect::<BTreeSet<usize>>()
        .into_iter()
        .collect();
    loss_percent(a, &icmp).is_some_and(|p| p >= 2.0)
}

/// Pooled per-packet loss since the onset, as a percentage.
fn loss_percent(a: &Analysis<'_>, ids: &[usize]) -> Option<f64> {
    let on = a.pooled_onset(ids);
    (on.packets_sent > 0).then(|| 100.0 * on.loss())
}

/// The slowest p99 among the cells, in ms.
fn worst_p99_ms(a: &Analysis<'_>, ids: &[usize]) -> Option<u128> {
    ids.iter().filter_map(|&i| a.obs[i].stats.rtt_p99).max().map(|d| d.as_millis()).filter(|&ms| ms > 0)
}

fn draft(a: &Analysis<'_>, c: &Candidate, f: &Fit, pass: Pass) -> Draft {
    let (stem, kind, name) = c.scope.culprit(); // Steady TCP (or HTTP) paths in the same scope: the destination is up, only ICMP fails.
    let kinds_work = || {
        a.open().any(|i| {
            let o = &a.obs[i];
            matches!(o.kind, ProbeKind::Tcp | ProbeKind::Http) && c.scope.contains(o) && o.steady()
        })
    };
    let icmp_filtered =
        pass == Pass::Hard && matches!(c.kinds, Kinds::Icmp | Kinds::Only(ProbeKind::Icmp)) && kinds_work();
    let (id, severity, effect) = match (pass, c.kinds) {
        _ if icmp_filtered => (ids::ICMP_FILTERED.to_owned(), Severity::Info, "ICMP is filtered".to_owned()),
        (Pass::Hard, Kinds::Only(ProbeKind::Mtu)) => (
            format!("{stem}-mtu-blackhole"),
            Severity::Warning,
            "large packets vanish (path-MTU black hole)".to_owned(),
        ),
        (Pass::Hard, _) => (format!("{stem}-unreachable"), Severity::Critical, "fail".to_owned()),
        // Echoes lost is the runbook's "packet loss"; other degradations (lookups retried,
        // connects failing now and then) are "degraded".
        (Pass::Soft, _) if icmp_loss(a, f) => {
            (format!("{stem}-packet-loss"), Severity::Warning, "lose packets".to_owned())
        }
        (Pass::Soft, _) => (format!("{stem}-degraded"), Severity::Warning, "are degraded".to_owned()),
    };
    let kinds = c.kinds.label();
    // Every cell in scope that was judged; the soft pass counts the lossy ones, degraded or not.
    let in_scope: BTreeSet<usize> = f.hits.iter().chain(&f.misses).chain(&f.troubled).copied().collect();
    let total = in_scope.len();
    let shown = if pass == Pass::Soft { f.troubled.len() } else { f.hits.len() };
    let mut verdict = match (&c.scope, icmp_filtered) {
        (_, true) => format!(
            "{}: ICMP echoes go unanswered on {} of {total} paths while TCP to the same destinations works — ICMP is filtered, nothing is down",
            c.scope.describe(),
            f.hits.len()
        ),
        (Scope::Filter(p, g), false) => {
            let others: BTreeSet<String> = a
                .open()
                .filter(|&i| {
                    let o = &a.obs[i];
                    o.dst_pod.as_ref() == Some(p) && c.kinds.admits(o) && !in_group(o, g) && o.works()
                })
                .map(|i| a.obs[i].source.to_string())
                .collect();
            let from: BTreeSet<String> = f.hits.iter().map(|&i| a.obs[i].source.to_string()).collect();
            format!(
                "pod {p} is unreachable{kinds} from {g} ({} sources fail) while {} other sources reach it: a filter on the path (NetworkPolicy, host firewall) singles out {g}",
                from.len(),
                others.len()
            )
        }
        _ => format!("{}{kinds} {effect}: {shown} of {total} paths", c.scope.describe()),
    };
    if pass == Pass::Soft {
        let mut parts = Vec::new();
        // Over the whole scope: the cells that happened to turn degraded lose more than the
        // fault does (that is why they turned).
        let scope: Vec<usize> = in_scope.iter().copied().collect();
        let icmp: Vec<usize> = scope.iter().copied().filter(|&i| a.obs[i].kind == ProbeKind::Icmp).collect();
        if let Some(p) = loss_percent(a, &icmp) {
            parts.push(format!("{p:.0}% of packets lost since it began"));
        }
        let other: Vec<usize> = scope.iter().copied().filter(|&i| a.obs[i].kind != ProbeKind::Icmp).collect();
        if !other.is_empty() {
            let on = a.pooled_onset(&other);
            let (failed, attempts) = (on.failures, on.successes + on.failures);
            if attempts > 0 && failed > 0 {
                let what = if c.kinds == Kinds::Only(ProbeKind::Dns)
                    || matches!(c.scope, Scope::Dns | Scope::DnsFrom(_))
                {
                    "lookups need retries or fail"
                } else {
                    "attempts fail"
                };
                parts.push(format!("{:.0}% of {what}", 100.0 * failed as f64 / attempts as f64));
            }
        }
        if let Some(p99) = worst_p99_ms(a, &f.hits) {
            parts.push(format!("p99 {p99} ms"));
        }
        if !parts.is_empty() {
            verdict.push_str(&format!(" ({})", parts.join(", ")));
        }
    }
    // A degradation's paths are the troubled ones as well: a cell that still reads ok but
    // fails now and then is what the finding is about.
    let shown_cells: Vec<usize> = if pass == Pass::Soft {
        f.hits.iter().chain(&f.troubled).copied().collect::<BTreeSet<_>>().into_iter().collect()
    } else {
        f.hits.clone()
    };
    let mut evidence = a.cell_lines(&shown_cells);
    if !f.misses.is_empty() {
        evidence.push(format!("{} other paths in the same scope work", f.misses.len()));
    }
    if let Some(rev) = c.scope.reverse() {
        let back = fit(a, &Candidate { scope: rev.clone(), kinds: c.kinds }, pass, &[]);
        let n = back.hits.len() + back.misses.len();
        if n > 0 {
            let line = format!(
                "the other direction ({}): {} of {n} paths {}",
                rev.describe(),
                back.misses.len(),
                if pass == Pass::Hard { "work" } else { "are clean" }
            );
            evidence.insert(0, line);
        }
    }
    let (runbook, suggestion) = suggestion(a, c, pass, icmp_filtered);
    Draft::new(id, severity, (kind, name), runbook, verdict)
        .affected(a.paths(&shown_cells))
        .evidence(evidence)
        .suggestion(suggestion)
}

fn suggestion(a: &Analysis<'_>, c: &Candidate, pass: Pass, icmp_filtered: bool) -> (&'static str, String) {
    if icmp_filtered {
        return (
            "1.6",
            "nothing to repair if ICMP is filtered on purpose (a NetworkPolicy or firewall allowing only TCP); \
             otherwise look for an ICMP drop: `iptables-save | grep -i icmp` on the nodes involved"
                .to_owned(),
        );
    }
    let nodes = |n: &NodeName| format!("`ip -s link`, `iptables-save` and `nft list ruleset` on {n}");
    let s = match (&c.scope, pass) {
        (Scope::Filter(p, g), _) => format!(
            "a filter drops {g}'s traffic to {p}: `kubectl get networkpolicy -A` (policies selecting {p} and their \
             ingress `from`), then the host firewall on {} (`iptables-save | grep DROP`) and inside the pod",
            a.ctx.node_of_pod(p).map_or_else(|| "its node".to_owned(), |n| format!("node {n}"))
        ),
        (Scope::Dns | Scope::DnsFrom(_), Pass::Soft) => "lookups need retries: the classic UDP conntrack race (5 s lookups). \
             Check the DNS pods' CPU and `conntrack -S` (insert_failed) on the nodes; `options single-request-reopen` \
             or NodeLocal DNSCache avoid it"
            .to_owned(),
        (Scope::Dns | Scope::DnsFrom(_), Pass::Hard) => {
            "check the DNS pods and the path to them from the nodes involved: `kubectl -n kube-system get pods -l \
             k8s-app=kube-dns -o wide`, then `dig @<dns ip>` from a pod there"
                .to_owned()
        }
        (Scope::Service(s) | Scope::ServiceFrom(s, _), _) => format!(
            "compare the VIP with its backends: `kubectl get endpointslices -l kubernetes.io/service-name={}` and \
             `iptables-save -t nat | grep <cluster ip>` on the source nodes",
            s.name
        ),
        (Scope::Agent(n), _) => format!(
            "everything {n} and its pods send fails now and then, whatever the destination: look at {n} itself — \
             `conntrack -S` (insert_failed, drop), `nstat` (TCP retransmits), CPU and softirq load, and netdiag's \
             agent there (its logs)"
        ),
        (Scope::Node(n) | Scope::IntoNode(n) | Scope::OutOfNode(n), Pass::Soft) => {
            format!("check {n}'s uplink for drops and errors: {}, and a policer or `-m statistic` rule", nodes(n))
        }
        (Scope::Node(n) | Scope::IntoNode(n) | Scope::OutOfNode(n), Pass::Hard) => format!(
            "check what drops traffic {} {n}: {}, and its routes (`ip route`)",
            match c.scope {
                Scope::IntoNode(_) => "entering",
                Scope::OutOfNode(_) => "leaving",
                _ => "through",
            },
            nodes(n)
        ),
        (Scope::Pair(x, y) | Scope::OneWay(x, y), _) => {
            format!("check the link and the filters between {x} and {y}: {} and on {y}", nodes(x))
        }
        (Scope::Pod(p) | Scope::IntoPod(p) | Scope::OutOfPod(p), _) => format!(
            "check pod {p}: `kubectl describe pod -n {} {}`, its NetworkPolicies (`kubectl get networkpolicy -n {}`), \
             then the routes and rules inside its namespace",
            p.namespace, p.name, p.namespace
        ),
    };
    let runbook = match &c.scope {
        Scope::Dns | Scope::DnsFrom(_) => "1.2",
        Scope::Service(_) | Scope::ServiceFrom(..) => "1.6",
        Scope::Pod(_) | Scope::IntoPod(_) | Scope::OutOfPod(_) | Scope::Filter(..) => "1.5",
        _ => "1.6",
    };
    (runbook, s)
}
