//! Runs a probe plan: every probe once per interval (a paced one, `every` > 1, as [`pace`]
//! says), at its own phase in the interval (spread evenly, offset by a per-agent random phase
//! and a little jitter each round, so agents never probe in step), with at most
//! `max_concurrency` probes in flight, at most `max_probes_per_second` started, and each
//! bounded by the plan's timeout.
//!
//! Probes due within [`batch_window`] of each other start together: one timer wake-up per
//! batch rather than per probe (waking an idle runtime costs more than starting a probe), and
//! their packets leave close together.
//!
//! A probe that fails on the network is confirmed at once: [`CONFIRMATIONS`] re-probes start
//! right away (a few ms of jitter apart), so a hard fault shows as that many failures in a row
//! within one timeout of the first, and a single lost packet is followed by successes. At most
//! [`confirm_budget`] re-probes start per interval.
//!
//! Generic over the function that runs one probe, so the timing is tested on paused time
//! without a packet.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use netdiag_model::outcome::Outcome;
use netdiag_model::plan::{PlannedProbe, ProbePlan};
use netdiag_model::result::ProbeResult;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::shutdown::stopped;
use pace::Pacing;

/// Start-rate limit as a generic cell rate algorithm: one start per `1/rate`, with a burst
/// of up to `burst` starts after a quiet spell.
#[derive(Debug)]
struct RateLimit {
    spacing: Duration,
    burst: Duration,
    /// The theoretical time of the next start at the steady rate.
    tat: Instant,
}

impl RateLimit {
    fn new(rate: u32, now: Instant) -> Self {
        let spacing = Duration::from_secs(1) / rate.max(1);
        Self { spacing, burst: spacing * 9, tat: now }
    }

    /// How long to wait before the next start is allowed (zero: go, and it is counted).
    fn take(&mut self, now: Instant) -> Duration {
        let tat = self.tat.max(now);
        let earliest = tat.checked_sub(self.burst).unwrap_or(now);
        if now >= earliest {
            self.tat = tat + self.spacing;
            Duration::ZERO
        } else {
            earliest - now
        }
    }
}

/// Re-probes after a probe's first failure (with it, [`CONFIRMATIONS`] + 1 failures in a row
/// confirm a hard fault).
pub const CONFIRMATIONS: u32 = 2;

/// How close together due probes start as one batch: 20 ms, less for short intervals
/// (0.5 % of it), so the spread over the interval stays.
pub fn batch_window(interval: Duration) -> Duration {
    (interval / 200).min(Duration::from_millis(20))
}

/// Re-probes allowed per interval: 2 % of the plan, at least 16.
pub fn confirm_budget(probes: usize) -> usize {
    (probes / 50).max(16)
}

/// Spread of the confirmation re-probes of one failure.
const CONFIRM_JITTER: Duration = Duration::from_millis(20);

