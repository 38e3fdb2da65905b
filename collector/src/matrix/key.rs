//! Cell keys: which matrix cells a probe result counts towards. A result always lands in one
//! pod-level cell ([`PodKey`]: the probe's own source and what it aimed at) and, when its
//! destination can be placed, in one node-level cell ([`NodeKey`]: reporting node to
//! destination node, or to one of the pseudo-destinations for targets that live on no node).
//!
//! Labels (the `source`/`destination` strings of the API's cells) are the keys' `Display`:
//!
//! | target | pod-level destination |
//! |---|---|
//! | pod | `<ns>/<pod>`, `<ns>/<pod>:<port>` when a port was probed |
//! | service via ClusterIP | `svc/<ns>/<name>:<port>` |
//! | service straight to an endpoint | `svc/<ns>/<name>@<pod-ns>/<pod>:<port>` (the endpoint's port) |
//! | service via NodePort | `nodeport/<node>:<port>`, `nodeport/<ip>:<port>` when the IP is no known node's |
//! | node | `node/<name>`, `node/<name>:<port>` |
//! | DNS | `dns/<name>`, `#aaaa` for AAAA queries, `@<nameserver>/<transport>` when one nameserver was asked (`@resolv.conf/tcp` for TCP through resolv.conf) |
//! | address | `<ip>`, `<ip>:<port>` (`[v6]:port`) |
//!
//! IPv6 probes of pods, services and nodes (whose labels name no address) end in `#v6`, so a
//! dual-stack pod's IPv4 and IPv6 paths are separate cells: a broken IPv6 path shows as a
//! failed cell, not as 50% loss. For the same reason each probed port is its own cell.
//!
//! Node level: the source is the reporting agent's node (plain node name); the destination is
//! the node the target lives on (pods and endpoints through the inventory, NodePorts and
//! addresses through their IP), or `svc/*` for every ClusterIP VIP, `dns/*` for every DNS
//! target, `external/*` for addresses outside the cluster. These pseudo-destinations contain a
//! `/`, which no node name can. A pod or endpoint the inventory cannot place is left out of the
//! node level (counted in [`crate::matrix::MatrixCounters::unplaced`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use netdiag_model::dns::{DnsName, DnsTransport, RecordType};
use netdiag_model::probe::{ProbeKind, ServiceVia, Source, Target};
use netdiag_model::result::ProbeResult;
use netdiag_model::{NodeName, PodRef, Port, ServiceRef};

use super::placement::{InventoryIndex, Place};

/// The address family a probe used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { IpFamily::V4 } else { IpFamily::V6 }
    }

    fn suffix(self) -> &'static str {
        match self {
            IpFamily::V4 => "",
            IpFamily::V6 => "#v6",
        }
    }
}

/// A NodePort's node: its name when the inventory knows the IP, else the IP.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeAddr {
    Node(NodeName, IpFamily),
    Ip(IpAddr),
}

/// What a pod-level cell's probes aimed at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    Pod { pod: PodRef, port: Option<Port>, family: IpFamily },
    Service { service: ServiceRef, port: Port, family: IpFamily },
    Endpoint { service: ServiceRef, pod: PodRef, port: Port, family: IpFamily },
    NodePort { node: NodeAddr, port: Port },
    Node { node: NodeName, port: Option<Port>, family: IpFamily },
    Dns { name: DnsName, record: RecordType, nameserver: Option<IpAddr>, transport: DnsTransport },
    Address { ip: IpAddr, port: Option<Port> },
}

impl Destination {
    /// The destination of `target`; `index` names the node behind a NodePort's IP.
    pub fn of(target: &Target, index: &InventoryIndex) -> Self {
        match target {
            Target::Pod { pod, ip, port } => {
                Destination::Pod { pod: pod.clone(), port: *port, family: IpFamily::of(*ip) }
            }
            Target::Service { service, ip, port, via } => {
                let (service, port, family) = (service.clone(), *port, IpFamily::of(*ip));
                match via {
                    ServiceVia::ClusterIp => Destination::Service { service, port, family },
                    ServiceVia::Endpoint(pod) => {
                        Destination::Endpoint { service, pod: pod.clone(), port, family }
                    }
                    ServiceVia::NodePort => {
                        let node = match index.node_with_ip(*ip) {
                            Some(name) => NodeAddr::Node(name.clone(), family),
                            None => NodeAddr::Ip(*ip),
                        };
                        Destination::NodePort { node, port }
                    }
                }
            }
            Target::Node { node, ip, port } => {
                Destination::Node { node: node.clone(), port: *port, family: IpFamily::of(*ip) }
            }
            Target::Dns { name, record, nameserver, transport } => Destination::Dns {
                name: name.clone(),
                record: *record,
                nameserver: *nameserver,
                transport: *transport,
            },
            Target::Address { ip, port } => Destination::Address { ip: *ip, port: *port },
        }
    }
}

