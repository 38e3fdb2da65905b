//! Verdict tables: a run planned on the lab-shaped inventory, its steps' results as each lab
//! fault would give them, and the finding it must name — alone, and refined by the continuous
//! diagnosis where one source cannot see the whole picture.

use std::time::Duration;

use netdiag_model::inventory::Inventory;
use netdiag_model::outcome::{DnsFailure, IcmpFailure, MtuFailure, Outcome, TcpFailure};
use netdiag_model::probe::ProbeKind;
use netdiag_model::result::{Burst, PathMtu, ProbeResult, Rtt};
use netdiag_model::run::{ProbeRunRequest, RunStep, StepStatus};
use netdiag_model::run_plan::StepAction;
use netdiag_model::text::Text;
use netdiag_model::{Culprit, CulpritKind, Finding, FindingId, Severity, UnixMillis};

use super::verdict;
use crate::run::expand::{ExpandedRun, Scope, StepRole, expand};
use crate::sim::INVENTORY;

fn run(from: &str, to: &str) -> ExpandedRun {
    run_on(&Inventory::from_yaml(INVENTORY).unwrap(), from, to)
}

fn run_on(inv: &Inventory, from: &str, to: &str) -> ExpandedRun {
    let req = ProbeRunRequest {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        http_path: None,
        timeout: None,
    };
    expand(inv, &Scope::new(inv, &[]), &req).unwrap()
}

