//! The generator and the network model: drawn scenarios are reproducible, a healthy cluster
//! without noise has no bad cell, each fault class breaks the cells it should, and scoring
//! reads culprits, directions and groups as the engine writes them.

use netdiag_model::CellStatus;

use super::*;
use crate::localize::{Thresholds, localize};

fn quiet() -> NoiseSpec {
    NoiseSpec { max_echo_loss: 0.0, max_stray_timeouts: 0.0, silent_agent: 0.0, late_onset: 0.0 }
}

fn bad_cells(sim: &Simulation) -> usize {
    sim.matrix
        .pod_cells(now())
        .filter(|(_, s)| matches!(s.status, CellStatus::Failed | CellStatus::Degraded))
        .count()
}

#[test]
fn a_healthy_cluster_without_noise_has_no_bad_cell_and_no_finding() {
    let c = Cluster::generate(5, 3).expect("cluster");
    let s = Scenario::draw(&c, &[], &quiet(), 1).expect("healthy");
    let sim = s.simulate(&c);
    assert_eq!(bad_cells(&sim), 0);
    let loc = localize(&sim.matrix, c.inspections(), c.inventory(), now(), &Thresholds::default());
    assert!(loc.findings.is_empty(), "{:?}", loc.findings.iter().map(describe).collect::<Vec<_>>());
}

#[test]
fn drawing_is_reproducible_from_the_seed() {
    let c = Cluster::generate(10, 3).expect("cluster");
    let classes = [FaultClass::PairCut, FaultClass::LossInto];
    let a = Scenario::draw(&c, &classes, &NoiseSpec::default(), 42);
    assert_eq!(a, Scenario::draw(&c, &classes, &NoiseSpec::default(), 42));
    assert!(Scenario::draw(&c, &[FaultClass::DnsDown, FaultClass::DnsLoss], &quiet(), 1).is_none());
}

#[test]
fn every_class_breaks_cells_and_every_bad_cell_is_claimed_once() {
    let c = Cluster::generate(3, 3).expect("cluster");
    for (seed, class) in (1..).zip(FaultClass::ALL) {
        let s = Scenario::draw(&c, &[class], &quiet(), seed).expect("placed");
        let sim = s.simulate(&c);
        let loc = localize(&sim.matrix, &s.inspections(&c), c.inventory(), now(), &Thresholds::default());
        let score = score(&s, &sim, &loc);
        assert!(
            score.faults[0].bad_cells > 0 || class == FaultClass::LossInto || class == FaultClass::LossOutOf,
            "{}: no bad cell",
            s.faults[0]
        );
        assert_eq!(score.violations, 0, "{}", s.faults[0]);
    }
}

#[test]
fn a_dead_pod_fails_every_path_to_it() {
    let c = Cluster::generate(3, 3).expect("cluster");
    let s = Scenario::draw(&c, &[FaultClass::PodDown], &quiet(), 3).expect("placed");
    let Fault::PodDown(p) = &s.faults[0] else { panic!("{:?}", s.faults) };
    let sim = s.simulate(&c);
    let to_it: Vec<CellStatus> = sim
        .matrix
        .pod_cells(now())
        .filter(|(k, _)| matches!(&k.destination, crate::matrix::Destination::Pod { pod, .. } if pod == p))
        .map(|(_, s)| s.status)
        .collect();
    assert!(!to_it.is_empty());
    assert!(to_it.iter().all(|s| *s == CellStatus::Failed), "{to_it:?}");
}

#[test]
fn a_late_fault_fails_only_its_last_samples() {
    let c = Cluster::generate(3, 3).expect("cluster");
    let spec = NoiseSpec { late_onset: 1.0, ..quiet() };
    let s = (1..)
        .find_map(|seed| {
            Scenario::draw(&c, &[FaultClass::NodeIsolated], &spec, seed).filter(|s| s.onset == SAMPLES / 2)
        })
        .expect("placed");
    let sim = s.simulate(&c);
    let (_, stats) = sim
        .matrix
        .pod_cells(now())
        .find(|(k, _)| sim.touched.iter().any(|(t, _)| t == *k))
        .expect("a touched cell");
    assert_eq!((stats.successes, stats.failures), (u64::from(SAMPLES / 2), u64::from(SAMPLES / 2)));
}

#[test]
fn a_dnat_by_hand_is_on_record_and_named() {
    let c = Cluster::generate(5, 3).expect("cluster");
    for seed in 1..5 {
        let s = Scenario::draw(&c, &[FaultClass::NatRewrite], &quiet(), seed).expect("placed");
        let Fault::NatRewrite(n, ..) = &s.faults[0] else { panic!("{:?}", s.faults) };
        let reports = s.inspections(&c);
        let rules = &reports[&netdiag_model::probe::Source::Node(n.clone())].1.nat_rules;
        assert_eq!(rules.len(), 1, "{rules:?}");
        assert!(
            c.inspections().values().all(|(_, r)| r.nat_rules.is_empty()),
            "the cluster's own stay healthy"
        );
        let sim = s.simulate(&c);
        let loc = localize(&sim.matrix, &reports, c.inventory(), now(), &Thresholds::default());
        let score = score(&s, &sim, &loc);
        assert_eq!(
            score.faults[0].verdict,
            Verdict::Correct,
            "{}: {:?}",
            s.faults[0],
            loc.findings.iter().map(describe).collect::<Vec<_>>()
        );
    }
}
