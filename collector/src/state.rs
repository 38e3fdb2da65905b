//! The collector's shared state: the matrix, the latest inspection per source, the agents, and
//! the inventory. It is the [`Sink`] the session service feeds and what the API, metrics and
//! localization read. Locks are held only to copy or update plain data, never across I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use netdiag_model::NodeName;
use netdiag_model::agents::AgentInfo;
use netdiag_model::finding::{Diagnosis, PolicyDenial};
use netdiag_model::inspect::InspectionReport;
use netdiag_model::inventory::Inventory;
use netdiag_model::limits::MAX_POLICY_DENIALS;
use netdiag_model::matrix::{CellStatus, MatrixLevel, MatrixQuery, MatrixSnapshot};
use netdiag_model::probe::{ProbeKind, Source};
use netdiag_model::result::ResultBatch;
use netdiag_model::run::RunProgress;
use netdiag_model::session::Hello;
use netdiag_model::text::Text;
use netdiag_model::time::UnixMillis;

use crate::metrics::CollectorMetrics;
use crate::quota::{CellQuota, QuotaReason, Quotas, Refused};
use crate::runs::registry::RunRegistry;
use crate::sink::Sink;
use netdiag_diagnose::matrix::{InventoryIndex, Matrix, MatrixConfig, NodeDestination, PlacedBatch};

/// The collector's clock, as the pure code wants it.
pub fn now() -> UnixMillis {
    UnixMillis::saturating_from_system_time(SystemTime::now())
}

/// How old a diagnosis may be before a reader recomputes it: readers (API, UI, gRPC,
/// `/metrics`, runs) share one computation per interval however often they ask, and compute it
/// on a copy of the matrix, off the locks ingest needs.
pub const DIAGNOSIS_MAX_AGE: Duration = Duration::from_secs(1);

/// A diagnosis is also kept for this many times as long as it took to compute, so diagnosing
/// takes at most a fifth of a core however often it is read (at 500 nodes × 30 pods one took
/// 1.8 s: recomputed every second, the collector was diagnosing all the time).
pub const DIAGNOSIS_IDLE_FACTOR: u32 = 4;

/// How long a diagnosis that took `took` to compute is served.
pub fn diagnosis_max_age(took: Duration) -> Duration {
    DIAGNOSIS_MAX_AGE.max(took.saturating_mul(DIAGNOSIS_IDLE_FACTOR))
}

/// How often "the collector tracks its cap of cells" is logged while it lasts.
const FULL_LOG_EVERY: Duration = Duration::from_secs(600);

/// One diagnosis and what it was computed from.
#[derive(Debug, Clone)]
pub struct DiagnosisSnapshot {
    pub diagnosis: Diagnosis,
    /// Every failed or degraded pod-level cell, by (source label, destination label, kind),
    /// with the index in `diagnosis.findings` of the finding that claims it.
    pub claims: HashMap<(String, String, ProbeKind), usize>,
    /// Failed or degraded pod-level cells NetworkPolicy keeps shut, as intended, with the
    /// policy verdict's sentence.
    pub denied_by_policy: HashMap<(String, String, ProbeKind), String>,
    /// Cells per (level, kind, status) at `diagnosis.generated_at`.
    pub cell_counts: BTreeMap<(MatrixLevel, ProbeKind, CellStatus), u64>,
    /// When each listed finding (by [`finding_key`]) was first and last seen.
    pub seen: HashMap<String, crate::history::Seen>,
    /// How long copying the inputs and localizing took.
    pub took: Duration,
    /// Node pairs with a failed or degraded node-level cell (any kind): what plans probe fully.
    pub failing_node_pairs: BTreeSet<(NodeName, NodeName)>,
}

impl DiagnosisSnapshot {
    /// The key of the finding that claims a pod-level cell, if any ([`finding_key`]).
    /// Why NetworkPolicy denies a failing pod-level cell, as intended, if it does.
    pub fn denied_by_policy(&self, source: &str, destination: &str, kind: ProbeKind) -> Option<&str> {
        self.denied_by_policy.get(&(source.to_owned(), destination.to_owned(), kind)).map(String::as_str)
    }

    pub fn claimed_by(&self, source: &str, destination: &str, kind: ProbeKind) -> Option<String> {
        let i = self.claims.get(&(source.to_owned(), destination.to_owned(), kind))?;
        self.diagnosis.findings.get(*i).map(finding_key)
    }
}

/// How a cell names the finding that claims it: `<id> <culprit>` (`pod-down tidb/demo-pd-1`);
/// the diagnosis shows the same key on each finding.
pub fn finding_key(f: &netdiag_model::finding::Finding) -> String {
    match &f.culprit {
        Some(c) => format!("{} {}", f.id.as_str(), c.name.as_str()),
        None => f.id.as_str().to_owned(),
    }
}

