//! What a namespace's routing does with a packet, as the kernel decides it: the policy-routing
//! rules (`ip rule`) by ascending priority, each `lookup` a longest-prefix match in its table
//! that falls through to the next rule when the table has no route for the packet, a
//! `blackhole`/`unreachable`/`prohibit` rule the end of the packet. Without rules (an agent
//! that predates reading them) the main table is all there is.
//!
//! A rule whose selectors the diagnosis cannot evaluate — an input or output interface, a
//! firewall mark, a source it does not know — is passed over: it convicts nothing, and the
//! rules after it are read as if it did not match.

use std::net::IpAddr;

use ipnet::IpNet;
use netdiag_model::inspect::{InspectionReport, Route, RouteRule, RuleAction};

/// The main table's id, and the local table's (the host's own addresses: never read).
pub(crate) const MAIN_TABLE: u32 = 254;
const LOCAL_TABLE: u32 = 255;

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision<'r> {
    /// A route with a device or a gateway carries it.
    Routed(&'r Route),
    /// The best match is a route without device or gateway (`blackhole`, `unreachable`,
    /// `prohibit`).
    Blackhole(&'r Route),
    /// A rule drops it before any table is read.
    Rule(&'r RouteRule),
    /// No rule's table holds a route for it.
    NoRoute,
}

/// Where `report`'s namespace sends a packet from `src` (None: not known) to `dst`.
pub(crate) fn decide(report: &InspectionReport, dst: IpAddr, src: Option<IpAddr>) -> Decision<'_> {
    let rules = in_order(report, dst.is_ipv6());
    if rules.is_empty() {
        return lookup(report, MAIN_TABLE, |net| net.contains(&dst)).unwrap_or(Decision::NoRoute);
    }
    for rule in rules {
        if !selects(rule, |net| net.contains(&dst), src) {
            continue;
        }
        match rule.action {
            RuleAction::Lookup(LOCAL_TABLE) | RuleAction::Other => {}
            RuleAction::Lookup(table) => {
                if let Some(d) = lookup(report, table, |net| net.contains(&dst)) {
                    return d;
                }
            }
            RuleAction::Blackhole | RuleAction::Unreachable | RuleAction::Prohibit => {
                return Decision::Rule(rule);
            }
        }
    }
    Decision::NoRoute
}

/// For a whole prefix (a peer's pod CIDR), from `src`: the rule that drops it, or the table
/// the kernel reads for it — the first table a selecting rule looks up that holds a route for
/// the whole prefix other than a default route, the main table when none does.
pub(crate) fn table_for(
    report: &InspectionReport,
    prefix: IpNet,
    src: Option<IpAddr>,
) -> Result<u32, &RouteRule> {
    let covers = |net: &IpNet| net.contains(&prefix);
    for rule in in_order(report, prefix.addr().is_ipv6()) {
        if !selects(rule, covers, src) {
            continue;
        }
        match rule.action {
            RuleAction::Lookup(MAIN_TABLE) => return Ok(MAIN_TABLE),
            RuleAction::Lookup(LOCAL_TABLE) | RuleAction::Other => {}
            RuleAction::Lookup(table) => {
                if report
                    .routes
                    .iter()
                    .any(|r| r.table == table && r.destination.prefix_len() > 0 && covers(&r.destination))
                {
                    return Ok(table);
                }
            }
            RuleAction::Blackhole | RuleAction::Unreachable | RuleAction::Prohibit => return Err(rule),
        }
    }
    Ok(MAIN_TABLE)
}

/// Whether some rule drops packets outright: then paths are worth walking.
pub(crate) fn has_dropping_rule(report: &InspectionReport) -> bool {
    report.rules.iter().any(|r| r.action.drops())
}

/// The rules of one family by priority; none when the agent read none of that family (then
/// the main table decides, as without rules).
fn in_order(report: &InspectionReport, ipv6: bool) -> Vec<&RouteRule> {
    let mut rules: Vec<&RouteRule> = report.rules.iter().filter(|r| r.ipv6 == ipv6).collect();
    rules.sort_by_key(|r| r.priority);
    rules
}

/// Whether `rule` selects the packet, `to` saying whether a `to` prefix matches its
/// destination. Selectors not evaluable here make it not select.
fn selects(rule: &RouteRule, to: impl Fn(&IpNet) -> bool, src: Option<IpAddr>) -> bool {
    if rule.iif.is_some() || rule.oif.is_some() || rule.fwmark.is_some() {
        return false;
    }
    let from = match (rule.from, src) {
        (None, _) => true,
        (Some(net), _) if net.prefix_len() == 0 => true,
        (Some(net), Some(ip)) => net.contains(&ip),
        (Some(_), None) => return false,
    };
    let to = rule.to.is_none_or(|net| net.prefix_len() == 0 || to(&net));
    (from && to) != rule.invert
}

/// The longest match in `table` (lowest metric among equals), if any.
fn lookup(report: &InspectionReport, table: u32, covers: impl Fn(&IpNet) -> bool) -> Option<Decision<'_>> {
    let best = report
        .routes
        .iter()
        .filter(|r| r.table == table && covers(&r.destination))
        .max_by_key(|r| (r.destination.prefix_len(), std::cmp::Reverse(r.metric)))?;
    Some(if best.device.is_some() || best.gateway.is_some() {
        Decision::Routed(best)
    } else {
        Decision::Blackhole(best)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netdiag_model::UnixMillis;

    fn route(dst: &str, gw: Option<&str>, table: u32) -> Route {
        Route {
            destination: dst.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            device: gw.map(|_| "eth0".parse().unwrap()),
            source: None,
            table,
            metric: 0,
        }
    }

    fn rule(priority: u32, to: Option<&str>, action: RuleAction) -> RouteRule {
        RouteRule {
            priority,
            ipv6: false,
            from: None,
            to: to.map(|t| t.parse().unwrap()),
            iif: None,
            oif: None,
            fwmark: None,
            invert: false,
            action,
        }
    }

    fn defaults() -> Vec<RouteRule> {
        vec![
            rule(0, None, RuleAction::Lookup(255)),
            rule(32766, None, RuleAction::Lookup(254)),
            rule(32767, None, RuleAction::Lookup(253)),
        ]
    }

    fn report(routes: Vec<Route>, rules: Vec<RouteRule>) -> InspectionReport {
        InspectionReport {
            source: "node/node-1".parse().unwrap(),
            at: UnixMillis::new(1).unwrap(),
            links: vec![],
            routes,
            rules,
            neighbours: vec![],
            nat_services: vec![],
            sysctls: vec![],
            resolv_conf: None,
            proxy_mode: None,
            errors: vec![],
            filter_drops: vec![],
            nat_rules: vec![],
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn main_routes() -> Vec<Route> {
        vec![route("0.0.0.0/0", Some("172.29.0.1"), 254), route("10.244.3.0/24", Some("172.29.0.13"), 254)]
    }

    #[test]
    fn without_rules_the_main_table_decides() {
        let r = report(main_routes(), vec![]);
        assert!(
            matches!(decide(&r, ip("10.244.3.7"), None), Decision::Routed(x) if x.gateway == Some(ip("172.29.0.13")))
        );
        let mut with_blackhole = main_routes();
        with_blackhole.push(route("10.244.3.0/25", None, 254));
        let r = report(with_blackhole, vec![]);
        assert!(matches!(decide(&r, ip("10.244.3.7"), None), Decision::Blackhole(_)));
        assert!(matches!(decide(&r, ip("10.244.3.200"), None), Decision::Routed(_)), "outside the /25");
    }

    #[test]
    fn a_prohibit_rule_before_main_drops_what_it_selects_only() {
        let mut rules = defaults();
        rules.push(rule(100, Some("10.244.3.0/24"), RuleAction::Prohibit));
        let r = report(main_routes(), rules);
        assert!(matches!(decide(&r, ip("10.244.3.7"), None), Decision::Rule(x) if x.priority == 100));
        assert!(matches!(decide(&r, ip("10.244.2.7"), None), Decision::Routed(_)));
        assert_eq!(table_for(&r, "10.244.3.0/24".parse().unwrap(), None).unwrap_err().priority, 100);
        assert_eq!(table_for(&r, "10.244.2.0/24".parse().unwrap(), None), Ok(MAIN_TABLE));
    }

    #[test]
    fn a_rule_after_main_is_never_reached_when_main_routes_the_packet() {
        let mut rules = defaults();
        rules.push(rule(40000, Some("10.244.3.0/24"), RuleAction::Blackhole));
        let r = report(main_routes(), rules);
        assert!(matches!(decide(&r, ip("10.244.3.7"), None), Decision::Routed(_)));
        assert_eq!(table_for(&r, "10.244.3.0/24".parse().unwrap(), None), Ok(MAIN_TABLE));
    }

    #[test]
    fn a_lookup_in_another_table_wins_when_it_has_a_route_and_falls_through_when_not() {
        let mut rules = defaults();
        rules.push(rule(100, Some("10.244.0.0/16"), RuleAction::Lookup(1000)));
        let mut routes = main_routes();
        routes.push(route("10.244.3.0/24", None, 1000));
        let r = report(routes, rules);
        assert!(matches!(decide(&r, ip("10.244.3.7"), None), Decision::Blackhole(x) if x.table == 1000));
        assert!(
            matches!(decide(&r, ip("10.244.2.7"), None), Decision::Routed(x) if x.table == 254),
            "table 1000 has nothing for it"
        );
        assert_eq!(table_for(&r, "10.244.3.0/24".parse().unwrap(), None), Ok(1000));
    }

    #[test]
    fn rules_on_interfaces_marks_or_unknown_sources_convict_nothing() {
        let mut rules = defaults();
        let mut on_mark = rule(100, Some("10.244.3.0/24"), RuleAction::Prohibit);
        on_mark.fwmark = Some((0x4000, 0x4000));
        let mut from_pods = rule(101, Some("10.244.3.0/24"), RuleAction::Prohibit);
        from_pods.from = Some("10.244.1.0/24".parse().unwrap());
        rules.extend([on_mark, from_pods]);
        let r = report(main_routes(), rules);
        assert!(matches!(decide(&r, ip("10.244.3.7"), None), Decision::Routed(_)));
        assert!(
            matches!(decide(&r, ip("10.244.3.7"), Some(ip("10.244.1.5"))), Decision::Rule(x) if x.priority == 101),
            "a known source inside `from` is selected"
        );
    }

    #[test]
    fn an_inverted_rule_selects_what_its_selectors_do_not() {
        let mut rules = defaults();
        let mut not_local = rule(100, Some("10.244.1.0/24"), RuleAction::Unreachable);
        not_local.invert = true;
        rules.push(not_local);
        let r = report(main_routes(), rules);
        assert!(matches!(decide(&r, ip("10.244.3.7"), None), Decision::Rule(_)));
        assert!(matches!(decide(&r, ip("10.244.1.7"), None), Decision::NoRoute | Decision::Routed(_)));
    }

    #[test]
    fn an_ipv4_rule_never_selects_an_ipv6_packet() {
        let mut rules = defaults();
        rules.push(rule(100, None, RuleAction::Prohibit));
        let mut routes = main_routes();
        routes.push(Route {
            destination: "::/0".parse().unwrap(),
            gateway: Some(ip("fd00::1")),
            ..route("0.0.0.0/0", Some("172.29.0.1"), 254)
        });
        let r = report(routes, rules);
        assert!(matches!(decide(&r, ip("10.244.3.7"), None), Decision::Rule(_)));
        assert!(
            matches!(decide(&r, ip("fd00:10:244:3::7"), None), Decision::Routed(_)),
            "no IPv6 rule was read: the main table decides"
        );
    }
}
