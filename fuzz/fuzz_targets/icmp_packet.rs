//! What the agent's RAW ICMP sockets receive, which any host on the network can send: the MTU
//! probe's own parser (an IPv4 packet with its header, or an ICMPv6 message; echo replies and
//! errors quoting our requests) and surge-ping's decoder, which reads every reply of the ICMP
//! probe. The first input byte picks the family (bit 0) and whether the packet comes from the
//! target or a router (bit 1); the rest is the packet. Properties: no panic; an answer's
//! next-hop MTU is never 0.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use socket2::Type;
use surge_ping::{Icmpv4Packet, Icmpv6Packet};

// The addresses of the agent's packet tests, so their packets make good seeds.
const US_V4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const TARGET_V4: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 7);
const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(172, 29, 0, 12);
const TARGET_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 0x2, 0, 0, 0, 0x7);
const ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x172, 0x29, 0, 0, 0, 0, 0x12);

fuzz_target!(|data: &[u8]| {
    let Some((&selector, packet)) = data.split_first() else { return };
    let (v6, from_target) = (selector & 1 == 1, selector & 2 == 2);
    let (target, router) = if v6 {
        (IpAddr::V6(TARGET_V6), IpAddr::V6(ROUTER_V6))
    } else {
        (IpAddr::V4(TARGET_V4), IpAddr::V4(ROUTER_V4))
    };
    let from = if from_target { target } else { router };
    if let Some(answer) = netdiag_agent::probe::mtu::fuzz_parse_answer(packet, from, target) {
        let text = format!("{answer:?}");
        assert!(!text.contains("mtu: Some(0)"), "a zero next-hop MTU: {}", netdiag_fuzz::head(&text));
    }
    if v6 {
        let _ = Icmpv6Packet::decode(packet, TARGET_V6);
    } else {
        let _ = Icmpv4Packet::decode(packet, Type::RAW, TARGET_V4, US_V4);
    }
});
