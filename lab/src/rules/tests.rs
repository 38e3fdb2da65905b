//! Tests shared by both rule styles: kube-proxy's chain-name hashing, the expected NAT table,
//! determinism and the golden files; plus the lab variants the per-style tests use. The tests
//! that load rules into a real kernel live in [`kernel`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::*;
use crate::topology::{OPEN_TOPOLOGY, Topology};

mod kernel;

/// Replaces `from` with `to` in a topology, failing loudly if the default file changed shape.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the default topology no longer contains {from:?}");
    text.replace(from, to)
}

pub(crate) fn plan_from(yaml: &str) -> LabPlan {
    let topology = Topology::parse(yaml).expect("topology parses");
    LabPlan::from_topology(&topology).expect("topology plans")
}

pub(crate) fn default_plan() -> LabPlan {
    plan_from(OPEN_TOPOLOGY)
}

pub(crate) fn dual_stack_yaml() -> String {
    edit(OPEN_TOPOLOGY, "ipv6: false", "ipv6: true")
}

pub(crate) fn nftables_yaml(yaml: &str) -> String {
    edit(yaml, "proxy_mode: iptables", "proxy_mode: nftables")
}

/// demo-tidb (the NodePort service, pods on node-2 and node-3) with
/// `externalTrafficPolicy: Local`.
pub(crate) fn etp_local_yaml() -> String {
    edit(OPEN_TOPOLOGY, "    type: NodePort\n", "    type: NodePort\n    external_traffic_policy: Local\n")
}

/// The default lab plus `tidb/demo-empty`, a NodePort service whose selector matches no pod.
pub(crate) fn no_endpoints_yaml() -> String {
    let mut yaml = OPEN_TOPOLOGY.to_string();
    if !yaml.ends_with('\n') {
        yaml.push('\n');
    }
    yaml.push_str(
        "  - namespace: tidb\n    name: demo-empty\n    type: NodePort\n    cluster_ip: 10.96.0.60\n    selector: { app.kubernetes.io/component: nothing }\n    ports: [{ name: web, port: 80, target_port: 8080, node_port: 30401 }]\n",
    );
    yaml
}

pub(crate) fn node<'a>(plan: &'a LabPlan, name: &str) -> &'a NodePlan {
    plan.nodes.iter().find(|n| n.name.as_str() == name).expect("node exists")
}

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

fn find<'a>(
    nat: &'a [ExpectedNat],
    service: &str,
    frontend: Frontend,
    protocol: Protocol,
) -> &'a ExpectedNat {
    nat.iter()
        .find(|e| e.service.to_string() == service && e.frontend == frontend && e.protocol == protocol)
        .unwrap_or_else(|| panic!("no {frontend:?} {protocol} entry for {service} in {nat:#?}"))
}