/// `:<port>` or nothing.
fn opt_port(f: &mut fmt::Formatter<'_>, port: Option<Port>) -> fmt::Result {
    match port {
        Some(p) => write!(f, ":{p}"),
        None => Ok(()),
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Pod { pod, port, family } => {
                write!(f, "{pod}")?;
                opt_port(f, *port)?;
                f.write_str(family.suffix())
            }
            Destination::Service { service, port, family } => {
                write!(f, "svc/{service}:{port}{}", family.suffix())
            }
            Destination::Endpoint { service, pod, port, family } => {
                write!(f, "svc/{service}@{pod}:{port}{}", family.suffix())
            }
            Destination::NodePort { node: NodeAddr::Node(node, family), port } => {
                write!(f, "nodeport/{node}:{port}{}", family.suffix())
            }
            Destination::NodePort { node: NodeAddr::Ip(ip), port } => {
                write!(f, "nodeport/{}", SocketAddr::new(*ip, port.get()))
            }
            Destination::Node { node, port, family } => {
                write!(f, "node/{node}")?;
                opt_port(f, *port)?;
                f.write_str(family.suffix())
            }
            Destination::Dns { name, record, nameserver, transport } => {
                write!(f, "dns/{name}")?;
                if *record == RecordType::Aaaa {
                    f.write_str("#aaaa")?;
                }
                match (nameserver, transport) {
                    (Some(IpAddr::V6(ns)), t) => write!(f, "@[{ns}]/{t}"),
                    (Some(ns), t) => write!(f, "@{ns}/{t}"),
                    (None, DnsTransport::Tcp) => f.write_str("@resolv.conf/tcp"),
                    (None, DnsTransport::Udp) => Ok(()),
                }
            }
            Destination::Address { ip, port: Some(port) } => {
                write!(f, "{}", SocketAddr::new(*ip, port.get()))
            }
            Destination::Address { ip, port: None } => write!(f, "{ip}"),
        }
    }
}

/// A pod-level cell: the probe's source (a pod, or a node probing from its own namespace), its
/// destination and its kind. Ordered by source, destination, kind: the snapshot's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodKey {
    pub source: Source,
    pub destination: Destination,
    pub kind: ProbeKind,
}

impl PodKey {
    pub fn of(result: &ProbeResult, index: &InventoryIndex) -> Self {
        PodKey {
            source: result.source.clone(),
            destination: Destination::of(&result.target, index),
            kind: result.kind,
        }
    }

    /// `(source label, destination label)` as the API shows them.
    pub fn labels(&self) -> (String, String) {
        (self.source.to_string(), self.destination.to_string())
    }
}

/// Where a node-level cell's probes went.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeDestination {
    Node(NodeName),
    /// Every Service ClusterIP (`svc/*`).
    Services,
    /// Every DNS target (`dns/*`).
    Dns,
    /// Addresses outside the cluster (`external/*`).
    External,
}

impl fmt::Display for NodeDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeDestination::Node(n) => n.fmt(f),
            NodeDestination::Services => f.write_str("svc/*"),
            NodeDestination::Dns => f.write_str("dns/*"),
            NodeDestination::External => f.write_str("external/*"),
        }
    }
}

/// A node-level cell: reporting node to destination node (or pseudo-destination), per kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeKey {
    pub source: NodeName,
    pub destination: NodeDestination,
    pub kind: ProbeKind,
}

impl NodeKey {
    /// The node-level cell of a result reported by `node`'s agent; None when the inventory
    /// cannot place a pod or endpoint target.
    pub fn of(node: &NodeName, result: &ProbeResult, index: &InventoryIndex) -> Option<Self> {
        let by_ip = |ip: IpAddr| match index.place_of_ip(ip) {
            Some(Place::Node(n)) => NodeDestination::Node(n.clone()),
            Some(Place::ServiceVip) => NodeDestination::Services,
            None => NodeDestination::External,
        };
        let pod_node = |pod: &PodRef, ip: IpAddr| match index.node_of_pod(pod) {
            Some(n) => Some(NodeDestination::Node(n.clone())),
            None => match index.place_of_ip(ip) {
                Some(Place::Node(n)) => Some(NodeDestination::Node(n.clone())),
                _ => None,
            },
        };
        let destination = match &result.target {
            Target::Pod { pod, ip, .. } => pod_node(pod, *ip)?,
            Target::Service { via: ServiceVia::Endpoint(pod), ip, .. } => pod_node(pod, *ip)?,
            Target::Service { via: ServiceVia::ClusterIp, .. } => NodeDestination::Services,
            Target::Service { via: ServiceVia::NodePort, ip, .. } => by_ip(*ip),
            Target::Node { node, .. } => NodeDestination::Node(node.clone()),
            Target::Dns { .. } => NodeDestination::Dns,
            Target::Address { ip, .. } => by_ip(*ip),
        };
        Some(NodeKey { source: node.clone(), destination, kind: result.kind })
    }

    /// `(source label, destination label)` as the API shows them.
    pub fn labels(&self) -> (String, String) {
        (self.source.to_string(), self.destination.to_string())
    }
}
