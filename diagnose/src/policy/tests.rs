//! NETPOL.md §9, one test per row, on its fixture: namespaces x, y and z labelled `ns=<n>`
//! (the `kubernetes.io/metadata.name` label is left to `NamespaceLabels::new`, which row 9
//! relies on), pods a, b and c in each, labelled `pod=<p>` and serving `serve-80-tcp`,
//! `serve-81-tcp`, `serve-80-udp` and `serve-81-udp`. Pods a and c run on node-1, b on node-2.
//! Then properties: with no policy everything is allowed; a policy that isolates nothing new
//! never turns an allow into a deny.

use std::collections::BTreeMap;
use std::net::IpAddr;

use netdiag_model::inventory::{ContainerPort, PodInfo, Protocol, ServicePort, TrafficPolicy};
use netdiag_model::netpol::{NamespaceLabels, NamespaceObject, NetworkPolicy, Policy, PolicyRef};
use netdiag_model::{NodeName, Port};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use PluginDependence::{EndPort, IpBlockInCluster, Sctp};
use UndefinedReason::{HostNetworkPeer, Icmp, NodePortOrLoadBalancer, ServiceHairpin};

const NODES: [(&str, &str); 2] = [("node-1", "172.29.0.11"), ("node-2", "172.29.0.12")];

fn node_ip(node: &str) -> IpAddr {
    let (_, ip) = NODES.iter().find(|(n, _)| *n == node).unwrap();
    ip.parse().unwrap()
}

/// Pod IPs: 10.244.<node>.<namespace><pod>, e.g. x/b is 10.244.2.11.
fn pod_info(ns: usize, pod: usize) -> PodInfo {
    let (nsn, podn) = (["x", "y", "z"][ns], ["a", "b", "c"][pod]);
    let node = if pod == 1 { 2 } else { 1 };
    let port = |name: &str, port: u32, protocol| ContainerPort {
        name: Some(name.into()),
        port: Port::new(port).unwrap(),
        protocol,
    };
    PodInfo {
        namespace: nsn.parse().unwrap(),
        name: podn.parse().unwrap(),
        node: format!("node-{node}").parse().unwrap(),
        ips: vec![format!("10.244.{node}.{}{}", ns + 1, pod).parse().unwrap()],
        labels: BTreeMap::from([("pod".to_owned(), podn.to_owned())]),
        ports: vec![
            port("serve-80-tcp", 80, Protocol::Tcp),
            port("serve-81-tcp", 81, Protocol::Tcp),
            port("serve-80-udp", 80, Protocol::Udp),
            port("serve-81-udp", 81, Protocol::Udp),
        ],
        netns: None,
        resolv_conf: None,
    }
}

/// A checked policy from a compact spec literal.
fn np(namespace: &str, name: &str, spec: Value) -> Policy {
    let wire: NetworkPolicy =
        serde_json::from_value(json!({"metadata": {"namespace": namespace, "name": name}, "spec": spec}))
            .unwrap();
    wire.check().unwrap()
}

/// `denyIn(x)`: `x{}` with types [Ingress] and no rules.
fn deny_in(namespace: &str) -> Policy {
    np(namespace, "deny-in", json!({"podSelector": {}, "policyTypes": ["Ingress"]}))
}

fn pod_sel(pod: &str) -> Value {
    json!({"matchLabels": {"pod": pod}})
}

fn ns_sel(ns: &str) -> Value {
    json!({"matchLabels": {"ns": ns}})
}

fn id(s: &str) -> PolicyRef {
    let (namespace, name) = s.split_once('/').unwrap();
    PolicyRef { namespace: namespace.parse().unwrap(), name: name.parse().unwrap() }
}

fn ids(list: &[&str]) -> Vec<PolicyRef> {
    list.iter().map(|s| id(s)).collect()
}

fn tcp(port: u32) -> Transport {
    Transport::Tcp(Port::new(port).unwrap())
}

fn udp(port: u32) -> Transport {
    Transport::Udp(Port::new(port).unwrap())
}

fn sctp(port: u32) -> Transport {
    Transport::Sctp(Port::new(port).unwrap())
}

struct Fixture {
    pods: Vec<PodInfo>,
    nodes: Vec<NodeName>,
    set: PolicySet,
}

