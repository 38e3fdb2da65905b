//! nftables-mode shapes on the default lab and its variants.

use super::*;
use crate::rules::tests::{
    dual_stack_yaml, etp_local_yaml, nftables_yaml, no_endpoints_yaml, node, plan_from,
};
use crate::topology::OPEN_TOPOLOGY;

fn node1_v4() -> String {
    let plan = plan_from(&nftables_yaml(OPEN_TOPOLOGY));
    render_nftables(&plan, node(&plan, "node-1"), Family::V4)
}

/// The body lines (trimmed) of `chain NAME { … }`; empty if there is no such chain.
fn chain<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("chain {name} {{");
    text.lines().map(str::trim).skip_while(|l| *l != header).skip(1).take_while(|l| *l != "}").collect()
}

/// The elements (trimmed, without the separating comma) of set or map `name`.
fn elements<'a>(text: &'a str, kind: &str, name: &str) -> Vec<&'a str> {
    let header = format!("{kind} {name} {{");
    text.lines()
        .map(str::trim)
        .skip_while(|l| *l != header)
        .take_while(|l| *l != "}")
        .skip_while(|l| *l != "elements = {")
        .skip(1)
        .map(|l| l.trim_end_matches(','))
        .collect()
}

fn svc_base(ns_svc_proto_port: &str) -> String {
    hash_and_truncate(ns_svc_proto_port)
}

#[test]
fn the_script_replaces_the_table() {
    let text = node1_v4();
    let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(body[..3], ["add table ip kube-proxy", "delete table ip kube-proxy", "table ip kube-proxy {"]);
    assert_eq!(body[3].trim(), "comment \"rules for kube-proxy\"");
    assert_eq!(text.lines().last(), Some("}"));
}

