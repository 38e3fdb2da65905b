//! Generated scenarios for the accuracy benchmark (`benches/accuracy.rs`): clusters of 3 to 500
//! nodes ([`Cluster`]), the production planner's probes, and a network model that answers
//! every probe echo by echo over a 60 s window under injected faults ([`Fault`]) and noise
//! ([`Noise`], a silent agent), so the real matrix and the real engine can be scored against
//! what was injected ([`score()`]).
//!
//! Where `sim.rs` is the fixed 3-node lab with hand-written scenarios for unit tests, this is
//! the same idea at any size and drawn at random from a seed: a scenario is reproducible from
//! `(cluster size, pods per node, classes, noise spec, seed)`.
//!
//! Time: samples every [`INTERVAL_MS`] (5 s), [`SAMPLES`] per probe, filling the matrix's 60 s
//! window up to [`now()`]; each probe runs at its own offset within the interval, as the agents'
//! schedulers spread them. Faults start at the scenario's `onset` sample (0: the whole
//! window). The sampled plan's longer production interval is not modelled: every size probes
//! every 5 s.

mod cluster;
mod fault;
mod inspect;
mod network;
mod place;
mod rng;
mod score;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use netdiag_model::inspect::InspectionReport;
use netdiag_model::probe::Source;
use netdiag_model::{NodeName, UnixMillis};

pub use self::cluster::{Cluster, MAX_NODES, MAX_PODS_PER_NODE, MIN_NODES, ScenarioError};
pub use self::fault::{Direction, Fault, FaultClass, Group};
pub use self::network::Noise;
pub use self::rng::Rng;
pub use self::score::{FaultScore, Score, Verdict, describe, score};
use crate::matrix::{InventoryIndex, Matrix, PodKey};

/// Samples per probe in the window.
pub const SAMPLES: u32 = 12;
/// The probe interval.
pub const INTERVAL_MS: i64 = 5_000;
/// The window's first instant: aligned on the matrix's 5 s buckets.
const START_MS: i64 = 1_700_000_000_000;
/// Samples a stale agent still sent (its last is over 30 s old at `now`: cells unknown), and a
/// quiet one (15 s old: its cells are frozen and held by `agent-quiet`).
const STALE_AFTER: u32 = 5;
const QUIET_AFTER: u32 = 9;

/// The instant every scenario is judged at: the last millisecond of the window.
pub fn now() -> UnixMillis {
    at_ms(START_MS + i64::from(SAMPLES) * INTERVAL_MS - 1)
}

fn at_ms(ms: i64) -> UnixMillis {
    // Every instant used here is a few minutes after START_MS, well inside the valid range.
    UnixMillis::new(ms).unwrap_or_else(|_| unreachable!("scenario instants are valid"))
}

/// How an agent falls silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Silence {
    /// It stopped over 30 s ago: its cells are unknown.
    Stale,
    /// It stopped 15 s ago: its cells are frozen where it left them.
    Quiet,
}

/// How noisy drawn scenarios are.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSpec {
    /// Per-echo background loss, uniform in [0, this).
    pub max_echo_loss: f64,
    /// Per-probe stray timeouts, uniform in [0, this).
    pub max_stray_timeouts: f64,
    /// Probability that one agent (on a node without faults or DNS) falls silent.
    pub silent_agent: f64,
    /// Probability that the faults start mid-window rather than before it.
    pub late_onset: f64,
}

impl Default for NoiseSpec {
    /// 0–1 % echo loss, 0–0.2 % stray timeouts, a silent agent in one scenario of four, faults
    /// starting mid-window in half.
    fn default() -> Self {
        NoiseSpec { max_echo_loss: 0.01, max_stray_timeouts: 0.002, silent_agent: 0.25, late_onset: 0.5 }
    }
}

/// One scenario: its faults and noise, reproducible from its seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub faults: Vec<Fault>,
    pub noise: Noise,
    pub silent: Option<(NodeName, Silence)>,
    /// The first sample with the faults in place.
    pub onset: u32,
    pub seed: u64,
}