impl Fixture {
    fn new(policies: Vec<Policy>) -> Self {
        let pods = (0..3).flat_map(|ns| (0..3).map(move |p| pod_info(ns, p))).collect();
        let namespaces = ["x", "y", "z"].map(|n| {
            NamespaceLabels::new(n.parse().unwrap(), BTreeMap::from([("ns".to_owned(), n.to_owned())]))
        });
        let nodes = NODES.iter().map(|(n, _)| n.parse().unwrap()).collect();
        Fixture { pods, nodes, set: PolicySet::new(policies, namespaces) }
    }

    fn pod(&self, r: &str) -> Endpoint<'_> {
        let p = self.pods.iter().find(|p| p.pod_ref().to_string() == r).unwrap();
        Endpoint::Pod(PodEndpoint::of(p))
    }

    fn ip_of(&self, r: &str) -> IpAddr {
        self.pod(r).ip().unwrap()
    }

    fn host(&self, node: &str, kind: HostKind) -> Endpoint<'_> {
        let name = self.nodes.iter().find(|n| n.as_str() == node).unwrap();
        Endpoint::Host { ip: node_ip(node), node: name, kind }
    }

    fn via(
        &self,
        source: Endpoint<'_>,
        destination: Endpoint<'_>,
        transport: Transport,
        via: Via,
    ) -> PolicyVerdict {
        self.set.evaluate(&Traffic { source, destination, transport, via })
    }

    fn check(&self, source: Endpoint<'_>, destination: Endpoint<'_>, transport: Transport) -> PolicyVerdict {
        self.via(source, destination, transport, Via::Direct)
    }

    fn pods(&self, from: &str, to: &str, transport: Transport) -> PolicyVerdict {
        self.check(self.pod(from), self.pod(to), transport)
    }
}

fn external(ip: &str) -> Endpoint<'static> {
    Endpoint::External(ip.parse().unwrap())
}

/// Asserts the verdict and both qualifier sets exactly.
#[track_caller]
fn expect(v: &PolicyVerdict, verdict: Verdict, plugin: &[PluginDependence], undefined: &[UndefinedReason]) {
    assert_eq!(v.verdict, verdict, "{v}\n{v:?}");
    assert_eq!(v.plugin_dependent.iter().copied().collect::<Vec<_>>(), plugin, "plugin-dependent: {v}");
    assert_eq!(v.undefined.iter().copied().collect::<Vec<_>>(), undefined, "undefined: {v}");
    if verdict == Verdict::Undefined {
        assert!(v.as_written.is_some());
    } else {
        let decision = match verdict {
            Verdict::Allow => Some(Decision::Allow),
            Verdict::Deny => Some(Decision::Deny),
            _ => None,
        };
        assert_eq!(v.as_written, decision, "{v}");
    }
}

#[track_caller]
fn allow(v: &PolicyVerdict) {
    expect(v, Verdict::Allow, &[], &[]);
}

#[track_caller]
fn deny(v: &PolicyVerdict) {
    expect(v, Verdict::Deny, &[], &[]);
}

#[test]
fn row_01_with_no_policy_nothing_is_isolated() {
    let f = Fixture::new(vec![]);
    let v = f.pods("x/a", "y/b", tcp(80));
    allow(&v);
    assert_eq!((&v.egress, &v.ingress), (&Side::NotIsolated, &Side::NotIsolated));
    assert_eq!(v.to_string(), "allowed: no policy isolates egress; no policy isolates ingress");
}

#[test]
fn row_02_default_deny_ingress_does_not_exempt_the_same_namespace_nor_touch_egress() {
    let f = Fixture::new(vec![deny_in("x")]);
    let v = f.pods("y/a", "x/b", tcp(80));
    deny(&v);
    assert_eq!(v.ingress, Side::Denied { isolated_by: ids(&["x/deny-in"]) });
    assert_eq!(v.to_string(), "denied: ingress is isolated by policy x/deny-in and no rule admits it");
    assert_eq!(v.deciding_policies(), [&id("x/deny-in")]);
    deny(&f.pods("x/a", "x/b", tcp(80)));
    let out = f.pods("x/a", "y/a", tcp(80));
    allow(&out);
    assert_eq!(out.egress, Side::NotIsolated);
}

#[test]
fn row_03_default_deny_all_isolates_the_source_for_egress() {
    let f = Fixture::new(vec![np(
        "x",
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    )]);
    let v = f.pods("x/a", "y/a", tcp(80));
    deny(&v);
    assert_eq!(v.egress, Side::Denied { isolated_by: ids(&["x/deny-all"]) });
    assert_eq!(v.ingress, Side::NotIsolated);
}