/// Ingest counters for metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestCounters {
    pub batches: u64,
    pub results: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub dropped_by_agents: u64,
    pub inspections: u64,
    /// Inspections refused: of a source on another node, or over an agent's bound.
    pub foreign_inspections: u64,
    /// Results refused or batches slowed by an agent's quotas, by [`QuotaReason::ALL`]'s order.
    pub quota_exceeded: [u64; 3],
}

impl IngestCounters {
    pub fn quota_exceeded(&self, reason: QuotaReason) -> u64 {
        self.quota_exceeded[reason as usize]
    }
}

#[derive(Debug)]
struct AgentEntry {
    info: AgentInfo,
}

/// Everything the collector knows.
#[derive(Debug)]
pub struct CollectorState {
    /// Readers (the diagnosis' copy, API snapshots, metrics) share it; only ingest and
    /// expiry write, so a node-level query never queues behind the diagnosis copying the matrix.
    matrix: RwLock<Matrix>,
    /// Shared, so the diagnosis and the planner take it without copying 150 000 pods.
    inventory: RwLock<(Arc<Inventory>, InventoryIndex)>,
    inspections: Mutex<Inspections>,
    /// Findings' first and last sightings and the timeline of transitions.
    history: Mutex<crate::history::FindingHistory>,
    agents: Mutex<BTreeMap<NodeName, AgentEntry>>,
    counters: Mutex<IngestCounters>,
    runs: Arc<RunRegistry>,
    /// Fed every accepted batch (the per-node series), with the batch's node-level
    /// destinations placed once for both.
    metrics: Arc<CollectorMetrics>,
    /// The latest diagnosis, and a lock held by whoever computes the next one (others are
    /// served the latest meanwhile).
    diagnosis: Mutex<Option<Arc<DiagnosisSnapshot>>>,
    /// The policy errors last logged (logged again only when they change).
    policy_errors_logged: Mutex<Vec<String>>,
    computing: Mutex<()>,
    /// A diagnosis is being computed in the background for readers served a stale one.
    refreshing: std::sync::atomic::AtomicBool,
    /// When "the collector is full" was last logged.
    full_logged: Mutex<Option<UnixMillis>>,
    /// How much diagnosing and planning the collector has done, for `/metrics`.
    work: Mutex<WorkCounters>,
    /// Woken by every new inventory (a permit is kept while nobody waits).
    inventory_changed: tokio::sync::Notify,
    /// What one agent may write, and each agent's cells against it.
    quotas: Quotas,
    cells: Mutex<CellQuota>,
    /// The (agent, reason) pairs whose quota overrun was logged (once each).
    quota_logged: Mutex<std::collections::HashSet<(NodeName, QuotaReason)>>,
}

/// The collector's own work, timed: what `/metrics` shows of diagnoses and plan rounds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WorkCounters {
    pub diagnoses: u64,
    /// Plan rounds: every connected plan-taking node's plan recomputed.
    pub plan_rounds: u64,
    /// The latest round: how long it took and how many plans it computed.
    pub plan_round_seconds: f64,
    pub plan_round_plans: u64,
}

impl CollectorState {
    pub fn new(inventory: Inventory, config: MatrixConfig) -> Self {
        Self::with_metrics(inventory, config, Arc::default())
    }

    /// A state whose ingest feeds `metrics` (the ones `/metrics` serves).
    pub fn with_metrics(inventory: Inventory, config: MatrixConfig, metrics: Arc<CollectorMetrics>) -> Self {
        let index = InventoryIndex::new(&inventory);
        Self {
            matrix: RwLock::new(Matrix::new(config)),
            inventory: RwLock::new((Arc::new(inventory), index)),
            inspections: Mutex::default(),
            history: Mutex::default(),
            agents: Mutex::default(),
            counters: Mutex::default(),
            runs: Arc::default(),
            metrics,
            diagnosis: Mutex::default(),
            policy_errors_logged: Mutex::default(),
            computing: Mutex::default(),
            refreshing: std::sync::atomic::AtomicBool::new(false),
            full_logged: Mutex::default(),
            work: Mutex::default(),
            inventory_changed: tokio::sync::Notify::new(),
            quotas: Quotas::default(),
            cells: Mutex::default(),
            quota_logged: Mutex::default(),
        }
    }

    /// The same state with `quotas` on each agent instead of [`Quotas::default`].
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// The quotas each agent is held to.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// Counts an overrun of `node`'s `reason` quota by `n`, logged once per agent and reason
    /// (again after the agent reconnects).
    fn count_quota_overrun(&self, node: &NodeName, reason: QuotaReason, n: u64) {
        if n == 0 {
            return;
        }
        self.add_quota_exceeded(reason, n);
        let first = self.quota_logged.lock().is_ok_and(|mut l| l.insert((node.clone(), reason)));
        if first {
            tracing::warn!(agent = %node, reason = reason.as_str(), "agent over its quota: {}", reason.explain(&self.quotas));
        }
    }

