//! The Kubernetes inventory against the fake API server, with the real kube-rs client: the first
//! list, pods appearing, moving and disappearing, an endpoint turning unready, bookmarks, a
//! `410 Gone` that forces a re-list, and the error when no API server answers.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netdiag_collector::kube_inventory::{self, ClusterSettings, KubeInventoryError};
use netdiag_fakekube::{FakeKube, Kind, seed};
use netdiag_model::inventory::{Inventory, ProxyMode};
use netdiag_model::names::PodRef;
use tokio::sync::watch;

const INVENTORY: &str = r#"{
  "version": 1,
  "cluster": {"name": "test", "domain": "cluster.local", "pod_cidrs": ["10.244.1.0/24", "10.244.2.0/24"],
              "service_cidrs": ["10.96.0.0/16"], "node_cidrs": ["172.29.0.11/32", "172.29.0.12/32"],
              "dns_ips": ["10.96.0.10"], "proxy_mode": "iptables"},
  "nodes": [{"name": "node-1", "ips": ["172.29.0.11"], "pod_cidrs": ["10.244.1.0/24"]},
            {"name": "node-2", "ips": ["172.29.0.12"], "pod_cidrs": ["10.244.2.0/24"]}],
  "pods": [
    {"namespace": "kube-system", "name": "coredns-0", "node": "node-1", "ips": ["10.244.1.2"], "ports": [{"port": 53, "protocol": "UDP"}]},
    {"namespace": "tidb", "name": "demo-pd-0", "node": "node-1", "ips": ["10.244.1.3"], "ports": [{"port": 2379}]},
    {"namespace": "tidb", "name": "demo-pd-1", "node": "node-2", "ips": ["10.244.2.3"], "ports": [{"port": 2379}]}
  ],
  "services": [
    {"namespace": "kube-system", "name": "kube-dns", "type": "ClusterIP", "cluster_ips": ["10.96.0.10"],
     "ports": [{"name": "dns", "port": 53, "target_port": 53, "protocol": "UDP"}],
     "endpoints": [{"ip": "10.244.1.2", "pod": "kube-system/coredns-0", "node": "node-1", "ready": true}]},
    {"namespace": "tidb", "name": "demo-pd", "type": "ClusterIP", "cluster_ips": ["10.96.0.20"],
     "ports": [{"name": "client", "port": 2379, "target_port": 2379}],
     "endpoints": [{"ip": "10.244.1.3", "pod": "tidb/demo-pd-0", "node": "node-1", "ready": true},
                   {"ip": "10.244.2.3", "pod": "tidb/demo-pd-1", "node": "node-2", "ready": true}]}
  ]
}"#;

fn settings() -> ClusterSettings {
    ClusterSettings {
        name: "test".into(),
        domain: "cluster.local".into(),
        service_cidrs: vec!["10.96.0.0/16".parse().unwrap()],
        node_cidrs: Vec::new(),
        dns_service: "kube-system/kube-dns".parse().unwrap(),
        proxy_mode: ProxyMode::Iptables,
    }
}

async fn wait_for(
    rx: &mut watch::Receiver<Inventory>,
    what: &str,
    pred: impl Fn(&Inventory) -> bool,
) -> Inventory {
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            {
                let inv = rx.borrow_and_update();
                if pred(&inv) {
                    return inv.clone();
                }
            }
            rx.changed().await.unwrap();
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("the inventory never showed {what}; now:\n{}", rx.borrow().to_yaml()))
}

fn pod_ref(s: &str) -> PodRef {
    s.parse().unwrap()
}

