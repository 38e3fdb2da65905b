//! The iptables parser on captured `iptables-save` output and kube-proxy's own rule text, on the
//! lab's rules in every variant against `expected_nat`, on older and odd shapes, and on
//! arbitrary input (proptest).

use std::net::IpAddr;

use netdiag_lab::rules::{Family, expected_nat, iptables::render_iptables};
use proptest::prelude::*;

use super::*;
use crate::inspect::testing::{
    expected_lines, fixture, lab_variants, node_ip, plan_from, render, report_lines,
};

/// The frontends of `kube-proxy-iptables.rules` / `.save` (see the fixtures' README): every
/// shape kube-proxy's iptables proxier writes for IPv4.
const SHOP_V4: &str = "\
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
nodeport tcp *:30080 shop/web:http -> 10.244.0.10:8080 10.244.1.11:8080 10.244.2.12:8080
nodeport tcp *:31000 shop/fw:http -> 10.244.1.50:80
nodeport tcp *:31080 shop/lb-nolocal:http -> none
nodeport tcp *:31443 shop/lb:https -> 10.244.0.30:8443
nodeport tcp *:32000 shop/empty-np:http -> none
";

const SHOP_V6: &str = "\
service tcp [fd00:96::1]:443 default/kubernetes:https -> [fd00:18::2]:6443
service tcp [fd00:96::30]:80 shop/web:http -> [fd00:244::a]:8080 [fd00:244:0:1::b]:8080
service tcp [fd00:96::50]:80 shop/empty:http -> none
nodeport tcp *:30080 shop/web:http -> [fd00:244::a]:8080 [fd00:244:0:1::b]:8080
";

#[test]
fn iptables_save_output_gives_every_frontend_and_its_targets() {
    assert_eq!(render(&parse(&fixture("kube-proxy-iptables.save"))), SHOP_V4);
    assert_eq!(render(&parse(&fixture("kube-proxy-ip6tables.save"))), SHOP_V6);
}

#[test]
fn kube_proxys_own_option_order_reads_the_same() {
    // `-m comment … -m tcp -p tcp -d 10.96.0.1 --dport 443`, bare comments, no `/32`.
    assert_eq!(render(&parse(&fixture("kube-proxy-iptables.rules"))), SHOP_V4);
    assert_eq!(render(&parse(&fixture("kube-proxy-ip6tables.rules"))), SHOP_V6);
}

#[test]
fn each_target_names_the_chain_it_came_from() {
    let services = parse(&fixture("kube-proxy-iptables.save"));
    let chains = |vip: &str, port: u16| -> Vec<String> {
        let vip: IpAddr = vip.parse().unwrap();
        let svc = services.iter().find(|s| s.vip == Some(vip) && s.port.get() == port).unwrap();
        svc.targets.iter().map(|t| t.chain.as_ref().unwrap().to_string()).collect()
    };
    assert_eq!(chains("10.96.0.1", 443), ["KUBE-SEP-V2PECCYPB6X2GSCW"]);
    // The load balancer's external address reaches only the local endpoint, through KUBE-SVL.
    assert_eq!(chains("203.0.113.10", 443), ["KUBE-SEP-2MXHSIRQBQLN7CEX"]);
    assert_eq!(chains("10.96.0.50", 443), ["KUBE-SEP-2MXHSIRQBQLN7CEX", "KUBE-SEP-WSYQVTMPEYGZCAKC"]);
}

#[test]
fn the_labs_captured_rules_match_what_the_lab_expects() {
    let plan = plan_from(&lab_variants()[1].1);
    let node = &plan.nodes[0];
    for (file, family) in
        [("lab-node-1-iptables.save", Family::V4), ("lab-node-1-ip6tables.save", Family::V6)]
    {
        let got = report_lines(&parse(&fixture(file)), node_ip(node, family).unwrap());
        assert_eq!(got, expected_lines(&expected_nat(&plan, node, family)), "{file}");
    }
}

#[test]
fn the_labs_rendered_rules_read_back_as_the_expected_nat_table() {
    for (variant, yaml) in lab_variants() {
        let plan = plan_from(&yaml);
        for node in &plan.nodes {
            for family in Family::ALL {
                let Some(ip) = node_ip(node, family) else { continue };
                let text = render_iptables(&plan, node, family);
                let got = report_lines(&parse(&text), ip);
                let want = expected_lines(&expected_nat(&plan, node, family));
                assert_eq!(got, want, "{variant} {} {family}", node.name);
            }
        }
    }
}

