//! Test support shared by the parsers' tests: fixtures, a one-line-per-frontend rendering for
//! table-driven comparisons, and the lab's expected NAT table in the same shape.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use netdiag_lab::plan::LabPlan;
use netdiag_lab::rules::{ExpectedNat, Family, NatOutcome};
use netdiag_lab::topology::{OPEN_TOPOLOGY, Topology};
use netdiag_model::inspect::NatService;

/// A file under `agent/tests/fixtures/`.
pub(crate) fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// One line per frontend: `service tcp 10.96.0.1:443 default/kubernetes:https -> 172.18.0.2:6443`,
/// `nodeport tcp *:30080 …`, targets in report order, `-> none` when there are none.
pub(crate) fn render(services: &[NatService]) -> String {
    let mut out = String::new();
    for s in services {
        let kind = if s.node_port { "nodeport" } else { "service" };
        let addr = match s.vip {
            Some(IpAddr::V6(ip)) => format!("[{ip}]"),
            Some(ip) => ip.to_string(),
            None => "*".to_owned(),
        };
        let name = s.service.as_ref().map_or_else(|| "?".to_owned(), ToString::to_string);
        let targets: Vec<String> =
            s.targets.iter().map(|t| SocketAddr::new(t.ip, t.port.get()).to_string()).collect();
        let targets = if targets.is_empty() { "none".to_owned() } else { targets.join(" ") };
        let _ = writeln!(out, "{kind} {} {addr}:{} {name} -> {targets}", s.protocol, s.port);
    }
    out
}

/// `expected`, one line per frontend, as [`report_lines`] writes them.
pub(crate) fn expected_lines(expected: &[ExpectedNat]) -> BTreeSet<String> {
    expected
        .iter()
        .map(|e| {
            let name = match &e.port_name {
                Some(p) => format!("{}:{p}", e.service),
                None => e.service.to_string(),
            };
            let mut targets: Vec<String> = match &e.outcome {
                NatOutcome::Dnat(eps) => eps.iter().map(ToString::to_string).collect(),
                NatOutcome::Reject | NatOutcome::Drop => Vec::new(),
            };
            targets.sort();
            let kind = match e.frontend {
                netdiag_lab::rules::Frontend::ClusterIp => "service",
                netdiag_lab::rules::Frontend::NodePort => "nodeport",
            };
            format!("{kind} {} {} {name} -> {}", e.protocol, e.destination(), targets.join(" "))
        })
        .collect()
}

/// `services` as [`expected_lines`] writes the lab's table: a node port matching every local
/// address is written with `node_ip`, targets sorted.
pub(crate) fn report_lines(services: &[NatService], node_ip: IpAddr) -> BTreeSet<String> {
    services
        .iter()
        .map(|s| {
            let ip = s.vip.unwrap_or(node_ip);
            let kind = if s.node_port { "nodeport" } else { "service" };
            let name = s.service.as_ref().map_or_else(|| "?".to_owned(), ToString::to_string);
            let mut targets: Vec<String> =
                s.targets.iter().map(|t| SocketAddr::new(t.ip, t.port.get()).to_string()).collect();
            targets.sort();
            let dest = SocketAddr::new(ip, s.port.get());
            format!("{kind} {} {dest} {name} -> {}", s.protocol, targets.join(" "))
        })
        .collect()
}

/// The lab plan of a topology text.
pub(crate) fn plan_from(yaml: &str) -> LabPlan {
    let topology = Topology::parse(yaml).expect("topology parses");
    LabPlan::from_topology(&topology).expect("topology plans")
}

fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the default topology no longer contains {from:?}");
    text.replace(from, to)
}

/// The lab shapes the parsers are checked against: the default lab, dual-stack,
/// `externalTrafficPolicy: Local` on the NodePort service, and a NodePort service without
/// endpoints.
pub(crate) fn lab_variants() -> Vec<(&'static str, String)> {
    let mut no_endpoints = OPEN_TOPOLOGY.trim_end().to_owned();
    no_endpoints.push_str(
        "\n  - namespace: tidb\n    name: demo-empty\n    type: NodePort\n    cluster_ip: 10.96.0.60\n    selector: { app.kubernetes.io/component: nothing }\n    ports: [{ name: web, port: 80, target_port: 8080, node_port: 30401 }]\n",
    );
    vec![
        ("default", OPEN_TOPOLOGY.to_owned()),
        ("dual-stack", edit(OPEN_TOPOLOGY, "ipv6: false", "ipv6: true")),
        (
            "etp-local",
            edit(
                OPEN_TOPOLOGY,
                "    type: NodePort\n",
                "    type: NodePort\n    external_traffic_policy: Local\n",
            ),
        ),
        ("no-endpoints", no_endpoints),
    ]
}

/// The address a node's node ports answer on in `family`.
pub(crate) fn node_ip(node: &netdiag_lab::plan::NodePlan, family: Family) -> Option<IpAddr> {
    match family {
        Family::V4 => Some(IpAddr::V4(node.ip)),
        Family::V6 => node.ip_v6.map(IpAddr::V6),
    }
}
