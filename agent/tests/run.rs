//! On-demand runs in the lab: the executor carries out hand-built run plans (the collector's plan
//! builder is tested on its own) from a pod's or the node's namespace, reports each step as it
//! finishes with the status the lab's faults call for, and is cancelled and capped as promised.
//!
//! Each test builds its own lab and runs the executor on a thread inside node-1's namespace (as
//! the agent runs there), with the sources built from the lab's inventory. Needs root, like
//! `tests/tests/lab.rs`.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netdiag_agent::run::{Runs, execute};
use netdiag_agent::sources::{Discovery, Sources};
use netdiag_lab::plan::LabPlan;
use netdiag_model::dns::{DnsName, DnsTransport, RecordType};
use netdiag_model::inspect::NatProtocol;
use netdiag_model::inventory::Inventory;
use netdiag_model::outcome::{Outcome, TcpFailure};
use netdiag_model::plan::PlannedProbe;
use netdiag_model::probe::{ProbeKind, ServiceVia, Source, Target};
use netdiag_model::run::{
    RunDone, RunId, RunProgress, RunRequest, RunStep, RunTarget, RunTimeout, RunUpdate, StepName, StepStatus,
};
use netdiag_model::run_plan::{PlannedStep, RunPlan, StepAction};
use netdiag_model::text::Text;
use netdiag_model::{HttpPath, NodeName, Port};
use netdiag_tests::lab::TestLab;
use tokio::sync::mpsc;

type Shared = Arc<RwLock<Sources>>;

/// Runs `body` on a runtime whose every thread lives in `node`'s namespace, with that agent's
/// sources (the node and its pods, from the lab's inventory).
fn on_node<T, F, Fut>(lab: &TestLab, node: &str, body: F) -> T
where
    T: Send,
    F: FnOnce(Shared, NodeName) -> Fut + Send,
    Fut: Future<Output = T>,
{
    let path = LabPlan::netns_path(&lab.node(node).netns);
    let inv = Inventory::from_yaml(&std::fs::read_to_string(lab.state.inventory_path()).unwrap()).unwrap();
    let node: NodeName = node.parse().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            netdiag_netns::enter_current_thread(&path).unwrap();
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let mut sources = Sources::default();
            let discovery =
                Discovery { netns_dir: "/nonexistent".into(), proc_dir: None, ..Discovery::default() };
            let report = sources.refresh(&inv, &node, &discovery);
            assert!(report.unreachable.is_empty(), "{report:?}");
            rt.block_on(body(Arc::new(RwLock::new(sources)), node))
        })
        .join()
        .unwrap()
    })
}

fn port(n: u32) -> Port {
    Port::new(n).unwrap()
}

fn step(name: &str, action: StepAction) -> PlannedStep {
    PlannedStep {
        name: StepName::new(name).unwrap(),
        description: Text::lossy(&format!("{action:?}")),
        action,
    }
}

fn probe(source: &Source, kind: ProbeKind, target: Target) -> StepAction {
    StepAction::Probe {
        probe: PlannedProbe {
            source: source.clone(),
            target,
            kind,
            http_path: None,
            every: netdiag_model::EveryRounds::ONE,
        },
    }
}

fn resolve(source: &Source, name: &str, nameserver: Option<IpAddr>) -> StepAction {
    let target = Target::Dns {
        name: DnsName::new(name).unwrap(),
        record: RecordType::A,
        nameserver,
        transport: DnsTransport::Udp,
    };
    probe(source, ProbeKind::Dns, target)
}

fn pod_target(lab: &TestLab, pod: &str, p: Option<u32>) -> Target {
    let plan = lab.pod(pod);
    Target::Pod { pod: plan.pod.clone(), ip: plan.ip.into(), port: p.map(port) }
}

fn allowed(lab: &TestLab) -> Vec<IpNet> {
    vec![lab.plan.pod_cidr.into(), lab.plan.service_cidr.into(), lab.plan.node_cidr.into()]
}

const PDS: [&str; 3] = ["tidb/demo-pd-0", "tidb/demo-pd-1", "tidb/demo-pd-2"];

