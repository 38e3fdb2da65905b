//! Agents without an inventory file (`--inventory kubernetes`) get their node's pods and their
//! probe plan from the collector — itself in kubernetes mode, watching a fake API server seeded
//! from the lab — find their pods' namespaces by the pod IPs inside, and fill the same matrix as
//! agents reading the lab's inventory file: the same cells (level, source, destination, kind)
//! with the same statuses.
//!
//! Needs root (the lab). The two labs run one after the other.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use netdiag_collector::state::now;
use netdiag_model::matrix::{CellStatus, MatrixLevel, MatrixQuery};
use netdiag_model::session::Capability;
use netdiag_tests::cluster::{ClusterOptions, LabCluster};
use netdiag_tests::lab::TestLab;

const INTERVAL: Duration = Duration::from_secs(2);

type Cells = BTreeMap<String, CellStatus>;

/// Waits for the first round of results so every cell has samples.
fn warm_up(c: &LabCluster) {
    let ready = c.wait_for(Duration::from_secs(30), |c| {
        let agents = c.collector.agents(now());
        (agents.len() == 3 && agents.iter().all(|a| a.connected && a.results_received > 100)).then_some(())
    });
    assert!(ready.is_some(), "agents never delivered a first round: {:#?}", c.collector.agents(now()));
    std::thread::sleep(INTERVAL * 2);
}

fn cells(c: &LabCluster) -> Cells {
    let mut out = Cells::new();
    for level in [MatrixLevel::Pod, MatrixLevel::Node] {
        for cell in c.collector.matrix(&MatrixQuery { level, kind: None }, now()).cells {
            out.insert(
                format!("{level:?} {} -> {} {:?}", cell.source, cell.destination, cell.kind),
                cell.status,
            );
        }
    }
    out
}

fn diff(want: &Cells, got: &Cells) -> String {
    let mut lines = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => lines.push(format!("missing  {k} ({v})")),
            Some(g) if g != v => lines.push(format!("status   {k}: file {v}, collector {g}")),
            Some(_) => {}
        }
    }
    lines.extend(got.keys().filter(|k| !want.contains_key(*k)).map(|k| format!("extra    {k}")));
    lines.join("\n  ")
}

/// The default lab on pod addresses of its own. Agents without an inventory find their pods'
/// namespaces by the pod IPs inside, and ignore an address held by more than one namespace (it
/// proves nothing); other labs running at the same time on this machine hold the default lab's
/// pod IPs, so this one must not.
fn own_pod_cidr() -> TestLab {
    TestLab::with(|t| t.replace("pod_cidr: 10.244.0.0/16", "pod_cidr: 10.245.0.0/16"))
}

#[test]
fn agents_without_an_inventory_fill_the_same_matrix() {
    let file_cells = {
        let c = LabCluster::start(own_pod_cidr(), INTERVAL);
        warm_up(&c);
        cells(&c)
    };
    assert!(!file_cells.is_empty());
    assert!(file_cells.values().all(|s| *s == CellStatus::Ok), "a healthy lab in file mode: {file_cells:#?}");

    let opts =
        ClusterOptions { kubernetes: true, agents_without_inventory: true, ..ClusterOptions::default() };
    let c = LabCluster::start_opts(own_pod_cidr(), INTERVAL, opts);
    warm_up(&c);
    for agent in c.collector.agents(now()) {
        assert!(
            agent.capabilities.contains(&Capability::CollectorInventory),
            "{} asked the collector for its pods and plan",
            agent.node
        );
    }
    // A few rounds, and a plan refresh (every 2 intervals here) should anything have changed.
    let same = c.wait_for(INTERVAL * 6, |c| (cells(c) == file_cells).then_some(()));
    if same.is_none() {
        panic!(
            "the matrix of agents without an inventory differs from file mode:\n  {}",
            diff(&file_cells, &cells(&c))
        );
    }
}
