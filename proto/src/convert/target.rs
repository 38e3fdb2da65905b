//! Where probes run from and what they aim at: `PodName`, `Source`, `Target`.
//!
//! The `*_with` forms take a [`Names`]: the names already converted in the same message, so a
//! result batch's tables validate and allocate each recurring name once and share it.

use std::hash::Hash;

use hashbrown::{Equivalent, HashSet};

use netdiag_model::{
    DnsName, Name, NameError, Namespace, NodeName, PodRef, ServiceRef, ServiceVia, Source, Target,
};

use super::enums::{self, wire};
use super::error::{At, ConvertError, ErrorKind};
use super::field::{
    Result, ip, ip_or_bytes, ip_to_bytes, opt_ip, opt_port, opt_port_to_wire, port, required,
};
use crate::v1;

/// Names converted so far in one message, each checked once; [`Names::default`] remembers
/// nothing (a lone target has nothing to share).
#[derive(Debug, Default)]
pub(crate) struct Names {
    seen: Option<Box<Seen>>,
}

#[derive(Debug, Default)]
struct Seen {
    namespaces: HashSet<Namespace>,
    names: HashSet<Name>,
    nodes: HashSet<NodeName>,
}

/// A name's text, to look the name up in a set without converting it first. It hashes as the
/// names do (their derived `Hash` is their text's); were that ever to differ, lookups would just
/// miss and every name be checked again.
#[derive(Hash)]
struct Text<'a>(&'a str);

macro_rules! text_finds {
    ($($ty:ty),+) => {
        $(impl Equivalent<$ty> for Text<'_> {
            fn equivalent(&self, name: &$ty) -> bool {
                self.0 == name.as_str()
            }
        })+
    };
}

text_finds!(Namespace, Name, NodeName);

/// The name `s` from `seen`, or checked by `new` and remembered.
fn shared<T: Clone + Eq + Hash>(
    seen: Option<&mut HashSet<T>>,
    s: String,
    new: fn(String) -> std::result::Result<T, NameError>,
) -> std::result::Result<T, NameError>
where
    for<'a> Text<'a>: Equivalent<T>,
{
    let Some(seen) = seen else { return new(s) };
    if let Some(known) = seen.get(&Text(&s)) {
        return Ok(known.clone());
    }
    let name = new(s)?;
    seen.insert(name.clone());
    Ok(name)
}

impl Names {
    /// Names that remember what they converted.
    pub(crate) fn shared() -> Self {
        Names { seen: Some(Box::default()) }
    }

    fn namespace(&mut self, s: String) -> std::result::Result<Namespace, NameError> {
        shared(self.seen.as_mut().map(|s| &mut s.namespaces), s, Namespace::new)
    }

    fn name(&mut self, s: String) -> std::result::Result<Name, NameError> {
        shared(self.seen.as_mut().map(|s| &mut s.names), s, Name::new)
    }

    fn node(&mut self, s: String) -> std::result::Result<NodeName, NameError> {
        shared(self.seen.as_mut().map(|s| &mut s.nodes), s, NodeName::new)
    }
}

fn names_with(p: v1::PodName, names: &mut Names) -> Result<(Namespace, Name)> {
    Ok((names.namespace(p.namespace).at("namespace")?, names.name(p.name).at("name")?))
}

fn pod_ref_with(p: v1::PodName, names: &mut Names) -> Result<PodRef> {
    let (namespace, name) = names_with(p, names)?;
    Ok(PodRef::new(namespace, name))
}

pub(crate) fn pod_ref(p: v1::PodName) -> Result<PodRef> {
    pod_ref_with(p, &mut Names::default())
}

fn service_ref_with(p: v1::PodName, names: &mut Names) -> Result<ServiceRef> {
    let (namespace, name) = names_with(p, names)?;
    Ok(ServiceRef::new(namespace, name))
}

pub(crate) fn service_ref(p: v1::PodName) -> Result<ServiceRef> {
    service_ref_with(p, &mut Names::default())
}

/// Converts a required `PodName` sub-message.
fn req_pod_ref_with(p: Option<v1::PodName>, names: &mut Names) -> Result<PodRef> {
    pod_ref_with(required(p)?, names)
}

fn req_service_ref_with(p: Option<v1::PodName>, names: &mut Names) -> Result<ServiceRef> {
    service_ref_with(required(p)?, names)
}

pub(crate) fn req_service_ref(p: Option<v1::PodName>) -> Result<ServiceRef> {
    req_service_ref_with(p, &mut Names::default())
}

impl From<PodRef> for v1::PodName {
    fn from(p: PodRef) -> Self {
        v1::PodName { namespace: p.namespace.into(), name: p.name.into() }
    }
}

impl From<ServiceRef> for v1::PodName {
    fn from(s: ServiceRef) -> Self {
        v1::PodName { namespace: s.namespace.into(), name: s.name.into() }
    }
}

impl TryFrom<v1::Source> for Source {
    type Error = ConvertError;
    fn try_from(s: v1::Source) -> Result<Self> {
        source_with(s, &mut Names::default())
    }
}

pub(crate) fn source_with(s: v1::Source, names: &mut Names) -> Result<Source> {
    use v1::source::Kind;
    match required(s.kind).at("kind")? {
        Kind::Pod(p) => Ok(Source::Pod(pod_ref_with(p, names).at("pod")?)),
        Kind::Node(n) => Ok(Source::Node(names.node(n).at("node")?)),
    }
}

impl From<Source> for v1::Source {
    fn from(s: Source) -> Self {
        use v1::source::Kind;
        let kind = match s {
            Source::Pod(p) => Kind::Pod(p.into()),
            Source::Node(n) => Kind::Node(n.into()),
        };
        v1::Source { kind: Some(kind) }
    }
}