#[test]
fn row_04_a_bare_pod_selector_means_the_policy_namespace() {
    let f = Fixture::new(vec![np(
        "x",
        "from-b",
        json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"podSelector": pod_sel("b")}]}]}),
    )]);
    let v = f.pods("x/b", "x/a", tcp(80));
    allow(&v);
    assert_eq!(v.ingress, Side::Allowed { isolated_by: ids(&["x/from-b"]), allowed_by: ids(&["x/from-b"]) });
    deny(&f.pods("y/b", "x/a", tcp(80)));
}

#[test]
fn row_05_one_peer_item_with_both_selectors_is_an_and() {
    let peer = json!({
        "namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]},
        "podSelector": pod_sel("b"),
    });
    let f = Fixture::new(vec![np(
        "x",
        "and",
        json!({"podSelector": pod_sel("a"), "ingress": [{"from": [peer]}]}),
    )]);
    allow(&f.pods("y/b", "x/a", tcp(80)));
    deny(&f.pods("y/a", "x/a", tcp(80)));
    deny(&f.pods("x/b", "x/a", tcp(80)));
}

#[test]
fn row_06_two_peer_items_are_an_or() {
    let from = json!([
        {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]}},
        {"podSelector": pod_sel("b")},
    ]);
    let f =
        Fixture::new(vec![np("x", "or", json!({"podSelector": pod_sel("a"), "ingress": [{"from": from}]}))]);
    allow(&f.pods("y/a", "x/a", tcp(80)));
    allow(&f.pods("x/b", "x/a", tcp(80)));
    deny(&f.pods("x/c", "x/a", tcp(80)));
}

#[test]
fn row_07_an_empty_namespace_selector_admits_every_pod_but_no_other_address() {
    let f = Fixture::new(vec![np(
        "x",
        "all-ns",
        json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    )]);
    allow(&f.pods("z/a", "x/a", tcp(80)));
    let v = f.check(external("203.0.113.7"), f.pod("x/a"), tcp(80));
    deny(&v);
    assert_eq!(v.egress, Side::NotAPod);
}

#[test]
fn row_08_an_empty_pod_selector_peer_is_the_own_namespace_only() {
    let f = Fixture::new(vec![np(
        "x",
        "own-ns",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    )]);
    deny(&f.pods("y/a", "x/b", tcp(80)));
    allow(&f.pods("x/a", "x/b", tcp(80)));
}

#[test]
fn row_09_the_default_namespace_name_label_selects_a_namespace_by_name() {
    let peer = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}});
    let f = Fixture::new(vec![np(
        "x",
        "from-y",
        json!({"podSelector": pod_sel("a"), "ingress": [{"from": [peer]}]}),
    )]);
    allow(&f.pods("y/c", "x/a", tcp(80)));
    deny(&f.pods("z/a", "x/a", tcp(80)));
}

fn from_y_on(name: &str, port: u32) -> Policy {
    np(
        "x",
        name,
        json!({"podSelector": pod_sel("a"), "ingress": [{"from": [{"namespaceSelector": ns_sel("y")}], "ports": [{"protocol": "TCP", "port": port}]}]}),
    )
}

#[test]
fn row_10_a_port_restriction_admits_only_that_port() {
    let f = Fixture::new(vec![from_y_on("y-81", 81)]);
    allow(&f.pods("y/a", "x/a", tcp(81)));
    deny(&f.pods("y/a", "x/a", tcp(80)));
}

#[test]
fn row_11_stacked_policies_admit_their_union() {
    let f = Fixture::new(vec![from_y_on("y-81", 81), from_y_on("y-80", 80)]);
    let v = f.pods("y/a", "x/a", tcp(80));
    allow(&v);
    assert_eq!(
        v.ingress,
        Side::Allowed { isolated_by: ids(&["x/y-80", "x/y-81"]), allowed_by: ids(&["x/y-80"]) }
    );
    assert_eq!(v.to_string(), "allowed: no policy isolates egress; ingress is allowed by policy x/y-80");
}

#[test]
fn row_12_an_allow_all_rule_inside_the_union_wins() {
    let f = Fixture::new(vec![
        np("x", "port-80", json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]})),
        np("x", "allow-all", json!({"podSelector": {}, "ingress": [{}]})),
    ]);
    let v = f.pods("y/a", "x/a", tcp(81));
    allow(&v);
    assert_eq!(v.deciding_policies(), [&id("x/allow-all")]);
}

