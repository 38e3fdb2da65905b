//! kube-proxy frontends (ClusterIP, NodePort of both families, stale and missing targets, both
//! modes at once) matched against a `nat-rules` step.

use netdiag_model::inspect::{ChainName, NatServiceName};

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn target(a: &str, chain: &str) -> NatTarget {
    let a = addr(a);
    NatTarget {
        ip: a.ip(),
        port: Port::new(a.port().into()).unwrap(),
        chain: Some(ChainName::new(chain).unwrap()),
    }
}

fn svc(vip: Option<&str>, port: u32, node_port: bool, targets: Vec<NatTarget>) -> NatService {
    NatService {
        service: Some("tidb/demo-pd:client".parse::<NatServiceName>().unwrap()),
        vip: vip.map(|v| v.parse().unwrap()),
        port: Port::new(port).unwrap(),
        protocol: NatProtocol::Tcp,
        targets,
        node_port,
    }
}

fn query(vip: &str, port: u32, expected: &[&str]) -> NatQuery {
    NatQuery {
        vip: vip.parse().unwrap(),
        port: Port::new(port).unwrap(),
        protocol: NatProtocol::Tcp,
        expected: expected.iter().map(|a| addr(a)).collect(),
        node_port: false,
    }
}

fn node() -> NodeName {
    "node-1".parse().unwrap()
}

fn pd_rules() -> Vec<NatService> {
    vec![
        svc(Some("10.96.0.10"), 53, false, vec![target("10.244.1.2:53", "KUBE-SEP-DNS")]),
        svc(
            Some("10.96.0.20"),
            2379,
            false,
            vec![target("10.244.1.3:2379", "KUBE-SEP-AAA"), target("10.244.2.3:2379", "KUBE-SEP-BBB")],
        ),
        svc(None, 30400, true, vec![target("10.244.2.4:4000", "KUBE-SEP-TIDB")]),
        svc(None, 30400, true, vec![target("[fd00:244:2::4]:4000", "KUBE-SEP-TIDB6")]),
    ]
}

const PD: [&str; 2] = ["10.244.1.3:2379", "10.244.2.3:2379"];

#[test]
fn a_frontend_sending_to_the_ready_endpoints_is_ok_with_its_chains() {
    let r = check_nat(&pd_rules(), Some(ProxyMode::Iptables), &[], &node(), &query("10.96.0.20", 2379, &PD));
    assert_eq!(r.status, StepStatus::Ok);
    assert_eq!(
        r.evidence,
        [
            "node-1 (iptables): tidb/demo-pd:client 10.96.0.20:2379/tcp → 2 targets",
            "→ 10.244.1.3:2379 via KUBE-SEP-AAA",
            "→ 10.244.2.3:2379 via KUBE-SEP-BBB",
        ]
    );
}

#[test]
fn no_frontend_fails_naming_the_table_and_mode() {
    let cases = [
        (
            query("10.96.0.21", 2379, &PD),
            "no DNAT rule for 10.96.0.21:2379/tcp in node-1's nat table (iptables)",
        ),
        (
            query("10.96.0.20", 2380, &PD),
            "no DNAT rule for 10.96.0.20:2380/tcp in node-1's nat table (iptables)",
        ),
        (
            NatQuery { protocol: NatProtocol::Udp, ..query("10.96.0.20", 2379, &PD) },
            "no DNAT rule for 10.96.0.20:2379/udp in node-1's nat table (iptables)",
        ),
        (
            NatQuery { node_port: true, ..query("172.29.0.11", 2379, &PD) },
            "no NodePort rule for NodePort 2379/tcp (node address 172.29.0.11) in node-1's nat table (iptables)",
        ),
    ];
    for (q, want) in cases {
        let r = check_nat(&pd_rules(), Some(ProxyMode::Iptables), &[], &node(), &q);
        assert_eq!(r.status, StepStatus::Failed, "{q:?}");
        assert_eq!(r.evidence, [want]);
    }
    let unread = check_nat(
        &[],
        None,
        &["reading kube-proxy's iptables rules: iptables-save is not installed".to_owned()],
        &node(),
        &query("10.96.0.20", 2379, &PD),
    );
    assert_eq!(unread.status, StepStatus::Failed);
    assert_eq!(
        unread.evidence,
        [
            "no DNAT rule for 10.96.0.20:2379/tcp in node-1's nat table (no kube-proxy rules at all)",
            "cannot read node-1's NAT rules: reading kube-proxy's iptables rules: iptables-save is not installed",
        ]
    );
}

