//! A collector killed with SIGKILL and started again: within two probe intervals (plus the
//! agents' reconnect) the matrix, the inspections and the findings are back to what they were,
//! because every agent's new session carries its latest inspections and its unacknowledged
//! results. The real binaries run as processes: a collector in the host's loopback with its
//! agents' listener in the lab's underlay, one agent per node in its namespace.
//!
//! Needs root (the lab) and the workspace's binaries (`--workspace` builds them).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netdiag_tests::lab::TestLab;
use netdiag_tests::processes::{self, Daemon};
use netdiag_tests::replica::{self, connected_agents, known_cells, nat_finding, wait};

const INTERVAL: Duration = Duration::from_secs(2);
/// The agents' reconnect: their backoff starts at 200 ms and doubles while the collector is
/// away; a restarted collector needs about a second to be up.
const RECONNECT: Duration = Duration::from_millis(1500);

fn explain(collector: &Daemon, agents: &[Daemon]) -> String {
    replica::explain(&[collector], agents)
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