#[test]
fn row_13_a_protocol_without_port_admits_any_port_of_that_protocol_only() {
    let f = Fixture::new(vec![np(
        "x",
        "tcp",
        json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"protocol": "TCP"}]}]}),
    )]);
    deny(&f.pods("y/a", "x/a", udp(80)));
    allow(&f.pods("y/a", "x/a", tcp(80)));
    allow(&f.pods("y/a", "x/a", tcp(65535)));
}

#[test]
fn row_14_a_udp_rule_never_admits_tcp() {
    let f = Fixture::new(vec![np(
        "x",
        "udp-81",
        json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"protocol": "UDP", "port": 81}]}]}),
    )]);
    deny(&f.pods("y/a", "x/a", tcp(81)));
    allow(&f.pods("y/a", "x/a", udp(81)));
}

#[test]
fn row_15_an_sctp_rule_never_admits_tcp() {
    let sctp_81 = np(
        "x",
        "sctp-81",
        json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"protocol": "SCTP", "port": 81}]}]}),
    );
    let f = Fixture::new(vec![deny_in("x"), sctp_81]);
    let v = f.pods("y/a", "x/a", tcp(81));
    deny(&v);
    assert_eq!(v.ingress, Side::Denied { isolated_by: ids(&["x/deny-in", "x/sctp-81"]) });
    // SCTP itself is admitted, and flagged: plugins need not support it.
    expect(&f.pods("y/a", "x/a", sctp(81)), Verdict::Allow, &[Sctp], &[]);
}

#[test]
fn row_16_protocol_defaults_to_tcp() {
    let f = Fixture::new(vec![np(
        "x",
        "port-80",
        json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"port": 80}]}]}),
    )]);
    deny(&f.pods("y/a", "x/a", udp(80)));
    allow(&f.pods("y/a", "x/a", tcp(80)));
}

#[test]
fn row_17_a_named_ingress_port_resolves_on_the_destination() {
    let f = Fixture::new(vec![np(
        "x",
        "named",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}),
    )]);
    allow(&f.pods("y/a", "x/b", tcp(81)));
    deny(&f.pods("y/a", "x/b", tcp(80)));
}

#[test]
fn row_18_a_named_egress_port_without_to_resolves_on_the_destination_pod() {
    let f = Fixture::new(vec![np(
        "x",
        "named-out",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "serve-80-tcp"}]}]}),
    )]);
    allow(&f.pods("x/a", "y/a", tcp(80)));
    deny(&f.pods("x/a", "y/a", tcp(81)));
    // A name never matches a destination that is not a pod, even on the right number.
    deny(&f.check(f.pod("x/a"), external("203.0.113.7"), tcp(80)));
}

#[test]
fn row_19_a_name_no_pod_declares_admits_nothing() {
    let f = Fixture::new(vec![np(
        "x",
        "http",
        json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"port": "http"}]}]}),
    )]);
    deny(&f.pods("y/a", "x/a", tcp(80)));
}

#[test]
fn row_20_a_name_whose_protocol_disagrees_admits_nothing() {
    let f = Fixture::new(vec![np(
        "x",
        "mismatch",
        json!({"podSelector": pod_sel("a"), "ingress": [{"ports": [{"protocol": "TCP", "port": "serve-81-udp"}]}]}),
    )]);
    deny(&f.pods("y/a", "x/a", tcp(81)));
    deny(&f.pods("y/a", "x/a", udp(81)));
}

#[test]
fn row_21_an_end_port_range_is_inclusive_and_plugin_dependent_beyond_its_port() {
    let f = Fixture::new(vec![np(
        "x",
        "range",
        json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"], "egress": [{
            "to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
            "ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}],
        }]}),
    )]);
    let server = || external("10.0.0.5");
    let v = f.check(f.pod("x/a"), server(), tcp(32768));
    expect(&v, Verdict::Allow, &[EndPort], &[]);
    assert_eq!(
        v.to_string(),
        "allowed: egress is allowed by policy x/range (plugin-dependent: relies on an endPort range)"
    );
    deny(&f.check(f.pod("x/a"), server(), tcp(32769)));
    // The range's own `port` is admitted by every plugin; an external ipBlock match is sturdy.
    allow(&f.check(f.pod("x/a"), server(), tcp(32000)));
}