#[test]
fn stale_and_missing_targets_warn() {
    let expected = ["10.244.1.3:2379", "10.244.3.3:2379"];
    let r = check_nat(
        &pd_rules(),
        Some(ProxyMode::Nftables),
        &[],
        &node(),
        &query("10.96.0.20", 2379, &expected),
    );
    assert_eq!(r.status, StepStatus::Warning);
    assert_eq!(
        r.evidence[3..],
        [
            "10.244.2.3:2379 is a DNAT target but not a ready endpoint (stale rule)",
            "10.244.3.3:2379 is a ready endpoint with no DNAT target (missing rule)",
        ]
    );
    assert!(r.evidence[0].starts_with("node-1 (nftables): "), "{}", r.evidence[0]);
}

#[test]
fn a_frontend_without_targets_fails_unless_the_service_has_no_endpoints() {
    let rules = vec![svc(Some("10.96.0.20"), 2379, false, vec![])];
    let r = check_nat(&rules, Some(ProxyMode::Iptables), &[], &node(), &query("10.96.0.20", 2379, &PD));
    assert_eq!(r.status, StepStatus::Failed);
    assert!(r.evidence.last().unwrap().contains("DNATs to no endpoint while the service has 2 ready"));
    let none = check_nat(&rules, Some(ProxyMode::Iptables), &[], &node(), &query("10.96.0.20", 2379, &[]));
    assert_eq!(none.status, StepStatus::Ok);
}

#[test]
fn node_ports_match_by_port_and_family_of_their_targets() {
    let q = |vip: &str, expected: &[&str]| NatQuery { node_port: true, ..query(vip, 30400, expected) };
    let v4 = check_nat(
        &pd_rules(),
        Some(ProxyMode::Iptables),
        &[],
        &node(),
        &q("172.29.0.11", &["10.244.2.4:4000"]),
    );
    assert_eq!(v4.status, StepStatus::Ok, "{:?}", v4.evidence);
    assert_eq!(v4.evidence[1], "→ 10.244.2.4:4000 via KUBE-SEP-TIDB", "only the IPv4 frontend's target");
    let v6 = check_nat(
        &pd_rules(),
        Some(ProxyMode::Iptables),
        &[],
        &node(),
        &q("fd00:29::11", &["[fd00:244:2::4]:4000"]),
    );
    assert_eq!(v6.status, StepStatus::Ok, "{:?}", v6.evidence);
    // A NodePort rule never answers for a ClusterIP query on the same port, nor the reverse.
    let as_cluster_ip = check_nat(&pd_rules(), None, &[], &node(), &query("172.29.0.11", 30400, &[]));
    assert_eq!(as_cluster_ip.status, StepStatus::Failed);
    // A NodePort bound to one address answers only for it.
    let bound = vec![svc(Some("172.29.0.11"), 30400, true, vec![target("10.244.2.4:4000", "KUBE-SEP-X")])];
    let hit = check_nat(&bound, None, &[], &node(), &q("172.29.0.11", &["10.244.2.4:4000"]));
    assert_eq!(hit.status, StepStatus::Ok);
    let miss = check_nat(&bound, None, &[], &node(), &q("172.29.0.12", &["10.244.2.4:4000"]));
    assert_eq!(miss.status, StepStatus::Failed);
}

#[test]
fn duplicate_frontends_of_both_modes_are_merged() {
    let mut rules = pd_rules();
    rules.push(svc(Some("10.96.0.20"), 2379, false, vec![target("10.244.1.3:2379", "endpoint-x")]));
    let r = check_nat(&rules, Some(ProxyMode::Nftables), &[], &node(), &query("10.96.0.20", 2379, &PD));
    assert_eq!(r.status, StepStatus::Ok);
    assert_eq!(r.evidence.len(), 3, "{:?}", r.evidence);
}
