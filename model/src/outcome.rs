//! How a probe ended, classified by the layer that failed: `Outcome::Ok`, or a DNS, ICMP, TCP,
//! HTTP or MTU failure, or an agent-side failure that says nothing about the network.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::text::excerpt;

/// Where a failure was observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Dns,
    Icmp,
    Tcp,
    Http,
    Mtu,
    /// The agent, not the network: the probe could not run or its source vanished.
    Agent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DnsFailure {
    /// The name does not exist.
    NxDomain,
    /// The nameserver could not answer.
    ServFail,
    /// No answer before the timeout.
    Timeout,
    /// No nameserver in resolv.conf was reachable.
    NoNameserver,
    /// The nameserver refused the query.
    Refused,
    /// The name exists but has no record of the asked type (NODATA).
    NoRecords,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IcmpFailure {
    /// No echo reply before the timeout.
    Timeout,
    /// An ICMP destination-unreachable came back.
    Unreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpFailure {
    /// RST in answer to the SYN: the host is there, nothing listens (or a rule rejects).
    Refused,
    /// The SYN went unanswered: dropped on the way or by a firewall.
    Timeout,
    /// An ICMP unreachable or no route to the host.
    Unreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HttpFailure {
    /// An HTTP answer whose status is not 2xx/3xx.
    Status,
    /// Connected, but no complete answer before the timeout.
    Timeout,
    /// Connected, but what came back is not valid HTTP.
    Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MtuFailure {
    /// The path MTU is below the interface MTU: large packets are dropped on the way.
    Reduced,
}

/// The classification of a probe's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Outcome {
    Ok,
    Dns(DnsFailure),
    Icmp(IcmpFailure),
    Tcp(TcpFailure),
    Http(HttpFailure),
    Mtu(MtuFailure),
    /// The source namespace vanished mid-probe (the pod was deleted).
    SourceGone,
    /// The agent could not run the probe; the result's detail says why.
    LocalError,
}

impl Outcome {
    pub const ALL: [Outcome; 18] = [
        Outcome::Ok,
        Outcome::Dns(DnsFailure::NxDomain),
        Outcome::Dns(DnsFailure::ServFail),
        Outcome::Dns(DnsFailure::Timeout),
        Outcome::Dns(DnsFailure::NoNameserver),
        Outcome::Dns(DnsFailure::Refused),
        Outcome::Dns(DnsFailure::NoRecords),
        Outcome::Icmp(IcmpFailure::Timeout),
        Outcome::Icmp(IcmpFailure::Unreachable),
        Outcome::Tcp(TcpFailure::Refused),
        Outcome::Tcp(TcpFailure::Timeout),
        Outcome::Tcp(TcpFailure::Unreachable),
        Outcome::Http(HttpFailure::Status),
        Outcome::Http(HttpFailure::Timeout),
        Outcome::Http(HttpFailure::Protocol),
        Outcome::Mtu(MtuFailure::Reduced),
        Outcome::SourceGone,
        Outcome::LocalError,
    ];

    pub const fn is_ok(self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// The layer that failed; None when the probe succeeded.
    pub const fn layer(self) -> Option<Layer> {
        Some(match self {
            Outcome::Ok => return None,
            Outcome::Dns(_) => Layer::Dns,
            Outcome::Icmp(_) => Layer::Icmp,
            Outcome::Tcp(_) => Layer::Tcp,
            Outcome::Http(_) => Layer::Http,
            Outcome::Mtu(_) => Layer::Mtu,
            Outcome::SourceGone | Outcome::LocalError => Layer::Agent,
        })
    }

    /// A failure that says something about the network (not about the agent).
    pub fn is_network_failure(self) -> bool {
        !matches!(self.layer(), None | Some(Layer::Agent))
    }

    /// A stable snake_case name, for metric labels and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Dns(DnsFailure::NxDomain) => "dns_nxdomain",
            Outcome::Dns(DnsFailure::ServFail) => "dns_servfail",
            Outcome::Dns(DnsFailure::Timeout) => "dns_timeout",
            Outcome::Dns(DnsFailure::NoNameserver) => "dns_no_nameserver",
            Outcome::Dns(DnsFailure::Refused) => "dns_refused",
            Outcome::Dns(DnsFailure::NoRecords) => "dns_no_records",
            Outcome::Icmp(IcmpFailure::Timeout) => "icmp_timeout",
            Outcome::Icmp(IcmpFailure::Unreachable) => "icmp_unreachable",
            Outcome::Tcp(TcpFailure::Refused) => "tcp_refused",
            Outcome::Tcp(TcpFailure::Timeout) => "tcp_timeout",
            Outcome::Tcp(TcpFailure::Unreachable) => "tcp_unreachable",
            Outcome::Http(HttpFailure::Status) => "http_status",
            Outcome::Http(HttpFailure::Timeout) => "http_timeout",
            Outcome::Http(HttpFailure::Protocol) => "http_protocol",
            Outcome::Mtu(MtuFailure::Reduced) => "mtu_reduced",
            Outcome::SourceGone => "source_gone",
            Outcome::LocalError => "local_error",
        }
    }
}

/// What a network engineer would say about the result.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Dns(DnsFailure::NxDomain) => "DNS NXDOMAIN: the name does not exist",
            Outcome::Dns(DnsFailure::ServFail) => "DNS SERVFAIL: the nameserver could not answer",
            Outcome::Dns(DnsFailure::Timeout) => "DNS timeout: no answer from the nameserver",
            Outcome::Dns(DnsFailure::NoNameserver) => "DNS: no nameserver from resolv.conf was reachable",
            Outcome::Dns(DnsFailure::Refused) => "DNS REFUSED: the nameserver refused the query",
            Outcome::Dns(DnsFailure::NoRecords) => {
                "DNS NODATA: the name exists but has no record of the asked type"
            }
            Outcome::Icmp(IcmpFailure::Timeout) => "ICMP timeout: no echo reply",
            Outcome::Icmp(IcmpFailure::Unreachable) => "ICMP destination unreachable",
            Outcome::Tcp(TcpFailure::Refused) => "TCP connection refused (RST)",
            Outcome::Tcp(TcpFailure::Timeout) => "TCP connect timeout: SYN unanswered",
            Outcome::Tcp(TcpFailure::Unreachable) => "TCP connect failed: host or network unreachable",
            Outcome::Http(HttpFailure::Status) => "HTTP error status (not 2xx/3xx)",
            Outcome::Http(HttpFailure::Timeout) => "HTTP timeout: connected, no complete answer",
            Outcome::Http(HttpFailure::Protocol) => "HTTP protocol error: connected, no valid HTTP answer",
            Outcome::Mtu(MtuFailure::Reduced) => "path MTU below the interface MTU",
            Outcome::SourceGone => "probe source vanished mid-probe",
            Outcome::LocalError => "the agent could not run the probe",
        })
    }
}

