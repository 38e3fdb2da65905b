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
mod intern;
pub mod key;
pub mod placement;
pub mod sketch;
pub mod status;
pub mod window;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hashbrown::HashMap;
use netdiag_model::probe::{ProbeKind, Source};
use netdiag_model::result::{ProbeResult, ResultBatch};
use netdiag_model::{MatrixLevel, MatrixQuery, MatrixSnapshot, NodeName, UnixMillis};

use self::cell::CellState;
pub use self::cell::{CellStats, Counts, LastError};
use self::intern::{Id, Interner};
use self::key::node_destination;
pub use self::key::{
    Destination, DestinationRef, NodeDestination, NodeDestinationRef, NodeKey, NodeKeyRef, PlacedBatch,
    PodKey, PodKeyRef,
};
pub use self::placement::InventoryIndex;
pub use self::window::{BucketCounts, WindowSpec, repair_index, since_onset};

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
///
/// Sources, destinations and node names are interned ([`intern`]) and cells keyed by the ids,
/// so a result finds its cell by hashing its names against small tables and comparing integers,
/// and one for an existing cell clones nothing. Each cell also keeps its full key, for the
/// ordered views (`pod_cells`, `node_cells`, `snapshot`), which sort on the way out.
#[derive(Debug, Clone)]
pub struct Matrix {
    config: MatrixConfig,
    sources: Interner<Source>,
    destinations: Interner<Destination>,
    /// Reporting agents' nodes (the node level's sources and every cell's agent).
    node_names: Interner<NodeName>,
    node_destinations: Interner<NodeDestination>,
    pods: Level<PodKey>,
    nodes: Level<NodeKey>,
    agents: BTreeMap<NodeName, UnixMillis>,
    counters: MatrixCounters,
}

/// A cell's key as interned ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct CellIds {
    source: Id,
    destination: Id,
    kind: ProbeKind,
}

#[derive(Debug, Clone)]
struct Cell<K> {
    state: CellState,
    key: K,
}

/// One level's cells: a dense vector, and an index from ids to positions in it. The index's
/// entries are small (a lookup stays in cache); a cell is touched only once found.
#[derive(Debug, Clone)]
struct Level<K> {
    index: HashMap<CellIds, u32>,
    cells: Vec<(CellIds, Cell<K>)>,
}

impl<K> Default for Level<K> {
    fn default() -> Self {
        Level { index: HashMap::new(), cells: Vec::new() }
    }
}

impl<K> Level<K> {
    fn len(&self) -> usize {
        self.cells.len()
    }

    fn position(&self, ids: &CellIds) -> Option<usize> {
        self.index.get(ids).and_then(|&i| usize::try_from(i).ok())
    }

    fn get(&self, ids: &CellIds) -> Option<&Cell<K>> {
        self.position(ids).and_then(|i| self.cells.get(i)).map(|(_, c)| c)
    }

    fn get_mut(&mut self, ids: &CellIds) -> Option<&mut Cell<K>> {
        self.position(ids).and_then(|i| self.cells.get_mut(i)).map(|(_, c)| c)
    }

    /// Adds a cell for ids not yet in the level; false (nothing added) past `u32::MAX` cells.
    fn insert(&mut self, ids: CellIds, cell: Cell<K>) -> bool {
        let Ok(position) = u32::try_from(self.cells.len()) else { return false };
        self.index.insert(ids, position);
        self.cells.push((ids, cell));
        true
    }

    /// Keeps the cells `keep` accepts (and re-indexes them when any went).
    fn retain(&mut self, mut keep: impl FnMut(&Cell<K>) -> bool) {
        let before = self.cells.len();
        self.cells.retain(|(_, c)| keep(c));
        if self.cells.len() == before {
            return;
        }
        self.index.clear();
        for (position, (ids, _)) in (0u32..).zip(&self.cells) {
            self.index.insert(*ids, position);
        }
    }

    fn keys(&self) -> impl Iterator<Item = &CellIds> + '_ {
        self.cells.iter().map(|(ids, _)| ids)
    }

    fn values(&self) -> impl Iterator<Item = &Cell<K>> + '_ {
        self.cells.iter().map(|(_, c)| c)
    }
}

impl Default for Matrix {
    fn default() -> Self {
        Matrix::new(MatrixConfig::default())
    }
}

