//! The connectivity matrix: every probe result lands in a pod-level cell (source pod or node →
//! the exact thing probed, per kind) and a node-level cell (reporting node → destination node,
//! per kind), each a sliding window of counts and an RTT sketch whose memory is constant in the
//! number of samples. Status rules are in [`status`], keys and labels in [`key`].
//!
//! Pure: no I/O, no clock. Every call that depends on time takes `now`, and a result's own
//! time (`at`, the agent's clock) places it in the window, clamped to `now` so a fast agent
//! clock cannot push samples into the future. Results older than the window are dropped.
//!
//! Memory is proportional to the live cells: [`Matrix::expire`] drops cells without a result
//! for [`MatrixConfig::expire_after`], and [`MatrixConfig::max_cells`] caps each level against
//! an agent that invents targets.

pub mod cell;
pub mod key;
pub mod placement;
pub mod sketch;
pub mod status;
pub mod window;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use netdiag_model::result::{ProbeResult, ResultBatch};
use netdiag_model::{MatrixLevel, MatrixQuery, MatrixSnapshot, NodeName, UnixMillis};

use self::cell::CellState;
pub use self::cell::{CellStats, LastError};
pub use self::key::{Destination, NodeDestination, NodeKey, PodKey};
pub use self::placement::InventoryIndex;
pub use self::window::WindowSpec;

/// How the matrix judges and forgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixConfig {
    /// The sliding window and its buckets.
    pub window: WindowSpec,
    /// An agent not heard from for longer than this has all its cells `unknown`.
    pub agent_stale_after: Duration,
    /// A cell without a result for longer than this is removed by [`Matrix::expire`].
    pub expire_after: Duration,
    /// Most cells per level; results for new cells beyond it are counted and dropped.
    pub max_cells: usize,
}

impl Default for MatrixConfig {
    /// 60 s in 5 s buckets; agents stale after 30 s; cells forgotten after 10 minutes; at
    /// most 500 000 cells per level.
    fn default() -> Self {
        MatrixConfig {
            window: WindowSpec::default(),
            agent_stale_after: Duration::from_secs(30),
            expire_after: Duration::from_secs(600),
            max_cells: 500_000,
        }
    }
}

/// What happened to the results the matrix was given, since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatrixCounters {
    /// Results counted in a pod-level cell.
    pub recorded: u64,
    /// Results older than the window when they arrived.
    pub too_old: u64,
    /// Results whose pod or endpoint target the inventory could not place on a node: counted
    /// at the pod level only.
    pub unplaced: u64,
    /// Results dropped because a level was at `max_cells` (counted once per level).
    pub refused_full: u64,
}

/// The matrix. `Send + Sync`; the caller holds it behind whatever lock it likes.
#[derive(Debug, Clone)]
pub struct Matrix {
    config: MatrixConfig,
    pods: BTreeMap<PodKey, CellState>,
    nodes: BTreeMap<NodeKey, CellState>,
    agents: BTreeMap<NodeName, UnixMillis>,
    counters: MatrixCounters,
}

impl Default for Matrix {
    fn default() -> Self {
        Matrix::new(MatrixConfig::default())
    }
}

/// Counts a result into `map[key]`, creating the cell when there is room.
fn record_into<K: Ord>(
    map: &mut BTreeMap<K, CellState>,
    key: K,
    config: &MatrixConfig,
    agent: &NodeName,
    result: &ProbeResult,
    at: UnixMillis,
    now: UnixMillis,
) -> Result<bool, Full> {
    if let Some(cell) = map.get_mut(&key) {
        return Ok(cell.record(&config.window, agent, result, at, now));
    }
    if map.len() >= config.max_cells {
        return Err(Full);
    }
    let mut cell = CellState::new(&config.window, agent, at);
    let counted = cell.record(&config.window, agent, result, at, now);
    if counted {
        map.insert(key, cell);
    }
    Ok(counted)
}

/// A level is at `max_cells`.
struct Full;

impl Matrix {
    pub fn new(config: MatrixConfig) -> Self {
        Matrix {
            config,
            pods: BTreeMap::new(),
            nodes: BTreeMap::new(),
            agents: BTreeMap::new(),
            counters: MatrixCounters::default(),
        }
    }

    pub fn config(&self) -> &MatrixConfig {
        &self.config
    }

    pub fn counters(&self) -> MatrixCounters {
        self.counters
    }

    /// `node`'s agent was heard from at `now` (a hello, a batch, a keepalive).
    pub fn agent_seen(&mut self, node: &NodeName, now: UnixMillis) {
        match self.agents.get_mut(node) {
            Some(seen) => *seen = (*seen).max(now),
            None => {
                self.agents.insert(node.clone(), now);
            }
        }
    }

    /// When `node`'s agent was last heard from.
    pub fn agent_last_seen(&self, node: &NodeName) -> Option<UnixMillis> {
        self.agents.get(node).copied()
    }

    /// Whether `node`'s agent was heard from within the staleness bound at `now`.
    pub fn agent_fresh(&self, node: &NodeName, now: UnixMillis) -> bool {
        self.agents.get(node).is_some_and(|&seen| now.since(seen) <= self.config.agent_stale_after)
    }

