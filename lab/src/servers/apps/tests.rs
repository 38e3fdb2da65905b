//! Routing tests for the app listeners and the shape of PD's members and health JSON.

use serde_json::{Value, json};

use super::*;
use crate::servers::pd_api::PdMember;

fn get(path: &str) -> RequestHead {
    RequestHead { method: "GET".into(), path: path.into(), minor_version: 1, headers: vec![] }
}

pub(crate) fn pd_cluster() -> PdCluster {
    let ns = "tidb".parse().unwrap();
    let peer = "demo-pd-peer".parse().unwrap();
    let members = (0..3)
        .map(|i| {
            let pod = format!("demo-pd-{i}").parse().unwrap();
            PdMember::in_peer_service(&pod, &peer, &ns, Port::new(2379).unwrap(), Port::new(2380).unwrap())
        })
        .collect();
    PdCluster::new(members)
}

fn pd_app() -> AppInfo {
    AppInfo::new(
        "tidb/demo-pd-0".parse().unwrap(),
        vec!["10.244.1.2".parse().unwrap()],
        Port::new(2379).unwrap(),
        AppKind::Pd,
    )
    .with_pd_api(pd_cluster())
}

fn body(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn every_app_says_who_it_is() {
    let tikv =
        AppInfo::new("tidb/demo-tikv-1".parse().unwrap(), vec![], Port::new(20160).unwrap(), AppKind::Tikv);
    for path in ["/", "/healthz"] {
        let r = route(&tikv, &get(path));
        assert_eq!(r.status, Status::Ok);
        assert_eq!(body(&r), json!({"pod": "tidb/demo-tikv-1", "port": 20160, "app": "tikv"}));
    }
    assert_eq!(
        body(&route(&pd_app(), &get("/"))),
        json!({"pod": "tidb/demo-pd-0", "port": 2379, "app": "pd"})
    );
}

#[test]
fn pd_api_only_where_the_caller_enabled_it() {
    let members = route(&pd_app(), &get("/pd/api/v1/members"));
    assert_eq!(members.status, Status::Ok);
    let mut peer_port = pd_app();
    peer_port.pd = None;
    peer_port.port = Port::new(2380).unwrap();
    assert_eq!(route(&peer_port, &get("/pd/api/v1/members")).status, Status::NotFound);
    for path in ["/pd/api/v1", "/pd/api/v1/members/", "/healthz/x", "*"] {
        assert_eq!(route(&pd_app(), &get(path)).status, Status::NotFound, "{path}");
    }
}

#[test]
fn members_json_is_shaped_like_pds() {
    let v = body(&route(&pd_app(), &get("/pd/api/v1/members")));
    let cluster_id = v["header"]["cluster_id"].as_u64().unwrap();
    assert_eq!(cluster_id, pd_cluster().cluster_id);
    let names: Vec<&str> =
        v["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["demo-pd-0", "demo-pd-1", "demo-pd-2"]);
    let first = &v["members"][0];
    assert_eq!(first["peer_urls"], json!(["http://demo-pd-0.demo-pd-peer.tidb.svc:2380"]));
    assert_eq!(first["client_urls"], json!(["http://demo-pd-0.demo-pd-peer.tidb.svc:2379"]));
    assert!(first["member_id"].as_u64().unwrap() != 0);
    assert_eq!(v["leader"], *first);
    assert_eq!(v["etcd_leader"], *first);
    let ids: std::collections::BTreeSet<u64> =
        v["members"].as_array().unwrap().iter().map(|m| m["member_id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 3, "member ids are distinct");
}

#[test]
fn ids_are_stable_and_order_independent() {
    let mut reversed = pd_cluster().members;
    reversed.reverse();
    assert_eq!(PdCluster::new(reversed).cluster_id, pd_cluster().cluster_id);
    assert_eq!(PdCluster::new(vec![]).leader(), None);
    let empty = HttpResponse::json(Status::Ok, &PdCluster::new(vec![]).members_response());
    assert_eq!(
        body(&empty),
        json!({"header": {"cluster_id": PdCluster::new(vec![]).cluster_id}, "members": []})
    );
}

#[test]
fn health_lists_every_member() {
    let v = body(&route(&pd_app(), &get("/pd/api/v1/health")));
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|m| m["health"] == json!(true) && m["client_urls"].is_array()));
}

#[test]
fn head_and_other_methods() {
    let mut head = get("/healthz");
    head.method = "HEAD".into();
    let r = route(&pd_app(), &head);
    assert!(r.head_only && r.status == Status::Ok && !r.body.is_empty());
    let mut post = get("/healthz");
    post.method = "POST".into();
    assert_eq!(route(&pd_app(), &post).status, Status::MethodNotAllowed);
}
