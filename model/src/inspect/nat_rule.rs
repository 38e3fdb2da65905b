//! NAT rules outside kube-proxy's chains, read back: rules a person, a CNI plugin or a host
//! tool wrote into the `nat` table (or an nftables chain of type `nat`) — which packets a rule
//! meets (hook, protocol, addresses with negation, destination ports, interfaces), what it
//! rewrites them to, and the rule as written.
//!
//! kube-proxy's own chains (`KUBE-*`, nftables table `kube-proxy`) are not here: they are read
//! as Service frontends ([`super::NatService`]).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::filter::{FilterProtocol, PortRange};
use crate::Port;
use crate::limits::MAX_LINE_BYTES;
use crate::text::Text;

/// Where in a namespace a NAT rule meets packets: before routing (`PREROUTING`, what arrives),
/// the namespace's own packets (`OUTPUT`), what it delivers to itself (`INPUT`) and what leaves
/// (`POSTROUTING`). NAT rules meet the first packet of a connection only: the rest, and the
/// replies, follow conntrack's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatHook {
    Prerouting,
    Input,
    Output,
    Postrouting,
}

impl NatHook {
    pub const ALL: [NatHook; 4] =
        [NatHook::Prerouting, NatHook::Input, NatHook::Output, NatHook::Postrouting];

    /// The wire and JSON name: `prerouting`, `input`, `output`, `postrouting`.
    pub const fn as_str(self) -> &'static str {
        match self {
            NatHook::Prerouting => "prerouting",
            NatHook::Input => "input",
            NatHook::Output => "output",
            NatHook::Postrouting => "postrouting",
        }
    }

    /// The hooks before routing, where a destination is rewritten (DNAT, REDIRECT); the others
    /// rewrite sources.
    pub const fn before_routing(self) -> bool {
        matches!(self, NatHook::Prerouting | NatHook::Output)
    }
}

impl fmt::Display for NatHook {
    /// As iptables names the built-in chain: `PREROUTING`, …
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NatHook::Prerouting => "PREROUTING",
            NatHook::Input => "INPUT",
            NatHook::Output => "OUTPUT",
            NatHook::Postrouting => "POSTROUTING",
        })
    }
}

/// An address condition: a prefix, or everything outside it (`! -d 10.96.0.0/12`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressMatch {
    pub net: IpNet,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub negated: bool,
}

impl AddressMatch {
    pub fn matches(&self, ip: IpAddr) -> bool {
        // An address of the other family is in no prefix of this one; negated, it matches.
        self.net.contains(&ip) != self.negated
    }
}

impl fmt::Display for AddressMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated { write!(f, "! {}", self.net) } else { write!(f, "{}", self.net) }
    }
}

/// What a NAT rule does to a packet it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NatAction {
    /// `DNAT --to-destination`: the destination becomes `address` (None: kept, a port-only
    /// DNAT) and `port` (None: kept).
    Dnat {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<IpAddr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<Port>,
    },
    /// `REDIRECT`: to the namespace itself (the address of the interface the packet came in
    /// by, loopback for its own packets), at `port` (None: kept).
    Redirect {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<Port>,
    },
    /// `SNAT --to-source`: the source becomes `address`.
    Snat { address: IpAddr },
    /// `MASQUERADE`: the source becomes the address of the interface the packet leaves by, one
    /// the namespace holds (replies find their way back).
    Masquerade,
    /// `NETMAP --to`: the prefix the rule matches is mapped one to one onto `to` (the
    /// destination before routing, the source after).
    Netmap { to: IpNet },
    /// `ACCEPT` (or `RETURN` from the built-in chain): the packet leaves the hook's NAT
    /// unchanged, and no later rule of the hook meets it.
    Keep,
}

impl NatAction {
    /// Whether the rule rewrites the destination (rather than the source or nothing).
    pub fn rewrites_destination(&self, hook: NatHook) -> bool {
        match self {
            NatAction::Dnat { .. } | NatAction::Redirect { .. } => true,
            NatAction::Netmap { .. } => hook.before_routing(),
            NatAction::Snat { .. } | NatAction::Masquerade | NatAction::Keep => false,
        }
    }
}

impl fmt::Display for NatAction {
    /// Where the rule sends what it meets, in words: `to 10.244.1.99:2379`, `to the node
    /// itself, port 3128`, `from 172.29.0.99`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatAction::Dnat { address: Some(IpAddr::V6(ip)), port: Some(p) } => write!(f, "to [{ip}]:{p}"),
            NatAction::Dnat { address: Some(ip), port: Some(p) } => write!(f, "to {ip}:{p}"),
            NatAction::Dnat { address: Some(ip), port: None } => write!(f, "to {ip}"),
            NatAction::Dnat { address: None, port: Some(p) } => write!(f, "to port {p}"),
            NatAction::Dnat { address: None, port: None } => write!(f, "where it was going"),
            NatAction::Redirect { port: Some(p) } => write!(f, "to itself, port {p}"),
            NatAction::Redirect { port: None } => write!(f, "to itself"),
            NatAction::Snat { address } => write!(f, "from {address}"),
            NatAction::Masquerade => write!(f, "from its own address"),
            NatAction::Netmap { to } => write!(f, "into {to}"),
            NatAction::Keep => write!(f, "unchanged"),
        }
    }
}

