//! The nftables parser on captured `nft -j` output (kube-proxy's shapes and a lab node's whole
//! ruleset), on odd shapes, and on arbitrary text and nft-shaped JSON (proptest).

use netdiag_lab::rules::{Family, expected_nat};
use proptest::prelude::*;

use super::*;
use crate::inspect::testing::{
    expected_lines, fixture, lab_variants, node_ip, plan_from, render, report_lines,
};

/// The frontends of `kube-proxy-nftables.json` (see the fixtures' README): the same services as
/// the iptables fixtures, in kube-proxy's nftables shapes, node ports on `nodeport-ips`.
const SHOP: &str = "\
service tcp 10.96.0.1:443 default/kubernetes:https -> 172.18.0.2:6443
service tcp 10.96.0.10:53 kube-system/kube-dns:dns-tcp -> 10.244.0.3:53 10.244.1.4:53
service udp 10.96.0.10:53 kube-system/kube-dns:dns -> 10.244.0.3:53 10.244.1.4:53
service tcp 10.96.0.30:80 shop/web:http -> 10.244.0.10:8080 10.244.1.11:8080 10.244.2.12:8080
service tcp 10.96.0.40:9000 shop/api -> 10.244.1.20:9000 10.244.2.21:9000
service tcp 10.96.0.50:443 shop/lb:https -> 10.244.0.30:8443 10.244.2.31:8443
service tcp 10.96.0.60:80 shop/lb-nolocal:http -> 10.244.2.40:80
service tcp 10.96.0.70:80 shop/fw:http -> 10.244.1.50:80
service tcp 10.96.0.80:80 shop/empty:http -> none
service tcp 10.96.0.81:80 shop/empty-np:http -> none
service sctp 10.96.0.90:3868 shop/sctp:assoc -> 10.244.2.60:3868
service tcp 10.96.0.100:80 shop/itp:http -> 10.244.0.70:80
service tcp 192.0.2.10:443 shop/lb:https -> 10.244.0.30:8443
service tcp 192.0.2.20:80 shop/lb-nolocal:http -> none
service tcp 203.0.113.10:443 shop/lb:https -> 10.244.0.30:8443
service tcp 203.0.113.20:80 shop/lb-nolocal:http -> none
service tcp 203.0.113.30:80 shop/fw:http -> 10.244.1.50:80
service tcp [fd00:96::1]:443 default/kubernetes:https -> [fd00:18::2]:6443
service tcp [fd00:96::30]:80 shop/web:http -> [fd00:244::a]:8080 [fd00:244:0:1::b]:8080
service tcp [fd00:96::50]:80 shop/empty:http -> none
nodeport tcp 192.168.0.2:30080 shop/web:http -> 10.244.0.10:8080 10.244.1.11:8080 10.244.2.12:8080
nodeport tcp 192.168.0.2:31000 shop/fw:http -> 10.244.1.50:80
nodeport tcp 192.168.0.2:31080 shop/lb-nolocal:http -> none
nodeport tcp 192.168.0.2:31443 shop/lb:https -> 10.244.0.30:8443
nodeport tcp 192.168.0.2:32000 shop/empty-np:http -> none
nodeport tcp [fd00:168::2]:30080 shop/web:http -> [fd00:244::a]:8080 [fd00:244:0:1::b]:8080
";

#[test]
fn nft_json_gives_every_frontend_and_its_targets() {
    assert_eq!(render(&parse(&fixture("kube-proxy-nftables.json")).unwrap()), SHOP);
}

#[test]
fn compact_and_pretty_json_read_the_same() {
    let pretty = fixture("kube-proxy-nftables.json");
    let compact = serde_json::to_string(&serde_json::from_str::<Value>(&pretty).unwrap()).unwrap();
    assert_eq!(parse(&compact).unwrap(), parse(&pretty).unwrap());
}

#[test]
fn each_target_names_its_endpoint_chain() {
    let services = parse(&fixture("kube-proxy-nftables.json")).unwrap();
    let lb: IpAddr = "203.0.113.10".parse().unwrap();
    let svc = services.iter().find(|s| s.vip == Some(lb)).unwrap();
    let chains: Vec<&str> = svc.targets.iter().map(|t| t.chain.as_ref().unwrap().as_str()).collect();
    assert_eq!(chains, ["endpoint-W37INCYV-shop/lb/tcp/https__10.244.0.30/8443"]);
}

