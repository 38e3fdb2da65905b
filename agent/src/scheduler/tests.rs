//! Scheduler timing on paused time: spread, once per interval, concurrency and rate bounds.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use netdiag_model::plan::Schedule;
use netdiag_model::probe::{ProbeKind, Source, Target};

fn plan(n: usize, interval_ms: u64, timeout_ms: u64, concurrency: u32, rate: u32) -> Arc<ProbePlan> {
    let probes = (0..n)
        .map(|i| PlannedProbe {
            source: Source::Node("node-1".parse().unwrap()),
            target: Target::Address {
                ip: format!("10.244.{}.{}", i / 250 + 1, i % 250 + 1).parse().unwrap(),
                port: None,
            },
            kind: ProbeKind::Icmp,
            http_path: None,
            every: netdiag_model::EveryRounds::ONE,
        })
        .collect();
    Arc::new(ProbePlan {
        generation: NonZeroU64::MIN,
        schedule: Schedule::new(
            Duration::from_millis(interval_ms),
            Duration::from_millis(timeout_ms),
            concurrency,
            rate,
        )
        .unwrap(),
        probes,
    })
}

type Starts = Arc<Mutex<Vec<(Duration, String)>>>;

/// Runs the scheduler for `run_for` of virtual time; each probe "takes" `work`.
async fn drive(
    plan: Arc<ProbePlan>,
    work: Duration,
    run_for: Duration,
    in_flight_max: Arc<AtomicUsize>,
) -> Starts {
    let starts: Starts = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let (tx, mut rx) = mpsc::channel(10_000);
    let (stop_tx, stop_rx) = watch::channel(false);
    let s = starts.clone();
    let task = tokio::spawn(run(
        plan,
        move |probe: PlannedProbe, _timeout| {
            let s = s.clone();
            let in_flight = in_flight.clone();
            let max = in_flight_max.clone();
            async move {
                s.lock().unwrap().push((t0.elapsed(), probe.target.to_string()));
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(work).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                None
            }
        },
        tx,
        stop_rx,
        0.25,
    ));
    tokio::time::sleep(run_for).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    rx.close();
    starts
}

