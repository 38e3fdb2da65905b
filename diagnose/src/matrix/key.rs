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
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use hashbrown::Equivalent;

use netdiag_model::dns::{DnsName, DnsTransport, RecordType};
use netdiag_model::probe::{ProbeKind, ServiceVia, Source, Target};
use netdiag_model::result::{ProbeResult, ResultBatch};
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

/// What a pod-level cell's probes aimed at. Its `Hash` is its [`DestinationRef`]'s, so cells
/// are found from a result's borrowed target without cloning a name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
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
        DestinationRef::of(target, index).into_owned()
    }

    /// The borrowed form (what `Hash` and map lookups use).
    pub fn as_ref(&self) -> DestinationRef<'_> {
        match self {
            Destination::Pod { pod, port, family } => {
                DestinationRef::Pod { pod, port: *port, family: *family }
            }
            Destination::Service { service, port, family } => {
                DestinationRef::Service { service, port: *port, family: *family }
            }
            Destination::Endpoint { service, pod, port, family } => {
                DestinationRef::Endpoint { service, pod, port: *port, family: *family }
            }
            Destination::NodePort { node, port } => {
                let node = match node {
                    NodeAddr::Node(name, family) => NodeAddrRef::Node(name, *family),
                    NodeAddr::Ip(ip) => NodeAddrRef::Ip(*ip),
                };
                DestinationRef::NodePort { node, port: *port }
            }
            Destination::Node { node, port, family } => {
                DestinationRef::Node { node, port: *port, family: *family }
            }
            Destination::Dns { name, record, nameserver, transport } => {
                DestinationRef::Dns { name, record: *record, nameserver: *nameserver, transport: *transport }
            }
            Destination::Address { ip, port } => DestinationRef::Address { ip: *ip, port: *port },
        }
    }
}