/// A level's cells in key order.
fn sorted<K: Ord>(level: &Level<K>) -> Vec<&Cell<K>> {
    let mut cells: Vec<&Cell<K>> = level.values().collect();
    cells.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    cells
}

/// Whether the ids below `slots` appear in `ids`, by id.
fn used(slots: usize, ids: impl Iterator<Item = Id>) -> Vec<bool> {
    let mut used = vec![false; slots];
    for id in ids {
        if let Some(u) = usize::try_from(id).ok().and_then(|i| used.get_mut(i)) {
            *u = true;
        }
    }
    used
}

fn is_used(used: &[bool], id: Id) -> bool {
    usize::try_from(id).ok().and_then(|i| used.get(i)).copied().unwrap_or(false)
}

/// What became of one result at one level.
enum Recorded {
    Counted,
    /// Outside the window (or older than its slot holds).
    TooOld,
    /// The level is at `max_cells`.
    Full,
}

impl Matrix {
    pub fn new(config: MatrixConfig) -> Self {
        Matrix {
            config,
            sources: Interner::default(),
            destinations: Interner::default(),
            node_names: Interner::default(),
            node_destinations: Interner::default(),
            pods: Level::default(),
            nodes: Level::default(),
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
        if let Some(agent) = self.node_names.intern(node, NodeName::clone) {
            let destination = node_destination(&result.target, index);
            self.record_one(node, agent, result, destination, index, now);
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
        self.record_placed(node, &PlacedBatch::new(batch, index), now);
    }

    /// [`Matrix::record_batch`] with the node-level destinations already placed.
    pub fn record_placed(&mut self, node: &NodeName, placed: &PlacedBatch<'_>, now: UnixMillis) {
        self.agent_seen(node, now);
        let Some(agent) = self.node_names.intern(node, NodeName::clone) else { return };
        for (result, destination) in placed.iter() {
            self.record_one(node, agent, result, destination, placed.index, now);
        }
    }

    /// [`Matrix::record`] once the agent was heard from and interned as `agent`, and the
    /// result's node-level destination placed.
    fn record_one(
        &mut self,
        node: &NodeName,
        agent: Id,
        result: &ProbeResult,
        destination: Option<NodeDestinationRef<'_>>,
        index: &InventoryIndex,
        now: UnixMillis,
    ) {
        let at = result.at.min(now);
        if !self.config.window.contains(at, now) {
            self.counters.too_old += 1;
            return;
        }
        match self.record_pod(node, agent, result, index, at, now) {
            Recorded::Counted => self.counters.recorded += 1,
            Recorded::TooOld => self.counters.too_old += 1,
            Recorded::Full => self.counters.refused_full += 1,
        }
        match destination {
            Some(destination) => {
                let key = NodeKeyRef { source: node, destination, kind: result.kind };
                if let Recorded::Full = self.record_node(node, agent, key, result, at, now) {
                    self.counters.refused_full += 1;
                }
            }
            None => self.counters.unplaced += 1,
        }
    }

    fn record_pod(
        &mut self,
        node: &NodeName,
        agent: Id,
        result: &ProbeResult,
        index: &InventoryIndex,
        at: UnixMillis,
        now: UnixMillis,
    ) -> Recorded {
        let spec = &self.config.window;
        let key = PodKeyRef::of(result, index);
        let ids = self.sources.get(key.source).zip(self.destinations.get(&key.destination));
        let cell = ids.and_then(|(source, destination)| {
            self.pods.get_mut(&CellIds { source, destination, kind: key.kind })
        });
        if let Some(cell) = cell {
            return counted(cell.state.record(spec, agent, node, result, at, now));
        }
        if self.pods.len() >= self.config.max_cells {
            return Recorded::Full;
        }
        let mut state = CellState::new(spec, agent, node, at);
        if !state.record(spec, agent, node, result, at, now) {
            return Recorded::TooOld;
        }
        let source = self.sources.intern(key.source, Source::clone);
        let destination = self.destinations.intern(&key.destination, |d| d.into_owned());
        let Some((source, destination)) = source.zip(destination) else { return Recorded::Full };
        let cell = Cell { key: key.into_owned(), state };
        if !self.pods.insert(CellIds { source, destination, kind: key.kind }, cell) {
            return Recorded::Full;
        }
        Recorded::Counted
    }

    fn record_node(
        &mut self,
        node: &NodeName,
        agent: Id,
        key: NodeKeyRef<'_>,
        result: &ProbeResult,
        at: UnixMillis,
        now: UnixMillis,
    ) -> Recorded {
        let spec = &self.config.window;
        // The node level's source is the reporting agent's node: `agent` itself.
        let cell = self.node_destinations.get(&key.destination).and_then(|destination| {
            self.nodes.get_mut(&CellIds { source: agent, destination, kind: key.kind })
        });
        if let Some(cell) = cell {
            return counted(cell.state.record(spec, agent, node, result, at, now));
        }
        if self.nodes.len() >= self.config.max_cells {
            return Recorded::Full;
        }
        let mut state = CellState::new(spec, agent, node, at);
        if !state.record(spec, agent, node, result, at, now) {
            return Recorded::TooOld;
        }
        let Some(destination) = self.node_destinations.intern(&key.destination, |d| d.into_owned()) else {
            return Recorded::Full;
        };
        let cell = Cell { key: key.into_owned(), state };
        if !self.nodes.insert(CellIds { source: agent, destination, kind: key.kind }, cell) {
            return Recorded::Full;
        }
        Recorded::Counted
    }

    fn pod_stats(&self, cell: &CellState, now: UnixMillis) -> CellStats {
        cell.stats(&self.config.window, now, self.agent_fresh(cell.agent(), now), true, self.pods.len())
    }

    fn node_stats(&self, cell: &CellState, now: UnixMillis) -> CellStats {
        cell.stats(&self.config.window, now, self.agent_fresh(cell.agent(), now), false, self.nodes.len())
    }

    /// One pod-level cell at `now`.
    pub fn pod_cell(&self, key: &PodKey, now: UnixMillis) -> Option<CellStats> {
        let source = self.sources.get(&key.source)?;
        let destination = self.destinations.get(&key.destination)?;
        let cell = self.pods.get(&CellIds { source, destination, kind: key.kind })?;
        Some(self.pod_stats(&cell.state, now))
    }

    /// One node-level cell at `now`.
    pub fn node_cell(&self, key: &NodeKey, now: UnixMillis) -> Option<CellStats> {
        let source = self.node_names.get(&key.source)?;
        let destination = self.node_destinations.get(&key.destination)?;
        let cell = self.nodes.get(&CellIds { source, destination, kind: key.kind })?;
        Some(self.node_stats(&cell.state, now))
    }

    /// A pod-level cell's buckets with attempts at `now` since its latest repair, oldest first
    /// (for finding when a fault began); None for a cell the matrix does not hold.
    pub fn pod_cell_history(&self, key: &PodKey, now: UnixMillis) -> Option<Vec<BucketCounts>> {
        let source = self.sources.get(&key.source)?;
        let destination = self.destinations.get(&key.destination)?;
        let cell = self.pods.get(&CellIds { source, destination, kind: key.kind })?;
        Some(cell.state.history_since_repair(&self.config.window, now))
    }

    /// Every pod-level cell at `now`, in key order (source, destination, kind).
    pub fn pod_cells(&self, now: UnixMillis) -> impl Iterator<Item = (&PodKey, CellStats)> + '_ {
        sorted(&self.pods).into_iter().map(move |c| (&c.key, self.pod_stats(&c.state, now)))
    }

    /// Every node-level cell at `now`, in key order (source, destination, kind).
    pub fn node_cells(&self, now: UnixMillis) -> impl Iterator<Item = (&NodeKey, CellStats)> + '_ {
        sorted(&self.nodes).into_iter().map(move |c| (&c.key, self.node_stats(&c.state, now)))
    }

