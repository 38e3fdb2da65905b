//! The agent's outbound buffer, pure: results wait here, are cut into numbered batches (by count
//! or by age), and stay until the collector acknowledges them. Memory is bounded: when full,
//! the oldest results go first and are counted, and the count travels in the next batch.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use netdiag_model::result::{ProbeResult, ResultBatch, Seq};

/// Limits of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    /// Results in one batch at most.
    pub batch_size: usize,
    /// A non-empty partial batch is cut after waiting this long.
    pub linger: Duration,
    /// Results held at most, batched or not (the memory bound while the collector is away).
    pub capacity: usize,
}

impl Default for BufferLimits {
    fn default() -> Self {
        // ~600 B per held result: 10 000 results bound the buffer near 6 MiB while the collector
        // is away (the agent's budget is ~12 MiB in all).
        Self { batch_size: 500, linger: Duration::from_millis(250), capacity: 10_000 }
    }
}

/// Results waiting for the collector.
#[derive(Debug)]
pub struct ResultBuffer {
    limits: BufferLimits,
    /// Results not yet in a batch, oldest first, with when each arrived.
    pending: VecDeque<(Instant, ProbeResult)>,
    /// Batches cut and not yet acknowledged, in sequence order.
    unacked: VecDeque<ResultBatch>,
    next_seq: Seq,
    dropped_unreported: u64,
    dropped_total: u64,
    held: usize,
}

impl ResultBuffer {
    pub fn new(limits: BufferLimits) -> Self {
        let limits = BufferLimits {
            batch_size: limits.batch_size.max(1),
            capacity: limits.capacity.max(limits.batch_size.max(1)),
            ..limits
        };
        Self {
            limits,
            pending: VecDeque::new(),
            unacked: VecDeque::new(),
            next_seq: Seq::FIRST,
            dropped_unreported: 0,
            dropped_total: 0,
            held: 0,
        }
    }

    /// Adds a result, dropping the oldest held result when full.
    pub fn push(&mut self, result: ProbeResult, now: Instant) {
        if self.held >= self.limits.capacity {
            self.drop_oldest();
        }
        self.pending.push_back((now, result));
        self.held += 1;
    }

    fn drop_oldest(&mut self) {
        // The oldest result sits in the oldest unacknowledged batch, if any. Dropping from a
        // batch already numbered keeps its number (the collector may have it half-way); an
        // emptied batch goes entirely, leaving a gap the dropped count explains.
        let dropped = if let Some(batch) = self.unacked.front_mut() {
            let removed = !batch.results.is_empty();
            if removed {
                batch.results.remove(0);
            }
            if batch.results.is_empty() {
                self.unacked.pop_front();
            }
            removed
        } else {
            self.pending.pop_front().is_some()
        };
        if dropped {
            self.held -= 1;
            self.dropped_unreported += 1;
            self.dropped_total += 1;
        }
    }

    /// Cuts every batch that is due: full ones always, a partial one once its oldest result
    /// waited `linger`. Returns the sequences cut.
    pub fn cut(&mut self, now: Instant) -> Vec<Seq> {
        let mut cut = Vec::new();
        loop {
            let full = self.pending.len() >= self.limits.batch_size;
            let stale = self.next_deadline().is_some_and(|due| now >= due);
            if !(full || stale) {
                break;
            }
            let n = self.pending.len().min(self.limits.batch_size);
            let results: Vec<ProbeResult> = self.pending.drain(..n).map(|(_, r)| r).collect();
            let seq = self.next_seq;
            // 2^64 batches will not happen; saturate rather than wrap if it ever does.
            self.next_seq = seq.next().unwrap_or(seq);
            self.unacked.push_back(ResultBatch {
                seq,
                results,
                dropped: std::mem::take(&mut self.dropped_unreported),
            });
            cut.push(seq);
        }
        cut
    }

    /// When the current partial batch becomes due, if there is one.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.front().map(|(t, _)| *t + self.limits.linger)
    }

    /// Forgets every batch up to and including `seq`; returns how many results that freed.
    pub fn ack(&mut self, seq: Seq) -> usize {
        let mut freed = 0;
        while self.unacked.front().is_some_and(|b| b.seq <= seq) {
            if let Some(b) = self.unacked.pop_front() {
                freed += b.results.len();
            }
        }
        self.held -= freed;
        freed
    }

    /// Unacknowledged batches with a sequence after `after` (None: all), oldest first: what to
    /// (re)send.
    pub fn batches_after(&self, after: Option<Seq>) -> impl Iterator<Item = &ResultBatch> {
        self.unacked.iter().filter(move |b| after.is_none_or(|a| b.seq > a))
    }

    /// The first sequence the collector has not acknowledged (the resume point in `Hello`).
    pub fn first_unacked(&self) -> Seq {
        self.unacked.front().map(|b| b.seq).unwrap_or(self.next_seq)
    }

    pub fn held(&self) -> usize {
        self.held
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    pub fn unacked_batches(&self) -> usize {
        self.unacked.len()
    }
}

#[cfg(test)]
pub(crate) mod tests;
