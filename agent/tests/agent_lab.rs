//! The whole agent in the lab: the `netdiag-agent` binary runs inside a node's namespace (as a
//! hostNetwork DaemonSet pod would), reads the lab's inventory, probes from the node and every
//! local pod, and streams results and inspections to a collector session service listening on
//! the lab's control address. Also: pod namespaces created and deleted 200 times while probing
//! leave no thread or file descriptor behind.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use netdiag_agent::probe::SourceState;
use netdiag_agent::sources::{Discovery, Sources};
use netdiag_collector::ingest::Ingest;
use netdiag_collector::sink::Recorder;
use netdiag_lab::plan::LabPlan;
use netdiag_model::inventory::Inventory;
use netdiag_model::outcome::Outcome;
use netdiag_model::plan::PlannedProbe;
use netdiag_model::probe::{ProbeKind, Source, Target};
use netdiag_tests::lab::TestLab;
use tokio::sync::watch;

struct LabCollector {
    recorder: Arc<Recorder>,
    stop: watch::Sender<bool>,
    port: u16,
}

/// A collector session service on the lab's control address, inside the underlay namespace.
async fn collector_in(lab: &TestLab) -> LabCollector {
    let socket = netdiag_netns::socket_in(
        &LabPlan::netns_path(&lab.plan.underlay_netns),
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&std::net::SocketAddr::new(lab.plan.control_ip.into(), 0).into()).unwrap();
    socket.listen(128).unwrap();
    socket.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(socket.into()).unwrap();
    let port = listener.local_addr().unwrap().port();
    let recorder = Arc::new(Recorder::default());
    let (stop, stop_rx) = watch::channel(false);
    let ingest = Ingest::new(recorder.clone(), stop_rx.clone());
    let mut signal = stop_rx;
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(ingest.into_service())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move {
                    let _ = signal.wait_for(|s| *s).await;
                },
            )
            .await
            .unwrap();
    });
    LabCollector { recorder, stop, port }
}

