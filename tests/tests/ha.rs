//! Two collector replicas and the lab's agents, each agent streaming to both: one replica is
//! SIGKILLed and started again, then the other is replaced as a rollout replaces it (SIGTERM,
//! a new process). Throughout, the replica that stays up shows the full matrix and the right
//! finding; the restarted one is whole again within two probe intervals (plus the agents'
//! reconnect); and no result is lost — every agent's every result is acknowledged by both
//! replicas, the restarted ones getting what they missed from the agent's buffer. An on-demand
//! run works through either replica, and through a restarted one (its progress comes back to
//! the replica that asked).
//!
//! Needs root (the lab) and the workspace's binaries (`--workspace` builds them).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use netdiag_tests::lab::TestLab;
use netdiag_tests::processes::{self, AGENTS_PORT, Daemon};
use netdiag_tests::replica::{connected_agents, explain, known_cells, nat_finding, wait};

const INTERVAL: Duration = Duration::from_secs(2);
/// The agents' reconnect: their backoff starts at 200 ms and doubles while a replica is away;
/// a restarted collector needs about a second to be up.
const RECONNECT: Duration = Duration::from_millis(1500);

/// One replica: its agents' port, its API port, its process.
struct Replica {
    agents_port: u16,
    http_port: u16,
    daemon: Daemon,
}

impl Replica {
    fn start(lab: &TestLab, agents_port: u16, tag: &str) -> Self {
        let http_port = processes::free_loopback_port();
        let daemon = processes::collector_replica(lab, agents_port, http_port, tag);
        Replica { agents_port, http_port, daemon }
    }

    /// The same replica's next process (same addresses), as a restarted pod.
    fn restart(&mut self, lab: &TestLab, tag: &str) {
        self.daemon = processes::collector_replica(lab, self.agents_port, self.http_port, tag);
    }

    /// All agents connected, every cell known, and the NAT finding shown.
    fn whole(&self, nodes: usize, cells: usize) -> bool {
        connected_agents(self.http_port) == nodes
            && known_cells(self.http_port).is_some_and(|(k, n)| k >= cells && k == n)
            && nat_finding(self.http_port).is_some()
    }
}

/// Waits (up to `limit`) for `coming` to be whole while checking at every step that `serving`
/// stays whole; returns how long `coming` took and how many checks found `serving` not whole.
fn catch_up(
    coming: &Replica,
    serving: &Replica,
    nodes: usize,
    cells: usize,
    limit: Duration,
) -> (Option<Duration>, usize, usize) {
    let mut lapses = 0;
    let mut checks = 0;
    let took = wait(limit, || {
        checks += 1;
        if !serving.whole(nodes, cells) {
            lapses += 1;
        }
        coming.whole(nodes, cells).then_some(())
    });
    (took.map(|(_, t)| t), lapses, checks)
}

/// An on-demand run through the API of the replica on `port`: its end and verdict.
fn run_through(port: u16) -> (String, serde_json::Value) {
    let body =
        serde_json::json!({"from": "tidb/demo-tikv-0", "to": "svc/tidb/demo-pd:2379", "timeout_ms": 1500});
    let (status, answer) = netdiag_tests::http::post_json(
        processes::api(port),
        "/api/v1/probe",
        &body,
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(status, 200, "run through the replica on :{port}: {answer:#}");
    (answer["done"]["end"].as_str().unwrap_or_default().to_owned(), answer["verdict"].clone())
}

/// Per collector address: results an agent's uplink had acknowledged plus those it holds, and
/// those it dropped — read from the agent's own `/metrics` inside its node's namespace.
fn uplink_totals(netns: &str) -> Option<BTreeMap<String, (u64, u64)>> {
    let addr: SocketAddr = "127.0.0.1:9464".parse().unwrap();
    let (status, body) =
        netdiag_tests::probe::http_get(netns, addr, "/metrics", Duration::from_secs(2)).ok()?;
    if status != 200 {
        return None;
    }
    let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in body.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Some((name, labels)) = series.split_once("{collector=\"") else { continue };
        let collector = labels.trim_end_matches("\"}").to_owned();
        let value: u64 = value.parse().ok()?;
        let entry = totals.entry(collector).or_default();
        match name {
            "netdiag_agent_acked_results_total" | "netdiag_agent_buffered_results" => entry.0 += value,
            "netdiag_agent_dropped_results_total" => entry.1 += value,
            _ => {}
        }
    }
    Some(totals)
}