fn pd_ips(lab: &TestLab) -> Vec<IpAddr> {
    PDS.iter().map(|p| lab.pod(p).ip.into()).collect()
}

fn pd_vip(lab: &TestLab) -> IpAddr {
    lab.service("tidb/demo-pd").cluster_ip.unwrap().into()
}

fn nat_rules(lab: &TestLab) -> StepAction {
    StepAction::NatRules {
        service: Some("tidb/demo-pd".parse().unwrap()),
        vip: pd_vip(lab),
        port: port(2379),
        protocol: NatProtocol::Tcp,
        expected: pd_ips(lab).into_iter().map(|ip| SocketAddr::new(ip, 2379)).collect(),
        node_port: false,
    }
}

/// The plan the collector would build for "from tidb/demo-pd-0 to svc/tidb/demo-pd:2379".
fn pd_plan(lab: &TestLab, source: &Source) -> RunPlan {
    let vip = Target::Service {
        service: "tidb/demo-pd".parse().unwrap(),
        ip: pd_vip(lab),
        port: port(2379),
        via: ServiceVia::ClusterIp,
    };
    let mut steps = vec![
        step("resolve", resolve(source, "demo-pd.tidb", None)),
        step(
            "tcp-answers",
            StepAction::ProbeAnswers {
                resolve_step: 0,
                kind: ProbeKind::Tcp,
                port: Some(port(2379)),
                http_path: None,
            },
        ),
        step("tcp-vip", probe(source, ProbeKind::Tcp, vip.clone())),
    ];
    for pd in PDS {
        steps.push(step("tcp", probe(source, ProbeKind::Tcp, pod_target(lab, pd, Some(2379)))));
        steps.push(step("icmp", probe(source, ProbeKind::Icmp, pod_target(lab, pd, None))));
    }
    steps.push(step(
        "http",
        StepAction::Probe {
            probe: PlannedProbe {
                source: source.clone(),
                target: vip,
                kind: ProbeKind::Http,
                http_path: Some(HttpPath::new("/pd/api/v1/members").unwrap()),
                every: netdiag_model::EveryRounds::ONE,
            },
        },
    ));
    steps.push(step("nat-rules", nat_rules(lab)));
    steps.push(step("routes", StepAction::Routes { destinations: pd_ips(lab) }));
    RunPlan { steps, allowed: allowed(lab) }
}

fn request(id: &str, source: &Source, timeout_ms: u32, plan: RunPlan) -> RunRequest {
    plan.check().unwrap();
    RunRequest {
        run_id: RunId::new(id).unwrap(),
        source: source.clone(),
        target: "svc/tidb/demo-pd:2379".parse::<RunTarget>().unwrap(),
        http_path: None,
        timeout: RunTimeout::from_millis(timeout_ms).unwrap(),
        plan,
    }
}

/// Every step as it arrived (with when), and the run's end.
#[derive(Debug)]
struct Outcomes {
    steps: Vec<(Duration, RunStep)>,
    done: RunDone,
    took: Duration,
}

impl Outcomes {
    fn step(&self, index: usize) -> &RunStep {
        let found = self.steps.iter().find(|(_, s)| s.index as usize == index);
        &found.unwrap_or_else(|| panic!("no step {index}: {self:#?}")).1
    }

    fn show(&self) -> String {
        let lines: Vec<String> = self
            .steps
            .iter()
            .map(|(at, s)| {
                let evidence: Vec<&str> = s.evidence.iter().map(|e| e.as_str()).collect();
                format!("[{at:?}] #{} {} {}: {}", s.index, s.name, s.status, evidence.join(" | "))
            })
            .collect();
        format!("{}\nend: {:?}", lines.join("\n"), self.done)
    }
}

async fn collect(mut rx: mpsc::Receiver<RunProgress>, started: Instant) -> Outcomes {
    let mut steps = Vec::new();
    loop {
        let p = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.unwrap().unwrap();
        match p.update {
            RunUpdate::Step(s) => steps.push((started.elapsed(), s)),
            RunUpdate::Done(done) => {
                let out = Outcomes { steps, done, took: started.elapsed() };
                eprintln!("{}", out.show());
                return out;
            }
        }
    }
}

