//! NAT rules on record: how one rule meets one packet (plain values), and whole scenarios of
//! the simulated lab — the issue's DNAT on node-2 for pd-0:2379, an SNAT to an address nobody
//! holds, a DNAT in a pod's own OUTPUT — each named alone, claiming exactly its cells; a rule
//! that is opaque, harmless or not met never is.

use std::net::IpAddr;

use netdiag_model::inspect::{AddressMatch, FilterProtocol, NatAction, NatHook, NatRule, PortRange};
use netdiag_model::{CulpritKind, Finding, Port, Text};

use super::*;
use crate::localize::tests::summary;
use crate::localize::{Thresholds, localize};
use crate::sim::{World, now};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(p: u32) -> Port {
    Port::new(p).unwrap()
}

fn rule(hook: NatHook, action: NatAction) -> NatRule {
    NatRule {
        hook,
        protocol: None,
        source: None,
        destination: None,
        in_interface: None,
        out_interface: None,
        destination_ports: vec![],
        action,
        opaque: false,
        after_kube_proxy: false,
        rule: Text::new("-A PREROUTING -j DNAT".to_owned()).unwrap(),
    }
}

fn tcp(source: &str, destination: &str, p: u32) -> Packet {
    Packet::request(
        FilterProtocol::Tcp,
        (Some(ip(source)), Some(ip(destination))),
        Some(port(p)),
        (false, true),
    )
}

/// pd-0's packet from a pod on node-2 through demo-pd's VIP, before kube-proxy's DNAT.
fn to_vip() -> Packet {
    let mut p = tcp("10.244.2.2", "10.244.1.3", 2379);
    p.pre_dnat = Some((Some(ip("10.96.0.20")), Some(port(2379))));
    p
}

#[test]
fn a_rule_meets_a_packet_when_every_condition_holds_and_the_first_match_decides() {
    let away = NatAction::Dnat { address: Some(ip("10.244.1.99")), port: Some(port(2379)) };
    let to_pd0 = |negated| NatRule {
        protocol: Some(FilterProtocol::Tcp),
        destination: Some(AddressMatch { net: "10.244.1.0/24".parse().unwrap(), negated }),
        destination_ports: vec![PortRange { first: port(2379), last: port(2380) }],
        ..rule(NatHook::Prerouting, away)
    };
    let pkt = tcp("10.244.2.2", "10.244.1.3", 2379);
    let own = [ip("172.29.0.12")];
    let cases: Vec<(&str, Vec<NatRule>, Packet, Met)> = vec![
        (
            "CIDR, protocol and port range hold",
            vec![to_pd0(false)],
            tcp("10.244.2.2", "10.244.1.3", 2379),
            Met::Rewrite(0),
        ),
        ("another port", vec![to_pd0(false)], tcp("10.244.2.2", "10.244.1.3", 20160), Met::Nothing),
        ("outside the CIDR", vec![to_pd0(false)], tcp("10.244.2.2", "10.244.3.2", 2379), Met::Nothing),
        (
            "negated: outside matches",
            vec![to_pd0(true)],
            tcp("10.244.2.2", "10.244.3.2", 2379),
            Met::Rewrite(0),
        ),
        ("negated: inside does not", vec![to_pd0(true)], tcp("10.244.2.2", "10.244.1.3", 2379), Met::Nothing),
        (
            "ICMP is not TCP",
            vec![to_pd0(false)],
            Packet::request(
                FilterProtocol::Icmp,
                (Some(ip("10.244.2.2")), Some(ip("10.244.1.3"))),
                None,
                (false, true),
            ),
            Met::Nothing,
        ),
        (
            "an accept before it keeps the packet",
            vec![rule(NatHook::Prerouting, NatAction::Keep), to_pd0(false)],
            tcp("10.244.2.2", "10.244.1.3", 2379),
            Met::Nothing,
        ),
        (
            "an opaque rule first makes it unknown",
            vec![NatRule { opaque: true, ..to_pd0(false) }, to_pd0(false)],
            tcp("10.244.2.2", "10.244.1.3", 2379),
            Met::Unknown(0),
        ),
        (
            "another hook's rule",
            vec![rule(NatHook::Output, away)],
            tcp("10.244.2.2", "10.244.1.3", 2379),
            Met::Nothing,
        ),
        (
            "a DNAT to where it goes anyway",
            vec![rule(NatHook::Prerouting, NatAction::Dnat { address: Some(ip("10.244.1.3")), port: None })],
            tcp("10.244.2.2", "10.244.1.3", 2379),
            Met::Nothing,
        ),
        (
            "a VIP's packet meets the rules before kube-proxy's jump with the VIP",
            vec![NatRule {
                destination: Some(AddressMatch { net: "10.96.0.20/32".parse().unwrap(), negated: false }),
                ..rule(NatHook::Prerouting, away)
            }],
            to_vip(),
            Met::Rewrite(0),
        ),
        (
            "and never meets a rule after it",
            vec![NatRule { after_kube_proxy: true, ..to_pd0(false) }],
            to_vip(),
            Met::Nothing,
        ),
        (
            "a rule after kube-proxy's jump meets a pod's address",
            vec![NatRule { after_kube_proxy: true, ..to_pd0(false) }],
            tcp("10.244.2.2", "10.244.1.3", 2379),
            Met::Rewrite(0),
        ),
    ];
    for (name, rules, p, want) in cases {
        assert_eq!(meet(&rules, NatHook::Prerouting, &p, Some("eth0"), &own), want, "{name}");
    }
    let snat = |to: &str| vec![rule(NatHook::Postrouting, NatAction::Snat { address: ip(to) })];
    assert_eq!(meet(&snat("172.29.0.99"), NatHook::Postrouting, &pkt, Some("eth0"), &own), Met::Rewrite(0));
    assert_eq!(
        meet(&snat("172.29.0.12"), NatHook::Postrouting, &pkt, Some("eth0"), &own),
        Met::Nothing,
        "its own address"
    );
    let masquerade = vec![rule(NatHook::Postrouting, NatAction::Masquerade)];
    assert_eq!(meet(&masquerade, NatHook::Postrouting, &pkt, Some("eth0"), &own), Met::Nothing);
    let out_eth1 = vec![NatRule {
        out_interface: Some(Text::new("eth1".to_owned()).unwrap()),
        ..snat("172.29.0.99")[0].clone()
    }];
    assert_eq!(
        meet(&out_eth1, NatHook::Postrouting, &pkt, Some("eth0"), &own),
        Met::Nothing,
        "leaves by eth0"
    );
}