#[test]
fn row_22_egress_is_enforced_on_the_client_side() {
    let f = Fixture::new(vec![
        np(
            "x",
            "to-y-a",
            json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": ns_sel("y"), "podSelector": pod_sel("a")}]}]}),
        ),
        np(
            "y",
            "from-x-a",
            json!({
                "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]},
                "ingress": [{"from": [{"namespaceSelector": ns_sel("x"), "podSelector": pod_sel("a")}]}],
            }),
        ),
    ]);
    let v = f.pods("x/a", "y/b", tcp(80));
    deny(&v);
    assert_eq!(v.egress, Side::Denied { isolated_by: ids(&["x/to-y-a"]) });
    assert_eq!(
        v.ingress,
        Side::Allowed { isolated_by: ids(&["y/from-x-a"]), allowed_by: ids(&["y/from-x-a"]) }
    );
    assert_eq!(v.deciding_policies(), [&id("x/to-y-a")]);
    allow(&f.pods("x/a", "y/a", tcp(80)));
}

#[test]
fn row_23_ingress_and_egress_are_independent() {
    let f = Fixture::new(vec![
        np(
            "x",
            "egress-all",
            json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"], "egress": [{}]}),
        ),
        np("x", "ingress-none", json!({"podSelector": pod_sel("a"), "policyTypes": ["Ingress"]})),
    ]);
    deny(&f.pods("y/a", "x/a", tcp(80)));
    let v = f.pods("x/a", "x/b", tcp(80));
    allow(&v);
    assert_eq!(
        v.egress,
        Side::Allowed { isolated_by: ids(&["x/egress-all"]), allowed_by: ids(&["x/egress-all"]) }
    );
}

#[test]
fn row_24_one_policy_with_both_types_enforces_both() {
    let f = Fixture::new(vec![np(
        "x",
        "both",
        json!({
            "podSelector": pod_sel("a"),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": pod_sel("b")}]}],
            "egress": [{"ports": [{"port": 80}]}],
        }),
    )]);
    allow(&f.pods("x/b", "x/a", tcp(81)));
    deny(&f.pods("x/a", "y/a", tcp(81)));
}

#[test]
fn row_25_an_ip_block_on_a_pod_ip_admits_it_plugin_dependently() {
    let f = Fixture::new(vec![]);
    let cidr = format!("{}/32", f.ip_of("x/b"));
    let f = Fixture::new(vec![np(
        "x",
        "to-b-ip",
        json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": cidr}}]}]}),
    )]);
    expect(&f.pods("x/a", "x/b", tcp(80)), Verdict::Allow, &[IpBlockInCluster], &[]);
    deny(&f.pods("x/a", "x/c", tcp(80)));
}

#[test]
fn row_26_an_ip_block_except_carves_out_an_address() {
    let f = Fixture::new(vec![]);
    let (wide, hole) = (format!("{}/4", f.ip_of("x/b")), format!("{}/32", f.ip_of("x/b")));
    let f = Fixture::new(vec![np(
        "x",
        "except-b",
        json!({"podSelector": pod_sel("a"), "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": wide, "except": [hole]}}]}]}),
    )]);
    deny(&f.pods("x/a", "x/b", tcp(80)));
    expect(&f.pods("x/a", "x/c", tcp(80)), Verdict::Allow, &[IpBlockInCluster], &[]);
}

