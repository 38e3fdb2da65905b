//! Runs a probe plan: every probe once per interval (a paced one, `every` > 1, as [`pace`]
//! says), at its own phase in the interval (spread evenly, offset by a per-agent random phase
//! and a little jitter each round, so agents never probe in step), with at most
//! `max_concurrency` probes in flight, at most `max_probes_per_second` started, and each
//! bounded by the plan's timeout.
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
        let Some(Reverse((at, i))) = due.pop() else { return };
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            () = stopped(&mut stop) => return,
        }
        let jitter = jitter_max.mul_f64(fastrand::f64());
        if !pacing.runs_now(i) {
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
        let probe = plan.probes[i].clone();
        let run_one = run_one.clone();
        let sink = results.clone();
        let slot = (probe.every.get() > 1).then(|| pacing.slot(i));
        tokio::spawn(async move {
            let outcome = tokio::time::timeout(timeout * 2, run_one(probe, timeout)).await;
            drop(permit);
            if let Ok(Some(result)) = outcome {
                if let Some(slot) = slot {
                    slot.report(result.outcome == Outcome::Ok);
                }
                let _ = sink.send(result).await;
            }
        });
        if results.is_closed() {
            return;
        }
        due.push(Reverse((at + interval + jitter, i)));
    }
}

mod pace;
#[cfg(test)]
mod tests;
