//! On-demand probe runs end to end in the lab: `POST /api/v1/probe` on the collector, the run
//! sent to the source's agent over its session, every step run inside the source's namespace,
//! and a verdict. For each lab fault, a run between the affected pair must name the culprit
//! the continuous diagnosis names, with the failing step marked; on a healthy lab every step
//! is ok and there is no verdict. A pod whose app never listens (as a crash-looping one) works
//! as a source: only its namespace is needed.
//!
//! Needs root (the lab). One cluster per test; faults run one after another on it.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use netdiag_tests::cluster::{LabCluster, describe_findings};
use netdiag_tests::http::post_json;
use netdiag_tests::lab::TestLab;
use serde_json::{Value, json};

const INTERVAL: Duration = Duration::from_secs(2);

/// One run through the HTTP API (loopback: no token needed when none is configured).
fn probe(c: &LabCluster, from: &str, to: &str, http_path: Option<&str>) -> Value {
    let mut body = json!({"from": from, "to": to, "timeout_ms": 1500});
    if let Some(p) = http_path {
        body["http_path"] = json!(p);
    }
    let (status, answer) = post_json(c.http, "/api/v1/probe", &body, None, Duration::from_secs(60)).unwrap();
    assert_eq!(status, 200, "{from} -> {to}: {answer:#}");
    answer
}