#[tokio::test(start_paused = true)]
async fn probes_spread_over_the_interval_and_repeat_once_per_interval() {
    let max = Arc::new(AtomicUsize::new(0));
    let starts =
        drive(plan(10, 1000, 500, 100, 1000), Duration::from_millis(1), Duration::from_millis(10_050), max)
            .await;
    let starts = starts.lock().unwrap().clone();
    let mut per_target: BTreeMap<String, usize> = BTreeMap::new();
    for (_, t) in &starts {
        *per_target.entry(t.clone()).or_default() += 1;
    }
    assert_eq!(per_target.len(), 10);
    assert!(per_target.values().all(|&n| n == 10), "{per_target:?}");
    // First round: ten distinct phases, about 100 ms apart, none in step.
    let mut first: Vec<u128> = starts.iter().take(10).map(|(at, _)| at.as_millis()).collect();
    first.sort();
    first.dedup();
    assert_eq!(first.len(), 10, "{first:?}");
    for w in first.windows(2) {
        assert!((80..=120).contains(&(w[1] - w[0])), "{first:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn concurrency_never_exceeds_the_plan() {
    let max = Arc::new(AtomicUsize::new(0));
    // 20 probes, each busy 400 ms, 50 ms apart: without the bound 8 would overlap.
    let starts =
        drive(plan(20, 1000, 900, 3, 1000), Duration::from_millis(400), Duration::from_secs(3), max.clone())
            .await;
    assert_eq!(max.load(Ordering::SeqCst), 3);
    assert!(starts.lock().unwrap().len() > 10, "probes still run, just queued");
}

#[tokio::test(start_paused = true)]
async fn start_rate_is_limited() {
    let max = Arc::new(AtomicUsize::new(0));
    // 100 probes per 1 s round would be 100/s; the plan allows 20/s.
    let starts =
        drive(plan(100, 1000, 500, 1000, 20), Duration::from_millis(1), Duration::from_secs(5), max).await;
    let n = starts.lock().unwrap().len();
    assert!((95..=112).contains(&n), "{n} starts in 5 s at 20/s (+ a small initial burst)");
}

fn result_of(probe: &PlannedProbe, outcome: netdiag_model::Outcome) -> ProbeResult {
    ProbeResult {
        source: probe.source.clone(),
        target: probe.target.clone(),
        kind: probe.kind,
        outcome,
        rtt: None,
        at: netdiag_model::UnixMillis::saturating_from_system_time(std::time::SystemTime::now()),
        detail: netdiag_model::result::Detail::lossy(""),
        burst: None,
        http_status: None,
        path_mtu: None,
        answers: vec![],
        nameserver: None,
    }
}

/// Runs a plan whose probes to `10.244.1.1` fail for the first `failures` attempts (each
/// taking `work`) and succeed after; returns when each attempt at that target started.
async fn drive_failing(
    plan: Arc<ProbePlan>,
    failures: usize,
    work: Duration,
    run_for: Duration,
) -> Vec<Duration> {
    let starts: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let t0 = Instant::now();
    let (tx, mut rx) = mpsc::channel(10_000);
    let (stop_tx, stop_rx) = watch::channel(false);
    let s = starts.clone();
    let task = tokio::spawn(run(
        plan,
        move |probe: PlannedProbe, _timeout| {
            let s = s.clone();
            async move {
                let outcome = if probe.target.to_string() == "10.244.1.1" {
                    let mut starts = s.lock().unwrap();
                    starts.push(t0.elapsed());
                    if starts.len() <= failures {
                        netdiag_model::Outcome::Icmp(netdiag_model::IcmpFailure::Timeout)
                    } else {
                        netdiag_model::Outcome::Ok
                    }
                } else {
                    netdiag_model::Outcome::Ok
                };
                tokio::time::sleep(work).await;
                Some(result_of(&probe, outcome))
            }
        },
        tx,
        stop_rx,
        0.0,
    ));
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    tokio::time::sleep(run_for).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap();
    drain.abort();
    starts.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_confirmed_at_once_by_re_probes() {
    // A hard fault: every attempt fails after a 500 ms timeout. The first attempt starts at 0;
    // its two confirmations start right when it fails, not an interval later.
    let starts = drive_failing(
        plan(4, 5000, 500, 64, 1000),
        usize::MAX,
        Duration::from_millis(500),
        Duration::from_millis(4_000),
    )
    .await;
    assert_eq!(starts.len(), 1 + CONFIRMATIONS as usize, "{starts:?}");
    for at in &starts[1..] {
        assert!(
            *at >= Duration::from_millis(500) && *at <= Duration::from_millis(500) + CONFIRM_JITTER,
            "{starts:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_single_loss_is_re_probed_and_then_left_alone() {
    // One failed attempt, then successes: one confirmation round, then once per interval.
    let starts = drive_failing(
        plan(4, 1000, 100, 64, 1000),
        1,
        Duration::from_millis(100),
        Duration::from_millis(2_500),
    )
    .await;
    let failed_at = Duration::from_millis(100);
    let confirmations =
        starts.iter().filter(|at| **at >= failed_at && **at <= failed_at + CONFIRM_JITTER).count();
    assert_eq!(confirmations, CONFIRMATIONS as usize, "{starts:?}");
    assert_eq!(starts.len(), 3 + CONFIRMATIONS as usize, "one per interval besides: {starts:?}");
}

#[test]
fn confirmations_keep_to_their_budget() {
    let t0 = Instant::now();
    let mut c = Confirmations::new(4, Duration::from_secs(5), t0);
    assert!(c.take(t0));
    assert!(c.take(t0));
    assert!(!c.take(t0), "4 re-probes per interval: two failures");
    assert!(c.take(t0 + Duration::from_secs(5)), "a new interval, a new budget");
}

#[tokio::test(start_paused = true)]
async fn probes_due_close_together_start_as_one_batch() {
    // 1000 probes per 5 s: 5 ms apart; a 20 ms batch window starts them 4 or 5 at a time.
    let max = Arc::new(AtomicUsize::new(0));
    let starts = drive(
        plan(1000, 5000, 500, 1000, 100_000),
        Duration::from_millis(1),
        Duration::from_millis(4_990),
        max,
    )
    .await;
    let starts = starts.lock().unwrap().clone();
    let mut instants: Vec<u128> = starts.iter().map(|(at, _)| at.as_millis()).collect();
    instants.dedup();
    assert_eq!(starts.len(), 1000, "every probe once");
    assert!(instants.len() <= 1000 / 4 + 1, "{} wake-ups for 1000 starts", instants.len());
}

#[tokio::test(start_paused = true)]
async fn a_paced_probe_runs_once_every_its_rounds_after_a_first_run_in_round_one() {
    let max = Arc::new(AtomicUsize::new(0));
    let mut paced = (*plan(12, 1000, 500, 100, 1000)).clone();
    for p in paced.probes.iter_mut().skip(6) {
        p.every = netdiag_model::EveryRounds::new(6).unwrap();
    }
    let starts = drive(Arc::new(paced), Duration::from_millis(1), Duration::from_millis(30_050), max).await;
    let starts = starts.lock().unwrap().clone();
    let mut per_target: BTreeMap<String, usize> = BTreeMap::new();
    for (_, t) in &starts {
        *per_target.entry(t.clone()).or_default() += 1;
    }
    let counts: Vec<usize> = per_target.values().copied().collect();
    // 30 rounds: the six every-round probes run 30 times; the six paced ones once in round
    // one, then every six rounds from their own offset: 5 or 6 times.
    assert_eq!(counts.iter().filter(|&&n| n == 30).count(), 6, "{per_target:?}");
    assert!(counts.iter().filter(|&&n| n != 30).all(|n| (5..=6).contains(n)), "{per_target:?}");
    let round_one: Vec<&String> =
        starts.iter().filter(|(at, _)| at.as_millis() < 1000).map(|(_, t)| t).collect();
    assert_eq!(round_one.len(), 12, "every probe runs in the first round");
    // After the first round the paced probes spread: no round holds all six.
    for round in 1..30u128 {
        let n = starts.iter().filter(|(at, t)| at.as_millis() / 1000 == round && per_target[t] != 30).count();
        assert!(n < 6, "round {round} runs {n} paced probes");
    }
}

#[tokio::test(start_paused = true)]
async fn paced_probes_count_for_their_share_of_the_rate() {
    let max = Arc::new(AtomicUsize::new(0));
    // 100 probes every 10 rounds are 10 per 1 s round: within 20/s, no stretching; unpaced,
    // the same plan would be stretched to 5 s rounds.
    let mut paced = (*plan(100, 1000, 500, 1000, 20)).clone();
    for p in paced.probes.iter_mut() {
        p.every = netdiag_model::EveryRounds::new(10).unwrap();
    }
    let starts = drive(Arc::new(paced), Duration::from_millis(1), Duration::from_millis(20_500), max).await;
    let n = starts.lock().unwrap().len();
    // Round one runs all 100 (rate-limited to ~5 s), then 10 per round.
    assert!((250..=320).contains(&n), "{n} starts in 20.5 s");
}

#[tokio::test(start_paused = true)]
async fn a_paced_probe_whose_outcome_changes_runs_every_round_until_the_change_is_confirmed() {
    let mut paced = (*plan(1, 1000, 500, 10, 1000)).clone();
    paced.probes[0].every = netdiag_model::EveryRounds::new(6).unwrap();
    // Denied (fails) for its first four runs, then the path connects.
    let starts =
        drive_failing(Arc::new(paced), 4, Duration::from_millis(1), Duration::from_millis(40_500)).await;
    let at: Vec<f64> = starts.iter().map(Duration::as_secs_f64).collect();
    let gaps: Vec<u64> = at.windows(2).map(|w| (w[1] - w[0]).round() as u64).collect();
    // Rounds 0 and 1 (its offset is 0), then every 6: ~7 and ~13 fail, ~19 connects — a
    // change: then every round for 6 rounds to confirm it, then paced again. A paced probe's
    // failures are never re-probed at once (they are what policy asks for).
    assert_eq!(gaps, vec![1, 6, 6, 6, 1, 1, 1, 1, 1, 1, 6, 6], "starts at {at:?}");
}
