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
            target: Target::Address { ip: format!("10.244.1.{}", i + 1).parse().unwrap(), port: None },
            kind: ProbeKind::Icmp,
            http_path: None,
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