#[test]
fn kube_proxy_rules_are_recognised_by_their_services_chain() {
    assert!(has_kube_proxy_rules(&fixture("kube-proxy-iptables.save")));
    assert!(has_kube_proxy_rules(&fixture("lab-node-1-ip6tables.save")));
    let no_kube_proxy =
        "*filter\n:INPUT ACCEPT [0:0]\n:NETDIAG-FAULTS - [0:0]\n-A INPUT -j NETDIAG-FAULTS\nCOMMIT\n";
    assert!(!has_kube_proxy_rules(no_kube_proxy));
    assert!(!has_kube_proxy_rules(""));
    // KUBE-SERVICES in the filter table alone is not kube-proxy's NAT.
    assert!(!has_kube_proxy_rules("*filter\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"));
}

#[test]
fn older_and_odd_shapes() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "pre-1.23 masquerade rule in KUBE-SERVICES is not a frontend",
            "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-A - [0:0]\n\
             -A KUBE-SERVICES ! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ\n\
             -A KUBE-SERVICES -d 172.30.0.41/32 -p tcp -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp --dport 80 -j KUBE-SVC-A\n\
             -A KUBE-SVC-A -j KUBE-SEP-A\n\
             -A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.180.0.1:80\nCOMMIT\n",
            "service tcp 172.30.0.41:80 ns1/svc1:p80 -> 10.180.0.1:80\n",
        ),
        (
            "pre-1.24 KUBE-XLB chain: short-circuits skipped, local endpoints kept",
            "*nat\n:KUBE-NODEPORTS - [0:0]\n:KUBE-XLB-A - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-L - [0:0]\n:KUBE-SEP-R - [0:0]\n\
             -A KUBE-NODEPORTS -p tcp -m comment --comment \"ns2/svc2:p80\" -m tcp --dport 3001 -j KUBE-XLB-A\n\
             -A KUBE-XLB-A -s 10.0.0.0/8 -m comment --comment \"Redirect pods trying to reach external loadbalancer VIP to clusterIP\" -j KUBE-SVC-A\n\
             -A KUBE-XLB-A -m comment --comment \"masquerade LOCAL traffic for ns2/svc2:p80 LB IP\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ\n\
             -A KUBE-XLB-A -m comment --comment \"route LOCAL traffic for ns2/svc2:p80 LB IP to service chain\" -m addrtype --src-type LOCAL -j KUBE-SVC-A\n\
             -A KUBE-XLB-A -m comment --comment \"Balancing rule 0 for ns2/svc2:p80\" -j KUBE-SEP-L\n\
             -A KUBE-SVC-A -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-L\n\
             -A KUBE-SVC-A -j KUBE-SEP-R\n\
             -A KUBE-SEP-L -p tcp -m tcp -j DNAT --to-destination 10.180.0.1:80\n\
             -A KUBE-SEP-R -p tcp -m tcp -j DNAT --to-destination 10.180.2.1:80\nCOMMIT\n",
            "nodeport tcp *:3001 ns2/svc2:p80 -> 10.180.0.1:80\n",
        ),
        (
            "DNAT without a port keeps the frontend's port; bare rules without a table are nat",
            ":KUBE-SERVICES - [0:0]\n:KUBE-SEP-A - [0:0]\n\
             -A KUBE-SERVICES -d 10.96.0.5 -p udp --dport 514 -j KUBE-SEP-A\n\
             -A KUBE-SEP-A -j DNAT --to-destination 10.244.0.9\n",
            "service udp 10.96.0.5:514 ? -> 10.244.0.9:514\n",
        ),
        (
            "jump cycles end; a frontend on a CIDR or a port range is not a Service",
            "*nat\n:KUBE-SERVICES - [0:0]\n:A - [0:0]\n:B - [0:0]\n\
             -A KUBE-SERVICES -d 10.96.0.6/32 -p tcp --dport 80 -j A\n\
             -A KUBE-SERVICES -d 10.96.0.0/16 -p tcp --dport 80 -j A\n\
             -A KUBE-SERVICES -d 10.96.0.7/32 -p tcp --dport 80:90 -j A\n\
             -A A -j B\n-A B -j A\n-A B -j DNAT --to-destination [fd00::1]:8080\nCOMMIT\n",
            "service tcp 10.96.0.6:80 ? -> [fd00::1]:8080\n",
        ),
        (
            "a jump to a chain the table does not define is no frontend",
            "*nat\n-A KUBE-SERVICES -d 10.96.0.8/32 -p tcp --dport 80 -j KUBE-SVC-GONE\nCOMMIT\n",
            "",
        ),
    ];
    for (what, input, want) in cases {
        assert_eq!(render(&parse(input)), *want, "{what}");
    }
}

