//! Inspection reports: a full report round-trips; every table's bad entries are rejected at
//! their index and field.

use netdiag_model::InspectionReport;

use super::fixtures::*;
use crate::v1;

#[test]
fn inspections_round_trip() {
    round_trip::<InspectionReport, v1::InspectionReport>(inspection());
    let bare = InspectionReport {
        links: vec![],
        routes: vec![],
        neighbours: vec![],
        nat_services: vec![],
        sysctls: vec![],
        resolv_conf: None,
        proxy_mode: None,
        errors: vec![],
        filter_drops: vec![],
        nat_rules: vec![],
        ..inspection()
    };
    round_trip::<InspectionReport, v1::InspectionReport>(bare);
}

#[test]
fn hostile_inspections() {
    let valid = v1::InspectionReport::from(inspection());
    check_rejects::<InspectionReport, _>(
        &valid,
        &[
            ("no source", |r| r.source = None, "source", "is missing"),
            (
                "bad hook",
                |r| r.filter_drops[0].hook = "prerouting".into(),
                "filter_drops[0].hook",
                "input, forward",
            ),
            (
                "bad protocol",
                |r| r.filter_drops[0].protocol = "gre".into(),
                "filter_drops[0].protocol",
                "tcp, udp",
            ),
            (
                "port range backwards",
                |r| r.filter_drops[0].destination_ports[0].last = 1,
                "filter_drops[0].destination_ports[0].last",
                "ends before",
            ),
            (
                "port 0",
                |r| r.filter_drops[0].destination_ports[0].first = 0,
                "filter_drops[0].destination_ports[0].first",
                "port",
            ),
            (
                "bad source",
                |r| r.filter_drops[0].source = "10.0.0.0/40".into(),
                "filter_drops[0].source",
                "CIDR",
            ),
            (
                "too many drops",
                |r| r.filter_drops = vec![v1::FilterDrop::default(); 1_025],
                "filter_drops",
                "more than the 1024",
            ),
            (
                "bad nat hook",
                |r| r.nat_rules[0].hook = "forward".into(),
                "nat_rules[0].hook",
                "prerouting, input",
            ),
            (
                "bad nat action",
                |r| r.nat_rules[0].action = "drop".into(),
                "nat_rules[0].action",
                "dnat, redirect",
            ),
            (
                "dnat to nowhere",
                |r| {
                    r.nat_rules[0].to_address = String::new();
                    r.nat_rules[0].to_port = 0;
                },
                "nat_rules[0].to_address",
                "an address, a port or both",
            ),
            (
                "bad dnat address",
                |r| r.nat_rules[0].to_address = "10.0.0.256".into(),
                "nat_rules[0].to_address",
                "IP",
            ),
            ("dnat port 70000", |r| r.nat_rules[0].to_port = 70_000, "nat_rules[0].to_port", "port"),
            ("snat with a port", |r| r.nat_rules[3].to_port = 9, "nat_rules[3].to_port", "address only"),
            (
                "redirect with an address",
                |r| r.nat_rules[1].to_address = "10.0.0.1".into(),
                "nat_rules[1].to_address",
                "no address",
            ),
            (
                "netmap to an address",
                |r| r.nat_rules[5].to_address = "10.0.0.1".into(),
                "nat_rules[5].to_address",
                "CIDR",
            ),
            (
                "negated nothing",
                |r| r.nat_rules[2].destination_negated = true,
                "nat_rules[2].destination",
                "only an address can be negated",
            ),
            (
                "nat port range backwards",
                |r| r.nat_rules[0].destination_ports[0].last = 1,
                "nat_rules[0].destination_ports[0].last",
                "ends before",
            ),
            (
                "too many nat rules",
                |r| r.nat_rules = vec![v1::NatRule::default(); 1_025],
                "nat_rules",
                "more than the 1024",
            ),
            ("no time", |r| r.at_unix_ms = 0, "at_unix_ms", "is missing"),
            ("alias name", |r| r.links[0].name = "eth0:1".into(), "links[0].name", "contains ':'"),
            ("long name", |r| r.links[0].name = "a".repeat(16), "links[0].name", "more than the 15"),
            ("index 0", |r| r.links[0].index = 0, "links[0].index", "indexes start at 1"),
            (
                "address without prefix",
                |r| r.links[0].addresses[1] = "fe80::1".into(),
                "links[0].addresses[1]",
                "CIDR",
            ),
            ("kind with space", |r| r.links[0].kind = "v eth".into(), "links[0].kind", "contains ' '"),
            (
                "too many links",
                |r| r.links = vec![v1::Link::default(); 10_001],
                "links",
                "more than the 10000",
            ),
            (
                "no destination",
                |r| r.routes[1].destination = String::new(),
                "routes[1].destination",
                "is missing",
            ),
            (
                "default by name",
                |r| r.routes[0].destination = "default".into(),
                "routes[0].destination",
                "\"default\"",
            ),
            (
                "prefix too long",
                |r| r.routes[0].destination = "10.0.0.0/33".into(),
                "routes[0].destination",
                "CIDR",
            ),
            ("bad gateway", |r| r.routes[0].gateway = "gw".into(), "routes[0].gateway", "not an IP"),
            ("bad device", |r| r.routes[0].device = "a/b".into(), "routes[0].device", "contains '/'"),
            ("bad route source", |r| r.routes[1].source = "x".into(), "routes[1].source", "not an IP"),
            (
                "no state",
                |r| r.neighbours[0].state = String::new(),
                "neighbours[0].state",
                "neighbour state is empty",
            ),
            (
                "bad lladdr",
                |r| r.neighbours[0].lladdr = "02:42:zz:00:00:01".into(),
                "neighbours[0].lladdr",
                "contains 'z'",
            ),
            (
                "no device",
                |r| r.neighbours[0].device = String::new(),
                "neighbours[0].device",
                "interface name is empty",
            ),
            (
                "cluster ip rule without vip",
                |r| r.nat_services[0].vip = String::new(),
                "nat_services[0].vip",
                "is missing",
            ),
            ("nat port 0", |r| r.nat_services[1].port = 0, "nat_services[1].port", "from 1 to 65535"),
            (
                "icmp nat",
                |r| r.nat_services[0].protocol = "icmp".into(),
                "nat_services[0].protocol",
                "use tcp, udp or sctp",
            ),
            (
                "no protocol",
                |r| r.nat_services[0].protocol = String::new(),
                "nat_services[0].protocol",
                "not a protocol",
            ),
            (
                "unqualified service",
                |r| r.nat_services[0].service = "demo-pd".into(),
                "nat_services[0].service",
                "<namespace>/<name>",
            ),
            (
                "bad port name",
                |r| r.nat_services[0].service = "tidb/demo-pd:Client".into(),
                "nat_services[0].service",
                "port name",
            ),
            (
                "target port 0",
                |r| r.nat_services[0].targets[0].port = 0,
                "nat_services[0].targets[0].port",
                "from 1 to 65535",
            ),
            (
                "bad target ip",
                |r| r.nat_services[0].targets[0].ip = String::new(),
                "nat_services[0].targets[0].ip",
                "is missing",
            ),
            (
                "too many targets",
                |r| r.nat_services[0].targets = vec![v1::NatTarget::default(); 10_001],
                "nat_services[0].targets",
                "more than the 10000",
            ),
            ("bad sysctl key", |r| r.sysctls[0].key = "net ipv4".into(), "sysctls[0].key", "contains ' '"),
            (
                "long sysctl value",
                |r| r.sysctls[0].value = "1".repeat(1025),
                "sysctls[0].value",
                "more than the 1024",
            ),
            ("ndots 300", |r| r.resolv_conf.as_mut().unwrap().ndots = 300, "resolv_conf.ndots", "0 to 255"),
            (
                "timeout 256",
                |r| r.resolv_conf.as_mut().unwrap().timeout_s = 256,
                "resolv_conf.timeout_s",
                "0 to 255",
            ),
            (
                "bad search",
                |r| r.resolv_conf.as_mut().unwrap().search[1] = "..".into(),
                "resolv_conf.search[1]",
                "empty label",
            ),
            (
                "bad nameserver",
                |r| r.resolv_conf.as_mut().unwrap().nameservers[0] = "10.96.0.10:53".into(),
                "resolv_conf.nameservers[0]",
                "not an IP",
            ),
            (
                "17 nameservers",
                |r| r.resolv_conf.as_mut().unwrap().nameservers = vec!["10.0.0.1".into(); 17],
                "resolv_conf.nameservers",
                "more than the 16",
            ),
            ("proxy unspecified", |r| r.proxy_mode = 0, "proxy_mode", "proxy mode is unspecified"),
            ("proxy unknown", |r| r.proxy_mode = 9, "proxy_mode", "9 is not a known proxy mode"),
            ("257 errors", |r| r.errors = vec![String::new(); 257], "errors", "more than the 256"),
            ("bell in error", |r| r.errors[0] = "\u{7}".into(), "errors[0]", "contains"),
        ],
    );
}