    /// The API's view at `now`: the query's level and kind, ordered by source, destination and
    /// kind in key order (pod sources before node sources; destinations grouped by type).
    pub fn snapshot(&self, query: &MatrixQuery, now: UnixMillis) -> MatrixSnapshot {
        let wanted = |kind| query.kind.is_none_or(|k| k == kind);
        let cells = match query.level {
            MatrixLevel::Pod => sorted(&self.pods)
                .into_iter()
                .filter(|c| wanted(c.key.kind))
                .map(|c| {
                    let (source, destination) = c.key.labels();
                    self.pod_stats(&c.state, now).to_matrix_cell(&source, &destination, c.key.kind)
                })
                .collect(),
            MatrixLevel::Node => sorted(&self.nodes)
                .into_iter()
                .filter(|c| wanted(c.key.kind))
                .map(|c| {
                    let (source, destination) = c.key.labels();
                    self.node_stats(&c.state, now).to_matrix_cell(&source, &destination, c.key.kind)
                })
                .collect(),
        };
        MatrixSnapshot { cells, generated_at: now }
    }

    /// Removes cells without a result for longer than `expire_after`, the interned names no
    /// cell refers to any more, and agents silent that long that no cell refers to. Returns the
    /// number of cells removed.
    pub fn expire(&mut self, now: UnixMillis) -> usize {
        let keep = self.config.expire_after;
        let before = self.pods.len() + self.nodes.len();
        self.pods.retain(|c| now.since(c.state.last_update()) <= keep);
        self.nodes.retain(|c| now.since(c.state.last_update()) <= keep);
        let removed = before - (self.pods.len() + self.nodes.len());

        let sources = used(self.sources.slots(), self.pods.keys().map(|k| k.source));
        self.sources.purge(|id| is_used(&sources, id));
        let destinations = used(self.destinations.slots(), self.pods.keys().map(|k| k.destination));
        self.destinations.purge(|id| is_used(&destinations, id));
        let node_destinations =
            used(self.node_destinations.slots(), self.nodes.keys().map(|k| k.destination));
        self.node_destinations.purge(|id| is_used(&node_destinations, id));
        let states = || self.pods.values().map(|c| &c.state).chain(self.nodes.values().map(|c| &c.state));
        let names = states().map(CellState::agent_id).chain(self.nodes.keys().map(|k| k.source));
        let names = used(self.node_names.slots(), names);
        self.node_names.purge(|id| is_used(&names, id));

        let referenced: BTreeSet<&NodeName> = states().map(CellState::agent).collect();
        self.agents.retain(|node, &mut seen| now.since(seen) <= keep || referenced.contains(node));
        removed
    }

