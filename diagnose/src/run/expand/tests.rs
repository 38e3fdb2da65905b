//! Expansion against the lab-shaped inventory the localization tables use.

use std::net::IpAddr;

use netdiag_model::inventory::{Inventory, TrafficPolicy};
use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::run::ProbeRunRequest;
use netdiag_model::run_plan::StepAction;

use super::*;
use crate::sim::INVENTORY;

fn inventory() -> Inventory {
    Inventory::from_yaml(INVENTORY).unwrap()
}

fn request(from: &str, to: &str, http: Option<&str>) -> ProbeRunRequest {
    ProbeRunRequest {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        http_path: http.map(|p| p.parse().unwrap()),
        timeout: None,
    }
}

fn plan(from: &str, to: &str, http: Option<&str>) -> ExpandedRun {
    let inv = inventory();
    let run = expand(&inv, &Scope::new(&inv, &[]), &request(from, to, http))
        .unwrap_or_else(|e| panic!("{to}: {e}"));
    run.plan.check().unwrap();
    assert_eq!(run.plan.steps.len(), run.roles.len());
    run
}

fn names(run: &ExpandedRun) -> Vec<String> {
    run.plan.steps.iter().map(|s| s.name.to_string()).collect()
}

fn refusal(from: &str, to: &str) -> (Refusal, String) {
    let inv = inventory();
    let e = expand(&inv, &Scope::new(&inv, &["192.0.2.0/24".parse().unwrap()]), &request(from, to, None))
        .unwrap_err();
    (e.refusal(), e.to_string())
}

