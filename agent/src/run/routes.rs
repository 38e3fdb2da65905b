//! The `routes` step: the route each destination takes in the source's namespace and, for a
//! pod, in its node's. The main table is dumped over rtnetlink once per namespace, keeping each
//! route's type (a blackhole, unreachable or prohibit route matches but sends nothing), and
//! looked up by longest prefix then lowest metric ([`lookup`], pure), as the kernel does for
//! the main table. Policy rules and other tables are not consulted: CNIs that route pods
//! through `ip rule` tables (AWS VPC CNI, Cilium's) are judged by their main table only.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netdiag_model::inspect::{InterfaceName, Route};
use netdiag_model::run::StepStatus;
use netlink_packet_route::route::{RouteMessage, RouteType};
use rtnetlink::RouteMessageBuilder;

use super::report::StepReport;
use crate::inspect::netlink::{NetlinkError, connect, dump, link, routes_of};
use crate::source::SourceNs;

/// The main routing table's id.
const MAIN_TABLE: u32 = 254;

/// What a matching route does with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteKind {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
}

impl RouteKind {
    fn of(t: RouteType) -> Option<Self> {
        match t {
            RouteType::Unicast => Some(RouteKind::Unicast),
            RouteType::BlackHole => Some(RouteKind::Blackhole),
            RouteType::Unreachable => Some(RouteKind::Unreachable),
            RouteType::Prohibit => Some(RouteKind::Prohibit),
            _ => None,
        }
    }

    fn what_it_does(self) -> &'static str {
        match self {
            RouteKind::Unicast => "forwards",
            RouteKind::Blackhole => "a blackhole route: packets are dropped silently",
            RouteKind::Unreachable => "an unreachable route: senders get \"no route to host\"",
            RouteKind::Prohibit => "a prohibit route: senders get \"permission denied\"",
        }
    }
}

/// A main-table route with its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypedRoute {
    pub(crate) route: Route,
    pub(crate) kind: RouteKind,
}

/// The route the kernel's main table picks for `dst`: the longest matching prefix of the same
/// family, the lowest metric among equals (the first listed among full ties).
pub(crate) fn lookup(table: &[TypedRoute], dst: IpAddr) -> Option<&TypedRoute> {
    let mut best: Option<&TypedRoute> = None;
    for r in table.iter().filter(|r| r.route.destination.contains(&dst)) {
        let better = best.is_none_or(|b| {
            let (len, blen) = (r.route.destination.prefix_len(), b.route.destination.prefix_len());
            len > blen || (len == blen && r.route.metric < b.route.metric)
        });
        if better {
            best = Some(r);
        }
    }
    best
}

fn route_name(r: &Route) -> String {
    if r.destination.prefix_len() == 0 {
        format!("default route {}", r.destination)
    } else {
        format!("route {}", r.destination)
    }
}

/// One evidence line for `dst` in the namespace called `label`, and whether the route is usable.
pub(crate) fn route_line(label: &str, table: &[TypedRoute], dst: IpAddr) -> (bool, String) {
    let Some(r) = lookup(table, dst) else {
        return (false, format!("{label}: no route to {dst}"));
    };
    if r.kind != RouteKind::Unicast {
        return (
            false,
            format!("{label}: {dst} matches {}, {}", route_name(&r.route), r.kind.what_it_does()),
        );
    }
    let mut line = format!("{label}: {dst}");
    if let Some(gw) = r.route.gateway {
        line.push_str(&format!(" via {gw}"));
    }
    if let Some(dev) = &r.route.device {
        line.push_str(&format!(" dev {dev}"));
    }
    line.push_str(&format!(" ({})", route_name(&r.route)));
    (true, line)
}

/// The step's report over each namespace's table (or why it could not be read): Failed when a
/// destination has no usable route somewhere or a table could not be read, Skipped with no
/// destinations, Ok otherwise.
pub(crate) fn routes_report(
    tables: &[(String, Result<Vec<TypedRoute>, String>)],
    destinations: &[IpAddr],
) -> StepReport {
    if destinations.is_empty() {
        return StepReport::new(StepStatus::Skipped, vec!["no destination to look up".to_owned()]);
    }
    let mut ok = true;
    let mut evidence = Vec::new();
    for (label, table) in tables {
        match table {
            Ok(table) => {
                for dst in destinations {
                    let (usable, line) = route_line(label, table, *dst);
                    ok &= usable;
                    evidence.push(line);
                }
            }
            Err(e) => {
                ok = false;
                evidence.push(format!("{label}: cannot read the routing table: {e}"));
            }
        }
    }
    StepReport::new(if ok { StepStatus::Ok } else { StepStatus::Failed }, evidence)
}

/// Looks `destinations` up in each of `namespaces` (label, namespace).
pub(crate) async fn routes_step(namespaces: &[(String, &SourceNs)], destinations: &[IpAddr]) -> StepReport {
    let mut tables = Vec::new();
    for (label, ns) in namespaces {
        let table = read_routes(ns).await.map_err(|e| netdiag_model::error_chain(&e));
        tables.push((label.clone(), table));
    }
    routes_report(&tables, destinations)
}

/// The main table of `src`'s namespace, both families, with each route's type.
pub(crate) async fn read_routes(src: &SourceNs) -> Result<Vec<TypedRoute>, NetlinkError> {
    let (handle, _driver) = connect(src).await?;
    // One dump at a time: the kernel answers a second dump on a socket with EBUSY.
    let links = dump("links", handle.link().get().execute()).await?;
    let no_addresses = HashMap::new();
    let names: HashMap<u32, InterfaceName> =
        links.iter().filter_map(|m| link(m, &no_addresses).ok()).map(|l| (l.index.get(), l.name)).collect();
    let v4 =
        dump("IPv4 routes", handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute())
            .await?;
    let v6 =
        dump("IPv6 routes", handle.route().get(RouteMessageBuilder::<Ipv6Addr>::new().build()).execute())
            .await?;
    Ok(v4.iter().chain(&v6).flat_map(|m| typed(m, &names)).collect())
}

fn typed(msg: &RouteMessage, names: &HashMap<u32, InterfaceName>) -> Vec<TypedRoute> {
    let Some(kind) = RouteKind::of(msg.header.kind) else { return Vec::new() };
    // The inspection's reader keeps every table; this step reads the main one only.
    routes_of(msg, names)
        .into_iter()
        .filter(|r| r.table == MAIN_TABLE)
        .map(|route| TypedRoute { route, kind })
        .collect()
}

#[cfg(test)]
mod tests;
