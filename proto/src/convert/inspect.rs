//! Inspection reports: links, routes, neighbours, NAT rules, sysctls and resolv.conf.

use std::num::NonZeroU32;

use netdiag_model::inspect::{
    AddressMatch, ChainName, FilterDrop, FilterHook, FilterProtocol, InterfaceName, Link, LinkKind,
    LinkLayerAddress, NatAction, NatHook, NatRule, NatService, NatServiceName, NatTarget, Neighbour,
    NeighbourState, PortRange, ResolvConf, Route, RouteRule, RuleAction, Sysctl, SysctlKey,
};
use netdiag_model::limits::{
    MAX_FILTER_DROPS, MAX_FILTER_PORT_RANGES, MAX_INSPECTION_ERRORS, MAX_LINK_ADDRESSES, MAX_LINKS,
    MAX_NAMESERVERS, MAX_NAT_RULES, MAX_NAT_SERVICES, MAX_NAT_TARGETS, MAX_NEIGHBOURS, MAX_ROUTE_RULES,
    MAX_ROUTES, MAX_SEARCH_DOMAINS, MAX_SYSCTLS, OutOfRange,
};
use netdiag_model::{DnsName, InspectionReport, Text};

use super::enums;
use super::error::{At, ConvertError, ErrorKind};
use super::field::{
    Result, ip, list, net, opt_ip, opt_port, opt_port_to_wire, opt_str, opt_to_wire, port, unix_ms,
};
use super::target::req_source;
use crate::v1;

fn to_strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

impl TryFrom<v1::Link> for Link {
    type Error = ConvertError;
    fn try_from(l: v1::Link) -> Result<Self> {
        Ok(Link {
            name: InterfaceName::new(l.name).at("name")?,
            index: NonZeroU32::new(l.index)
                .ok_or_else(|| OutOfRange::new("interface index", 0, "indexes start at 1"))
                .at("index")?,
            up: l.up,
            mtu: l.mtu,
            addresses: list(l.addresses, MAX_LINK_ADDRESSES, |a| net(&a)).at("addresses")?,
            kind: opt_str(l.kind, LinkKind::new).at("kind")?,
            lladdr: opt_str(l.lladdr, LinkLayerAddress::new).at("lladdr")?,
        })
    }
}

impl From<Link> for v1::Link {
    fn from(l: Link) -> Self {
        v1::Link {
            name: l.name.into(),
            index: l.index.get(),
            up: l.up,
            mtu: l.mtu,
            addresses: to_strings(&l.addresses),
            kind: opt_to_wire(l.kind),
            lladdr: opt_to_wire(l.lladdr),
        }
    }
}

impl TryFrom<v1::Route> for Route {
    type Error = ConvertError;
    fn try_from(r: v1::Route) -> Result<Self> {
        Ok(Route {
            destination: net(&r.destination).at("destination")?,
            gateway: opt_ip(&r.gateway).at("gateway")?,
            device: opt_str(r.device, InterfaceName::new).at("device")?,
            source: opt_ip(&r.source).at("source")?,
            table: r.table,
            metric: r.metric,
        })
    }
}

impl From<Route> for v1::Route {
    fn from(r: Route) -> Self {
        v1::Route {
            destination: r.destination.to_string(),
            gateway: r.gateway.map(|g| g.to_string()).unwrap_or_default(),
            device: opt_to_wire(r.device),
            source: r.source.map(|s| s.to_string()).unwrap_or_default(),
            table: r.table,
            metric: r.metric,
        }
    }
}

