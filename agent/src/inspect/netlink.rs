//! Links, addresses, routes (every table but the local one), policy-routing rules and
//! neighbours of a source's namespace, read over
//! rtnetlink from a socket created inside that namespace, and converted to the model's types.
//! The conversions are pure functions of the netlink messages.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use netdiag_model::inspect::{
    InterfaceName, Link, LinkKind, LinkLayerAddress, Neighbour, NeighbourState, Route, RouteRule, RuleAction,
};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState as NlNeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType, RouteVia};
use netlink_packet_route::rule::{RuleAction as NlRuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::{IpVersion, RouteMessageBuilder};

use crate::source::{SourceError, SourceNs};

/// How long one netlink dump may take; a namespace with 100 000 routes dumps in well under this.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(10);

/// The local routing table's id: the host's own and broadcast addresses, nothing a path to
/// another host is looked up in.
const LOCAL_TABLE: u32 = 255;

/// Why a netlink read failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("could not open a netlink socket in the source's namespace")]
    Source(#[source] SourceError),
    #[error("could not open a netlink socket: is the agent missing CAP_NET_ADMIN or a netns mount?")]
    Socket(#[source] std::io::Error),
    #[error("dumping {what} over netlink")]
    Dump {
        what: &'static str,
        #[source]
        error: rtnetlink::Error,
    },
    #[error("dumping {what} over netlink took more than {}s: retry", NETLINK_TIMEOUT.as_secs())]
    Timeout { what: &'static str },
}

/// What the netlink inspection found; a part that failed is empty and has an error line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetlinkState {
    pub links: Vec<Link>,
    pub routes: Vec<Route>,
    pub rules: Vec<RouteRule>,
    pub neighbours: Vec<Neighbour>,
    pub errors: Vec<String>,
}

/// An rtnetlink handle on a socket born in `src`'s namespace. The connection's driver task
/// runs as long as the returned guard lives, and is aborted when it drops (a cancelled run
/// included).
pub(crate) async fn connect(src: &SourceNs) -> Result<(rtnetlink::Handle, DriverGuard), NetlinkError> {
    let rt = tokio::runtime::Handle::current();
    let (connection, handle, _messages) = src
        .run(move || {
            let _runtime = rt.enter();
            rtnetlink::new_connection()
        })
        .await
        .map_err(NetlinkError::Source)?
        .map_err(NetlinkError::Socket)?;
    Ok((handle, DriverGuard(tokio::spawn(connection))))
}

/// Aborts a netlink connection's driver task on drop.
pub(crate) struct DriverGuard(tokio::task::JoinHandle<()>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads links (with addresses), routes, rules and neighbours of `src`'s namespace.
pub async fn inspect_netlink(src: &SourceNs) -> NetlinkState {
    let mut out = NetlinkState::default();
    let (handle, _driver) = match connect(src).await {
        Ok(c) => c,
        Err(e) => {
            out.errors.push(super::error_chain(&e));
            return out;
        }
    };

    // One dump at a time: the kernel answers a second dump on a socket with EBUSY.
    let links = dump("links", handle.link().get().execute()).await;
    let addresses = dump("addresses", handle.address().get().execute()).await;
    let mut names: HashMap<u32, InterfaceName> = HashMap::new();
    match (links, addresses) {
        (Ok(links), addresses) => {
            let addresses = addresses.unwrap_or_else(|e| {
                out.errors.push(super::error_chain(&e));
                Vec::new()
            });
            let by_link = addresses_by_link(&addresses);
            for msg in &links {
                match link(msg, &by_link) {
                    Ok(l) => {
                        names.insert(l.index.get(), l.name.clone());
                        out.links.push(l);
                    }
                    Err(e) => out.errors.push(e),
                }
            }
            out.links.sort_by_key(|l| l.index);
        }
        (Err(e), _) => out.errors.push(super::error_chain(&e)),
    }

    let v4 = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let v6 = RouteMessageBuilder::<Ipv6Addr>::new().build();
    let r4 = dump("IPv4 routes", handle.route().get(v4).execute()).await;
    let r6 = dump("IPv6 routes", handle.route().get(v6).execute()).await;
    let n4 =
        dump("IPv4 neighbours", handle.neighbours().get().set_address_family(AddressFamily::Inet).execute())
            .await;
    let n6 =
        dump("IPv6 neighbours", handle.neighbours().get().set_address_family(AddressFamily::Inet6).execute())
            .await;
    for routes in [r4, r6] {
        match routes {
            Ok(msgs) => out.routes.extend(msgs.iter().flat_map(|m| routes_of(m, &names))),
            Err(e) => out.errors.push(super::error_chain(&e)),
        }
    }
    let rules4 = dump("IPv4 rules", handle.rule().get(IpVersion::V4).execute()).await;
    let rules6 = dump("IPv6 rules", handle.rule().get(IpVersion::V6).execute()).await;
    for rules in [rules4, rules6] {
        match rules {
            Ok(msgs) => out.rules.extend(msgs.iter().filter_map(rule_of)),
            Err(e) => out.errors.push(super::error_chain(&e)),
        }
    }
    out.rules.sort_by_key(|r| (r.ipv6, r.priority));
    for neighbours in [n4, n6] {
        match neighbours {
            Ok(msgs) => out.neighbours.extend(msgs.iter().filter_map(|m| neighbour(m, &names))),
            Err(e) => out.errors.push(super::error_chain(&e)),
        }
    }
    out
}

pub(crate) async fn dump<T>(
    what: &'static str,
    stream: impl futures_util::Stream<Item = Result<T, rtnetlink::Error>>,
) -> Result<Vec<T>, NetlinkError> {
    tokio::time::timeout(NETLINK_TIMEOUT, stream.try_collect::<Vec<T>>())
        .await
        .map_err(|_| NetlinkError::Timeout { what })?
        .map_err(|error| NetlinkError::Dump { what, error })
}

/// Each link's addresses with their prefix length, as `ip addr` shows them: the local address
/// (`IFA_LOCAL`) where there is one, else `IFA_ADDRESS`.
pub(crate) fn addresses_by_link(msgs: &[AddressMessage]) -> HashMap<u32, Vec<IpNet>> {
    let mut out: HashMap<u32, Vec<IpNet>> = HashMap::new();
    for msg in msgs {
        let local = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        });
        let address = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = local.or(address)
            && let Ok(net) = IpNet::new(ip, msg.header.prefix_len)
        {
            out.entry(msg.header.index).or_default().push(net);
        }
    }
    out
}

/// A link message as the model's [`Link`]. `up` means administratively up *and* with carrier
/// (`IFF_UP` and `IFF_LOWER_UP`, `ip link`'s `state UP`): a veth whose peer is down is not up.
pub(crate) fn link(msg: &LinkMessage, addresses: &HashMap<u32, Vec<IpNet>>) -> Result<Link, String> {
    let index =
        NonZeroU32::new(msg.header.index).ok_or_else(|| "a link with index 0 was skipped".to_owned())?;
    let mut name = None;
    let mut mtu = 0;
    let mut kind = None;
    let mut lladdr = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(bytes) => lladdr = hardware_address(bytes),
            LinkAttribute::Mtu(m) => mtu = *m,
            LinkAttribute::LinkInfo(infos) => {
                kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(k) => LinkKind::new(k.to_string()).ok(),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    let name = name.ok_or_else(|| format!("link {index} has no name and was skipped"))?;
    let name = InterfaceName::new(name).map_err(|e| format!("link {index} was skipped: {e}"))?;
    let flags = msg.header.flags;
    let mut addrs = addresses.get(&index.get()).cloned().unwrap_or_default();
    addrs.sort();
    Ok(Link {
        name,
        index,
        up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp),
        mtu,
        addresses: addrs,
        kind,
        lladdr,
    })
}

/// A hardware address as `ip` prints it (`aa:bb:…`); None when empty or all zero (`lo`,
/// tunnels: no address anyone's neighbour entry could hold).
fn hardware_address(bytes: &[u8]) -> Option<LinkLayerAddress> {
    if bytes.iter().all(|&b| b == 0) {
        return None;
    }
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    LinkLayerAddress::new(hex.join(":")).ok()
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn gateway_of(attrs: &[RouteAttribute]) -> Option<IpAddr> {
    attrs.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => route_ip(g),
        RouteAttribute::Via(RouteVia::Inet(ip)) => Some(IpAddr::V4(*ip)),
        RouteAttribute::Via(RouteVia::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        _ => None,
    })
}

/// A route message as the model's routes: unicast, blackhole, unreachable and prohibit routes
/// of every table but the local one (policy routing may send a path to any); one [`Route`]
/// per next hop of a multipath route.
pub(crate) fn routes_of(msg: &RouteMessage, names: &HashMap<u32, InterfaceName>) -> Vec<Route> {
    let h = &msg.header;
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(h.table));
    let kept = matches!(
        h.kind,
        RouteType::Unicast | RouteType::BlackHole | RouteType::Unreachable | RouteType::Prohibit
    );
    if table == LOCAL_TABLE || !kept {
        return Vec::new();
    }
    let unspecified = match h.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return Vec::new(),
    };
    let dst_ip = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(d) => route_ip(d),
            _ => None,
        })
        .unwrap_or(unspecified);
    let Ok(destination) = IpNet::new(dst_ip, h.destination_prefix_length) else { return Vec::new() };
    let source = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::PrefSource(s) => route_ip(s),
        _ => None,
    });
    let metric = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0);
    let device = |index: u32| names.get(&index).cloned();
    let route = |gateway, device| Route { destination, gateway, device, source, table, metric };
    let hops = msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::MultiPath(hops) => Some(hops),
        _ => None,
    });
    match hops {
        Some(hops) => {
            hops.iter().map(|hop| route(gateway_of(&hop.attributes), device(hop.interface_index))).collect()
        }
        None => {
            let oif = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(i) => Some(*i),
                _ => None,
            });
            vec![route(gateway_of(&msg.attributes), oif.and_then(device))]
        }
    }
}