fn localized(world: &World) -> (Vec<Finding>, crate::localize::Localization) {
    let l =
        localize(&world.matrix(), &world.inspections(), &world.inventory(), now(), &Thresholds::default());
    (l.findings.clone(), l)
}

/// The lone finding, and that it claims every bad cell.
fn alone(world: &World) -> Finding {
    let (findings, l) = localized(world);
    assert_eq!(findings.len(), 1, "{:#?}", summary(&findings));
    assert!(l.claims.iter().all(|(_, f)| *f == 0));
    findings[0].clone()
}

#[test]
fn the_issues_dnat_on_node_2_is_named_alone_with_where_it_sends_the_traffic() {
    let f = alone(&World::healthy().dnat_by_hand("node-2", "tidb/demo-pd-0", 2379, "10.244.1.99"));
    assert_eq!(f.id.as_str(), "nat-rewrite");
    let c = f.culprit.as_ref().unwrap();
    assert_eq!((c.kind, c.name.as_str()), (CulpritKind::Node, "node-2"));
    let rule =
        "-A PREROUTING -d 10.244.1.3/32 -p tcp -m tcp --dport 2379 -j DNAT --to-destination 10.244.1.99:2379";
    assert!(f.verdict.as_str().contains(rule), "{}", f.verdict);
    assert!(
        f.verdict.as_str().contains(
            "sends 9 failing paths to 10.244.1.99:2379, an address no pod or node holds and no endpoint of \
             tidb/demo-pd or tidb/demo-pd-peer (PREROUTING)"
        ),
        "{}",
        f.verdict
    );
    let evidence: Vec<&str> = f.evidence.iter().map(|e| e.as_str()).collect();
    assert!(evidence.iter().any(|e| e.contains("without it the paths read as")), "{evidence:#?}");
    let s = f.suggestion.as_str();
    assert!(s.contains("`iptables -t nat -S PREROUTING`"), "{s}");
    assert!(s.contains("`iptables -t nat -D PREROUTING -d 10.244.1.3/32 -p tcp -m tcp --dport 2379"), "{s}");
    // Only TCP 2379 to pd-0 from node-2's pods: neither pd-0 nor node-2 is blamed otherwise.
    assert!(
        f.affected.iter().all(|p| p.as_str().contains("demo-pd-0") && p.as_str().contains("2379")),
        "{:?}",
        f.affected
    );
}