fn steps_line(run: &Value) -> String {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {} [{}] {} {}",
                s["index"],
                s["name"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or(""),
                s["description"].as_str().unwrap_or(""),
                s["evidence"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

fn assert_all_ok(run: &Value, what: &str) {
    assert_eq!(run["done"]["end"], "completed", "{what}: {run:#}");
    let steps = run["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{what}: no steps");
    assert!(
        steps.iter().all(|s| s["status"] == "ok"),
        "{what}: every step must be ok on a healthy lab:\n  {}",
        steps_line(run)
    );
    assert!(run["verdict"].is_null(), "{what}: a verdict on a healthy lab: {:#}", run["verdict"]);
}

struct Case {
    fault: &'static str,
    from: &'static str,
    to: &'static str,
    /// The continuous finding the run must agree with.
    id: &'static str,
    /// Whether a step must fail (an idle cut or a lossy path may pass a quick run).
    step_fails: bool,
}

fn run_cases(cases: &[Case]) {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    let healthy = c.diagnosis();
    assert!(
        healthy.findings.is_empty(),
        "findings on a healthy lab: {}",
        describe_findings(&healthy.findings)
    );
    let mut report = Vec::new();
    for case in cases {
        c.lab.fault(case.fault);
        let found = c.wait_for(INTERVAL * 6, |c| {
            let d = c.diagnosis();
            d.findings.iter().any(|f| f.id.as_str() == case.id).then_some(d.findings)
        });
        let Some((continuous, _)) = found else {
            panic!(
                "fault `{}`: the continuous diagnosis never found {}: {}",
                case.fault,
                case.id,
                describe_findings(&c.diagnosis().findings)
            );
        };
        let started = Instant::now();
        let run = probe(&c, case.from, case.to, None);
        let took = started.elapsed();
        assert_eq!(run["done"]["end"], "completed", "{}: {run:#}", case.fault);
        let verdict = &run["verdict"];
        assert!(!verdict.is_null(), "fault `{}`: no verdict; steps:\n  {}", case.fault, steps_line(&run));
        let culprit =
            (verdict["culprit"]["type"].as_str().unwrap(), verdict["culprit"]["name"].as_str().unwrap());
        let same = continuous.iter().any(|f| {
            f.id.as_str() == verdict["id"]
                && f.culprit
                    .as_ref()
                    .is_some_and(|cu| cu.kind.as_str() == culprit.0 && cu.name.as_str() == culprit.1)
        });
        assert!(
            same,
            "fault `{}`: the run names {} [{} {}], the continuous diagnosis {}; steps:\n  {}",
            case.fault,
            verdict["id"],
            culprit.0,
            culprit.1,
            describe_findings(&continuous),
            steps_line(&run)
        );
        if case.step_fails {
            assert!(
                run["steps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["status"] == "failed" || s["status"] == "warning"),
                "fault `{}`: no step marked failed:\n  {}",
                case.fault,
                steps_line(&run)
            );
        }
        report.push(format!("{}: {} [{} {}] in {took:?}", case.fault, verdict["id"], culprit.0, culprit.1));
        c.lab.heal();
        let cleared = c.wait_for(INTERVAL * 8, |c| c.diagnosis().findings.is_empty().then_some(()));
        assert!(
            cleared.is_some(),
            "fault `{}` healed but findings remain: {}",
            case.fault,
            describe_findings(&c.diagnosis().findings)
        );
    }
    eprintln!("runs:\n  {}", report.join("\n  "));
}

#[test]
fn a_healthy_lab_passes_every_step() {
    let c = LabCluster::up(INTERVAL);
    c.warm_up();
    for (from, to, http) in [
        ("tidb/demo-tikv-0", "svc/tidb/demo-pd:2379", Some("/pd/api/v1/members")),
        ("tidb/demo-pd-1", "demo-discovery.tidb:10261", None),
        ("tidb/demo-pd-0", "tidb/demo-pd-2:2379", None),
        ("node/node-2", "svc/tidb/demo-tidb:4000", None),
        ("tidb/demo-pd-0", "10.96.0.20:2379", None),
    ] {
        let run = probe(&c, from, to, http);
        assert_all_ok(&run, &format!("{from} -> {to}"));
        let names: Vec<&str> =
            run["steps"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
        if to.starts_with("svc/tidb/demo-pd") {
            for want in ["resolve", "nameserver", "tcp", "http", "icmp", "nat-rules", "routes"] {
                assert!(names.contains(&want), "{from} -> {to}: no {want} step in {names:?}");
            }
        }
        if to.starts_with("svc/tidb/demo-tidb") {
            assert_eq!(
                names.iter().filter(|n| **n == "nodeport").count(),
                3,
                "the NodePort on every node: {names:?}"
            );
        }
    }
}

#[test]
fn pod_and_port_faults_name_the_same_culprit() {
    run_cases(&[
        Case {
            fault: "pod-down tidb/demo-pd-1",
            from: "tidb/demo-tikv-0",
            to: "tidb/demo-pd-1:2379",
            id: "pod-down",
            step_fails: true,
        },
        Case {
            fault: "port-closed tidb/demo-pd-2 2379",
            from: "tidb/demo-tikv-0",
            to: "svc/tidb/demo-pd:2379",
            id: "port-refused",
            step_fails: true,
        },
        Case {
            fault: "port-drop tidb/demo-tikv-0 20160",
            from: "tidb/demo-pd-1",
            to: "tidb/demo-tikv-0:20160",
            // A rule in the pod's own table, on record: the continuous finding names it.
            id: "firewall-drop",
            step_fails: true,
        },
        Case {
            fault: "dnat-missing node-1 tidb/demo-pd:2379",
            from: "tidb/demo-pd-0",
            to: "svc/tidb/demo-pd:2379",
            id: "service-path-broken",
            step_fails: true,
        },
    ]);
}

#[test]
fn node_faults_name_the_same_culprit() {
    run_cases(&[
        Case {
            fault: "node-pair node-1 node-2",
            from: "tidb/demo-pd-0",
            to: "tidb/demo-pd-1:2379",
            id: "node-pair-broken",
            step_fails: true,
        },
        Case {
            fault: "node-isolate node-3",
            from: "tidb/demo-pd-0",
            to: "tidb/demo-pd-2:2379",
            id: "node-isolated",
            step_fails: true,
        },
        Case {
            fault: "route-missing node-1 node-3",
            from: "tidb/demo-pd-0",
            to: "tidb/demo-pd-2:2379",
            id: "route-missing",
            step_fails: true,
        },
        Case {
            fault: "mtu node-2 1200",
            from: "tidb/demo-pd-0",
            to: "tidb/demo-pd-1:2379",
            id: "mtu-blackhole",
            step_fails: true,
        },
        Case {
            fault: "loss node-3 30",
            from: "tidb/demo-pd-0",
            to: "tidb/demo-pd-2:2379",
            id: "node-packet-loss",
            step_fails: false,
        },
        Case {
            fault: "idle-cut node-2 30",
            from: "tidb/demo-pd-1",
            to: "svc/tidb/demo-pd:2379",
            id: "keepalive-exceeds-idle-cut",
            step_fails: false,
        },
    ]);
}

#[test]
fn dns_faults_name_the_same_culprit() {
    run_cases(&[
        Case {
            fault: "dns-block node-2",
            from: "tidb/demo-pd-1",
            to: "svc/tidb/demo-discovery:10261",
            id: "dns-unreachable-from-node",
            step_fails: true,
        },
        Case {
            fault: "dns-down",
            from: "tidb/demo-pd-1",
            to: "svc/tidb/demo-pd:2379",
            id: "dns-down",
            step_fails: true,
        },
        Case {
            fault: "dns-servfail",
            from: "tidb/demo-pd-1",
            to: "svc/tidb/demo-pd:2379",
            id: "dns-servfail",
            step_fails: true,
        },
    ]);
}

/// A pod whose app never listens — as a crash-looping one, with no process to exec into — is
/// a source like any other: only its namespace is needed.
#[test]
fn a_pod_whose_app_never_runs_is_a_source() {
    let lab = TestLab::with(|t| {
        t.replace(
            "  - { namespace: tidb, name: demo-discovery-7c9f8d6b5-x2k8p,",
            "  - { namespace: tidb, name: demo-backup-0, node: node-2, app: pd, listen: false }\n  - { namespace: tidb, name: demo-discovery-7c9f8d6b5-x2k8p,",
        )
    });
    assert!(!lab.pod("tidb/demo-backup-0").listen, "the topology edit took");
    let c = LabCluster::start(lab, INTERVAL);
    c.warm_up();
    let run = probe(&c, "tidb/demo-backup-0", "svc/tidb/demo-discovery:10261", None);
    assert_all_ok(&run, "from the crash-looping pod");
    let run = probe(&c, "tidb/demo-backup-0", "svc/tidb/demo-pd:2379", Some("/pd/api/v1/members"));
    assert_all_ok(&run, "from the crash-looping pod, with HTTP");
}
