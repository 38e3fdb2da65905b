//! iptables-mode shapes on the default lab and its variants, checked line by line.

use super::*;
use crate::rules::tests::{
    default_plan, dual_stack_yaml, etp_local_yaml, no_endpoints_yaml, node, plan_from,
};

/// The `-A` lines of one table, in order.
fn rules_of<'a>(text: &'a str, table: &str) -> Vec<&'a str> {
    let header = format!("*{table}");
    text.lines()
        .skip_while(|l| *l != header)
        .take_while(|l| *l != "COMMIT")
        .filter(|l| l.starts_with("-A "))
        .collect()
}

fn in_chain<'a>(rules: &[&'a str], chain: &str) -> Vec<&'a str> {
    let prefix = format!("-A {chain} ");
    rules.iter().copied().filter(|r| r.starts_with(&prefix)).collect()
}

/// The chain a rule jumps to.
fn target(rule: &str) -> &str {
    rule.rsplit_once(" -j ").map_or("", |(_, t)| t.split(' ').next().unwrap_or(""))
}

fn node1_v4() -> String {
    let plan = default_plan();
    render_iptables(&plan, node(&plan, "node-1"), Family::V4)
}

#[test]
fn probabilities_read_as_iptables_save_prints_them() {
    let cases = [
        (2, "0.50000000000"),
        (3, "0.33333333349"),
        (4, "0.25000000000"),
        (5, "0.20000000019"),
        (6, "0.16666666651"),
        (10, "0.10000000009"),
    ];
    for (n, want) in cases {
        assert_eq!(probability(n), want, "1/{n}");
    }
}

#[test]
fn comments_are_quoted_like_iptables_save() {
    assert_eq!(save_string("tidb/demo-pd:client"), "\"tidb/demo-pd:client\"");
    assert_eq!(save_string("plain_word-1"), "plain_word-1");
    assert_eq!(save_string(""), "\"\"");
    assert_eq!(save_string("say \"hi\""), "\"say \\\"hi\\\"\"");
}

#[test]
fn hooks_and_masquerade_match_kube_proxy() {
    let text = node1_v4();
    let nat = rules_of(&text, "nat");
    for want in [
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    ] {
        assert!(nat.contains(&want), "missing {want}");
    }
    assert_eq!(
        in_chain(&nat, "KUBE-POSTROUTING"),
        [
            "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
            "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
            "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
        ]
    );
    let filter = rules_of(&text, "filter");
    for chain in ["OUTPUT", "FORWARD"] {
        let want = format!(
            "-A {chain} -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
        );
        assert!(filter.contains(&want.as_str()), "missing {want}");
    }
}

#[test]
fn kube_services_has_one_rule_per_cluster_ip_port_then_the_nodeports_rule() {
    let text = node1_v4();
    let nat = rules_of(&text, "nat");
    let services = in_chain(&nat, "KUBE-SERVICES");
    let (last, portals) = services.split_last().expect("KUBE-SERVICES has rules");
    assert_eq!(
        *last,
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    );
    let dests: Vec<String> = portals
        .iter()
        .map(|r| {
            let words: Vec<&str> = r.split(' ').collect();
            let after = |flag: &str| {
                words.iter().position(|w| *w == flag).and_then(|i| words.get(i + 1)).copied().unwrap_or("")
            };
            format!("{} {} {}", after("-d"), after("-p"), after("--dport"))
        })
        .collect();
    assert_eq!(
        dests,
        [
            "10.96.0.10/32 udp 53",
            "10.96.0.10/32 tcp 53",
            "10.96.0.20/32 tcp 2379",
            "10.96.0.40/32 tcp 4000",
            "10.96.0.50/32 tcp 10261",
        ]
    );
    assert!(portals.iter().all(|r| target(r).starts_with("KUBE-SVC-")));
    assert_eq!(
        portals[2],
        format!(
            "-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment \"tidb/demo-pd:client cluster IP\" -m tcp --dport 2379 -j KUBE-SVC-{}",
            port_proto_hash("tidb/demo-pd:client", "tcp")
        )
    );
}

