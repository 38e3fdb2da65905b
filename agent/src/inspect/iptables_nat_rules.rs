//! The `nat` table's rules outside kube-proxy's chains, read back from `iptables-save` (or
//! `ip6tables-save`) text: every DNAT, REDIRECT, SNAT, MASQUERADE and NETMAP rule reached from
//! `PREROUTING`, `INPUT`, `OUTPUT` and `POSTROUTING` through the chains they jump to, and the
//! ACCEPTs that end a hook's NAT early — in the order the hook meets them, each with every
//! condition on its way. Pure: text in, values out; nothing here panics on any input.
//!
//! kube-proxy's chains (`KUBE-*`) are its NAT reader's ([`super::iptables_nat`]): a jump into
//! one is not followed, and the rules after it in its hook are marked as such (the Service
//! traffic kube-proxy translates leaves the hook there). Conditions are read as far as they can
//! be evaluated — protocol, source and destination with `!`, destination ports, interfaces,
//! comments, a connection state that takes new connections — and a rule with any other
//! condition on its way (a mark, an address type, a set, a negated port) is reported *opaque*:
//! it may or may not meet a packet, and is never taken for a cause. Rules after a conditional
//! `RETURN` or goto in a user chain are opaque for the same reason.

use std::collections::HashMap;

use netdiag_model::Port;
use netdiag_model::inspect::{AddressMatch, FilterProtocol, NatAction, NatHook, NatRule, PortRange};
use netdiag_model::limits::{MAX_LINE_BYTES, MAX_NAT_RULES};
use netdiag_model::text::Text;

use super::iptables_filter::{ports, prefix};
use super::iptables_nat::{Word, split_words};

/// How deep jumps between user chains are followed.
const MAX_DEPTH: usize = 8;

/// Every NAT rule of `text`'s `nat` table outside kube-proxy's chains, hook by hook
/// (`PREROUTING`, `INPUT`, `OUTPUT`, `POSTROUTING`), in the order each hook meets them.
pub fn parse(text: &str) -> Vec<NatRule> {
    let chains = nat_chains(text);
    let mut out = Vec::new();
    for (chain, hook) in [
        ("PREROUTING", NatHook::Prerouting),
        ("INPUT", NatHook::Input),
        ("OUTPUT", NatHook::Output),
        ("POSTROUTING", NatHook::Postrouting),
    ] {
        let mut walk = Walk { chains: &chains, hook, out: &mut out, path: vec![chain] };
        walk.chain(chain, &NatConditions::default(), State::default());
    }
    out.truncate(MAX_NAT_RULES);
    out
}

/// Each chain of the `nat` table: its rules as written (`-A …`) and split into words.
fn nat_chains(text: &str) -> HashMap<String, Vec<(String, Vec<Word>)>> {
    let mut chains: HashMap<String, Vec<(String, Vec<Word>)>> = HashMap::new();
    let mut in_nat = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(table) = line.strip_prefix('*') {
            in_nat = table.trim() == "nat";
            continue;
        }
        if !in_nat {
            continue;
        }
        let mut words = split_words(line);
        if words.len() < 2 || words[0].quoted || !matches!(words[0].text.as_str(), "-A" | "--append") {
            continue;
        }
        let rest = words.split_off(2);
        chains.entry(words[1].text.clone()).or_default().push((line.to_owned(), rest));
    }
    chains
}

/// What the walk carries from the rules before: whether kube-proxy's chains came first, and
/// whether an earlier rule may have taken some packets elsewhere (a conditional RETURN or goto).
#[derive(Debug, Clone, Copy, Default)]
struct State {
    after_kube_proxy: bool,
    opaque: bool,
}

struct Walk<'t, 'o> {
    chains: &'t HashMap<String, Vec<(String, Vec<Word>)>>,
    hook: NatHook,
    out: &'o mut Vec<NatRule>,
    /// The chains from the hook to here.
    path: Vec<&'t str>,
}

