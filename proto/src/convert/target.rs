//! Where probes run from and what they aim at: `PodName`, `Source`, `Target`.

use netdiag_model::{DnsName, Name, Namespace, NodeName, PodRef, ServiceRef, ServiceVia, Source, Target};

use super::enums::{self, wire};
use super::error::{At, ConvertError, ErrorKind};
use super::field::{Result, ip, opt_ip, opt_port, opt_port_to_wire, port, required};
use crate::v1;

fn names(p: v1::PodName) -> Result<(Namespace, Name)> {
    Ok((Namespace::new(p.namespace).at("namespace")?, Name::new(p.name).at("name")?))
}

pub(crate) fn pod_ref(p: v1::PodName) -> Result<PodRef> {
    let (namespace, name) = names(p)?;
    Ok(PodRef::new(namespace, name))
}

pub(crate) fn service_ref(p: v1::PodName) -> Result<ServiceRef> {
    let (namespace, name) = names(p)?;
    Ok(ServiceRef::new(namespace, name))
}

/// Converts a required `PodName` sub-message.
pub(crate) fn req_pod_ref(p: Option<v1::PodName>) -> Result<PodRef> {
    required(p).and_then(pod_ref)
}

pub(crate) fn req_service_ref(p: Option<v1::PodName>) -> Result<ServiceRef> {
    required(p).and_then(service_ref)
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
        use v1::source::Kind;
        match required(s.kind).at("kind")? {
            Kind::Pod(p) => Ok(Source::Pod(pod_ref(p).at("pod")?)),
            Kind::Node(n) => Ok(Source::Node(NodeName::new(n).at("node")?)),
        }
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

fn service_target(t: v1::ServiceTarget) -> Result<Target> {
    let via = match (t.endpoint, t.node_port) {
        (None, false) => ServiceVia::ClusterIp,
        (None, true) => ServiceVia::NodePort,
        (Some(e), false) => ServiceVia::Endpoint(pod_ref(e).at("endpoint")?),
        (Some(_), true) => {
            return Err(ErrorKind::Conflict(
                "a probe through a NodePort cannot also go straight to an endpoint",
            ))
            .at("node_port");
        }
    };
    Ok(Target::Service {
        service: req_service_ref(t.service).at("service")?,
        ip: ip(&t.ip).at("ip")?,
        port: port(t.port).at("port")?,
        via,
    })
}

impl TryFrom<v1::Target> for Target {
    type Error = ConvertError;
    fn try_from(t: v1::Target) -> Result<Self> {
        use v1::target::Kind;
        match required(t.kind).at("kind")? {
            Kind::Pod(p) => pod_target(p).at("pod"),
            Kind::Service(s) => service_target(s).at("service"),
            Kind::Node(n) => node_target(n).at("node"),
            Kind::Dns(d) => dns_target(d).at("dns"),
            Kind::Address(a) => address_target(a).at("address"),
        }
    }
}

fn pod_target(p: v1::PodTarget) -> Result<Target> {
    Ok(Target::Pod {
        pod: req_pod_ref(p.pod).at("pod")?,
        ip: ip(&p.ip).at("ip")?,
        port: opt_port(p.port).at("port")?,
    })
}

fn node_target(n: v1::NodeTarget) -> Result<Target> {
    Ok(Target::Node {
        node: NodeName::new(n.node).at("node")?,
        ip: ip(&n.ip).at("ip")?,
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
                })
            }
            Target::Node { node, ip, port } => Kind::Node(v1::NodeTarget {
                node: node.into(),
                ip: ip.to_string(),
                port: opt_port_to_wire(port),
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
