//! Packet filter rules that drop or reject, as a node's firewall (the `filter` table) holds
//! them: what traffic a rule stops, at which hook, and the rule as written.

use std::fmt;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::Port;
use crate::limits::MAX_LINE_BYTES;
use crate::text::Text;

/// Where in the node a rule sits: traffic to the node itself, through it, or from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterHook {
    Input,
    Forward,
    Output,
}

impl fmt::Display for FilterHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilterHook::Input => "INPUT",
            FilterHook::Forward => "FORWARD",
            FilterHook::Output => "OUTPUT",
        })
    }
}

/// The protocols a drop rule can single out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterProtocol {
    Tcp,
    Udp,
    Sctp,
    /// ICMP or ICMPv6.
    Icmp,
}

/// An inclusive port range; one port is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub first: Port,
    pub last: Port,
}

impl PortRange {
    pub fn contains(&self, p: Port) -> bool {
        self.first <= p && p <= self.last
    }
}

/// One rule that drops or rejects what it matches, every condition it has understood (a rule
/// with a condition the reader does not understand — a random share, a packet length, a mark —
/// is not reported: it does not stop all of what the other conditions describe).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterDrop {
    pub hook: FilterHook,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<FilterProtocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<IpNet>,
    /// An interface name as iptables writes it (`+` at the end matches any suffix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_interface: Option<Text<64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_interface: Option<Text<64>>,
    /// Empty: every port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_ports: Vec<PortRange>,
    /// REJECT (the sender hears of it) rather than DROP (silence).
    pub reject: bool,
    /// The chain's default policy (`-P FORWARD DROP`), not a rule: it drops what no rule before
    /// it accepts. Flows a stateful accept rule lets through (`--ctstate ESTABLISHED`, so a ping
    /// that keeps its conntrack entry) still pass.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub policy: bool,
    /// An earlier rule on its way accepts established and related flows: this one meets new
    /// connections only (a ping that keeps its conntrack entry passes).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_only: bool,
    /// The rule as written, with the chains that lead to it (`FORWARD → BLOCK: -p tcp …`).
    pub rule: Text<MAX_LINE_BYTES>,
}

impl FilterDrop {
    /// How a rule read from an nftables table of its own starts (`nft <family> <table>
    /// <chain> (<hook>): …`): the agent's nftables reader writes it, [`Self::from_nftables`]
    /// reads it.
    pub const NFT_RULE_PREFIX: &'static str = "nft ";

    /// A rule of an nftables table of its own, not of iptables' tables (kube-proxy's
    /// KUBE-FORWARD accepts what it marked before iptables' policies, not before these).
    pub fn from_nftables(&self) -> bool {
        self.rule.as_str().starts_with(Self::NFT_RULE_PREFIX)
    }

    /// Whether `pattern` (iptables' interface syntax) matches the interface `name`.
    pub fn interface_matches(pattern: &str, name: &str) -> bool {
        match pattern.strip_suffix('+') {
            Some(prefix) => name.starts_with(prefix),
            None => pattern == name,
        }
    }
}
