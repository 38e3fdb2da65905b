//! Observations: the matrix's pod-level cells at `now` that say something about the network
//! (`ok`, `degraded` or `failed`), each placed on the nodes and pods at its two ends. Unknown
//! cells are left out: a silent agent's cells are not failures. So are the cells of an agent
//! quiet for `quiet_share_of_stale` of the matrix's staleness bound: frozen when it went
//! quiet, they would otherwise still vouch for paths (a cut-off node's agent goes quiet
//! first, stale only later). A pod's probes of its own address (its own service endpoint)
//! never leave its loopback and are left out as well.
//!
//! A cell *fails now* when it is `failed`, or `degraded` with its latest two results failed;
//! it *works* when its latest result succeeded. Judging by the latest results lets a fault
//! show within two probes (and a repair clear on the first good one), while the thresholds
//! that ask for every cell through a component, or most of them, keep one flaky cell from
//! convicting anything.
//!
//! [`Analysis`] holds the observations, which of them a finding has already explained
//! (*claimed*), and the tallies and wording every rule shares.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use netdiag_model::probe::{ProbeKind, Source};
use netdiag_model::{CellStatus, NodeName, Outcome, PodRef, Port, UnixMillis};

use super::context::{Backend, Context, ServiceView};
use super::thresholds::Thresholds;
use crate::matrix::{CellStats, Destination, Matrix, PodKey};

/// One cell that says something.
#[derive(Debug, Clone)]
pub(crate) struct Obs {
    pub(crate) source: Source,
    pub(crate) dest: Destination,
    pub(crate) kind: ProbeKind,
    pub(crate) stats: CellStats,
    /// The node the destination lives on (pods, endpoints, node addresses, NodePorts).
    pub(crate) dst_node: Option<NodeName>,
    /// The pod whose address was probed (a pod, a service endpoint, an address of a pod).
    pub(crate) dst_pod: Option<PodRef>,
    /// The port probed on that pod.
    pub(crate) dst_port: Option<Port>,
}

impl Obs {
    fn new(source: Source, dest: Destination, kind: ProbeKind, stats: CellStats, ctx: &Context<'_>) -> Self {
        let (dst_pod, dst_port, dst_node) = match &dest {
            Destination::Pod { pod, port, .. } => (Some(pod.clone()), *port, ctx.node_of_pod(pod).cloned()),
            Destination::Endpoint { pod, port, .. } => {
                (Some(pod.clone()), Some(*port), ctx.node_of_pod(pod).cloned())
            }
            Destination::Node { node, .. } => (None, None, Some(node.clone())),
            Destination::NodePort { node: crate::matrix::key::NodeAddr::Node(node, _), .. } => {
                (None, None, Some(node.clone()))
            }
            Destination::NodePort { node: crate::matrix::key::NodeAddr::Ip(ip), .. } => {
                (None, None, ctx.owner_of_ip(*ip).map(|(_, n)| n.clone()))
            }
            Destination::Address { ip, port } => match ctx.owner_of_ip(*ip) {
                Some((pod, node)) => (pod.cloned(), *port, Some(node.clone())),
                None => (None, None, None),
            },
            Destination::Service { .. } | Destination::Dns { .. } => (None, None, None),
        };
        Obs { source, dest, kind, stats, dst_node, dst_pod, dst_port }
    }

    /// The matrix's key of the cell.
    pub(crate) fn key(&self) -> PodKey {
        PodKey { source: self.source.clone(), destination: self.dest.clone(), kind: self.kind }
    }

    /// The matrix calls the cell failed or degraded: what the completeness invariant covers.
    pub(crate) fn is_bad(&self) -> bool {
        matches!(self.stats.status, CellStatus::Failed | CellStatus::Degraded)
    }

    /// The node the probe ran on: the agent that reports the cell.
    pub(crate) fn src_node(&self) -> &NodeName {
        &self.stats.agent
    }