    /// Cells held, per level: `(pod, node)`.
    pub fn cell_counts(&self) -> (usize, usize) {
        (self.pods.len(), self.nodes.len())
    }

    /// An estimate of the bytes the matrix holds: every cell's key and state, its window ring
    /// and sketch bins, the interned names and the agents' table (map overhead not counted).
    pub fn retained_bytes(&self) -> usize {
        let pods: usize = self
            .pods
            .values()
            .map(|c| {
                size_of::<(CellIds, u32, CellIds, Cell<PodKey>)>()
                    + pod_key_heap(&c.key)
                    + c.state.heap_bytes()
            })
            .sum();
        let nodes: usize = self
            .nodes
            .values()
            .map(|c| {
                size_of::<(CellIds, u32, CellIds, Cell<NodeKey>)>()
                    + c.key.source.as_str().len()
                    + c.state.heap_bytes()
            })
            .sum();
        let interned = self
            .sources
            .iter()
            .map(|(_, s)| size_of::<Source>() + s.to_string().len())
            .sum::<usize>()
            + self
                .destinations
                .iter()
                .map(|(_, d)| size_of::<Destination>() + d.to_string().len())
                .sum::<usize>()
            + self.node_names.iter().map(|(_, n)| size_of::<NodeName>() + n.as_str().len()).sum::<usize>()
            + self
                .node_destinations
                .iter()
                .map(|(_, d)| size_of::<NodeDestination>() + d.to_string().len())
                .sum::<usize>();
        let agents: usize = self
            .agents
            .keys()
            .map(|n| size_of::<NodeName>() + size_of::<UnixMillis>() + n.as_str().len())
            .sum();
        pods + nodes + interned + agents
    }
}

fn counted(counted: bool) -> Recorded {
    if counted { Recorded::Counted } else { Recorded::TooOld }
}

/// Approximate heap bytes of a pod key: the lengths of its names.
fn pod_key_heap(k: &PodKey) -> usize {
    // The labels are the names plus a few separators: close enough for an estimate.
    let (s, d) = k.labels();
    s.len() + d.len()
}
