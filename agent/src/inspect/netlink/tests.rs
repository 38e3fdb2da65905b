//! Netlink messages built by hand, converted to the model's links, routes and neighbours.

use netlink_packet_route::link::InfoKind;
use netlink_packet_route::route::{RouteHeader, RouteNextHop};

use super::*;

fn names() -> HashMap<u32, InterfaceName> {
    HashMap::from([(1, InterfaceName::new("lo").unwrap()), (2, InterfaceName::new("eth0").unwrap())])
}

fn link_msg(index: u32, name: &str, flags: LinkFlags, kind: Option<InfoKind>) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = flags;
    msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
    msg.attributes.push(LinkAttribute::Mtu(1450));
    if let Some(kind) = kind {
        msg.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
    }
    msg
}

fn addr_msg(index: u32, ip: &str, prefix: u8, local: bool) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = prefix;
    let ip: IpAddr = ip.parse().unwrap();
    msg.attributes.push(AddressAttribute::Address(ip));
    if local {
        msg.attributes.push(AddressAttribute::Local(ip));
    }
    msg
}

#[test]
fn links_carry_state_mtu_kind_and_addresses() {
    let addrs = addresses_by_link(&[
        addr_msg(2, "10.244.1.3", 32, true),
        addr_msg(2, "fd42:244:0:1::3", 128, false),
        addr_msg(1, "127.0.0.1", 8, true),
    ]);
    let up = LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running;
    let eth0 = link(&link_msg(2, "eth0", up, Some(InfoKind::Veth)), &addrs).unwrap();
    assert_eq!(eth0.name.as_str(), "eth0");
    assert!(eth0.up);
    assert_eq!(eth0.mtu, 1450);
    assert_eq!(eth0.kind.as_ref().map(LinkKind::as_str), Some("veth"));
    let want: Vec<IpNet> = vec!["10.244.1.3/32".parse().unwrap(), "fd42:244:0:1::3/128".parse().unwrap()];
    assert_eq!(eth0.addresses, want);
    assert_eq!(eth0.lladdr, None, "no address attribute");

    // The hardware address as `ip link` prints it; `lo`'s all-zero one is no address.
    let mut with_mac = link_msg(2, "eth0", up, Some(InfoKind::Veth));
    with_mac.attributes.push(LinkAttribute::Address(vec![0x02, 0x42, 0xAC, 0x1D, 0x00, 0x0B]));
    let eth0 = link(&with_mac, &addrs).unwrap();
    assert_eq!(eth0.lladdr.as_ref().map(LinkLayerAddress::as_str), Some("02:42:ac:1d:00:0b"));
    let mut lo = link_msg(1, "lo", up, None);
    lo.attributes.push(LinkAttribute::Address(vec![0; 6]));
    assert_eq!(link(&lo, &addrs).unwrap().lladdr, None);

    // Administratively down, or up without carrier (peer down): not up. No kind: physical.
    for flags in [LinkFlags::empty(), LinkFlags::Up] {
        let l = link(&link_msg(2, "eth0", flags, None), &addrs).unwrap();
        assert!(!l.up, "{flags:?}");
        assert_eq!(l.kind, None);
    }
    assert!(link(&link_msg(0, "eth0", up, None), &addrs).is_err());
    assert!(link(&link_msg(3, "bad/name", up, None), &addrs).unwrap_err().contains("skipped"));
}

fn route_msg(family: AddressFamily, dst: Option<(&str, u8)>, attrs: Vec<RouteAttribute>) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.kind = RouteType::Unicast;
    if let Some((ip, len)) = dst {
        msg.header.destination_prefix_length = len;
        msg.attributes.push(RouteAttribute::Destination(ip.parse::<IpAddr>().unwrap().into()));
    }
    msg.attributes.extend(attrs);
    msg
}

fn gw(ip: &str) -> RouteAttribute {
    RouteAttribute::Gateway(ip.parse::<IpAddr>().unwrap().into())
}

#[test]
fn routes_of_the_main_table() {
    let default = route_msg(AddressFamily::Inet, None, vec![gw("169.254.1.1"), RouteAttribute::Oif(2)]);
    let routes = routes_of(&default, &names());
    assert_eq!(routes.len(), 1);
    let r = &routes[0];
    assert_eq!(r.destination, "0.0.0.0/0".parse::<IpNet>().unwrap());
    assert_eq!(r.gateway, Some("169.254.1.1".parse().unwrap()));
    assert_eq!(r.device.as_ref().map(InterfaceName::as_str), Some("eth0"));
    assert_eq!((r.table, r.metric, r.source), (254, 0, None));

    let link_route = route_msg(
        AddressFamily::Inet,
        Some(("169.254.1.1", 32)),
        vec![
            RouteAttribute::Oif(2),
            RouteAttribute::PrefSource("10.244.1.3".parse::<IpAddr>().unwrap().into()),
        ],
    );
    let r = &routes_of(&link_route, &names())[0];
    assert_eq!(r.destination.to_string(), "169.254.1.1/32");
    assert_eq!((r.gateway, r.source), (None, Some("10.244.1.3".parse().unwrap())));

    let v6_default = route_msg(
        AddressFamily::Inet6,
        None,
        vec![
            RouteAttribute::Via(RouteVia::Inet6("fe80::1".parse().unwrap())),
            RouteAttribute::Priority(1024),
        ],
    );
    let r = &routes_of(&v6_default, &names())[0];
    assert_eq!((r.destination.to_string().as_str(), r.metric), ("::/0", 1024));
    assert_eq!(r.gateway, Some("fe80::1".parse().unwrap()));
    assert_eq!(r.device, None, "no output interface");
}