    /// The share of echoes lost within bursts that got some reply: loss that is not whole
    /// bursts failing (a path that was down, then repaired, loses whole bursts only). None
    /// without a successful burst.
    pub(crate) fn partial_loss(&self) -> Option<f64> {
        let s = &self.stats;
        let attempts = s.attempts();
        if attempts == 0 || s.successes == 0 || s.packets_sent == 0 {
            return None;
        }
        let burst = s.packets_sent as f64 / attempts as f64;
        let lost = s.packets_sent.saturating_sub(s.packets_received) as f64 - s.failures as f64 * burst;
        Some((lost / (s.successes as f64 * burst)).clamp(0.0, 1.0))
    }

    /// Where a service cell's NAT happens, so where its path to the backends starts: the
    /// NodePort's node, or the source's own node for VIPs and DNS.
    pub(crate) fn dnat_node(&self) -> &NodeName {
        match (&self.dest, &self.dst_node) {
            (Destination::NodePort { .. }, Some(n)) => n,
            _ => self.src_node(),
        }
    }

    pub(crate) fn src_pod(&self) -> Option<&PodRef> {
        self.source.pod()
    }

    /// The path fails now: the cell is `failed`, or `degraded` with its latest two results
    /// network failures (a path that just broke, before the matrix's streak rule calls it
    /// `failed`; one failure in a row is what a lossy path shows now and then).
    pub(crate) fn failed(&self) -> bool {
        match self.stats.status {
            CellStatus::Failed => true,
            CellStatus::Degraded => {
                self.stats.last_outcome.is_network_failure() && self.stats.consecutive_failures >= 2
            }
            CellStatus::Ok | CellStatus::Unknown => false,
        }
    }

    /// The path carries traffic now: it is not `failed`, some attempt in the window succeeded
    /// and its latest result succeeded (not a failure, nor an agent error).
    pub(crate) fn works(&self) -> bool {
        matches!(self.stats.status, CellStatus::Ok | CellStatus::Degraded)
            && self.stats.successes > 0
            && self.stats.last_outcome.is_ok()
    }

    /// The path has carried traffic steadily: `ok` (no failure in the window, or the matrix's
    /// recovery streak). The contrast a narrow verdict rests on ("ICMP answers, the port does
    /// not") must be steady, so that paths still recovering from a wider fault — whose
    /// not-yet-reprobed cells still fail — do not make a narrow one look guilty.
    pub(crate) fn steady(&self) -> bool {
        self.stats.status == CellStatus::Ok && self.stats.successes > 0 && self.stats.last_outcome.is_ok()
    }

    /// The network failure the cell shows: its latest outcome, or the one its last error
    /// names.
    pub(crate) fn failure(&self) -> Option<Outcome> {
        if self.stats.last_outcome.is_network_failure() {
            return Some(self.stats.last_outcome);
        }
        let text = self.stats.last_error.as_ref()?.text.as_str();
        Outcome::ALL
            .into_iter()
            .filter(|o| o.is_network_failure())
            .map(|o| (o, o.to_string()))
            .filter(|(_, shown)| text.starts_with(shown.as_str()))
            .max_by_key(|(_, shown)| shown.len())
            .map(|(o, _)| o)
    }

    /// Which cells evidence shows first: the pod itself (ICMP, then its ports), then path MTU,
    /// service endpoints, VIPs and NodePorts, DNS.
    fn rank(&self) -> u8 {
        match (&self.dest, self.kind) {
            (_, ProbeKind::Icmp) => 0,
            (Destination::Pod { .. } | Destination::Node { .. } | Destination::Address { .. }, _) => 1,
            (_, ProbeKind::Mtu) => 2,
            (Destination::Endpoint { .. }, _) => 3,
            (Destination::Service { .. } | Destination::NodePort { .. }, _) => 4,
            (Destination::Dns { .. }, _) => 5,
        }
    }

    /// The destination lives on another node than the source.
    pub(crate) fn crosses_nodes(&self) -> bool {
        self.dst_node.as_ref().is_some_and(|d| d != self.src_node())
    }

    /// `src -> dst` as the matrix labels them, with the kind when the label does not say it.
    pub(crate) fn path(&self) -> String {
        let kind = match self.kind {
            ProbeKind::Icmp => " (icmp)",
            ProbeKind::Mtu => " (path mtu)",
            ProbeKind::Http => " (http)",
            ProbeKind::Tcp | ProbeKind::Dns => "",
        };
        format!("{} -> {}{kind}", self.source, self.dest)
    }

