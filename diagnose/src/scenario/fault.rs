//! The faults a scenario injects, by name ([`Fault`]) and by class ([`FaultClass`], what the
//! benchmark tabulates), and their resolved form over a cluster's indices ([`Effect`]) that the
//! network model applies to each packet.

use std::fmt;

use netdiag_model::{NodeName, PodRef};

use super::cluster::Cluster;
pub use crate::sim::Direction;

/// The sources a filter singles out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    /// The node's own namespace and every pod on it.
    Node(NodeName),
    /// Every pod of the namespace.
    Namespace(String),
}

impl fmt::Display for Group {
    /// As the engine's culprit names write it: `node <name>`, `namespace <name>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Node(n) => write!(f, "node {n}"),
            Group::Namespace(ns) => write!(f, "namespace {ns}"),
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The pod's interface is down: nothing reaches it, it reaches nothing.
    PodDown(PodRef),
    /// Every packet between the node (and its pods) and any other node is dropped.
    NodeIsolated(NodeName),
    /// Every packet between the two nodes is dropped, both ways.
    PairCut(NodeName, NodeName),
    /// Nothing listens on the pod's port: TCP is refused.
    PortRefused(PodRef, u16),
    /// TCP to the pod's port is dropped.
    PortDropped(PodRef, u16),
    /// Everything into the pod from the group is dropped (replies pass: stateful).
    Filter(PodRef, Group),
    /// Large packets into (or out of) the node vanish without an ICMP error.
    MtuOneWay(NodeName, Direction),
    /// Packets through the node's uplink are lost: `share` each way crossed, both ways when
    /// `direction` is None.
    Loss { node: NodeName, share: f64, direction: Option<Direction> },
    /// The cluster DNS answers nothing (its pods still answer ICMP).
    DnsDown,
    /// The cluster DNS drops this share of lookups.
    DnsLoss(f64),
    /// ICMP into the node and its pods from other nodes is dropped; TCP passes.
    IcmpFiltered(NodeName),
    /// The node forwards nothing for its pods (a FORWARD policy of DROP, a CNI bridge down),
    /// with no setting in its inspection to say so; it still delivers to itself.
    ForwardingBroken(NodeName),
    /// A DNAT written by hand on the node, outside kube-proxy's chains (its inspection shows
    /// it): TCP to the pod's port that enters the node before routing — from its pods, or from
    /// elsewhere when the pod is on it — goes to an address no one holds.
    NatRewrite(NodeName, PodRef, u16),
}

/// What the benchmark tabulates: a fault's kind, with its direction or source group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultClass {
    PodDown,
    NodeIsolated,
    PairCut,
    PortRefused,
    PortDropped,
    FilterFromNode,
    FilterFromNamespace,
    MtuInto,
    MtuOutOf,
    LossBothWays,
    LossInto,
    LossOutOf,
    DnsDown,
    DnsLoss,
    IcmpFiltered,
    ForwardingBroken,
    NatRewrite,
}

impl FaultClass {
    pub const ALL: [FaultClass; 17] = [
        FaultClass::PodDown,
        FaultClass::NodeIsolated,
        FaultClass::PairCut,
        FaultClass::PortRefused,
        FaultClass::PortDropped,
        FaultClass::FilterFromNode,
        FaultClass::FilterFromNamespace,
        FaultClass::MtuInto,
        FaultClass::MtuOutOf,
        FaultClass::LossBothWays,
        FaultClass::LossInto,
        FaultClass::LossOutOf,
        FaultClass::DnsDown,
        FaultClass::DnsLoss,
        FaultClass::IcmpFiltered,
        FaultClass::ForwardingBroken,
        FaultClass::NatRewrite,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FaultClass::PodDown => "pod down",
            FaultClass::NodeIsolated => "node isolated",
            FaultClass::PairCut => "node pair cut",
            FaultClass::PortRefused => "port refused",
            FaultClass::PortDropped => "port dropped",
            FaultClass::FilterFromNode => "filter from node",
            FaultClass::FilterFromNamespace => "filter from namespace",
            FaultClass::MtuInto => "mtu black hole in",
            FaultClass::MtuOutOf => "mtu black hole out",
            FaultClass::LossBothWays => "loss both ways",
            FaultClass::LossInto => "loss in",
            FaultClass::LossOutOf => "loss out",
            FaultClass::DnsDown => "dns down",
            FaultClass::DnsLoss => "dns loss",
            FaultClass::IcmpFiltered => "icmp filtered",
            FaultClass::ForwardingBroken => "forwarding broken",
            FaultClass::NatRewrite => "nat rewrite by hand",
        }
    }

    /// Whether the class breaks the cluster DNS (a scenario holds at most one such fault).
    pub fn is_dns(self) -> bool {
        matches!(self, FaultClass::DnsDown | FaultClass::DnsLoss)
    }
}