/// What a fault does to one step: its status, outcome and evidence.
type StepFate = (StepStatus, Option<Outcome>, Vec<&'static str>);
/// A fault, as what it does to each step; None = healthy.
type Fault<'a> = &'a dyn Fn(&StepRole) -> Option<StepFate>;
/// A table row: name, source, target, fault, the verdict wanted.
type Row<'a> = (&'a str, &'a str, &'a str, Fault<'a>, Option<(String, CulpritKind, String)>);

fn steps(run: &ExpandedRun, fault: Fault<'_>) -> Vec<RunStep> {
    run.plan
        .steps
        .iter()
        .zip(&run.roles)
        .enumerate()
        .map(|(i, (step, role))| {
            let (status, outcome, evidence) =
                fault(role).unwrap_or((StepStatus::Ok, Some(Outcome::Ok), vec![]));
            let result = match &step.action {
                StepAction::Probe { probe } => outcome.map(|outcome| {
                    Box::new(ProbeResult {
                        source: probe.source.clone(),
                        target: probe.target.clone(),
                        kind: probe.kind,
                        outcome,
                        rtt: outcome.is_ok().then(|| Rtt::from_micros(300, false).unwrap()),
                        at: UnixMillis::new(1_700_000_000_000).unwrap(),
                        detail: Text::default(),
                        burst: None,
                        http_status: None,
                        path_mtu: matches!(outcome, Outcome::Mtu(_)).then(|| PathMtu::new(1200).unwrap()),
                        answers: vec![],
                        nameserver: None,
                    })
                }),
                _ => None,
            };
            RunStep {
                index: u32::try_from(i).unwrap(),
                name: step.name.clone(),
                description: step.description.clone(),
                status,
                result,
                evidence: evidence.into_iter().map(Text::lossy).collect(),
                elapsed: Duration::from_millis(1),
            }
        })
        .collect()
}

fn failed(o: Outcome) -> Option<StepFate> {
    Some((StepStatus::Failed, Some(o), vec![]))
}

fn is_pod(role: &StepRole, pod: &str) -> bool {
    matches!(role, StepRole::Backend { pod: Some(p), .. } if p.to_string() == pod)
}

fn summary(f: &Option<Finding>) -> Option<(String, CulpritKind, String)> {
    f.as_ref().map(|f| {
        let c = f.culprit.as_ref().unwrap();
        (f.id.to_string(), c.kind, c.name.to_string())
    })
}

fn want(id: &str, kind: CulpritKind, name: &str) -> Option<(String, CulpritKind, String)> {
    Some((id.to_owned(), kind, name.to_owned()))
}

fn continuous(id: &str, kind: CulpritKind, name: &str) -> Finding {
    Finding {
        id: FindingId::new(id).unwrap(),
        severity: Severity::Critical,
        verdict: Text::lossy("from the matrix"),
        culprit: Some(Culprit { kind, name: Text::lossy(name) }),
        affected: vec![],
        evidence: vec![Text::lossy("matrix cell")],
        runbook: Some(Text::lossy("1.6")),
        suggestion: Text::lossy("look"),
    }
}

#[test]
fn a_healthy_run_has_no_verdict() {
    let r = run("tidb/demo-tikv-0", "svc/tidb/demo-pd:2379");
    assert_eq!(verdict(&r, &steps(&r, &|_| None), &[]), None);
    // A continuous finding elsewhere does not concern it.
    let other = continuous("pod-down", CulpritKind::Pod, "tidb/demo-tidb-1");
    assert_eq!(verdict(&r, &steps(&r, &|_| None), &[other]), None);
}

#[test]
fn each_fault_gives_its_verdict_from_the_run_alone() {
    use CulpritKind::*;
    let pd = "svc/tidb/demo-pd:2379";
    let cases: Vec<Row<'_>> = vec![
        (
            "pod-down tidb/demo-pd-1",
            "tidb/demo-tikv-0",
            pd,
            &|r| match r {
                StepRole::Backend { kind: netdiag_model::ProbeKind::Icmp, .. }
                    if is_pod(r, "tidb/demo-pd-1") =>
                {
                    failed(Outcome::Icmp(IcmpFailure::Timeout))
                }
                StepRole::Backend { kind: netdiag_model::ProbeKind::Tcp, .. }
                    if is_pod(r, "tidb/demo-pd-1") =>
                {
                    failed(Outcome::Tcp(TcpFailure::Timeout))
                }
                _ => None,
            },
            want("pod-down", Pod, "tidb/demo-pd-1"),
        ),
        (
            "port-closed tidb/demo-pd-2 2379",
            "tidb/demo-tikv-0",
            pd,
            &|r| match r {
                StepRole::Backend { kind: netdiag_model::ProbeKind::Tcp, .. }
                    if is_pod(r, "tidb/demo-pd-2") =>
                {
                    failed(Outcome::Tcp(TcpFailure::Refused))
                }
                _ => None,
            },
            want("port-refused", Port, "tidb/demo-pd-2:2379"),
        ),
        (
            "port-closed tidb/demo-pd-2 2379, and the VIP picked demo-pd-2",
            "tidb/demo-tikv-0",
            pd,
            &|r| match r {
                StepRole::Vip { .. } => failed(Outcome::Tcp(TcpFailure::Refused)),
                StepRole::Backend { kind: netdiag_model::ProbeKind::Tcp, .. }
                    if is_pod(r, "tidb/demo-pd-2") =>
                {
                    failed(Outcome::Tcp(TcpFailure::Refused))
                }
                _ => None,
            },
            want("port-refused", Port, "tidb/demo-pd-2:2379"),
        ),
        (
            "port-drop tidb/demo-pd-2 2379",
            "tidb/demo-tikv-0",
            "tidb/demo-pd-2:2379",
            &|r| match r {
                StepRole::Backend { kind: netdiag_model::ProbeKind::Tcp, .. } => {
                    failed(Outcome::Tcp(TcpFailure::Timeout))
                }
                _ => None,
            },
            want("port-dropped", Port, "tidb/demo-pd-2:2379"),
        ),
        (
            "node-pair node-1 node-2",
            "tidb/demo-tikv-0",
            "tidb/demo-pd-1:2379",
            &|r| match r {
                StepRole::Backend { kind: netdiag_model::ProbeKind::Icmp, .. }
                | StepRole::NodeIcmp { .. } => failed(Outcome::Icmp(IcmpFailure::Timeout)),
                StepRole::Backend { .. } => failed(Outcome::Tcp(TcpFailure::Timeout)),
                _ => None,
            },
            want("node-pair-broken", NodePair, "node-1↔node-2"),
        ),
        (
            "route-missing node-1 node-3",
            "tidb/demo-tikv-0",
            "tidb/demo-pd-2:2379",
            &|r| match r {
                StepRole::Routes => Some((
                    StepStatus::Failed,
                    None,
                    vec![
                        "node-1: no route to 10.244.3.2",
                        "tidb/demo-tikv-0: 10.244.3.2 via 169.254.1.1 dev eth0 (default)",
                    ],
                )),
                StepRole::Backend { kind: netdiag_model::ProbeKind::Icmp, .. } => {
                    failed(Outcome::Icmp(IcmpFailure::Unreachable))
                }
                StepRole::Backend { .. } => failed(Outcome::Tcp(TcpFailure::Unreachable)),
                _ => None,
            },
            want("route-missing", NodePair, "node-1→node-3"),
        ),
        (
            "dnat-missing node-1 tidb/demo-pd:2379",
            "tidb/demo-tikv-0",
            pd,
            &|r| match r {
                StepRole::Vip { .. } => failed(Outcome::Tcp(TcpFailure::Refused)),
                StepRole::NatRules { .. } => Some((
                    StepStatus::Failed,
                    None,
                    vec!["no DNAT rule for 10.96.0.20:2379/tcp in node-1's nat table"],
                )),
                _ => None,
            },
            want("service-path-broken", Path, "svc/tidb/demo-pd:2379 on node-1"),
        ),
        (
            "dns-servfail",
            "tidb/demo-tikv-0",
            pd,
            &|r| match r {
                StepRole::Resolve { .. } | StepRole::Nameserver { .. } => {
                    failed(Outcome::Dns(DnsFailure::ServFail))
                }
                _ => None,
            },
            want("dns-servfail", Dns, "10.96.0.10 (kube-system/kube-dns)"),
        ),
        (
            "dns-block node-2",
            "tidb/demo-pd-1",
            "svc/tidb/demo-discovery:10261",
            &|r| match r {
                StepRole::Resolve { .. } | StepRole::Nameserver { .. } => {
                    failed(Outcome::Dns(DnsFailure::Timeout))
                }
                _ => None,
            },
            want("dns-unreachable-from-node", Dns, "10.96.0.10 from node-2"),
        ),
        (
            "a pod's own resolv.conf is wrong",
            "tidb/demo-pd-1",
            pd,
            &|r| match r {
                StepRole::Resolve { .. } => failed(Outcome::Dns(DnsFailure::Timeout)),
                _ => None,
            },
            want("dns-pod-resolver", Pod, "tidb/demo-pd-1"),
        ),
        (
            "mtu node-2 1200",
            "tidb/demo-tikv-0",
            "tidb/demo-pd-1:2379",
            &|r| match r {
                StepRole::Backend { kind: netdiag_model::ProbeKind::Mtu, .. } => {
                    failed(Outcome::Icmp(IcmpFailure::Timeout))
                }
                _ => None,
            },
            want("mtu-blackhole", NodePair, "node-1↔node-2"),
        ),
        (
            "mtu reduced",
            "tidb/demo-tikv-0",
            "tidb/demo-pd-1:2379",
            &|r| match r {
                StepRole::Backend { kind: netdiag_model::ProbeKind::Mtu, .. } => {
                    Some((StepStatus::Warning, Some(Outcome::Mtu(MtuFailure::Reduced)), vec![]))
                }
                _ => None,
            },
            want("mtu-reduced", NodePair, "node-1↔node-2"),
        ),
        (
            "nodeport broken on node-1",
            "tidb/demo-pd-0",
            "svc/tidb/demo-tidb:4000",
            &|r| match r {
                StepRole::NodePort { node, .. } if node.as_str() == "node-1" => {
                    failed(Outcome::Tcp(TcpFailure::Timeout))
                }
                _ => None,
            },
            want("nodeport-broken", Path, "nodeport/node-1:30400"),
        ),
    ];
    for (name, from, to, fault, expected) in cases {
        let r = run(from, to);
        let mut finished = steps(&r, fault);
        // Steps arrive as they finish, not in the plan's order.
        finished.reverse();
        let got = verdict(&r, &finished, &[]);
        assert_eq!(summary(&got), expected, "{name}: {got:#?}");
        let f = got.unwrap();
        assert!(!f.evidence.is_empty() && !f.suggestion.is_empty() && f.runbook.is_some(), "{name}: {f:?}");
        assert_eq!(f.affected.len(), 1, "{name}: the run's own path");
        assert!(
            f.evidence.iter().any(|e| e.as_str().contains("failed") || e.as_str().contains("warning")),
            "{name}: the failing step is named: {f:#?}"
        );
    }
}

