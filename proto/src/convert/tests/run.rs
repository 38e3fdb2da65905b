//! On-demand runs: requests for every kind of target, progress, the CLI's request and event
//! stream round-trip; bad ids, targets, timeouts and contradictory ends are rejected.

use netdiag_model::{
    ProbeRunEvent, ProbeRunRequest, RunDone, RunProgress, RunRequest, RunStep, RunTimeout, RunUpdate, Source,
    StepStatus,
};

use super::fixtures::*;
use crate::v1;
use crate::v1::run_target::Kind;

#[test]
fn runs_round_trip() {
    for t in run_targets() {
        round_trip::<RunRequest, v1::RunRequest>(run_request(t));
    }
    round_trip::<RunRequest, v1::RunRequest>(RunRequest {
        http_path: None,
        ..run_request(run_targets()[0].clone())
    });
    let progress = |update| RunProgress { run_id: "run-42".parse().unwrap(), update };
    for update in [
        RunUpdate::Step(run_step()),
        RunUpdate::Step(RunStep {
            result: None,
            evidence: vec![],
            status: StepStatus::Skipped,
            ..run_step()
        }),
        RunUpdate::Done(RunDone::Completed),
        RunUpdate::Done(RunDone::Cancelled),
        RunUpdate::Done(RunDone::Failed { error: text("source pod tidb/x is gone") }),
    ] {
        round_trip::<RunProgress, v1::RunProgress>(progress(update));
    }
    for t in run_targets() {
        let req = ProbeRunRequest {
            from: Source::Node("node-1".parse().unwrap()),
            to: t,
            http_path: Some("/".parse().unwrap()),
            timeout: Some(RunTimeout::from_millis(2000).unwrap()),
        };
        round_trip::<ProbeRunRequest, v1::ProbeRunRequest>(req);
    }
    for e in [
        ProbeRunEvent::Step(run_step()),
        ProbeRunEvent::Verdict(finding()),
        ProbeRunEvent::Done(RunDone::Completed),
    ] {
        round_trip::<ProbeRunEvent, v1::ProbeRunEvent>(e);
    }
}

fn plan_step(r: &mut v1::RunRequest, i: usize) -> &mut v1::planned_step::Action {
    r.plan.as_mut().unwrap().steps[i].action.as_mut().unwrap()
}

#[test]
fn hostile_run_plans() {
    use v1::planned_step::Action;
    let valid = v1::RunRequest::from(run_request(run_targets()[2].clone()));
    check_rejects::<RunRequest, _>(
        &valid,
        &[
            ("no plan", |r| r.plan = None, "plan", "is missing"),
            (
                "unset action",
                |r| r.plan.as_mut().unwrap().steps[1].action = None,
                "plan.steps[1].action",
                "is missing",
            ),
            (
                "bad step name",
                |r| r.plan.as_mut().unwrap().steps[0].name = "NAT rules".into(),
                "plan.steps[0].name",
                "step name",
            ),
            (
                "answers of a later step",
                |r| {
                    if let Action::ProbeAnswers(a) = plan_step(r, 1) {
                        a.resolve_step = 3
                    }
                },
                "plan.steps",
                "not an earlier DNS probe step",
            ),
            (
                "answers without port",
                |r| {
                    if let Action::ProbeAnswers(a) = plan_step(r, 1) {
                        a.port = 0
                    }
                },
                "plan.steps",
                "needs a port",
            ),
            (
                "bad expected endpoint",
                |r| {
                    if let Action::NatRules(n) = plan_step(r, 2) {
                        n.expected.push("10.244.1.2".into())
                    }
                },
                "plan.steps[2].nat_rules.expected[2]",
                "not an address with a port",
            ),
            (
                "bad protocol",
                |r| {
                    if let Action::NatRules(n) = plan_step(r, 2) {
                        n.protocol = "icmp".into()
                    }
                },
                "plan.steps[2].nat_rules.protocol",
                "use tcp, udp or sctp",
            ),
            (
                "bad route destination",
                |r| {
                    if let Action::Routes(x) = plan_step(r, 3) {
                        x.destinations[0] = "10.244.2".into()
                    }
                },
                "plan.steps[3].routes.destinations[0]",
                "not an IP address",
            ),
            (
                "bad allowed range",
                |r| r.plan.as_mut().unwrap().allowed.push("10.0.0.0/33".into()),
                "plan.allowed[2]",
                "CIDR",
            ),
            (
                "too many steps",
                |r| {
                    let p = r.plan.as_mut().unwrap();
                    let first = p.steps[3].clone();
                    p.steps.resize(513, first);
                },
                "plan.steps",
                "more than the 512",
            ),
        ],
    );
}

fn kind(r: &mut v1::RunRequest) -> &mut Kind {
    r.target.as_mut().and_then(|t| t.kind.as_mut()).unwrap()
}

