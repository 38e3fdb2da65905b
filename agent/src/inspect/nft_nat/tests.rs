//! Real `nft -j list ruleset` output (nft 1.0.6, loaded from `hand-made-nat.nft` in a scratch
//! namespace: `hand-made-nat-nft.json`) and the kube-proxy and iptables-nft tables of a lab
//! node, which are other readers'.

use std::net::IpAddr;

use netdiag_model::inspect::{AddressMatch, FilterProtocol, NatAction, NatHook};

use super::*;
use crate::inspect::testing::fixture;

fn shown(rules: &[NatRule]) -> Vec<(NatHook, String, bool, String)> {
    rules.iter().map(|r| (r.hook, r.action.to_string(), r.opaque, r.rule.as_str().to_owned())).collect()
}

#[test]
fn an_admins_nat_chains_are_read_in_hook_and_priority_order() {
    let rules = parse(&fixture("hand-made-nat-nft.json")).unwrap();
    let s = |x: &str| x.to_owned();
    assert_eq!(
        shown(&rules),
        vec![
            (
                NatHook::Prerouting,
                s("to 10.244.1.99:2379"),
                false,
                s(
                    "nft inet admin pre (prerouting): ip daddr 10.244.1.3 tcp dport 2379 dnat ip to 10.244.1.99:2379 # handle 6"
                )
            ),
            (
                NatHook::Prerouting,
                s("to 10.244.3.53"),
                false,
                s(
                    "nft inet admin pre (prerouting) → divert: udp dport 53 dnat ip to 10.244.3.53 # handle 12"
                )
            ),
            (
                NatHook::Prerouting,
                s("to itself, port 3128"),
                false,
                s(
                    "nft inet admin pre (prerouting): ip daddr != 10.96.0.0/12 tcp dport 8080 redirect to :3128 # handle 8"
                )
            ),
            (
                NatHook::Prerouting,
                s("to 10.0.0.1"),
                true,
                s(
                    "nft inet admin pre (prerouting): mark 1 tcp dport { 80, 443 } dnat ip to 10.0.0.1 # handle 10"
                )
            ),
            (
                NatHook::Prerouting,
                s("into 10.244.3.0/24"),
                false,
                s(
                    "nft inet admin pre (prerouting): ip daddr 192.168.50.0/24 dnat ip prefix to 10.244.3.0/24 # handle 11"
                )
            ),
            (
                NatHook::Prerouting,
                s("to [fd00:244::99]:2379"),
                false,
                s(
                    "nft ip6 admin6 pre (prerouting): ip6 daddr fd00:244::3 tcp dport 2379 dnat to [fd00:244::99]:2379 # handle 2"
                )
            ),
            (
                NatHook::Output,
                s("to 10.244.2.2:2399"),
                false,
                s(
                    "nft inet admin out (output): ip daddr 10.96.0.20 tcp dport 2379 dnat ip to 10.244.2.2:2399 # handle 14"
                )
            ),
            (
                NatHook::Postrouting,
                s("from 172.29.0.99"),
                false,
                s(
                    "nft inet admin post (postrouting): ip saddr 10.244.1.0/24 oifname eth0 snat ip to 172.29.0.99 # handle 15"
                )
            ),
            (
                NatHook::Postrouting,
                s("from its own address"),
                false,
                s(
                    "nft inet admin post (postrouting): ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade # handle 16"
                )
            ),
        ],
        "the filter chain is the drop reader's; a mark is opaque"
    );
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(rules.iter().all(NatRule::from_nftables));
    assert_eq!(
        rules[0].destination,
        Some(AddressMatch { net: "10.244.1.3/32".parse().unwrap(), negated: false })
    );
    assert_eq!(rules[0].protocol, Some(FilterProtocol::Tcp));
    assert_eq!(
        rules[0].action,
        NatAction::Dnat { address: Some(ip("10.244.1.99")), port: Some(Port::new(2379).unwrap()) }
    );
    assert_eq!(
        rules[1].source,
        Some(AddressMatch { net: "10.244.2.0/24".parse().unwrap(), negated: false }),
        "the jump's condition carries on"
    );
    assert_eq!(
        rules[2].destination,
        Some(AddressMatch { net: "10.96.0.0/12".parse().unwrap(), negated: true })
    );
    assert_eq!(rules[7].out_interface.as_ref().map(|t| t.as_str()), Some("eth0"));
}

#[test]
fn kube_proxys_and_iptables_nfts_tables_are_not_read() {
    assert_eq!(parse(&fixture("lab-node-1-nft-ruleset.json")).unwrap(), vec![]);
    assert_eq!(parse(&fixture("kube-proxy-nftables.json")).unwrap(), vec![]);
}

#[test]
fn input_that_is_not_nft_json_is_an_error_and_odd_shapes_never_panic() {
    assert!(parse("not json").is_err());
    assert!(parse("{\"x\": 1}").is_err());
    let chain = r#"{"chain": {"family": "ip", "table": "t", "name": "c", "type": "nat", "hook": "prerouting", "prio": -100}}"#;
    for expr in [
        r#"[{"dnat": {"addr": {"map": {}}}}]"#,
        r#"[{"dnat": {"addr": "10.0.0.1", "port": 70000}}]"#,
        r#"[{"dnat": null}]"#,
        r#"[{"snat": {"addr": "nonsense"}}]"#,
        r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "fd00::1"}}, {"dnat": {"addr": "10.0.0.1"}}]"#,
        r#"[{"match": {}}, {"masquerade": null}]"#,
        r#"[1, 2, {"redirect": {"port": "x"}}]"#,
        r#"[{"jump": {}}]"#,
    ] {
        let json = format!(
            r#"{{"nftables": [{chain}, {{"rule": {{"family": "ip", "table": "t", "chain": "c", "expr": {expr}}}}}]}}"#
        );
        let rules = parse(&json).unwrap();
        assert!(rules.iter().all(|r| r.opaque), "{expr}: {rules:?}");
    }
}
