//! What a probe is: its kind, where it runs from (`Source`) and what it aims at (`Target`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::dns::{DnsName, DnsTransport, RecordType};
use crate::names::{NameError, NodeName, PodRef, Port, ServiceRef};
use crate::outcome::Layer;

/// The kinds of probe an agent runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// ICMP echo bursts: reachability, loss and RTT.
    Icmp,
    /// A TCP handshake.
    Tcp,
    /// A DNS query.
    Dns,
    /// An HTTP request over TCP.
    Http,
    /// Path-MTU discovery with don't-fragment pings of decreasing size.
    Mtu,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 5] =
        [ProbeKind::Icmp, ProbeKind::Tcp, ProbeKind::Dns, ProbeKind::Http, ProbeKind::Mtu];

    /// A stable lowercase name, for metric labels and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Icmp => "icmp",
            ProbeKind::Tcp => "tcp",
            ProbeKind::Dns => "dns",
            ProbeKind::Http => "http",
            ProbeKind::Mtu => "mtu",
        }
    }

    /// Whether a probe of this kind can fail at `layer`: an HTTP probe can fail its TCP
    /// handshake, an MTU probe its pings; agent-side failures can happen to any probe.
    pub fn can_fail_at(self, layer: Layer) -> bool {
        match (self, layer) {
            (_, Layer::Agent) => true,
            (ProbeKind::Icmp, l) => l == Layer::Icmp,
            (ProbeKind::Tcp, l) => l == Layer::Tcp,
            (ProbeKind::Dns, l) => l == Layer::Dns,
            (ProbeKind::Http, l) => matches!(l, Layer::Tcp | Layer::Http),
            (ProbeKind::Mtu, l) => matches!(l, Layer::Icmp | Layer::Mtu),
        }
    }

    /// Whether a probe of this kind can aim at `target`: DNS probes (and only they) take a DNS
    /// target; TCP and HTTP probes need a port.
    pub fn check_target(self, target: &Target) -> Result<(), KindTargetError> {
        let is_dns = matches!(target, Target::Dns { .. });
        match self {
            ProbeKind::Dns if !is_dns => Err(KindTargetError::NeedsDnsTarget { target: target.type_name() }),
            ProbeKind::Dns => Ok(()),
            _ if is_dns => Err(KindTargetError::DnsTargetNeedsDnsProbe { kind: self }),
            ProbeKind::Tcp | ProbeKind::Http if target.port().is_none() => {
                Err(KindTargetError::NeedsPort { kind: self, target: target.type_name() })
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A probe kind that cannot aim at a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindTargetError {
    #[error("a dns probe needs a dns target, not a {target} target")]
    NeedsDnsTarget { target: &'static str },
    #[error("a dns target needs a dns probe, not a {kind} probe")]
    DnsTargetNeedsDnsProbe { kind: ProbeKind },
    #[error("a {kind} probe needs a port, and its {target} target has none")]
    NeedsPort { kind: ProbeKind, target: &'static str },
}

/// Where a probe runs from: inside a pod's network namespace, or a node's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Pod(PodRef),
    Node(NodeName),
}

impl Source {
    pub fn pod(&self) -> Option<&PodRef> {
        match self {
            Source::Pod(p) => Some(p),
            Source::Node(_) => None,
        }
    }
}

/// `<namespace>/<pod>` or `node/<name>` (so a namespace called `node` cannot be named here).
impl FromStr for Source {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        match s.strip_prefix("node/") {
            Some(node) => Ok(Source::Node(node.parse()?)),
            None => Ok(Source::Pod(s.parse()?)),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Pod(p) => p.fmt(f),
            Source::Node(n) => write!(f, "node/{n}"),
        }
    }
}

/// How a probe to a Service reached it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceVia {
    /// Through the Service's ClusterIP (the target's `ip` is the VIP).
    ClusterIp,
    /// Through a NodePort (the target's `ip` is a node IP, `port` the NodePort).
    NodePort,
    /// Straight to one backend, bypassing the VIP (`ip` is the endpoint's IP).
    Endpoint(PodRef),
}

/// What a probe aimed at, resolved to an address (or, for DNS, a name to query).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    Pod {
        pod: PodRef,
        ip: IpAddr,
        /// None for ICMP and MTU probes.
        port: Option<Port>,
    },
    Service {
        service: ServiceRef,
        ip: IpAddr,
        port: Port,
        via: ServiceVia,
    },
    Node {
        node: NodeName,
        ip: IpAddr,
        port: Option<Port>,
    },
    Dns {
        /// As queried, before search-list expansion.
        name: DnsName,
        record: RecordType,
        /// None: the source's resolv.conf resolvers.
        nameserver: Option<IpAddr>,
        transport: DnsTransport,
    },
    Address {
        ip: IpAddr,
        port: Option<Port>,
    },
}

impl Target {
    /// The address probed; None for DNS targets.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Target::Pod { ip, .. }
            | Target::Service { ip, .. }
            | Target::Node { ip, .. }
            | Target::Address { ip, .. } => Some(*ip),
            Target::Dns { .. } => None,
        }
    }

    /// The port probed; None for ICMP-style targets and DNS targets.
    pub fn port(&self) -> Option<Port> {
        match self {
            Target::Pod { port, .. } | Target::Node { port, .. } | Target::Address { port, .. } => *port,
            Target::Service { port, .. } => Some(*port),
            Target::Dns { .. } => None,
        }
    }

    pub fn socket_addr(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.ip()?, self.port()?.get()))
    }

    /// `pod`, `service`, `node`, `dns` or `address`.
    pub const fn type_name(&self) -> &'static str {
        match self {
            Target::Pod { .. } => "pod",
            Target::Service { .. } => "service",
            Target::Node { .. } => "node",
            Target::Dns { .. } => "dns",
            Target::Address { .. } => "address",
        }
    }
}