#[test]
fn demo_pd_picks_one_of_three_endpoints() {
    let text = node1_v4();
    let nat = rules_of(&text, "nat");
    let svc = format!("KUBE-SVC-{}", port_proto_hash("tidb/demo-pd:client", "tcp"));
    let rules = in_chain(&nat, &svc);
    assert_eq!(rules.len(), 4, "{rules:#?}");
    assert_eq!(
        rules[0],
        format!(
            "-A {svc} ! -s 10.244.0.0/16 -d 10.96.0.20/32 -p tcp -m comment --comment \"tidb/demo-pd:client cluster IP\" -m tcp --dport 2379 -j KUBE-MARK-MASQ"
        )
    );
    let jumps = &rules[1..];
    assert!(jumps[0].contains("-m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-"));
    assert!(jumps[1].contains("-m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-"));
    assert!(!jumps[2].contains("statistic"), "the last jump is unconditional: {}", jumps[2]);
    assert!(jumps[0].contains("--comment \"tidb/demo-pd:client -> 10.244.1.3:2379\""));

    let targets: Vec<String> = jumps
        .iter()
        .map(|j| {
            let sep = target(j);
            let seps = in_chain(&nat, sep);
            assert_eq!(seps.len(), 2, "{sep}: {seps:#?}");
            assert!(seps[0].ends_with("-j KUBE-MARK-MASQ") && seps[0].contains(" -s 10.244."));
            seps[1].rsplit(' ').next().unwrap_or("").to_string()
        })
        .collect();
    assert_eq!(targets, ["10.244.1.3:2379", "10.244.2.2:2379", "10.244.3.2:2379"]);
    let sep = target(jumps[0]);
    assert_eq!(
        in_chain(&nat, sep),
        [
            format!(
                "-A {sep} -s 10.244.1.3/32 -m comment --comment \"tidb/demo-pd:client\" -j KUBE-MARK-MASQ"
            ),
            format!(
                "-A {sep} -p tcp -m comment --comment \"tidb/demo-pd:client\" -m tcp -j DNAT --to-destination 10.244.1.3:2379"
            ),
        ]
    );
}

#[test]
fn dns_service_has_udp_and_tcp_rules() {
    let text = node1_v4();
    let nat = rules_of(&text, "nat");
    for (port, proto) in [("dns", "udp"), ("dns-tcp", "tcp")] {
        let name = format!("kube-system/kube-dns:{port}");
        let svc = format!("KUBE-SVC-{}", port_proto_hash(&name, proto));
        let portal = format!(
            "-A KUBE-SERVICES -d 10.96.0.10/32 -p {proto} -m comment --comment \"{name} cluster IP\" -m {proto} --dport 53 -j {svc}"
        );
        assert!(nat.contains(&portal.as_str()), "missing {portal}");
        let jumps = in_chain(&nat, &svc);
        let sep = target(jumps[jumps.len() - 1]);
        let dnat = format!(
            "-A {sep} -p {proto} -m comment --comment \"{name}\" -m {proto} -j DNAT --to-destination 10.244.1.2:53"
        );
        assert!(nat.contains(&dnat.as_str()), "missing {dnat}");
    }
    assert!(text.contains("KUBE-SVC-TCOU7JCQXEZGVUNU"), "kube-dns:dns/udp keeps its well-known chain name");
}

#[test]
fn headless_services_get_no_rules() {
    let text = node1_v4();
    assert!(!text.contains("demo-pd-peer"), "{text}");
    assert!(!text.contains("demo-tikv-peer"), "{text}");
}

