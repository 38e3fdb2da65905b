//! Addressing-plan tests on the default topology and small variants.

use super::*;

fn default_plan() -> LabPlan {
    LabPlan::from_topology(&Topology::open_lab().unwrap()).unwrap()
}

#[test]
fn nodes_get_underlay_ips_and_pod_cidrs() {
    let plan = default_plan();
    let n1 = &plan.nodes[0];
    assert_eq!(n1.netns, "lab-node-1");
    assert_eq!(n1.ip, Ipv4Addr::new(172, 29, 0, 11));
    assert_eq!(n1.pod_cidr.to_string(), "10.244.1.0/24");
    assert_eq!(plan.nodes[2].pod_cidr.to_string(), "10.244.3.0/24");
    assert_eq!(plan.control_ip, Ipv4Addr::new(172, 29, 0, 1));
    assert_eq!(plan.underlay_netns, "lab-underlay");
}

#[test]
fn pods_get_addresses_in_their_nodes_cidr_and_stable_names() {
    let plan = default_plan();
    let mut seen = std::collections::BTreeSet::new();
    for p in &plan.pods {
        let node = plan.node(&p.node).unwrap();
        assert!(node.pod_cidr.contains(&p.ip), "{} {} outside {}", p.pod, p.ip, node.pod_cidr);
        assert!(seen.insert(p.ip), "duplicate {}", p.ip);
        assert!(p.host_if.len() <= 15, "interface name too long: {}", p.host_if);
    }
    let pd0 = plan.pod(&"tidb/demo-pd-0".parse().unwrap()).unwrap();
    assert_eq!(pd0.netns, "lab-pod-tidb-demo-pd-0");
    // Same topology, same plan: names and addresses are deterministic.
    assert_eq!(default_plan(), plan);
}

#[test]
fn services_select_their_pods_and_headless_has_no_vip() {
    let plan = default_plan();
    let pd = plan.service(&"tidb/demo-pd".parse().unwrap()).unwrap();
    assert_eq!(pd.cluster_ip, Some(Ipv4Addr::new(10, 96, 0, 20)));
    assert_eq!(pd.endpoints.len(), 3);
    let peer = plan.service(&"tidb/demo-pd-peer".parse().unwrap()).unwrap();
    assert_eq!(peer.cluster_ip, None);
    assert_eq!(plan.dns_pod().unwrap().pod.to_string(), "kube-system/coredns-0");
}

#[test]
fn inventory_round_trips_and_lists_headless_hostnames() {
    let plan = default_plan();
    let inv = plan.inventory(std::path::Path::new("/run/netdiag/lab"));
    inv.validate().unwrap();
    let back = Inventory::from_yaml(&inv.to_yaml()).unwrap();
    assert_eq!(back, inv);
    let peer = inv.service(&"tidb/demo-pd-peer".parse().unwrap()).unwrap();
    assert!(peer.is_headless());
    let hosts: Vec<_> = peer.endpoints.iter().filter_map(|e| e.hostname.clone()).collect();
    assert_eq!(hosts, ["demo-pd-0", "demo-pd-1", "demo-pd-2"]);
    let pd0 = inv.pod(&"tidb/demo-pd-0".parse().unwrap()).unwrap();
    assert_eq!(pd0.netns.as_deref(), Some(std::path::Path::new("/var/run/netns/lab-pod-tidb-demo-pd-0")));
}

#[test]
fn auto_cluster_ips_skip_used_ones() {
    let t = Topology::parse(
        "nodes: [{name: n1}]\npods:\n  - { namespace: kube-system, name: coredns-0, node: n1, app: dns, labels: {k: d} }\nservices:\n  - { namespace: kube-system, name: kube-dns, cluster_ip: 10.96.0.10, selector: {k: d}, ports: [{port: 53, protocol: UDP}] }\n  - { namespace: a, name: x, cluster_ip: 10.96.0.100, ports: [{port: 1}] }\n  - { namespace: a, name: y, ports: [{port: 1}] }\n",
    )
    .unwrap();
    let plan = LabPlan::from_topology(&t).unwrap();
    let y = plan.service(&"a/y".parse().unwrap()).unwrap();
    assert_eq!(y.cluster_ip, Some(Ipv4Addr::new(10, 96, 0, 101)));
}

#[test]
fn dual_stack_gives_v6_everywhere() {
    let text = crate::topology::OPEN_TOPOLOGY.replace("ipv6: false", "ipv6: true");
    let plan = LabPlan::from_topology(&Topology::parse(&text).unwrap()).unwrap();
    let pd0 = plan.pod(&"tidb/demo-pd-0".parse().unwrap()).unwrap();
    assert_eq!(pd0.ip_v6, Some("fd42:244:0:1::3".parse().unwrap()), "coredns-0 holds ::2");
    let pd = plan.service(&"tidb/demo-pd".parse().unwrap()).unwrap();
    assert_eq!(pd.cluster_ip_v6, Some("fd42:96::14".parse().unwrap()));
    assert_eq!(plan.nodes[1].ip_v6, Some("fd42:29::c".parse().unwrap()));
}

#[test]
fn missing_dns_service_is_an_error() {
    let t = Topology::parse(
        "nodes: [{name: n1}]\npods:\n  - { namespace: kube-system, name: coredns-0, node: n1, app: dns }\n",
    )
    .unwrap();
    assert_eq!(LabPlan::from_topology(&t), Err(PlanError::NoDnsService(Ipv4Addr::new(10, 96, 0, 10))));
}
