//! Agents without an inventory file (`--inventory kubernetes`) get their node's pods and their
//! probe plan from the collector — itself in kubernetes mode, watching a fake API server seeded
//! from the lab — find their pods' namespaces by the pod IPs inside, and fill the same matrix as
//! agents reading the lab's inventory file: the same cells (level, source, destination, kind)
//! with the same statuses.
//!
//! Needs root (the lab). The two labs run one after the other.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netdiag_collector::state::now;
use netdiag_model::matrix::CellStatus;
use netdiag_model::session::Capability;
use netdiag_tests::cluster::{ClusterOptions, LabCluster, cell_diff};
use netdiag_tests::lab::TestLab;

const INTERVAL: Duration = Duration::from_secs(2);

#[test]
fn agents_without_an_inventory_fill_the_same_matrix() {
    let file_cells = {
        let c = LabCluster::start(TestLab::up(), INTERVAL);
        c.warm_up();
        c.cell_statuses()
    };
    assert!(!file_cells.is_empty());
    assert!(file_cells.values().all(|s| *s == CellStatus::Ok), "a healthy lab in file mode: {file_cells:#?}");

    let opts =
        ClusterOptions { kubernetes: true, agents_without_inventory: true, ..ClusterOptions::default() };
    let c = LabCluster::start_opts(TestLab::up(), INTERVAL, opts);
    c.warm_up();
    for agent in c.collector.agents(now()) {
        assert!(
            agent.capabilities.contains(&Capability::CollectorInventory),
            "{} asked the collector for its pods and plan",
            agent.node
        );
    }
    // A few rounds, and a plan refresh (every 2 intervals here) should anything have changed.
    let same = c.wait_for(INTERVAL * 6, |c| (c.cell_statuses() == file_cells).then_some(()));
    if same.is_none() {
        panic!(
            "the matrix of agents without an inventory differs from file mode:\n  {}",
            cell_diff(&file_cells, &c.cell_statuses(), "collector")
        );
    }
}
