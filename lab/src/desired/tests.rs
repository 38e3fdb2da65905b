//! What each fault does to the desired state, checked without touching the system.

use super::*;
use crate::topology::Topology;

fn plan() -> LabPlan {
    LabPlan::from_topology(&Topology::open_lab().unwrap()).unwrap()
}

fn fault(plan: &LabPlan, id: u32, text: &str) -> ActiveFault {
    let mut words = text.split_whitespace();
    let name = words.next().unwrap();
    let args: Vec<String> = words.map(str::to_owned).collect();
    let spec = FaultSpec::parse(name, &args, plan).unwrap();
    ActiveFault { id, description: spec.to_string(), spec, since_unix_ms: 0 }
}

#[test]
fn no_fault_no_rule_anywhere() {
    let plan = plan();
    for ns in plan.namespaces() {
        assert!(fault_rules(&plan, &[], &ns, Family::V4).is_empty(), "{ns}");
    }
    assert!(!dns_servfail(&[]));
}

#[test]
fn node_pair_drops_both_ways_on_both_nodes_only() {
    let plan = plan();
    let f = [fault(&plan, 1, "node-pair node-1 node-2")];
    let n1 = fault_rules(&plan, &f, "lab-node-1", Family::V4);
    assert!(n1.iter().any(|r| r.starts_with("-s 172.29.0.12/32 ")), "{n1:?}");
    assert!(n1.iter().any(|r| r.starts_with("-d 10.244.2.0/24 ")), "{n1:?}");
    let n2 = fault_rules(&plan, &f, "lab-node-2", Family::V4);
    assert!(n2.iter().any(|r| r.starts_with("-s 10.244.1.0/24 ")), "{n2:?}");
    assert!(fault_rules(&plan, &f, "lab-node-3", Family::V4).is_empty());
    assert!(n1.iter().all(|r| r.contains("netdiag-fault-1 node-pair")));
}

#[test]
fn pod_faults_land_in_the_pod_namespace() {
    let plan = plan();
    let f = [
        fault(&plan, 1, "port-closed tidb/demo-pd-1 2379"),
        fault(&plan, 2, "port-drop tidb/demo-tikv-0 20160"),
    ];
    // A closed port is the server's listener closing, no rule (a rule would be a firewall).
    assert!(fault_rules(&plan, &f, "lab-pod-tidb-demo-pd-1", Family::V4).is_empty());
    assert_eq!(closed_ports(&f), [("tidb/demo-pd-1".parse().unwrap(), 2379)].into_iter().collect());
    let tikv = fault_rules(&plan, &f, "lab-pod-tidb-demo-tikv-0", Family::V4);
    assert!(tikv[0].ends_with("-j DROP"));
}

#[test]
fn dns_block_matches_only_the_nodes_sources() {
    let plan = plan();
    let f = [fault(&plan, 1, "dns-block node-2")];
    let rules = fault_rules(&plan, &f, "lab-node-2", Family::V4);
    let dns_ip = plan.dns_pod().unwrap().ip;
    assert_eq!(rules.len(), 4, "{rules:?}");
    assert!(rules.iter().all(|r| r.contains(&format!("-d {dns_ip} "))));
    assert!(rules.iter().any(|r| r.starts_with("-s 10.244.2.0/24 ")));
}

#[test]
fn loss_mtu_and_idle_cut_are_node_uplink_rules_and_sysctls() {
    let plan = plan();
    let f = [
        fault(&plan, 1, "loss node-3 30"),
        fault(&plan, 2, "mtu node-3 1200"),
        fault(&plan, 3, "idle-cut node-3 30"),
    ];
    let rules = fault_rules(&plan, &f, "lab-node-3", Family::V4);
    assert!(rules.iter().any(|r| r.contains("--probability 0.30000")));
    assert!(rules.iter().any(|r| r.contains("--length 1201:65535")));
    assert!(rules.iter().any(|r| r.contains("--ctstate INVALID")));
    let sysctls = fault_sysctls(&plan, &f);
    assert!(sysctls.contains(&(
        "lab-node-3".into(),
        "net.netfilter.nf_conntrack_tcp_timeout_established",
        "30".into()
    )));
    assert!(sysctls.contains(&("lab-node-1".into(), "net.netfilter.nf_conntrack_tcp_loose", "1".into())));
}