impl<'t> Walk<'t, '_> {
    /// Walks `chain` with `inherited` conditions; returns the state after it (what a caller's
    /// later rules inherit).
    fn chain(&mut self, chain: &str, inherited: &NatConditions, mut state: State) -> State {
        let Some(rules) = self.chains.get(chain) else { return state };
        let builtin = self.path.len() == 1;
        for (line, words) in rules {
            if self.out.len() >= MAX_NAT_RULES {
                break;
            }
            let rule = Rule::read(words);
            let conditions = inherited.and(&rule.conditions);
            let opaque = state.opaque || conditions.opaque;
            let after = state.after_kube_proxy;
            let action = match rule.target {
                Target::Nat(action) => Some((action, opaque || rule.opaque_target)),
                Target::Accept => Some((NatAction::Keep, opaque)),
                Target::Return if builtin => Some((NatAction::Keep, opaque)),
                Target::Return | Target::Goto(_) if rule.conditions.unconditional() => {
                    if let Target::Goto(next) = rule.target {
                        self.enter(next, &conditions, state);
                    }
                    // Nothing after it in this chain is met.
                    return state;
                }
                Target::Return => {
                    state.opaque = true;
                    None
                }
                Target::Goto(next) => {
                    self.enter(next, &conditions, state);
                    state.opaque = true;
                    None
                }
                Target::Jump(next) => {
                    let then = self.enter(next, &conditions, state);
                    state.after_kube_proxy |= then.after_kube_proxy;
                    None
                }
                Target::Other => None,
            };
            if let Some((action, opaque)) = action {
                self.out.push(conditions.into_rule(self.hook, action, opaque, after, line));
            }
        }
        state
    }

    /// Follows a jump into a user chain (kube-proxy's are its reader's); a target that is no
    /// chain of the table (MARK, LOG, …) lets the packet go on.
    fn enter(&mut self, next: &'t str, conditions: &NatConditions, state: State) -> State {
        if next.starts_with("KUBE-") {
            return State { after_kube_proxy: true, ..state };
        }
        let Some((name, _)) = self.chains.get_key_value(next) else { return state };
        if self.path.len() >= MAX_DEPTH || self.path.contains(&name.as_str()) {
            return state;
        }
        self.path.push(name.as_str());
        let after = self.chain(name, conditions, state);
        self.path.pop();
        State { after_kube_proxy: after.after_kube_proxy, opaque: state.opaque }
    }
}

/// What a NAT rule matches, gathered on the way from the hook (shared with the nftables reader).
#[derive(Debug, Clone, Default)]
pub(super) struct NatConditions {
    pub(super) protocol: Option<FilterProtocol>,
    pub(super) source: Option<AddressMatch>,
    pub(super) destination: Option<AddressMatch>,
    /// In iptables' syntax: a trailing `+` matches any suffix.
    pub(super) in_interface: Option<String>,
    pub(super) out_interface: Option<String>,
    pub(super) ports: Vec<PortRange>,
    /// A condition that is not evaluated (a mark, an address type, a set, a negated port, two
    /// conditions on one field).
    pub(super) opaque: bool,
}

impl NatConditions {
    /// Both sets at once; two different conditions on one field are opaque (not combined).
    pub(super) fn and(&self, other: &NatConditions) -> NatConditions {
        let mut opaque = self.opaque || other.opaque;
        fn one<T: Clone + PartialEq>(a: &Option<T>, b: &Option<T>, opaque: &mut bool) -> Option<T> {
            match (a, b) {
                (Some(x), Some(y)) if x != y => {
                    *opaque = true;
                    Some(x.clone())
                }
                (Some(x), _) | (None, Some(x)) => Some(x.clone()),
                (None, None) => None,
            }
        }
        let ports = match (self.ports.is_empty(), other.ports.is_empty()) {
            (true, _) => other.ports.clone(),
            (false, true) => self.ports.clone(),
            (false, false) => {
                opaque |= self.ports != other.ports;
                self.ports.clone()
            }
        };
        NatConditions {
            protocol: one(&self.protocol, &other.protocol, &mut opaque),
            source: one(&self.source, &other.source, &mut opaque),
            destination: one(&self.destination, &other.destination, &mut opaque),
            in_interface: one(&self.in_interface, &other.in_interface, &mut opaque),
            out_interface: one(&self.out_interface, &other.out_interface, &mut opaque),
            ports,
            opaque,
        }
    }