#[test]
fn the_local_table_and_other_kinds_are_left_out_other_tables_kept_multipath_is_split() {
    let mut local = route_msg(AddressFamily::Inet, Some(("10.244.1.3", 32)), vec![RouteAttribute::Oif(2)]);
    local.header.table = 255;
    local.header.kind = RouteType::Local;
    assert!(routes_of(&local, &names()).is_empty());

    // A table id above 255 travels in an attribute; policy routing may send a path there.
    let big_table = route_msg(AddressFamily::Inet, None, vec![RouteAttribute::Table(1000)]);
    assert_eq!(routes_of(&big_table, &names())[0].table, 1000);

    let mut blackhole = route_msg(AddressFamily::Inet, Some(("10.99.0.0", 16)), vec![]);
    blackhole.header.kind = RouteType::BlackHole;
    let r = &routes_of(&blackhole, &names())[0];
    assert_eq!((r.device.as_ref(), r.gateway), (None, None));

    let hop = |ip: &str, index: u32| {
        let mut h = RouteNextHop::default();
        h.interface_index = index;
        h.attributes.push(gw(ip));
        h
    };
    let multipath = route_msg(
        AddressFamily::Inet,
        Some(("10.244.2.0", 24)),
        vec![RouteAttribute::MultiPath(vec![hop("172.29.0.12", 2), hop("172.29.0.13", 9)])],
    );
    let routes = routes_of(&multipath, &names());
    let hops: Vec<(String, Option<&str>)> = routes
        .iter()
        .map(|r| (r.gateway.unwrap().to_string(), r.device.as_ref().map(InterfaceName::as_str)))
        .collect();
    assert_eq!(hops, [("172.29.0.12".to_owned(), Some("eth0")), ("172.29.0.13".to_owned(), None)]);
}

fn neigh_msg(ip: &str, state: NlNeighbourState, lladdr: &[u8]) -> NeighbourMessage {
    let mut msg = NeighbourMessage::default();
    msg.header.ifindex = 2;
    msg.header.state = state;
    let dst = match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    };
    msg.attributes.push(NeighbourAttribute::Destination(dst));
    if !lladdr.is_empty() {
        msg.attributes.push(NeighbourAttribute::LinkLayerAddress(lladdr.to_vec()));
    }
    msg
}

#[test]
fn neighbours_as_ip_neigh_shows_them() {
    let mac = [0xee, 0xee, 0xee, 0x0a, 0x0b, 0xff];
    let n = neighbour(&neigh_msg("169.254.1.1", NlNeighbourState::Reachable, &mac), &names()).unwrap();
    assert_eq!(n.state.as_str(), "REACHABLE");
    assert_eq!(n.lladdr.unwrap().as_str(), "ee:ee:ee:0a:0b:ff");
    assert_eq!(n.device.as_str(), "eth0");

    let failed = neighbour(&neigh_msg("fe80::1", NlNeighbourState::Failed, &[]), &names()).unwrap();
    assert_eq!((failed.state.as_str(), failed.lladdr), ("FAILED", None));

    assert!(neighbour(&neigh_msg("224.0.0.1", NlNeighbourState::Noarp, &mac), &names()).is_none());
    let mut unknown_link = neigh_msg("10.0.0.1", NlNeighbourState::Stale, &mac);
    unknown_link.header.ifindex = 77;
    assert!(neighbour(&unknown_link, &names()).is_none());
    let odd = neighbour(&neigh_msg("10.0.0.1", NlNeighbourState::Other(0x100), &mac), &names()).unwrap();
    assert_eq!(odd.state.as_str(), "0x100");
}

#[test]
fn rules_read_as_ip_rule_prints_them() {
    use netlink_packet_route::rule::{RuleAction as NlRuleAction, RuleAttribute, RuleFlags, RuleMessage};
    let mut prohibit = RuleMessage::default();
    prohibit.header.family = AddressFamily::Inet;
    prohibit.header.dst_len = 24;
    prohibit.header.action = NlRuleAction::Prohibit;
    prohibit.attributes =
        vec![RuleAttribute::Priority(100), RuleAttribute::Destination("10.244.3.0".parse().unwrap())];
    let r = rule_of(&prohibit).unwrap();
    assert_eq!(r.to_string(), "100: from all to 10.244.3.0/24 prohibit");
    assert!(r.action.drops());

    let mut lookup = RuleMessage::default();
    lookup.header.family = AddressFamily::Inet6;
    lookup.header.src_len = 64;
    lookup.header.table = 254;
    lookup.header.action = NlRuleAction::ToTable;
    lookup.header.flags = RuleFlags::Invert;
    lookup.attributes = vec![
        RuleAttribute::Priority(200),
        RuleAttribute::Source("fd00::".parse().unwrap()),
        RuleAttribute::Iifname("eth0".into()),
        RuleAttribute::FwMark(0x4000),
        RuleAttribute::FwMask(0x4000),
        RuleAttribute::Table(1000),
    ];
    let r = rule_of(&lookup).unwrap();
    assert!(r.ipv6 && r.invert);
    assert_eq!(r.action, RuleAction::Lookup(1000), "a table above 255 travels in an attribute");
    assert_eq!(r.to_string(), "200: not from fd00::/64 fwmark 0x4000/0x4000 iif eth0 lookup 1000");

    let mut main = RuleMessage::default();
    main.header.family = AddressFamily::Inet;
    main.header.table = 254;
    main.header.action = NlRuleAction::ToTable;
    main.attributes = vec![RuleAttribute::Priority(32766), RuleAttribute::Table(254)];
    assert_eq!(rule_of(&main).unwrap().to_string(), "32766: from all lookup main");
}