/// The Namespaces the fake serves for `inventory`, as the collector reads them.
fn api_namespaces(inventory: &Inventory) -> Vec<netdiag_model::netpol::NamespaceObject> {
    let mut out: Vec<netdiag_model::netpol::NamespaceObject> = seed::objects(inventory)
        .namespaces
        .iter()
        .map(|n| serde_json::from_value(serde_json::to_value(n).unwrap()).unwrap())
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

async fn started() -> (FakeKube, Inventory, watch::Receiver<Inventory>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TLOG").unwrap_or("warn".into()))
        .with_test_writer()
        .try_init();
    let fake = FakeKube::start().await.unwrap();
    fake.set_bookmark_interval(Duration::from_millis(100));
    let mut inventory = Inventory::from_yaml(INVENTORY).unwrap();
    fake.seed(&inventory).unwrap();
    // The API also serves the Namespaces the pods and services name.
    inventory.namespaces = api_namespaces(&inventory);
    let rx = kube_inventory::start(fake.config(), settings(), Duration::from_secs(10)).await.unwrap();
    (fake, inventory, rx)
}

#[tokio::test]
async fn the_inventory_follows_pods_and_endpoints() {
    let (fake, expected, mut rx) = started().await;
    assert_eq!(*rx.borrow(), expected, "the first list");
    for _ in 0..50 {
        if fake.open_watches() == Kind::INVENTORY.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fake.open_watches(), Kind::INVENTORY.len(), "one watch per kind");

    // A pod appears.
    let mut extra = expected.pods[1].clone();
    extra.name = "demo-pd-2".parse().unwrap();
    extra.ips = vec!["10.244.1.4".parse().unwrap()];
    fake.apply(&seed::pod(&extra, None)).unwrap();
    wait_for(&mut rx, "demo-pd-2", |i| i.pod(&pod_ref("tidb/demo-pd-2")).is_some()).await;

    // It moves: deleted, recreated on node-2 with a new IP (a StatefulSet pod rescheduled).
    assert!(fake.delete(Kind::Pod, "tidb", "demo-pd-2"));
    extra.node = "node-2".parse().unwrap();
    extra.ips = vec!["10.244.2.9".parse().unwrap()];
    fake.apply(&seed::pod(&extra, None)).unwrap();
    let inv = wait_for(&mut rx, "demo-pd-2 on node-2", |i| {
        i.pod(&pod_ref("tidb/demo-pd-2")).is_some_and(|p| p.node.as_str() == "node-2")
    })
    .await;
    assert_eq!(inv.pod(&pod_ref("tidb/demo-pd-2")).unwrap().ips, extra.ips);

    // An endpoint turns unready (the EndpointSlice is updated).
    let mut svc = expected.services[1].clone();
    svc.endpoints[1].ready = false;
    for s in seed::endpoint_slices(&svc) {
        fake.apply(&s).unwrap();
    }
    let inv = wait_for(&mut rx, "an unready demo-pd endpoint", |i| {
        i.services[1].endpoints.iter().any(|e| !e.ready)
    })
    .await;
    assert_eq!(inv.services[1].ready_endpoints().count(), 1);

    // The pod disappears.
    assert!(fake.delete(Kind::Pod, "tidb", "demo-pd-2"));
    wait_for(&mut rx, "demo-pd-2 gone", |i| i.pod(&pod_ref("tidb/demo-pd-2")).is_none()).await;

    // Bookmarks flowed and broke nothing: no watch was answered with 410, nothing re-listed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = fake.stats();
    assert!(stats.bookmarks >= 4, "{stats:?}");
    assert_eq!(stats.gone, 0, "{stats:?}");
    assert!(stats.lists.values().all(|n| *n == 1), "{stats:?}");
    let mut back = expected.clone();
    back.services[1].endpoints[1].ready = false;
    assert_eq!(*rx.borrow(), back);
}

#[tokio::test]
async fn a_410_gone_makes_the_watchers_list_again() {
    let (fake, expected, mut rx) = started().await;
    assert_eq!(fake.stats().lists.values().sum::<u64>(), Kind::INVENTORY.len() as u64);
    // Compact the history and drop every watch; while the watchers reconnect, a pod goes away.
    // Resuming from their last version gets 410, so only a fresh list can show the deletion.
    fake.expire_history();
    assert!(fake.delete(Kind::Pod, "tidb", "demo-pd-1"));
    let inv = wait_for(&mut rx, "demo-pd-1 gone", |i| i.pod(&pod_ref("tidb/demo-pd-1")).is_none()).await;
    // The pods' watcher alone explains the deletion; the other kinds get their 410 and list
    // again on their own schedule (each watcher backs off independently).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline
        && !Kind::INVENTORY.iter().all(|k| fake.stats().lists.get(k).copied().unwrap_or(0) >= 2)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = fake.stats();
    assert!(stats.gone >= Kind::INVENTORY.len() as u64, "every kind resumed into 410: {stats:?}");
    for kind in Kind::INVENTORY {
        assert!(stats.lists.get(&kind).copied().unwrap_or(0) >= 2, "{kind:?} listed again: {stats:?}");
    }
    // The endpoint of the deleted pod is still listed in its (unchanged) slice: kept, without
    // its pod, as the API would show it until the controller catches up.
    let mut want = expected.clone();
    want.pods.retain(|p| p.name.as_str() != "demo-pd-1");
    want.services[1].endpoints[1].pod = None;
    assert_eq!(inv, want);

    // And watching resumed: later changes still arrive.
    let mut pd = expected.pod(&pod_ref("tidb/demo-pd-1")).unwrap().clone();
    pd.ips = vec!["10.244.2.30".parse().unwrap()];
    fake.apply(&seed::pod(&pd, None)).unwrap();
    let inv = wait_for(&mut rx, "demo-pd-1 back", |i| i.pod(&pod_ref("tidb/demo-pd-1")).is_some()).await;
    assert_eq!(inv.pod(&pod_ref("tidb/demo-pd-1")).unwrap().ips, pd.ips);
}

#[tokio::test]
async fn no_api_server_is_a_clear_error() {
    let fake = FakeKube::start().await.unwrap();
    let config = fake.config();
    let url = fake.url();
    drop(fake);
    let err = kube_inventory::start(config, settings(), Duration::from_millis(1500)).await.unwrap_err();
    assert!(matches!(err, KubeInventoryError::NotReady { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&url) && text.contains("--kubeconfig") && text.contains("Pods"), "{text}");
}

#[tokio::test]
async fn a_kubeconfig_file_points_the_client_at_the_server() {
    let fake = FakeKube::start().await.unwrap();
    fake.seed(&Inventory::from_yaml(INVENTORY).unwrap()).unwrap();
    let dir = std::env::temp_dir().join(format!("netdiag-kubeconfig-{}", std::process::id()));
    fake.write_kubeconfig(&dir).unwrap();
    let config = kube_inventory::client_config(Some(&dir)).await.unwrap();
    let _ = std::fs::remove_file(&dir);
    let rx = kube_inventory::start(config, settings(), Duration::from_secs(10)).await.unwrap();
    assert_eq!(rx.borrow().pods.len(), 3);
    let missing = kube_inventory::client_config(Some(std::path::Path::new("/nonexistent/kubeconfig"))).await;
    assert!(missing.unwrap_err().to_string().contains("/nonexistent/kubeconfig"));
}