    /// No condition at all: every packet.
    fn unconditional(&self) -> bool {
        self.protocol.is_none()
            && self.source.is_none()
            && self.destination.is_none()
            && self.in_interface.is_none()
            && self.out_interface.is_none()
            && self.ports.is_empty()
            && !self.opaque
    }

    pub(super) fn into_rule(
        self,
        hook: NatHook,
        action: NatAction,
        opaque: bool,
        after_kube_proxy: bool,
        text: &str,
    ) -> NatRule {
        let iface = |s: Option<String>| s.map(|s| Text::<64>::lossy(&s));
        NatRule {
            hook,
            protocol: self.protocol,
            source: self.source,
            destination: self.destination,
            in_interface: iface(self.in_interface),
            out_interface: iface(self.out_interface),
            destination_ports: self.ports,
            action,
            opaque: opaque || self.opaque,
            after_kube_proxy,
            rule: Text::<MAX_LINE_BYTES>::lossy(text),
        }
    }
}

/// Where a rule sends what it matches (shared with the nftables reader, whose verdicts are
/// the same five).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target<'w> {
    Nat(NatAction),
    Accept,
    Return,
    Jump(&'w str),
    Goto(&'w str),
    /// No target.
    Other,
}

/// One rule: its conditions and target.
#[derive(Debug)]
struct Rule<'w> {
    conditions: NatConditions,
    target: Target<'w>,
    /// The target's arguments are not read (a range of addresses, several targets).
    opaque_target: bool,
}

impl<'w> Rule<'w> {
    fn read(words: &'w [Word]) -> Rule<'w> {
        let mut c = NatConditions::default();
        let mut jump: Option<(&str, bool)> = None;
        let mut to_destination: Vec<&str> = Vec::new();
        let mut to_source: Vec<&str> = Vec::new();
        let mut to_ports: Option<&str> = None;
        let mut to_net: Option<&str> = None;
        let mut negated = false;
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            i += 1;
            if !word.quoted && word.text == "!" {
                negated = true;
                continue;
            }
            if word.quoted || !word.text.starts_with('-') {
                // A value the option before did not take.
                c.opaque = true;
                continue;
            }
            let option = word.text.as_str();
            let value = words.get(i).filter(|w| w.quoted || !(w.text.starts_with('-') || w.text == "!"));
            if value.is_some() {
                i += 1;
            }
            let value = value.map(|w| w.text.as_str());
            let was_negated = std::mem::take(&mut negated);
            match (option, value) {
                ("-s" | "--source" | "--src", Some(a)) => match prefix(a) {
                    Some(net) => c.source = Some(AddressMatch { net, negated: was_negated }),
                    None => c.opaque = true,
                },
                ("-d" | "--destination" | "--dst", Some(a)) => match prefix(a) {
                    Some(net) => c.destination = Some(AddressMatch { net, negated: was_negated }),
                    None => c.opaque = true,
                },
                _ if was_negated => c.opaque = true,
                ("-m" | "--match", Some(_)) | ("--comment", _) => {}
                ("-p" | "--protocol", Some(p)) => match protocol(p) {
                    Some(Some(p)) => c.protocol = Some(p),
                    Some(None) => {}
                    None => c.opaque = true,
                },
                ("-i" | "--in-interface", Some(n)) => c.in_interface = Some(n.to_owned()),
                ("-o" | "--out-interface", Some(n)) => c.out_interface = Some(n.to_owned()),
                ("--dport" | "--destination-port" | "--dports" | "--destination-ports", Some(p)) => {
                    match ports(p) {
                        Some(p) => c.ports = p,
                        None => c.opaque = true,
                    }
                }
                // NAT meets the first packet of a connection only: a state match that takes new
                // connections takes all it meets.
                ("--ctstate" | "--state", Some(states)) if states.split(',').any(|s| s == "NEW") => {}
                ("--icmp-type", Some("echo-request" | "8")) => {}
                ("-j" | "--jump", Some(t)) => jump = Some((t, false)),
                ("-g" | "--goto", Some(t)) => jump = Some((t, true)),
                ("--to-destination", Some(v)) => to_destination.push(v),
                ("--to-source", Some(v)) => to_source.push(v),
                ("--to-ports", Some(v)) => to_ports = Some(v),
                ("--to", Some(v)) => to_net = Some(v),
                ("--random" | "--random-fully" | "--persistent", None) => {}
                _ => c.opaque = true,
            }
        }
        let mut opaque_target = false;
        let mut nat = |action: Option<NatAction>| match action {
            Some(a) => Target::Nat(a),
            None => {
                opaque_target = true;
                Target::Nat(NatAction::Keep)
            }
        };
        let target = match jump {
            None => Target::Other,
            Some((t, true)) => Target::Goto(t),
            Some(("DNAT", _)) => match to_destination.as_slice() {
                [one] => nat(destination(one)),
                _ => nat(None),
            },
            Some(("SNAT", _)) => match to_source.as_slice() {
                [one] => nat(source(one)),
                _ => nat(None),
            },
            Some(("REDIRECT", _)) => match to_ports.map(single_port) {
                None => Target::Nat(NatAction::Redirect { port: None }),
                Some(Some(port)) => Target::Nat(NatAction::Redirect { port: Some(port) }),
                Some(None) => nat(None),
            },
            Some(("MASQUERADE", _)) => Target::Nat(NatAction::Masquerade),
            Some(("NETMAP", _)) => nat(to_net.and_then(prefix).map(|to| NatAction::Netmap { to })),
            Some(("ACCEPT", _)) => Target::Accept,
            Some(("RETURN", _)) => Target::Return,
            // A chain of the table, or a target that lets the packet go on (MARK, LOG, …).
            Some((t, false)) => Target::Jump(t),
        };
        // A target whose arguments are not read stands for an unknown rewrite: it keeps its
        // place in the hook's order, opaque.
        Rule { conditions: c, target, opaque_target }
    }
}