#[test]
fn no_endpoints_is_the_service() {
    let mut inv = Inventory::from_yaml(INVENTORY).unwrap();
    inv.services.iter_mut().for_each(|s| s.endpoints.iter_mut().for_each(|e| e.ready = false));
    let req = ProbeRunRequest {
        from: "tidb/demo-tikv-0".parse().unwrap(),
        to: "svc/tidb/demo-pd:2379".parse().unwrap(),
        http_path: None,
        timeout: None,
    };
    let r = expand(&inv, &Scope::new(&inv, &[]), &req).unwrap();
    let fault: Fault<'_> = &|role| match role {
        StepRole::Vip { .. } => failed(Outcome::Tcp(TcpFailure::Refused)),
        _ => None,
    };
    assert_eq!(
        summary(&verdict(&r, &steps(&r, fault), &[])),
        want("service-no-endpoints", CulpritKind::Service, "tidb/demo-pd")
    );
}

#[test]
fn the_continuous_diagnosis_widens_what_one_source_sees() {
    use CulpritKind::*;
    // node-isolate node-3 from node-1: the run sees a cut pair, the matrix an isolated node.
    let r = run("tidb/demo-tikv-0", "tidb/demo-pd-2:2379");
    let cut: Fault<'_> = &|role| match role {
        StepRole::Backend { kind: netdiag_model::ProbeKind::Icmp, .. } | StepRole::NodeIcmp { .. } => {
            failed(Outcome::Icmp(IcmpFailure::Timeout))
        }
        StepRole::Backend { .. } => failed(Outcome::Tcp(TcpFailure::Timeout)),
        _ => None,
    };
    let isolated = continuous("node-isolated", Node, "node-3");
    let got = verdict(&r, &steps(&r, cut), std::slice::from_ref(&isolated));
    assert_eq!(summary(&got), want("node-isolated", Node, "node-3"));
    let got = got.unwrap();
    assert!(got.evidence[0].as_str().contains("this run's failing steps agree"), "{got:#?}");
    assert!(got.evidence.iter().any(|e| e.as_str() == "matrix cell"), "the matrix's evidence is kept");
    // A loss finding on a node of the path, listed beside it (a healed fault's remains, or
    // wrong), does not take a hard failure both the run and the matrix see.
    for loss_on in ["node-1", "node-3"] {
        let loss = continuous("node-packet-loss", Node, loss_on);
        let got = verdict(&r, &steps(&r, cut), &[loss, isolated.clone()]);
        assert_eq!(summary(&got), want("node-isolated", Node, "node-3"), "loss on {loss_on}");
    }
    // dns-down everywhere: the run sees its nameserver time out.
    let r = run("tidb/demo-pd-1", "svc/tidb/demo-pd:2379");
    let dns: Fault<'_> = &|role| match role {
        StepRole::Resolve { .. } | StepRole::Nameserver { .. } => failed(Outcome::Dns(DnsFailure::Timeout)),
        _ => None,
    };
    let down = continuous("dns-down", Dns, "10.96.0.10 (kube-system/kube-dns)");
    assert_eq!(
        summary(&verdict(&r, &steps(&r, dns), &[down])),
        want("dns-down", Dns, "10.96.0.10 (kube-system/kube-dns)")
    );
    // A DNS finding from another node does not concern this run.
    let other = continuous("dns-unreachable-from-node", Dns, "10.96.0.10 from node-3");
    assert_eq!(
        summary(&verdict(&r, &steps(&r, dns), &[other])),
        want("dns-unreachable-from-node", Dns, "10.96.0.10 from node-2")
    );
    // node-2's firewall drops TCP to 2379 forwarded to its pods: the run sees a port dropped,
    // the matrix the rule on record.
    let r = run("tidb/demo-pd-0", "tidb/demo-pd-1:2379");
    let dropped: Fault<'_> = &|role| match role {
        StepRole::Backend { kind: netdiag_model::ProbeKind::Tcp, .. } => {
            failed(Outcome::Tcp(TcpFailure::Timeout))
        }
        _ => None,
    };
    let alone = verdict(&r, &steps(&r, dropped), &[]);
    assert_eq!(summary(&alone).map(|s| s.0), Some("port-dropped".to_owned()));
    let rule = continuous("firewall-drop", Node, "node-2");
    assert_eq!(summary(&verdict(&r, &steps(&r, dropped), &[rule])), want("firewall-drop", Node, "node-2"));
    let r = run("tidb/demo-pd-1", "svc/tidb/demo-pd:2379");
    // A different family does not override the run's own verdict.
    let unrelated = continuous("pod-down", Pod, "tidb/demo-pd-1");
    let got = verdict(&r, &steps(&r, dns), &[unrelated]);
    assert_eq!(summary(&got).map(|s| s.0), Some("dns-unreachable-from-node".to_owned()));
}

