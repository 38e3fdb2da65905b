//! A fake Kubernetes API server seeded from a lab's inventory, for running the collector in
//! `kubernetes` mode on a lab ([`crate::cluster::LabCluster::start_kubernetes`]): the lab's
//! Nodes, Running Pods, Services and EndpointSlices served by `netdiag-fakekube`, watched by the
//! collector's real kube-rs reflectors.

use std::time::Duration;

use netdiag_collector::kube_inventory::{self, ClusterSettings};
use netdiag_fakekube::FakeKube;
use netdiag_model::inventory::Inventory;
use tokio::sync::watch;

/// The fake API server and the runtime it (and the collector's reflectors) run on.
#[derive(Debug)]
pub struct KubeApi {
    // Dropped before the runtime that serves it.
    pub fake: FakeKube,
    _runtime: tokio::runtime::Runtime,
}

impl KubeApi {
    /// Serves `inventory`'s objects and starts the collector's Kubernetes inventory against
    /// them; returns the first inventory it built and the channel of later ones.
    pub fn start(inventory: &Inventory) -> (Self, Inventory, watch::Receiver<Inventory>) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime for the fake API server");
        let (fake, updates) = runtime.block_on(async {
            let fake = FakeKube::start().await.expect("fake API server");
            fake.seed(inventory).expect("seed the fake API server");
            let updates = kube_inventory::start(fake.config(), settings(inventory), Duration::from_secs(20))
                .await
                .expect("the Kubernetes inventory lists the fake API server");
            (fake, updates)
        });
        let first = updates.borrow().clone();
        (KubeApi { fake, _runtime: runtime }, first, updates)
    }
}

/// The collector flags a lab would be run with: its cluster facts, kube-dns as the DNS service.
pub fn settings(inventory: &Inventory) -> ClusterSettings {
    let c = &inventory.cluster;
    ClusterSettings {
        name: c.name.clone(),
        domain: c.domain.clone(),
        service_cidrs: c.service_cidrs.clone(),
        node_cidrs: c.node_cidrs.clone(),
        dns_service: "kube-system/kube-dns".parse().expect("a service name"),
        proxy_mode: c.proxy_mode,
    }
}