/// `-p`: Some(None) for every protocol, None when not one the model names.
fn protocol(p: &str) -> Option<Option<FilterProtocol>> {
    Some(Some(match p {
        "tcp" | "6" => FilterProtocol::Tcp,
        "udp" | "17" => FilterProtocol::Udp,
        "sctp" | "132" => FilterProtocol::Sctp,
        "icmp" | "1" | "icmpv6" | "ipv6-icmp" | "58" => FilterProtocol::Icmp,
        "all" | "0" => return Some(None),
        _ => return None,
    }))
}

/// `8080`; a range (`8080-8090`) is not one port.
fn single_port(s: &str) -> Option<Port> {
    s.parse().ok()
}

/// `--to-destination` as `ip`, `ip:port`, `:port`, `[v6]`, `[v6]:port`; ranges are not read.
fn destination(s: &str) -> Option<NatAction> {
    let (address, port) = address_and_port(s)?;
    if address.is_none() && port.is_none() {
        return None;
    }
    Some(NatAction::Dnat { address, port })
}

/// `--to-source` as `ip` or `ip:port` (the port is not what breaks a path); ranges are not read.
fn source(s: &str) -> Option<NatAction> {
    let (address, _) = address_and_port(s)?;
    Some(NatAction::Snat { address: address? })
}

fn address_and_port(s: &str) -> Option<(Option<std::net::IpAddr>, Option<Port>)> {
    if s.contains('-') {
        return None;
    }
    let port = |p: &str| p.parse::<Port>().ok();
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip = ip.parse().ok()?;
        return match after.strip_prefix(':') {
            Some(p) => Some((Some(ip), Some(port(p)?))),
            None if after.is_empty() => Some((Some(ip), None)),
            None => None,
        };
    }
    match s.matches(':').count() {
        0 => Some((Some(s.parse().ok()?), None)),
        1 => {
            let (ip, p) = s.split_once(':')?;
            let ip = if ip.is_empty() { None } else { Some(ip.parse().ok()?) };
            Some((ip, Some(port(p)?)))
        }
        // A bare IPv6 address.
        _ => Some((Some(s.parse().ok()?), None)),
    }
}

#[cfg(test)]
mod tests;
