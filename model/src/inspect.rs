//! Inspections: the state of a pod's or a node's network namespace (links, routes, neighbours,
//! kube-proxy NAT rules and the other NAT rules, firewall drops, sysctls, resolv.conf), as an
//! agent reads it.

mod filter;
mod links;
mod nat;
mod nat_rule;

use serde::{Deserialize, Serialize};

pub use self::filter::{FilterDrop, FilterHook, FilterProtocol, PortRange};
pub use self::links::{
    InterfaceName, Link, LinkKind, LinkLayerAddress, Neighbour, NeighbourState, Route, RouteRule, RuleAction,
};
pub use self::nat::{
    ChainName, NatProtocol, NatService, NatServiceName, NatServiceNameError, NatTarget, PortName,
    UnknownProtocol,
};
pub use self::nat_rule::{AddressMatch, NatAction, NatHook, NatRule};
use crate::dns::DnsName;
use crate::inventory::ProxyMode;
use crate::limits::MAX_LINE_BYTES;
use crate::probe::Source;
use crate::text::{Text, TextError, check_token, token_type};
use crate::time::UnixMillis;
use std::net::IpAddr;

fn check_sysctl_key(s: &str) -> Result<(), TextError> {
    check_token("sysctl key", s, 256, |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
}

token_type!(
    /// A sysctl name such as `net.ipv4.ip_forward` (letters, digits, `._-/`).
    SysctlKey,
    check = check_sysctl_key
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sysctl {
    pub key: SysctlKey,
    pub value: Text<MAX_LINE_BYTES>,
}

/// The resolver configuration a namespace's processes use, with the values glibc applies
/// (each option fits in a byte; glibc caps them lower still).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<DnsName>,
    pub ndots: u8,
    pub timeout_secs: u8,
    pub attempts: u8,
}

/// One inspection of one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectionReport {
    pub source: Source,
    pub at: UnixMillis,
    pub links: Vec<Link>,
    /// Every table's routes but the local table's (`table` says which).
    pub routes: Vec<Route>,
    /// The policy-routing rules (`ip rule`); empty from agents that predate them, and then the
    /// main table is all there is to read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RouteRule>,
    pub neighbours: Vec<Neighbour>,
    pub nat_services: Vec<NatService>,
    pub sysctls: Vec<Sysctl>,
    /// None when the namespace has no resolv.conf the agent could read (see `errors`).
    pub resolv_conf: Option<ResolvConf>,
    /// Which kube-proxy rules the namespace holds; None when it holds none (pod namespaces).
    pub proxy_mode: Option<ProxyMode>,
    /// What could not be inspected, and why.
    pub errors: Vec<Text<MAX_LINE_BYTES>>,
    /// The firewall's rules that drop or reject (node namespaces).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter_drops: Vec<FilterDrop>,
    /// NAT rules outside kube-proxy's chains, in the order each hook meets them; empty from
    /// agents that predate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nat_rules: Vec<NatRule>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys() {
        assert!(SysctlKey::new("net.ipv4.conf.eth0/1.rp_filter").is_ok());
        assert!(SysctlKey::new("net.ipv4 ip_forward").is_err());
        assert!(SysctlKey::new("").is_err());
    }
}