async fn run(req: RunRequest, sources: Shared, node: NodeName) -> Outcomes {
    let (tx, rx) = mpsc::channel(64);
    let started = Instant::now();
    tokio::spawn(execute(req, sources, node, tx));
    collect(rx, started).await
}

fn pd0() -> Source {
    Source::Pod("tidb/demo-pd-0".parse().unwrap())
}

#[test]
fn a_healthy_run_reports_every_step_ok_as_it_finishes() {
    let lab = TestLab::up();
    let plan = pd_plan(&lab, &pd0());
    let n = plan.steps.len();
    let out =
        on_node(&lab, "node-1", |sources, node| run(request("healthy", &pd0(), 2000, plan), sources, node));
    assert_eq!(out.done, RunDone::Completed, "{}", out.show());
    let mut indices: Vec<u32> = out.steps.iter().map(|(_, s)| s.index).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..n as u32).collect::<Vec<_>>(), "every step once");
    for (_, s) in &out.steps {
        assert_eq!(s.status, StepStatus::Ok, "{}", out.show());
        assert!(!s.evidence.is_empty(), "step {} has no evidence", s.index);
        assert!(s.elapsed <= out.took, "a step's own time is within the run's");
        if let Some(r) = &s.result {
            r.check().unwrap();
            assert_eq!(r.source, pd0(), "results name the run's source");
        }
    }
    // The DNS answer is the VIP, probed by the answers step, which waited for the DNS step.
    let dns = out.step(0).result.as_deref().unwrap();
    assert_eq!(dns.answers, [pd_vip(&lab)]);
    let pos = |i: u32| out.steps.iter().position(|(_, s)| s.index == i).unwrap();
    assert!(pos(0) < pos(1), "the answers step comes after its DNS step");
    let answer = out.step(1).evidence[0].as_str();
    assert!(answer.starts_with(&format!("{}: ok in ", pd_vip(&lab))), "{answer}");
    assert!(out.step(9).evidence[0].as_str().contains("HTTP 200"), "{:?}", out.step(9).evidence);
    let nat = &out.step(10).evidence;
    assert!(
        nat[0].as_str().starts_with("node-1 (iptables): tidb/demo-pd:client 10.96.0.20:2379/tcp → 3 targets")
    );
    let routes: Vec<&str> = out.step(11).evidence.iter().map(|e| e.as_str()).collect();
    let pd1 = lab.pod("tidb/demo-pd-1").ip;
    assert!(routes.contains(
        &format!("tidb/demo-pd-0: {pd1} via 169.254.1.1 dev eth0 (default route 0.0.0.0/0)").as_str()
    ));
    assert!(
        routes.contains(
            &format!("node-1: {pd1} via {} dev eth0 (route 10.244.2.0/24)", lab.node("node-2").ip).as_str()
        ),
        "{routes:?}"
    );
}

#[test]
fn a_missing_dnat_rule_fails_nat_rules_and_the_vip_while_backends_answer() {
    let lab = TestLab::up();
    lab.fault("dnat-missing node-1 tidb/demo-pd");
    let plan = pd_plan(&lab, &pd0());
    let out =
        on_node(&lab, "node-1", |sources, node| run(request("dnat", &pd0(), 1000, plan), sources, node));
    assert_eq!(out.done, RunDone::Completed);
    let nat = out.step(10);
    assert_eq!(nat.status, StepStatus::Failed, "{}", out.show());
    assert_eq!(
        nat.evidence[0].as_str(),
        "no DNAT rule for 10.96.0.20:2379/tcp in node-1's nat table (iptables)"
    );
    assert_eq!(out.step(2).status, StepStatus::Failed, "the VIP does not answer");
    assert!(!out.step(2).result.as_ref().unwrap().outcome.is_ok());
    assert_eq!(out.step(1).status, StepStatus::Failed, "nor does the VIP the DNS answered");
    for backend in [3, 5, 7] {
        assert_eq!(out.step(backend).status, StepStatus::Ok, "backend tcp #{backend}: {}", out.show());
    }
}

