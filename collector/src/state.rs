//! The collector's shared state: the matrix, the latest inspection per source, the agents, and
//! the inventory. It is the [`Sink`] the session service feeds and what the API, metrics and
//! localization read. Locks are held only to copy or update plain data, never across I/O.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use netdiag_model::NodeName;
use netdiag_model::agents::AgentInfo;
use netdiag_model::finding::Diagnosis;
use netdiag_model::inspect::InspectionReport;
use netdiag_model::inventory::Inventory;
use netdiag_model::matrix::{MatrixQuery, MatrixSnapshot};
use netdiag_model::probe::Source;
use netdiag_model::result::ResultBatch;
use netdiag_model::run::RunProgress;
use netdiag_model::session::Hello;
use netdiag_model::time::UnixMillis;

use crate::metrics::CollectorMetrics;
use crate::runs::registry::RunRegistry;
use crate::sink::Sink;
use netdiag_diagnose::matrix::{InventoryIndex, Matrix, MatrixConfig, PlacedBatch};

/// The collector's clock, as the pure code wants it.
pub fn now() -> UnixMillis {
    UnixMillis::saturating_from_system_time(SystemTime::now())
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
}

#[derive(Debug)]
struct AgentEntry {
    info: AgentInfo,
}

/// Everything the collector knows.
#[derive(Debug)]
pub struct CollectorState {
    matrix: Mutex<Matrix>,
    inventory: RwLock<(Inventory, InventoryIndex)>,
    inspections: Mutex<BTreeMap<Source, (NodeName, InspectionReport)>>,
    agents: Mutex<BTreeMap<NodeName, AgentEntry>>,
    counters: Mutex<IngestCounters>,
    runs: Arc<RunRegistry>,
    /// Fed every accepted batch (the per-node-pair series), with the batch's node-level
    /// destinations placed once for both.
    metrics: Arc<CollectorMetrics>,
}

impl CollectorState {
    pub fn new(inventory: Inventory, config: MatrixConfig) -> Self {
        Self::with_metrics(inventory, config, Arc::default())
    }

    /// A state whose ingest feeds `metrics` (the ones `/metrics` serves).
    pub fn with_metrics(inventory: Inventory, config: MatrixConfig, metrics: Arc<CollectorMetrics>) -> Self {
        let index = InventoryIndex::new(&inventory);
        Self {
            matrix: Mutex::new(Matrix::new(config)),
            inventory: RwLock::new((inventory, index)),
            inspections: Mutex::default(),
            agents: Mutex::default(),
            counters: Mutex::default(),
            runs: Arc::default(),
            metrics,
        }
    }

    /// The metrics ingest feeds.
    pub fn metrics(&self) -> &Arc<CollectorMetrics> {
        &self.metrics
    }

    pub fn set_inventory(&self, inventory: Inventory) {
        let index = InventoryIndex::new(&inventory);
        if let Ok(mut inv) = self.inventory.write() {
            *inv = (inventory, index);
        }
    }

    pub fn inventory(&self) -> Inventory {
        self.with_inventory(Inventory::clone)
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
        match self.matrix.lock() {
            Ok(m) => m.snapshot(query, now),
            Err(p) => p.into_inner().snapshot(query, now),
        }
    }

    /// Runs `f` on the matrix (for localization, which reads cell statistics).
    pub fn with_matrix<T>(&self, f: impl FnOnce(&Matrix) -> T) -> T {
        match self.matrix.lock() {
            Ok(m) => f(&m),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// The latest inspection of every source, with the node that reported it.
    pub fn inspections(&self) -> BTreeMap<Source, (NodeName, InspectionReport)> {
        self.inspections.lock().map(|i| i.clone()).unwrap_or_default()
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

    pub fn counters(&self) -> IngestCounters {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The on-demand runs in flight, where agents' run progress is routed by run id.
    pub fn run_registry(&self) -> &Arc<RunRegistry> {
        &self.runs
    }

    /// Forgets matrix cells nobody updated for a long time.
    pub fn expire(&self, now: UnixMillis) -> usize {
        self.matrix.lock().map(|mut m| m.expire(now)).unwrap_or(0)
    }

    /// The findings, most severe first (see [`netdiag_diagnose::localize`]).
    pub fn diagnosis(&self, now: UnixMillis) -> Diagnosis {
        let inspections = self.inspections();
        let findings = self.with_inventory(|inventory| {
            self.with_matrix(|m| netdiag_diagnose::localize::diagnose(m, &inspections, inventory, now))
        });
        Diagnosis { findings, generated_at: now }
    }

    fn count(&self, f: impl FnOnce(&mut IngestCounters)) {
        if let Ok(mut c) = self.counters.lock() {
            f(&mut c);
        }
    }
}

/// Agents silent this long count as disconnected in `/agents` even if their TCP session lingers.
pub const AGENT_SILENT_AFTER: Duration = Duration::from_secs(30);

impl Sink for CollectorState {
    fn agent_connected(&self, hello: &Hello) {
        let now = now();
        if let Ok(mut m) = self.matrix.lock() {
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

    fn results(&self, node: &NodeName, batch: ResultBatch) {
        let now = now();
        let n = batch.results.len() as u64;
        let dropped = batch.dropped;
        if let Ok(inv) = self.inventory.read() {
            // Node-level destinations placed once, for both the metrics and the matrix.
            let placed = PlacedBatch::new(&batch, &inv.1);
            self.metrics.observe_placed(node, &placed);
            if let Ok(mut m) = self.matrix.lock() {
                m.record_placed(node, &placed, now);
            }
        }
        if let Ok(mut agents) = self.agents.lock()
            && let Some(e) = agents.get_mut(node)
        {
            e.info.results_received += n;
            e.info.results_dropped += dropped;
            e.info.last_seen = Some(now);
        }
        self.count(|c| {
            c.batches += 1;
            c.results += n;
            c.dropped_by_agents += dropped;
        });
    }

    fn inspection(&self, node: &NodeName, report: InspectionReport) {
        if let Ok(mut m) = self.matrix.lock() {
            m.agent_seen(node, now());
        }
        if let Ok(mut i) = self.inspections.lock() {
            i.insert(report.source.clone(), (node.clone(), report));
        }
        self.count(|c| c.inspections += 1);
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
