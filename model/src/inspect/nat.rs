//! kube-proxy's NAT rules, read back: each Service frontend (VIP:port or NodePort) and the
//! endpoints its rules send traffic to.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::names::{NameError, Port, ServiceRef};
use crate::text::{TextError, check_token, is_graphic_char, token_type};

fn check_port_name(s: &str) -> Result<(), TextError> {
    check_token("port name", s, 63, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

token_type!(
    /// A Service port's name (`client`, `https`): lowercase letters, digits and `-`.
    PortName,
    check = check_port_name
);

fn check_chain_name(s: &str) -> Result<(), TextError> {
    check_token("chain name", s, 256, is_graphic_char)
}

token_type!(
    /// The iptables or nftables chain a NAT target came from (`KUBE-SEP-…`, `endpoint-…`).
    ChainName,
    check = check_chain_name
);

/// The Service a NAT rule belongs to, from kube-proxy's rule comment: `<ns>/<name>[:<port-name>]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NatServiceName {
    pub service: ServiceRef,
    pub port_name: Option<PortName>,
}

/// A NAT service name that does not read as `<ns>/<name>[:<port-name>]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatServiceNameError {
    #[error(transparent)]
    Service(#[from] NameError),
    #[error(transparent)]
    PortName(#[from] TextError),
}

impl FromStr for NatServiceName {
    type Err = NatServiceNameError;
    fn from_str(s: &str) -> Result<Self, NatServiceNameError> {
        let (service, port_name) = match s.split_once(':') {
            Some((svc, port)) => (svc, Some(PortName::new(port)?)),
            None => (s, None),
        };
        Ok(Self { service: service.parse()?, port_name })
    }
}

impl TryFrom<String> for NatServiceName {
    type Error = NatServiceNameError;
    fn try_from(s: String) -> Result<Self, NatServiceNameError> {
        s.parse()
    }
}

impl From<NatServiceName> for String {
    fn from(n: NatServiceName) -> String {
        n.to_string()
    }
}

impl fmt::Display for NatServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port_name {
            Some(p) => write!(f, "{}:{p}", self.service),
            None => write!(f, "{}", self.service),
        }
    }
}

/// The transport a NAT rule matches; kube-proxy NATs SCTP too, which the inventory does not
/// model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatProtocol {
    Tcp,
    Udp,
    Sctp,
}

impl NatProtocol {
    pub const fn as_str(self) -> &'static str {
        match self {
            NatProtocol::Tcp => "tcp",
            NatProtocol::Udp => "udp",
            NatProtocol::Sctp => "sctp",
        }
    }
}

/// A protocol name other than tcp, udp or sctp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a protocol kube-proxy NATs: use tcp, udp or sctp")]
pub struct UnknownProtocol(String);

impl FromStr for NatProtocol {
    type Err = UnknownProtocol;
    /// `tcp`, `udp` or `sctp`, any case.
    fn from_str(s: &str) -> Result<Self, UnknownProtocol> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(NatProtocol::Tcp),
            "udp" => Ok(NatProtocol::Udp),
            "sctp" => Ok(NatProtocol::Sctp),
            _ => Err(UnknownProtocol(crate::text::excerpt(s))),
        }
    }
}

impl fmt::Display for NatProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a frontend's rules send traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatTarget {
    pub ip: IpAddr,
    pub port: Port,
    /// The chain the target came from, as evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainName>,
}

/// One Service frontend and its NAT targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatService {
    /// None when the rules carry no kube-proxy comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<NatServiceName>,
    /// The ClusterIP; None only for NodePort rules that match every local address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vip: Option<IpAddr>,
    pub port: Port,
    pub protocol: NatProtocol,
    pub targets: Vec<NatTarget>,
    pub node_port: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_from_kube_proxy_comments() {
        for ok in ["default/kubernetes:https", "tidb/demo-pd", "kube-system/kube-dns:dns-tcp"] {
            let n: NatServiceName = ok.parse().unwrap();
            assert_eq!(n.to_string(), ok);
        }
        for bad in ["kubernetes", "default/kubernetes:", "default/kubernetes:HTTPS", "a/b/c"] {
            assert!(bad.parse::<NatServiceName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn protocols() {
        assert_eq!("TCP".parse::<NatProtocol>(), Ok(NatProtocol::Tcp));
        assert_eq!("sctp".parse::<NatProtocol>(), Ok(NatProtocol::Sctp));
        assert!("icmp".parse::<NatProtocol>().is_err());
        assert!("".parse::<NatProtocol>().is_err());
    }
}