#[test]
fn a_passing_run_still_reports_a_finding_on_its_path() {
    // idle-cut: no quick probe shows it; the matrix's keepalive finding names the source pod.
    let r = run("tidb/demo-pd-1", "svc/tidb/demo-pd:2379");
    let keepalive = continuous("keepalive-exceeds-idle-cut", CulpritKind::Pod, "tidb/demo-pd-1");
    let got = verdict(&r, &steps(&r, &|_| None), &[keepalive]).unwrap();
    assert_eq!(got.id.as_str(), "keepalive-exceeds-idle-cut");
    assert!(got.evidence[0].as_str().contains("every step of this run passed"), "{got:#?}");
    // Loss on a node the run crosses.
    let loss = continuous("node-packet-loss", CulpritKind::Node, "node-3");
    assert!(verdict(&r, &steps(&r, &|_| None), &[loss]).is_some(), "demo-pd-2 lives on node-3");
}

#[test]
fn partial_icmp_loss_is_packet_loss_on_the_destination_node() {
    let r = run("tidb/demo-tikv-0", "tidb/demo-pd-2:2379");
    let mut s = steps(&r, &|_| None);
    let icmp = r
        .roles
        .iter()
        .position(|role| matches!(role, StepRole::Backend { kind: netdiag_model::ProbeKind::Icmp, .. }))
        .unwrap();
    s[icmp].status = StepStatus::Warning;
    if let Some(res) = s[icmp].result.as_mut() {
        res.burst = Some(Burst::new(10, 7).unwrap());
    }
    let got = verdict(&r, &s, &[]);
    assert_eq!(summary(&got), want("node-packet-loss", CulpritKind::Node, "node-3"));
    assert!(got.unwrap().verdict.as_str().contains("30%"));
}