impl TryFrom<v1::RouteRule> for RouteRule {
    type Error = ConvertError;
    fn try_from(r: v1::RouteRule) -> Result<Self> {
        let opt_net = |s: &str| if s.is_empty() { Ok(None) } else { net(s).map(Some) };
        let action = match v1::RuleAction::try_from(r.action) {
            Ok(v1::RuleAction::Lookup) => RuleAction::Lookup(r.table),
            Ok(v1::RuleAction::Blackhole) => RuleAction::Blackhole,
            Ok(v1::RuleAction::Unreachable) => RuleAction::Unreachable,
            Ok(v1::RuleAction::Prohibit) => RuleAction::Prohibit,
            Ok(v1::RuleAction::Other) => RuleAction::Other,
            Ok(v1::RuleAction::Unspecified) => {
                return Err(ConvertError::from(ErrorKind::Unspecified { what: "rule action" })).at("action");
            }
            Err(_) => {
                return Err(ConvertError::from(ErrorKind::UnknownEnum {
                    what: "rule action",
                    value: r.action,
                }))
                .at("action");
            }
        };
        Ok(RouteRule {
            priority: r.priority,
            ipv6: r.ipv6,
            from: opt_net(&r.from).at("from")?,
            to: opt_net(&r.to).at("to")?,
            iif: opt_str(r.iif, InterfaceName::new).at("iif")?,
            oif: opt_str(r.oif, InterfaceName::new).at("oif")?,
            fwmark: r.has_fwmark.then_some((r.fwmark, r.fwmask)),
            invert: r.invert,
            action,
        })
    }
}

impl From<RouteRule> for v1::RouteRule {
    fn from(r: RouteRule) -> Self {
        let (action, table) = match r.action {
            RuleAction::Lookup(t) => (v1::RuleAction::Lookup, t),
            RuleAction::Blackhole => (v1::RuleAction::Blackhole, 0),
            RuleAction::Unreachable => (v1::RuleAction::Unreachable, 0),
            RuleAction::Prohibit => (v1::RuleAction::Prohibit, 0),
            RuleAction::Other => (v1::RuleAction::Other, 0),
        };
        v1::RouteRule {
            priority: r.priority,
            ipv6: r.ipv6,
            from: r.from.map(|n| n.to_string()).unwrap_or_default(),
            to: r.to.map(|n| n.to_string()).unwrap_or_default(),
            iif: opt_to_wire(r.iif),
            oif: opt_to_wire(r.oif),
            has_fwmark: r.fwmark.is_some(),
            fwmark: r.fwmark.map_or(0, |(m, _)| m),
            fwmask: r.fwmark.map_or(0, |(_, m)| m),
            invert: r.invert,
            action: action as i32,
            table,
        }
    }
}

impl TryFrom<v1::Neighbour> for Neighbour {
    type Error = ConvertError;
    fn try_from(n: v1::Neighbour) -> Result<Self> {
        Ok(Neighbour {
            ip: ip(&n.ip).at("ip")?,
            device: InterfaceName::new(n.device).at("device")?,
            state: NeighbourState::new(n.state).at("state")?,
            lladdr: opt_str(n.lladdr, LinkLayerAddress::new).at("lladdr")?,
        })
    }
}

impl From<Neighbour> for v1::Neighbour {
    fn from(n: Neighbour) -> Self {
        v1::Neighbour {
            ip: n.ip.to_string(),
            device: n.device.into(),
            state: n.state.into(),
            lladdr: opt_to_wire(n.lladdr),
        }
    }
}

impl TryFrom<v1::NatTarget> for NatTarget {
    type Error = ConvertError;
    fn try_from(t: v1::NatTarget) -> Result<Self> {
        Ok(NatTarget {
            ip: ip(&t.ip).at("ip")?,
            port: port(t.port).at("port")?,
            chain: opt_str(t.chain, ChainName::new).at("chain")?,
        })
    }
}

impl From<NatTarget> for v1::NatTarget {
    fn from(t: NatTarget) -> Self {
        v1::NatTarget { ip: t.ip.to_string(), port: t.port.get().into(), chain: opt_to_wire(t.chain) }
    }
}

impl TryFrom<v1::NatService> for NatService {
    type Error = ConvertError;
    fn try_from(s: v1::NatService) -> Result<Self> {
        let vip = opt_ip(&s.vip).at("vip")?;
        if vip.is_none() && !s.node_port {
            return Err(ErrorKind::Missing).at("vip");
        }
        Ok(NatService {
            service: opt_str(s.service, |s| s.parse::<NatServiceName>()).at("service")?,
            vip,
            port: port(s.port).at("port")?,
            protocol: s.protocol.parse().at("protocol")?,
            targets: list(s.targets, MAX_NAT_TARGETS, NatTarget::try_from).at("targets")?,
            node_port: s.node_port,
        })
    }
}