/// A scenario's matrix, and which of its cells each fault touched.
#[derive(Debug)]
pub struct Simulation {
    pub matrix: Matrix,
    /// Cells some fault had a hand in, with one bit per fault (in the scenario's order).
    pub(crate) touched: Vec<(PodKey, u64)>,
}

impl Scenario {
    /// Faults of `classes` placed at random on `cluster` (on separate nodes where it allows),
    /// and noise after `spec`; None when a class cannot be placed (a second DNS fault, or a
    /// filter the plan cannot see).
    pub fn draw(cluster: &Cluster, classes: &[FaultClass], spec: &NoiseSpec, seed: u64) -> Option<Scenario> {
        let mut rng = Rng::new(seed);
        if classes.iter().filter(|c| c.is_dns()).count() > 1 || classes.len() > 64 {
            return None;
        }
        let mut used = BTreeSet::new();
        let faults = classes
            .iter()
            .map(|&c| place::place(cluster, c, &mut rng, &mut used))
            .collect::<Option<Vec<_>>>()?;
        let noise = Noise {
            echo_loss: rng.range(0.0, spec.max_echo_loss),
            stray_timeouts: rng.range(0.0, spec.max_stray_timeouts),
        };
        let silent = if rng.chance(spec.silent_agent) {
            let how = if rng.chance(0.75) { Silence::Stale } else { Silence::Quiet };
            place::quiet_node(cluster, &mut rng, &used).map(|n| (n, how))
        } else {
            None
        };
        let onset = if !faults.is_empty() && rng.chance(spec.late_onset) {
            if rng.chance(0.5) { SAMPLES / 2 } else { SAMPLES - 3 }
        } else {
            0
        };
        Some(Scenario { faults, noise, silent, onset, seed })
    }

    /// The inspections `localize` takes for this scenario: the cluster's, with what its faults
    /// change on record (a DNAT written by hand on a node).
    pub fn inspections<'c>(
        &self,
        cluster: &'c Cluster,
    ) -> Cow<'c, BTreeMap<Source, (NodeName, InspectionReport)>> {
        if !self.faults.iter().any(|f| matches!(f, Fault::NatRewrite(..))) {
            return Cow::Borrowed(cluster.inspections());
        }
        // The generator's reports are valid JSON of the model: this cannot fail.
        match inspect::with_nat_rules(cluster.inspections(), cluster.inventory(), &self.faults) {
            Ok(reports) => Cow::Owned(reports),
            Err(_) => Cow::Borrowed(cluster.inspections()),
        }
    }

    /// Every probe of the plan answered at every sample, recorded in a fresh matrix.
    pub fn simulate(&self, cluster: &Cluster) -> Simulation {
        let network = network::Network {
            cluster,
            effects: self.faults.iter().filter_map(|f| fault::Effect::resolve(f, cluster)).collect(),
            noise: self.noise.clone(),
            seed: self.seed,
            onset: self.onset,
        };
        let silent = self.silent.as_ref().and_then(|(n, how)| {
            let last = match how {
                Silence::Stale => STALE_AFTER,
                Silence::Quiet => QUIET_AFTER,
            };
            Some((cluster.node_index(n)?, last))
        });
        let index = InventoryIndex::new(&cluster.inventory);
        let mut matrix = Matrix::default();
        let mut touched = Vec::new();
        for (i, probe) in cluster.probes.iter().enumerate() {
            let samples = match silent {
                Some((n, last)) if n == probe.agent => last,
                _ => SAMPLES,
            };
            // Where in each interval the agent's scheduler runs this probe.
            let offset = Rng::at(self.seed, i as u64, u64::MAX).below(INTERVAL_MS as usize) as i64;
            let agent = cluster.node(probe.agent);
            let mut mask = 0;
            let mut key = None;
            for k in 0..samples {
                let at = at_ms(START_MS + i64::from(k) * INTERVAL_MS + offset);
                let result = network.answer(i, probe, k, at, &mut mask);
                if mask != 0 && key.is_none() {
                    key = Some(PodKey::of(&result, &index));
                }
                matrix.record(agent, &result, &index, at);
            }
            if let Some(k) = key {
                touched.push((k, mask));
            }
        }
        Simulation { matrix, touched }
    }
}

#[cfg(test)]
mod tests;