impl Fault {
    pub fn class(&self) -> FaultClass {
        match self {
            Fault::PodDown(_) => FaultClass::PodDown,
            Fault::NodeIsolated(_) => FaultClass::NodeIsolated,
            Fault::PairCut(..) => FaultClass::PairCut,
            Fault::PortRefused(..) => FaultClass::PortRefused,
            Fault::PortDropped(..) => FaultClass::PortDropped,
            Fault::Filter(_, Group::Node(_)) => FaultClass::FilterFromNode,
            Fault::Filter(_, Group::Namespace(_)) => FaultClass::FilterFromNamespace,
            Fault::MtuOneWay(_, Direction::In) => FaultClass::MtuInto,
            Fault::MtuOneWay(_, Direction::Out) => FaultClass::MtuOutOf,
            Fault::Loss { direction: None, .. } => FaultClass::LossBothWays,
            Fault::Loss { direction: Some(Direction::In), .. } => FaultClass::LossInto,
            Fault::Loss { direction: Some(Direction::Out), .. } => FaultClass::LossOutOf,
            Fault::DnsDown => FaultClass::DnsDown,
            Fault::DnsLoss(_) => FaultClass::DnsLoss,
            Fault::IcmpFiltered(_) => FaultClass::IcmpFiltered,
            Fault::ForwardingBroken(_) => FaultClass::ForwardingBroken,
            Fault::NatRewrite(..) => FaultClass::NatRewrite,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = |d: &Direction| match d {
            Direction::In => "into",
            Direction::Out => "out of",
        };
        match self {
            Fault::PodDown(p) => write!(f, "pod {p} down"),
            Fault::NodeIsolated(n) => write!(f, "node {n} isolated"),
            Fault::PairCut(a, b) => write!(f, "pair {a}↔{b} cut"),
            Fault::PortRefused(p, port) => write!(f, "{p}:{port} refused"),
            Fault::PortDropped(p, port) => write!(f, "{p}:{port} dropped"),
            Fault::Filter(p, g) => write!(f, "{p} filters {g}"),
            Fault::MtuOneWay(n, d) => write!(f, "mtu black hole {} {n}", dir(d)),
            Fault::Loss { node, share, direction: None } => write!(f, "{:.0}% loss on {node}", 100.0 * share),
            Fault::Loss { node, share, direction: Some(d) } => {
                write!(f, "{:.0}% loss {} {node}", 100.0 * share, dir(d))
            }
            Fault::DnsDown => write!(f, "dns down"),
            Fault::DnsLoss(share) => write!(f, "dns losing {:.0}% of lookups", 100.0 * share),
            Fault::IcmpFiltered(n) => write!(f, "icmp filtered into {n}"),
            Fault::ForwardingBroken(n) => write!(f, "{n} forwards nothing"),
            Fault::NatRewrite(n, p, port) => write!(f, "{n} DNATs {p}:{port} away by hand"),
        }
    }
}

/// A fault over the cluster's indices.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Effect {
    PodDown(u32),
    NodeIsolated(u32),
    PairCut(u32, u32),
    PortRefused(u32, u16),
    PortDropped(u32, u16),
    FilterFromNode(u32, u32),
    FilterFromNamespace(u32, u32),
    MtuOneWay(u32, Direction),
    Loss(u32, f64, Option<Direction>),
    DnsDown,
    DnsLoss(f64),
    IcmpFiltered(u32),
    ForwardingBroken(u32),
    NatRewrite(u32, u32, u16),
}

impl Effect {
    /// The fault over `c`'s indices; None when it names something `c` does not hold.
    pub(crate) fn resolve(fault: &Fault, c: &Cluster) -> Option<Effect> {
        let pod = |p: &PodRef| c.pod_index(p);
        let node = |n: &NodeName| c.node_index(n);
        Some(match fault {
            Fault::PodDown(p) => Effect::PodDown(pod(p)?),
            Fault::NodeIsolated(n) => Effect::NodeIsolated(node(n)?),
            Fault::PairCut(a, b) => Effect::PairCut(node(a)?, node(b)?),
            Fault::PortRefused(p, port) => Effect::PortRefused(pod(p)?, *port),
            Fault::PortDropped(p, port) => Effect::PortDropped(pod(p)?, *port),
            Fault::Filter(p, Group::Node(n)) => Effect::FilterFromNode(pod(p)?, node(n)?),
            Fault::Filter(p, Group::Namespace(ns)) => {
                let ns = c.namespaces.iter().position(|n| n == ns)?;
                Effect::FilterFromNamespace(pod(p)?, u32::try_from(ns).ok()?)
            }
            Fault::MtuOneWay(n, d) => Effect::MtuOneWay(node(n)?, *d),
            Fault::Loss { node: n, share, direction } => Effect::Loss(node(n)?, *share, *direction),
            Fault::DnsDown => Effect::DnsDown,
            Fault::DnsLoss(share) => Effect::DnsLoss(*share),
            Fault::IcmpFiltered(n) => Effect::IcmpFiltered(node(n)?),
            Fault::ForwardingBroken(n) => Effect::ForwardingBroken(node(n)?),
            Fault::NatRewrite(n, p, port) => Effect::NatRewrite(node(n)?, pod(p)?, *port),
        })
    }
}
