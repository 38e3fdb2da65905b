//! Batching, acknowledgement and the memory bound, on plain values and a fake clock.

use std::time::{Duration, Instant};

use super::*;
use netdiag_model::outcome::Outcome;
use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::result::Detail;
use netdiag_model::time::UnixMillis;

pub(crate) fn result(n: u16) -> ProbeResult {
    ProbeResult {
        source: "tidb/demo-pd-0".parse().unwrap(),
        target: Target::Address {
            ip: "10.244.1.2".parse().unwrap(),
            port: Some(netdiag_model::Port::new(u32::from(n) + 1).unwrap()),
        },
        kind: ProbeKind::Tcp,
        outcome: Outcome::Ok,
        rtt: None,
        at: UnixMillis::new(1).unwrap(),
        detail: Detail::default(),
        burst: None,
        http_status: None,
        path_mtu: None,
        answers: vec![],
        nameserver: None,
    }
}

fn port_of(r: &ProbeResult) -> u16 {
    r.target.port().unwrap().get() - 1
}

fn limits(batch: usize, cap: usize) -> BufferLimits {
    BufferLimits { batch_size: batch, linger: Duration::from_millis(100), capacity: cap }
}

#[test]
fn batches_are_cut_by_count_and_by_age_and_numbered_from_one() {
    let t0 = Instant::now();
    let mut b = ResultBuffer::new(limits(3, 100));
    for i in 0..7 {
        b.push(result(i), t0);
    }
    let cut = b.cut(t0);
    assert_eq!(cut.iter().map(|s| s.get()).collect::<Vec<_>>(), [1, 2], "two full batches, one result waits");
    assert!(b.cut(t0 + Duration::from_millis(99)).is_empty(), "not stale yet");
    assert_eq!(b.next_deadline(), Some(t0 + Duration::from_millis(100)));
    assert_eq!(b.cut(t0 + Duration::from_millis(100)).len(), 1, "the partial batch after linger");
    let sizes: Vec<usize> = b.batches_after(None).map(|b| b.results.len()).collect();
    assert_eq!(sizes, [3, 3, 1]);
    assert_eq!(b.next_deadline(), None);
}

#[test]
fn acks_free_batches_up_to_their_sequence() {
    let t0 = Instant::now();
    let mut b = ResultBuffer::new(limits(2, 100));
    for i in 0..6 {
        b.push(result(i), t0);
    }
    b.cut(t0);
    assert_eq!(b.first_unacked().get(), 1);
    assert_eq!(b.ack(Seq::new(2).unwrap()), 4);
    assert_eq!(b.first_unacked().get(), 3);
    assert_eq!(b.held(), 2);
    let resend: Vec<u64> = b.batches_after(None).map(|b| b.seq.get()).collect();
    assert_eq!(resend, [3]);
    assert_eq!(b.ack(Seq::new(2).unwrap()), 0, "a repeated ack is harmless");
    b.ack(Seq::new(3).unwrap());
    assert_eq!(b.first_unacked().get(), 4, "resume point after everything acked is the next batch");
}

#[test]
fn full_buffer_drops_oldest_first_and_reports_the_count() {
    let t0 = Instant::now();
    let mut b = ResultBuffer::new(limits(2, 4));
    for i in 0..4 {
        b.push(result(i), t0);
    }
    b.cut(t0); // batches 1 = [0,1], 2 = [2,3]
    for i in 4..7 {
        b.push(result(i), t0);
    }
    assert_eq!(b.held(), 4, "never more than the capacity");
    assert_eq!(b.dropped_total(), 3);
    b.cut(t0 + Duration::from_secs(1));
    let batches: Vec<(u64, Vec<u16>, u64)> = b
        .batches_after(None)
        .map(|b| (b.seq.get(), b.results.iter().map(port_of).collect(), b.dropped))
        .collect();
    // 0 and 1 (batch 1, now gone) and 2 were dropped; batch 3 carries the count.
    assert_eq!(batches, vec![(2, vec![3], 0), (3, vec![4, 5], 3), (4, vec![6], 0)]);
}

#[test]
fn memory_stays_bounded_under_any_mix() {
    let t0 = Instant::now();
    let mut b = ResultBuffer::new(limits(7, 50));
    for i in 0..10_000u32 {
        b.push(result((i % 60_000) as u16), t0);
        if i % 13 == 0 {
            b.cut(t0 + Duration::from_millis(u64::from(i)));
        }
        if i % 101 == 0 {
            let first = b.first_unacked();
            b.ack(first);
        }
        assert!(b.held() <= 50);
        let counted: usize = b.batches_after(None).map(|b| b.results.len()).sum::<usize>() + b.pending.len();
        assert_eq!(counted, b.held());
    }
}