#[test]
fn base_chains_hook_in_like_kube_proxy() {
    let text = node1_v4();
    assert_eq!(
        chain(&text, "nat-prerouting"),
        ["type nat hook prerouting priority -100; policy accept;", "jump services"]
    );
    assert_eq!(
        chain(&text, "nat-output"),
        ["type nat hook output priority -100; policy accept;", "jump services"]
    );
    assert_eq!(
        chain(&text, "nat-postrouting"),
        ["type nat hook postrouting priority 100; policy accept;", "jump masquerading"]
    );
    assert_eq!(
        chain(&text, "masquerading"),
        ["mark and 0x4000 == 0 return", "mark set mark xor 0x4000", "masquerade fully-random"]
    );
    assert_eq!(chain(&text, "mark-for-masquerade"), ["mark set mark or 0x4000"]);
    assert_eq!(
        chain(&text, "filter-output"),
        [
            "type filter hook output priority -110; policy accept;",
            "ct state new jump service-endpoints-check",
            "ct state new jump firewall-check",
        ]
    );
    assert_eq!(
        chain(&text, "filter-forward"),
        [
            "type filter hook forward priority -110; policy accept;",
            "ct state new jump service-endpoints-check",
            "ct state new jump cluster-ips-check",
        ]
    );
    assert_eq!(
        chain(&text, "services"),
        [
            "ip daddr . meta l4proto . th dport vmap @service-ips",
            "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        ]
    );
    assert!(text.contains("map service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n"));
}

#[test]
fn service_ips_has_one_element_per_cluster_ip_port() {
    let text = node1_v4();
    let want: Vec<String> = [
        ("10.96.0.10", "udp", "53", "kube-system/kube-dns/udp/dns"),
        ("10.96.0.10", "tcp", "53", "kube-system/kube-dns/tcp/dns-tcp"),
        ("10.96.0.20", "tcp", "2379", "tidb/demo-pd/tcp/client"),
        ("10.96.0.40", "tcp", "4000", "tidb/demo-tidb/tcp/mysql-client"),
        ("10.96.0.50", "tcp", "10261", "tidb/demo-discovery/tcp/discovery"),
    ]
    .iter()
    .map(|(ip, p, port, name)| format!("{ip} . {p} . {port} : goto service-{}", svc_base(name)))
    .collect();
    assert_eq!(elements(&text, "map", "service-ips"), want);
    assert_eq!(
        elements(&text, "set", "cluster-ips"),
        ["10.96.0.10", "10.96.0.20", "10.96.0.40", "10.96.0.50"]
    );
    assert!(!text.contains("demo-pd-peer") && !text.contains("demo-tikv-peer"), "headless: no rules");
    assert!(elements(&text, "map", "no-endpoint-services").is_empty());
}

#[test]
fn demo_pd_picks_one_of_three_endpoints() {
    let text = node1_v4();
    let base = svc_base("tidb/demo-pd/tcp/client");
    let rules = chain(&text, &format!("service-{base}"));
    assert_eq!(rules.len(), 2, "{rules:#?}");
    assert_eq!(
        rules[0],
        "ip daddr 10.96.0.20 tcp dport 2379 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
    );
    let eps: Vec<String> = ["10.244.1.3", "10.244.2.2", "10.244.3.2"]
        .iter()
        .map(|ip| format!("endpoint-{}", svc_base(&format!("tidb/demo-pd/tcp/client__{ip}/2379"))))
        .collect();
    assert_eq!(
        rules[1],
        format!(
            "numgen random mod 3 vmap {{ 0 : goto {}, 1 : goto {}, 2 : goto {} }}",
            eps[0], eps[1], eps[2]
        )
    );
    assert_eq!(
        chain(&text, &eps[0]),
        ["ip saddr 10.244.1.3 jump mark-for-masquerade", "meta l4proto tcp dnat to 10.244.1.3:2379"]
    );
}

#[test]
fn dns_service_has_udp_and_tcp_chains() {
    let text = node1_v4();
    for (p, port) in [("udp", "dns"), ("tcp", "dns-tcp")] {
        let ep = format!("endpoint-{}", svc_base(&format!("kube-system/kube-dns/{p}/{port}__10.244.1.2/53")));
        assert_eq!(
            chain(&text, &ep),
            [
                "ip saddr 10.244.1.2 jump mark-for-masquerade".to_string(),
                format!("meta l4proto {p} dnat to 10.244.1.2:53")
            ]
        );
    }
}

#[test]
fn node_port_goes_through_nodeport_ips_and_an_external_chain() {
    let text = node1_v4();
    let base = svc_base("tidb/demo-tidb/tcp/mysql-client");
    assert_eq!(elements(&text, "set", "nodeport-ips"), ["172.29.0.11"]);
    assert_eq!(elements(&text, "map", "service-nodeports"), [format!("tcp . 30400 : goto external-{base}")]);
    assert_eq!(
        chain(&text, &format!("external-{base}")),
        ["jump mark-for-masquerade".to_string(), format!("goto service-{base}")]
    );
    assert!(!text.contains("local-"), "no Local policy, no local chain");
}

#[test]
fn etp_local_uses_only_this_nodes_endpoints_or_drops() {
    let plan = plan_from(&nftables_yaml(&etp_local_yaml()));
    let base = svc_base("tidb/demo-tidb/tcp/mysql-client");
    let short_circuit = [
        format!("ip saddr 10.244.0.0/16 goto service-{base} comment \"short-circuit pod traffic\""),
        "fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"".to_string(),
        format!("fib saddr type local goto service-{base} comment \"short-circuit local traffic\""),
    ];

    let text = render_nftables(&plan, node(&plan, "node-3"), Family::V4);
    let mut want = short_circuit.to_vec();
    want.push(format!("goto local-{base}"));
    assert_eq!(chain(&text, &format!("external-{base}")), want);
    let ep = format!("endpoint-{}", svc_base("tidb/demo-tidb/tcp/mysql-client__10.244.3.4/4000"));
    assert_eq!(
        chain(&text, &format!("local-{base}")),
        [format!("numgen random mod 1 vmap {{ 0 : goto {ep} }}")]
    );
    assert!(elements(&text, "map", "no-endpoint-nodeports").is_empty());

    let text = render_nftables(&plan, node(&plan, "node-1"), Family::V4);
    assert_eq!(chain(&text, &format!("external-{base}")), short_circuit.to_vec());
    assert!(chain(&text, &format!("local-{base}")).is_empty());
    assert_eq!(
        elements(&text, "map", "no-endpoint-nodeports"),
        ["tcp . 30400 comment \"tidb/demo-tidb:mysql-client\" : drop"]
    );
    assert_eq!(
        elements(&text, "map", "service-nodeports"),
        [format!("tcp . 30400 : goto external-{base}")],
        "pods and the node itself still reach the service through the short-circuit rules"
    );
}

#[test]
fn a_service_without_endpoints_goes_to_the_reject_chain() {
    let plan = plan_from(&nftables_yaml(&no_endpoints_yaml()));
    let text = render_nftables(&plan, node(&plan, "node-2"), Family::V4);
    assert_eq!(
        elements(&text, "map", "no-endpoint-services"),
        ["10.96.0.60 . tcp . 80 comment \"tidb/demo-empty:web\" : goto reject-chain"]
    );
    assert_eq!(
        elements(&text, "map", "no-endpoint-nodeports"),
        ["tcp . 30401 comment \"tidb/demo-empty:web\" : goto reject-chain"]
    );
    assert!(elements(&text, "set", "cluster-ips").contains(&"10.96.0.60"));
    assert_eq!(
        chain(&text, "reject-chain"),
        ["comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\"", "reject"]
    );
    assert_eq!(
        chain(&text, "service-endpoints-check"),
        ["ip daddr . meta l4proto . th dport vmap @no-endpoint-services"]
    );
    assert!(!text.contains(&svc_base("tidb/demo-empty/tcp/web")), "no chains for it");
    assert!(!elements(&text, "map", "service-ips").iter().any(|e| e.starts_with("10.96.0.60 ")));
}

#[test]
fn ipv6_table_uses_v6_addresses() {
    let plan = plan_from(&nftables_yaml(&dual_stack_yaml()));
    let n2 = node(&plan, "node-2");
    let text = render_nftables(&plan, n2, Family::V6);
    assert!(text.contains("add table ip6 kube-proxy\ndelete table ip6 kube-proxy\ntable ip6 kube-proxy {"));
    assert!(text.contains("type ipv6_addr . inet_proto . inet_service : verdict"));
    let pd1 = plan.pod(&"tidb/demo-pd-1".parse().expect("pod ref")).and_then(|p| p.ip_v6).expect("v6 pod");
    let ep = format!(
        "endpoint-{}",
        svc_base(&format!("tidb/demo-pd/tcp/client__{}/2379", pd1.to_string().replace(':', ".")))
    );
    assert_eq!(
        chain(&text, &ep),
        [
            format!("ip6 saddr {pd1} jump mark-for-masquerade"),
            format!("meta l4proto tcp dnat to [{pd1}]:2379")
        ]
    );
    assert_eq!(elements(&text, "set", "nodeport-ips"), [n2.ip_v6.expect("v6 node").to_string()]);
    assert!(
        chain(&text, "cluster-ips-check").iter().any(|r| r.starts_with("ip6 daddr { fd42:96::/112 } drop"))
    );
    assert!(!text.contains("10.96.") && !text.contains("10.244."), "no IPv4 in the IPv6 table");
}

#[test]
fn a_family_the_lab_lacks_only_removes_the_table() {
    let plan = plan_from(&nftables_yaml(OPEN_TOPOLOGY));
    let text = render_nftables(&plan, node(&plan, "node-1"), Family::V6);
    let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(body, ["add table ip6 kube-proxy", "delete table ip6 kube-proxy"]);
}

#[test]
fn every_goto_and_jump_lands_on_a_defined_chain() {
    for yaml in [dual_stack_yaml(), etp_local_yaml(), no_endpoints_yaml()] {
        let plan = plan_from(&yaml);
        for n in &plan.nodes {
            for family in Family::ALL {
                let text = render_nftables(&plan, n, family);
                let defined: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("chain "))
                    .filter_map(|l| l.strip_suffix(" {"))
                    .collect();
                let words: Vec<&str> = text.split_whitespace().collect();
                for pair in words.windows(2) {
                    if pair[0] == "goto" || pair[0] == "jump" {
                        let target = pair[1].trim_end_matches(',');
                        assert!(defined.contains(&target), "{} {family}: {target} is not defined", n.name);
                    }
                }
            }
        }
    }
}