    /// One evidence line: the path, its status, counts and last error.
    pub(crate) fn line(&self) -> String {
        let s = &self.stats;
        let mut out = format!("{}: {}", self.path(), s.status);
        if matches!(self.kind, ProbeKind::Icmp) && s.packets_sent > 0 {
            let lost = 100.0 * s.loss_ratio.get();
            out.push_str(&format!(
                ", {} of {} echoes answered ({lost:.0}% lost)",
                s.packets_received, s.packets_sent
            ));
        } else {
            out.push_str(&format!(", {} of {} attempts ok", s.successes, s.attempts()));
        }
        if self.failed() && s.consecutive_failures > 1 {
            out.push_str(&format!(", {} failures in a row", s.consecutive_failures));
        }
        if let Some(e) = &s.last_error
            && s.status != CellStatus::Ok
        {
            out.push_str(&format!(", last error: {}", e.text));
        }
        out
    }
}

/// Counts over the open cells of a component.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    /// The open cells counted.
    pub(crate) ids: Vec<usize>,
    pub(crate) failing: Vec<usize>,
    pub(crate) working: usize,
    /// Agents that report a failing cell.
    pub(crate) observers: BTreeSet<NodeName>,
    /// Agents that report any counted cell.
    pub(crate) agents: BTreeSet<NodeName>,
}

impl Tally {
    /// Failing cells over counted cells; 0 when nothing was counted.
    pub(crate) fn share(&self) -> f64 {
        if self.ids.is_empty() { 0.0 } else { self.failing.len() as f64 / self.ids.len() as f64 }
    }
}

/// Which finding explains a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    Open,
    /// Claimed by the rule running now; settled to one of its drafts when it returns.
    Pending,
    /// Explained by the draft at this index.
    Draft(usize),
}

/// Why a cell the matrix calls failed or degraded is kept away from the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// Its agent has been quiet for a while: the cell is frozen in the past.
    Quiet,
    /// A pod probing its own address: the traffic never leaves its loopback.
    SelfProbe,
}

/// The observations and what has been explained so far.
#[derive(Debug)]
pub(crate) struct Analysis<'a> {
    pub(crate) ctx: &'a Context<'a>,
    pub(crate) th: &'a Thresholds,
    pub(crate) matrix: &'a Matrix,
    pub(crate) now: UnixMillis,
    pub(crate) obs: Vec<Obs>,
    claims: Vec<Claim>,
    /// Failed or degraded cells the rules do not judge (and why), each with its claim: the
    /// completeness invariant still wants a finding for every one of them.
    pub(crate) held: Vec<(Obs, Held, Claim)>,
    /// Every agent with at least one known cell.
    pub(crate) agents: BTreeSet<NodeName>,
    /// Failed or degraded cells NetworkPolicy keeps shut, as intended: no finding's.
    pub(crate) expected: Vec<(Obs, super::policy::Expectation)>,
    /// Working cells (by index in `obs`) NetworkPolicy denies.
    pub(crate) unenforced: Vec<(usize, super::policy::Expectation)>,
    /// Failing cells (by index in `obs`) a policy isolating one of their ends allows, with
    /// the verdict's sentence: a finding over them says policy is not the cause.
    pub(crate) policy_allowed: BTreeMap<usize, String>,
    /// The cells by the keys the class layer's scopes select on, built on first use.
    pub(crate) scope_index: std::cell::OnceCell<super::cover::ScopeIndex>,
}

