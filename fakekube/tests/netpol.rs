//! NetworkPolicies and Namespaces through the fake API server: the real kube-rs client lists,
//! gets and watches them with its typed `Api`s, and the real kubectl finds them by discovery
//! (`kubectl get networkpolicies -A`, `kubectl get netpol`, `kubectl get ns`). Seeded from the
//! policy lab's inventory (`lab/topologies/default.yaml`).

// Helpers here panic on purpose: a panic is how a test reports what it found.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use netdiag_fakekube::FakeKube;
use netdiag_lab::plan::LabPlan;
use netdiag_lab::topology::{DEFAULT_TOPOLOGY, Topology};
use netdiag_model::inventory::Inventory;

fn inventory() -> Inventory {
    let plan = LabPlan::from_topology(&Topology::parse(DEFAULT_TOPOLOGY).unwrap()).unwrap();
    plan.inventory(std::path::Path::new("/run/netdiag/lab"))
}

async fn seeded() -> (FakeKube, kube::Client) {
    let fake = FakeKube::start().await.unwrap();
    fake.seed(&inventory()).unwrap();
    let client = kube::Client::try_from(fake.config()).unwrap();
    (fake, client)
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    let mut v: Vec<String> = items
        .iter()
        .map(|o| {
            let m = o.meta();
            format!("{}/{}", m.namespace.clone().unwrap_or_default(), m.name.clone().unwrap_or_default())
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn typed_apis_list_and_get_policies_and_namespaces() {
    let (_fake, client) = seeded().await;
    let all: Api<NetworkPolicy> = Api::all(client.clone());
    let list = all.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        names(&list.items),
        [
            "monitoring/prometheus-egress",
            "tidb/allow-same-namespace-and-monitoring",
            "tidb/default-deny-ingress",
            "tidb/pd-client-and-peers",
            "tidb/tikv-egress",
        ]
    );
    let tidb: Api<NetworkPolicy> = Api::namespaced(client.clone(), "tidb");
    assert_eq!(tidb.list(&ListParams::default()).await.unwrap().items.len(), 4);
    let pd = tidb.get("pd-client-and-peers").await.unwrap();
    let spec = pd.spec.unwrap();
    // Served defaulted, as the API server stores it.
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
    let ports = spec.ingress.unwrap()[0].ports.clone().unwrap();
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    assert_eq!(
        ports[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("client".into()))
    );
    let tikv = tidb.get("tikv-egress").await.unwrap().spec.unwrap();
    assert_eq!(tikv.policy_types, Some(vec!["Egress".to_owned()]));
    assert!(tidb.get("nope").await.is_err());

    let ns: Api<Namespace> = Api::all(client.clone());
    let list = ns.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&list.items), ["/kube-system", "/monitoring", "/tidb"]);
    let monitoring = ns.get("monitoring").await.unwrap();
    let labels = monitoring.metadata.labels.unwrap();
    assert_eq!(
        labels,
        BTreeMap::from([
            ("kubernetes.io/metadata.name".to_owned(), "monitoring".to_owned()),
            ("team".to_owned(), "monitoring".to_owned()),
        ])
    );
    let selected = ns.list(&ListParams::default().labels("team=monitoring")).await.unwrap();
    assert_eq!(names(&selected.items), ["/monitoring"]);

    // What the diagnosis will read back: the same policies and namespaces as the inventory.
    let inv = inventory();
    let back: Vec<netdiag_model::netpol::NetworkPolicy> = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| serde_json::from_value(serde_json::to_value(p).unwrap()).unwrap())
        .collect();
    for p in &inv.network_policies {
        let want = p.check().unwrap();
        let got = back
            .iter()
            .find(|b| b.metadata.name == p.metadata.name && b.metadata.namespace == p.metadata.namespace)
            .unwrap()
            .check()
            .unwrap();
        assert_eq!(got, want, "{:?} changed on its way through the API", p.metadata.name);
    }
}

#[tokio::test]
async fn a_policy_free_inventory_still_has_its_namespaces() {
    let plan = LabPlan::from_topology(&Topology::open_lab().unwrap()).unwrap();
    let fake = FakeKube::start().await.unwrap();
    fake.seed(&plan.inventory(std::path::Path::new("/run/netdiag/lab"))).unwrap();
    let client = kube::Client::try_from(fake.config()).unwrap();
    let ns: Api<Namespace> = Api::all(client.clone());
    assert_eq!(names(&ns.list(&ListParams::default()).await.unwrap().items), ["/kube-system", "/tidb"]);
    let np: Api<NetworkPolicy> = Api::all(client);
    assert!(np.list(&ListParams::default()).await.unwrap().items.is_empty());
}

