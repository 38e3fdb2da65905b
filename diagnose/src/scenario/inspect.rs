//! The nodes' inspections, as `sim.rs` writes them for a healthy lab: the uplink, a route to
//! every peer's pod CIDR (host-gw style), kube-proxy's NAT frontends for every service port
//! with its ready endpoints, forwarding on and conntrack's long default established timeout.
//! One fault class changes a node's state: a DNAT written by hand ([`with_nat_rules`] adds it to
//! its node's report); no other does, so the NAT and route rules have the healthy state to
//! compare against and never misfire on it. Pods are not inspected: the keepalive rules stay
//! out of the benchmark.

use std::collections::BTreeMap;

use netdiag_model::inspect::InspectionReport;
use netdiag_model::inventory::{Inventory, Protocol, ServiceInfo, TrafficPolicy};
use netdiag_model::probe::Source;
use netdiag_model::{NodeName, UnixMillis};
use serde_json::{Value, json};

/// Every node's report, keyed as the collector keeps them.
pub(crate) fn node_reports(
    inv: &Inventory,
    at: UnixMillis,
) -> Result<BTreeMap<Source, (NodeName, InspectionReport)>, serde_json::Error> {
    let peer_routes: Vec<(NodeName, Value)> = inv
        .nodes
        .iter()
        .filter_map(|peer| {
            let (cidr, gw) = (peer.pod_cidrs.first()?, peer.ips.first()?);
            let (destination, gateway) = (cidr.to_string(), gw.to_string());
            let route = json!({
                "destination": destination, "gateway": gateway, "device": "eth0", "table": 254, "metric": 0,
            });
            Some((peer.name.clone(), route))
        })
        .collect();
    let nat: Vec<Value> = inv.services.iter().flat_map(nat_frontends).collect();
    let mut out = BTreeMap::new();
    for n in &inv.nodes {
        let mut routes: Vec<Value> = inv
            .cluster
            .node_cidrs
            .iter()
            .map(|c| json!({"destination": c.to_string(), "device": "eth0", "table": 254, "metric": 0}))
            .collect();
        routes.extend(peer_routes.iter().filter(|(peer, _)| peer != &n.name).map(|(_, r)| r.clone()));
        let address = n.ips.first().map(|ip| format!("{ip}/16")).unwrap_or_default();
        let report = json!({
            "source": {"node": n.name.to_string()},
            "at": at.get(),
            "links": [
                {"name": "lo", "index": 1, "up": true, "mtu": 65536, "addresses": ["127.0.0.1/8"]},
                {"name": "eth0", "index": 2, "up": true, "mtu": 1500, "addresses": [address], "kind": "veth"},
            ],
            "routes": routes,
            "neighbours": [],
            "nat_services": nat,
            "sysctls": [
                {"key": "net.ipv4.ip_forward", "value": "1"},
                {"key": "net.netfilter.nf_conntrack_tcp_timeout_established", "value": "432000"},
            ],
            "resolv_conf": null,
            "proxy_mode": "iptables",
            "errors": [],
        });
        let report: InspectionReport = serde_json::from_value(report)?;
        out.insert(Source::Node(n.name.clone()), (n.name.clone(), report));
    }
    Ok(out)
}

/// kube-proxy's frontends for one service: each port on each VIP, and its NodePort.
fn nat_frontends(s: &ServiceInfo) -> Vec<Value> {
    let mut out = Vec::new();
    for p in &s.ports {
        let proto = if p.protocol == Protocol::Udp { "udp" } else { "tcp" };
        let name = match &p.name {
            Some(pn) => format!("{}:{pn}", s.service_ref()),
            None => s.service_ref().to_string(),
        };
        // A Local NodePort would DNAT to the node's own endpoints only; the generator makes none.
        debug_assert!(s.external_traffic_policy == TrafficPolicy::Cluster);
        let targets: Vec<Value> = s
            .ready_endpoints()
            .map(|e| json!({"ip": e.ip.to_string(), "port": p.target_port.get(), "chain": "KUBE-SEP-X"}))
            .collect();
        for vip in &s.cluster_ips {
            out.push(json!({
                "service": name, "vip": vip.to_string(), "port": p.port.get(), "protocol": proto,
                "targets": targets, "node_port": false,
            }));
        }
        if let Some(np) = p.node_port {
            out.push(json!({
                "service": name, "port": np.get(), "protocol": proto, "targets": targets, "node_port": true,
            }));
        }
    }
    out
}

/// `reports` with each hand-written DNAT of `faults` in its node's report, as the agent reads
/// `iptables -t nat -I PREROUTING -d <pod>/32 -p tcp -m tcp --dport <port> -j DNAT
/// --to-destination 10.255.255.254:<port>` (an address no one holds).
pub(crate) fn with_nat_rules(
    reports: &BTreeMap<Source, (NodeName, InspectionReport)>,
    inv: &Inventory,
    faults: &[super::Fault],
) -> Result<BTreeMap<Source, (NodeName, InspectionReport)>, serde_json::Error> {
    let mut out = reports.clone();
    for f in faults {
        let super::Fault::NatRewrite(n, p, port) = f else { continue };
        let (Some(ip), Some((_, report))) =
            (inv.pod(p).and_then(|i| i.ips.first()), out.get_mut(&Source::Node(n.clone())))
        else {
            continue;
        };
        let to = NAT_NOWHERE;
        report.nat_rules.push(serde_json::from_value(json!({
            "hook": "prerouting", "protocol": "tcp", "destination": {"net": format!("{ip}/32")},
            "destination_ports": [{"first": port, "last": port}],
            "action": {"kind": "dnat", "address": to, "port": port},
            "rule": format!("-A PREROUTING -d {ip}/32 -p tcp -m tcp --dport {port} -j DNAT --to-destination {to}:{port}"),
        }))?);
    }
    Ok(out)
}

/// Where a hand-written DNAT of the benchmark sends traffic: an address no one holds.
const NAT_NOWHERE: &str = "10.255.255.254";