/// Runs `plan` until `stop` turns true or the results channel closes. `run_one` runs one probe
/// (it must honour the timeout it is given; the scheduler also cuts it at twice that).
pub async fn run<F, Fut>(
    plan: Arc<ProbePlan>,
    run_one: F,
    results: mpsc::Sender<ProbeResult>,
    mut stop: watch::Receiver<bool>,
    agent_phase: f64,
) where
    F: Fn(PlannedProbe, Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<ProbeResult>> + Send + 'static,
{
    let schedule = plan.schedule;
    // A plan larger than the rate limit allows in one interval cannot keep its interval: stretch
    // it to what the rate allows (and say so) rather than fall further behind every round.
    let mut pacing = Pacing::new(&plan.probes);
    let per_round = pacing.per_round();
    let needed = Duration::from_secs_f64(per_round / f64::from(schedule.max_probes_per_second().get()));
    let interval = if needed > schedule.interval() {
        tracing::warn!(
            probes_per_round = per_round.round() as u64,
            rate = schedule.max_probes_per_second().get(),
            planned_ms = schedule.interval().as_millis() as u64,
            effective_ms = needed.as_millis() as u64,
            "the plan does not fit the probe rate limit in one interval; stretching the interval"
        );
        needed
    } else {
        schedule.interval()
    };
    let timeout = schedule.timeout();
    let count = plan.probes.len();
    if count == 0 {
        stopped(&mut stop).await;
        return;
    }
    let run_one = Arc::new(run_one);
    let permits = Arc::new(Semaphore::new(schedule.max_concurrency().get() as usize));
    // Probes that failed on the network, reported back by their tasks.
    let (failed_tx, mut failed_rx) = mpsc::unbounded_channel::<usize>();
    let mut confirming = vec![false; count];
    let mut confirm = Confirmations::new(confirm_budget(count), interval, Instant::now());
    let window = batch_window(interval);
    let start = Instant::now();
    let agent_phase = agent_phase.clamp(0.0, 1.0);
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = (0..count)
        .map(|i| {
            // The probe's share of the interval, shifted by the agent's own phase, wrapped.
            let share = (i as f64 / count as f64 + agent_phase).fract();
            Reverse((start + interval.mul_f64(share), i))
        })
        .collect();
    let mut limit = RateLimit::new(schedule.max_probes_per_second().get(), start);
    // A tenth of the gap between two probes: enough to break lockstep, never enough to
    // reorder the round.
    let jitter_max = interval.mul_f64(0.1 / count as f64);
    loop {
        let Some(&Reverse((at, _))) = due.peek() else { return };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            Some(i) = failed_rx.recv() => {
                // A failure: re-probe at once, unless this one was already a confirmation or
                // the budget is spent (then the next rounds confirm it).
                if !std::mem::replace(&mut confirming[i], true) && confirm.take(Instant::now()) {
                    let now = Instant::now();
                    for _ in 0..CONFIRMATIONS {
                        due.push(Reverse((now + CONFIRM_JITTER.mul_f64(fastrand::f64()), i | CONFIRM_BIT)));
                    }
                }
                continue;
            }
            () = stopped(&mut stop) => return,
        }
        let horizon = Instant::now() + window;
        while let Some(&Reverse((at, tagged))) = due.peek()
            && at <= horizon
        {
            due.pop();
            let (i, is_confirmation) = (tagged & !CONFIRM_BIT, tagged & CONFIRM_BIT != 0);
            if !is_confirmation && !pacing.runs_now(i) {
                // A paced probe's round off: it waits for the next.
                let jitter = jitter_max.mul_f64(fastrand::f64());
                due.push(Reverse((at + interval + jitter, i)));
                continue;
            }
            loop {
                let wait = limit.take(Instant::now());
                if wait.is_zero() {
                    break;
                }
                tokio::time::sleep(wait).await;
            }
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                () = stopped(&mut stop) => return,
            };
            if !is_confirmation {
                // A regular round: a failure from here on starts a new confirmation.
                confirming[i] = false;
            }
            let probe = plan.probes[i].clone();
            let run_one = run_one.clone();
            let sink = results.clone();
            let failed = failed_tx.clone();
            let paced = probe.every.get() > 1;
            let slot = paced.then(|| pacing.slot(i));
            tokio::spawn(async move {
                let outcome = tokio::time::timeout(timeout * 2, run_one(probe, timeout)).await;
                drop(permit);
                if let Ok(Some(result)) = outcome {
                    if let Some(slot) = slot {
                        slot.report(result.outcome == Outcome::Ok);
                    }
                    // A paced probe's path is one policy keeps shut: its failures are expected
                    // and need no confirmation (a change of outcome speeds it up instead).
                    if !is_confirmation && !paced && result.outcome.is_network_failure() {
                        let _ = failed.send(i);
                    }
                    let _ = sink.send(result).await;
                }
            });
            if results.is_closed() {
                return;
            }
            if !is_confirmation {
                let jitter = jitter_max.mul_f64(fastrand::f64());
                due.push(Reverse((at + interval + jitter, i)));
            }
        }
    }
}

/// Marks a heap entry as a confirmation re-probe of the probe its other bits index (plans
/// hold far fewer than 2^63 probes).
const CONFIRM_BIT: usize = 1 << (usize::BITS - 1);

/// The confirmation budget: at most `per_interval` re-probe rounds in any interval.
#[derive(Debug)]
struct Confirmations {
    per_interval: usize,
    interval: Duration,
    started: Instant,
    used: usize,
}

impl Confirmations {
    fn new(per_interval: usize, interval: Duration, now: Instant) -> Self {
        Self { per_interval, interval, started: now, used: 0 }
    }

    /// Whether one more failure may be confirmed now (and counts it).
    fn take(&mut self, now: Instant) -> bool {
        if now >= self.started + self.interval {
            self.started = now;
            self.used = 0;
        }
        if self.used + CONFIRMATIONS as usize > self.per_interval {
            return false;
        }
        self.used += CONFIRMATIONS as usize;
        true
    }
}

mod pace;
#[cfg(test)]
mod tests;