    fn add_quota_exceeded(&self, reason: QuotaReason, n: u64) {
        self.count(|c| {
            let slot = &mut c.quota_exceeded[reason as usize];
            *slot = slot.saturating_add(n);
        });
    }

    /// Counts results for new cells refused because the collector tracks its total already (as
    /// the `cells` quota, for the metric), logged once per [`FULL_LOG_EVERY`] for the whole
    /// collector: it is no agent's doing, and at 5 000 nodes one line per agent was thousands.
    fn count_collector_full(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.add_quota_exceeded(QuotaReason::Cells, n);
        let at = now();
        let due = self.full_logged.lock().is_ok_and(|mut last| {
            let due = last.is_none_or(|t| at.since(t) >= FULL_LOG_EVERY);
            if due {
                *last = Some(at);
            }
            due
        });
        if due {
            tracing::warn!(
                cells = self.quotas.cells_total,
                "the collector tracks its cap of cells: results for new cells are dropped until old ones expire; \
                 run with fewer probes per node (a larger cluster is sampled) or more replicas' memory"
            );
        }
    }

    /// The metrics ingest feeds.
    pub fn metrics(&self) -> &Arc<CollectorMetrics> {
        &self.metrics
    }

    pub fn set_inventory(&self, inventory: Inventory) {
        let index = InventoryIndex::new(&inventory);
        if let Ok(mut inv) = self.inventory.write() {
            *inv = (Arc::new(inventory), index);
        }
        self.inventory_changed.notify_one();
    }

    /// Wakes [`Self::inventory_changed`] as a new inventory would (a waiter that took the news
    /// and wants the next wait to see it too).
    pub fn notify_inventory_changed(&self) {
        self.inventory_changed.notify_one();
    }

    /// Resolves at the next [`Self::set_inventory`] (at once if one came since the last call).
    pub async fn inventory_changed(&self) {
        self.inventory_changed.notified().await;
    }

    pub fn inventory(&self) -> Inventory {
        self.with_inventory(Inventory::clone)
    }

    /// The inventory itself, shared rather than copied.
    pub fn shared_inventory(&self) -> Arc<Inventory> {
        match self.inventory.read() {
            Ok(g) => g.0.clone(),
            Err(p) => p.into_inner().0.clone(),
        }
    }

    /// Runs `f` on the inventory under its read lock, instead of cloning it (lock order, as in
    /// ingest: inventory, then matrix).
    pub fn with_inventory<T>(&self, f: impl FnOnce(&Inventory) -> T) -> T {
        match self.inventory.read() {
            Ok(g) => f(&g.0),
            Err(p) => f(&p.into_inner().0),
        }
    }

    pub fn matrix(&self, query: &MatrixQuery, now: UnixMillis) -> MatrixSnapshot {
        match self.matrix.read() {
            Ok(m) => m.snapshot(query, now),
            Err(p) => p.into_inner().snapshot(query, now),
        }
    }

