//! The collector in `kubernetes` mode, its inventory watched from a fake API server seeded with
//! the lab's inventory file, builds the same matrix as in file mode on an identically shaped
//! lab: the same cells (level, source, destination, kind) with the same statuses.
//!
//! And in that mode it reports to the API: a node the diagnosis blames gets the NetdiagNetwork
//! condition and an Event, both cleared with the finding, as `kubectl describe node` shows.
//!
//! Needs root (the lab) and kubectl. The two labs of the first test run one after the other.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netdiag_collector::history::Transition;
use netdiag_fakekube::{FakeKube, Kind};
use netdiag_model::inventory::Inventory;
use netdiag_model::matrix::CellStatus;
use netdiag_tests::cluster::{LabCluster, cell_diff, describe_findings};
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
    // The API serves a Namespace for every namespace the pods and services name.
    let mut namespaces: Vec<netdiag_model::netpol::NamespaceObject> = netdiag_fakekube::seed::objects(&inv)
        .namespaces
        .iter()
        .map(|n| serde_json::from_value(serde_json::to_value(n).unwrap()).unwrap())
        .collect();
    namespaces.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    inv.namespaces = namespaces;
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
    assert_eq!(lists.len(), 6, "the collector listed all six kinds: {lists:?}");
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

/// Waits (polling every 100 ms, up to `limit`) for `check` on the fake API server's objects.
fn wait_api<T>(c: &LabCluster, limit: Duration, what: &str, check: impl Fn(&FakeKube) -> Option<T>) -> T {
    let fake = &c.kube.as_ref().unwrap().fake;
    match c.wait_for(limit, |_| check(fake)) {
        Some((v, _)) => v,
        None => panic!(
            "{what}: not within {limit:?}; node-3 {:#}\nevents {:#}\nfindings:\n  {}",
            fake.object(Kind::Node, "", "node-3").unwrap_or_default(),
            serde_json::Value::Array(fake.objects(Kind::Event)),
            describe_findings(&c.diagnosis().findings)
        ),
    }
}

/// node-3's NetdiagNetwork condition, when it has `status` and `reason`.
fn netdiag_condition(fake: &FakeKube, status: &str, reason: &str) -> Option<serde_json::Value> {
    let node = fake.object(Kind::Node, "", "node-3")?;
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "NetdiagNetwork" && c["status"] == status && c["reason"] == reason)
        .cloned()
}

/// The node-isolated Events about node-3 of `type_` (`Warning`, `Normal`).
fn node_3_events(fake: &FakeKube, type_: &str) -> Vec<serde_json::Value> {
    fake.objects(Kind::Event)
        .into_iter()
        .filter(|e| {
            e["involvedObject"]["name"] == "node-3" && e["type"] == type_ && e["reason"] == "node-isolated"
        })
        .collect()
}

fn kubectl_describe_node_3(fake: &FakeKube, lab: &str) -> String {
    let path = std::env::temp_dir().join(format!("netdiag-kubeconfig-{lab}"));
    fake.write_kubeconfig(&path).unwrap();
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&path)
        .args(["describe", "node", "node-3"])
        .output()
        .expect("kubectl is installed");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl describe node node-3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The line of `kubectl describe`'s Conditions table for NetdiagNetwork.
fn condition_line(describe: &str) -> &str {
    describe
        .lines()
        .find(|l| l.trim_start().starts_with("NetdiagNetwork"))
        .unwrap_or_else(|| panic!("no NetdiagNetwork condition in:\n{describe}"))
}