#[test]
fn dnat_missing_removes_exactly_one_service_rule_on_one_node() {
    let plan = plan();
    let f = [fault(&plan, 1, "dnat-missing node-1 tidb/demo-pd:2379")];
    let n1 = &plan.nodes[0];
    let healthy = nat_rules(&plan, n1, &[], Family::V4);
    let broken = nat_rules(&plan, n1, &f, Family::V4);
    let gone: Vec<&str> = healthy.lines().filter(|l| !broken.lines().any(|b| b == *l)).collect();
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert!(gone[0].contains("-d 10.96.0.20/32") && gone[0].contains("--dport 2379"), "{gone:?}");
    assert_eq!(
        nat_rules(&plan, &plan.nodes[1], &f, Family::V4),
        nat_rules(&plan, &plan.nodes[1], &[], Family::V4)
    );
}

#[test]
fn dnat_missing_in_nftables_mode_deletes_the_map_element() {
    let text = crate::topology::OPEN_TOPOLOGY.replace("proxy_mode: iptables", "proxy_mode: nftables");
    let plan = LabPlan::from_topology(&Topology::parse(&text).unwrap()).unwrap();
    let f = [fault(&plan, 1, "dnat-missing node-1 tidb/demo-pd")];
    let script = nat_rules(&plan, &plan.nodes[0], &f, Family::V4);
    assert!(
        script.ends_with("delete element ip kube-proxy service-ips { 10.96.0.20 . tcp . 2379 }\n"),
        "{script}"
    );
}

#[test]
fn route_missing_and_pod_down_flip_their_switches() {
    let plan = plan();
    let f = [fault(&plan, 1, "route-missing node-1 node-3"), fault(&plan, 2, "pod-down tidb/demo-pd-0")];
    assert!(route_missing(&f, &plan.nodes[0], &plan.nodes[2]));
    assert!(!route_missing(&f, &plan.nodes[2], &plan.nodes[0]));
    let pd0 = plan.pod(&"tidb/demo-pd-0".parse().unwrap()).unwrap();
    assert!(!pod_link_up(&f, pd0));
    assert_eq!(peer_routes(&plan, &plan.nodes[2]), ["10.244.3.0/24 via 172.29.0.13 dev eth0"]);
}

#[test]
fn pod_filter_drops_a_nodes_sources_inbound_in_the_pod_only() {
    let plan = plan();
    let f = [fault(&plan, 1, "pod-filter tidb/demo-pd-1 node/node-1")];
    let pd1 = fault_rules(&plan, &f, "lab-pod-tidb-demo-pd-1", Family::V4);
    assert_eq!(
        pd1,
        [
            "-i eth0 -s 172.29.0.11/32 -m conntrack ! --ctstate ESTABLISHED,RELATED -m comment --comment \"netdiag-fault-1 pod-filter\" -j DROP",
            "-i eth0 -s 10.244.1.0/24 -m conntrack ! --ctstate ESTABLISHED,RELATED -m comment --comment \"netdiag-fault-1 pod-filter\" -j DROP",
        ]
    );
    for ns in plan.namespaces().into_iter().filter(|ns| ns != "lab-pod-tidb-demo-pd-1") {
        assert!(fault_rules(&plan, &f, &ns, Family::V4).is_empty(), "{ns}");
    }
    // The lab has no IPv6: nothing to add there.
    assert!(fault_rules(&plan, &f, "lab-pod-tidb-demo-pd-1", Family::V6).is_empty());
}

#[test]
fn pod_filter_by_namespace_lists_every_other_pod_of_it() {
    let plan = plan();
    let f = [fault(&plan, 2, "pod-filter tidb/demo-pd-1 namespace/tidb")];
    let rules = fault_rules(&plan, &f, "lab-pod-tidb-demo-pd-1", Family::V4);
    let others: Vec<&PodPlan> = plan
        .pods
        .iter()
        .filter(|p| p.pod.namespace.as_str() == "tidb" && p.pod.name.as_str() != "demo-pd-1")
        .collect();
    assert_eq!(rules.len(), others.len(), "{rules:?}");
    for p in others {
        assert!(
            rules.iter().any(|r| r.starts_with(&format!("-i eth0 -s {}/32 ", p.ip))),
            "{}: {rules:?}",
            p.pod
        );
    }
    let pd1 = plan.pod(&"tidb/demo-pd-1".parse().unwrap()).unwrap();
    let dns = plan.dns_pod().unwrap();
    assert!(
        !rules
            .iter()
            .any(|r| r.contains(&format!(" {}/32 ", pd1.ip)) || r.contains(&format!(" {}/32 ", dns.ip)))
    );
    assert!(rules.iter().all(|r| r.ends_with("-j DROP") && !r.contains(" -p ")), "every protocol");
}