    /// Runs `f` on the matrix (for localization, which reads cell statistics).
    pub fn with_matrix<T>(&self, f: impl FnOnce(&Matrix) -> T) -> T {
        match self.matrix.read() {
            Ok(m) => f(&m),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// The latest inspection of every source, with the node that reported it.
    pub fn inspections(&self) -> BTreeMap<Source, (NodeName, InspectionReport)> {
        self.inspections.lock().map(|i| i.latest.clone()).unwrap_or_default()
    }

    /// Every agent ever seen; `connected` only while its session is up and it was heard from
    /// recently (a session that hangs silently does not count).
    pub fn agents(&self, now: UnixMillis) -> Vec<AgentInfo> {
        let mut list: Vec<AgentInfo> =
            self.agents.lock().map(|a| a.values().map(|e| e.info.clone()).collect()).unwrap_or_default();
        for info in &mut list {
            let heard = info.last_seen.is_some_and(|t| now.since(t) <= AGENT_SILENT_AFTER);
            info.connected = info.connected && heard;
        }
        list
    }

    /// Diagnoses and plan rounds so far.
    pub fn work(&self) -> WorkCounters {
        self.work.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Records a plan round that computed `plans` plans in `took`.
    pub fn plan_round(&self, plans: usize, took: Duration) {
        if let Ok(mut w) = self.work.lock() {
            w.plan_rounds = w.plan_rounds.saturating_add(1);
            w.plan_round_seconds = took.as_secs_f64();
            w.plan_round_plans = plans as u64;
        }
    }

    pub fn counters(&self) -> IngestCounters {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The on-demand runs in flight, where agents' run progress is routed by run id.
    pub fn run_registry(&self) -> &Arc<RunRegistry> {
        &self.runs
    }

    /// Forgets matrix cells nobody updated for a long time, each agent's quota bookkeeping
    /// with them, and agents of nodes the inventory no longer lists that have been gone for
    /// [`AGENT_TTL`] (with their inspections and metric series): nothing an agent once said
    /// is kept for good.
    pub fn expire(&self, now: UnixMillis) -> usize {
        let (removed, keep) = match self.matrix.write() {
            Ok(mut m) => (m.expire(now), m.config().expire_after),
            Err(_) => return 0,
        };
        if let Ok(mut cells) = self.cells.lock() {
            cells.expire(now, keep);
        }
        let gone: Vec<NodeName> = self.with_inventory(|inv| {
            self.agents
                .lock()
                .map(|agents| {
                    agents
                        .values()
                        .filter(|e| !e.info.connected && inv.node(&e.info.node).is_none())
                        .filter(|e| e.info.last_seen.is_none_or(|t| now.since(t) > AGENT_TTL))
                        .map(|e| e.info.node.clone())
                        .collect()
                })
                .unwrap_or_default()
        });
        for node in &gone {
            self.forget_agent(node);
        }
        removed
    }

    /// Drops what the collector holds of `node`'s agent.
    fn forget_agent(&self, node: &NodeName) {
        if let Ok(mut agents) = self.agents.lock() {
            agents.remove(node);
        }
        if let Ok(mut i) = self.inspections.lock() {
            i.forget(node);
        }
        if let Ok(mut l) = self.quota_logged.lock() {
            l.retain(|(n, _)| n != node);
        }
        self.metrics.forget_node(node);
        tracing::info!(agent = %node, "forgot an agent whose node left the inventory {AGENT_TTL:?} ago");
    }

    /// The findings, most severe first (see [`netdiag_diagnose::localize`]).
    pub fn diagnosis(&self, now: UnixMillis) -> Diagnosis {
        self.diagnosis_snapshot(now).diagnosis.clone()
    }

    /// The latest diagnosis computed, however old, without computing one.
    pub fn latest_diagnosis(&self) -> Option<Arc<DiagnosisSnapshot>> {
        self.diagnosis.lock().ok().and_then(|d| d.clone())
    }

    /// The latest diagnosis if it is younger than [`diagnosis_max_age`] at `now`, else a new
    /// one. While one reader computes, the others get the previous snapshot (when there is
    /// one) instead of queueing behind it.
    pub fn diagnosis_snapshot(&self, now: UnixMillis) -> Arc<DiagnosisSnapshot> {
        let cached = || self.diagnosis.lock().ok().and_then(|d| d.clone());
        let fresh = |s: &DiagnosisSnapshot| {
            let at = s.diagnosis.generated_at;
            now >= at && now.since(at) < diagnosis_max_age(s.took)
        };
        if let Some(s) = cached().filter(|s| fresh(s)) {
            return s;
        }
        let _computing = match self.computing.try_lock() {
            Ok(g) => g,
            Err(_) => match cached() {
                Some(s) => return s,
                None => match self.computing.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                },
            },
        };
        if let Some(s) = cached().filter(|s| fresh(s)) {
            return s;
        }
        let started = std::time::Instant::now();
        let mut computed = self.compute_diagnosis(now);
        computed.took = started.elapsed();
        tracing::debug!(
            took_ms = computed.took.as_millis() as u64,
            findings = computed.diagnosis.findings.len(),
            "diagnosis computed"
        );
        if let Ok(mut w) = self.work.lock() {
            w.diagnoses = w.diagnoses.saturating_add(1);
        }
        if let Ok(mut h) = self.history.lock() {
            h.observe(&computed.diagnosis.findings, now);
            computed.seen = computed
                .diagnosis
                .findings
                .iter()
                .filter_map(|f| {
                    let key = finding_key(f);
                    h.seen(&key).map(|s| (key, s))
                })
                .collect();
        }
        let snapshot = Arc::new(computed);
        if let Ok(mut d) = self.diagnosis.lock() {
            *d = Some(snapshot.clone());
        }
        snapshot
    }

    /// For readers that must not wait (API requests): the latest diagnosis whatever its age; a
    /// stale one starts a fresh one on a thread of its own (one at a time), which the next
    /// reader gets. Computed here only when there is none yet. At 5 000 nodes a diagnosis takes
    /// seconds: a request must not be the one that pays for it.
    pub fn diagnosis_served(self: &Arc<Self>, now: UnixMillis) -> Arc<DiagnosisSnapshot> {
        use std::sync::atomic::Ordering;
        let Some(cached) = self.diagnosis.lock().ok().and_then(|d| d.clone()) else {
            return self.diagnosis_snapshot(now);
        };
        let at = cached.diagnosis.generated_at;
        let fresh = now >= at && now.since(at) < diagnosis_max_age(cached.took);
        if !fresh
            && self.refreshing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            let state = self.clone();
            let spawned = std::thread::Builder::new().name("diagnosis".into()).spawn(move || {
                state.diagnosis_snapshot(now);
                state.refreshing.store(false, Ordering::Release);
            });
            if spawned.is_err() {
                self.refreshing.store(false, Ordering::Release);
                return self.diagnosis_snapshot(now);
            }
        }
        cached
    }

    /// Localizes on copies of the matrix, inventory and inspections: the locks ingest needs
    /// are held only while copying.
    fn compute_diagnosis(&self, now: UnixMillis) -> DiagnosisSnapshot {
        let inspections = self.inspections();
        let inventory = self.shared_inventory();
        let matrix = self.with_matrix(Matrix::clone);
        let thresholds = netdiag_diagnose::localize::Thresholds::default();
        let l = netdiag_diagnose::localize::localize(&matrix, &inspections, &inventory, now, &thresholds);
        let claims = l
            .claims
            .into_iter()
            .map(|(key, i)| {
                let (source, destination) = key.labels();
                ((source, destination, key.kind), i)
            })
            .collect();
        let denied_by_policy_total = l.denied_by_policy.len() as u64;
        let mut denied_list = Vec::new();
        let mut denied = HashMap::new();
        for (key, reason) in l.denied_by_policy {
            let (source, destination) = key.labels();
            if denied_list.len() < MAX_POLICY_DENIALS {
                denied_list.push(PolicyDenial {
                    path: Text::lossy(&format!("{source} -> {destination} {}", key.kind)),
                    reason: Text::lossy(&reason),
                });
            }
            denied.insert((source, destination, key.kind), reason);
        }
        let changed = self.policy_errors_logged.lock().is_ok_and(|mut seen| {
            let changed = *seen != l.policy_errors;
            seen.clone_from(&l.policy_errors);
            changed
        });
        if changed && !l.policy_errors.is_empty() {
            tracing::warn!(
                errors = %l.policy_errors.join("; "),
                "NetworkPolicies left out of the diagnosis: the API server would refuse them; fix or delete them"
            );
        }
        let mut cell_counts = BTreeMap::new();
        for (key, stats) in matrix.pod_cells(now) {
            *cell_counts.entry((MatrixLevel::Pod, key.kind, stats.status)).or_default() += 1;
        }
        let mut failing_node_pairs = BTreeSet::new();
        for (key, stats) in matrix.node_cells(now) {
            *cell_counts.entry((MatrixLevel::Node, key.kind, stats.status)).or_default() += 1;
            if matches!(stats.status, CellStatus::Failed | CellStatus::Degraded)
                && let NodeDestination::Node(destination) = &key.destination
            {
                failing_node_pairs.insert((key.source.clone(), destination.clone()));
            }
        }
        DiagnosisSnapshot {
            diagnosis: Diagnosis {
                findings: l.findings,
                generated_at: now,
                denied_by_policy: denied_list,
                denied_by_policy_total,
            },
            claims,
            denied_by_policy: denied,
            cell_counts,
            seen: HashMap::new(),
            took: Duration::ZERO,
            failing_node_pairs,
        }
    }

    /// Up to `limit` finding transitions, newest first ([`crate::history`]).
    pub fn finding_events(&self, limit: usize) -> Vec<crate::history::FindingEvent> {
        self.history.lock().map(|h| h.events(limit)).unwrap_or_default()
    }

    /// The finding transitions after `seq`, oldest first ([`crate::history::FindingHistory::since`]).
    pub fn finding_events_since(&self, seq: u64) -> Vec<crate::history::FindingEvent> {
        self.history.lock().map(|h| h.since(seq)).unwrap_or_default()
    }

    fn count(&self, f: impl FnOnce(&mut IngestCounters)) {
        if let Ok(mut c) = self.counters.lock() {
            f(&mut c);
        }
    }
}

/// Agents silent this long count as disconnected in `/agents` even if their TCP session lingers.
pub const AGENT_SILENT_AFTER: Duration = Duration::from_secs(30);
/// An agent whose node is not in the inventory is forgotten this long after it was last heard.
pub const AGENT_TTL: Duration = Duration::from_secs(15 * 60);

impl Sink for CollectorState {
    fn knows_node(&self, node: &NodeName) -> bool {
        self.with_inventory(|inv| inv.node(node).is_some())
    }

    fn quota_exceeded(&self, node: &NodeName, reason: QuotaReason) {
        self.count_quota_overrun(node, reason, 1);
    }

    fn agent_connected(&self, hello: &Hello) {
        let now = now();
        if let Ok(mut l) = self.quota_logged.lock() {
            l.retain(|(n, _)| n != &hello.node);
        }
        if let Ok(mut m) = self.matrix.write() {
            m.agent_seen(&hello.node, now);
        }
        if let Ok(mut agents) = self.agents.lock() {
            let entry = agents.entry(hello.node.clone()).or_insert_with(|| AgentEntry {
                info: AgentInfo {
                    node: hello.node.clone(),
                    agent_version: hello.agent_version.clone(),
                    connected: true,
                    connected_since: Some(now),
                    last_seen: Some(now),
                    results_received: 0,
                    results_dropped: 0,
                    pods: 0,
                    capabilities: hello.capabilities.clone(),
                },
            });
            entry.info.agent_version = hello.agent_version.clone();
            entry.info.connected = true;
            entry.info.connected_since = Some(now);
            entry.info.last_seen = Some(now);
            entry.info.pods = u32::try_from(hello.pods.len()).unwrap_or(u32::MAX);
            entry.info.capabilities = hello.capabilities.clone();
        }
    }

    fn agent_disconnected(&self, node: &NodeName) {
        if let Ok(mut agents) = self.agents.lock()
            && let Some(e) = agents.get_mut(node)
        {
            e.info.connected = false;
        }
        self.runs.agent_gone(node);
    }

    fn results(&self, node: &NodeName, mut batch: ResultBatch) -> Refused {
        let now = now();
        let dropped = batch.dropped;
        let Ok(inv) = self.inventory.read() else { return Refused::default() };
        // What the agent may not say goes before anything counts it (lock order: inventory,
        // cells, matrix).
        let refused = self
            .cells
            .lock()
            .map(|mut c| c.admit(node, &mut batch, &inv.1, &self.quotas, now))
            .unwrap_or_default();
        self.count_quota_overrun(node, QuotaReason::ForeignSource, refused.foreign);
        self.count_quota_overrun(node, QuotaReason::Cells, refused.cells);
        self.count_collector_full(refused.full);
        // Node-level destinations placed once, for both the metrics and the matrix.
        let placed = PlacedBatch::new(&batch, &inv.1);
        self.metrics.observe_placed(node, &placed);
        if let Ok(mut m) = self.matrix.write() {
            m.record_placed(node, &placed, now);
        }
        drop(inv);
        let n = batch.results.len() as u64;
        if let Ok(mut agents) = self.agents.lock()
            && let Some(e) = agents.get_mut(node)
        {
            // `dropped` is the agent's word: saturate rather than overflow (a panic here would
            // poison the lock and stop every later update).
            e.info.results_received = e.info.results_received.saturating_add(n);
            e.info.results_dropped = e.info.results_dropped.saturating_add(dropped);
            e.info.last_seen = Some(now);
        }
        self.count(|c| {
            c.batches = c.batches.saturating_add(1);
            c.results = c.results.saturating_add(n);
            c.dropped_by_agents = c.dropped_by_agents.saturating_add(dropped);
        });
        refused
    }

    fn inspection(&self, node: &NodeName, report: InspectionReport) {
        if let Ok(mut m) = self.matrix.write() {
            m.agent_seen(node, now());
        }
        // An agent speaks for its own node and the pods on it, never for another node's: a
        // report about node-2 from node-1's agent (a bug, or a hostile agent) would put words
        // in node-2's inspection the diagnosis trusts as a cause on record.
        let own = match &report.source {
            Source::Node(n) => n == node,
            Source::Pod(p) => self
                .inventory
                .read()
                .map(|inv| inv.1.node_of_pod(p).is_none_or(|n| n == node))
                .unwrap_or(false),
        };
        if !own {
            tracing::warn!(agent = %node, source = %report.source, "inspection of a source on another node refused");
            self.count(|c| c.foreign_inspections += 1);
            return;
        }
        let source = report.source.clone();
        let Ok(stored) = self.inspections.lock().map(|mut i| i.insert(node, report)) else { return };
        if stored {
            self.count(|c| c.inspections += 1);
        } else {
            tracing::warn!(agent = %node, %source, "inspection refused: the agent already has one per pod a node can hold");
            self.count(|c| c.foreign_inspections += 1);
        }
    }

    fn run_progress(&self, node: &NodeName, progress: RunProgress) {
        self.runs.deliver(node, progress);
    }

    fn duplicate_batch(&self, _node: &NodeName) {
        self.count(|c| c.duplicates += 1);
    }

    fn invalid_message(&self, _node: &NodeName) {
        self.count(|c| c.invalid += 1);
    }
}

/// The latest inspection per source and the agent that sent it, with how many each agent
/// holds: its bound is checked on every new source without a scan over all of them.
#[derive(Debug, Default)]
struct Inspections {
    latest: BTreeMap<Source, (NodeName, InspectionReport)>,
    held: HashMap<NodeName, usize>,
}

impl Inspections {
    /// Keeps `report` from `node`'s agent; false when it is a new source past the agent's
    /// bound (its node and at most the pods a node can hold).
    fn insert(&mut self, node: &NodeName, report: InspectionReport) -> bool {
        let bound = netdiag_model::limits::MAX_LOCAL_PODS + 1;
        let previous = self.latest.get(&report.source).map(|(n, _)| n.clone());
        if previous.as_ref() != Some(node) {
            let held = self.held.entry(node.clone()).or_default();
            if *held >= bound {
                return false;
            }
            *held += 1;
            // A pod that moved: its old node's agent no longer holds it.
            if let Some(old) = previous
                && let Some(n) = self.held.get_mut(&old)
            {
                *n = n.saturating_sub(1);
            }
        }
        self.latest.insert(report.source.clone(), (node.clone(), report));
        true
    }

    /// Forgets every inspection `node`'s agent sent.
    fn forget(&mut self, node: &NodeName) {
        self.latest.retain(|_, (n, _)| n != node);
        self.held.remove(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Sink;

    fn report(source: &str) -> InspectionReport {
        let source: Source = source.parse().unwrap();
        serde_json::from_value(serde_json::json!({
            "source": source, "at": 1_700_000_000_000i64, "links": [], "routes": [], "neighbours": [],
            "nat_services": [], "sysctls": [], "resolv_conf": null, "proxy_mode": null, "errors": [],
        }))
        .unwrap()
    }

    #[test]
    fn a_slow_diagnosis_is_served_longer() {
        assert_eq!(diagnosis_max_age(Duration::from_millis(20)), DIAGNOSIS_MAX_AGE);
        assert_eq!(diagnosis_max_age(Duration::from_secs(2)), Duration::from_secs(8));
    }

    /// A reader is served the diagnosis there is, however old, and never computes one itself
    /// while there is one; the fresh one, computed on the side, is what the next reader gets.
    #[test]
    fn readers_get_the_latest_diagnosis_at_once_and_a_fresh_one_follows() {
        let inventory = Inventory::from_yaml(netdiag_diagnose::sim::INVENTORY).unwrap();
        let state = Arc::new(CollectorState::new(inventory, MatrixConfig::default()));
        let t0 = UnixMillis::new(1_700_000_000_000).unwrap();
        let first = state.diagnosis_served(t0);
        assert_eq!(first.diagnosis.generated_at, t0, "none yet: computed for the first reader");
        let later = UnixMillis::new(t0.get() + 3_600_000).unwrap();
        let served = state.diagnosis_served(later);
        assert_eq!(served.diagnosis.generated_at, t0, "stale, but served at once");
        let start = std::time::Instant::now();
        while state.diagnosis_served(later).diagnosis.generated_at != later {
            assert!(start.elapsed() < Duration::from_secs(10), "no fresh diagnosis followed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(state.work().diagnoses, 2, "one on the side, not one per reader");
    }

    #[test]
    fn an_agent_speaks_only_for_its_node_and_its_pods() {
        let inventory = Inventory::from_yaml(netdiag_diagnose::sim::INVENTORY).unwrap();
        let state = CollectorState::new(inventory, MatrixConfig::default());
        let node1: NodeName = "node-1".parse().unwrap();
        // demo-pd-0 lives on node-1, demo-pd-1 on node-2.
        for (source, kept) in [
            ("node/node-1", true),
            ("tidb/demo-pd-0", true),
            ("node/node-2", false),
            ("tidb/demo-pd-1", false),
            ("default/not-in-the-inventory", true),
        ] {
            state.inspection(&node1, report(source));
            let held = state.inspections();
            let src: Source = source.parse().unwrap();
            assert_eq!(held.contains_key(&src), kept, "{source}");
        }
        let snapshot = state.counters();
        assert_eq!((snapshot.inspections, snapshot.foreign_inspections), (3, 2));
    }

    fn probe(source: &str, target_ip: &str) -> netdiag_model::result::ProbeResult {
        serde_json::from_value(serde_json::json!({
            "source": source.parse::<Source>().unwrap(),
            "target": {"type": "address", "ip": target_ip, "port": null},
            "kind": "icmp", "outcome": "ok", "at": now(),
        }))
        .unwrap()
    }

    #[test]
    fn results_for_another_nodes_sources_are_refused_and_counted() {
        let inventory = Inventory::from_yaml(netdiag_diagnose::sim::INVENTORY).unwrap();
        let metrics = Arc::new(CollectorMetrics::new());
        let state =
            Arc::new(CollectorState::with_metrics(inventory, MatrixConfig::default(), metrics.clone()));
        let node1: NodeName = "node-1".parse().unwrap();
        let batch = ResultBatch {
            seq: netdiag_model::result::Seq::FIRST,
            results: vec![
                probe("tidb/demo-pd-0", "10.9.0.1"),
                probe("tidb/demo-pd-1", "10.9.0.1"), // on node-2
                probe("node/node-2", "10.9.0.1"),
            ],
            dropped: 0,
        };
        state.results(&node1, batch);
        let cells = state.matrix(&MatrixQuery::default(), now());
        let sources: Vec<String> = cells.cells.iter().map(|c| c.source.to_string()).collect();
        assert_eq!(sources, ["tidb/demo-pd-0"], "only node-1's own pod wrote a cell");
        assert_eq!(state.counters().quota_exceeded(QuotaReason::ForeignSource), 2);
        assert_eq!(state.counters().results, 1);
        let text = metrics.render(&state, now());
        assert!(text.contains(r#"netdiag_agent_quota_exceeded_total{reason="foreign_source"} 2"#), "{text}");
    }

    #[test]
    fn an_agent_past_its_cell_quota_writes_no_new_cells() {
        let inventory = Inventory::from_yaml(netdiag_diagnose::sim::INVENTORY).unwrap();
        let quotas = Quotas { cells_per_agent: 2, ..Quotas::default() };
        let state = CollectorState::new(inventory, MatrixConfig::default()).with_quotas(quotas);
        let node1: NodeName = "node-1".parse().unwrap();
        let results = (1..=5).map(|i| probe("tidb/demo-pd-0", &format!("10.9.0.{i}"))).collect();
        state.results(&node1, ResultBatch { seq: netdiag_model::result::Seq::FIRST, results, dropped: 0 });
        assert_eq!(state.matrix(&MatrixQuery::default(), now()).cells.len(), 2);
        assert_eq!(state.counters().quota_exceeded(QuotaReason::Cells), 3);
    }

    #[test]
    fn agents_of_nodes_gone_from_the_inventory_are_forgotten_after_a_while() {
        let inventory = Inventory::from_yaml(netdiag_diagnose::sim::INVENTORY).unwrap();
        let state = CollectorState::new(inventory.clone(), MatrixConfig::default());
        let hello = |node: &str| -> Hello {
            serde_json::from_value(serde_json::json!({
                "node": node, "agent_version": "0.1.0", "capabilities": [], "pods": [], "node_ips": [],
                "first_unacked_seq": 1, "instance_id": format!("{node}-1"),
            }))
            .unwrap()
        };
        for n in ["node-1", "node-2"] {
            state.agent_connected(&hello(n));
            state.inspection(&n.parse().unwrap(), report(&format!("node/{n}")));
            state.agent_disconnected(&n.parse().unwrap());
        }
        let mut smaller = inventory;
        smaller.nodes.retain(|n| n.name.as_str() != "node-2");
        state.set_inventory(smaller);
        let later =
            |d: Duration| UnixMillis::new(now().get() + i64::try_from(d.as_millis()).unwrap()).unwrap();
        state.expire(later(AGENT_TTL / 2));
        assert_eq!(state.agents(now()).len(), 2, "not yet");
        state.expire(later(AGENT_TTL + Duration::from_secs(60)));
        let agents: Vec<String> = state.agents(now()).iter().map(|a| a.node.to_string()).collect();
        assert_eq!(agents, ["node-1"], "node-1 is in the inventory: kept however long it is away");
        let inspected: Vec<String> = state.inspections().keys().map(ToString::to_string).collect();
        assert_eq!(inspected, ["node/node-1"]);
    }

    #[test]
    fn an_agent_holds_at_most_one_inspection_per_pod_a_node_can_hold() {
        let mut held = Inspections::default();
        let node1: NodeName = "node-1".parse().unwrap();
        let node2: NodeName = "node-2".parse().unwrap();
        let bound = netdiag_model::limits::MAX_LOCAL_PODS + 1;
        for i in 0..bound {
            assert!(held.insert(&node1, report(&format!("default/pod-{i}"))), "{i}");
        }
        assert!(!held.insert(&node1, report("default/one-too-many")));
        assert!(held.insert(&node1, report("default/pod-0")), "a newer report of a held source");
        // A pod that moves to node-2 frees its place on node-1.
        assert!(held.insert(&node2, report("default/pod-1")));
        assert!(held.insert(&node1, report("default/one-too-many")));
        assert_eq!(held.latest.len(), bound + 1);
        assert_eq!((held.held[&node1], held.held[&node2]), (bound, 1));
    }
}