#[test]
fn row_27_an_ip_block_allow_unions_with_a_deny_all() {
    let f = Fixture::new(vec![
        np("x", "deny-out", json!({"podSelector": pod_sel("b"), "policyTypes": ["Egress"]})),
        np(
            "x",
            "out-by-ip",
            json!({"podSelector": pod_sel("b"), "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}),
        ),
    ]);
    let v = f.pods("x/b", "y/c", tcp(80));
    expect(&v, Verdict::Allow, &[IpBlockInCluster], &[]);
    assert_eq!(
        v.egress,
        Side::Allowed { isolated_by: ids(&["x/deny-out", "x/out-by-ip"]), allowed_by: ids(&["x/out-by-ip"]) }
    );
}

#[test]
fn row_28_an_empty_egress_list_without_policy_types_isolates_ingress_only() {
    let f = Fixture::new(vec![np("x", "empty-egress", json!({"podSelector": {}, "egress": []}))]);
    let v = f.pods("x/a", "y/a", tcp(80));
    allow(&v);
    assert_eq!(v.egress, Side::NotIsolated);
    deny(&f.pods("y/a", "x/a", tcp(80)));
}

#[test]
fn row_29_rules_of_an_unlisted_type_are_ignored() {
    let f = Fixture::new(vec![np(
        "x",
        "ingress-only",
        json!({"podSelector": pod_sel("a"), "policyTypes": ["Ingress"], "egress": [{"ports": [{"protocol": "UDP", "port": 53}]}]}),
    )]);
    let v = f.pods("x/a", "y/a", tcp(80));
    allow(&v);
    assert_eq!(v.egress, Side::NotIsolated);
}

#[test]
fn row_30_the_own_node_is_exempt_and_a_host_network_peer_elsewhere_is_undefined() {
    let f = Fixture::new(vec![deny_in("x")]);
    let local = f.check(f.host("node-2", HostKind::HostNetworkPod), f.pod("x/b"), tcp(80));
    allow(&local);
    assert_eq!(
        local.ingress,
        Side::Exempt { exemption: Exemption::OwnNode, isolated_by: ids(&["x/deny-in"]) }
    );
    let remote = f.check(f.host("node-1", HostKind::HostNetworkPod), f.pod("x/b"), tcp(80));
    expect(&remote, Verdict::Undefined, &[], &[HostNetworkPeer]);
    assert_eq!(remote.as_written, Some(Decision::Deny));
    assert_eq!(
        remote.to_string(),
        "undefined (a hostNetwork pod at the other end); as written, denied: ingress is isolated by policy x/deny-in and no rule admits it"
    );
    // The node's own stack elsewhere is plain node traffic: denied, and defined.
    deny(&f.check(f.host("node-1", HostKind::Node), f.pod("x/b"), tcp(80)));
}

#[test]
fn row_31_loopback_by_pod_ip_is_allowed_and_through_a_service_undefined() {
    let f = Fixture::new(vec![deny_in("x")]);
    let direct = f.pods("x/a", "x/a", tcp(80));
    allow(&direct);
    assert_eq!(direct.to_string(), "allowed: a pod reaching itself by its own IP is always allowed");
    let hairpin = f.via(f.pod("x/a"), f.pod("x/a"), tcp(80), Via::ClusterIp);
    expect(&hairpin, Verdict::Undefined, &[], &[ServiceHairpin]);
    assert_eq!(hairpin.as_written, Some(Decision::Deny));
}

#[test]
fn row_32_icmp_with_an_isolated_pod_is_undefined() {
    let f = Fixture::new(vec![deny_in("x")]);
    expect(&f.pods("y/a", "x/b", Transport::Icmp), Verdict::Undefined, &[], &[Icmp]);
    // ICMP between pods nothing isolates is simply allowed.
    allow(&f.pods("x/a", "y/b", Transport::Icmp));
}

#[test]
fn row_33_a_service_is_judged_at_its_backend_target_port() {
    // Service port 80 → targetPort 8080 on x/b; the caller translates before asking.
    let svc = ServicePort {
        name: None,
        port: Port::new(80).unwrap(),
        target_port: Port::new(8080).unwrap(),
        node_port: None,
        protocol: Protocol::Tcp,
    };
    let on = |port: u32| {
        np(
            "x",
            "b-from-a",
            json!({"podSelector": pod_sel("b"), "ingress": [{"from": [{"podSelector": pod_sel("a")}], "ports": [{"protocol": "TCP", "port": port}]}]}),
        )
    };
    let target = Transport::Tcp(svc.target_port);
    let f = Fixture::new(vec![on(8080)]);
    allow(&f.via(f.pod("x/a"), f.pod("x/b"), target, Via::ClusterIp));
    let f = Fixture::new(vec![on(u32::from(svc.port.get()))]);
    deny(&f.via(f.pod("x/a"), f.pod("x/b"), target, Via::ClusterIp));
}

#[test]
fn row_34_a_node_port_path_is_undefined_whatever_the_traffic_policy() {
    let f = Fixture::new(vec![np(
        "y",
        "from-net",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "198.51.100.0/24"}}]}]}),
    )]);
    for external_traffic_policy in [TrafficPolicy::Cluster, TrafficPolicy::Local] {
        let via = Via::NodePort { external_traffic_policy };
        let v = f.via(external("198.51.100.9"), f.pod("y/a"), tcp(80), via);
        expect(&v, Verdict::Undefined, &[], &[NodePortOrLoadBalancer]);
        assert_eq!(v.as_written, Some(Decision::Allow), "{external_traffic_policy:?}");
    }
}

