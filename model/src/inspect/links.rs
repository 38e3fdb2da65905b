//! Interfaces, routes and neighbour entries of one network namespace.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::text::{TextError, check_token, excerpt, is_graphic_char, token_type};

fn check_interface_name(s: &str) -> Result<(), TextError> {
    const WHAT: &str = "interface name";
    // The kernel's dev_valid_name: under IFNAMSIZ (16) bytes, not `.` or `..`, no `/`, `:` or
    // whitespace.
    check_token(WHAT, s, 15, |c| c.is_ascii_graphic() && c != '/' && c != ':')?;
    if s == "." || s == ".." {
        return Err(TextError::BadChar { what: WHAT, value: s.to_owned(), ch: '.' });
    }
    Ok(())
}

token_type!(
    /// A network interface name (`eth0`, `veth1a2b3c`): 1 to 15 printable ASCII bytes without
    /// `/` or `:`, as the kernel allows.
    InterfaceName,
    check = check_interface_name
);

fn check_link_kind(s: &str) -> Result<(), TextError> {
    check_token("link kind", s, 32, is_graphic_char)
}

token_type!(
    /// The link's driver kind: `veth`, `bridge`, `vxlan`, …
    LinkKind,
    check = check_link_kind
);

fn check_neighbour_state(s: &str) -> Result<(), TextError> {
    check_token("neighbour state", s, 64, is_graphic_char)
}

token_type!(
    /// A neighbour entry's state as iproute2 prints it: `REACHABLE`, `STALE`, `FAILED`, …
    NeighbourState,
    check = check_neighbour_state
);

/// A link-layer address: 1 to 32 hex octets separated by `:` (a MAC is 6), kept in lowercase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LinkLayerAddress(String);

impl LinkLayerAddress {
    pub fn new(s: impl Into<String>) -> Result<Self, TextError> {
        const WHAT: &str = "link-layer address";
        let s: String = s.into();
        check_token(WHAT, &s, 32 * 3 - 1, |c| c.is_ascii_hexdigit() || c == ':')?;
        if !s.split(':').all(|octet| octet.len() == 2) {
            return Err(TextError::BadChar { what: WHAT, value: excerpt(&s), ch: ':' });
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LinkLayerAddress {
    type Error = TextError;
    fn try_from(s: String) -> Result<Self, TextError> {
        Self::new(s)
    }
}

impl From<LinkLayerAddress> for String {
    fn from(a: LinkLayerAddress) -> String {
        a.0
    }
}

impl FromStr for LinkLayerAddress {
    type Err = TextError;
    fn from_str(s: &str) -> Result<Self, TextError> {
        Self::new(s)
    }
}

impl fmt::Display for LinkLayerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub name: InterfaceName,
    pub index: NonZeroU32,
    pub up: bool,
    pub mtu: u32,
    /// With their prefix length, as `ip addr` shows them.
    pub addresses: Vec<IpNet>,
    /// None for physical devices, which have no driver kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<LinkKind>,
    /// The link's own hardware address (`link/ether …` in `ip link`): what other hosts'
    /// neighbour entries for its addresses should hold. None for links without one (`lo`,
    /// tunnels without a MAC) and from agents that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lladdr: Option<LinkLayerAddress>,
}

/// A routing table entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// `0.0.0.0/0` (or `::/0`) for the default route.
    pub destination: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// None for routes without a device (blackhole, unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<InterfaceName>,
    /// The preferred source address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    pub table: u32,
    pub metric: u32,
}

/// A policy-routing rule (`ip rule`): which packets it selects and what it does with them. The
/// kernel tries rules by ascending priority; a `lookup` whose table has no route for the
/// packet falls through to the next rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRule {
    pub priority: u32,
    /// The address family the rule is for (IPv4 rules never select IPv6 packets).
    pub ipv6: bool,
    /// `from PREFIX`; None is `from all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<IpNet>,
    /// `to PREFIX`; None is every destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<IpNet>,
    /// `iif NAME`: only packets arriving on that interface (forwarded ones, or `lo` for the
    /// host's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iif: Option<InterfaceName>,
    /// `oif NAME`: only packets of sockets bound to that interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oif: Option<InterfaceName>,
    /// `fwmark MARK/MASK`: only packets carrying that mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<(u32, u32)>,
    /// `not`: the selectors are inverted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
    pub action: RuleAction,
}

/// What a rule does with the packets it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// `lookup TABLE`.
    Lookup(u32),
    Blackhole,
    Unreachable,
    Prohibit,
    /// `goto`, `nop` and whatever else: nothing a lookup can follow.
    Other,
}

impl RuleAction {
    /// The packets it selects are dropped (silently, or with an ICMP error).
    pub fn drops(self) -> bool {
        matches!(self, RuleAction::Blackhole | RuleAction::Unreachable | RuleAction::Prohibit)
    }
}

impl fmt::Display for RouteRule {
    /// As `ip rule` prints it: `100:\tnot from all to 10.244.3.0/24 iif eth0 prohibit`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.priority)?;
        if self.invert {
            f.write_str("not ")?;
        }
        match self.from {
            Some(p) => write!(f, "from {p}")?,
            None => f.write_str("from all")?,
        }
        if let Some(p) = self.to {
            write!(f, " to {p}")?;
        }
        if let Some((mark, mask)) = self.fwmark {
            write!(f, " fwmark {mark:#x}")?;
            if mask != u32::MAX {
                write!(f, "/{mask:#x}")?;
            }
        }
        if let Some(i) = &self.iif {
            write!(f, " iif {i}")?;
        }
        if let Some(o) = &self.oif {
            write!(f, " oif {o}")?;
        }
        match self.action {
            RuleAction::Lookup(254) => f.write_str(" lookup main"),
            RuleAction::Lookup(253) => f.write_str(" lookup default"),
            RuleAction::Lookup(255) => f.write_str(" lookup local"),
            RuleAction::Lookup(t) => write!(f, " lookup {t}"),
            RuleAction::Blackhole => f.write_str(" blackhole"),
            RuleAction::Unreachable => f.write_str(" unreachable"),
            RuleAction::Prohibit => f.write_str(" prohibit"),
            RuleAction::Other => f.write_str(" (goto/nop)"),
        }
    }
}

/// An ARP / NDP cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub device: InterfaceName,
    pub state: NeighbourState,
    /// None while unresolved (`INCOMPLETE`, `FAILED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lladdr: Option<LinkLayerAddress>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel() {
        for ok in ["eth0", "veth1a2b3c4d", "cni0", "lo", "vxlan.calico", "a-b_c@x"] {
            assert!(InterfaceName::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "eth0:1", "a/b", "a b", "sixteen-chars-xx"] {
            assert!(InterfaceName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn link_layer_addresses() {
        assert_eq!(LinkLayerAddress::new("AA:bb:0c:00:00:01").unwrap().as_str(), "aa:bb:0c:00:00:01");
        for bad in ["", "aa:bb:c", "aa::bb", "gg:00", ":", &"aa:".repeat(40)] {
            assert!(LinkLayerAddress::new(bad).is_err(), "{bad:?}");
        }
    }
}
