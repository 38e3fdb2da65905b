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