#[test]
fn pod_filter_in_a_dual_stack_lab_covers_ipv6_sources() {
    let text = crate::topology::OPEN_TOPOLOGY.replace("ipv6: false", "ipv6: true");
    let plan = LabPlan::from_topology(&Topology::parse(&text).unwrap()).unwrap();
    let f = [
        fault(&plan, 1, "pod-filter tidb/demo-pd-1 node/node-1"),
        fault(&plan, 2, "pod-filter tidb/demo-pd-2 namespace/tidb"),
    ];
    let n1 = &plan.nodes[0];
    let v6 = fault_rules(&plan, &f, "lab-pod-tidb-demo-pd-1", Family::V6);
    assert_eq!(v6.len(), 2, "{v6:?}");
    assert!(v6[0].starts_with(&format!("-i eth0 -s {}/128 ", n1.ip_v6.unwrap())), "{v6:?}");
    assert!(v6[1].starts_with(&format!("-i eth0 -s {} ", n1.pod_cidr_v6.unwrap())), "{v6:?}");
    let v6 = fault_rules(&plan, &f, "lab-pod-tidb-demo-pd-2", Family::V6);
    assert_eq!(v6.len(), 8, "{v6:?}");
    assert!(v6.iter().all(|r| r.contains("/128 ")), "{v6:?}");
}

#[test]
fn dns_loss_drops_a_share_of_queries_at_the_dns_pod() {
    let plan = plan();
    let f = [fault(&plan, 4, "dns-loss 30")];
    let dns_ns = &plan.dns_pod().unwrap().netns;
    let rules = fault_rules(&plan, &f, dns_ns, Family::V4);
    let c = "-m comment --comment \"netdiag-fault-4 dns-loss\"";
    assert_eq!(
        rules,
        [
            format!(
                "-i eth0 -p udp -m udp --dport 53 -m statistic --mode random --probability 0.30000 {c} -j DROP"
            ),
            format!(
                "-i eth0 -p tcp -m tcp --dport 53 -m statistic --mode random --probability 0.30000 {c} -j DROP"
            ),
        ]
    );
    for ns in plan.namespaces().into_iter().filter(|ns| ns != dns_ns) {
        assert!(fault_rules(&plan, &f, &ns, Family::V4).is_empty(), "{ns}");
    }
}

#[test]
fn loss_and_mtu_directions_pick_the_uplink_side() {
    let plan = plan();
    let rules = |text: &str| fault_rules(&plan, &[fault(&plan, 1, text)], "lab-node-3", Family::V4);
    let sides = |text: &str| -> Vec<String> {
        rules(text).iter().map(|r| r.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect()
    };
    assert_eq!(sides("loss node-3 30"), ["-i eth0", "-o eth0"]);
    assert_eq!(sides("loss node-3 30 --direction in"), ["-i eth0"]);
    assert_eq!(sides("loss node-3 30 --direction out"), ["-o eth0"]);
    assert_eq!(sides("mtu node-3 1200"), ["-i eth0", "-o eth0"]);
    assert_eq!(sides("mtu node-3 1200 --direction in"), ["-i eth0"]);
    assert_eq!(sides("mtu node-3 1200 --direction out"), ["-o eth0"]);
    assert!(rules("loss node-3 30 --direction in")[0].contains("--probability 0.30000"));
    assert!(rules("mtu node-3 1200 --direction out")[0].contains("--length 1201:65535"));
    let f = [fault(&plan, 1, "loss node-3 30 --direction in")];
    assert!(fault_rules(&plan, &f, "lab-node-2", Family::V4).is_empty());
}