impl From<NatService> for v1::NatService {
    fn from(s: NatService) -> Self {
        v1::NatService {
            service: s.service.map(|n| n.to_string()).unwrap_or_default(),
            vip: s.vip.map(|v| v.to_string()).unwrap_or_default(),
            port: s.port.get().into(),
            protocol: s.protocol.as_str().to_owned(),
            targets: s.targets.into_iter().map(Into::into).collect(),
            node_port: s.node_port,
        }
    }
}

impl TryFrom<v1::Sysctl> for Sysctl {
    type Error = ConvertError;
    fn try_from(s: v1::Sysctl) -> Result<Self> {
        Ok(Sysctl { key: SysctlKey::new(s.key).at("key")?, value: Text::new(s.value).at("value")? })
    }
}

impl From<Sysctl> for v1::Sysctl {
    fn from(s: Sysctl) -> Self {
        v1::Sysctl { key: s.key.into(), value: s.value.into() }
    }
}

fn byte(what: &'static str, n: u32) -> Result<u8> {
    u8::try_from(n).map_err(|_| OutOfRange::new(what, n, "0 to 255").into())
}

impl TryFrom<v1::ResolvConf> for ResolvConf {
    type Error = ConvertError;
    fn try_from(r: v1::ResolvConf) -> Result<Self> {
        Ok(ResolvConf {
            nameservers: list(r.nameservers, MAX_NAMESERVERS, |s| ip(&s)).at("nameservers")?,
            search: list(r.search, MAX_SEARCH_DOMAINS, |s| Ok(DnsName::new(s)?)).at("search")?,
            ndots: byte("ndots", r.ndots).at("ndots")?,
            timeout_secs: byte("timeout", r.timeout_s).at("timeout_s")?,
            attempts: byte("attempts", r.attempts).at("attempts")?,
        })
    }
}

impl From<ResolvConf> for v1::ResolvConf {
    fn from(r: ResolvConf) -> Self {
        v1::ResolvConf {
            nameservers: to_strings(&r.nameservers),
            search: r.search.into_iter().map(Into::into).collect(),
            ndots: r.ndots.into(),
            timeout_s: r.timeout_secs.into(),
            attempts: r.attempts.into(),
        }
    }
}

impl TryFrom<v1::InspectionReport> for InspectionReport {
    type Error = ConvertError;
    fn try_from(r: v1::InspectionReport) -> Result<Self> {
        Ok(InspectionReport {
            source: req_source(r.source).at("source")?,
            at: unix_ms(r.at_unix_ms).at("at_unix_ms")?,
            links: list(r.links, MAX_LINKS, Link::try_from).at("links")?,
            routes: list(r.routes, MAX_ROUTES, Route::try_from).at("routes")?,
            rules: list(r.rules, MAX_ROUTE_RULES, RouteRule::try_from).at("rules")?,
            neighbours: list(r.neighbours, MAX_NEIGHBOURS, Neighbour::try_from).at("neighbours")?,
            nat_services: list(r.nat_services, MAX_NAT_SERVICES, NatService::try_from).at("nat_services")?,
            sysctls: list(r.sysctls, MAX_SYSCTLS, Sysctl::try_from).at("sysctls")?,
            resolv_conf: r.resolv_conf.map(ResolvConf::try_from).transpose().at("resolv_conf")?,
            proxy_mode: enums::proxy_mode(r.proxy_mode).at("proxy_mode")?,
            errors: list(r.errors, MAX_INSPECTION_ERRORS, |e| Ok(Text::new(e)?)).at("errors")?,
            filter_drops: list(r.filter_drops, MAX_FILTER_DROPS, FilterDrop::try_from).at("filter_drops")?,
            nat_rules: list(r.nat_rules, MAX_NAT_RULES, NatRule::try_from).at("nat_rules")?,
        })
    }
}