#[test]
fn node_port_goes_through_an_ext_chain_that_masquerades() {
    let text = node1_v4();
    let nat = rules_of(&text, "nat");
    let hash = port_proto_hash("tidb/demo-tidb:mysql-client", "tcp");
    assert_eq!(
        in_chain(&nat, "KUBE-NODEPORTS"),
        [format!(
            "-A KUBE-NODEPORTS -p tcp -m comment --comment \"tidb/demo-tidb:mysql-client\" -m tcp --dport 30400 -j KUBE-EXT-{hash}"
        )]
    );
    assert_eq!(
        in_chain(&nat, &format!("KUBE-EXT-{hash}")),
        [
            format!(
                "-A KUBE-EXT-{hash} -m comment --comment \"masquerade traffic for tidb/demo-tidb:mysql-client external destinations\" -j KUBE-MARK-MASQ"
            ),
            format!("-A KUBE-EXT-{hash} -j KUBE-SVC-{hash}"),
        ]
    );
    assert!(text.contains(&format!(":KUBE-EXT-{hash} - [0:0]")));
    assert!(!text.contains("KUBE-SVL-"), "no Local policy, no SVL chain");
}

#[test]
fn etp_local_uses_only_this_nodes_endpoints_or_drops() {
    let plan = plan_from(&etp_local_yaml());
    let hash = port_proto_hash("tidb/demo-tidb:mysql-client", "tcp");
    let ext = format!("KUBE-EXT-{hash}");
    let short_circuit = [
        format!(
            "-A {ext} -s 10.244.0.0/16 -m comment --comment \"pod traffic for tidb/demo-tidb:mysql-client external destinations\" -j KUBE-SVC-{hash}"
        ),
        format!(
            "-A {ext} -m comment --comment \"masquerade LOCAL traffic for tidb/demo-tidb:mysql-client external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
        ),
        format!(
            "-A {ext} -m comment --comment \"route LOCAL traffic for tidb/demo-tidb:mysql-client external destinations\" -m addrtype --src-type LOCAL -j KUBE-SVC-{hash}"
        ),
    ];

    // node-2 runs demo-tidb-0: external traffic goes to it alone.
    let text = render_iptables(&plan, node(&plan, "node-2"), Family::V4);
    let nat = rules_of(&text, "nat");
    let mut want: Vec<String> = short_circuit.to_vec();
    want.push(format!("-A {ext} -j KUBE-SVL-{hash}"));
    assert_eq!(in_chain(&nat, &ext), want);
    let svl = in_chain(&nat, &format!("KUBE-SVL-{hash}"));
    assert_eq!(svl.len(), 1, "{svl:#?}");
    assert!(svl[0].contains("-> 10.244.2.4:4000") && !svl[0].contains("statistic"));
    let svc = in_chain(&nat, &format!("KUBE-SVC-{hash}"));
    assert_eq!(svc.len(), 3, "the cluster IP still balances over both pods: {svc:#?}");
    assert!(!rules_of(&text, "filter").iter().any(|r| r.contains("has no local endpoints")));

    // node-1 runs none: only the short-circuit rules, and the filter table drops the rest.
    let text = render_iptables(&plan, node(&plan, "node-1"), Family::V4);
    let nat = rules_of(&text, "nat");
    assert_eq!(in_chain(&nat, &ext), short_circuit.to_vec());
    assert!(!text.contains("KUBE-SVL-"));
    assert_eq!(
        in_chain(&rules_of(&text, "filter"), "KUBE-EXTERNAL-SERVICES"),
        [
            "-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment \"tidb/demo-tidb:mysql-client has no local endpoints\" -m addrtype --dst-type LOCAL -m tcp --dport 30400 -j DROP"
        ]
    );
}

#[test]
fn a_service_without_endpoints_is_rejected_in_the_filter_table() {
    let plan = plan_from(&no_endpoints_yaml());
    let text = render_iptables(&plan, node(&plan, "node-1"), Family::V4);
    let filter = rules_of(&text, "filter");
    assert_eq!(
        in_chain(&filter, "KUBE-SERVICES"),
        [
            "-A KUBE-SERVICES -d 10.96.0.60/32 -p tcp -m comment --comment \"tidb/demo-empty:web has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"
        ]
    );
    assert_eq!(
        in_chain(&filter, "KUBE-EXTERNAL-SERVICES"),
        [
            "-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment \"tidb/demo-empty:web has no endpoints\" -m addrtype --dst-type LOCAL -m tcp --dport 30401 -j REJECT --reject-with icmp-port-unreachable"
        ]
    );
    let nat = rules_of(&text, "nat");
    assert!(!nat.iter().any(|r| r.contains("demo-empty")), "no nat rules for it: {nat:#?}");
    let hash = port_proto_hash("tidb/demo-empty:web", "tcp");
    assert!(!text.contains(&hash), "no chains for it");
}