    /// Counts one result reported by `node`'s agent, received at `now` (which also counts as
    /// hearing from that agent). `index` places destinations for the node level.
    pub fn record(&mut self, node: &NodeName, result: &ProbeResult, index: &InventoryIndex, now: UnixMillis) {
        self.agent_seen(node, now);
        let at = result.at.min(now);
        if !self.config.window.contains(at, now) {
            self.counters.too_old += 1;
            return;
        }
        let pod_key = PodKey::of(result, index);
        match record_into(&mut self.pods, pod_key, &self.config, node, result, at, now) {
            Ok(true) => self.counters.recorded += 1,
            Ok(false) => self.counters.too_old += 1,
            Err(Full) => self.counters.refused_full += 1,
        }
        match NodeKey::of(node, result, index) {
            Some(key) => {
                if let Err(Full) = record_into(&mut self.nodes, key, &self.config, node, result, at, now) {
                    self.counters.refused_full += 1;
                }
            }
            None => self.counters.unplaced += 1,
        }
    }

    /// Counts every result of a batch from `node`'s agent.
    pub fn record_batch(
        &mut self,
        node: &NodeName,
        batch: &ResultBatch,
        index: &InventoryIndex,
        now: UnixMillis,
    ) {
        self.agent_seen(node, now);
        for result in &batch.results {
            self.record(node, result, index, now);
        }
    }

    fn pod_stats(&self, cell: &CellState, now: UnixMillis) -> CellStats {
        cell.stats(&self.config.window, now, self.agent_fresh(cell.agent(), now), true)
    }

    fn node_stats(&self, cell: &CellState, now: UnixMillis) -> CellStats {
        cell.stats(&self.config.window, now, self.agent_fresh(cell.agent(), now), false)
    }

    /// One pod-level cell at `now`.
    pub fn pod_cell(&self, key: &PodKey, now: UnixMillis) -> Option<CellStats> {
        self.pods.get(key).map(|c| self.pod_stats(c, now))
    }

    /// One node-level cell at `now`.
    pub fn node_cell(&self, key: &NodeKey, now: UnixMillis) -> Option<CellStats> {
        self.nodes.get(key).map(|c| self.node_stats(c, now))
    }

    /// Every pod-level cell at `now`, in key order (source, destination, kind).
    pub fn pod_cells(&self, now: UnixMillis) -> impl Iterator<Item = (&PodKey, CellStats)> + '_ {
        self.pods.iter().map(move |(k, c)| (k, self.pod_stats(c, now)))
    }

    /// Every node-level cell at `now`, in key order (source, destination, kind).
    pub fn node_cells(&self, now: UnixMillis) -> impl Iterator<Item = (&NodeKey, CellStats)> + '_ {
        self.nodes.iter().map(move |(k, c)| (k, self.node_stats(c, now)))
    }

    /// The API's view at `now`: the query's level and kind, ordered by source, destination and
    /// kind in key order (pod sources before node sources; destinations grouped by type).
    pub fn snapshot(&self, query: &MatrixQuery, now: UnixMillis) -> MatrixSnapshot {
        let wanted = |kind| query.kind.is_none_or(|k| k == kind);
        let cells = match query.level {
            MatrixLevel::Pod => self
                .pods
                .iter()
                .filter(|(k, _)| wanted(k.kind))
                .map(|(k, c)| {
                    let (source, destination) = k.labels();
                    self.pod_stats(c, now).to_matrix_cell(&source, &destination, k.kind)
                })
                .collect(),
            MatrixLevel::Node => self
                .nodes
                .iter()
                .filter(|(k, _)| wanted(k.kind))
                .map(|(k, c)| {
                    let (source, destination) = k.labels();
                    self.node_stats(c, now).to_matrix_cell(&source, &destination, k.kind)
                })
                .collect(),
        };
        MatrixSnapshot { cells, generated_at: now }
    }

    /// Removes cells without a result for longer than `expire_after`, and agents silent that
    /// long that no cell refers to. Returns the number of cells removed.
    pub fn expire(&mut self, now: UnixMillis) -> usize {
        let keep = self.config.expire_after;
        let before = self.pods.len() + self.nodes.len();
        self.pods.retain(|_, c| now.since(c.last_update()) <= keep);
        self.nodes.retain(|_, c| now.since(c.last_update()) <= keep);
        let removed = before - (self.pods.len() + self.nodes.len());
        let referenced: BTreeSet<&NodeName> =
            self.pods.values().chain(self.nodes.values()).map(CellState::agent).collect();
        self.agents.retain(|node, &mut seen| now.since(seen) <= keep || referenced.contains(node));
        removed
    }

    /// Cells held, per level: `(pod, node)`.
    pub fn cell_counts(&self) -> (usize, usize) {
        (self.pods.len(), self.nodes.len())
    }

    /// An estimate of the bytes the matrix holds: every cell's key and state, its window ring
    /// and sketch bins, and the agents' table (map node overhead not counted).
    pub fn retained_bytes(&self) -> usize {
        let pods: usize = self
            .pods
            .iter()
            .map(|(k, c)| size_of::<PodKey>() + size_of::<CellState>() + pod_key_heap(k) + c.heap_bytes())
            .sum();
        let nodes: usize = self
            .nodes
            .iter()
            .map(|(k, c)| {
                size_of::<NodeKey>() + size_of::<CellState>() + k.source.as_str().len() + c.heap_bytes()
            })
            .sum();
        let agents: usize = self
            .agents
            .keys()
            .map(|n| size_of::<NodeName>() + size_of::<UnixMillis>() + n.as_str().len())
            .sum();
        pods + nodes + agents
    }
}

/// Approximate heap bytes of a pod key: the lengths of its names.
fn pod_key_heap(k: &PodKey) -> usize {
    // The labels are the names plus a few separators: close enough for an estimate.
    let (s, d) = k.labels();
    s.len() + d.len()
}
