//! The NAT rules reader on captured `iptables-save` output (`hand-made-nat-iptables.save`: the
//! issue's DNAT, a jump into a chain of one's own, a negated destination, a mark, NETMAP, SNAT
//! and MASQUERADE around kube-proxy's chains), rule shapes one by one, and odd input.

use std::net::IpAddr;

use netdiag_model::inspect::{AddressMatch, FilterProtocol, NatAction, NatHook, NatRule};

use super::*;
use crate::inspect::testing::fixture;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(p: u32) -> Option<Port> {
    Some(Port::new(p).unwrap())
}

/// One line per rule: `hook action opaque after-kube-proxy | rule`.
fn lines(rules: &[NatRule]) -> Vec<String> {
    rules
        .iter()
        .map(|r| {
            let flags = format!(
                "{}{}",
                if r.opaque { " opaque" } else { "" },
                if r.after_kube_proxy { " after-kube-proxy" } else { "" }
            );
            format!("{} {}{flags} | {}", r.hook, r.action, r.rule)
        })
        .collect()
}

#[test]
fn hand_made_rules_are_read_in_hook_order_and_kube_proxys_are_left_out() {
    let rules = parse(&fixture("hand-made-nat-iptables.save"));
    assert_eq!(
        lines(&rules),
        vec![
            "PREROUTING to 10.244.1.99:2379 | -A PREROUTING -d 10.244.1.3/32 -p tcp -m tcp --dport 2379 -j DNAT --to-destination 10.244.1.99:2379",
            "PREROUTING to 10.244.3.53 after-kube-proxy | -A DIVERT -p udp -m udp --dport 53 -j DNAT --to-destination 10.244.3.53",
            "PREROUTING to itself, port 3128 after-kube-proxy | -A PREROUTING ! -d 10.96.0.0/12 -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 3128",
            "PREROUTING to 10.0.0.1 opaque after-kube-proxy | -A PREROUTING -p tcp -m multiport --dports 80,443 -m mark --mark 0x1 -j DNAT --to-destination 10.0.0.1",
            "PREROUTING into 10.244.3.0/24 after-kube-proxy | -A PREROUTING -d 192.168.50.0/24 -j NETMAP --to 10.244.3.0/24",
            "OUTPUT to 10.244.2.2:2399 | -A OUTPUT -d 10.96.0.20/32 -p tcp -m tcp --dport 2379 -j DNAT --to-destination 10.244.2.2:2399",
            "POSTROUTING from 172.29.0.99 after-kube-proxy | -A POSTROUTING -s 10.244.1.0/24 -o eth0 -j SNAT --to-source 172.29.0.99",
            "POSTROUTING from its own address after-kube-proxy | -A POSTROUTING -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE",
        ],
        "DIVERT's rule after its unconditional RETURN is never met; KUBE-SEP's DNAT and KUBE-POSTROUTING's \
         MASQUERADE are kube-proxy's"
    );
    let dnat = &rules[0];
    assert_eq!(dnat.protocol, Some(FilterProtocol::Tcp));
    assert_eq!(
        dnat.destination,
        Some(AddressMatch { net: "10.244.1.3/32".parse().unwrap(), negated: false })
    );
    assert_eq!(dnat.destination_ports.len(), 1);
    assert_eq!(dnat.action, NatAction::Dnat { address: Some(ip("10.244.1.99")), port: port(2379) });
    assert!(!dnat.opaque && !dnat.after_kube_proxy);
    assert_eq!(
        rules[1].source,
        Some(AddressMatch { net: "10.244.2.0/24".parse().unwrap(), negated: false }),
        "the jump's condition carries on"
    );
    assert_eq!(rules[1].protocol, Some(FilterProtocol::Udp));
    assert_eq!(
        rules[2].destination,
        Some(AddressMatch { net: "10.96.0.0/12".parse().unwrap(), negated: true })
    );
    assert_eq!(rules[6].out_interface.as_ref().map(|t| t.as_str()), Some("eth0"));
    assert_eq!(rules[6].action, NatAction::Snat { address: ip("172.29.0.99") });
}