impl<'a> Analysis<'a> {
    pub(crate) fn new(matrix: &'a Matrix, ctx: &'a Context<'a>, th: &'a Thresholds, now: UnixMillis) -> Self {
        // An agent quiet for a while already (before the matrix calls it stale) reports cells
        // frozen in the past: they are unknown too.
        let quiet_after = matrix.config().agent_stale_after.mul_f64(th.quiet_share_of_stale.clamp(0.0, 1.0));
        let heard = |n: &NodeName| matrix.agent_last_seen(n).is_some_and(|t| now.since(t) <= quiet_after);
        let mut obs = Vec::new();
        let mut held = Vec::new();
        let mut expected = Vec::new();
        let mut unenforced = Vec::new();
        let mut policy_allowed = BTreeMap::new();
        for (key, stats) in matrix.pod_cells(now).filter(|(_, stats)| stats.status != CellStatus::Unknown) {
            let o = Obs::new(key.source.clone(), key.destination.clone(), key.kind, stats, ctx);
            let bad = matches!(o.stats.status, CellStatus::Failed | CellStatus::Degraded);
            let policy = super::policy::expect(ctx, &o);
            if let Some(e) = policy.as_ref().filter(|e| e.shut()) {
                if bad {
                    expected.push((o, e.clone()));
                    continue;
                }
                // A VIP failing now and then because policy shuts some of its backends is
                // neither working nor a degradation.
                if e.partial && o.stats.since_repair.troubled() {
                    continue;
                }
            }
            if let Some(e) = &policy {
                if e.strictly_denied() && o.steady() {
                    unenforced.push((obs.len(), e.clone()));
                } else if bad && e.allowed_under_isolation() {
                    policy_allowed.insert(obs.len(), e.verdict.to_string());
                }
            }
            if !heard(&o.stats.agent) {
                if bad {
                    held.push((o, Held::Quiet, Claim::Open));
                }
            } else if o.dst_pod.is_some() && o.src_pod() == o.dst_pod.as_ref() {
                // A pod's probes of itself stay on its loopback: they say nothing about the network.
                if bad {
                    held.push((o, Held::SelfProbe, Claim::Open));
                }
            } else {
                obs.push(o);
            }
        }
        let agents = obs.iter().map(|o| o.src_node().clone()).collect();
        let claims = vec![Claim::Open; obs.len()];
        Analysis {
            ctx,
            th,
            matrix,
            now,
            obs,
            claims,
            held,
            agents,
            expected,
            unenforced,
            policy_allowed,
            scope_index: std::cell::OnceCell::new(),
        }
    }

    pub(crate) fn is_open(&self, i: usize) -> bool {
        self.claims.get(i) == Some(&Claim::Open)
    }

    /// The draft that explains cell `i`, once settled.
    pub(crate) fn owner(&self, i: usize) -> Option<usize> {
        match self.claims.get(i) {
            Some(Claim::Draft(d)) => Some(*d),
            _ => None,
        }
    }

    /// Claims the open cells among `ids` for the draft at index `draft`.
    pub(crate) fn claim_for(&mut self, ids: &[usize], draft: usize) {
        for &i in ids {
            if let Some(c) = self.claims.get_mut(i)
                && *c == Claim::Open
            {
                *c = Claim::Draft(draft);
            }
        }
    }

    /// Gives each cell a rule claimed while it ran to one of the drafts it wrote (`drafts`,
    /// the first at index `first`): the one listing the cell's path among its affected paths,
    /// else the first. A claim without a draft is undone, so a later rule, or the residual
    /// finding, explains the cell.
    pub(crate) fn settle(&mut self, drafts: &[super::report::Draft], first: usize) {
        let mut by_path: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (j, d) in drafts.iter().enumerate().rev() {
            for p in &d.affected {
                by_path.insert(p.as_str(), first + j);
            }
        }
        for i in 0..self.claims.len() {
            if self.claims[i] != Claim::Pending {
                continue;
            }
            self.claims[i] = if drafts.is_empty() {
                Claim::Open
            } else {
                Claim::Draft(by_path.get(self.obs[i].path().as_str()).copied().unwrap_or(first))
            };
        }
    }

    /// Moves every claim on draft `d` to draft `to(d)` (drafts merged or renumbered).
    pub(crate) fn remap_claims(&mut self, to: impl Fn(usize) -> usize) {
        let claims = self.claims.iter_mut().chain(self.held.iter_mut().map(|(_, _, c)| c));
        for c in claims {
            if let Claim::Draft(d) = c {
                *d = to(*d);
            }
        }
    }