#[test]
fn a_blamed_node_gets_the_condition_and_events_and_both_clear_with_the_finding() {
    let c = LabCluster::start_kubernetes(TestLab::up(), INTERVAL);
    let fake = &c.kube.as_ref().unwrap().fake;
    let seeded = fake.object(Kind::Node, "", "node-3").unwrap();
    let uid = seeded["metadata"]["uid"].clone();
    c.warm_up();
    let healthy = c.diagnosis();
    assert!(healthy.findings.is_empty(), "a healthy lab:\n  {}", describe_findings(&healthy.findings));
    assert!(fake.objects(Kind::Event).is_empty(), "no finding, no event");
    assert_eq!(fake.stats().patches.values().sum::<u64>(), 0, "nothing blamed, nothing written");

    c.lab.fault("node-isolate node-3");
    let limit = INTERVAL * 6;
    // (While the fault takes hold, packet-loss or node-pair findings may blame node-3 first:
    // the condition then moves on to node-isolated.)
    let condition = wait_api(&c, limit, "node-3's NetdiagNetwork condition True, node-isolated", |f| {
        netdiag_condition(f, "True", "node-isolated")
            .filter(|c| !c["message"].as_str().unwrap_or("").contains("(also:"))
    });
    // The verdict the finding appeared with (the transition the event reports).
    let appeared = c
        .collector
        .finding_events(100)
        .into_iter()
        .find(|e| e.key == "node-isolated node-3" && e.transition == Transition::Appeared)
        .expect("the history recorded node-isolated appearing");
    let message = condition["message"].as_str().unwrap();
    assert!(
        message.starts_with("node node-3 is cut off: every path in and out of it fails (")
            && message.ends_with("other nodes reach each other"),
        "the condition's message is the verdict, alone: {message}"
    );
    // True since the first finding blamed node-3; written last when node-isolated did.
    let (at, beat) = (condition["lastTransitionTime"].clone(), condition["lastHeartbeatTime"].clone());
    assert!(beat.as_str() >= at.as_str(), "{condition:#}");
    assert_eq!(
        condition,
        serde_json::json!({
            "type": "NetdiagNetwork",
            "status": "True",
            "reason": "node-isolated",
            "message": message,
            "lastTransitionTime": at,
            "lastHeartbeatTime": beat,
        })
    );
    let node = fake.object(Kind::Node, "", "node-3").unwrap();
    let others: Vec<&serde_json::Value> = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] != "NetdiagNetwork")
        .collect();
    let seeded_conditions: Vec<&serde_json::Value> =
        seeded["status"]["conditions"].as_array().unwrap().iter().collect();
    assert_eq!(others, seeded_conditions, "the kubelet's conditions survive the patch");
    assert_eq!(node["spec"], seeded["spec"]);

    let warnings = wait_api(&c, limit, "a Warning event on node-3", |f| {
        Some(node_3_events(f, "Warning")).filter(|e| !e.is_empty())
    });
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let w = &warnings[0];
    let name = w["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("node-3."), "{name}");
    assert_eq!(w["firstTimestamp"], w["lastTimestamp"]);
    assert_eq!(
        (
            &w["metadata"]["namespace"],
            &w["involvedObject"],
            &w["reason"],
            &w["message"],
            &w["count"],
            &w["source"],
            &w["reportingComponent"]
        ),
        (
            &serde_json::json!("default"),
            &serde_json::json!({"apiVersion": "v1", "kind": "Node", "name": "node-3", "uid": uid}),
            &serde_json::json!("node-isolated"),
            &serde_json::json!(appeared.verdict),
            &serde_json::json!(1),
            &serde_json::json!({"component": "netdiag-collector"}),
            &serde_json::json!("netdiag-collector"),
        )
    );
    // Every event is a transition the history recorded, on an object its finding blamed.
    let transitions = c.collector.finding_events(1000);
    for e in fake.objects(Kind::Event) {
        let o = &e["involvedObject"];
        let object = match o["namespace"].as_str() {
            Some(ns) => format!("{ns}/{}", o["name"].as_str().unwrap()),
            None => o["name"].as_str().unwrap().to_owned(),
        };
        let names = |culprit: &str| {
            culprit == object
                || culprit.strip_prefix(&object).is_some_and(|rest| rest.starts_with(':'))
                // A destination seen from a group of sources: `tidb/demo-pd-2 from node node-2`.
                || culprit.strip_prefix(&object).is_some_and(|rest| rest.starts_with(" from "))
                || culprit.split(['↔', '→']).any(|n| n == object)
        };
        assert!(
            transitions.iter().any(|t| e["reason"] == t.id.as_str()
                && t.culprit.as_ref().is_some_and(|c| names(c.name.as_str()))),
            "an event without its transition: {e:#}"
        );
    }

    // Written on change only: more rounds with the same finding write nothing.
    let patches = fake.stats().patches.get(&Kind::Node).copied();
    std::thread::sleep(INTERVAL * 3);
    assert_eq!(fake.stats().patches.get(&Kind::Node).copied(), patches, "no PATCH while nothing changes");

    let describe = kubectl_describe_node_3(fake, c.lab.name());
    let line = condition_line(&describe);
    assert!(line.contains("True") && line.contains("node-isolated"), "{line}");
    assert!(line.contains("node node-3 is cut off"), "the verdict in kubectl describe: {line}");
    assert!(
        describe
            .lines()
            .any(|l| l.contains("Warning") && l.contains("node-isolated") && l.contains("netdiag-collector")),
        "the event in kubectl describe:\n{describe}"
    );

    c.lab.heal();
    let cleared = wait_api(&c, limit, "node-3's NetdiagNetwork condition False", |f| {
        netdiag_condition(f, "False", "NetworkOk")
    });
    let at = cleared["lastTransitionTime"].clone();
    assert_ne!(at, condition["lastTransitionTime"]);
    assert_eq!(
        cleared,
        serde_json::json!({
            "type": "NetdiagNetwork",
            "status": "False",
            "reason": "NetworkOk",
            "message": "no netdiag finding blames this node",
            "lastTransitionTime": at,
            "lastHeartbeatTime": at,
        })
    );
    let normal = wait_api(&c, limit, "a Normal event on node-3", |f| {
        Some(node_3_events(f, "Normal")).filter(|e| !e.is_empty())
    });
    assert_eq!(normal.len(), 1, "{normal:#?}");
    let n = &normal[0];
    assert_eq!(
        (&n["reason"], &n["count"], &n["involvedObject"]["uid"]),
        (&serde_json::json!("node-isolated"), &serde_json::json!(1), &uid)
    );
    let text = n["message"].as_str().unwrap();
    assert!(text.starts_with("cleared after ") && text.contains("node node-3 is cut off"), "{text}");
    assert_eq!(node_3_events(fake, "Warning"), warnings, "the appearance's event stays as it was");

    let describe = kubectl_describe_node_3(fake, c.lab.name());
    let line = condition_line(&describe);
    assert!(
        line.contains("False")
            && line.contains("NetworkOk")
            && line.contains("no netdiag finding blames this node"),
        "{line}"
    );
    assert!(
        describe
            .lines()
            .any(|l| l.contains("Normal") && l.contains("node-isolated") && l.contains("cleared after")),
        "the clearing event in kubectl describe:\n{describe}"
    );
}