#[test]
fn chain_names_hash_exactly_like_kube_proxy() {
    // Names from kube-proxy's own proxier_test.go files and from real clusters.
    let svc = [
        ("ns1/svc1:p80", "tcp", "XPGD46QRK7WJZT7O"),
        ("ns2/svc2:p80", "tcp", "GNZBNJ2PO5MGZ6GT"),
        ("ns3/svc3:p80", "tcp", "X27LE4BHSL4DOUIK"),
        ("kube-system/kube-dns:dns", "udp", "TCOU7JCQXEZGVUNU"),
        ("kube-system/kube-dns:dns-tcp", "tcp", "ERIFXISQEP7F7OF4"),
        ("default/kubernetes:https", "tcp", "NPX46M4PTMTKRN6Y"),
    ];
    for (name, proto, want) in svc {
        assert_eq!(iptables::port_proto_hash(name, proto), want, "{name} {proto}");
    }
    let ep: SocketAddr = v4(10, 180, 0, 1, 80);
    assert_eq!(iptables::endpoint_chain("ns1/svc1:p80", "tcp", ep), "KUBE-SEP-SXIVWICOYRO3J4NJ");
    assert_eq!(
        iptables::endpoint_chain("ns4/svc4:p80", "tcp", v4(10, 180, 0, 5, 80)),
        "KUBE-SEP-C6EBXVWJJZMIWKLZ"
    );

    assert_eq!(nftables::hash_and_truncate("ns1/svc1/tcp/p80"), "ULMVA6XW-ns1/svc1/tcp/p80");
    assert_eq!(
        nftables::hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80"),
        "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    );
    assert_eq!(nftables::hash_and_truncate("ns2/svc2/tcp/p80"), "42NFTM6N-ns2/svc2/tcp/p80");
    assert_eq!(
        nftables::hash_and_truncate("kube-system/kube-dns/tcp/dns-tcp"),
        "NWBZK7IH-kube-system/kube-dns/tcp/dns-tcp"
    );
}

#[test]
fn long_nft_chain_names_are_truncated_to_fit() {
    let long = format!("ns/{}/tcp/p__{}", "s".repeat(200), "1".repeat(60));
    let name = nftables::hash_and_truncate(&long);
    assert_eq!(name.len(), 240);
    assert!(name.ends_with("..."));
    assert!(name.starts_with(&format!("{}-ns/", hash_prefix(&long, 8))));
}

#[test]
fn base32_matches_rfc_4648_vectors() {
    let cases = [
        ("", ""),
        ("f", "MY"),
        ("fo", "MZXQ"),
        ("foo", "MZXW6"),
        ("foob", "MZXW6YQ"),
        ("fooba", "MZXW6YTB"),
        ("foobar", "MZXW6YTBOI"),
    ];
    for (input, want) in cases {
        assert_eq!(base32(input.as_bytes()), want, "base32({input:?})");
    }
}

#[test]
fn expected_nat_lists_every_cluster_ip_port_and_the_node_port() {
    let plan = default_plan();
    let n1 = node(&plan, "node-1");
    let nat = expected_nat(&plan, n1, Family::V4);

    let cluster: Vec<String> = nat
        .iter()
        .filter(|e| e.frontend == Frontend::ClusterIp)
        .map(|e| format!("{} {}/{}", e.service, e.destination(), e.protocol))
        .collect();
    assert_eq!(
        cluster,
        [
            "kube-system/kube-dns 10.96.0.10:53/udp",
            "kube-system/kube-dns 10.96.0.10:53/tcp",
            "tidb/demo-pd 10.96.0.20:2379/tcp",
            "tidb/demo-tidb 10.96.0.40:4000/tcp",
            "tidb/demo-discovery 10.96.0.50:10261/tcp",
        ]
    );
    assert!(nat.iter().all(|e| !e.service.name.as_str().ends_with("-peer")), "headless services have no NAT");

    let pd = find(&nat, "tidb/demo-pd", Frontend::ClusterIp, Protocol::Tcp);
    assert_eq!(
        pd.outcome,
        NatOutcome::Dnat(vec![v4(10, 244, 1, 3, 2379), v4(10, 244, 2, 2, 2379), v4(10, 244, 3, 2, 2379)])
    );
    for proto in [Protocol::Udp, Protocol::Tcp] {
        let dns = find(&nat, "kube-system/kube-dns", Frontend::ClusterIp, proto);
        assert_eq!(dns.outcome, NatOutcome::Dnat(vec![v4(10, 244, 1, 2, 53)]));
    }
    let np = find(&nat, "tidb/demo-tidb", Frontend::NodePort, Protocol::Tcp);
    assert_eq!(np.destination(), v4(172, 29, 0, 11, 30400));
    assert_eq!(np.outcome, NatOutcome::Dnat(vec![v4(10, 244, 2, 4, 4000), v4(10, 244, 3, 4, 4000)]));
}

#[test]
fn expected_nat_follows_traffic_policy_and_missing_endpoints() {
    let plan = plan_from(&etp_local_yaml());
    let on_n1 = expected_nat(&plan, node(&plan, "node-1"), Family::V4);
    let np = find(&on_n1, "tidb/demo-tidb", Frontend::NodePort, Protocol::Tcp);
    assert_eq!(np.outcome, NatOutcome::Drop, "node-1 runs no demo-tidb pod");
    let vip = find(&on_n1, "tidb/demo-tidb", Frontend::ClusterIp, Protocol::Tcp);
    assert!(matches!(&vip.outcome, NatOutcome::Dnat(t) if t.len() == 2), "the cluster IP ignores ETP");
    let on_n2 = expected_nat(&plan, node(&plan, "node-2"), Family::V4);
    let np = find(&on_n2, "tidb/demo-tidb", Frontend::NodePort, Protocol::Tcp);
    assert_eq!(np.outcome, NatOutcome::Dnat(vec![v4(10, 244, 2, 4, 4000)]));

    let plan = plan_from(&no_endpoints_yaml());
    let nat = expected_nat(&plan, node(&plan, "node-1"), Family::V4);
    for frontend in [Frontend::ClusterIp, Frontend::NodePort] {
        assert_eq!(find(&nat, "tidb/demo-empty", frontend, Protocol::Tcp).outcome, NatOutcome::Reject);
    }
}

#[test]
fn expected_nat_in_ipv6_uses_the_v6_addresses_or_is_empty() {
    let plan = default_plan();
    assert!(expected_nat(&plan, node(&plan, "node-1"), Family::V6).is_empty());

    let plan = plan_from(&dual_stack_yaml());
    let n2 = node(&plan, "node-2");
    let nat = expected_nat(&plan, n2, Family::V6);
    assert_eq!(nat.len(), expected_nat(&plan, n2, Family::V4).len());
    for e in &nat {
        assert_eq!(Family::of(e.ip), Family::V6, "{e:?}");
        if let NatOutcome::Dnat(targets) = &e.outcome {
            assert!(targets.iter().all(|t| t.is_ipv6()), "{e:?}");
        }
    }
    let pd = find(&nat, "tidb/demo-pd", Frontend::ClusterIp, Protocol::Tcp);
    assert_eq!(Some(pd.ip), plan.services[1].cluster_ip_v6.map(IpAddr::V6));
}

#[test]
fn render_follows_the_labs_proxy_mode() {
    let plan = default_plan();
    let n1 = node(&plan, "node-1");
    assert_eq!(render(&plan, n1, Family::V4), iptables::render_iptables(&plan, n1, Family::V4));
    let plan = plan_from(&nftables_yaml(OPEN_TOPOLOGY));
    let n1 = node(&plan, "node-1");
    assert_eq!(render(&plan, n1, Family::V4), nftables::render_nftables(&plan, n1, Family::V4));
}

#[test]
fn same_plan_gives_the_same_text() {
    for yaml in [dual_stack_yaml(), etp_local_yaml(), no_endpoints_yaml()] {
        let (a, b) = (plan_from(&yaml), plan_from(&yaml));
        for (na, nb) in a.nodes.iter().zip(&b.nodes) {
            for family in Family::ALL {
                assert_eq!(
                    iptables::render_iptables(&a, na, family),
                    iptables::render_iptables(&b, nb, family)
                );
                assert_eq!(
                    nftables::render_nftables(&a, na, family),
                    nftables::render_nftables(&b, nb, family)
                );
                assert_eq!(expected_nat(&a, na, family), expected_nat(&b, nb, family));
            }
        }
    }
}

/// Golden files: the full text for a few nodes, so a change in shape shows up in review.
/// `NETDIAG_UPDATE_FIXTURES=1 cargo test -p netdiag-lab rules` rewrites them.
#[test]
fn rendered_rules_match_the_golden_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rules");
    let default = default_plan();
    let nft = plan_from(&nftables_yaml(OPEN_TOPOLOGY));
    let dual = plan_from(&dual_stack_yaml());
    let dual_nft = plan_from(&nftables_yaml(&dual_stack_yaml()));
    let etp = plan_from(&etp_local_yaml());
    let cases = [
        (
            "default-node-1.iptables",
            iptables::render_iptables(&default, node(&default, "node-1"), Family::V4),
        ),
        ("default-node-1.nft", nftables::render_nftables(&nft, node(&nft, "node-1"), Family::V4)),
        ("dualstack-node-2.ip6tables", iptables::render_iptables(&dual, node(&dual, "node-2"), Family::V6)),
        (
            "dualstack-node-2.ip6.nft",
            nftables::render_nftables(&dual_nft, node(&dual_nft, "node-2"), Family::V6),
        ),
        ("etp-local-node-2.iptables", iptables::render_iptables(&etp, node(&etp, "node-2"), Family::V4)),
    ];
    let update = std::env::var_os("NETDIAG_UPDATE_FIXTURES").is_some();
    for (file, text) in cases {
        let path = dir.join(file);
        if update {
            std::fs::create_dir_all(&dir).expect("create fixture dir");
            std::fs::write(&path, &text).expect("write fixture");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e}; run with NETDIAG_UPDATE_FIXTURES=1 to create it", path.display())
        });
        assert!(
            want == text,
            "{} differs from the rendered rules; if the change is intended, rerun with NETDIAG_UPDATE_FIXTURES=1 and review the diff\n--- rendered ---\n{text}",
            path.display()
        );
    }
}
