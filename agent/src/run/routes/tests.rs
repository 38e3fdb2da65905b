//! Longest-prefix lookups over main tables with default, IPv6, multi-metric and blackhole,
//! unreachable and prohibit routes, and the step report over several namespaces.

use super::*;

fn route(dst: &str, gw: Option<&str>, dev: Option<&str>, metric: u32, kind: RouteKind) -> TypedRoute {
    TypedRoute {
        route: Route {
            destination: dst.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            device: dev.map(|d| InterfaceName::new(d).unwrap()),
            source: None,
            table: 254,
            metric,
        },
        kind,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

use RouteKind::*;

fn node_table() -> Vec<TypedRoute> {
    vec![
        route("172.29.0.0/24", None, Some("eth0"), 0, Unicast),
        route("10.244.1.3/32", None, Some("veth1a2b"), 0, Unicast),
        route("10.244.2.0/24", Some("172.29.0.12"), Some("eth0"), 0, Unicast),
        route("10.244.3.0/24", None, None, 0, Blackhole),
        route("10.244.4.0/24", None, None, 0, Unreachable),
        route("10.244.5.0/24", None, None, 0, Prohibit),
        route("10.244.6.0/24", Some("172.29.0.16"), Some("eth0"), 100, Unicast),
        route("10.244.6.0/24", Some("172.29.0.26"), Some("eth1"), 50, Unicast),
        route("fd00:244:2::/64", Some("fd00:29::12"), Some("eth0"), 1024, Unicast),
        route("::/0", Some("fe80::1"), Some("eth0"), 1024, Unicast),
    ]
}

#[test]
fn longest_prefix_then_lowest_metric_wins() {
    let t = node_table();
    let cases = [
        ("10.244.1.3", Some("10.244.1.3/32")),
        ("10.244.2.5", Some("10.244.2.0/24")),
        ("172.29.0.12", Some("172.29.0.0/24")),
        ("10.244.1.4", None),
        ("10.96.0.20", None),
        ("fd00:244:2::5", Some("fd00:244:2::/64")),
        ("fd00:244:3::5", Some("::/0")),
    ];
    for (dst, want) in cases {
        let got = lookup(&t, ip(dst)).map(|r| r.route.destination.to_string());
        assert_eq!(got.as_deref(), want, "{dst}");
    }
    assert_eq!(
        lookup(&t, ip("10.244.6.1")).unwrap().route.gateway,
        Some(ip("172.29.0.26")),
        "metric 50 wins"
    );
}

#[test]
fn a_v4_default_route_catches_everything_v4_only() {
    let pod = vec![
        route("0.0.0.0/0", Some("169.254.1.1"), Some("eth0"), 0, Unicast),
        route("169.254.1.1/32", None, Some("eth0"), 0, Unicast),
    ];
    assert_eq!(lookup(&pod, ip("10.96.0.20")).unwrap().route.destination.to_string(), "0.0.0.0/0");
    assert!(lookup(&pod, ip("fd00::1")).is_none(), "no v6 route in a v4-only table");
    assert_eq!(
        route_line("tidb/demo-pd-0", &pod, ip("10.244.2.5")),
        (true, "tidb/demo-pd-0: 10.244.2.5 via 169.254.1.1 dev eth0 (default route 0.0.0.0/0)".to_owned())
    );
}

#[test]
fn lines_name_the_route_and_say_why_it_is_unusable() {
    let t = node_table();
    let cases = [
        ("10.244.2.5", true, "node-1: 10.244.2.5 via 172.29.0.12 dev eth0 (route 10.244.2.0/24)"),
        ("10.244.1.3", true, "node-1: 10.244.1.3 dev veth1a2b (route 10.244.1.3/32)"),
        ("10.244.9.9", false, "node-1: no route to 10.244.9.9"),
        (
            "10.244.3.1",
            false,
            "node-1: 10.244.3.1 matches route 10.244.3.0/24, a blackhole route: packets are dropped silently",
        ),
        (
            "10.244.4.1",
            false,
            "node-1: 10.244.4.1 matches route 10.244.4.0/24, an unreachable route: senders get \"no route to host\"",
        ),
        (
            "10.244.5.1",
            false,
            "node-1: 10.244.5.1 matches route 10.244.5.0/24, a prohibit route: senders get \"permission denied\"",
        ),
        ("fd00:244:2::5", true, "node-1: fd00:244:2::5 via fd00:29::12 dev eth0 (route fd00:244:2::/64)"),
        ("2001:db8::1", true, "node-1: 2001:db8::1 via fe80::1 dev eth0 (default route ::/0)"),
    ];
    for (dst, usable, line) in cases {
        assert_eq!(route_line("node-1", &t, ip(dst)), (usable, line.to_owned()), "{dst}");
    }
}

#[test]
fn a_more_specific_blackhole_beats_a_working_default() {
    let t = vec![
        route("0.0.0.0/0", Some("172.29.0.1"), Some("eth0"), 0, Unicast),
        route("10.244.2.0/24", None, None, 0, Unreachable),
    ];
    assert!(!route_line("node-1", &t, ip("10.244.2.5")).0);
    assert!(route_line("node-1", &t, ip("10.244.3.5")).0);
}

#[test]
fn the_step_fails_when_any_namespace_lacks_a_usable_route() {
    let pod = vec![route("0.0.0.0/0", Some("169.254.1.1"), Some("eth0"), 0, Unicast)];
    let tables =
        vec![("tidb/demo-pd-0".to_owned(), Ok(pod.clone())), ("node-1".to_owned(), Ok(node_table()))];
    let ok = routes_report(&tables, &[ip("10.244.2.5"), ip("10.244.1.3")]);
    assert_eq!(ok.status, StepStatus::Ok);
    assert_eq!(ok.evidence.len(), 4);
    let missing = routes_report(&tables, &[ip("10.244.2.5"), ip("10.244.9.9")]);
    assert_eq!(missing.status, StepStatus::Failed);
    assert_eq!(missing.evidence[3], "node-1: no route to 10.244.9.9");

    let unread =
        vec![("tidb/demo-pd-0".to_owned(), Ok(pod)), ("node-1".to_owned(), Err("netlink: EPERM".to_owned()))];
    let r = routes_report(&unread, &[ip("10.244.2.5")]);
    assert_eq!(r.status, StepStatus::Failed);
    assert_eq!(r.evidence[1], "node-1: cannot read the routing table: netlink: EPERM");
    assert_eq!(routes_report(&tables, &[]).status, StepStatus::Skipped);
}

#[test]
fn only_the_main_tables_routes_are_typed() {
    use netlink_packet_route::AddressFamily;
    use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteType};
    let names: HashMap<u32, InterfaceName> = [(2, "eth0".parse().unwrap())].into();
    let mut other_table = RouteMessage::default();
    other_table.header.address_family = AddressFamily::Inet;
    other_table.header.kind = RouteType::Unicast;
    other_table.attributes = vec![RouteAttribute::Table(1000), RouteAttribute::Oif(2)];
    assert!(typed(&other_table, &names).is_empty(), "policy-routing tables are not this step's");
    let mut main = other_table.clone();
    main.attributes = vec![RouteAttribute::Table(254), RouteAttribute::Oif(2)];
    assert_eq!(typed(&main, &names).len(), 1);
}
