//! Change detection as tables of edits to one report: those that must not trigger a send, and
//! those that must.

use netdiag_model::inspect::{
    InterfaceName, LinkLayerAddress, NatProtocol, NatTarget, NeighbourState, SysctlKey,
};
use netdiag_model::text::Text;
use netdiag_model::{Port, UnixMillis};

use super::*;

fn report() -> InspectionReport {
    let eth0 = InterfaceName::new("eth0").unwrap();
    InspectionReport {
        filter_drops: vec![],
        nat_rules: vec![],
        rules: vec![],
        source: "tidb/demo-pd-0".parse().unwrap(),
        at: UnixMillis::new(1_700_000_000_000).unwrap(),
        links: vec![
            Link {
                name: InterfaceName::new("lo").unwrap(),
                index: std::num::NonZeroU32::new(1).unwrap(),
                up: true,
                mtu: 65536,
                addresses: vec!["127.0.0.1/8".parse().unwrap(), "::1/128".parse().unwrap()],
                kind: None,
                lladdr: None,
            },
            Link {
                name: eth0.clone(),
                index: std::num::NonZeroU32::new(2).unwrap(),
                up: true,
                mtu: 1500,
                addresses: vec!["10.244.1.3/32".parse().unwrap()],
                kind: None,
                lladdr: None,
            },
        ],
        routes: vec![
            Route {
                destination: "0.0.0.0/0".parse().unwrap(),
                gateway: Some("169.254.1.1".parse().unwrap()),
                device: Some(eth0.clone()),
                source: None,
                table: 254,
                metric: 0,
            },
            Route {
                destination: "169.254.1.1/32".parse().unwrap(),
                gateway: None,
                device: Some(eth0.clone()),
                source: None,
                table: 254,
                metric: 0,
            },
        ],
        neighbours: vec![Neighbour {
            ip: "169.254.1.1".parse().unwrap(),
            device: eth0,
            state: NeighbourState::new("REACHABLE").unwrap(),
            lladdr: Some(LinkLayerAddress::new("ee:ee:ee:ee:ee:ee").unwrap()),
        }],
        nat_services: vec![NatService {
            service: Some("tidb/demo-pd:client".parse().unwrap()),
            vip: Some("10.96.0.20".parse().unwrap()),
            port: Port::new(2379).unwrap(),
            protocol: NatProtocol::Tcp,
            targets: vec![
                NatTarget { ip: "10.244.1.3".parse().unwrap(), port: Port::new(2379).unwrap(), chain: None },
                NatTarget { ip: "10.244.2.2".parse().unwrap(), port: Port::new(2379).unwrap(), chain: None },
            ],
            node_port: false,
        }],
        sysctls: vec![
            Sysctl { key: SysctlKey::new("net.ipv4.ip_forward").unwrap(), value: Text::new("0").unwrap() },
            Sysctl {
                key: SysctlKey::new("net.ipv4.tcp_keepalive_time").unwrap(),
                value: Text::new("7200").unwrap(),
            },
        ],
        resolv_conf: None,
        proxy_mode: None,
        errors: vec![],
    }
}

/// A named edit of [`report`].
type Edit = (&'static str, fn(&mut InspectionReport));

#[test]
fn unchanged_reports_are_not_sent_again() {
    let cases: &[Edit] = &[
        ("nothing", |_| {}),
        ("a later timestamp", |r| r.at = UnixMillis::new(1_800_000_000_000).unwrap()),
        ("lists in another order", |r| {
            r.links.reverse();
            r.links[0].addresses.reverse();
            r.routes.reverse();
            r.sysctls.reverse();
            r.nat_services[0].targets.reverse();
        }),
        ("a neighbour going stale", |r| r.neighbours[0].state = NeighbourState::new("STALE").unwrap()),
        ("a neighbour being probed", |r| r.neighbours[0].state = NeighbourState::new("PROBE").unwrap()),
        ("a neighbour listed twice", |r| {
            let n = r.neighbours[0].clone();
            r.neighbours.push(n);
        }),
    ];
    let base = report();
    for (what, edit) in cases {
        let mut r = report();
        edit(&mut r);
        assert!(!changed(&base, &r), "{what}");
        assert!(!changed(&r, &base), "{what}, reversed");
    }
}

#[test]
fn changed_reports_are_sent() {
    let cases: &[Edit] = &[
        ("eth0 down", |r| r.links[1].up = false),
        ("an MTU", |r| r.links[1].mtu = 1450),
        ("an address", |r| r.links[1].addresses[0] = "10.244.1.4/32".parse().unwrap()),
        ("the default route gone", |r| {
            r.routes.remove(0);
        }),
        ("a neighbour failing", |r| r.neighbours[0].state = NeighbourState::new("FAILED").unwrap()),
        ("a neighbour's MAC", |r| {
            r.neighbours[0].lladdr = Some(LinkLayerAddress::new("02:00:00:00:00:01").unwrap())
        }),
        ("a new neighbour", |r| {
            let mut n = r.neighbours[0].clone();
            n.ip = "10.244.1.9".parse().unwrap();
            r.neighbours.push(n);
        }),
        ("a DNAT target gone", |r| {
            r.nat_services[0].targets.pop();
        }),
        ("a frontend gone", |r| r.nat_services.clear()),
        ("a sysctl value", |r| r.sysctls[1].value = Text::new("300").unwrap()),
        ("an error", |r| r.errors.push(Text::new("nat: nft is not installed").unwrap())),
        ("the proxy mode", |r| r.proxy_mode = Some(ProxyMode::Iptables)),
        ("the source", |r| r.source = "tidb/demo-pd-1".parse().unwrap()),
    ];
    let base = report();
    for (what, edit) in cases {
        let mut r = report();
        edit(&mut r);
        assert!(changed(&base, &r), "{what}");
        assert!(changed(&r, &base), "{what}, reversed");
    }
}
