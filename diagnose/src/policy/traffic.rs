//! The question put to the evaluator: who connects to whom, on what, and by which way in.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use netdiag_model::inventory::{ContainerPort, PodInfo, TrafficPolicy};
use netdiag_model::netpol::PolicyProtocol;
use netdiag_model::{Name, Namespace, NodeName, Port};

/// A pod as policies see it: where it lives, its labels and its named ports.
#[derive(Debug, Clone, Copy)]
pub struct PodEndpoint<'a> {
    pub namespace: &'a Namespace,
    pub name: &'a Name,
    pub node: &'a NodeName,
    pub labels: &'a BTreeMap<String, String>,
    /// Resolve named ports when this pod is the destination.
    pub ports: &'a [ContainerPort],
    /// The address the connection uses; `None` while the pod has none (the verdict is pending).
    pub ip: Option<IpAddr>,
}

impl<'a> PodEndpoint<'a> {
    /// The pod at its first IP.
    pub fn of(pod: &'a PodInfo) -> Self {
        Self {
            namespace: &pod.namespace,
            name: &pod.name,
            node: &pod.node,
            labels: &pod.labels,
            ports: &pod.ports,
            ip: pod.ips.first().copied(),
        }
    }

    /// The same pod at another of its addresses (dual stack).
    pub fn at(self, ip: IpAddr) -> Self {
        Self { ip: Some(ip), ..self }
    }

    pub(crate) fn same_pod(&self, other: &PodEndpoint<'_>) -> bool {
        self.namespace == other.namespace && self.name == other.name
    }
}

/// What a node-owned address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// The node's own network stack (kubelet, a NodePort's masquerade).
    Node,
    /// A hostNetwork pod (netdiag's agents): policy treats it as its node, mostly; undefined.
    HostNetworkPod,
}

/// One end of a connection.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    Pod(PodEndpoint<'a>),
    /// An address of `node`: the node itself or a hostNetwork pod on it.
    Host {
        ip: IpAddr,
        node: &'a NodeName,
        kind: HostKind,
    },
    /// An address that belongs to nothing in the cluster.
    External(IpAddr),
}

impl Endpoint<'_> {
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Endpoint::Pod(p) => p.ip,
            Endpoint::Host { ip, .. } | Endpoint::External(ip) => Some(*ip),
        }
    }

    /// Pods and nodes: an ipBlock matching one is read differently by different plugins.
    pub fn in_cluster(&self) -> bool {
        !matches!(self, Endpoint::External(_))
    }

    pub fn pod(&self) -> Option<&PodEndpoint<'_>> {
        match self {
            Endpoint::Pod(p) => Some(p),
            _ => None,
        }
    }
}

impl fmt::Display for Endpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Pod(p) => write!(f, "pod {}/{}", p.namespace, p.name),
            Endpoint::Host { ip, node, kind: HostKind::Node } => write!(f, "node {node} ({ip})"),
            Endpoint::Host { ip, node, kind: HostKind::HostNetworkPod } => {
                write!(f, "a hostNetwork pod on node {node} ({ip})")
            }
            Endpoint::External(ip) => write!(f, "{ip}"),
        }
    }
}

/// The protocol and destination port of a connection (ICMP has no port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp(Port),
    Udp(Port),
    Sctp(Port),
    Icmp,
}

impl Transport {
    /// The policy protocol and port; `None` for ICMP, which no `ports` entry can name.
    pub fn l4(self) -> Option<(PolicyProtocol, Port)> {
        match self {
            Transport::Tcp(p) => Some((PolicyProtocol::Tcp, p)),
            Transport::Udp(p) => Some((PolicyProtocol::Udp, p)),
            Transport::Sctp(p) => Some((PolicyProtocol::Sctp, p)),
            Transport::Icmp => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.l4() {
            Some((proto, port)) => write!(f, "{port}/{proto}"),
            None => f.write_str("ICMP"),
        }
    }
}

/// How the destination was reached. For every way through a Service the caller has already
/// translated the address to one backend and its `targetPort`: policies see the packet after
/// DNAT [NETPOL §6].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The destination's own address.
    Direct,
    /// A Service's ClusterIP.
    ClusterIp,
    /// A NodePort; under `Cluster` the source is masqueraded, under `Local` it is kept.
    NodePort { external_traffic_policy: TrafficPolicy },
    /// A LoadBalancer address, as [`Via::NodePort`].
    LoadBalancer { external_traffic_policy: TrafficPolicy },
}

impl Via {
    pub(crate) fn is_service(self) -> bool {
        self != Via::Direct
    }
}

/// One connection to judge: `source` opens it to `destination` on `transport`, by `via`.
#[derive(Debug, Clone, Copy)]
pub struct Traffic<'a> {
    pub source: Endpoint<'a>,
    pub destination: Endpoint<'a>,
    pub transport: Transport,
    pub via: Via,
}