/// An outcome name that [`Outcome::as_str`] never produces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a probe outcome")]
pub struct UnknownOutcome(String);

impl FromStr for Outcome {
    type Err = UnknownOutcome;
    fn from_str(s: &str) -> Result<Self, UnknownOutcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s).ok_or_else(|| UnknownOutcome(excerpt(s)))
    }
}

impl TryFrom<String> for Outcome {
    type Error = UnknownOutcome;
    fn try_from(s: String) -> Result<Self, UnknownOutcome> {
        s.parse()
    }
}

impl From<Outcome> for &'static str {
    fn from(o: Outcome) -> &'static str {
        o.as_str()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        let names: BTreeSet<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names.len(), Outcome::ALL.len());
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), o);
            assert!(!o.to_string().ends_with('.'), "{o}");
        }
        assert!("nxdomain".parse::<Outcome>().is_err());
    }

    #[test]
    fn layers() {
        assert!(Outcome::Ok.is_ok());
        assert_eq!(Outcome::Ok.layer(), None);
        assert_eq!(Outcome::Tcp(TcpFailure::Refused).layer(), Some(Layer::Tcp));
        assert_eq!(Outcome::SourceGone.layer(), Some(Layer::Agent));
        assert!(Outcome::Dns(DnsFailure::NxDomain).is_network_failure());
        assert!(!Outcome::LocalError.is_network_failure());
        assert!(!Outcome::Ok.is_network_failure());
    }

    #[test]
    fn display_speaks_network() {
        assert_eq!(Outcome::Tcp(TcpFailure::Refused).to_string(), "TCP connection refused (RST)");
        assert_eq!(Outcome::Dns(DnsFailure::NxDomain).to_string(), "DNS NXDOMAIN: the name does not exist");
    }
}