/// An optional `Source` sub-message (inspect requests: unset means everything).
pub(crate) fn opt_source(s: Option<v1::Source>) -> Result<Option<Source>> {
    s.map(Source::try_from).transpose()
}

pub(crate) fn req_source(s: Option<v1::Source>) -> Result<Source> {
    required(s).and_then(Source::try_from)
}

fn service_target(t: v1::ServiceTarget, names: &mut Names) -> Result<Target> {
    let via = match (t.endpoint, t.node_port) {
        (None, false) => ServiceVia::ClusterIp,
        (None, true) => ServiceVia::NodePort,
        (Some(e), false) => ServiceVia::Endpoint(pod_ref_with(e, names).at("endpoint")?),
        (Some(_), true) => {
            return Err(ErrorKind::Conflict(
                "a probe through a NodePort cannot also go straight to an endpoint",
            ))
            .at("node_port");
        }
    };
    Ok(Target::Service {
        service: req_service_ref_with(t.service, names).at("service")?,
        ip: ip_or_bytes(&t.ip, &t.ip_bytes)?,
        port: port(t.port).at("port")?,
        via,
    })
}

impl TryFrom<v1::Target> for Target {
    type Error = ConvertError;
    fn try_from(t: v1::Target) -> Result<Self> {
        target_with(t, &mut Names::default())
    }
}

pub(crate) fn target_with(t: v1::Target, names: &mut Names) -> Result<Target> {
    use v1::target::Kind;
    match required(t.kind).at("kind")? {
        Kind::Pod(p) => pod_target(p, names).at("pod"),
        Kind::Service(s) => service_target(s, names).at("service"),
        Kind::Node(n) => node_target(n, names).at("node"),
        Kind::Dns(d) => dns_target(d).at("dns"),
        Kind::Address(a) => address_target(a).at("address"),
    }
}

fn pod_target(p: v1::PodTarget, names: &mut Names) -> Result<Target> {
    Ok(Target::Pod {
        pod: req_pod_ref_with(p.pod, names).at("pod")?,
        ip: ip_or_bytes(&p.ip, &p.ip_bytes)?,
        port: opt_port(p.port).at("port")?,
    })
}

fn node_target(n: v1::NodeTarget, names: &mut Names) -> Result<Target> {
    Ok(Target::Node {
        node: names.node(n.node).at("node")?,
        ip: ip_or_bytes(&n.ip, &n.ip_bytes)?,
        port: opt_port(n.port).at("port")?,
    })
}

fn dns_target(d: v1::DnsTarget) -> Result<Target> {
    Ok(Target::Dns {
        name: DnsName::new(d.name).at("name")?,
        record: enums::record_type(d.record_type).at("record_type")?,
        nameserver: opt_ip(&d.nameserver).at("nameserver")?,
        transport: enums::dns_transport(d.transport).at("transport")?,
    })
}

fn address_target(a: v1::AddressTarget) -> Result<Target> {
    Ok(Target::Address { ip: ip(&a.ip).at("ip")?, port: opt_port(a.port).at("port")? })
}

impl From<Target> for v1::Target {
    fn from(t: Target) -> Self {
        use v1::target::Kind;
        let kind = match t {
            Target::Pod { pod, ip, port } => Kind::Pod(v1::PodTarget {
                pod: Some(pod.into()),
                ip: ip.to_string(),
                port: opt_port_to_wire(port),
                ip_bytes: Vec::new(),
            }),
            Target::Service { service, ip, port, via } => {
                let (endpoint, node_port) = match via {
                    ServiceVia::ClusterIp => (None, false),
                    ServiceVia::NodePort => (None, true),
                    ServiceVia::Endpoint(p) => (Some(p.into()), false),
                };
                Kind::Service(v1::ServiceTarget {
                    service: Some(service.into()),
                    ip: ip.to_string(),
                    port: port.get().into(),
                    endpoint,
                    node_port,
                    ip_bytes: Vec::new(),
                })
            }
            Target::Node { node, ip, port } => Kind::Node(v1::NodeTarget {
                node: node.into(),
                ip: ip.to_string(),
                port: opt_port_to_wire(port),
                ip_bytes: Vec::new(),
            }),
            Target::Dns { name, record, nameserver, transport } => Kind::Dns(v1::DnsTarget {
                name: name.into(),
                record_type: wire::<v1::RecordType, _>(record),
                nameserver: nameserver.map(|n| n.to_string()).unwrap_or_default(),
                transport: wire::<v1::DnsTransport, _>(transport),
            }),
            Target::Address { ip, port } => {
                Kind::Address(v1::AddressTarget { ip: ip.to_string(), port: opt_port_to_wire(port) })
            }
        };
        v1::Target { kind: Some(kind) }
    }
}

/// The wire form of `target` for a result batch's table: pod, service and node addresses as
/// `ip_bytes` (text for DNS nameservers and bare addresses).
pub(crate) fn tabled_target(target: &Target) -> v1::Target {
    use v1::target::Kind;
    let mut wire = v1::Target::from(target.clone());
    let ip = match target {
        Target::Pod { ip, .. } | Target::Service { ip, .. } | Target::Node { ip, .. } => *ip,
        Target::Dns { .. } | Target::Address { .. } => return wire,
    };
    let (text, bytes) = match &mut wire.kind {
        Some(Kind::Pod(p)) => (&mut p.ip, &mut p.ip_bytes),
        Some(Kind::Service(s)) => (&mut s.ip, &mut s.ip_bytes),
        Some(Kind::Node(n)) => (&mut n.ip, &mut n.ip_bytes),
        _ => return wire,
    };
    text.clear();
    *bytes = ip_to_bytes(ip);
    wire
}
