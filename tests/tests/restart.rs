//! A collector killed with SIGKILL and started again: within two probe intervals (plus the
//! agents' reconnect) the matrix, the inspections and the findings are back to what they were,
//! because every agent's new session carries its latest inspections and its unacknowledged
//! results. The real binaries run as processes: a collector in the host's loopback with its
//! agents' listener in the lab's underlay, one agent per node in its namespace.
//!
//! Needs root (the lab) and the workspace's binaries (`--workspace` builds them).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use netdiag_tests::http::get_json;
use netdiag_tests::lab::TestLab;
use netdiag_tests::processes::{self, Daemon};
use serde_json::Value;

const INTERVAL: Duration = Duration::from_secs(2);
/// The agents' reconnect: their backoff starts at 200 ms and doubles while the collector is
/// away; a restarted collector needs about a second to be up.
const RECONNECT: Duration = Duration::from_millis(1500);

fn get(port: u16, path: &str) -> Option<Value> {
    match get_json(processes::api(port), path, Duration::from_secs(2)) {
        Ok((200, v)) => Some(v),
        _ => None,
    }
}

fn wait<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<(T, Duration)> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = check() {
            return Some((v, start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The finding whose evidence quotes node-1's NAT rules: it exists only with node-1's
/// inspection in hand.
fn nat_finding(port: u16) -> Option<Value> {
    let d = get(port, "/api/v1/diagnosis")?;
    d["findings"]
        .as_array()?
        .iter()
        .find(|f| {
            f["id"] == "service-path-broken"
                && f["evidence"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|l| l.as_str().is_some_and(|l| l.contains("no DNAT rule"))))
        })
        .cloned()
}

/// Pod-level cells that are not `unknown`, and how many there are in all.
fn known_cells(port: u16) -> Option<(usize, usize)> {
    let m = get(port, "/api/v1/matrix?level=pod")?;
    let cells = m["cells"].as_array()?;
    Some((cells.iter().filter(|c| c["status"] != "unknown").count(), cells.len()))
}

fn connected_agents(port: u16) -> usize {
    get(port, "/api/v1/agents")
        .and_then(|a| a["agents"].as_array().map(|v| v.iter().filter(|a| a["connected"] == true).count()))
        .unwrap_or(0)
}

fn explain(collector: &Daemon, agents: &[Daemon]) -> String {
    let mut out = format!("collector log:\n{}", collector.log_tail());
    for a in agents {
        out.push_str(&format!("\n{}:\n{}", a.log.display(), a.log_tail()));
    }
    out
}

#[test]
fn a_sigkilled_collector_is_whole_again_within_two_intervals_of_its_restart() {
    let lab = TestLab::up();
    let port = processes::free_loopback_port();
    let mut collector = processes::collector(&lab, port, "first");
    let agents = processes::agents(&lab, INTERVAL);
    let nodes = lab.plan.nodes.len();
    let up = wait(Duration::from_secs(30), || (connected_agents(port) == nodes).then_some(()));
    assert!(up.is_some(), "agents never connected\n{}", explain(&collector, &agents));
    let warm = wait(Duration::from_secs(30), || known_cells(port).filter(|(k, n)| *n > 0 && k == n));
    assert!(warm.is_some(), "the matrix never filled\n{}", explain(&collector, &agents));

    // A verdict that rests on an inspection: node-1 lost the VIP's DNAT rule.
    lab.fault("dnat-missing node-1 tidb/demo-pd:2379");
    let before = wait(INTERVAL * 6, || nat_finding(port));
    let Some((before, _)) = before else {
        panic!("no service-path-broken finding before the restart\n{}", explain(&collector, &agents));
    };
    let (cells_before, _) = known_cells(port).unwrap();

    collector.kill();
    let mut collector = processes::collector(&lab, port, "second");
    let bound = INTERVAL * 2 + RECONNECT;
    let back = wait(bound * 2, || nat_finding(port));
    let Some((after, took)) = back else {
        panic!(
            "the restarted collector never showed the NAT finding again (its inspections did not come back)\n{}",
            explain(&collector, &agents)
        );
    };
    assert!(
        took <= bound,
        "findings back in {took:?}, more than two intervals plus the reconnect ({bound:?})"
    );
    assert_eq!(after["culprit"], before["culprit"]);
    let cells = wait(bound, || known_cells(port).filter(|(k, _)| *k >= cells_before));
    assert!(cells.is_some(), "the matrix did not refill to {cells_before} known cells within {bound:?}");
    assert!(collector.is_running());
    println!(
        "restart: finding back in {:.1}s, matrix back in {:.1}s (interval {:?})",
        took.as_secs_f64(),
        cells.map(|(_, t)| t.as_secs_f64()).unwrap_or_default(),
        INTERVAL
    );
    lab.heal();
}