#[test]
fn a_closed_port_fails_that_backends_tcp_with_refused() {
    let lab = TestLab::up();
    lab.fault("port-closed tidb/demo-pd-1 2379");
    let plan = pd_plan(&lab, &pd0());
    let out =
        on_node(&lab, "node-1", |sources, node| run(request("closed", &pd0(), 1000, plan), sources, node));
    assert_eq!(out.done, RunDone::Completed);
    let pd1 = out.step(5);
    assert_eq!(pd1.status, StepStatus::Failed, "{}", out.show());
    assert_eq!(pd1.result.as_ref().unwrap().outcome, Outcome::Tcp(TcpFailure::Refused));
    assert_eq!(pd1.evidence[0].as_str(), "TCP connection refused (RST)");
    for ok in [3, 4, 6, 7, 8, 10, 11] {
        assert_eq!(out.step(ok).status, StepStatus::Ok, "step {ok}: {}", out.show());
    }
}

#[test]
fn a_missing_route_fails_the_routes_step_on_the_node() {
    let lab = TestLab::up();
    lab.fault("route-missing node-1 node-3");
    let source = pd0();
    let plan = RunPlan {
        steps: vec![step("routes", StepAction::Routes { destinations: pd_ips(&lab) })],
        allowed: allowed(&lab),
    };
    let out =
        on_node(&lab, "node-1", |sources, node| run(request("route", &source, 1000, plan), sources, node));
    let routes = out.step(0);
    assert_eq!(routes.status, StepStatus::Failed, "{}", out.show());
    let lines: Vec<&str> = routes.evidence.iter().map(|e| e.as_str()).collect();
    let pd2 = lab.pod("tidb/demo-pd-2").ip;
    assert!(lines.contains(&format!("node-1: no route to {pd2}").as_str()), "{lines:?}");
    assert!(lines.contains(
        &format!("tidb/demo-pd-0: {pd2} via 169.254.1.1 dev eth0 (default route 0.0.0.0/0)").as_str()
    ));
    assert_eq!(
        lines.iter().filter(|l| l.contains("no route")).count(),
        1,
        "only pd-2 from the node: {lines:?}"
    );
}

#[test]
fn dns_answers_outside_the_allowed_ranges_are_not_probed() {
    let lab = TestLab::up();
    let source = pd0();
    let pd0_ip: IpAddr = lab.pod("tidb/demo-pd-0").ip.into();
    let answers = |kind, port: Option<u32>| StepAction::ProbeAnswers {
        resolve_step: 0,
        kind,
        port: port.map(self::port),
        http_path: None,
    };
    // The headless service answers with every PD pod; only demo-pd-0's address is allowed.
    let plan = RunPlan {
        steps: vec![
            step("resolve", resolve(&source, "demo-pd-peer.tidb", None)),
            step("tcp-answers", answers(ProbeKind::Tcp, Some(2379))),
            step("icmp-answers", answers(ProbeKind::Icmp, None)),
            step("resolve-missing", resolve(&source, "no-such-service.tidb", None)),
            step(
                "tcp-nothing",
                StepAction::ProbeAnswers {
                    resolve_step: 3,
                    kind: ProbeKind::Tcp,
                    port: Some(port(2379)),
                    http_path: None,
                },
            ),
        ],
        allowed: vec![IpNet::new(pd0_ip, 32).unwrap()],
    };
    let out =
        on_node(&lab, "node-1", |sources, node| run(request("allowed", &source, 1000, plan), sources, node));
    assert_eq!(out.step(0).result.as_ref().unwrap().answers.len(), 3, "{}", out.show());
    for i in [1, 2] {
        let s = out.step(i);
        assert_eq!(s.status, StepStatus::Ok, "{}", out.show());
        let lines: Vec<&str> = s.evidence.iter().map(|e| e.as_str()).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with(&format!("{pd0_ip}: ok")), "{lines:?}");
        for other in ["tidb/demo-pd-1", "tidb/demo-pd-2"] {
            let line =
                format!("{} not probed: outside the cluster's ranges and the allow-list", lab.pod(other).ip);
            assert!(lines.contains(&line.as_str()), "{lines:?}");
        }
        let probed = s.result.as_ref().unwrap();
        assert_eq!(probed.target, Target::Address { ip: pd0_ip, port: probed.target.port() });
    }
    assert_eq!(out.step(3).status, StepStatus::Failed, "an unknown name fails to resolve");
    assert_eq!(out.step(4).status, StepStatus::Skipped, "nothing to probe");
}

