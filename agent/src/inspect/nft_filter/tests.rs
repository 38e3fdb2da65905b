//! Real `nft -j` output (nft 1.0.6, written in a scratch namespace): `ruleset.json` holds an
//! admin's `inet admin` table, an iptables-nft-shaped `ip filter` table and a `kube-proxy`
//! table; see the module doc for what is read.

use super::*;

const RULESET: &str = include_str!("ruleset.json");
const TABLES: &str = include_str!("tables.json");

fn shown(drops: &[FilterDrop]) -> Vec<String> {
    drops.iter().map(|d| d.rule.as_str().to_owned()).collect()
}

#[test]
fn only_tables_no_other_reader_owns_are_read() {
    assert_eq!(tables_to_read(TABLES).unwrap(), vec![("inet".to_owned(), "admin".to_owned())]);
    assert!(owned_elsewhere("ip6", "kube-proxy"));
    assert!(owned_elsewhere("ip6", "mangle"));
    assert!(!owned_elsewhere("inet", "filter"), "an inet table is no iptables-nft table");
}

#[test]
fn an_admins_rules_are_read_as_the_iptables_reader_reads_its_own() {
    let drops = parse(RULESET).unwrap();
    assert_eq!(
        shown(&drops),
        vec![
            "nft inet admin guard (forward): ip saddr 10.244.1.0/24 tcp dport { 2379-2380, 20160 } drop",
            "nft inet admin guard (forward): iifname \"eth*\" meta l4proto udp reject",
            "nft inet admin guard (forward) → sub: tcp dport 80 reject",
            "nft inet admin guard (forward): ip protocol icmp drop",
            "nft inet admin guard (forward): policy drop (drops what no rule accepts)",
            "nft inet admin in (input): tcp dport 22 ct state new drop",
        ],
        "not read: `meta nfproto ipv6 drop` (a family match), `limit rate … drop` (a share), and the \
         ip filter and kube-proxy tables"
    );
    assert!(drops.iter().all(FilterDrop::from_nftables), "the collector tells them from iptables' rules");
    let [ports, udp, jumped, icmp, policy, ssh] = drops.as_slice() else { unreachable!() };
    assert_eq!(ports.hook, FilterHook::Forward);
    assert_eq!(ports.source, Some("10.244.1.0/24".parse().unwrap()));
    assert_eq!(ports.protocol, Some(FilterProtocol::Tcp));
    let ranges: Vec<(u32, u32)> =
        ports.destination_ports.iter().map(|r| (u32::from(r.first.get()), u32::from(r.last.get()))).collect();
    assert_eq!(ranges, vec![(2379, 2380), (20160, 20160)]);
    assert!(ports.new_only, "after `ct state established,related accept`");
    assert!(!ports.reject);
    assert_eq!(udp.in_interface.as_ref().map(|t| t.as_str()), Some("eth+"));
    assert_eq!(udp.protocol, Some(FilterProtocol::Udp));
    assert!(udp.reject);
    assert_eq!(jumped.destination, Some("10.1.1.1/32".parse().unwrap()), "the jump's condition carries on");
    assert_eq!(jumped.protocol, Some(FilterProtocol::Tcp));
    assert_eq!(icmp.protocol, Some(FilterProtocol::Icmp));
    assert!(policy.policy && policy.new_only);
    assert_eq!(ssh.hook, FilterHook::Input);
    assert!(ssh.new_only, "its own `ct state new`: replies and established flows pass");
}

#[test]
fn input_that_is_not_nft_json_is_an_error_and_odd_shapes_are_skipped() {
    assert!(matches!(parse("not json"), Err(NftJsonError::NotJson(_))));
    assert!(matches!(parse("{}"), Err(NftJsonError::NoNftablesArray)));
    for odd in [
        r#"{"nftables": [1, "x", {"chain": 3}, {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": 5}}]}"#,
        r#"{"nftables": [{"chain": {"family": "inet", "table": "t", "name": "c", "type": "filter", "hook": "forward", "policy": "drop"}},
            {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [{"jump": {"target": "c"}}]}},
            {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"range": [90, 80]}}}, {"drop": null}]}},
            {"rule": {"family": "inet", "table": "t", "chain": "c", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "fd00::1"}}, {"drop": null}]}}]}"#,
    ] {
        let drops = parse(odd).unwrap();
        assert!(drops.iter().all(|d| d.policy), "{odd}: {:?}", shown(&drops));
    }
}

#[test]
fn prerouting_and_postrouting_drops_meet_the_hooks_around_them() {
    let json = r#"{"nftables": [
        {"chain": {"family": "ip", "table": "edge", "name": "pre", "type": "filter", "hook": "prerouting", "prio": -150}},
        {"chain": {"family": "ip", "table": "edge", "name": "post", "type": "filter", "hook": "postrouting", "prio": 0, "policy": "drop"}},
        {"chain": {"family": "ip", "table": "edge", "name": "nat", "type": "nat", "hook": "prerouting", "prio": -100, "policy": "drop"}},
        {"rule": {"family": "ip", "table": "edge", "chain": "pre", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 20160}}, {"drop": null}]}}
    ]}"#;
    let got: Vec<(FilterHook, String)> =
        parse(json).unwrap().iter().map(|d| (d.hook, d.rule.as_str().to_owned())).collect();
    let pre = "nft ip edge pre (prerouting): tcp dport 20160 drop".to_owned();
    let post = "nft ip edge post (postrouting): policy drop (drops what no rule accepts)".to_owned();
    assert_eq!(
        got,
        vec![
            (FilterHook::Input, pre.clone()),
            (FilterHook::Forward, pre),
            (FilterHook::Forward, post.clone()),
            (FilterHook::Output, post)
        ],
        "a nat chain's policy is no filter"
    );
}