#[test]
fn the_labs_captured_ruleset_matches_what_the_lab_expects() {
    // `nft -j list ruleset` of a dual-stack lab node: both kube-proxy tables plus the
    // iptables-nft tables holding the lab's fault chain, which must be ignored.
    let plan = plan_from(&lab_variants()[1].1);
    let node = &plan.nodes[0];
    let services = parse(&fixture("lab-node-1-nft-ruleset.json")).unwrap();
    for family in Family::ALL {
        let ip = node_ip(node, family).unwrap();
        let of_family: Vec<NatService> =
            services.iter().filter(|s| family_of(s) == family).cloned().collect();
        assert_eq!(
            report_lines(&of_family, ip),
            expected_lines(&expected_nat(&plan, node, family)),
            "{family}"
        );
    }
}

fn family_of(s: &NatService) -> Family {
    match s.vip.or_else(|| s.targets.first().map(|t| t.ip)) {
        Some(IpAddr::V6(_)) => Family::V6,
        _ => Family::V4,
    }
}

#[test]
fn kube_proxy_tables_are_found_in_a_table_listing() {
    let listing = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "nat", "handle": 1}}, {"table": {"family": "ip6", "name": "kube-proxy", "handle": 3}}, {"table": {"family": "ip", "name": "kube-proxy", "handle": 2}}, {"table": {"family": "inet", "name": "kube-proxy", "handle": 4}}]}"#;
    assert_eq!(kube_proxy_tables(listing).unwrap(), [NftFamily::Ip, NftFamily::Ip6]);
    assert_eq!(kube_proxy_tables(r#"{"nftables": []}"#).unwrap(), []);
    assert_eq!(parse(r#"{"nftables": []}"#).unwrap(), []);
}

#[test]
fn output_that_is_not_nft_json_is_an_error() {
    assert!(matches!(parse("Error: syntax error"), Err(NftJsonError::NotJson(_))));
    assert!(matches!(parse(r#"{"tables": []}"#), Err(NftJsonError::NoNftablesArray)));
    assert!(matches!(kube_proxy_tables("[1, 2]"), Err(NftJsonError::NoNftablesArray)));
    let msg = NftJsonError::NoNftablesArray.to_string();
    assert!(msg.contains("nft -j list"), "{msg}");
}

#[test]
fn odd_shapes() {
    let table = r#"{"table": {"family": "ip", "name": "kube-proxy"}}"#;
    let cases: &[(&str, &str, &str)] = &[
        (
            "string ports, numeric protocols, a DNAT without a port and a jump verdict",
            r#"{"map": {"family": "ip", "table": "kube-proxy", "name": "service-ips", "elem": [[{"concat": ["10.96.0.5", 17, "514"]}, {"jump": {"target": "c"}}]]}},
               {"rule": {"family": "ip", "table": "kube-proxy", "chain": "c", "expr": [{"dnat": {"addr": "10.244.0.9"}}]}}"#,
            "service udp 10.96.0.5:514 ? -> 10.244.0.9:514\n",
        ),
        (
            "address and port ranges keep their first value; inet-style dnat with a family",
            r#"{"map": {"family": "ip", "table": "kube-proxy", "name": "service-ips", "elem": [[{"concat": ["10.96.0.6", "tcp", 80]}, {"goto": {"target": "c"}}]]}},
               {"rule": {"family": "ip", "table": "kube-proxy", "chain": "c", "expr": [{"dnat": {"family": "ip", "addr": {"range": ["10.1.0.1", "10.1.0.9"]}, "port": {"range": [8080, 8090]}}}]}}"#,
            "service tcp 10.96.0.6:80 ? -> 10.1.0.1:8080\n",
        ),
        (
            "cycles end, unknown chains are empty, truncated chain names name no service",
            r#"{"map": {"family": "ip", "table": "kube-proxy", "name": "service-ips", "elem": [[{"concat": ["10.96.0.7", "tcp", 80]}, {"goto": {"target": "service-AAAAAAAA-ns/x/tcp/p..."}}]]}},
               {"rule": {"family": "ip", "table": "kube-proxy", "chain": "service-AAAAAAAA-ns/x/tcp/p...", "expr": [{"jump": {"target": "b"}}]}},
               {"rule": {"family": "ip", "table": "kube-proxy", "chain": "b", "expr": [{"goto": {"target": "service-AAAAAAAA-ns/x/tcp/p..."}}]}},
               {"rule": {"family": "ip", "table": "kube-proxy", "chain": "b", "expr": [{"goto": {"target": "nowhere"}}]}}"#,
            "service tcp 10.96.0.7:80 ? -> none\n",
        ),
        (
            "rules of other tables and malformed elements are ignored",
            r#"{"map": {"family": "ip", "table": "other", "name": "service-ips", "elem": [[{"concat": ["10.96.0.8", "tcp", 80]}, {"goto": {"target": "c"}}]]}},
               {"map": {"family": "ip", "table": "kube-proxy", "name": "service-ips", "elem": [[{"concat": ["10.96.0.9", "tcp"]}, {"goto": {"target": "c"}}], 7, [{"concat": ["nope", "tcp", 80]}, null], [{"concat": ["10.96.0.9", "icmp", 80]}, null], [{"concat": ["10.96.0.9", "tcp", 0]}, null]]}}"#,
            "",
        ),
        (
            "node ports without a nodeport-ips restriction match every local address",
            r#"{"map": {"family": "ip", "table": "kube-proxy", "name": "service-nodeports", "elem": [[{"concat": ["tcp", 30001]}, {"goto": {"target": "external-AAAAAAAA-ns/x/tcp/"}}]]}},
               {"rule": {"family": "ip", "table": "kube-proxy", "chain": "external-AAAAAAAA-ns/x/tcp/", "expr": [{"dnat": {"addr": "10.244.0.1", "port": 80}}]}}"#,
            "nodeport tcp *:30001 ns/x -> 10.244.0.1:80\n",
        ),
    ];
    for (what, objects, want) in cases {
        let json = format!(r#"{{"nftables": [{table}, {objects}]}}"#);
        assert_eq!(render(&parse(&json).unwrap()), *want, "{what}");
    }
}

#[test]
fn services_are_read_from_kube_proxys_chain_names() {
    let name = |c: &str| service_from_chain(c).map(|n| n.to_string());
    assert_eq!(name("service-ULMVA6XW-ns1/svc1/tcp/p80").as_deref(), Some("ns1/svc1:p80"));
    assert_eq!(name("external-42NFTM6N-ns2/svc2/tcp/p80").as_deref(), Some("ns2/svc2:p80"));
    assert_eq!(name("local-JMLFS4ZZ-shop/itp/tcp/http").as_deref(), Some("shop/itp:http"));
    assert_eq!(name("service-JKK5DER2-shop/api/tcp/").as_deref(), Some("shop/api"));
    for none in
        ["endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80", "reject-chain", "service-X", "service-X-a/b/c"]
    {
        assert_eq!(name(none), None, "{none}");
    }
}

proptest! {
    #[test]
    fn any_text_parses_without_panicking(text in "\\PC*") {
        let _ = parse(&text);
        let _ = kube_proxy_tables(&text);
    }

    #[test]
    fn nft_shaped_json_parses_without_panicking(objects in proptest::collection::vec(nft_object(), 0..12)) {
        let doc = serde_json::json!({ "nftables": objects }).to_string();
        let services = parse(&doc).unwrap();
        for s in &services {
            let mut seen = HashSet::new();
            prop_assert!(s.targets.iter().all(|t| seen.insert((t.ip, t.port))));
        }
    }
}

/// `{"<kind>": {…}}` objects in the kube-proxy table with random bodies built from the words
/// kube-proxy's JSON uses, so the map, verdict and dnat handling is exercised.
fn nft_object() -> impl Strategy<Value = Value> {
    let word = prop::sample::select(vec![
        "ip",
        "ip6",
        "kube-proxy",
        "service-ips",
        "service-nodeports",
        "no-endpoint-services",
        "nodeport-ips",
        "services",
        "c",
        "external-c",
        "tcp",
        "udp",
        "10.96.0.1",
        "fd00::1",
        "@nodeport-ips",
        "@service-nodeports",
        "saddr",
        "goto",
        "jump",
        "target",
        "concat",
        "elem",
        "val",
        "comment",
        "dnat",
        "addr",
        "port",
        "vmap",
        "data",
        "set",
        "range",
        "match",
        "left",
        "right",
        "payload",
        "field",
        "fib",
        "flags",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0u32..70000).prop_map(Value::from),
        word.clone().prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((word.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    });
    let kind = prop::sample::select(vec!["table", "map", "set", "rule", "chain"]);
    let chain = prop::sample::select(vec!["services", "c", "external-c", "service-ips", "nodeport-ips"]);
    (kind, chain, value.clone(), value).prop_map(|(kind, name, elem, expr)| {
        serde_json::json!({ kind: {
            "family": "ip", "table": "kube-proxy", "name": name, "chain": name, "elem": elem, "expr": expr,
        }})
    })
}