#[test]
fn each_shape_reads_as_written() {
    let one = |rule: &str| -> Vec<NatRule> {
        parse(&format!("*nat\n:PREROUTING ACCEPT [0:0]\n:MINE - [0:0]\n{rule}\nCOMMIT\n"))
    };
    let action = |rule: &str| one(rule).first().map(|r| (r.action, r.opaque));
    let cases: &[(&str, Option<(NatAction, bool)>)] = &[
        (
            "-A PREROUTING -p tcp -j DNAT --to-destination :8080",
            Some((NatAction::Dnat { address: None, port: port(8080) }, false)),
        ),
        (
            "-A PREROUTING -j DNAT --to-destination [fd00::9]:80",
            Some((NatAction::Dnat { address: Some(ip("fd00::9")), port: port(80) }, false)),
        ),
        (
            "-A PREROUTING -j DNAT --to-destination fd00::9",
            Some((NatAction::Dnat { address: Some(ip("fd00::9")), port: None }, false)),
        ),
        ("-A PREROUTING -j DNAT --to-destination 10.0.0.1-10.0.0.3", Some((NatAction::Keep, true))),
        (
            "-A PREROUTING -j DNAT --to-destination 10.0.0.1 --to-destination 10.0.0.2",
            Some((NatAction::Keep, true)),
        ),
        ("-A PREROUTING -j DNAT", Some((NatAction::Keep, true))),
        ("-A PREROUTING -p tcp -j REDIRECT", Some((NatAction::Redirect { port: None }, false))),
        ("-A PREROUTING -p tcp -j REDIRECT --to-ports 3128-3130", Some((NatAction::Keep, true))),
        (
            "-A PREROUTING -m addrtype --dst-type LOCAL -j DNAT --to-destination 10.0.0.1",
            Some((NatAction::Dnat { address: Some(ip("10.0.0.1")), port: None }, true)),
        ),
        (
            "-A PREROUTING -p tcp ! --dport 22 -j DNAT --to-destination 10.0.0.1",
            Some((NatAction::Dnat { address: Some(ip("10.0.0.1")), port: None }, true)),
        ),
        (
            "-A PREROUTING ! -p tcp -j DNAT --to-destination 10.0.0.1",
            Some((NatAction::Dnat { address: Some(ip("10.0.0.1")), port: None }, true)),
        ),
        (
            "-A PREROUTING -m conntrack --ctstate NEW -j DNAT --to-destination 10.0.0.1",
            Some((NatAction::Dnat { address: Some(ip("10.0.0.1")), port: None }, false)),
        ),
        (
            "-A PREROUTING -m conntrack --ctstate DNAT -j DNAT --to-destination 10.0.0.1",
            Some((NatAction::Dnat { address: Some(ip("10.0.0.1")), port: None }, true)),
        ),
        ("-A PREROUTING -s 10.0.0.0/8 -j ACCEPT", Some((NatAction::Keep, false))),
        ("-A PREROUTING -j SNAT --to-source 10.0.0.1:1000-2000", Some((NatAction::Keep, true))),
        ("-A PREROUTING -j MARK --set-mark 1", None),
        ("-A PREROUTING -j LOG", None),
        ("-A PREROUTING -p tcp", None),
    ];
    for (rule, want) in cases {
        assert_eq!(action(rule), *want, "{rule}");
    }
    let output = one("-A OUTPUT -j DNAT --to-destination 10.0.0.1");
    assert_eq!(output.iter().map(|r| r.hook).collect::<Vec<_>>(), vec![NatHook::Output]);
}

#[test]
fn the_walk_follows_jumps_gotos_and_returns() {
    let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n\
                -A PREROUTING -s 10.0.0.0/8 -j A\n\
                -A PREROUTING -p tcp -j DNAT --to-destination 10.9.9.9\n\
                -A A -p udp -j RETURN\n\
                -A A -d 10.1.0.0/16 -j DNAT --to-destination 10.2.2.2\n\
                -A A -g B\n\
                -A A -j DNAT --to-destination 10.3.3.3\n\
                -A B -s 10.1.0.0/16 -j DNAT --to-destination 10.4.4.4\n\
                -A B -j A\nCOMMIT\n";
    let rules = parse(save);
    let got: Vec<(String, bool, Option<String>)> =
        rules.iter().map(|r| (r.action.to_string(), r.opaque, r.source.map(|s| s.to_string()))).collect();
    assert_eq!(
        got,
        vec![
            ("to 10.2.2.2".to_owned(), true, Some("10.0.0.0/8".to_owned())),
            ("to 10.4.4.4".to_owned(), true, Some("10.0.0.0/8".to_owned())),
            ("to 10.9.9.9".to_owned(), false, None),
        ],
        "after a conditional RETURN the rest of A is opaque; a goto ends A (10.3.3.3 is never met); \
         two sources on one path are opaque; B's jump back into A is a loop, not followed"
    );
}

#[test]
fn odd_input_gives_nothing_and_never_panics() {
    for text in [
        "",
        "*nat",
        "*nat\n-A",
        "*nat\n-A PREROUTING",
        "*nat\n-A PREROUTING -j",
        "*filter\n-A PREROUTING -j DNAT --to-destination 10.0.0.1",
        "-A PREROUTING -j DNAT --to-destination 10.0.0.1",
        "*nat\n-A PREROUTING \"-j\" DNAT",
        "*nat\n-A PREROUTING -j DNAT --to-destination 10.0.0.999",
    ] {
        let rules = parse(text);
        assert!(rules.iter().all(|r| r.opaque), "{text:?}: {:?}", lines(&rules));
    }
    let many: String = std::iter::once("*nat\n".to_owned())
        .chain((0..5000).map(|i| {
            format!("-A PREROUTING -d 10.0.{}.{}/32 -j DNAT --to-destination 10.1.0.1\n", i / 256, i % 256)
        }))
        .collect();
    assert_eq!(parse(&many).len(), MAX_NAT_RULES);
}