#[test]
fn words_split_like_iptables_restore() {
    let words = |s: &str| split_words(s).into_iter().map(|w| (w.text, w.quoted)).collect::<Vec<_>>();
    assert_eq!(
        words(r#"-A X -m comment --comment "a \"b\" c" -j Y"#),
        [
            ("-A".into(), false),
            ("X".into(), false),
            ("-m".into(), false),
            ("comment".into(), false),
            ("--comment".into(), false),
            (r#"a "b" c"#.into(), true),
            ("-j".into(), false),
            ("Y".into(), false)
        ]
    );
    assert_eq!(words("  "), []);
    assert_eq!(words(r#""""#), [(String::new(), true)]);
    assert_eq!(words(r#"--comment "-> x""#)[1], ("-> x".into(), true));
}

#[test]
fn to_destination_forms() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let port = |n: u32| Some(Port::new(n).unwrap());
    type Case = (&'static str, Option<(IpAddr, Option<Port>)>);
    let cases: &[Case] = &[
        ("10.1.2.3:80", Some((ip("10.1.2.3"), port(80)))),
        ("10.1.2.3", Some((ip("10.1.2.3"), None))),
        ("10.1.2.3-10.1.2.9:80-90", Some((ip("10.1.2.3"), port(80)))),
        ("[fd00::2]:80", Some((ip("fd00::2"), port(80)))),
        ("[fd00::2]", Some((ip("fd00::2"), None))),
        ("fd00::2", Some((ip("fd00::2"), None))),
        ("10.1.2.3:0", None),
        ("10.1.2.3:x", None),
        ("[fd00::2]x", None),
        ("nonsense", None),
        ("", None),
    ];
    for (input, want) in cases {
        assert_eq!(to_destination(input), *want, "{input:?}");
    }
}

#[test]
fn service_names_come_from_the_first_word_that_names_one() {
    let name = |c: &str| service_name(Some(c)).map(|n| n.to_string());
    assert_eq!(name("ns1/svc1:p80 cluster IP").as_deref(), Some("ns1/svc1:p80"));
    assert_eq!(name("ns1/svc1 has no endpoints").as_deref(), Some("ns1/svc1"));
    assert_eq!(name("masquerade traffic for ns/s:p external destinations").as_deref(), Some("ns/s:p"));
    assert_eq!(name("portal for default/kubernetes:"), None);
    assert_eq!(name("kubernetes service portals"), None);
}

proptest! {
    #[test]
    fn any_text_parses_without_panicking(text in "\\PC*") {
        let _ = parse(&text);
        let _ = has_kube_proxy_rules(&text);
    }

    #[test]
    fn rule_shaped_text_parses_without_panicking(lines in proptest::collection::vec(rule_line(), 0..40)) {
        let text = lines.join("\n");
        let services = parse(&text);
        for s in &services {
            // Every target came from a DNAT rule; targets are never duplicated.
            let mut seen = std::collections::HashSet::new();
            prop_assert!(s.targets.iter().all(|t| seen.insert((t.ip, t.port))));
        }
    }
}

/// Lines made of the words kube-proxy's rules use, in any order, so the parser's option and
/// jump handling is exercised rather than only its line filter.
fn rule_line() -> impl Strategy<Value = String> {
    let words = prop::sample::select(vec![
        "*nat",
        "*filter",
        "COMMIT",
        ":KUBE-SERVICES - [0:0]",
        ":KUBE-SVC-A - [0:0]",
        ":KUBE-SEP-A - [0:0]",
        ":KUBE-EXT-A - [0:0]",
        "-A",
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-SVC-A",
        "KUBE-SEP-A",
        "KUBE-EXT-A",
        "-d",
        "10.96.0.1/32",
        "fd00::1/128",
        "-s",
        "!",
        "-p",
        "tcp",
        "udp",
        "sctp",
        "--dport",
        "80",
        "0",
        "65536",
        "-j",
        "-g",
        "DNAT",
        "REJECT",
        "DROP",
        "--to-destination",
        "10.1.1.1:80",
        "[fd00::2]:80",
        "[",
        "]:",
        "-m",
        "comment",
        "--comment",
        "\"ns/svc:p cluster IP\"",
        "\"unterminated",
        "\\",
        "--dst-type",
        "LOCAL",
        "--src-type",
        "-",
        "--",
        "'",
        "x",
    ]);
    proptest::collection::vec(words, 0..16).prop_map(|w| w.join(" "))
}