#[test]
fn a_run_from_the_node_itself() {
    let lab = TestLab::up();
    let source = Source::Node("node-1".parse().unwrap());
    let dns_pod: IpAddr = lab.pod("kube-system/coredns-0").ip.into();
    let plan = RunPlan {
        steps: vec![
            step("resolve", resolve(&source, "demo-pd.tidb.svc.cluster.local", Some(dns_pod))),
            step("tcp", probe(&source, ProbeKind::Tcp, pod_target(&lab, "tidb/demo-pd-1", Some(2379)))),
            step("icmp", probe(&source, ProbeKind::Icmp, pod_target(&lab, "tidb/demo-pd-2", None))),
            step("nat-rules", nat_rules(&lab)),
            step("routes", StepAction::Routes { destinations: pd_ips(&lab) }),
        ],
        allowed: allowed(&lab),
    };
    let out =
        on_node(&lab, "node-1", |sources, node| run(request("node", &source, 1000, plan), sources, node));
    assert_eq!(out.done, RunDone::Completed);
    assert_eq!(out.steps.len(), 5);
    for (_, s) in &out.steps {
        assert_eq!(s.status, StepStatus::Ok, "{}", out.show());
    }
    let routes = &out.step(4).evidence;
    assert_eq!(routes.len(), 3, "the node's own table only: {routes:?}");
    assert!(routes.iter().all(|l| l.as_str().starts_with("node-1: ")));
}

const SILENT_POD_TOPOLOGY: &str = "
name: lab
nodes: [{ name: node-1 }, { name: node-2 }]
pods:
  - { namespace: kube-system, name: coredns-0, node: node-1, app: dns, labels: { k8s-app: kube-dns } }
  - { namespace: tidb, name: demo-pd-0, node: node-1, app: pd, ports: [2379], listen: false, labels: { app: pd } }
  - { namespace: tidb, name: demo-pd-1, node: node-2, app: pd, ports: [2379], labels: { app: pd } }
services:
  - { namespace: kube-system, name: kube-dns, type: ClusterIP, cluster_ip: 10.96.0.10, selector: { k8s-app: kube-dns }, ports: [{ name: dns, port: 53, target_port: 53, protocol: UDP }] }
  - { namespace: tidb, name: demo-pd, type: ClusterIP, cluster_ip: 10.96.0.20, selector: { app: pd }, ports: [{ name: client, port: 2379, target_port: 2379 }] }
";

#[test]
fn a_source_pod_whose_app_never_listens_runs_fine() {
    let lab = TestLab::from_yaml(SILENT_POD_TOPOLOGY);
    let source = pd0();
    let plan = RunPlan {
        steps: vec![
            step("resolve", resolve(&source, "demo-pd.tidb", None)),
            step("tcp", probe(&source, ProbeKind::Tcp, pod_target(&lab, "tidb/demo-pd-1", Some(2379)))),
            step("icmp", probe(&source, ProbeKind::Icmp, pod_target(&lab, "tidb/demo-pd-1", None))),
            step("routes", StepAction::Routes { destinations: vec![lab.pod("tidb/demo-pd-1").ip.into()] }),
        ],
        allowed: allowed(&lab),
    };
    let out =
        on_node(&lab, "node-1", |sources, node| run(request("silent", &source, 1000, plan), sources, node));
    assert_eq!(out.done, RunDone::Completed);
    for (_, s) in &out.steps {
        assert_eq!(s.status, StepStatus::Ok, "{}", out.show());
    }
}