impl Hash for Destination {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

/// A NodePort's node, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeAddrRef<'a> {
    Node(&'a NodeName, IpFamily),
    Ip(IpAddr),
}

/// A [`Destination`] borrowed from a result's target and the inventory: what the matrix looks
/// cells up with, so a result that lands in an existing cell clones nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationRef<'a> {
    Pod { pod: &'a PodRef, port: Option<Port>, family: IpFamily },
    Service { service: &'a ServiceRef, port: Port, family: IpFamily },
    Endpoint { service: &'a ServiceRef, pod: &'a PodRef, port: Port, family: IpFamily },
    NodePort { node: NodeAddrRef<'a>, port: Port },
    Node { node: &'a NodeName, port: Option<Port>, family: IpFamily },
    Dns { name: &'a DnsName, record: RecordType, nameserver: Option<IpAddr>, transport: DnsTransport },
    Address { ip: IpAddr, port: Option<Port> },
}

impl<'a> DestinationRef<'a> {
    /// The destination of `target`; `index` names the node behind a NodePort's IP.
    pub fn of(target: &'a Target, index: &'a InventoryIndex) -> Self {
        match target {
            Target::Pod { pod, ip, port } => {
                DestinationRef::Pod { pod, port: *port, family: IpFamily::of(*ip) }
            }
            Target::Service { service, ip, port, via } => {
                let (port, family) = (*port, IpFamily::of(*ip));
                match via {
                    ServiceVia::ClusterIp => DestinationRef::Service { service, port, family },
                    ServiceVia::Endpoint(pod) => DestinationRef::Endpoint { service, pod, port, family },
                    ServiceVia::NodePort => {
                        let node = match index.node_with_ip(*ip) {
                            Some(name) => NodeAddrRef::Node(name, family),
                            None => NodeAddrRef::Ip(*ip),
                        };
                        DestinationRef::NodePort { node, port }
                    }
                }
            }
            Target::Node { node, ip, port } => {
                DestinationRef::Node { node, port: *port, family: IpFamily::of(*ip) }
            }
            Target::Dns { name, record, nameserver, transport } => {
                DestinationRef::Dns { name, record: *record, nameserver: *nameserver, transport: *transport }
            }
            Target::Address { ip, port } => DestinationRef::Address { ip: *ip, port: *port },
        }
    }

    pub fn into_owned(self) -> Destination {
        match self {
            DestinationRef::Pod { pod, port, family } => Destination::Pod { pod: pod.clone(), port, family },
            DestinationRef::Service { service, port, family } => {
                Destination::Service { service: service.clone(), port, family }
            }
            DestinationRef::Endpoint { service, pod, port, family } => {
                Destination::Endpoint { service: service.clone(), pod: pod.clone(), port, family }
            }
            DestinationRef::NodePort { node, port } => {
                let node = match node {
                    NodeAddrRef::Node(name, family) => NodeAddr::Node(name.clone(), family),
                    NodeAddrRef::Ip(ip) => NodeAddr::Ip(ip),
                };
                Destination::NodePort { node, port }
            }
            DestinationRef::Node { node, port, family } => {
                Destination::Node { node: node.clone(), port, family }
            }
            DestinationRef::Dns { name, record, nameserver, transport } => {
                Destination::Dns { name: name.clone(), record, nameserver, transport }
            }
            DestinationRef::Address { ip, port } => Destination::Address { ip, port },
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
/// Hashed as its [`PodKeyRef`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodKey {
    pub source: Source,
    pub destination: Destination,
    pub kind: ProbeKind,
}

impl PodKey {
    pub fn of(result: &ProbeResult, index: &InventoryIndex) -> Self {
        PodKeyRef::of(result, index).into_owned()
    }

    pub fn as_ref(&self) -> PodKeyRef<'_> {
        PodKeyRef { source: &self.source, destination: self.destination.as_ref(), kind: self.kind }
    }

    /// `(source label, destination label)` as the API shows them.
    pub fn labels(&self) -> (String, String) {
        (self.source.to_string(), self.destination.to_string())
    }
}

impl Hash for PodKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

/// A [`PodKey`] borrowed from a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PodKeyRef<'a> {
    pub source: &'a Source,
    pub destination: DestinationRef<'a>,
    pub kind: ProbeKind,
}

impl<'a> PodKeyRef<'a> {
    pub fn of(result: &'a ProbeResult, index: &'a InventoryIndex) -> Self {
        PodKeyRef {
            source: &result.source,
            destination: DestinationRef::of(&result.target, index),
            kind: result.kind,
        }
    }

    pub fn into_owned(self) -> PodKey {
        PodKey { source: self.source.clone(), destination: self.destination.into_owned(), kind: self.kind }
    }
}

impl Equivalent<Destination> for DestinationRef<'_> {
    fn equivalent(&self, key: &Destination) -> bool {
        *self == key.as_ref()
    }
}

impl Equivalent<PodKey> for PodKeyRef<'_> {
    fn equivalent(&self, key: &PodKey) -> bool {
        *self == key.as_ref()
    }
}

/// Where a node-level cell's probes went. Hashed as its [`NodeDestinationRef`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeDestination {
    Node(NodeName),
    /// Every Service ClusterIP (`svc/*`).
    Services,
    /// Every DNS target (`dns/*`).
    Dns,
    /// Addresses outside the cluster (`external/*`).
    External,
}

impl NodeDestination {
    pub fn as_ref(&self) -> NodeDestinationRef<'_> {
        match self {
            NodeDestination::Node(n) => NodeDestinationRef::Node(n),
            NodeDestination::Services => NodeDestinationRef::Services,
            NodeDestination::Dns => NodeDestinationRef::Dns,
            NodeDestination::External => NodeDestinationRef::External,
        }
    }
}

impl Hash for NodeDestination {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

/// A [`NodeDestination`] borrowed from a result or the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeDestinationRef<'a> {
    Node(&'a NodeName),
    Services,
    Dns,
    External,
}

impl NodeDestinationRef<'_> {
    pub fn into_owned(self) -> NodeDestination {
        match self {
            NodeDestinationRef::Node(n) => NodeDestination::Node(n.clone()),
            NodeDestinationRef::Services => NodeDestination::Services,
            NodeDestinationRef::Dns => NodeDestination::Dns,
            NodeDestinationRef::External => NodeDestination::External,
        }
    }
}

impl Equivalent<NodeDestination> for NodeDestinationRef<'_> {
    fn equivalent(&self, key: &NodeDestination) -> bool {
        *self == key.as_ref()
    }
}

impl fmt::Display for NodeDestinationRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeDestinationRef::Node(n) => n.fmt(f),
            NodeDestinationRef::Services => f.write_str("svc/*"),
            NodeDestinationRef::Dns => f.write_str("dns/*"),
            NodeDestinationRef::External => f.write_str("external/*"),
        }
    }
}

impl fmt::Display for NodeDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