impl From<InspectionReport> for v1::InspectionReport {
    fn from(r: InspectionReport) -> Self {
        v1::InspectionReport {
            source: Some(r.source.into()),
            at_unix_ms: r.at.get(),
            links: r.links.into_iter().map(Into::into).collect(),
            routes: r.routes.into_iter().map(Into::into).collect(),
            rules: r.rules.into_iter().map(Into::into).collect(),
            neighbours: r.neighbours.into_iter().map(Into::into).collect(),
            nat_services: r.nat_services.into_iter().map(Into::into).collect(),
            sysctls: r.sysctls.into_iter().map(Into::into).collect(),
            resolv_conf: r.resolv_conf.map(Into::into),
            proxy_mode: enums::proxy_mode_to_wire(r.proxy_mode),
            errors: r.errors.into_iter().map(Into::into).collect(),
            filter_drops: r.filter_drops.into_iter().map(Into::into).collect(),
            nat_rules: r.nat_rules.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<v1::FilterDrop> for FilterDrop {
    type Error = ConvertError;
    fn try_from(d: v1::FilterDrop) -> Result<Self> {
        let hook = match d.hook.as_str() {
            "input" => FilterHook::Input,
            "forward" => FilterHook::Forward,
            "output" => FilterHook::Output,
            _ => return Err(ErrorKind::Conflict("a hook is input, forward or output")).at("hook"),
        };
        let protocol = filter_protocol(&d.protocol).at("protocol")?;
        let ports = port_ranges(d.destination_ports).at("destination_ports")?;
        Ok(FilterDrop {
            hook,
            protocol,
            source: opt_str(d.source, |s| net(&s)).at("source")?,
            destination: opt_str(d.destination, |s| net(&s)).at("destination")?,
            in_interface: opt_str(d.in_interface, Text::new).at("in_interface")?,
            out_interface: opt_str(d.out_interface, Text::new).at("out_interface")?,
            destination_ports: ports,
            reject: d.reject,
            policy: d.policy,
            new_only: d.new_only,
            rule: Text::new(d.rule).at("rule")?,
        })
    }
}

impl From<FilterDrop> for v1::FilterDrop {
    fn from(d: FilterDrop) -> Self {
        let hook = match d.hook {
            FilterHook::Input => "input",
            FilterHook::Forward => "forward",
            FilterHook::Output => "output",
        };
        v1::FilterDrop {
            hook: hook.to_owned(),
            protocol: filter_protocol_to_wire(d.protocol).to_owned(),
            source: d.source.map(|n| n.to_string()).unwrap_or_default(),
            destination: d.destination.map(|n| n.to_string()).unwrap_or_default(),
            in_interface: opt_to_wire(d.in_interface),
            out_interface: opt_to_wire(d.out_interface),
            destination_ports: port_ranges_to_wire(d.destination_ports),
            reject: d.reject,
            policy: d.policy,
            new_only: d.new_only,
            rule: d.rule.into(),
        }
    }
}

fn filter_protocol(s: &str) -> Result<Option<FilterProtocol>> {
    Ok(match s {
        "" => None,
        "tcp" => Some(FilterProtocol::Tcp),
        "udp" => Some(FilterProtocol::Udp),
        "sctp" => Some(FilterProtocol::Sctp),
        "icmp" => Some(FilterProtocol::Icmp),
        _ => return Err(ErrorKind::Conflict("a protocol is tcp, udp, sctp, icmp or empty").into()),
    })
}

fn filter_protocol_to_wire(p: Option<FilterProtocol>) -> &'static str {
    match p {
        None => "",
        Some(FilterProtocol::Tcp) => "tcp",
        Some(FilterProtocol::Udp) => "udp",
        Some(FilterProtocol::Sctp) => "sctp",
        Some(FilterProtocol::Icmp) => "icmp",
    }
}

fn port_ranges(ranges: Vec<v1::PortRange>) -> Result<Vec<PortRange>> {
    list(ranges, MAX_FILTER_PORT_RANGES, |r| {
        let (first, last) = (port(r.first).at("first")?, port(r.last).at("last")?);
        if last < first {
            return Err(ErrorKind::Conflict("a port range ends before it starts")).at("last");
        }
        Ok(PortRange { first, last })
    })
}

fn port_ranges_to_wire(ranges: Vec<PortRange>) -> Vec<v1::PortRange> {
    ranges
        .into_iter()
        .map(|r| v1::PortRange { first: u32::from(r.first.get()), last: u32::from(r.last.get()) })
        .collect()
}

/// An address condition: the prefix (empty: none) and whether it is negated (only with one).
fn address_match(net_text: String, negated: bool) -> Result<Option<AddressMatch>> {
    match opt_str(net_text, |s| net(&s))? {
        Some(net) => Ok(Some(AddressMatch { net, negated })),
        None if negated => Err(ErrorKind::Conflict("only an address can be negated").into()),
        None => Ok(None),
    }
}

impl TryFrom<v1::NatRule> for NatRule {
    type Error = ConvertError;
    fn try_from(r: v1::NatRule) -> Result<Self> {
        let hook = NatHook::ALL
            .into_iter()
            .find(|h| h.as_str() == r.hook)
            .ok_or_else(|| {
                ConvertError::from(ErrorKind::Conflict("a hook is prerouting, input, output or postrouting"))
            })
            .at("hook")?;
        let to_port = opt_port(r.to_port).at("to_port")?;
        let port_unused = |what: &'static str| -> Result<()> {
            if to_port.is_some() {
                return Err(ErrorKind::Conflict(what)).at("to_port");
            }
            Ok(())
        };
        let address_unused = |what: &'static str| -> Result<()> {
            if !r.to_address.is_empty() {
                return Err(ErrorKind::Conflict(what)).at("to_address");
            }
            Ok(())
        };
        let action = match r.action.as_str() {
            "dnat" => {
                let address = opt_ip(&r.to_address).at("to_address")?;
                if address.is_none() && to_port.is_none() {
                    return Err(ErrorKind::Conflict("a dnat rewrites an address, a port or both"))
                        .at("to_address");
                }
                NatAction::Dnat { address, port: to_port }
            }
            "redirect" => {
                address_unused("a redirect goes to the namespace itself: no address")?;
                NatAction::Redirect { port: to_port }
            }
            "snat" => {
                port_unused("an snat is read for its address only")?;
                NatAction::Snat { address: ip(&r.to_address).at("to_address")? }
            }
            "netmap" => {
                port_unused("a netmap maps addresses only")?;
                NatAction::Netmap { to: net(&r.to_address).at("to_address")? }
            }
            "masquerade" | "keep" => {
                port_unused("only dnat and redirect name a port")?;
                address_unused("only dnat, snat and netmap name an address")?;
                if r.action == "keep" { NatAction::Keep } else { NatAction::Masquerade }
            }
            _ => {
                return Err(ErrorKind::Conflict(
                    "an action is dnat, redirect, snat, masquerade, netmap or keep",
                ))
                .at("action");
            }
        };
        Ok(NatRule {
            hook,
            protocol: filter_protocol(&r.protocol).at("protocol")?,
            source: address_match(r.source, r.source_negated).at("source")?,
            destination: address_match(r.destination, r.destination_negated).at("destination")?,
            in_interface: opt_str(r.in_interface, Text::new).at("in_interface")?,
            out_interface: opt_str(r.out_interface, Text::new).at("out_interface")?,
            destination_ports: port_ranges(r.destination_ports).at("destination_ports")?,
            action,
            opaque: r.opaque,
            after_kube_proxy: r.after_kube_proxy,
            rule: Text::new(r.rule).at("rule")?,
        })
    }
}