#[test]
fn two_replicas_keep_the_diagnosis_through_a_sigkill_and_a_rollout_and_lose_no_result() {
    let lab = TestLab::up();
    let nodes = lab.plan.nodes.len();
    let mut a = Replica::start(&lab, AGENTS_PORT, "a-1");
    let mut b = Replica::start(&lab, AGENTS_PORT + 1, "b-1");
    let agents = processes::agents_for(&lab, INTERVAL, &[a.agents_port, b.agents_port]);
    let logs = |a: &Replica, b: &Replica| explain(&[&a.daemon, &b.daemon], &agents);
    for r in [&a, &b] {
        let up = wait(Duration::from_secs(30), || (connected_agents(r.http_port) == nodes).then_some(()));
        assert!(up.is_some(), "agents never connected to both replicas\n{}", logs(&a, &b));
        let warm =
            wait(Duration::from_secs(30), || known_cells(r.http_port).filter(|(k, n)| *n > 0 && k == n));
        assert!(warm.is_some(), "a replica's matrix never filled\n{}", logs(&a, &b));
    }

    // On-demand runs through either replica: each dispatches over its own sessions.
    for r in [&a, &b] {
        let (end, verdict) = run_through(r.http_port);
        assert_eq!(end, "completed", "a run through the replica on :{}", r.http_port);
        assert!(verdict.is_null(), "a verdict on a healthy lab: {verdict:#}");
    }

    // A verdict that rests on an inspection, so a restarted replica must get those back too.
    lab.fault("dnat-missing node-1 tidb/demo-pd:2379");
    for r in [&a, &b] {
        let found = wait(INTERVAL * 6, || nat_finding(r.http_port));
        assert!(found.is_some(), "no NAT finding on a replica before any restart\n{}", logs(&a, &b));
    }
    let cells = known_cells(a.http_port).unwrap().0.min(known_cells(b.http_port).unwrap().0);

    // Replica b is SIGKILLed and comes back; a serves throughout.
    let bound = INTERVAL * 2 + RECONNECT;
    b.daemon.kill();
    std::thread::sleep(INTERVAL);
    b.restart(&lab, "b-2");
    let (took, lapses, checks) = catch_up(&b, &a, nodes, cells, bound * 3);
    let Some(took) = took else { panic!("the restarted replica never caught up\n{}", logs(&a, &b)) };
    assert_eq!(
        lapses,
        0,
        "the surviving replica was not whole at {lapses} of {checks} checks\n{}",
        logs(&a, &b)
    );
    assert!(took <= bound, "the restarted replica caught up in {took:?}, more than {bound:?}");
    println!("ha: after a SIGKILL and restart, replica b whole again in {:.1}s", took.as_secs_f64());
    let (end, verdict) = run_through(b.http_port);
    assert_eq!(end, "completed", "a run through the restarted replica");
    assert!(!verdict.is_null(), "the run through the restarted replica missed the NAT fault");

    // A rollout replaces a: SIGTERM, then its new process; b serves throughout.
    a.daemon.terminate(Duration::from_secs(10));
    std::thread::sleep(INTERVAL);
    a.restart(&lab, "a-2");
    let (took, lapses, checks) = catch_up(&a, &b, nodes, cells, bound * 3);
    let Some(took) = took else { panic!("the rolled-out replica never caught up\n{}", logs(&a, &b)) };
    assert_eq!(lapses, 0, "replica b was not whole at {lapses} of {checks} checks\n{}", logs(&a, &b));
    assert!(took <= bound, "the replaced replica caught up in {took:?}, more than {bound:?}");
    println!("ha: after a rollout, replica a whole again in {:.1}s", took.as_secs_f64());

    // No result lost: each agent's results, acknowledged or still held, are the same count for
    // both replicas (a replica that was away got every one it missed), and none was dropped.
    for node in &lab.plan.nodes {
        let netns = node.netns.as_str();
        let even = wait(Duration::from_secs(10), || {
            let totals = uplink_totals(netns)?;
            let counts: Vec<(u64, u64)> = totals.values().copied().collect();
            (counts.len() == 2 && counts[0].0 == counts[1].0).then_some(totals)
        });
        let totals = uplink_totals(netns);
        let Some((totals, _)) = even else {
            panic!("{}: the replicas did not get the same results: {totals:?}\n{}", node.name, logs(&a, &b))
        };
        for (collector, (received, dropped)) in &totals {
            assert_eq!(*dropped, 0, "{}: {dropped} results dropped for {collector}", node.name);
            assert!(*received > 0, "{}: nothing for {collector}", node.name);
        }
        println!(
            "ha: {} results per replica from {}, none dropped",
            totals.values().next().unwrap().0,
            node.name
        );
    }
    assert!(a.daemon.is_running() && b.daemon.is_running());
    lab.heal();
}