fn results_of(rec: &Recorder) -> Vec<netdiag_model::result::ProbeResult> {
    rec.snapshot().into_values().flat_map(|a| a.batches).flat_map(|b| b.results).collect()
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_in_a_lab_node_streams_the_labs_truth() {
    let lab = TestLab::up();
    let collector = collector_in(&lab).await;
    let node = lab.node("node-2");
    let mut agent = tokio::process::Command::new(env!("CARGO_BIN_EXE_netdiag-agent"))
        .args(["--node", "node-2", "--interval", "1s", "--timeout", "500ms", "--listen", "127.0.0.1:0"])
        .arg("--collector")
        .arg(format!("http://{}:{}", lab.plan.control_ip, collector.port))
        .arg("--inventory")
        .arg(format!("file:{}", lab.state.inventory_path().display()))
        .arg("--netns")
        .arg(LabPlan::netns_path(&node.netns))
        .env("NETDIAG_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let rec = collector.recorder.clone();
    wait_until("the agent's hello and a first round of results", Duration::from_secs(20), || {
        let snap = rec.snapshot();
        snap.get(&"node-2".parse().unwrap()).is_some_and(|a| !a.hellos.is_empty())
            && results_of(&rec).iter().filter(|r| r.kind == ProbeKind::Dns).count() > 10
    })
    .await;
    let snap = rec.snapshot();
    let me = &snap[&"node-2".parse().unwrap()];
    let pods: Vec<String> = me.hellos[0].pods.iter().map(|p| p.pod.to_string()).collect();
    assert_eq!(pods, ["tidb/demo-pd-1", "tidb/demo-tikv-1", "tidb/demo-tidb-0"]);

    // Give it a couple of full rounds, then check the healthy lab's truth.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let results = results_of(&rec);
    let sources: std::collections::BTreeSet<String> = results.iter().map(|r| r.source.to_string()).collect();
    for s in ["node/node-2", "tidb/demo-pd-1", "tidb/demo-tikv-1", "tidb/demo-tidb-0"] {
        assert!(sources.contains(s), "no results from {s}: {sources:?}");
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.outcome.is_ok())
        .map(|r| format!("{} -> {} [{}] {}: {}", r.source, r.target, r.kind, r.outcome, r.detail))
        .collect();
    assert!(failed.is_empty(), "a healthy lab reports failures:\n{}", failed.join("\n"));
    let dns_ok = results.iter().any(|r| {
        r.source.to_string() == "tidb/demo-pd-1"
            && matches!(&r.target, Target::Dns { name, nameserver: None, .. } if name.as_str() == "demo-pd.tidb")
            && r.answers.contains(&lab.service("tidb/demo-pd").cluster_ip.unwrap().into())
    });
    assert!(dns_ok, "demo-pd.tidb resolved to its VIP through the pod's resolv.conf");
    let inspected: Vec<String> = me.inspections.iter().map(|i| i.source.to_string()).collect();
    assert!(
        inspected.contains(&"node/node-2".to_owned()) && inspected.contains(&"tidb/demo-pd-1".to_owned()),
        "{inspected:?}"
    );

    // A fault shows up with the right classification, confirmed at once: three refusals in a
    // row (the collector's "failed" streak) within two intervals (1 s each here), not three.
    lab.fault("port-closed tidb/demo-pd-0 2379");
    let seen_before = results_of(&rec).len();
    wait_until("three refusals in a row toward demo-pd-0:2379 within 2 intervals", Duration::from_secs(2), || {
        let toward_pd0: Vec<Outcome> = results_of(&rec)
            .iter()
            .skip(seen_before)
            .filter(|r| {
                r.source.to_string() == "tidb/demo-tikv-1"
                    && matches!(&r.target, Target::Pod { pod, port: Some(p), .. } if pod.to_string() == "tidb/demo-pd-0" && p.get() == 2379)
            })
            .map(|r| r.outcome)
            .collect();
        let refused = Outcome::Tcp(netdiag_model::outcome::TcpFailure::Refused);
        toward_pd0.len() >= 3 && toward_pd0[toward_pd0.len() - 3..].iter().all(|o| *o == refused)
    })
    .await;

    collector.stop.send(true).unwrap();
    agent.start_kill().unwrap();
    let _ = agent.wait().await;
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn count_threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_namespaces_come_and_go_without_leaking_threads_or_fds() {
    let lab = TestLab::up();
    let node: netdiag_model::NodeName = "node-1".parse().unwrap();
    let base_text = std::fs::read_to_string(lab.state.inventory_path()).unwrap();
    let base = Inventory::from_yaml(&base_text).unwrap();
    let discovery = Discovery { netns_dir: "/nonexistent".into(), proc_dir: None, ..Discovery::default() };
    let scratch = format!("{}-pod-churn-x", lab.name());
    let scratch_path = LabPlan::netns_path(&scratch);
    struct DeleteOnDrop(String);
    impl Drop for DeleteOnDrop {
        fn drop(&mut self) {
            let _ = netdiag_lab::netcmd::run(None, "ip", &["netns", "del", &self.0], None);
        }
    }
    let _cleanup = DeleteOnDrop(scratch.clone());
    // The churning pod: like demo-pd-0 but its own namespace, re-created every cycle.
    let mut inv = base.clone();
    let mut churn = inv.pods.iter().find(|p| p.name.as_str() == "demo-pd-0").unwrap().clone();
    churn.name = "churn-0".parse().unwrap();
    churn.netns = Some(scratch_path.clone());
    churn.ips = vec!["127.0.0.1".parse().unwrap()];
    inv.pods.push(churn.clone());
    let target = Target::Address {
        ip: "127.0.0.1".parse().unwrap(),
        port: Some(netdiag_model::Port::new(9).unwrap()),
    };
    let probe = PlannedProbe {
        source: Source::Pod(churn.pod_ref()),
        target,
        kind: ProbeKind::Tcp,
        http_path: None,
        every: netdiag_model::EveryRounds::ONE,
    };
    let icmp = PlannedProbe {
        kind: ProbeKind::Icmp,
        target: Target::Address { ip: "127.0.0.1".parse().unwrap(), port: None },
        ..probe.clone()
    };

    let mut sources = Sources::default();
    sources.refresh(&base, &node, &discovery);
    // Warm up lazily created runtime threads and pools before taking the baseline.
    let _ = netdiag_agent::probe::run(
        &sources.get(&Source::Node(node.clone())).unwrap().ns,
        &SourceState::default(),
        &icmp,
        Duration::from_millis(200),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (fds0, threads0) = (count_fds(), count_threads());

    for cycle in 0..200 {
        netdiag_lab::netcmd::run(None, "ip", &["netns", "add", &scratch], None).unwrap();
        netdiag_lab::netcmd::run(None, "ip", &["-n", &scratch, "link", "set", "lo", "up"], None).unwrap();
        let report = sources.refresh(&inv, &node, &discovery);
        assert!(report.added.contains(&probe.source), "cycle {cycle}: {report:?}");
        let entry = sources.get(&probe.source).unwrap();
        // Probe inside the pod while its namespace is deleted under it.
        let (tcp, ping) = tokio::join!(
            netdiag_agent::probe::run(&entry.ns, &entry.state, &probe, Duration::from_millis(300)),
            async {
                let r = netdiag_agent::probe::run(&entry.ns, &entry.state, &icmp, Duration::from_millis(300))
                    .await;
                netdiag_lab::netcmd::run(None, "ip", &["netns", "del", &scratch], None).unwrap();
                r
            }
        );
        assert_eq!(
            tcp.outcome,
            Outcome::Tcp(netdiag_model::outcome::TcpFailure::Refused),
            "loopback :9 inside the pod refuses"
        );
        assert!(ping.outcome.is_ok(), "{}", ping.detail);
        drop(entry);
        let report = sources.refresh(&inv, &node, &discovery);
        assert!(
            report.removed.contains(&probe.source),
            "cycle {cycle}: the vanished namespace's source is dropped"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (fds1, threads1) = (count_fds(), count_threads());
    assert!(fds1 <= fds0 + 2, "fds grew from {fds0} to {fds1}");
    assert!(threads1 <= threads0 + 2, "threads grew from {threads0} to {threads1}");
}