#[test]
fn a_pod_without_an_ip_is_pending() {
    let f = Fixture::new(vec![deny_in("x")]);
    let Endpoint::Pod(b) = f.pod("x/b") else { unreachable!() };
    let v = f.check(f.pod("y/a"), Endpoint::Pod(PodEndpoint { ip: None, ..b }), tcp(80));
    assert_eq!((v.verdict, v.as_written), (Verdict::Pending, None));
    assert_eq!(v.to_string(), "pending: a pod end has no IP yet");
}

#[test]
fn policies_in_an_unknown_namespace_see_only_its_name_label() {
    let peer = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "w"}}});
    let mut w_pod = pod_info(0, 0);
    w_pod.namespace = "w".parse().unwrap();
    let f = Fixture::new(vec![np("x", "from-w", json!({"podSelector": {}, "ingress": [{"from": [peer]}]}))]);
    allow(&f.check(Endpoint::Pod(PodEndpoint::of(&w_pod)), f.pod("x/a"), tcp(80)));
}

#[test]
fn a_set_is_built_from_api_objects_and_refuses_an_invalid_one() {
    let objects: Vec<NetworkPolicy> = serde_json::from_value(json!([
        {"metadata": {"namespace": "x", "name": "deny-in"}, "spec": {"podSelector": {}}},
        {"metadata": {"namespace": "y", "name": "deny-in"}, "spec": {}},
    ]))
    .unwrap();
    let namespaces: Vec<NamespaceObject> =
        serde_json::from_value(json!([{"metadata": {"name": "x", "labels": {"ns": "x"}}}])).unwrap();
    let set = PolicySet::from_objects(&objects, &namespaces).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(set.policies_in(&"x".parse().unwrap()).count(), 1);

    let mut bad = objects.clone();
    bad[1].spec.policy_types = Some(vec!["Sideways".into()]);
    let err = PolicySet::from_objects(&bad, &namespaces).unwrap_err();
    assert_eq!(
        err.to_string(),
        "network policy y/deny-in: spec.policyTypes[0]: unsupported policy type \"Sideways\": use Ingress or Egress"
    );
}

#[test]
fn endpoints_name_themselves_for_verdict_text() {
    let f = Fixture::new(vec![]);
    assert_eq!(f.pod("x/b").to_string(), "pod x/b");
    assert_eq!(
        f.host("node-1", HostKind::HostNetworkPod).to_string(),
        "a hostNetwork pod on node node-1 (172.29.0.11)"
    );
    assert_eq!(f.host("node-2", HostKind::Node).to_string(), "node node-2 (172.29.0.12)");
    assert_eq!(external("203.0.113.7").to_string(), "203.0.113.7");
    assert_eq!(tcp(80).to_string(), "80/TCP");
    assert_eq!(Transport::Icmp.to_string(), "ICMP");
}

// Properties, over random policies drawn from the rows' building blocks.

/// Every endpoint of the fixture, by index: the nine pods, both nodes as hostNetwork pods,
/// node-1 itself, and an external address.
fn endpoint(f: &Fixture, i: usize) -> Endpoint<'_> {
    match i {
        0..9 => Endpoint::Pod(PodEndpoint::of(&f.pods[i])),
        9 => f.host("node-1", HostKind::HostNetworkPod),
        10 => f.host("node-2", HostKind::HostNetworkPod),
        11 => f.host("node-1", HostKind::Node),
        _ => external("203.0.113.7"),
    }
}

const ENDPOINTS: usize = 13;

fn any_transport() -> impl Strategy<Value = Transport> {
    prop::sample::select(vec![tcp(80), tcp(81), udp(80), udp(81), sctp(80), tcp(32001), Transport::Icmp])
}

fn any_via() -> impl Strategy<Value = Via> {
    prop::sample::select(vec![
        Via::Direct,
        Via::ClusterIp,
        Via::NodePort { external_traffic_policy: TrafficPolicy::Cluster },
        Via::LoadBalancer { external_traffic_policy: TrafficPolicy::Local },
    ])
}