#[tokio::test]
async fn watches_see_policies_and_namespaces_come_and_go() {
    let (fake, client) = seeded().await;
    let tidb: Api<NetworkPolicy> = Api::namespaced(client.clone(), "tidb");
    let rv = tidb.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut events = tidb.watch(&WatchParams::default().timeout(10), &rv).await.unwrap().boxed();

    let mut extra = netdiag_fakekube::seed::network_policy(&inventory().network_policies[0]).unwrap();
    extra.metadata.name = Some("deny-all-again".into());
    fake.apply(&extra).unwrap();
    // One in another namespace: the namespaced watch must not see it.
    let mut elsewhere = extra.clone();
    elsewhere.metadata.namespace = Some("monitoring".into());
    fake.apply(&elsewhere).unwrap();
    assert!(fake.delete(netdiag_fakekube::Kind::NetworkPolicy, "tidb", "deny-all-again"));

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev =
            tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.unwrap().unwrap().unwrap();
        match ev {
            WatchEvent::Added(p) => seen.push(format!("ADDED {}", p.metadata.name.unwrap())),
            WatchEvent::Deleted(p) => seen.push(format!("DELETED {}", p.metadata.name.unwrap())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED deny-all-again", "DELETED deny-all-again"]);

    let ns: Api<Namespace> = Api::all(client);
    let mut events = ns.watch(&WatchParams::default().timeout(10), "0").await.unwrap().boxed();
    let mut initial = Vec::new();
    for _ in 0..3 {
        match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.unwrap().unwrap().unwrap()
        {
            WatchEvent::Added(n) => initial.push(n.metadata.name.unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    initial.sort();
    assert_eq!(initial, ["kube-system", "monitoring", "tidb"]);
    fake.apply(&netdiag_fakekube::seed::namespace("batch", None)).unwrap();
    match tokio::time::timeout(Duration::from_secs(5), events.try_next()).await.unwrap().unwrap().unwrap() {
        WatchEvent::Added(n) => assert_eq!(n.metadata.name.as_deref(), Some("batch")),
        other => panic!("unexpected {other:?}"),
    }
}

/// The real kubectl (installed on this machine: the test fails if it is missing) against the
/// fake, through discovery and short names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_networkpolicies_and_namespaces() {
    let (fake, _client) = seeded().await;
    let dir = std::env::temp_dir().join(format!("fakekube-kubectl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("config");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    let kubectl = |args: &'static [&'static str]| {
        let kubeconfig = kubeconfig.clone();
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("kubectl")
                .args(args)
                .env("KUBECONFIG", &kubeconfig)
                .env("HOME", &dir)
                .output()
                .expect("kubectl is installed");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "kubectl {args:?}: {}{text}", String::from_utf8_lossy(&out.stderr));
            text
        })
    };
    let all = kubectl(&["get", "networkpolicies", "-A"]).await.unwrap();
    for want in ["tidb", "default-deny-ingress", "pd-client-and-peers", "monitoring", "prometheus-egress"] {
        assert!(all.contains(want), "{want} missing from:\n{all}");
    }
    let short = kubectl(&["get", "netpol", "-n", "tidb", "-o", "name"]).await.unwrap();
    let mut lines: Vec<&str> = short.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "networkpolicy.networking.k8s.io/allow-same-namespace-and-monitoring",
            "networkpolicy.networking.k8s.io/default-deny-ingress",
            "networkpolicy.networking.k8s.io/pd-client-and-peers",
            "networkpolicy.networking.k8s.io/tikv-egress",
        ]
    );
    let one =
        kubectl(&["get", "netpol", "-n", "monitoring", "prometheus-egress", "-o", "json"]).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(v["spec"]["egress"][0]["to"][0]["ipBlock"]["except"][0], "10.244.1.0/24");
    let ns = kubectl(&["get", "ns", "-l", "team=monitoring", "-o", "name"]).await.unwrap();
    assert_eq!(ns.trim(), "namespace/monitoring");
    let _ = std::fs::remove_dir_all(&dir);
}