    /// Indices of the cells no finding has explained yet.
    pub(crate) fn open(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.obs.len()).filter(|&i| self.is_open(i))
    }

    /// Open cells that satisfy `keep`, grouped by `key`.
    pub(crate) fn group<K: Ord>(&self, mut key: impl FnMut(&Obs) -> Option<K>) -> BTreeMap<K, Vec<usize>> {
        let mut out: BTreeMap<K, Vec<usize>> = BTreeMap::new();
        for i in self.open() {
            if let Some(k) = key(&self.obs[i]) {
                out.entry(k).or_default().push(i);
            }
        }
        out
    }

    /// Claims the open cells among `ids` for the rule running now (see [`Analysis::settle`]).
    pub(crate) fn claim(&mut self, ids: &[usize]) {
        for &i in ids {
            if let Some(c) = self.claims.get_mut(i)
                && *c == Claim::Open
            {
                *c = Claim::Pending;
            }
        }
    }

    /// Counts the open cells among `ids`.
    pub(crate) fn tally(&self, ids: &[usize]) -> Tally {
        let mut t = Tally::default();
        for &i in ids.iter().filter(|&&i| self.is_open(i)) {
            let o = &self.obs[i];
            t.ids.push(i);
            t.agents.insert(o.src_node().clone());
            if o.failed() {
                t.failing.push(i);
                t.observers.insert(o.src_node().clone());
            } else if o.works() {
                t.working += 1;
            }
        }
        t
    }

    /// Observers needed when `available` agents could see the failure at all.
    pub(crate) fn need(&self, available: usize) -> usize {
        self.th.min_observers.min(available).max(1)
    }

    /// A component cleared by any working path is blamed: nothing through it works, enough
    /// cells fail, seen by enough of the agents that can see it.
    pub(crate) fn all_fail(&self, t: &Tally) -> bool {
        t.working == 0
            && t.failing.len() >= self.th.min_failing_cells
            && t.share() >= self.th.fail_share
            && t.observers.len() >= self.need(t.agents.len())
    }

    /// The service a VIP, NodePort or DNS cell depends on.
    pub(crate) fn service_of(&self, o: &Obs) -> Option<&ServiceView<'a>> {
        match &o.dest {
            Destination::Service { service, .. } if matches!(o.kind, ProbeKind::Tcp | ProbeKind::Http) => {
                self.ctx.services.get(service)
            }
            Destination::Dns { nameserver: Some(ip), .. } => {
                self.ctx.service_with_vip(*ip).or_else(|| self.ctx.dns_service())
            }
            Destination::Dns { nameserver: None, .. } => self.ctx.dns_service(),
            Destination::NodePort { port, .. } if o.kind == ProbeKind::Tcp => {
                self.ctx.service_with_node_port(*port)
            }
            _ => None,
        }
    }

    /// The backend port a service cell ends on.
    pub(crate) fn backend_port(&self, o: &Obs, svc: &ServiceView<'_>) -> Option<Port> {
        match &o.dest {
            Destination::Service { port, .. } => Some(svc.target_port(*port)),
            Destination::Dns { .. } => Port::new(53).ok().map(|p| svc.target_port(p)),
            Destination::NodePort { port, .. } => {
                svc.info.ports.iter().find(|p| p.node_port == Some(*port)).map(|p| p.target_port)
            }
            _ => None,
        }
    }

    /// Claims the failing or degraded service and DNS cells explained by dead backends: every ready
    /// backend is dead for that cell, or some are and the cell still sees successes (the
    /// live ones answer). `dead(cell, backend, backend port)`; the path to a backend starts at
    /// the cell's [`Obs::dnat_node`].
    pub(crate) fn claim_dependents(
        &mut self,
        dead: impl Fn(&Obs, &Backend, Option<Port>) -> bool,
    ) -> Vec<usize> {
        let mut ids = Vec::new();
        for i in self.open() {
            let o = &self.obs[i];
            // Degraded too: a VIP in front of one dead backend of three fails a third of its
            // connects, and the dead backend is the whole explanation.
            if !o.is_bad() {
                continue;
            }
            let Some(svc) = self.service_of(o) else { continue };
            if svc.backends.is_empty() {
                continue;
            }
            let port = self.backend_port(o, svc);
            let n_dead = svc.backends.iter().filter(|b| dead(o, b, port)).count();
            if n_dead == svc.backends.len() || (n_dead > 0 && o.stats.successes > 0) {
                ids.push(i);
            }
        }
        self.claim(&ids);
        ids
    }

    /// Evidence lines for up to `max_evidence_cells` of `ids`, taking agents in turn so the
    /// lines show different observers.
    pub(crate) fn cell_lines(&self, ids: &[usize]) -> Vec<String> {
        let mut by_agent: BTreeMap<&NodeName, Vec<usize>> = BTreeMap::new();
        for &i in ids {
            if let Some(o) = self.obs.get(i) {
                by_agent.entry(o.src_node()).or_default().push(i);
            }
        }
        let mut queues: Vec<VecDeque<usize>> = by_agent
            .into_values()
            .map(|mut v| {
                v.sort_by_cached_key(|&i| (self.obs[i].rank(), self.obs[i].path()));
                v.into()
            })
            .collect();
        let mut out = Vec::new();
        while out.len() < self.th.max_evidence_cells && queues.iter().any(|q| !q.is_empty()) {
            for q in &mut queues {
                if out.len() >= self.th.max_evidence_cells {
                    break;
                }
                if let Some(i) = q.pop_front() {
                    out.push(self.obs[i].line());
                }
            }
        }
        out
    }

    /// The paths of `ids`, sorted and deduplicated.
    pub(crate) fn paths(&self, ids: &[usize]) -> Vec<String> {
        let set: BTreeSet<String> = ids.iter().filter_map(|&i| self.obs.get(i)).map(Obs::path).collect();
        set.into_iter().collect()
    }

    /// The cells' counts pooled bucket by bucket, oldest first, since the pooled series'
    /// latest repair ([`crate::matrix::repair_index`]): a fault that ended is history, even
    /// where no single cell saw enough of it to tell.
    pub(crate) fn pooled_history(&self, ids: &[usize]) -> Vec<crate::matrix::BucketCounts> {
        let mut by_start: BTreeMap<i64, crate::matrix::BucketCounts> = BTreeMap::new();
        for &i in ids {
            let Some(o) = self.obs.get(i) else { continue };
            for b in self.matrix.pod_cell_history(&o.key(), self.now).unwrap_or_default() {
                by_start
                    .entry(b.start_ms)
                    .or_insert(crate::matrix::BucketCounts { start_ms: b.start_ms, ..Default::default() })
                    .add(&b);
            }
        }
        let mut series: Vec<_> = by_start.into_values().collect();
        let packets: Vec<(u64, u64)> = series
            .iter()
            .map(|b| (b.packets_sent, b.packets_sent.saturating_sub(b.packets_received)))
            .collect();
        series.split_off(crate::matrix::repair_index(&packets))
    }

    /// The cells' counts pooled, since the onset of their trouble: a fault's magnitude over
    /// its own window, not diluted by the samples before it.
    pub(crate) fn pooled_onset(&self, ids: &[usize]) -> crate::matrix::BucketCounts {
        crate::matrix::since_onset(&self.pooled_history(ids))
    }

    /// Whether `node`'s agent has been heard from recently.
    pub(crate) fn agent_fresh(&self, node: &NodeName) -> bool {
        self.matrix.agent_fresh(node, self.now)
    }
}

/// What a pooled history ([`Analysis::pooled_history`], oldest first) says about a fault.
pub(crate) mod pooled {
    use crate::matrix::BucketCounts;

    /// The loss over the latest two probe rounds.
    pub(crate) fn recent_loss(series: &[BucketCounts]) -> f64 {
        let (sent, lost) = series.iter().rev().take(2).fold((0, 0), |(s, l), b| {
            (s + b.packets_sent, l + b.packets_sent.saturating_sub(b.packets_received))
        });
        if sent == 0 { 0.0 } else { lost as f64 / sent as f64 }
    }

    /// The probe rounds in which something was lost.
    pub(crate) fn trouble_rounds(series: &[BucketCounts]) -> usize {
        series.iter().filter(|b| b.failures > 0 || b.packets_received < b.packets_sent).count()
    }

    /// The probe rounds since the onset of trouble ([`crate::matrix::since_onset`]).
    pub(crate) fn rounds_since_onset(series: &[BucketCounts]) -> usize {
        let onset = crate::matrix::since_onset(series).start_ms;
        series.iter().filter(|b| b.start_ms >= onset).count()
    }
}