#[test]
fn timeouts_on_a_path_known_to_be_lossy_are_the_loss() {
    // loss node-3 30: this run lost a whole ping burst to demo-pd-2 (looks like pod-down alone).
    let r = run("tidb/demo-tikv-0", "tidb/demo-pd-2:2379");
    let unlucky: Fault<'_> = &|role| match role {
        StepRole::Backend { kind: netdiag_model::ProbeKind::Icmp, .. } => {
            failed(Outcome::Icmp(IcmpFailure::Timeout))
        }
        _ => None,
    };
    assert_eq!(summary(&verdict(&r, &steps(&r, unlucky), &[])).map(|s| s.0), Some("pod-down".to_owned()));
    let loss = continuous("node-packet-loss", CulpritKind::Node, "node-3");
    let got = verdict(&r, &steps(&r, unlucky), std::slice::from_ref(&loss));
    assert_eq!(summary(&got), want("node-packet-loss", CulpritKind::Node, "node-3"));
    // A refusal is not loss: the run's own verdict stands.
    let refused: Fault<'_> = &|role| match role {
        StepRole::Backend { kind: netdiag_model::ProbeKind::Tcp, .. } => {
            failed(Outcome::Tcp(TcpFailure::Refused))
        }
        _ => None,
    };
    assert_eq!(
        summary(&verdict(&r, &steps(&r, refused), &[loss])),
        want("port-refused", CulpritKind::Port, "tidb/demo-pd-2:2379")
    );
}