#[test]
fn a_service_run_walks_the_runbook() {
    let run = plan("tidb/demo-tikv-0", "svc/tidb/demo-pd:2379", Some("/pd/api/v1/members"));
    assert_eq!(run.node.as_str(), "node-1", "the source's node runs it");
    let names = names(&run);
    // resolve, 2 nameserver queries, VIP tcp + http, nat-rules, then per backend icmp/tcp/http
    // (+ mtu across nodes), node pings, routes.
    assert_eq!(&names[..6], ["resolve", "nameserver", "nameserver", "tcp", "http", "nat-rules"]);
    assert_eq!(names.iter().filter(|n| *n == "icmp").count(), 3, "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "mtu").count(), 2, "pd-1 and pd-2 are on other nodes");
    assert_eq!(names.iter().filter(|n| *n == "node-icmp").count(), 2);
    assert_eq!(names.last().map(String::as_str), Some("routes"));
    match &run.plan.steps[5].action {
        StepAction::NatRules { vip, port, expected, node_port, .. } => {
            assert_eq!(vip.to_string(), "10.96.0.20");
            assert_eq!(port.get(), 2379);
            assert_eq!(expected.len(), 3);
            assert!(!node_port);
        }
        other => panic!("{other:?}"),
    }
    match &run.roles[0] {
        StepRole::Resolve { name, expect } => {
            assert_eq!(name, "demo-pd.tidb.svc");
            assert_eq!(expect, &["10.96.0.20".parse::<IpAddr>().unwrap()]);
        }
        other => panic!("{other:?}"),
    }
    // Nameservers get the full name: they do not apply the pod's search list.
    match run.plan.steps[1].action.target() {
        Some(Target::Dns { name, nameserver: Some(ns), .. }) => {
            assert_eq!(name.as_str(), "demo-pd.tidb.svc.cluster.local");
            assert_eq!(ns.to_string(), "10.96.0.10");
        }
        other => panic!("{other:?}"),
    }
    assert!(run.plan.allows("10.244.3.2".parse().unwrap()));
    assert!(!run.plan.allows("192.0.2.1".parse().unwrap()));
    assert_eq!(run.service.as_ref().map(|s| s.2), Some(3));
    assert_eq!(run.dns_culprit, "10.96.0.10 (kube-system/kube-dns)");
    // Every step's description is filled in.
    assert!(run.plan.steps.iter().all(|s| !s.description.is_empty()));
}

#[test]
fn a_nodeport_service_is_tried_on_every_node() {
    let run = plan("tidb/demo-pd-0", "svc/tidb/demo-tidb:4000", None);
    let nodeports: Vec<_> = run
        .roles
        .iter()
        .filter_map(|r| match r {
            StepRole::NodePort { node, local_endpoint, port, .. } => {
                Some((node.to_string(), *local_endpoint, port.get()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        nodeports,
        [("node-1".into(), false, 30400), ("node-2".into(), true, 30400), ("node-3".into(), true, 30400)]
    );
    let mut inv = inventory();
    inv.services.iter_mut().for_each(|s| s.external_traffic_policy = TrafficPolicy::Local);
    let run =
        expand(&inv, &Scope::new(&inv, &[]), &request("tidb/demo-pd-0", "svc/tidb/demo-tidb:4000", None))
            .unwrap();
    assert!(run.roles.iter().any(|r| matches!(r, StepRole::NodePort { local_policy: true, .. })));
}

#[test]
fn a_node_source_asks_the_nameservers_but_has_no_cluster_resolv_conf() {
    let run = plan("node/node-2", "svc/tidb/demo-discovery:10261", None);
    let names = names(&run);
    assert!(!names.contains(&"resolve".to_owned()), "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "nameserver").count(), 2);
    assert_eq!(run.node.as_str(), "node-2");
}

#[test]
fn pods_nodes_and_addresses() {
    let run = plan("tidb/demo-pd-0", "tidb/demo-pd-2:2379", None);
    assert_eq!(names(&run), ["icmp", "tcp", "mtu", "node-icmp", "routes"]);
    let run = plan("tidb/demo-pd-0", "tidb/demo-pd-1", None);
    assert_eq!(names(&run), ["icmp", "tcp", "tcp", "mtu", "node-icmp", "routes"], "each declared port");
    let run = plan("tidb/demo-pd-0", "tidb/demo-tikv-0:20160", None);
    assert_eq!(names(&run), ["icmp", "tcp", "routes"], "same node: no MTU, no node ping");
    let run = plan("tidb/demo-pd-0", "node/node-3:10250", None);
    assert_eq!(names(&run), ["icmp", "tcp", "routes"]);
    // A VIP with a port is its service; a pod IP is its pod.
    let vip = plan("tidb/demo-pd-0", "10.96.0.50:10261", None);
    assert!(vip.service.is_some());
    let pod_ip = plan("tidb/demo-pd-0", "10.244.2.2:2379", None);
    assert!(
        matches!(&pod_ip.roles[0], StepRole::Backend { pod: Some(p), .. } if p.to_string() == "tidb/demo-pd-1")
    );
}

#[test]
fn dns_targets_follow_their_answers_inside_the_scope_only() {
    // A service's name with a port: planned as the service, resolved as typed.
    let run = plan("tidb/demo-pd-0", "demo-pd.tidb:2379", None);
    assert!(run.service.is_some());
    assert!(matches!(&run.roles[0], StepRole::Resolve { name, .. } if name == "demo-pd.tidb"));
    // Any other name: resolve, then probe the answers (the agent holds them to `allowed`).
    let run = plan("tidb/demo-pd-0", "registry.example.org:443", None);
    assert_eq!(names(&run), ["resolve", "nameserver", "nameserver", "icmp", "tcp"]);
    match &run.plan.steps[4].action {
        StepAction::ProbeAnswers { resolve_step: 0, kind: ProbeKind::Tcp, port: Some(p), .. } => {
            assert_eq!(p.get(), 443)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn refusals_say_what_is_missing() {
    let cases = [
        (
            "tidb/nope",
            "svc/tidb/demo-pd:2379",
            Refusal::NotFound,
            "source pod tidb/nope is not in the inventory",
        ),
        ("node/node-9", "svc/tidb/demo-pd:2379", Refusal::NotFound, "source node node-9"),
        (
            "tidb/demo-pd-0",
            "svc/tidb/nope:2379",
            Refusal::NotFound,
            "service tidb/nope is not in the inventory",
        ),
        (
            "tidb/demo-pd-0",
            "svc/tidb/demo-pd:2380",
            Refusal::NotFound,
            "has no port 2380; its ports: 2379 (client)",
        ),
        ("tidb/demo-pd-0", "tidb/nope:1", Refusal::NotFound, "pod tidb/nope"),
        ("tidb/demo-pd-0", "node/node-9", Refusal::NotFound, "node node-9"),
        ("tidb/demo-pd-0", "8.8.8.8:53", Refusal::Forbidden, "outside cluster ranges"),
        ("tidb/demo-pd-0", "172.30.0.1", Refusal::Forbidden, "outside cluster ranges"),
    ];
    for (from, to, want, words) in cases {
        let (got, msg) = refusal(from, to);
        assert_eq!(got, want, "{from} -> {to}: {msg}");
        assert!(msg.contains(words), "{from} -> {to}: {msg}");
    }
    // The allow-list opens an address outside the cluster.
    let inv = inventory();
    let scope = Scope::new(&inv, &["192.0.2.0/24".parse().unwrap()]);
    assert!(expand(&inv, &scope, &request("tidb/demo-pd-0", "192.0.2.7:80", None)).is_ok());
    let e = expand(&inv, &scope, &request("tidb/demo-pd-0", "10.244.2.2", Some("/"))).unwrap_err();
    assert_eq!(e.refusal(), Refusal::BadRequest, "{e}");
    let e = expand(&inv, &scope, &request("tidb/demo-pd-0", "node/node-2", Some("/"))).unwrap_err();
    assert!(e.to_string().contains("needs a port"), "{e}");
}

#[test]
fn the_scope_holds_the_cluster_and_nothing_else() {
    let inv = inventory();
    let scope = Scope::new(&inv, &[]);
    for inside in ["10.244.9.9", "10.96.200.1", "172.29.0.13"] {
        assert!(scope.contains(inside.parse().unwrap()), "{inside}");
    }
    for outside in ["8.8.8.8", "172.30.0.1", "127.0.0.1", "::1"] {
        assert!(!scope.contains(outside.parse().unwrap()), "{outside}");
    }
    assert_eq!(scope.ranges().len(), 3, "narrower ranges fold into the CIDRs: {:?}", scope.ranges());
}

#[test]
fn a_large_service_is_sampled() {
    let mut inv = inventory();
    let svc = inv.services.iter_mut().find(|s| s.name.as_str() == "demo-pd").unwrap();
    let first = svc.endpoints[0].clone();
    svc.endpoints = (0..100u8)
        .map(|i| {
            let mut e = first.clone();
            e.ip = IpAddr::from([10, 244, 1, i]);
            e
        })
        .collect();
    let run =
        expand(&inv, &Scope::new(&inv, &[]), &request("tidb/demo-tikv-0", "svc/tidb/demo-pd:2379", None))
            .unwrap();
    let backends =
        run.roles.iter().filter(|r| matches!(r, StepRole::Backend { kind: ProbeKind::Icmp, .. })).count();
    assert_eq!(backends, MAX_BACKENDS);
    assert_eq!(run.service.as_ref().map(|s| s.2), Some(100), "the verdict still knows them all");
}

#[test]
fn the_agent_request_carries_the_plan() {
    let run = plan("tidb/demo-tikv-0", "svc/tidb/demo-pd:2379", None);
    let timeout = netdiag_model::RunTimeout::from_millis(1500).unwrap();
    let req = run.to_agent("run-1".parse().unwrap(), timeout);
    assert_eq!(req.plan, run.plan);
    assert_eq!(req.source, run.request.from);
    assert_eq!(req.target, run.request.to);
    assert_eq!(req.timeout, timeout);
}

#[test]
fn the_scope_of_a_large_cluster_stays_a_few_ranges() {
    let mut inv = inventory();
    let template = inv.pods[1].clone();
    for i in 0..20_000u32 {
        let mut p = template.clone();
        p.name = format!("p-{i}").parse().unwrap();
        p.ips = vec![IpAddr::from([10, 244, (i / 250 % 250) as u8, (i % 250) as u8 + 1])];
        inv.pods.push(p);
    }
    // A pod address outside every CIDR (a misconfigured CNI) is still in scope, alone.
    inv.pods[0].ips = vec!["192.168.77.7".parse().unwrap()];
    let scope = Scope::new(&inv, &[]);
    assert!(scope.contains("192.168.77.7".parse().unwrap()));
    assert!(!scope.contains("192.168.77.8".parse().unwrap()));
    assert!(scope.contains("10.244.100.100".parse().unwrap()));
    assert_eq!(scope.ranges().len(), 4, "{:?}", scope.ranges());
}