/// A plan whose TCP step to a dropped port takes the whole (long) timeout, beside quick steps.
fn slow_plan(lab: &TestLab, source: &Source) -> RunPlan {
    RunPlan {
        steps: vec![
            step("nat-rules", nat_rules(lab)),
            step("tcp", probe(source, ProbeKind::Tcp, pod_target(lab, "tidb/demo-pd-1", Some(2380)))),
            step("routes", StepAction::Routes { destinations: pd_ips(lab) }),
        ],
        allowed: allowed(lab),
    }
}

const LONG_MS: u32 = 20_000;

#[test]
fn cancel_stops_a_run_mid_probe_long_before_its_timeout() {
    let lab = TestLab::up();
    lab.fault("port-drop tidb/demo-pd-1 2380");
    let source = pd0();
    let plan = slow_plan(&lab, &source);
    let out = on_node(&lab, "node-1", |sources, node| async move {
        let runs = Runs::new(node);
        let (tx, mut rx) = mpsc::channel(64);
        let started = Instant::now();
        runs.start(request("slow", &source, LONG_MS, plan), sources, tx.clone());
        // The quick steps stream in while the TCP probe still waits for its SYN's answer.
        let mut early = Vec::new();
        while early.len() < 2 {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap().update {
                RunUpdate::Step(s) => early.push((started.elapsed(), s)),
                RunUpdate::Done(d) => panic!("ended early: {d:?}"),
            }
        }
        assert_eq!(runs.len(), 1);
        let cancelled_at = Instant::now();
        assert!(runs.cancel(&RunId::new("slow").unwrap(), tx));
        let rest = collect(rx, cancelled_at).await;
        (early, rest, runs.is_empty())
    });
    let (early, rest, emptied) = out;
    let mut early_steps: Vec<u32> = early.iter().map(|(_, s)| s.index).collect();
    early_steps.sort_unstable();
    assert_eq!(early_steps, [0, 2], "nat-rules and routes arrive before the slow TCP step");
    assert!(
        early.iter().all(|(at, s)| *at < Duration::from_secs(5) && s.status == StepStatus::Ok),
        "{early:?}"
    );
    assert_eq!(rest.done, RunDone::Cancelled);
    assert!(rest.steps.is_empty(), "the cancelled TCP step is not reported: {:?}", rest.steps);
    assert!(rest.took < Duration::from_secs(2), "cancelled in {:?}", rest.took);
    assert!(emptied, "a cancelled run leaves the registry");
}

#[test]
fn a_fifth_concurrent_run_is_refused_as_busy() {
    let lab = TestLab::up();
    lab.fault("port-drop tidb/demo-pd-1 2380");
    let source = pd0();
    let plan = slow_plan(&lab, &source);
    let (busy, others) = on_node(&lab, "node-1", |sources, node| async move {
        let runs = Runs::new(node);
        let (tx, mut rx) = mpsc::channel(64);
        for i in 0..4 {
            runs.start(
                request(&format!("r{i}"), &source, LONG_MS, plan.clone()),
                sources.clone(),
                tx.clone(),
            );
        }
        runs.start(request("r4", &source, LONG_MS, plan.clone()), sources.clone(), tx.clone());
        let busy = loop {
            let p = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
            if let RunUpdate::Done(done) = p.update {
                break (p.run_id.to_string(), done);
            }
        };
        assert_eq!(runs.len(), 4);
        for i in 0..4 {
            assert!(runs.cancel(&RunId::new(format!("r{i}")).unwrap(), tx.clone()));
        }
        drop(tx);
        let mut ends = Vec::new();
        while let Some(p) = rx.recv().await {
            if let RunUpdate::Done(done) = p.update {
                ends.push((p.run_id.to_string(), done));
            }
        }
        (busy, ends)
    });
    assert_eq!(
        busy,
        (
            "r4".to_owned(),
            RunDone::Failed {
                error: Text::new("agent on node-1 is busy: 4 runs in progress; try again").unwrap()
            }
        )
    );
    assert_eq!(others.len(), 4, "{others:?}");
    assert!(others.iter().all(|(_, d)| *d == RunDone::Cancelled), "{others:?}");
}