/// A run planned on the lab-shaped inventory with one NetworkPolicy: ingress to every pod of
/// `tidb` only from pods of `tidb`.
fn run_under_policy(from: &str, to: &str) -> ExpandedRun {
    let inv = crate::sim::World::tidb_isolated().inventory();
    run_on(&inv, from, to)
}

#[test]
fn a_denied_path_that_fails_is_denied_as_intended_and_says_so_up_front() {
    let r = run_under_policy("kube-system/coredns-0", "svc/tidb/demo-pd:2379");
    let p = r.policy.as_ref().expect("the run knows what policy says before it probes");
    assert!(p.denied && p.summary.starts_with("NetworkPolicy denies this path"), "{p:?}");
    assert_eq!(p.policies, ["tidb/only-tidb"]);
    let dropped: Fault<'_> = &|role| match role {
        StepRole::Backend { .. } | StepRole::Vip { .. } => failed(Outcome::Tcp(TcpFailure::Timeout)),
        _ => None,
    };
    let f = verdict(&r, &steps(&r, dropped), &[]).unwrap();
    assert_eq!(f.id.as_str(), "denied-by-policy");
    assert_eq!(f.severity, Severity::Info);
    assert_eq!(
        f.culprit.as_ref().map(|c| (c.kind, c.name.as_str())),
        Some((CulpritKind::NetworkPolicy, "tidb/only-tidb"))
    );
    assert!(f.verdict.as_str().contains("the dataplane agrees"), "{}", f.verdict);
}

#[test]
fn a_denied_path_that_connects_is_policy_not_enforced() {
    let r = run_under_policy("kube-system/coredns-0", "tidb/demo-pd-1:2379");
    let f = verdict(&r, &steps(&r, &|_| None), &[]).unwrap();
    assert_eq!(f.id.as_str(), "policy-not-enforced");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.verdict.as_str().contains("1 of 1 backends answered"), "{}", f.verdict);
}

#[test]
fn an_allowed_path_under_policy_is_diagnosed_as_any_other() {
    let r = run_under_policy("tidb/demo-pd-0", "tidb/demo-pd-1:2379");
    let p = r.policy.as_ref().expect("the destination is isolated");
    assert!(!p.denied && p.summary.contains("allowed by policy tidb/only-tidb"), "{p:?}");
    assert_eq!(verdict(&r, &steps(&r, &|_| None), &[]), None, "every step passed");
    let refused: Fault<'_> = &|role| match role {
        StepRole::Backend { kind: ProbeKind::Tcp, .. } => failed(Outcome::Tcp(TcpFailure::Refused)),
        _ => None,
    };
    let f = verdict(&r, &steps(&r, refused), &[]).unwrap();
    assert_eq!(f.id.as_str(), "port-refused", "{}", f.verdict);
}