#[test]
fn hostile_run_requests() {
    // run_targets()[2] is a service.
    let valid = v1::RunRequest::from(run_request(run_targets()[2].clone()));
    check_rejects::<RunRequest, _>(
        &valid,
        &[
            ("no run id", |r| r.run_id = String::new(), "run_id", "run id is empty"),
            ("no source", |r| r.source = None, "source", "is missing"),
            ("no target", |r| r.target = None, "target", "is missing"),
            ("unset target kind", |r| r.target.as_mut().unwrap().kind = None, "target.kind", "is missing"),
            (
                "outer port on a service",
                |r| r.target.as_mut().unwrap().port = 80,
                "target.port",
                "carries its own port",
            ),
            (
                "no service",
                |r| *kind(r) = Kind::Service(v1::ServicePortRef { service: None, port: 1 }),
                "target.service.service",
                "is missing",
            ),
            (
                "service port 0",
                |r| {
                    if let Kind::Service(s) = kind(r) {
                        s.port = 0
                    }
                },
                "target.service.port",
                "from 1 to 65535",
            ),
            (
                "bad dns name",
                |r| *kind(r) = Kind::DnsName("-".repeat(64)),
                "target.dns_name",
                "longer than 63",
            ),
            (
                "bad address",
                |r| *kind(r) = Kind::Address(v1::AddressTarget { ip: "localhost".into(), port: 0 }),
                "target.address.ip",
                "not an IP",
            ),
            ("bad node", |r| *kind(r) = Kind::Node(String::new()), "target.node", "node name is empty"),
            (
                "bad pod",
                |r| *kind(r) = Kind::Pod(v1::PodName::default()),
                "target.pod.namespace",
                "namespace is empty",
            ),
            ("bad path", |r| r.http_path = "/\u{0}".into(), "http_path", "contains"),
            ("no timeout", |r| r.timeout_ms = 0, "timeout_ms", "1 to 600000"),
            ("timeout too long", |r| r.timeout_ms = 600_001, "timeout_ms", "1 to 600000"),
        ],
    );
}

fn step(p: &mut v1::RunProgress) -> &mut v1::RunStep {
    match p.body.as_mut() {
        Some(v1::run_progress::Body::Step(s)) => s,
        _ => panic!("not a step"),
    }
}

#[test]
fn hostile_progress() {
    let valid = v1::RunProgress::from(RunProgress {
        run_id: "run-42".parse().unwrap(),
        update: RunUpdate::Step(run_step()),
    });
    check_rejects::<RunProgress, _>(
        &valid,
        &[
            ("bad run id", |p| p.run_id = "run 42".into(), "run_id", "contains ' '"),
            ("no body", |p| p.body = None, "body", "is missing"),
            ("step name", |p| step(p).name = "NAT rules".into(), "step.name", "contains 'N'"),
            ("step status", |p| step(p).status = 0, "step.status", "step status is unspecified"),
            ("step status unknown", |p| step(p).status = 5, "step.status", "5 is not a known step status"),
            ("step result", |p| step(p).result.as_mut().unwrap().kind = 0, "step.result.kind", "unspecified"),
            (
                "step description",
                |p| step(p).description = "d".repeat(1025),
                "step.description",
                "more than the 1024",
            ),
            (
                "step evidence",
                |p| step(p).evidence = vec![String::new(); 257],
                "step.evidence",
                "more than the 256",
            ),
            ("step elapsed", |p| step(p).elapsed_us = u64::MAX, "step.elapsed_us", "at most one hour"),
            (
                "cancelled with error",
                |p| {
                    p.body =
                        Some(v1::run_progress::Body::Done(v1::RunDone { cancelled: true, error: "x".into() }))
                },
                "done.error",
                "a cancelled run carries no error",
            ),
            (
                "huge error",
                |p| {
                    p.body = Some(v1::run_progress::Body::Done(v1::RunDone {
                        cancelled: false,
                        error: "x".repeat(5000),
                    }))
                },
                "done.error",
                "more than the 4096",
            ),
        ],
    );
}

#[test]
fn hostile_cli_runs() {
    let valid = v1::ProbeRunRequest {
        from: "tidb/demo-tikv-0".into(),
        to: "svc/tidb/demo-pd:2379".into(),
        http_path: String::new(),
        timeout_ms: 0,
    };
    let parsed = ProbeRunRequest::try_from(valid.clone()).unwrap();
    assert_eq!(parsed.timeout, None, "0 means the collector's default");
    check_rejects::<ProbeRunRequest, _>(
        &valid,
        &[
            ("no from", |r| r.from = String::new(), "from", "is missing"),
            (
                "unqualified from",
                |r| r.from = "demo-tikv-0".into(),
                "from",
                "must look like <namespace>/<name>",
            ),
            ("no to", |r| r.to = String::new(), "to", "is missing"),
            ("service without port", |r| r.to = "svc/tidb/demo-pd".into(), "to", "needs a port"),
            ("bad port", |r| r.to = "10.0.0.1:0".into(), "to", "from 1 to 65535"),
            ("bad dns", |r| r.to = "demo pd".into(), "to", "contains ' '"),
            ("timeout", |r| r.timeout_ms = 600_001, "timeout_ms", "1 to 600000"),
            ("path", |r| r.http_path = "x".into(), "http_path", "HTTP path"),
        ],
    );
    let event = v1::ProbeRunEvent::from(ProbeRunEvent::Verdict(finding()));
    check_rejects::<ProbeRunEvent, _>(
        &event,
        &[
            ("no body", |e| e.body = None, "body", "is missing"),
            (
                "bad verdict",
                |e| {
                    if let Some(v1::probe_run_event::Body::Verdict(f)) = e.body.as_mut() {
                        f.severity = 0
                    }
                },
                "verdict.severity",
                "severity is unspecified",
            ),
        ],
    );
}