impl From<NatRule> for v1::NatRule {
    fn from(r: NatRule) -> Self {
        let (action, to_address, to_port) = match r.action {
            NatAction::Dnat { address, port } => {
                ("dnat", address.map(|a| a.to_string()).unwrap_or_default(), port)
            }
            NatAction::Redirect { port } => ("redirect", String::new(), port),
            NatAction::Snat { address } => ("snat", address.to_string(), None),
            NatAction::Masquerade => ("masquerade", String::new(), None),
            NatAction::Netmap { to } => ("netmap", to.to_string(), None),
            NatAction::Keep => ("keep", String::new(), None),
        };
        let (source, source_negated) =
            r.source.map_or((String::new(), false), |m| (m.net.to_string(), m.negated));
        let (destination, destination_negated) =
            r.destination.map_or((String::new(), false), |m| (m.net.to_string(), m.negated));
        v1::NatRule {
            hook: r.hook.as_str().to_owned(),
            protocol: filter_protocol_to_wire(r.protocol).to_owned(),
            source,
            source_negated,
            destination,
            destination_negated,
            in_interface: opt_to_wire(r.in_interface),
            out_interface: opt_to_wire(r.out_interface),
            destination_ports: port_ranges_to_wire(r.destination_ports),
            action: action.to_owned(),
            to_address,
            to_port: opt_port_to_wire(to_port),
            opaque: r.opaque,
            after_kube_proxy: r.after_kube_proxy,
            rule: r.rule.into(),
        }
    }
}
