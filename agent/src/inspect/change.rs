//! Whether an inspection report says anything new, so the agent sends reports only when they
//! change. Reports are compared in a canonical form that leaves out what moves without meaning:
//! the timestamp, the order of every list, and the churn of neighbour states (`REACHABLE` →
//! `STALE` → `DELAY` → `PROBE` is the kernel revalidating an entry, not a change of path).

use std::net::IpAddr;

use netdiag_model::inspect::{InspectionReport, Link, NatService, Neighbour, ResolvConf, Route, Sysctl};
use netdiag_model::inventory::ProxyMode;
use netdiag_model::probe::Source;

/// What a neighbour entry means for reachability, ignoring the kernel's revalidation churn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Resolution {
    /// The entry holds a link-layer address (`REACHABLE`, `STALE`, `DELAY`, `PROBE`,
    /// `PERMANENT`, `NOARP`).
    Resolved,
    /// Resolution failed or is under way (`FAILED`, `INCOMPLETE`).
    Unresolved,
}

fn resolution(n: &Neighbour) -> Resolution {
    match n.state.as_str() {
        "FAILED" | "INCOMPLETE" | "NONE" => Resolution::Unresolved,
        _ => Resolution::Resolved,
    }
}

/// True when `current` differs from `previous` in anything but the timestamp, list order and
/// neighbour-state churn: links, routes, neighbours (address, device, link-layer address and
/// whether they resolve), NAT frontends and targets, sysctls, resolv.conf, proxy mode, errors.
pub fn changed(previous: &InspectionReport, current: &InspectionReport) -> bool {
    Canonical::of(previous) != Canonical::of(current)
}

/// A report in the form [`changed`] compares. Built by destructuring every field, so a field
/// added to the model must be given a place here before this compiles.
#[derive(Debug, PartialEq, Eq)]
struct Canonical<'r> {
    source: &'r Source,
    links: Vec<Link>,
    routes: Vec<&'r Route>,
    /// In order: rules apply by priority.
    rules: &'r [netdiag_model::inspect::RouteRule],
    neighbours: Vec<(IpAddr, &'r str, Option<&'r str>, Resolution)>,
    nat_services: Vec<NatService>,
    sysctls: Vec<&'r Sysctl>,
    resolv_conf: &'r Option<ResolvConf>,
    proxy_mode: Option<ProxyMode>,
    errors: Vec<&'r str>,
    /// In order: a firewall's rules apply first match first.
    filter_drops: &'r [netdiag_model::inspect::FilterDrop],
    /// In order: a hook's NAT rules apply first match first.
    nat_rules: &'r [netdiag_model::inspect::NatRule],
}

impl<'r> Canonical<'r> {
    fn of(r: &'r InspectionReport) -> Self {
        let InspectionReport {
            source,
            at: _,
            links,
            routes,
            rules,
            neighbours,
            nat_services,
            sysctls,
            resolv_conf,
            proxy_mode,
            errors,
            filter_drops,
            nat_rules,
        } = r;
        let mut links = links.clone();
        links.sort_by_key(|l| l.index);
        for link in &mut links {
            link.addresses.sort();
        }
        let mut routes: Vec<&Route> = routes.iter().collect();
        routes.sort_by(|a, b| route_key(a).cmp(&route_key(b)));
        let mut neighbours: Vec<_> = neighbours
            .iter()
            .map(|n| (n.ip, n.device.as_str(), n.lladdr.as_ref().map(|l| l.as_str()), resolution(n)))
            .collect();
        neighbours.sort();
        neighbours.dedup();
        let mut nat_services = nat_services.clone();
        for svc in &mut nat_services {
            svc.targets.sort_by(|a, b| (a.ip, a.port, &a.chain).cmp(&(b.ip, b.port, &b.chain)));
        }
        nat_services.sort_by(|a, b| nat_key(a).cmp(&nat_key(b)));
        let mut sysctls: Vec<&Sysctl> = sysctls.iter().collect();
        sysctls.sort_by(|a, b| (&a.key, &a.value).cmp(&(&b.key, &b.value)));
        let mut errors: Vec<&str> = errors.iter().map(|e| e.as_str()).collect();
        errors.sort_unstable();
        Canonical {
            source,
            links,
            routes,
            rules,
            neighbours,
            nat_services,
            sysctls,
            resolv_conf,
            proxy_mode: *proxy_mode,
            errors,
            filter_drops,
            nat_rules,
        }
    }
}

fn route_key(r: &Route) -> impl Ord + '_ {
    (r.table, r.destination, r.metric, r.gateway, r.device.as_ref().map(|d| d.as_str()), r.source)
}

fn nat_key(s: &NatService) -> impl Ord + '_ {
    // Targets too: a node port matching every address appears once per family.
    let targets: Vec<(IpAddr, netdiag_model::Port)> = s.targets.iter().map(|t| (t.ip, t.port)).collect();
    (s.node_port, s.vip, s.port, s.protocol, &s.service, targets)
}

#[cfg(test)]
mod tests;
