//! What one agent may put into the collector, so one bad or hostile agent can neither fill the
//! matrix for everyone nor keep the collector busy: results only for sources on its own node
//! (a pod the inventory places elsewhere, or another node, is not its to speak for), at most
//! [`Quotas::cells_per_agent`] distinct cells (source, target, kind), and result batches at
//! most [`Quotas::batches_per_second`] (a faster session is slowed down by not reading it:
//! HTTP/2 flow control pushes back and nothing is lost). Each is counted per reason in
//! `netdiag_agent_quota_exceeded_total` and logged once per agent and reason.

use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use hashbrown::{DefaultHashBuilder, HashMap};
use netdiag_diagnose::matrix::InventoryIndex;
use netdiag_model::NodeName;
use netdiag_model::probe::Source;
use netdiag_model::result::ResultBatch;
use netdiag_model::time::UnixMillis;

/// The per-agent limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quotas {
    /// Distinct cells one agent may write (a node's pods probing a full mesh of a few
    /// thousand pods stay well below it).
    pub cells_per_agent: usize,
    /// Distinct cells tracked over all agents: past it new cells are refused to everyone
    /// (the matrix holds fewer anyway), so the tracking itself is bounded.
    pub cells_total: usize,
    /// Result batches a second one session may send, sustained (an agent sends about one).
    pub batches_per_second: f64,
    /// Batches a session may send at once after a quiet spell (a reconnect's resend).
    pub batch_burst: f64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            cells_per_agent: 100_000,
            cells_total: 1_000_000,
            batches_per_second: 50.0,
            batch_burst: 500.0,
        }
    }
}

/// Why a quota refused or slowed something (the metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaReason {
    /// A result whose source is not on the agent's node: refused.
    ForeignSource,
    /// A result for a new cell past the agent's (or everyone's) cell quota: refused.
    Cells,
    /// A batch sent faster than the batch rate: held back.
    BatchRate,
}

impl QuotaReason {
    pub const ALL: [QuotaReason; 3] =
        [QuotaReason::ForeignSource, QuotaReason::Cells, QuotaReason::BatchRate];

    pub fn as_str(self) -> &'static str {
        match self {
            QuotaReason::ForeignSource => "foreign_source",
            QuotaReason::Cells => "cells",
            QuotaReason::BatchRate => "batch_rate",
        }
    }

    /// What the log line says the agent did.
    pub fn explain(self, quotas: &Quotas) -> String {
        match self {
            QuotaReason::ForeignSource => {
                "it sent results for sources on another node; they are dropped (an agent speaks only for its own node and its pods)".to_owned()
            }
            QuotaReason::Cells => format!(
                "it writes more than {} distinct cells; results for new cells are dropped",
                quotas.cells_per_agent
            ),
            QuotaReason::BatchRate => format!(
                "it sends more than {} result batches a second; its session is read more slowly",
                quotas.batches_per_second
            ),
        }
    }
}

/// Whether `node`'s agent may report results from `source`: its own node, or a pod the
/// inventory places on it (or does not place at all: discovered pods the inventory lacks).
pub fn speaks_for(node: &NodeName, source: &Source, index: &InventoryIndex) -> bool {
    match source {
        Source::Node(n) => n == node,
        Source::Pod(p) => index.node_of_pod(p).is_none_or(|n| n == node),
    }
}

/// Results refused from one batch, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub foreign: u64,
    /// Over the agent's own cell quota.
    pub cells: u64,
    /// New cells while the collector tracks its total already: no fault of this agent.
    pub full: u64,
}

/// Each agent's cells, by hash, and when each was last written.
#[derive(Debug, Default)]
pub struct CellQuota {
    per_agent: HashMap<NodeName, HashMap<u64, UnixMillis>>,
    total: usize,
    hasher: DefaultHashBuilder,
}

impl CellQuota {
    /// Drops from `batch` what `node`'s agent may not report; what was dropped, by reason.
    pub fn admit(
        &mut self,
        node: &NodeName,
        batch: &mut ResultBatch,
        index: &InventoryIndex,
        quotas: &Quotas,
        now: UnixMillis,
    ) -> Refused {
        let mut refused = Refused::default();
        let cells = match self.per_agent.get_mut(node) {
            Some(c) => c,
            None => self.per_agent.entry(node.clone()).or_default(),
        };
        let hasher = &self.hasher;
        let total = &mut self.total;
        // Results come grouped by source: its verdict is kept for the next one.
        let mut last: Option<(Source, bool)> = None;
        batch.results.retain(|r| {
            let own = match &last {
                Some((s, own)) if *s == r.source => *own,
                _ => {
                    let own = speaks_for(node, &r.source, index);
                    last = Some((r.source.clone(), own));
                    own
                }
            };
            if !own {
                refused.foreign += 1;
                return false;
            }
            let key = hasher.hash_one((&r.source, &r.target, r.kind));
            if let Some(seen) = cells.get_mut(&key) {
                *seen = now;
                return true;
            }
            if cells.len() >= quotas.cells_per_agent {
                refused.cells += 1;
                return false;
            }
            if *total >= quotas.cells_total {
                refused.full += 1;
                return false;
            }
            cells.insert(key, now);
            *total += 1;
            true
        });
        refused
    }

    /// Forgets cells not written for `keep` (the matrix forgets them too), and agents left
    /// with none.
    pub fn expire(&mut self, now: UnixMillis, keep: Duration) {
        for cells in self.per_agent.values_mut() {
            cells.retain(|_, seen| now.since(*seen) <= keep);
        }
        self.per_agent.retain(|_, cells| !cells.is_empty());
        self.total = self.per_agent.values().map(HashMap::len).sum();
    }

    /// Cells tracked for `node`'s agent.
    pub fn cells_of(&self, node: &NodeName) -> usize {
        self.per_agent.get(node).map_or(0, HashMap::len)
    }
}

/// One session's batch rate: a token bucket. [`BatchRate::take`] says how long to hold off
/// before reading the next batch.
#[derive(Debug, Clone)]
pub struct BatchRate {
    tokens: f64,
    last: Instant,
    per_second: f64,
    burst: f64,
}

impl BatchRate {
    pub fn new(quotas: &Quotas, now: Instant) -> Self {
        let per_second = quotas.batches_per_second.max(f64::MIN_POSITIVE);
        BatchRate {
            tokens: quotas.batch_burst.max(1.0),
            last: now,
            per_second,
            burst: quotas.batch_burst.max(1.0),
        }
    }

    /// Takes a token for one batch at `now`: zero when one was there, else how long until it
    /// is (the token is spent either way).
    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst) - 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_second)
        }
    }
}

#[cfg(test)]
mod tests;