/// A node-level cell: reporting node to destination node (or pseudo-destination), per kind.
/// Hashed as its [`NodeKeyRef`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeKey {
    pub source: NodeName,
    pub destination: NodeDestination,
    pub kind: ProbeKind,
}

impl NodeKey {
    /// The node-level cell of a result reported by `node`'s agent; None when the inventory
    /// cannot place a pod or endpoint target.
    pub fn of(node: &NodeName, result: &ProbeResult, index: &InventoryIndex) -> Option<Self> {
        NodeKeyRef::of(node, result, index).map(NodeKeyRef::into_owned)
    }

    pub fn as_ref(&self) -> NodeKeyRef<'_> {
        NodeKeyRef { source: &self.source, destination: self.destination.as_ref(), kind: self.kind }
    }

    /// `(source label, destination label)` as the API shows them.
    pub fn labels(&self) -> (String, String) {
        (self.source.to_string(), self.destination.to_string())
    }
}

impl Hash for NodeKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

/// A [`NodeKey`] borrowed from a result and the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeKeyRef<'a> {
    pub source: &'a NodeName,
    pub destination: NodeDestinationRef<'a>,
    pub kind: ProbeKind,
}

impl<'a> NodeKeyRef<'a> {
    /// See [`NodeKey::of`].
    pub fn of(node: &'a NodeName, result: &'a ProbeResult, index: &'a InventoryIndex) -> Option<Self> {
        Some(NodeKeyRef {
            source: node,
            destination: node_destination(&result.target, index)?,
            kind: result.kind,
        })
    }

    pub fn into_owned(self) -> NodeKey {
        NodeKey { source: self.source.clone(), destination: self.destination.into_owned(), kind: self.kind }
    }
}

impl Equivalent<NodeKey> for NodeKeyRef<'_> {
    fn equivalent(&self, key: &NodeKey) -> bool {
        *self == key.as_ref()
    }
}

/// A batch with the node-level destination of each of its results, placed once for both the
/// matrix and the metrics.
#[derive(Debug)]
pub struct PlacedBatch<'a> {
    pub(crate) batch: &'a ResultBatch,
    pub(crate) index: &'a InventoryIndex,
    /// By result, in order: None when the inventory cannot place a pod or endpoint target.
    pub(crate) destinations: Vec<Option<NodeDestinationRef<'a>>>,
}

impl<'a> PlacedBatch<'a> {
    pub fn new(batch: &'a ResultBatch, index: &'a InventoryIndex) -> Self {
        let destinations = batch.results.iter().map(|r| node_destination(&r.target, index)).collect();
        PlacedBatch { batch, index, destinations }
    }

    /// The inventory index the batch was placed with.
    pub fn index(&self) -> &'a InventoryIndex {
        self.index
    }

    /// Each result with its node-level destination.
    pub fn iter(&self) -> impl Iterator<Item = (&'a ProbeResult, Option<NodeDestinationRef<'a>>)> + '_ {
        self.batch.results.iter().zip(self.destinations.iter().copied())
    }
}

/// The node (or pseudo-destination) `target` lives on; None when the inventory cannot place a
/// pod or endpoint target.
pub fn node_destination<'a>(target: &'a Target, index: &'a InventoryIndex) -> Option<NodeDestinationRef<'a>> {
    let by_ip = |ip: IpAddr| match index.place_of_ip(ip) {
        Some(Place::Node(n)) => NodeDestinationRef::Node(n),
        Some(Place::ServiceVip) => NodeDestinationRef::Services,
        None => NodeDestinationRef::External,
    };
    let pod_node = |pod: &PodRef, ip: IpAddr| match index.node_of_pod(pod) {
        Some(n) => Some(NodeDestinationRef::Node(n)),
        None => match index.place_of_ip(ip) {
            Some(Place::Node(n)) => Some(NodeDestinationRef::Node(n)),
            _ => None,
        },
    };
    Some(match target {
        Target::Pod { pod, ip, .. } => pod_node(pod, *ip)?,
        Target::Service { via: ServiceVia::Endpoint(pod), ip, .. } => pod_node(pod, *ip)?,
        Target::Service { via: ServiceVia::ClusterIp, .. } => NodeDestinationRef::Services,
        Target::Service { via: ServiceVia::NodePort, ip, .. } => by_ip(*ip),
        Target::Node { node, .. } => NodeDestinationRef::Node(node),
        Target::Dns { .. } => NodeDestinationRef::Dns,
        Target::Address { ip, .. } => by_ip(*ip),
    })
}
