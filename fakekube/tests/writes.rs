//! What the fake accepts as writes, through the real kube-rs client: core/v1 Events created,
//! patched and listed by field selector; a Node's status patched with a strategic merge patch
//! that keeps the other conditions; RBAC refusals; and real `kubectl describe node` showing both.

#![allow(clippy::unwrap_used)]

use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use netdiag_fakekube::{FakeKube, Kind};
use serde_json::json;

fn node_3() -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": "node-3"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]},
    }))
    .unwrap()
}

fn event(name: &str, namespace: &str, node_uid: &str) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {"kind": "Node", "name": "node-3", "uid": node_uid, "apiVersion": "v1"},
        "reason": "node-isolated",
        "message": "node-3 is cut off",
        "type": "Warning",
        "count": 1,
        "source": {"component": "netdiag-collector"},
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "lastTimestamp": "2026-01-01T00:00:00Z",
    }))
    .unwrap()
}

#[tokio::test]
async fn events_and_node_status_are_written_as_the_api_server_would() {
    let fake = FakeKube::start().await.unwrap();
    fake.apply(&node_3()).unwrap();
    let client = kube::Client::try_from(fake.config()).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let uid = nodes.get("node-3").await.unwrap().metadata.uid.unwrap();

    // A condition is added by a strategic merge patch; Ready survives.
    let cond =
        json!({"type": "NetdiagNetwork", "status": "True", "reason": "node-isolated", "message": "cut off"});
    let patch = json!({"status": {"conditions": [cond]}});
    let n = nodes.patch_status("node-3", &PatchParams::default(), &Patch::Strategic(&patch)).await.unwrap();
    let rv = n.metadata.resource_version.clone();
    let stored = fake.object(Kind::Node, "", "node-3").unwrap();
    assert_eq!(
        stored["status"]["conditions"],
        json!([{"type": "Ready", "status": "True", "reason": "KubeletReady"}, cond])
    );
    // The same patch again changes nothing: no new resource version.
    let again =
        nodes.patch_status("node-3", &PatchParams::default(), &Patch::Strategic(&patch)).await.unwrap();
    assert_eq!(again.metadata.resource_version, rv);
    // A status patch cannot touch anything but the status.
    let sneaky = json!({"metadata": {"labels": {"x": "y"}}, "spec": {"unschedulable": true}, "status": {"conditions": []}});
    nodes.patch_status("node-3", &PatchParams::default(), &Patch::Merge(&sneaky)).await.unwrap();
    let stored = fake.object(Kind::Node, "", "node-3").unwrap();
    assert!(stored["spec"].is_null() && stored["metadata"]["labels"].is_null(), "{stored}");
    assert_eq!(stored["status"]["conditions"], json!([]), "a merge patch replaces the list");
    let _ = nodes.patch_status("node-3", &PatchParams::default(), &Patch::Strategic(&patch)).await.unwrap();

    // Events: created once (409 after), patched, listed by what `kubectl describe` selects.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let created = events.create(&PostParams::default(), &event("node-3.1", "default", &uid)).await.unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let dup = events.create(&PostParams::default(), &event("node-3.1", "default", &uid)).await.unwrap_err();
    assert!(matches!(&dup, kube::Error::Api(s) if s.code == 409), "{dup:?}");
    let bump =
        json!({"count": 2, "lastTimestamp": "2026-01-01T00:05:00Z", "message": "node-3 is cut off again"});
    events.patch("node-3.1", &PatchParams::default(), &Patch::Merge(&bump)).await.unwrap();
    let stored = fake.object(Kind::Event, "default", "node-3.1").unwrap();
    assert_eq!(
        (stored["count"].clone(), stored["message"].clone()),
        (json!(2), json!("node-3 is cut off again"))
    );
    assert_eq!(stored["reason"], "node-isolated", "the rest kept");
    // An event about a cluster-scoped object lives in "default" (or ""), never elsewhere.
    let elsewhere: Api<Event> = Api::namespaced(client.clone(), "kube-system");
    let bad =
        elsewhere.create(&PostParams::default(), &event("node-3.2", "kube-system", &uid)).await.unwrap_err();
    assert!(matches!(&bad, kube::Error::Api(s) if s.code == 422), "{bad:?}");
    let all: Api<Event> = Api::all(client.clone());
    let selector = format!(
        "involvedObject.name=node-3,involvedObject.namespace=,involvedObject.kind=Node,involvedObject.uid={uid}"
    );
    assert_eq!(all.list(&ListParams::default().fields(&selector)).await.unwrap().items.len(), 1);
    let other = "involvedObject.kind=Node,involvedObject.uid=node-3";
    assert_eq!(all.list(&ListParams::default().fields(other)).await.unwrap().items.len(), 0);

    // RBAC refusals carry the API server's words.
    fake.forbid("patch", "nodes/status");
    let e =
        nodes.patch_status("node-3", &PatchParams::default(), &Patch::Strategic(&patch)).await.unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 403 && s.message.contains("cannot patch resource \"nodes/status\"")),
        "{e:?}"
    );
    fake.forbid("create", "events");
    let e = events.create(&PostParams::default(), &event("node-3.3", "default", &uid)).await.unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 403), "{e:?}");
    fake.allow("create", "events");
    events.create(&PostParams::default(), &event("node-3.3", "default", &uid)).await.unwrap();
    let stats = fake.stats();
    assert_eq!(stats.creates.get(&Kind::Event), Some(&2), "{stats:?}");
    assert_eq!(stats.patches.get(&Kind::Node), Some(&4), "refused ones are not answered: {stats:?}");

    // Real kubectl shows the condition and the events.
    let dir = std::env::temp_dir().join(format!("fakekube-writes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["describe", "node", "node-3"])
        .output()
        .await
        .expect("kubectl is installed (scripts/deps)");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("NetdiagNetwork"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("True") && line.contains("node-isolated") && line.contains("cut off"), "{line}");
    assert!(text.contains("node-3 is cut off again"), "the event is listed:\n{text}");
}
