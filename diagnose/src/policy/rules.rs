//! Whether one rule admits a connection, and what that admission relies on.
//!
//! A rule admits when some peer matches the other end and some port entry matches the
//! destination port (an empty list matches all) [NETPOL §3]. Pod and namespace selectors match
//! pods only; an ipBlock matches any address, and matching a pod or node address is
//! plugin-dependent. Ports match on protocol first; a name is resolved on the destination pod
//! (name, number and protocol of one container port), never on a non-pod; a range used beyond
//! its `port` relies on `endPort` support [NETPOL §4, §5].

use std::collections::BTreeSet;

use netdiag_model::Namespace;
use netdiag_model::inventory::Protocol;
use netdiag_model::netpol::{Peer, PolicyPort, PolicyProtocol, PortRule, Rule};

use super::set::PolicySet;
use super::traffic::{Endpoint, Transport};
use super::verdict::PluginDependence;

/// What an admission relies on; empty when every conforming plugin admits it.
pub(crate) type Reliance = BTreeSet<PluginDependence>;

/// Of several ways to admit, the sturdiest: one relying on nothing wins; otherwise each of
/// them relies on something, and the union is reported. `None` when there is no way at all.
pub(crate) fn sturdiest(ways: impl IntoIterator<Item = Reliance>) -> Option<Reliance> {
    let mut out: Option<Reliance> = None;
    for way in ways {
        if way.is_empty() {
            return Some(way);
        }
        out.get_or_insert_with(Reliance::new).extend(way);
    }
    out
}

/// Whether `rule`, of a policy in `policy_ns`, admits a connection whose far end (the source
/// for ingress, the destination for egress) is `peer`, to `destination` on `transport`.
pub(crate) fn admits(
    set: &PolicySet,
    policy_ns: &Namespace,
    rule: &Rule,
    peer: &Endpoint<'_>,
    destination: &Endpoint<'_>,
    transport: Transport,
) -> Option<Reliance> {
    let by_peer = if rule.peers().is_empty() {
        Some(Reliance::new())
    } else {
        sturdiest(rule.peers().iter().filter_map(|p| peer_matches(set, policy_ns, p, peer)))
    }?;
    let by_port = if rule.ports().is_empty() {
        Some(Reliance::new())
    } else {
        sturdiest(rule.ports().iter().filter_map(|p| port_matches(p, destination, transport)))
    }?;
    Some(by_peer.into_iter().chain(by_port).collect())
}

fn peer_matches(
    set: &PolicySet,
    policy_ns: &Namespace,
    peer: &Peer,
    other: &Endpoint<'_>,
) -> Option<Reliance> {
    match peer {
        Peer::Pods { pods, namespaces } => {
            let pod = other.pod()?;
            let in_namespace = match namespaces {
                None => pod.namespace == policy_ns,
                Some(selector) => set.namespace_matches(selector, pod.namespace),
            };
            (in_namespace && pods.matches(pod.labels)).then(Reliance::new)
        }
        Peer::IpBlock(block) => {
            let ip = other.ip()?;
            block.contains(ip).then(|| {
                let mut r = Reliance::new();
                if other.in_cluster() {
                    r.insert(PluginDependence::IpBlockInCluster);
                }
                r
            })
        }
    }
}

fn port_matches(entry: &PortRule, destination: &Endpoint<'_>, transport: Transport) -> Option<Reliance> {
    let (protocol, port) = transport.l4()?;
    if entry.protocol != protocol {
        return None;
    }
    match &entry.port {
        PolicyPort::Any => Some(Reliance::new()),
        PolicyPort::Number(n) => (*n == port).then(Reliance::new),
        PolicyPort::Range { start, end } => (*start <= port && port <= *end).then(|| {
            let mut r = Reliance::new();
            if port != *start {
                r.insert(PluginDependence::EndPort);
            }
            r
        }),
        PolicyPort::Named(name) => {
            let pod = destination.pod()?;
            pod.ports
                .iter()
                .any(|cp| {
                    cp.name.as_deref() == Some(name.as_str())
                        && cp.port == port
                        && container_protocol(cp.protocol) == protocol
                })
                .then(Reliance::new)
        }
    }
}

fn container_protocol(p: Protocol) -> PolicyProtocol {
    match p {
        Protocol::Tcp => PolicyProtocol::Tcp,
        Protocol::Udp => PolicyProtocol::Udp,
    }
}
