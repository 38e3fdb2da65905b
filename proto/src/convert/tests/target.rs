//! `Source` and `Target`: every variant round-trips; broken names, addresses, ports and enums
//! are rejected at their field.

use netdiag_model::{DnsTransport, RecordType, ServiceVia, Source, Target};

use super::fixtures::*;
use crate::v1;
use crate::v1::target::Kind;

fn targets() -> Vec<Target> {
    let svc = |via| Target::Service {
        service: "tidb/demo-pd".parse().unwrap(),
        ip: ip("10.96.0.20"),
        port: port(2379),
        via,
    };
    vec![
        Target::Pod { pod: pod("tidb/demo-pd-0"), ip: ip("10.244.1.2"), port: Some(port(2379)) },
        Target::Pod { pod: pod("tidb/demo-pd-0"), ip: ip("fd00::2"), port: None },
        svc(ServiceVia::ClusterIp),
        svc(ServiceVia::NodePort),
        svc(ServiceVia::Endpoint(pod("tidb/demo-pd-0"))),
        Target::Node { node: "node-2".parse().unwrap(), ip: ip("172.29.0.12"), port: Some(port(10250)) },
        Target::Dns {
            name: "kubernetes.default".parse().unwrap(),
            record: RecordType::Aaaa,
            nameserver: None,
            transport: DnsTransport::Tcp,
        },
        Target::Address { ip: ip("10.0.0.1"), port: Some(port(65535)) },
    ]
}

#[test]
fn sources_and_targets_round_trip() {
    round_trip::<Source, v1::Source>(Source::Pod(pod("tidb/demo-pd-0")));
    round_trip::<Source, v1::Source>(Source::Node("node-1.example".parse().unwrap()));
    for t in targets() {
        round_trip::<Target, v1::Target>(t);
    }
}

#[test]
fn hostile_sources() {
    let valid = v1::Source::from(Source::Pod(pod("tidb/demo-pd-0")));
    check_rejects::<Source, _>(
        &valid,
        &[
            ("unset oneof", |s| s.kind = None, "kind", "is missing"),
            (
                "bad namespace",
                |s| {
                    s.kind = Some(v1::source::Kind::Pod(v1::PodName {
                        namespace: "TiDB".into(),
                        name: "x".into(),
                    }))
                },
                "pod.namespace",
                "\"TiDB\" is not a valid name",
            ),
            (
                "empty node",
                |s| s.kind = Some(v1::source::Kind::Node(String::new())),
                "node",
                "node name is empty",
            ),
            (
                "huge node name",
                |s| s.kind = Some(v1::source::Kind::Node("n".repeat(1 << 20))),
                "node",
                "longer than 253 characters",
            ),
        ],
    );
}

fn kind(t: &mut v1::Target) -> &mut Kind {
    t.kind.as_mut().unwrap()
}

macro_rules! on {
    ($variant:ident, |$x:ident| $body:expr) => {
        |t: &mut v1::Target| match kind(t) {
            Kind::$variant($x) => $body,
            _ => panic!("fixture is not a {} target", stringify!($variant)),
        }
    };
}

#[test]
fn hostile_pod_targets() {
    let valid = v1::Target::from(targets()[0].clone());
    check_rejects::<Target, _>(
        &valid,
        &[
            ("unset oneof", |t| t.kind = None, "kind", "is missing"),
            (
                "bad ip",
                on!(Pod, |p| p.ip = "10.0.0.999".into()),
                "pod.ip",
                "\"10.0.0.999\" is not an IP address",
            ),
            ("empty ip", on!(Pod, |p| p.ip = String::new()), "pod.ip", "is missing"),
            ("ip with port", on!(Pod, |p| p.ip = "10.0.0.1:80".into()), "pod.ip", "not an IP address"),
            ("unset pod", on!(Pod, |p| p.pod = None), "pod.pod", "is missing"),
            (
                "bad pod name",
                on!(Pod, |p| p.pod.as_mut().unwrap().name = "a_b".into()),
                "pod.pod.name",
                "a_b",
            ),
            ("port above 65535", on!(Pod, |p| p.port = 65_536), "pod.port", "from 1 to 65535"),
            ("port way out", on!(Pod, |p| p.port = u32::MAX), "pod.port", "4294967295"),
        ],
    );
}

#[test]
fn hostile_service_targets() {
    let valid = v1::Target::from(targets()[4].clone());
    check_rejects::<Target, _>(
        &valid,
        &[
            ("port 0", on!(Service, |s| s.port = 0), "service.port", "from 1 to 65535"),
            (
                "endpoint and node port",
                on!(Service, |s| s.node_port = true),
                "service.node_port",
                "cannot also go straight to an endpoint",
            ),
            (
                "bad endpoint",
                on!(Service, |s| s.endpoint.as_mut().unwrap().namespace = String::new()),
                "service.endpoint.namespace",
                "namespace is empty",
            ),
            ("unset service", on!(Service, |s| s.service = None), "service.service", "is missing"),
            ("bad vip", on!(Service, |s| s.ip = "fd00::g".into()), "service.ip", "not an IP address"),
        ],
    );
}

#[test]
fn hostile_node_dns_and_address_targets() {
    let node = v1::Target::from(targets()[5].clone());
    check_rejects::<Target, _>(
        &node,
        &[
            ("bad node", on!(Node, |n| n.node = "Node-2".into()), "node.node", "Node-2"),
            ("bad ip", on!(Node, |n| n.ip = "node-2".into()), "node.ip", "not an IP address"),
        ],
    );
    let dns = v1::Target::from(targets()[6].clone());
    check_rejects::<Target, _>(
        &dns,
        &[
            (
                "record unspecified",
                on!(Dns, |d| d.record_type = 0),
                "dns.record_type",
                "record type is unspecified",
            ),
            (
                "record unknown",
                on!(Dns, |d| d.record_type = 99),
                "dns.record_type",
                "99 is not a known record type",
            ),
            ("transport unspecified", on!(Dns, |d| d.transport = 0), "dns.transport", "unspecified"),
            ("transport negative", on!(Dns, |d| d.transport = -1), "dns.transport", "-1 is not a known"),
            ("empty label", on!(Dns, |d| d.name = "a..b".into()), "dns.name", "empty label"),
            ("bad char", on!(Dns, |d| d.name = "a b".into()), "dns.name", "contains ' '"),
            ("empty name", on!(Dns, |d| d.name = String::new()), "dns.name", "DNS name is empty"),
            ("long name", on!(Dns, |d| d.name = "a.".repeat(200)), "dns.name", "more than the 253"),
            ("bad nameserver", on!(Dns, |d| d.nameserver = "dns".into()), "dns.nameserver", "not an IP"),
        ],
    );
    let address = v1::Target::from(targets()[7].clone());
    check_rejects::<Target, _>(
        &address,
        &[
            ("short ip", on!(Address, |a| a.ip = "1.2.3".into()), "address.ip", "\"1.2.3\""),
            ("port", on!(Address, |a| a.port = 100_000), "address.port", "100000"),
        ],
    );
}
