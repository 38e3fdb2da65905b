//! The writer Lease between collector replicas, against the fake API server with the real
//! kube-rs client: exactly one of three candidates holds it at a time; a holder that stops
//! releases it and a standby takes over at its next read; a holder that dies without a word is
//! taken over once its record has gone unchanged for a lease duration; and a holder whose
//! writes are refused stops holding within its renew deadline.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use netdiag_collector::lease::{self, LeaseConfig};
use netdiag_fakekube::{FakeKube, Kind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Candidate {
    holding: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1_000),
        retry: Duration::from_millis(200),
        ..LeaseConfig::new("netdiag-collector-writer".into(), "netdiag".into(), identity.into())
    }
}

fn campaign(fake: &FakeKube, identity: &str) -> Candidate {
    let client = kube::Client::try_from(fake.config()).unwrap();
    let (holding_tx, holding) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(lease::run(client, config(identity), holding_tx, stop_rx));
    Candidate { holding, stop, task }
}

fn holders(cs: &[&Candidate]) -> Vec<usize> {
    cs.iter().enumerate().filter(|(_, c)| *c.holding.borrow()).map(|(i, _)| i).collect()
}

/// Waits until exactly one candidate holds; returns which and how long it took, checking that
/// two never hold at once.
async fn one_holder(cs: &[&Candidate], limit: Duration) -> (usize, Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        let h = holders(cs);
        assert!(h.len() <= 1, "two replicas hold the writer lease at once: {h:?}");
        if let [one] = h[..] {
            return (one, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no single holder within {limit:?}: {:?}", holders(cs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_writes_and_another_takes_over_when_it_stops_or_dies() {
    let fake = FakeKube::start().await.unwrap();
    let a = campaign(&fake, "collector-0_a");
    let b = campaign(&fake, "collector-1_b");
    let c = campaign(&fake, "collector-2_c");
    let (first, _) = one_holder(&[&a, &b, &c], Duration::from_secs(5)).await;
    // It stays the only holder over several lease durations.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(holders(&[&a, &b, &c]), [first]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A graceful stop releases it: another holds within about one retry, not a lease duration.
    let mut all = vec![a, b, c];
    let stopping = all.remove(first);
    stopping.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), stopping.task).await.unwrap().unwrap();
    let (second, took) = one_holder(&[&all[0], &all[1]], Duration::from_secs(5)).await;
    assert!(took < Duration::from_millis(1_000), "released, yet the takeover took {took:?}");

    // Dying without a word (the task aborted, as a SIGKILL): taken over after a duration.
    let dying = all.remove(second);
    dying.task.abort();
    let (_, took) = one_holder(&[&all[0]], Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(1_500), "a silent holder was taken over after only {took:?}");
    assert!(took < Duration::from_secs(3), "takeover after {took:?}");
    let lease = fake.object(Kind::Lease, "netdiag", "netdiag-collector-writer").unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 2, "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 2, "{lease}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_cannot_renew_stops_writing_within_its_deadline() {
    let fake = FakeKube::start().await.unwrap();
    let a = campaign(&fake, "collector-0_a");
    one_holder(&[&a], Duration::from_secs(5)).await;
    fake.forbid("update", "leases");
    let lost = Instant::now();
    let mut holding = a.holding.clone();
    tokio::time::timeout(Duration::from_secs(3), holding.wait_for(|h| !*h)).await.unwrap().unwrap();
    let took = lost.elapsed();
    assert!(took <= Duration::from_millis(1_600), "kept writing {took:?} after renewals were refused");
    fake.allow("update", "leases");
    tokio::time::timeout(Duration::from_secs(3), holding.wait_for(|h| *h)).await.unwrap().unwrap();
    a.stop.send(true).unwrap();
}