#[test]
fn without_the_rule_on_record_the_same_cells_blame_no_pod_or_node_wrongly() {
    // The network fault alone (the agent could not read the rule): some class finding or the
    // residue, never pd-0 down or node-2's node-wide verdicts.
    let world = World::healthy().dnat_by_hand("node-2", "tidb/demo-pd-0", 2379, "10.244.1.99");
    let mut inspections = world.inspections();
    for (_, r) in inspections.values_mut() {
        r.nat_rules.clear();
    }
    let findings = crate::localize::diagnose(&world.matrix(), &inspections, &world.inventory(), now());
    assert!(!findings.is_empty());
    for f in &findings {
        let c = f.culprit.as_ref().unwrap();
        assert_ne!(f.id.as_str(), "nat-rewrite");
        assert!(!(c.kind == CulpritKind::Pod && c.name.as_str() == "tidb/demo-pd-0"), "{f:#?}");
        assert!(!(c.kind == CulpritKind::Node && c.name.as_str() == "node-2"), "{f:#?}");
    }
}

#[test]
fn an_snat_to_an_address_nobody_holds_is_named_alone() {
    let f = alone(&World::healthy().snat_by_hand("node-2", "node-1", "172.29.0.99"));
    assert_eq!(f.id.as_str(), "nat-rewrite");
    assert_eq!(f.culprit.as_ref().unwrap().name.as_str(), "node-2");
    assert!(
        f.verdict.as_str().contains("from 172.29.0.99, an address node node-2 does not hold"),
        "{}",
        f.verdict
    );
    assert!(
        f.verdict.as_str().contains("-A POSTROUTING -s 10.244.2.0/24 -d 10.244.1.0/24 -j SNAT"),
        "{}",
        f.verdict
    );
}

#[test]
fn a_dnat_in_a_pods_own_output_is_named_on_the_pod() {
    let f = alone(&World::healthy().pod_dnat_by_hand("tidb/demo-tidb-0", "tidb/demo-pd", 2379, "10.244.9.9"));
    assert_eq!(f.id.as_str(), "nat-rewrite");
    let c = f.culprit.as_ref().unwrap();
    assert_eq!((c.kind, c.name.as_str()), (CulpritKind::Pod, "tidb/demo-tidb-0"));
    assert!(f.verdict.as_str().contains("-A OUTPUT -d 10.96.0.20/32"), "{}", f.verdict);
    assert!(f.suggestion.as_str().contains("nsenter -n -t"), "{}", f.suggestion);
}

#[test]
fn an_opaque_rule_is_no_cause_and_its_paths_say_so() {
    let world =
        World::healthy().dnat_by_hand("node-2", "tidb/demo-pd-0", 2379, "10.244.1.99").nat_rules_opaque();
    let (findings, _) = localized(&world);
    assert!(findings.iter().all(|f| f.id.as_str() != "nat-rewrite"), "{:#?}", summary(&findings));
    assert!(
        findings.iter().any(|f| f.evidence.iter().any(|e| e.as_str().contains("does not evaluate"))),
        "{findings:#?}"
    );
}

#[test]
fn a_rule_that_working_paths_meet_is_no_cause() {
    // The rule is on record but the network does not apply it (its target answers): working
    // paths meet it, so it explains nothing, and a healthy lab stays silent.
    let broken = World::healthy().dnat_by_hand("node-2", "tidb/demo-pd-0", 2379, "10.244.1.99");
    let findings = crate::localize::diagnose(
        &World::healthy().matrix(),
        &broken.inspections(),
        &broken.inventory(),
        now(),
    );
    assert_eq!(summary(&findings), vec![]);
}
