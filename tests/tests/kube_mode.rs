//! The collector in `kubernetes` mode, its inventory watched from a fake API server seeded with
//! the lab's inventory file, builds the same matrix as in file mode on an identically shaped
//! lab: the same cells (level, source, destination, kind) with the same statuses.
//!
//! Needs root (the lab). The two labs run one after the other.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netdiag_model::inventory::Inventory;
use netdiag_model::matrix::CellStatus;
use netdiag_tests::cluster::{LabCluster, cell_diff};
use netdiag_tests::lab::TestLab;

const INTERVAL: Duration = Duration::from_secs(2);

/// The file's inventory as the Kubernetes API can tell it: no netns or resolv.conf paths, the
/// cluster's pod range as the nodes' podCIDRs, lists in a canonical order.
fn as_the_api_tells_it(mut inv: Inventory) -> Inventory {
    inv.nodes.iter_mut().for_each(|n| n.netns = None);
    for p in &mut inv.pods {
        p.netns = None;
        p.resolv_conf = None;
    }
    inv.cluster.pod_cidrs = inv.nodes.iter().flat_map(|n| n.pod_cidrs.clone()).collect();
    inv.cluster.pod_cidrs.sort();
    inv.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    inv.pods.sort_by_key(|p| p.pod_ref());
    inv.services.sort_by_key(|s| s.service_ref());
    inv.services.iter_mut().for_each(|s| s.endpoints.sort_by_key(|e| e.ip));
    inv
}

#[test]
fn kubernetes_mode_builds_the_same_matrix_as_the_inventory_file() {
    let file_cells = {
        let c = LabCluster::up(INTERVAL);
        c.warm_up();
        c.cell_statuses()
    };
    assert!(!file_cells.is_empty());
    assert!(file_cells.values().all(|s| *s == CellStatus::Ok), "a healthy lab in file mode: {file_cells:#?}");

    let c = LabCluster::start_kubernetes(TestLab::up(), INTERVAL);
    let kube = c.kube.as_ref().unwrap();
    let lists = kube.fake.stats().lists;
    assert_eq!(lists.len(), 4, "the collector listed all four kinds: {lists:?}");
    let file = Inventory::from_yaml(&std::fs::read_to_string(c.lab.state.inventory_path()).unwrap()).unwrap();
    let from_api = c.collector.inventory();
    assert!(from_api.pods.iter().all(|p| p.netns.is_none()), "the collector's inventory came from the API");
    assert_eq!(from_api, as_the_api_tells_it(file), "the lab's inventory through the API");

    c.warm_up();
    let same = c.wait_for(INTERVAL * 3, |c| (c.cell_statuses() == file_cells).then_some(()));
    if same.is_none() {
        panic!(
            "the kubernetes-mode matrix differs from file mode:\n  {}",
            cell_diff(&file_cells, &c.cell_statuses(), "kubernetes")
        );
    }
}