/// Writes `ip` or `ip:port`, with IPv6 in brackets when a port follows.
fn fmt_addr(f: &mut fmt::Formatter<'_>, ip: IpAddr, port: Option<Port>) -> fmt::Result {
    match port {
        Some(p) => write!(f, "{}", SocketAddr::new(ip, p.get())),
        None => write!(f, "{ip}"),
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pod { pod, ip, port } => {
                write!(f, "pod {pod} (")?;
                fmt_addr(f, *ip, *port)?;
                f.write_str(")")
            }
            Target::Service { service, ip, port, via } => {
                write!(f, "service {service} (")?;
                fmt_addr(f, *ip, Some(*port))?;
                match via {
                    ServiceVia::ClusterIp => f.write_str(")"),
                    ServiceVia::NodePort => f.write_str(" via NodePort)"),
                    ServiceVia::Endpoint(pod) => write!(f, " straight to endpoint {pod})"),
                }
            }
            Target::Node { node, ip, port } => {
                write!(f, "node {node} (")?;
                fmt_addr(f, *ip, *port)?;
                f.write_str(")")
            }
            Target::Dns { name, record, nameserver, transport } => {
                write!(f, "{record} {name} via ")?;
                match nameserver {
                    Some(ns) => write!(f, "{ns}/{transport}"),
                    None => write!(f, "resolv.conf/{transport}"),
                }
            }
            Target::Address { ip, port } => fmt_addr(f, *ip, *port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_target(port: Option<u32>) -> Target {
        Target::Pod {
            pod: "tidb/demo-pd-0".parse().unwrap(),
            ip: "10.244.1.2".parse().unwrap(),
            port: port.map(|p| Port::new(p).unwrap()),
        }
    }

    fn dns_target() -> Target {
        Target::Dns {
            name: DnsName::new("demo-pd.tidb").unwrap(),
            record: RecordType::A,
            nameserver: None,
            transport: DnsTransport::Udp,
        }
    }

    #[test]
    fn kinds_and_targets_must_fit() {
        assert_eq!(ProbeKind::Tcp.check_target(&pod_target(Some(2379))), Ok(()));
        assert_eq!(ProbeKind::Icmp.check_target(&pod_target(None)), Ok(()));
        assert_eq!(ProbeKind::Dns.check_target(&dns_target()), Ok(()));
        assert_eq!(
            ProbeKind::Http.check_target(&pod_target(None)),
            Err(KindTargetError::NeedsPort { kind: ProbeKind::Http, target: "pod" })
        );
        assert_eq!(
            ProbeKind::Dns.check_target(&pod_target(Some(53))),
            Err(KindTargetError::NeedsDnsTarget { target: "pod" })
        );
        assert_eq!(
            ProbeKind::Mtu.check_target(&dns_target()),
            Err(KindTargetError::DnsTargetNeedsDnsProbe { kind: ProbeKind::Mtu })
        );
    }

    #[test]
    fn layers_per_kind() {
        assert!(ProbeKind::Http.can_fail_at(Layer::Tcp));
        assert!(!ProbeKind::Tcp.can_fail_at(Layer::Http));
        assert!(ProbeKind::Mtu.can_fail_at(Layer::Icmp));
        assert!(!ProbeKind::Dns.can_fail_at(Layer::Icmp));
        assert!(ProbeKind::ALL.iter().all(|k| k.can_fail_at(Layer::Agent)));
    }

    #[test]
    fn sources_parse_and_print() {
        for s in ["tidb/demo-pd-0", "node/node-1"] {
            assert_eq!(s.parse::<Source>().unwrap().to_string(), s);
        }
        assert!("demo-pd-0".parse::<Source>().is_err());
        assert!("node/Node_1".parse::<Source>().is_err());
    }

    #[test]
    fn targets_read_like_an_engineer_writes_them() {
        assert_eq!(pod_target(Some(2379)).to_string(), "pod tidb/demo-pd-0 (10.244.1.2:2379)");
        let svc = Target::Service {
            service: "tidb/demo-pd".parse().unwrap(),
            ip: "fd00::20".parse().unwrap(),
            port: Port::new(2379).unwrap(),
            via: ServiceVia::Endpoint("tidb/demo-pd-0".parse().unwrap()),
        };
        assert_eq!(
            svc.to_string(),
            "service tidb/demo-pd ([fd00::20]:2379 straight to endpoint tidb/demo-pd-0)"
        );
        assert_eq!(dns_target().to_string(), "A demo-pd.tidb via resolv.conf/udp");
        assert_eq!(svc.socket_addr(), Some("[fd00::20]:2379".parse().unwrap()));
        assert_eq!(dns_target().ip(), None);
    }

    #[test]
    fn targets_serialize_tagged() {
        let json = serde_json::to_value(pod_target(Some(80))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "pod", "pod": "tidb/demo-pd-0", "ip": "10.244.1.2", "port": 80})
        );
        let back: Target = serde_json::from_value(json).unwrap();
        assert_eq!(back, pod_target(Some(80)));
    }
}