/// A rule message as the model's rule; None for a family other than IPv4 and IPv6.
pub(crate) fn rule_of(msg: &RuleMessage) -> Option<RouteRule> {
    let h = &msg.header;
    let ipv6 = match h.family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    let mut rule = RouteRule {
        priority: 0,
        ipv6,
        from: None,
        to: None,
        iif: None,
        oif: None,
        fwmark: None,
        invert: h.flags.contains(RuleFlags::Invert),
        action: RuleAction::Other,
    };
    let mut table = u32::from(h.table);
    let (mut mark, mut mask) = (None, None);
    for a in &msg.attributes {
        match a {
            RuleAttribute::Priority(p) => rule.priority = *p,
            RuleAttribute::Source(ip) => rule.from = IpNet::new(*ip, h.src_len).ok(),
            RuleAttribute::Destination(ip) => rule.to = IpNet::new(*ip, h.dst_len).ok(),
            RuleAttribute::Iifname(n) => rule.iif = InterfaceName::new(n.as_str()).ok(),
            RuleAttribute::Oifname(n) => rule.oif = InterfaceName::new(n.as_str()).ok(),
            RuleAttribute::FwMark(m) => mark = Some(*m),
            RuleAttribute::FwMask(m) => mask = Some(*m),
            RuleAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    rule.fwmark =
        mark.filter(|&m| m != 0 || mask.is_some_and(|k| k != 0)).map(|m| (m, mask.unwrap_or(u32::MAX)));
    rule.action = match h.action {
        NlRuleAction::ToTable => RuleAction::Lookup(table),
        NlRuleAction::Blackhole => RuleAction::Blackhole,
        NlRuleAction::Unreachable => RuleAction::Unreachable,
        NlRuleAction::Prohibit => RuleAction::Prohibit,
        _ => RuleAction::Other,
    };
    Some(rule)
}

/// iproute2's name for a neighbour state.
fn state_name(state: NlNeighbourState) -> String {
    match state {
        NlNeighbourState::Incomplete => "INCOMPLETE".to_owned(),
        NlNeighbourState::Reachable => "REACHABLE".to_owned(),
        NlNeighbourState::Stale => "STALE".to_owned(),
        NlNeighbourState::Delay => "DELAY".to_owned(),
        NlNeighbourState::Probe => "PROBE".to_owned(),
        NlNeighbourState::Failed => "FAILED".to_owned(),
        NlNeighbourState::Noarp => "NOARP".to_owned(),
        NlNeighbourState::Permanent => "PERMANENT".to_owned(),
        NlNeighbourState::None => "NONE".to_owned(),
        NlNeighbourState::Other(n) => format!("0x{n:x}"),
        other => format!("{other:?}").to_ascii_uppercase(),
    }
}

/// A neighbour message as the model's [`Neighbour`]; entries `ip neigh` hides by default
/// (`NOARP`, `NONE`) and entries on unknown links are skipped.
pub(crate) fn neighbour(msg: &NeighbourMessage, names: &HashMap<u32, InterfaceName>) -> Option<Neighbour> {
    if matches!(msg.header.state, NlNeighbourState::Noarp | NlNeighbourState::None) {
        return None;
    }
    let ip = msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        _ => None,
    })?;
    let lladdr = msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(bytes) if !bytes.is_empty() => {
            // An all-zero address is still an address here (a static entry can hold one).
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            LinkLayerAddress::new(hex.join(":")).ok()
        }
        _ => None,
    });
    Some(Neighbour {
        ip,
        device: names.get(&msg.header.ifindex)?.clone(),
        state: NeighbourState::new(state_name(msg.header.state)).ok()?,
        lladdr,
    })
}

#[cfg(test)]
mod tests;