fn any_spec() -> impl Strategy<Value = Value> {
    let selector = prop::sample::select(vec![
        json!({}),
        pod_sel("a"),
        pod_sel("b"),
        json!({"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["a"]}]}),
    ]);
    let peer = prop::sample::select(vec![
        json!({"podSelector": {}}),
        json!({"podSelector": pod_sel("a")}),
        json!({"namespaceSelector": {}}),
        json!({"namespaceSelector": ns_sel("y")}),
        json!({"namespaceSelector": ns_sel("y"), "podSelector": pod_sel("b")}),
        json!({"ipBlock": {"cidr": "10.244.0.0/16"}}),
        json!({"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.1.0/24"]}}),
        json!({"ipBlock": {"cidr": "172.29.0.0/24"}}),
    ]);
    let port = prop::sample::select(vec![
        json!({}),
        json!({"port": 80}),
        json!({"protocol": "UDP"}),
        json!({"port": "serve-81-tcp"}),
        json!({"protocol": "UDP", "port": "serve-80-udp"}),
        json!({"port": 32000, "endPort": 32768}),
        json!({"protocol": "SCTP"}),
    ]);
    let list = |item: BoxedStrategy<Value>| prop::option::of(prop::collection::vec(item, 0..3));
    let rule = (list(peer.boxed()), list(port.boxed()))
        .prop_map(|(peers, ports)| json!({"from": peers, "to": peers, "ports": ports}));
    let types = prop::sample::select(vec![
        json!(null),
        json!(["Ingress"]),
        json!(["Egress"]),
        json!(["Ingress", "Egress"]),
    ]);
    (selector, types, list(rule.clone().boxed()), list(rule.boxed())).prop_map(|(sel, types, ingress, egress)| {
        json!({"podSelector": sel, "policyTypes": types, "ingress": ingress, "egress": egress})
    })
}

/// Up to `max` policies named `<prefix><i>`.
fn any_policies(prefix: &'static str, max: usize) -> impl Strategy<Value = Vec<Policy>> {
    let ns = prop::sample::select(vec!["x", "y", "z"]);
    prop::collection::vec((ns, any_spec()), 0..max).prop_map(move |specs| {
        specs.into_iter().enumerate().map(|(i, (ns, spec))| np(ns, &format!("{prefix}{i}"), spec)).collect()
    })
}

proptest! {
    #[test]
    fn with_no_policy_everything_is_allowed(
        src in 0..ENDPOINTS, dst in 0..ENDPOINTS, transport in any_transport(), via in any_via(),
    ) {
        let f = Fixture::new(vec![]);
        let v = f.via(endpoint(&f, src), endpoint(&f, dst), transport, via);
        prop_assert_eq!(v.verdict, Verdict::Allow, "{}", v);
        prop_assert!(v.plugin_dependent.is_empty() && v.undefined.is_empty(), "{}", v);
    }

    /// Adding a policy that isolates no side anew can only add allows (union), never remove one.
    #[test]
    fn a_policy_that_isolates_nothing_new_never_turns_allow_into_deny(
        base in any_policies("base-", 4), extra in any_policies("extra-", 2),
        src in 0..ENDPOINTS, dst in 0..ENDPOINTS, transport in any_transport(), via in any_via(),
    ) {
        let before = Fixture::new(base.clone());
        let after = Fixture::new(base.into_iter().chain(extra).collect());
        let b = before.via(endpoint(&before, src), endpoint(&before, dst), transport, via);
        let a = after.via(endpoint(&after, src), endpoint(&after, dst), transport, via);
        let same_isolation = b.egress.is_isolated() == a.egress.is_isolated()
            && b.ingress.is_isolated() == a.ingress.is_isolated();
        if same_isolation && b.as_written == Some(Decision::Allow) {
            prop_assert_eq!(a.as_written, Some(Decision::Allow), "before: {}\nafter: {}", b, a);
        }
        // And an admitting policy keeps admitting: allows only grow.
        if let (Side::Allowed { allowed_by: was, .. }, Side::Allowed { allowed_by: now, .. }) = (&b.ingress, &a.ingress) {
            prop_assert!(was.iter().all(|p| now.contains(p)));
        }
    }
}

#[test]
fn an_inventorys_invalid_policy_is_left_out_and_named() {
    let mut inv = crate::sim::World::healthy().inventory();
    inv.network_policies = vec![
        serde_json::from_value(
            json!({"metadata": {"namespace": "tidb", "name": "ok"}, "spec": {"podSelector": {}}}),
        )
        .unwrap(),
        serde_json::from_value(json!({
            "metadata": {"namespace": "tidb", "name": "bad"},
            "spec": {"podSelector": {}, "policyTypes": ["Sideways"]}
        }))
        .unwrap(),
    ];
    let (set, errors) = PolicySet::from_inventory(&inv);
    assert_eq!(set.len(), 1);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("tidb/bad"), "{}", errors[0]);
}