#[test]
fn ipv6_rules_use_v6_addresses_and_icmp6() {
    let yaml = no_endpoints_yaml().replace("ipv6: false", "ipv6: true");
    let plan = plan_from(&yaml);
    let n2 = node(&plan, "node-2");
    let text = render_iptables(&plan, n2, Family::V6);
    let nat = rules_of(&text, "nat");
    let pd_vip = plan.services[1].cluster_ip_v6.expect("dual-stack VIP");
    let portal = nat
        .iter()
        .find(|r| r.contains("tidb/demo-pd:client cluster IP") && r.starts_with("-A KUBE-SERVICES"))
        .expect("demo-pd portal");
    assert!(portal.contains(&format!("-d {pd_vip}/128 ")), "{portal}");
    let pd1 = plan.pod(&"tidb/demo-pd-1".parse().expect("pod ref")).and_then(|p| p.ip_v6).expect("v6 pod");
    assert!(nat.iter().any(|r| r.ends_with(&format!("-j DNAT --to-destination [{pd1}]:2379"))));
    assert!(nat.iter().any(|r| r.contains(&format!("-s {pd1}/128 "))));
    assert!(nat.iter().any(|r| r.starts_with("-A KUBE-SERVICES ! -d ::1/128 ")));
    assert!(nat.iter().any(|r| r.contains(&format!("! -s {} ", plan.pod_cidr_v6.expect("v6 pod cidr")))));
    assert!(text.contains("--reject-with icmp6-port-unreachable"));
    assert!(!text.contains("icmp-port-unreachable"));
    assert!(!text.contains("KUBE-FIREWALL"), "kubelet's localnet rule is IPv4 only");
    assert!(!text.contains("10.96.") && !text.contains("10.244."), "no IPv4 in the IPv6 rules");
}

#[test]
fn a_family_the_lab_lacks_gets_empty_tables() {
    let plan = default_plan();
    let text = render_iptables(&plan, node(&plan, "node-1"), Family::V6);
    let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        body,
        [
            "*filter",
            ":INPUT ACCEPT [0:0]",
            ":FORWARD ACCEPT [0:0]",
            ":OUTPUT ACCEPT [0:0]",
            "COMMIT",
            "*nat",
            ":PREROUTING ACCEPT [0:0]",
            ":INPUT ACCEPT [0:0]",
            ":OUTPUT ACCEPT [0:0]",
            ":POSTROUTING ACCEPT [0:0]",
            "COMMIT",
        ]
    );
}

#[test]
fn every_jump_lands_on_a_declared_chain() {
    for yaml in [dual_stack_yaml(), etp_local_yaml(), no_endpoints_yaml()] {
        let plan = plan_from(&yaml);
        for n in &plan.nodes {
            for family in Family::ALL {
                let text = render_iptables(&plan, n, family);
                for table in ["filter", "nat"] {
                    let declared: Vec<&str> = text
                        .lines()
                        .skip_while(|l| *l != format!("*{table}"))
                        .take_while(|l| *l != "COMMIT")
                        .filter_map(|l| l.strip_prefix(':'))
                        .filter_map(|l| l.split(' ').next())
                        .collect();
                    for rule in rules_of(&text, table) {
                        let t = target(rule);
                        let builtin = ["ACCEPT", "DROP", "RETURN", "REJECT", "MARK", "MASQUERADE", "DNAT"];
                        assert!(
                            builtin.contains(&t) || declared.contains(&t),
                            "{} {family} {table}: {rule} jumps to undeclared {t}",
                            n.name
                        );
                        let chain = rule.split(' ').nth(1).unwrap_or("");
                        assert!(declared.contains(&chain), "{rule} appends to undeclared {chain}");
                    }
                }
            }
        }
    }
}
