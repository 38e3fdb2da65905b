//! Probe plans: a plan round-trips; bad schedules and probes that contradict their kind are
//! rejected at their field.

use netdiag_model::ProbePlan;

use super::fixtures::*;
use crate::v1;

#[test]
fn plans_round_trip() {
    round_trip::<ProbePlan, v1::ProbePlan>(plan());
    round_trip::<ProbePlan, v1::ProbePlan>(ProbePlan { probes: vec![], ..plan() });
    let mut paced = plan();
    paced.probes[1].every = netdiag_model::EveryRounds::new(6).unwrap();
    round_trip::<ProbePlan, v1::ProbePlan>(paced);
}

#[test]
fn an_unset_every_is_every_round() {
    let mut wire = v1::ProbePlan::from(plan());
    wire.probes[0].every = 0;
    let back = ProbePlan::try_from(wire).unwrap();
    assert!(back.probes[0].every.is_every_round());
}

fn target_port(p: &mut v1::PlannedProbe) -> &mut u32 {
    match p.target.as_mut().and_then(|t| t.kind.as_mut()) {
        Some(v1::target::Kind::Address(a)) => &mut a.port,
        _ => panic!("not an address target"),
    }
}

#[test]
fn hostile_plans() {
    // Probes: 0 icmp, 1 tcp, 2 http with a path.
    let valid = v1::ProbePlan::from(plan());
    check_rejects::<ProbePlan, _>(
        &valid,
        &[
            ("generation 0", |p| p.generation = 0, "generation", "generations start at 1"),
            ("interval 0", |p| p.interval_ms = 0, "interval_ms", "100 to 3600000"),
            ("interval 50ms", |p| p.interval_ms = 50, "interval_ms", "100 to 3600000"),
            ("interval over an hour", |p| p.interval_ms = 3_600_001, "interval_ms", "100 to 3600000"),
            ("timeout 0", |p| p.timeout_ms = 0, "timeout_ms", "at least 1"),
            ("timeout above interval", |p| p.timeout_ms = 5001, "timeout_ms", "longer than the interval"),
            ("no concurrency", |p| p.max_concurrency = 0, "max_concurrency", "1 to 10000"),
            ("rate too high", |p| p.max_probes_per_second = 100_001, "max_probes_per_second", "1 to 100000"),
            ("kind unspecified", |p| p.probes[1].kind = 0, "probes[1].kind", "unspecified"),
            ("source unset", |p| p.probes[0].source = None, "probes[0].source", "is missing"),
            ("tcp without port", |p| *target_port(&mut p.probes[1]) = 0, "probes[1].target", "needs a port"),
            (
                "path on tcp",
                |p| p.probes[1].http_path = "/".into(),
                "probes[1].http_path",
                "only for http probes",
            ),
            (
                "relative path",
                |p| p.probes[2].http_path = "health".into(),
                "probes[2].http_path",
                "HTTP path",
            ),
            (
                "path with space",
                |p| p.probes[2].http_path = "/a b".into(),
                "probes[2].http_path",
                "contains ' '",
            ),
            (
                "dns kind to address",
                |p| p.probes[0].kind = v1::ProbeKind::Dns as i32,
                "probes[0].target",
                "needs a dns target",
            ),
            ("every above 60", |p| p.probes[1].every = 61, "probes[1].every", "1 to 60 rounds"),
            (
                "too many",
                |p| p.probes = vec![v1::PlannedProbe::default(); 100_001],
                "probes",
                "more than the 100000",
            ),
        ],
    );
}