/// One NAT rule outside kube-proxy's chains, with every condition on its way from the hook
/// (the conditions of the jumps that lead to it included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatRule {
    pub hook: NatHook,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<FilterProtocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<AddressMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<AddressMatch>,
    /// An interface name as iptables writes it (`+` at the end matches any suffix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_interface: Option<Text<64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_interface: Option<Text<64>>,
    /// Empty: every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ports: Vec<PortRange>,
    pub action: NatAction,
    /// Some condition on its way is one the reader does not evaluate (a mark, an address
    /// type, a set, a negated port, a range of targets): it may or may not meet a packet the
    /// other conditions match. Never a cause; a path it may meet is unknown, not explained.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub opaque: bool,
    /// It comes after the jump into kube-proxy's chains: Service traffic kube-proxy translates
    /// leaves the hook there and never meets it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_kube_proxy: bool,
    /// The rule as written: iptables' `-A CHAIN …` line as `iptables -t nat -S` prints it, or
    /// `nft <family> <table> <chain> (<hook>): … # handle N` for an nftables rule.
    pub rule: Text<MAX_LINE_BYTES>,
}

impl NatRule {
    /// How an nftables rule's text starts (as [`super::FilterDrop::NFT_RULE_PREFIX`]).
    pub const NFT_RULE_PREFIX: &'static str = "nft ";

    pub fn from_nftables(&self) -> bool {
        self.rule.as_str().starts_with(Self::NFT_RULE_PREFIX)
    }

    /// The iptables chain the rule is in (`-A <chain> …`); None for nftables rules.
    pub fn iptables_chain(&self) -> Option<&str> {
        let rest = self.rule.as_str().strip_prefix("-A ")?;
        rest.split_whitespace().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_matches_with_negation_and_families() {
        let m = |s: &str, negated| AddressMatch { net: s.parse().unwrap(), negated };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(m("10.244.1.3/32", false).matches(ip("10.244.1.3")));
        assert!(!m("10.244.1.3/32", false).matches(ip("10.244.1.4")));
        assert!(m("10.96.0.0/12", true).matches(ip("10.244.1.3")));
        assert!(!m("10.96.0.0/12", true).matches(ip("10.96.0.20")));
        assert!(!m("10.0.0.0/8", false).matches(ip("fd00::1")));
        assert!(m("10.0.0.0/8", true).matches(ip("fd00::1")));
        assert_eq!(m("10.96.0.0/12", true).to_string(), "! 10.96.0.0/12");
    }

    #[test]
    fn actions_say_where_traffic_goes() {
        let port = |p| Some(Port::new(p).unwrap());
        let cases = [
            (
                NatAction::Dnat { address: Some("10.244.1.99".parse().unwrap()), port: port(2379) },
                "to 10.244.1.99:2379",
            ),
            (
                NatAction::Dnat { address: Some("fd00::9".parse().unwrap()), port: port(80) },
                "to [fd00::9]:80",
            ),
            (NatAction::Dnat { address: None, port: port(8080) }, "to port 8080"),
            (NatAction::Redirect { port: port(3128) }, "to itself, port 3128"),
            (NatAction::Snat { address: "172.29.0.99".parse().unwrap() }, "from 172.29.0.99"),
            (NatAction::Netmap { to: "10.244.3.0/24".parse().unwrap() }, "into 10.244.3.0/24"),
        ];
        for (action, words) in cases {
            assert_eq!(action.to_string(), words);
        }
        assert!(
            NatAction::Netmap { to: "10.0.0.0/8".parse().unwrap() }.rewrites_destination(NatHook::Prerouting)
        );
        assert!(
            !NatAction::Netmap { to: "10.0.0.0/8".parse().unwrap() }
                .rewrites_destination(NatHook::Postrouting)
        );
        assert!(!NatAction::Masquerade.rewrites_destination(NatHook::Postrouting));
    }

    #[test]
    fn the_chain_is_read_from_the_rule() {
        let rule = |s: &str| NatRule {
            hook: NatHook::Prerouting,
            protocol: None,
            source: None,
            destination: None,
            in_interface: None,
            out_interface: None,
            destination_ports: vec![],
            action: NatAction::Keep,
            opaque: false,
            after_kube_proxy: false,
            rule: Text::new(s.to_owned()).unwrap(),
        };
        assert_eq!(
            rule("-A DIVERT -p udp -j DNAT --to-destination 10.0.0.1").iptables_chain(),
            Some("DIVERT")
        );
        let nft = rule("nft ip nat pre (prerouting): dnat to 10.0.0.1 # handle 4");
        assert!(nft.from_nftables() && nft.iptables_chain().is_none());
    }
}
