//! Which round a paced probe (`every` > 1: a path NetworkPolicy keeps shut) runs in. It runs in
//! the first round like every other probe, then once every `every` rounds, offset by its index
//! so paced probes do not all fall in the same rounds — until its outcome changes (a denied
//! path connects, or connects no more): then it runs every round for `every` rounds, so the
//! matrix sees the change confirmed at the plan's pace rather than one sample in `every`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use netdiag_model::PlannedProbe;

/// What a probe's task reports of its outcomes.
const UNKNOWN: u8 = 0;
const SUCCEEDED: u8 = 1;
const FAILED: u8 = 2;
/// Set beside the outcome when it differs from the one before.
const CHANGED: u8 = 4;

/// The pacing state of one plan's probes.
#[derive(Debug)]
pub(super) struct Pacing {
    every: Vec<u32>,
    /// Rounds to skip before the next run; None before the first.
    wait: Vec<Option<u32>>,
    /// Rounds left at full pace after a change.
    hot: Vec<u32>,
    outcomes: Arc<[AtomicU8]>,
}

/// A probe's task reports its outcome through this.
#[derive(Debug, Clone)]
pub(super) struct OutcomeSlot {
    outcomes: Arc<[AtomicU8]>,
    index: usize,
}

impl OutcomeSlot {
    pub(super) fn report(&self, succeeded: bool) {
        let Some(slot) = self.outcomes.get(self.index) else { return };
        let now = if succeeded { SUCCEEDED } else { FAILED };
        let before = slot.load(Ordering::Relaxed) & !CHANGED;
        let changed = if before != UNKNOWN && before != now { CHANGED } else { 0 };
        // Keep a change not yet seen by the scheduler.
        let pending = slot.load(Ordering::Relaxed) & CHANGED;
        slot.store(now | changed | pending, Ordering::Relaxed);
    }
}

impl Pacing {
    pub(super) fn new(probes: &[PlannedProbe]) -> Self {
        let every: Vec<u32> = probes.iter().map(|p| p.every.get()).collect();
        let n = every.len();
        Self {
            every,
            wait: vec![None; n],
            hot: vec![0; n],
            outcomes: (0..n).map(|_| AtomicU8::new(UNKNOWN)).collect(),
        }
    }

    /// The probes per round the plan asks for on average.
    pub(super) fn per_round(&self) -> f64 {
        self.every.iter().map(|&e| 1.0 / f64::from(e)).sum()
    }

    pub(super) fn slot(&self, index: usize) -> OutcomeSlot {
        OutcomeSlot { outcomes: self.outcomes.clone(), index }
    }

    /// Whether probe `i`, due this round, runs (else it waits for the next round).
    pub(super) fn runs_now(&mut self, i: usize) -> bool {
        let every = self.every[i];
        if every <= 1 {
            return true;
        }
        let changed = self.outcomes[i].fetch_and(!CHANGED, Ordering::Relaxed) & CHANGED != 0;
        if changed {
            self.hot[i] = every;
        }
        let run = match self.wait[i] {
            None => {
                // First run; the next waits a share of `every` picked by the index.
                self.wait[i] = Some(i as u32 % every);
                return true;
            }
            Some(0) => true,
            Some(_) => self.hot[i] > 0,
        };
        if run {
            self.wait[i] = Some(every - 1);
            self.hot[i] = self.hot[i].saturating_sub(1);
        } else if let Some(w) = self.wait[i].as_mut() {
            *w -= 1;
        }
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdiag_model::EveryRounds;
    use netdiag_model::probe::{ProbeKind, Source, Target};

    fn probes(every: &[u32]) -> Vec<PlannedProbe> {
        every
            .iter()
            .map(|&e| PlannedProbe {
                source: Source::Node("node-1".parse().unwrap()),
                target: Target::Address { ip: "10.0.0.1".parse().unwrap(), port: None },
                kind: ProbeKind::Icmp,
                http_path: None,
                every: EveryRounds::new(e).unwrap(),
            })
            .collect()
    }

    #[test]
    fn unpaced_probes_run_every_round() {
        let mut p = Pacing::new(&probes(&[1]));
        assert!((0..10).all(|_| p.runs_now(0)));
    }

    #[test]
    fn a_paced_probe_runs_first_then_once_every_its_rounds_from_its_offset() {
        let rounds = |i: usize| -> Vec<u32> {
            let mut q = Pacing::new(&probes(&[6, 6, 6]));
            (0..20u32).filter(|_| q.runs_now(i)).collect()
        };
        assert_eq!(rounds(0), vec![0, 1, 7, 13, 19]);
        assert_eq!(rounds(1), vec![0, 2, 8, 14]);
        assert_eq!(rounds(2), vec![0, 3, 9, 15]);
    }

    #[test]
    fn a_change_of_outcome_runs_it_every_round_for_its_rounds_then_paces_it_again() {
        let mut p = Pacing::new(&probes(&[6]));
        let slot = p.slot(0);
        assert!(p.runs_now(0), "first round");
        slot.report(false);
        assert!(p.runs_now(0), "offset 0: next round");
        slot.report(false);
        assert!(!p.runs_now(0), "unchanged: paced");
        slot.report(true); // as if a run in between had connected
        let hot: Vec<bool> = (0..8).map(|_| p.runs_now(0)).collect();
        assert_eq!(hot, vec![true, true, true, true, true, true, false, false], "six rounds hot, then paced");
    }

    #[test]
    fn the_first_outcome_is_no_change() {
        let mut p = Pacing::new(&probes(&[6]));
        let slot = p.slot(0);
        assert!(p.runs_now(0));
        assert!(p.runs_now(0));
        slot.report(true);
        assert!(!p.runs_now(0), "a first outcome is not a change");
    }
}
