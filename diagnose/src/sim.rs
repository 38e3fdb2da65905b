//! The scenario simulator for localization tests: the default lab's inventory (3 nodes, CoreDNS on
//! node-1, PD/TiKV/TiDB/discovery spread over them), the probes its agents would run (the
//! shape of `agent/src/plan.rs`), and a small model of the lab's network that answers each
//! probe the way a lab with the given faults would — so a test says "every probe to pd-1 times
//! out" by naming the fault, not by hand-writing hundreds of results. Inspections (NAT rules,
//! routes, links, sysctls, resolv.conf) come from the same model.

// Test support: the scenarios are fixed and valid, so a bad one should fail loudly.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use netdiag_model::dns::{DnsName, DnsTransport, RecordType};
use netdiag_model::inspect::InspectionReport;
use netdiag_model::inventory::{Inventory, Protocol, TrafficPolicy};
use netdiag_model::probe::{ProbeKind, ServiceVia, Source, Target};
use netdiag_model::result::{Burst, Detail, PathMtu, ProbeResult, Rtt};
use netdiag_model::{
    DnsFailure, IcmpFailure, MtuFailure, NodeName, Outcome, PodRef, Port, ServiceRef, TcpFailure, UnixMillis,
};
use serde_json::json;

use crate::matrix::{InventoryIndex, Matrix};
use crate::policy::{Decision, Endpoint, HostKind, PodEndpoint, PolicySet, Side, Traffic, Transport, Via};

pub const INVENTORY: &str = r#"
version: 1
cluster:
  name: lab
  domain: cluster.local
  pod_cidrs: [10.244.0.0/16]
  service_cidrs: [10.96.0.0/16]
  node_cidrs: [172.29.0.0/24]
  dns_ips: [10.96.0.10]
  proxy_mode: iptables
nodes:
  - {name: node-1, ips: [172.29.0.11], pod_cidrs: [10.244.1.0/24]}
  - {name: node-2, ips: [172.29.0.12], pod_cidrs: [10.244.2.0/24]}
  - {name: node-3, ips: [172.29.0.13], pod_cidrs: [10.244.3.0/24]}
pods:
  - {namespace: kube-system, name: coredns-0, node: node-1, ips: [10.244.1.2], ports: [{port: 53, protocol: UDP}, {port: 53}]}
  - {namespace: tidb, name: demo-pd-0, node: node-1, ips: [10.244.1.3], ports: [{port: 2379}, {port: 2380}]}
  - {namespace: tidb, name: demo-tikv-0, node: node-1, ips: [10.244.1.4], ports: [{port: 20160}]}
  - {namespace: tidb, name: demo-pd-1, node: node-2, ips: [10.244.2.2], ports: [{port: 2379}, {port: 2380}]}
  - {namespace: tidb, name: demo-tikv-1, node: node-2, ips: [10.244.2.3], ports: [{port: 20160}]}
  - {namespace: tidb, name: demo-tidb-0, node: node-2, ips: [10.244.2.4], ports: [{port: 4000}]}
  - {namespace: tidb, name: demo-pd-2, node: node-3, ips: [10.244.3.2], ports: [{port: 2379}, {port: 2380}]}
  - {namespace: tidb, name: demo-tikv-2, node: node-3, ips: [10.244.3.3], ports: [{port: 20160}]}
  - {namespace: tidb, name: demo-tidb-1, node: node-3, ips: [10.244.3.4], ports: [{port: 4000}]}
  - {namespace: tidb, name: demo-discovery-7c9f8d6b5-x2k8p, node: node-3, ips: [10.244.3.5], ports: [{port: 10261}]}
services:
  - namespace: kube-system
    name: kube-dns
    type: ClusterIP
    cluster_ips: [10.96.0.10]
    ports: [{name: dns, port: 53, target_port: 53, protocol: UDP}, {name: dns-tcp, port: 53, target_port: 53}]
    endpoints: [{ip: 10.244.1.2, pod: kube-system/coredns-0, node: node-1, ready: true}]
  - namespace: tidb
    name: demo-pd
    type: ClusterIP
    cluster_ips: [10.96.0.20]
    ports: [{name: client, port: 2379, target_port: 2379}]
    endpoints:
      - {ip: 10.244.1.3, pod: tidb/demo-pd-0, node: node-1, ready: true}
      - {ip: 10.244.2.2, pod: tidb/demo-pd-1, node: node-2, ready: true}
      - {ip: 10.244.3.2, pod: tidb/demo-pd-2, node: node-3, ready: true}
  - namespace: tidb
    name: demo-pd-peer
    type: ClusterIP
    ports: [{name: peer, port: 2380, target_port: 2380}, {name: client, port: 2379, target_port: 2379}]
    endpoints:
      - {ip: 10.244.1.3, pod: tidb/demo-pd-0, node: node-1, hostname: demo-pd-0, ready: true}
      - {ip: 10.244.2.2, pod: tidb/demo-pd-1, node: node-2, hostname: demo-pd-1, ready: true}
      - {ip: 10.244.3.2, pod: tidb/demo-pd-2, node: node-3, hostname: demo-pd-2, ready: true}
  - namespace: tidb
    name: demo-tikv-peer
    type: ClusterIP
    ports: [{name: peer, port: 20160, target_port: 20160}]
    endpoints:
      - {ip: 10.244.1.4, pod: tidb/demo-tikv-0, node: node-1, hostname: demo-tikv-0, ready: true}
      - {ip: 10.244.2.3, pod: tidb/demo-tikv-1, node: node-2, hostname: demo-tikv-1, ready: true}
      - {ip: 10.244.3.3, pod: tidb/demo-tikv-2, node: node-3, hostname: demo-tikv-2, ready: true}
  - namespace: tidb
    name: demo-tidb
    type: NodePort
    cluster_ips: [10.96.0.40]
    ports: [{name: mysql-client, port: 4000, target_port: 4000, node_port: 30400}]
    endpoints:
      - {ip: 10.244.2.4, pod: tidb/demo-tidb-0, node: node-2, ready: true}
      - {ip: 10.244.3.4, pod: tidb/demo-tidb-1, node: node-3, ready: true}
  - namespace: tidb
    name: demo-discovery
    type: ClusterIP
    cluster_ips: [10.96.0.50]
    ports: [{name: discovery, port: 10261, target_port: 10261}]
    endpoints: [{ip: 10.244.3.5, pod: tidb/demo-discovery-7c9f8d6b5-x2k8p, node: node-3, ready: true}]
"#;

/// The instant every scenario is judged at; samples are spread over the 25 s up to it.
pub fn now() -> UnixMillis {
    t(55_000)
}

fn t(ms: i64) -> UnixMillis {
    UnixMillis::new(1_700_000_000_000 + ms).unwrap_or_else(|_| unreachable!())
}

pub fn node(s: &str) -> NodeName {
    s.parse().unwrap()
}

pub fn pod(s: &str) -> PodRef {
    s.parse().unwrap()
}

fn svc(s: &str) -> ServiceRef {
    s.parse().unwrap()
}

/// Samples per cell; the lab's agents probe every few seconds.
const SAMPLES: i64 = 6;

/// FNV-1a: a deterministic hash for the model's coin flips.
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A uniform draw in [0, 1) from `s` (FNV then splitmix64's finalizer, so strings that differ
/// in their last character land far apart).
fn coin(s: &str) -> f64 {
    let mut z = hash(s).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// How a node's tables fail to route a peer's pod CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RouteGap {
    /// The route is gone (`ip route del`).
    Deleted,
    /// A blackhole route replaces it.
    Blackhole,
    /// The route is there; a policy-routing rule drops what it would carry.
    Rule,
}

/// Which way through a node a one-way fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Packets entering the node (to it and its pods).
    In,
    /// Packets leaving it.
    Out,
}

/// The sources a filter singles out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilteredSources {
    /// The node itself and its pods.
    Node(NodeName),
    /// The pods of a namespace.
    Namespace(String),
    /// One pod, by a rule in the filtering pod's own namespace (its report carries the rule).
    Pod(PodRef),
}

/// A node's eth0 MAC, made from its address as Docker does (`02:42:` and the IPv4 octets).
fn mac_of(ip: IpAddr) -> String {
    let octets = match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", octets[0], octets[1], octets[2], octets[3])
}

/// The lab, with the faults a scenario injects.
#[derive(Debug, Clone, Default)]
pub struct World {
    pods_down: Vec<PodRef>,
    /// Pods whose address was taken off their interface (`ip addr del` inside them).
    pods_unaddressed: Vec<PodRef>,
    /// `ip route add blackhole <peer's address>/32` on the first node.
    node_addresses_blackholed: Vec<(NodeName, NodeName)>,
    /// A node's route to a peer's pods through a gateway that is not the peer.
    routes_via: Vec<(NodeName, NodeName, IpAddr)>,
    /// Pods whose default route was deleted (`ip route del default` inside them): up, but
    /// nothing leaves them and no reply gets back.
    pods_unrouted: Vec<PodRef>,
    ports_closed: Vec<(PodRef, u16)>,
    /// A rule in the pod's own INPUT rejects TCP to the port with a reset: on the wire, a
    /// closed port.
    ports_rejected: Vec<(PodRef, u16)>,
    ports_dropped: Vec<(PodRef, u16)>,
    isolated: Vec<NodeName>,
    /// `net.ipv4.ip_forward = 0`: the node delivers to itself but forwards nothing.
    forwarding_off: Vec<NodeName>,
    /// The same without the setting to show it (a FORWARD policy of DROP, a CNI bridge down).
    forwarding_broken: Vec<NodeName>,
    /// The node's firewall drops TCP forwarded to this port (its pods' port, from anywhere but
    /// the node itself).
    firewall_drops: Vec<(NodeName, u16)>,
    forward_policy_drop: Vec<NodeName>,
    /// `iptables -I FORWARD -s <the second node's pod CIDR> -j DROP` on the first node: stateless,
    /// so the replies of its own pods' requests die too.
    forward_drops_from: Vec<(NodeName, NodeName)>,
    /// NetworkPolicies (and namespace labels) in the inventory, enforced by the network.
    policies: Vec<netdiag_model::netpol::NetworkPolicy>,
    namespaces: Vec<netdiag_model::netpol::NamespaceObject>,
    /// Nodes whose network plugin applies no policy to their pods.
    policies_unenforced_on: Vec<NodeName>,
    pairs_cut: Vec<(NodeName, NodeName)>,
    /// The first node's neighbour entry for the second's address holds a MAC nobody has (a
    /// static `ip neigh replace … nud permanent`): frames between them go nowhere.
    wrong_neighbours: Vec<(NodeName, NodeName)>,
    /// The first node does not route the second's pod CIDR, and how its tables say so.
    routes_missing: Vec<(NodeName, NodeName, RouteGap)>,
    dnat_missing: Vec<(NodeName, ServiceRef, u16)>,
    /// The node's DNAT rule for the service port sends its first endpoint's share to the wrong
    /// port (a rule edited by hand, a stale one): those connections are refused.
    dnat_wrong_port: Vec<(NodeName, ServiceRef, u16)>,
    nodeport_missing: Vec<(NodeName, u16)>,
    /// `iptables -t nat -I PREROUTING -d <pod> -p tcp --dport <port> -j DNAT --to-destination
    /// <to>:<port>` on the node, by hand: TCP to the pod's port that enters the node before
    /// routing (from its pods, or from elsewhere when the pod is on it) goes to `to`, which no one
    /// holds. A VIP's packet is still for the VIP there: kube-proxy's DNAT is not undone.
    dnat_by_hand: Vec<(NodeName, PodRef, u16, IpAddr)>,
    /// `iptables -t nat -I POSTROUTING -s <node's pod CIDR> -d <peer's pod CIDR> -j SNAT
    /// --to-source <to>` on the node: its pods' packets to the peer's pods leave from an address
    /// no one holds, and the replies go nowhere.
    snat_by_hand: Vec<(NodeName, NodeName, IpAddr)>,
    /// `iptables -t nat -I OUTPUT -d <service's VIP> -p tcp --dport <port> -j DNAT
    /// --to-destination <to>` inside the pod: its connections to the service go to `to`.
    pod_dnat_by_hand: Vec<(PodRef, ServiceRef, u16, IpAddr)>,
    /// The NAT rules by hand are reported with a condition the agent does not evaluate.
    nat_rules_opaque: bool,
    dns_down: bool,
    dns_blocked: Vec<NodeName>,
    dns_servfail: bool,
    names_missing: Vec<String>,
    bad_resolver: Vec<(PodRef, IpAddr)>,
    /// The pod's own firewall drops its DNS queries over UDP (TCP passes).
    udp_dns_blocked: Vec<PodRef>,
    /// The pod's own OUTPUT drops TCP to the service CIDR (`-d 10.96.0.0/16 -p tcp -j DROP`).
    pods_blocking_services: Vec<PodRef>,
    /// `ip route add 10.96.0.0/16 via 169.254.1.99 dev eth0 onlink` inside the pod: its VIP
    /// and DNS packets go to a gateway nobody answers.
    pods_misrouting_services: Vec<PodRef>,
    /// The DNS server pod's own INPUT drops UDP port 53 (TCP answers).
    dns_server_drops_udp: bool,
    mtu: Option<(NodeName, u32)>,
    /// Large packets through the node in one direction vanish (no ICMP error).
    mtu_one_way: Option<(NodeName, Direction)>,
    /// `ip link set eth0 mtu <n>` on the node: its inspection shows it, and the large frames
    /// others send it are dropped on arrival (its own probes know its MTU).
    uplink_mtu: Option<(NodeName, u32)>,
    loss: Option<(NodeName, f64)>,
    /// Loss through the node's uplink in one direction only.
    loss_one_way: Option<(NodeName, f64, Direction)>,
    /// Every packet into the pod from the group is dropped.
    filters: Vec<(PodRef, FilteredSources)>,
    /// ICMP into the node (and its pods) is dropped; TCP passes.
    icmp_blocked: Vec<NodeName>,
    /// The cluster DNS drops this share of queries.
    dns_loss: Option<f64>,
    keepalive_all: Option<u32>,
    keepalive: Vec<(PodRef, u32)>,
    idle_cut: Option<(NodeName, u32)>,
    conntrack_unreported: bool,
    silent: Vec<NodeName>,
    quiet: Vec<NodeName>,
    flaky: Option<(NodeName, f64)>,
    flaky_results: Option<(NodeName, f64)>,
    no_endpoints: Vec<ServiceRef>,
    local_policy: Vec<ServiceRef>,
    no_inspections: bool,
    /// Node inspections predate the faults' route changes.
    stale_routes: bool,
    /// The samples (0 to `SAMPLES - 1`) during which the faults are in place; all by default.
    active: Option<std::ops::Range<i64>>,
    /// From this sample on, another world's faults instead (one fault healed, another began).
    later: Option<(i64, Box<World>)>,
}

impl World {
    /// The pod neither answers nor gets answers: down, unrouted or without its address.
    fn mute(&self, p: &PodRef) -> bool {
        self.pods_down.contains(p) || self.pods_unrouted.contains(p) || self.pods_unaddressed.contains(p)
    }

    pub fn healthy() -> Self {
        World::default()
    }
    pub fn pod_unrouted(mut self, p: &str) -> Self {
        self.pods_unrouted.push(pod(p));
        self
    }
    /// `ip addr del <its IP> dev eth0` inside the pod.
    pub fn pod_unaddressed(mut self, p: &str) -> Self {
        self.pods_unaddressed.push(pod(p));
        self
    }
    /// `ip route add blackhole <peer's address>/32` on `n`: `n` (and what it forwards) cannot
    /// send to the peer's own address; pod traffic is routed by the pod CIDRs and passes.
    pub fn node_address_blackholed(mut self, n: &str, peer: &str) -> Self {
        self.node_addresses_blackholed.push((node(n), node(peer)));
        self
    }
    /// `ip route replace <peer's pod CIDR> via <gw>` on `n`.
    pub fn route_via(mut self, n: &str, peer: &str, gw: &str) -> Self {
        self.routes_via.push((node(n), node(peer), gw.parse().expect("gateway address")));
        self
    }
    pub fn pod_down(mut self, p: &str) -> Self {
        self.pods_down.push(pod(p));
        self
    }
    pub fn port_closed(mut self, p: &str, port: u16) -> Self {
        self.ports_closed.push((pod(p), port));
        self
    }
    pub fn port_dropped(mut self, p: &str, port: u16) -> Self {
        self.ports_dropped.push((pod(p), port));
        self
    }
    pub fn isolate(mut self, n: &str) -> Self {
        self.isolated.push(node(n));
        self
    }
    pub fn forwarding_off(mut self, n: &str) -> Self {
        self.forwarding_off.push(node(n));
        self
    }
    pub fn forwarding_broken(mut self, n: &str) -> Self {
        self.forwarding_broken.push(node(n));
        self
    }
    /// A NetworkPolicy (the API's JSON) in the inventory, enforced on every node.
    pub fn policy(mut self, object: serde_json::Value) -> Self {
        self.policies.push(serde_json::from_value(object).expect("a NetworkPolicy object"));
        self
    }
    /// The healthy lab with one NetworkPolicy, `tidb/only-tidb`: ingress to every pod of `tidb`
    /// only from pods of `tidb` (the nodes' own addresses exempt for their local pods only).
    pub fn tidb_isolated() -> Self {
        Self::healthy().policy(serde_json::json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"namespace": "tidb", "name": "only-tidb"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}
        }))
    }
    /// A namespace with labels (`{"metadata": {"name": …, "labels": {…}}}`).
    pub fn namespace(mut self, object: serde_json::Value) -> Self {
        self.namespaces.push(serde_json::from_value(object).expect("a Namespace object"));
        self
    }
    /// The network plugin on `n` applies no policy to `n`'s pods.
    pub fn policies_unenforced_on(mut self, n: &str) -> Self {
        self.policies_unenforced_on.push(node(n));
        self
    }
    /// `iptables -P FORWARD DROP` on `n` with only a stateful accept before it: new
    /// connections forwarded through `n` die, pings keep their conntrack entries and pass.
    pub fn forward_policy_drop(mut self, n: &str) -> Self {
        self.forward_policy_drop.push(node(n));
        self
    }
    pub fn forward_drop_from(mut self, n: &str, peer: &str) -> Self {
        self.forward_drops_from.push((node(n), node(peer)));
        self
    }
    pub fn firewall_drop(mut self, n: &str, port: u16) -> Self {
        self.firewall_drops.push((node(n), port));
        self
    }
    pub fn cut_pair(mut self, a: &str, b: &str) -> Self {
        self.pairs_cut.push((node(a), node(b)));
        self
    }
    /// `ip neigh replace <peer's IP> lladdr 02:00:00:de:ad:01 nud permanent dev eth0` on `n`.
    pub fn wrong_neighbour(mut self, n: &str, peer: &str) -> Self {
        self.wrong_neighbours.push((node(n), node(peer)));
        self
    }
    /// `ip route replace blackhole <peer's pod CIDR>` on `n`.
    pub fn route_blackholed(mut self, n: &str, peer: &str) -> Self {
        self.routes_missing.push((node(n), node(peer), RouteGap::Blackhole));
        self
    }
    /// `ip rule add to <peer's pod CIDR> prohibit pref 100` on `n`; the main table is intact.
    pub fn rule_prohibits(mut self, n: &str, peer: &str) -> Self {
        self.routes_missing.push((node(n), node(peer), RouteGap::Rule));
        self
    }
    /// `ip route del <peer's pod CIDR>` on `n`.
    pub fn route_missing(mut self, n: &str, peer: &str) -> Self {
        self.routes_missing.push((node(n), node(peer), RouteGap::Deleted));
        self
    }
    pub fn dnat_wrong_port(mut self, n: &str, s: &str, port: u16) -> Self {
        self.dnat_wrong_port.push((node(n), svc(s), port));
        self
    }
    pub fn dnat_missing(mut self, n: &str, s: &str, port: u16) -> Self {
        self.dnat_missing.push((node(n), svc(s), port));
        self
    }
    /// A DNAT written by hand on `n` (see the field): TCP to `p`'s `port` goes to `to`.
    pub fn dnat_by_hand(mut self, n: &str, p: &str, port: u16, to: &str) -> Self {
        self.dnat_by_hand.push((node(n), pod(p), port, to.parse().unwrap()));
        self
    }
    /// An SNAT written by hand on `n` for its pods' packets to `peer`'s pods, from `to`.
    pub fn snat_by_hand(mut self, n: &str, peer: &str, to: &str) -> Self {
        self.snat_by_hand.push((node(n), node(peer), to.parse().unwrap()));
        self
    }
    /// A DNAT written by hand in pod `p`'s own OUTPUT for service `s`'s VIP and `port`.
    pub fn pod_dnat_by_hand(mut self, p: &str, s: &str, port: u16, to: &str) -> Self {
        self.pod_dnat_by_hand.push((pod(p), svc(s), port, to.parse().unwrap()));
        self
    }
    /// The NAT rules written by hand carry a condition the agent does not evaluate (a mark).
    pub fn nat_rules_opaque(mut self) -> Self {
        self.nat_rules_opaque = true;
        self
    }
    pub fn nodeport_missing(mut self, n: &str, port: u16) -> Self {
        self.nodeport_missing.push((node(n), port));
        self
    }
    pub fn dns_down(mut self) -> Self {
        self.dns_down = true;
        self
    }
    pub fn dns_block(mut self, n: &str) -> Self {
        self.dns_blocked.push(node(n));
        self
    }
    pub fn dns_servfail(mut self) -> Self {
        self.dns_servfail = true;
        self
    }
    pub fn name_missing(mut self, name: &str) -> Self {
        self.names_missing.push(name.to_owned());
        self
    }
    pub fn bad_resolver(mut self, p: &str, ns: &str) -> Self {
        self.bad_resolver.push((pod(p), ns.parse().unwrap()));
        self
    }
    /// `ip route add 10.96.0.0/16 via 169.254.1.99 dev eth0 onlink` inside the pod.
    pub fn pod_misroutes_services(mut self, p: &str) -> Self {
        self.pods_misrouting_services.push(pod(p));
        self
    }
    /// `iptables -I OUTPUT -d 10.96.0.0/16 -p tcp -j DROP` inside the pod.
    pub fn pod_blocks_services(mut self, p: &str) -> Self {
        self.pods_blocking_services.push(pod(p));
        self
    }
    /// `iptables -I INPUT -p udp --dport 53 -j DROP` inside the cluster's DNS pod.
    pub fn dns_server_drops_udp(mut self) -> Self {
        self.dns_server_drops_udp = true;
        self
    }
    pub fn udp_dns_blocked(mut self, p: &str) -> Self {
        self.udp_dns_blocked.push(pod(p));
        self
    }
    pub fn mtu(mut self, n: &str, size: u32) -> Self {
        self.mtu = Some((node(n), size));
        self
    }
    pub fn loss(mut self, n: &str, share: f64) -> Self {
        self.loss = Some((node(n), share));
        self
    }
    pub fn uplink_mtu(mut self, n: &str, mtu: u32) -> Self {
        self.uplink_mtu = Some((node(n), mtu));
        self.mtu_one_way(n, Direction::In)
    }
    pub fn mtu_one_way(mut self, n: &str, direction: Direction) -> Self {
        self.mtu_one_way = Some((node(n), direction));
        self
    }
    pub fn loss_one_way(mut self, n: &str, share: f64, direction: Direction) -> Self {
        self.loss_one_way = Some((node(n), share, direction));
        self
    }
    /// `iptables -A INPUT -s <from's IP> -j DROP` inside pod `p`: a rule no policy asks for.
    /// `iptables -I INPUT -p tcp --dport <port> -j REJECT --reject-with tcp-reset` in the pod.
    pub fn pod_rejects_port(mut self, p: &str, port: u16) -> Self {
        self.ports_rejected.push((pod(p), port));
        self
    }
    pub fn pod_firewall_drops(mut self, p: &str, from: &str) -> Self {
        self.filters.push((pod(p), FilteredSources::Pod(pod(from))));
        self
    }
    /// The pod drops everything from the pods of node `n` (and the node itself).
    pub fn filter_from_node(mut self, p: &str, n: &str) -> Self {
        self.filters.push((pod(p), FilteredSources::Node(node(n))));
        self
    }
    /// The pod drops everything from the pods of namespace `ns`.
    pub fn filter_from_namespace(mut self, p: &str, ns: &str) -> Self {
        self.filters.push((pod(p), FilteredSources::Namespace(ns.to_owned())));
        self
    }
    pub fn icmp_blocked(mut self, n: &str) -> Self {
        self.icmp_blocked.push(node(n));
        self
    }
    pub fn dns_loss(mut self, share: f64) -> Self {
        self.dns_loss = Some(share);
        self
    }
    pub fn keepalive_all(mut self, secs: u32) -> Self {
        self.keepalive_all = Some(secs);
        self
    }
    pub fn keepalive(mut self, p: &str, secs: u32) -> Self {
        self.keepalive.push((pod(p), secs));
        self
    }
    pub fn idle_cut(mut self, n: &str, secs: u32) -> Self {
        self.idle_cut = Some((node(n), secs));
        self
    }
    pub fn conntrack_unreported(mut self) -> Self {
        self.conntrack_unreported = true;
        self
    }
    /// The node's agent stopped reporting 35 s ago, after a burst of failures.
    pub fn silent(mut self, n: &str) -> Self {
        self.silent.push(node(n));
        self
    }
    /// The node's agent went quiet 10 s ago (less than the 30 s staleness bound), its last
    /// results from before the faults.
    pub fn quiet(mut self, n: &str) -> Self {
        self.quiet.push(node(n));
        self
    }
    /// The node's agent reports `share` of its cells as failing, at random.
    pub fn flaky(mut self, n: &str, share: f64) -> Self {
        self.flaky = Some((node(n), share));
        self
    }
    /// The node's agent reports `share` of its results as failing, at random.
    pub fn flaky_results(mut self, n: &str, share: f64) -> Self {
        self.flaky_results = Some((node(n), share));
        self
    }
    pub fn no_endpoints(mut self, s: &str) -> Self {
        self.no_endpoints.push(svc(s));
        self
    }
    pub fn local_policy(mut self, s: &str) -> Self {
        self.local_policy.push(svc(s));
        self
    }
    /// The faults broke out before the last `n` samples only.
    pub fn just_broke(mut self, n: i64) -> Self {
        self.active = Some(SAMPLES - n..SAMPLES);
        self
    }
    /// The faults were healed before the last `n` samples.
    pub fn just_healed(mut self, n: i64) -> Self {
        self.active = Some(0..SAMPLES - n);
        self
    }
    /// The faults are in place during samples `r`; a range starting below 0 adds samples
    /// before the usual ones (5 s apart; the window holds 11 at most).
    pub fn during(mut self, r: std::ops::Range<i64>) -> Self {
        self.active = Some(r);
        self
    }
    /// From sample `from` on (of `SAMPLES`), `later` reports instead: a fault that ended,
    /// followed by another.
    pub fn then(mut self, from: i64, later: World) -> Self {
        self.later = Some((from, Box::new(later)));
        self
    }
    pub fn stale_routes(mut self) -> Self {
        self.stale_routes = true;
        self
    }
    pub fn no_inspections(mut self) -> Self {
        self.no_inspections = true;
        self
    }

    /// The inventory, with the scenario's changes.
    pub fn inventory(&self) -> Inventory {
        let mut inv = Inventory::from_yaml(INVENTORY).unwrap();
        inv.network_policies = self.policies.clone();
        inv.namespaces = self.namespaces.clone();
        for s in &mut inv.services {
            if self.no_endpoints.contains(&s.service_ref()) {
                s.endpoints.clear();
            }
            if self.local_policy.contains(&s.service_ref()) {
                s.external_traffic_policy = TrafficPolicy::Local;
            }
        }
        inv
    }

    /// The matrix after every agent reported its probes `SAMPLES` times.
    pub fn matrix(&self) -> Matrix {
        let inv = self.inventory();
        let index = InventoryIndex::new(&inv);
        let mut m = Matrix::default();
        for (agent, source, target, kind) in plan(&inv) {
            let first = self.active.as_ref().map_or(0, |r| r.start.clamp(-5, 0));
            for k in first..SAMPLES {
                let w = match &self.later {
                    Some((from, later)) if k >= *from => later,
                    _ => self,
                };
                let (at, result) = if w.silent.contains(&agent) {
                    let at = t(k * 4_000);
                    (at, w.failing(&source, &target, kind, at))
                } else if w.quiet.contains(&agent) {
                    if k > 3 {
                        continue;
                    }
                    let at = t(30_000 + k * 5_000);
                    (at, World::default().result(&inv, &agent, &source, &target, kind, k, at))
                } else if w.active.as_ref().is_none_or(|r| r.contains(&k)) {
                    let at = t(30_000 + k * 5_000);
                    (at, w.result(&inv, &agent, &source, &target, kind, k, at))
                } else {
                    let at = t(30_000 + k * 5_000);
                    (at, World::default().result(&inv, &agent, &source, &target, kind, k, at))
                };
                m.record(&agent, &result, &index, at);
            }
        }
        m
    }

    /// The latest inspection of every node and pod.
    pub fn inspections(&self) -> BTreeMap<Source, (NodeName, InspectionReport)> {
        let inv = self.inventory();
        let mut out = BTreeMap::new();
        if self.no_inspections {
            return out;
        }
        for n in &inv.nodes {
            let report = self.node_report(&inv, &n.name);
            out.insert(Source::Node(n.name.clone()), (n.name.clone(), report));
        }
        for p in &inv.pods {
            let report = self.pod_report(&inv, &p.pod_ref());
            out.insert(Source::Pod(p.pod_ref()), (p.node.clone(), report));
        }
        out
    }

    /// How `n`'s tables fail to route `peer`'s pod CIDR, if they do.
    fn route_gap(&self, n: &NodeName, peer: &NodeName) -> Option<RouteGap> {
        self.routes_missing.iter().find(|(m, q, _)| m == n && q == peer).map(|(_, _, gap)| *gap)
    }

    fn node_report(&self, inv: &Inventory, n: &NodeName) -> InspectionReport {
        let me = inv.node(n).unwrap();
        let mut routes =
            vec![json!({"destination": "172.29.0.0/24", "device": "eth0", "table": 254, "metric": 0})];
        for peer in inv.nodes.iter().filter(|p| &p.name != n) {
            if self.node_addresses_blackholed.contains(&(n.clone(), peer.name.clone())) {
                routes.push(json!({"destination": format!("{}/32", peer.ips[0]), "table": 254, "metric": 0}));
            }
            match self.route_gap(n, &peer.name) {
                Some(RouteGap::Deleted) if !self.stale_routes => continue,
                Some(RouteGap::Blackhole) if !self.stale_routes => {
                    routes.push(
                        json!({"destination": peer.pod_cidrs[0].to_string(), "table": 254, "metric": 0}),
                    );
                    continue;
                }
                _ => {}
            }
            let gateway = self
                .routes_via
                .iter()
                .find(|(m, q, _)| m == n && q == &peer.name)
                .map_or(peer.ips[0], |(_, _, gw)| *gw);
            routes.push(json!({
                "destination": peer.pod_cidrs[0].to_string(),
                "gateway": gateway.to_string(),
                "device": "eth0",
                "table": 254,
                "metric": 0,
            }));
        }
        // The kernel's three rules, and a prohibit rule per pod CIDR a fault says so for.
        let mut rules = vec![json!({"priority": 0, "ipv6": false, "action": {"lookup": 255}})];
        for peer in inv.nodes.iter().filter(|p| self.route_gap(n, &p.name) == Some(RouteGap::Rule)) {
            rules.push(json!({
                "priority": 100, "ipv6": false, "to": peer.pod_cidrs[0].to_string(), "action": "prohibit"
            }));
        }
        rules.push(json!({"priority": 32766, "ipv6": false, "action": {"lookup": 254}}));
        rules.push(json!({"priority": 32767, "ipv6": false, "action": {"lookup": 253}}));
        let mut nat = Vec::new();
        for s in &inv.services {
            let targets =
                |target_port: Port, node_local: Option<&NodeName>, wrong: bool| -> Vec<serde_json::Value> {
                    s.ready_endpoints()
                        .filter(|e| node_local.is_none_or(|n| e.node.as_ref() == Some(n)))
                        .enumerate()
                        .map(|(k, e)| {
                            let port =
                                if wrong && k == 0 { target_port.get() + 1 } else { target_port.get() };
                            json!({"ip": e.ip.to_string(), "port": port, "chain": "KUBE-SEP-X"})
                        })
                        .collect()
                };
            for p in &s.ports {
                let proto = if p.protocol == Protocol::Udp { "udp" } else { "tcp" };
                let name = match &p.name {
                    Some(pn) => format!("{}:{pn}", s.service_ref()),
                    None => s.service_ref().to_string(),
                };
                for vip in &s.cluster_ips {
                    if self.dnat_missing.contains(&(n.clone(), s.service_ref(), p.port.get())) {
                        continue;
                    }
                    nat.push(json!({
                        "service": name, "vip": vip.to_string(), "port": p.port.get(), "protocol": proto,
                        "targets": targets(p.target_port, None, self.dnat_wrong_port.contains(&(n.clone(), s.service_ref(), p.port.get()))), "node_port": false,
                    }));
                }
                if let Some(np) = p.node_port {
                    if self.nodeport_missing.contains(&(n.clone(), np.get())) {
                        continue;
                    }
                    let local = (s.external_traffic_policy == TrafficPolicy::Local).then_some(n);
                    nat.push(json!({
                        "service": name, "port": np.get(), "protocol": proto,
                        "targets": targets(p.target_port, local, false), "node_port": true,
                    }));
                }
            }
        }
        // Inspections are of the latest state: a healed node forwards again.
        let now_active = self.active.as_ref().is_none_or(|r| r.contains(&(SAMPLES - 1)));
        let forward = if now_active && self.forwarding_off.contains(n) { "0" } else { "1" };
        let mut sysctls = vec![json!({"key": "net.ipv4.ip_forward", "value": forward})];
        if !self.conntrack_unreported {
            let cut = match &self.idle_cut {
                Some((c, secs)) if c == n => *secs,
                _ => 432_000,
            };
            sysctls.push(json!({"key": "net.netfilter.nf_conntrack_tcp_timeout_established", "value": cut.to_string()}));
        }
        let mut drops: Vec<serde_json::Value> = self
            .firewall_drops
            .iter()
            .filter(|(m, _)| m == n)
            .map(|(_, port)| {
                json!({
                    "hook": "forward", "protocol": "tcp", "reject": false,
                    "destination_ports": [{"first": port, "last": port}],
                    "rule": format!("FORWARD: -p tcp -m tcp --dport {port} -j DROP"),
                })
            })
            .collect();
        for (_, peer) in self.forward_drops_from.iter().filter(|(m, _)| m == n) {
            let cidr = inv.node(peer).map(|p| p.pod_cidrs[0].to_string()).unwrap_or_default();
            drops.push(json!({
                "hook": "forward", "source": cidr, "reject": false,
                "rule": format!("FORWARD: -s {cidr} -j DROP"),
            }));
        }
        if self.forward_policy_drop.contains(n) {
            drops.push(json!({
                "hook": "forward", "reject": false, "policy": true,
                "rule": "FORWARD: policy DROP (`iptables -P FORWARD DROP`: drops what no rule accepts)",
            }));
        }
        let opaque = self.nat_rules_opaque;
        let mark = if opaque { " -m mark --mark 0x1" } else { "" };
        let mut nat_rules: Vec<serde_json::Value> = self
            .dnat_by_hand
            .iter()
            .filter(|(m, ..)| m == n)
            .filter_map(|(_, p, port, to)| {
                let ip = inv.pod(p)?.ips[0];
                Some(json!({
                    "hook": "prerouting", "protocol": "tcp", "destination": {"net": format!("{ip}/32")},
                    "destination_ports": [{"first": port, "last": port}],
                    "action": {"kind": "dnat", "address": to.to_string(), "port": port}, "opaque": opaque,
                    "rule": format!("-A PREROUTING -d {ip}/32 -p tcp -m tcp --dport {port}{mark} -j DNAT --to-destination {to}:{port}"),
                }))
            })
            .collect();
        // kube-proxy's jump comes next in PREROUTING; the SNAT rules go before its POSTROUTING one.
        for (_, peer, to) in self.snat_by_hand.iter().filter(|(m, ..)| m == n) {
            let (Some(mine), Some(theirs)) = (inv.node(n), inv.node(peer)) else { continue };
            let (from, dst) = (mine.pod_cidrs[0].to_string(), theirs.pod_cidrs[0].to_string());
            nat_rules.push(json!({
                "hook": "postrouting", "source": {"net": from}, "destination": {"net": dst},
                "action": {"kind": "snat", "address": to.to_string()}, "opaque": opaque,
                "rule": format!("-A POSTROUTING -s {from} -d {dst}{mark} -j SNAT --to-source {to}"),
            }));
        }
        let uplink_mtu = self.uplink_mtu.as_ref().filter(|(m, _)| m == n).map_or(1500, |(_, mtu)| *mtu);
        // What ARP learned of each peer, and the wrong static entries a fault wrote.
        let neighbours: Vec<serde_json::Value> = inv
            .nodes
            .iter()
            .filter(|p| &p.name != n)
            .map(|peer| {
                if self.wrong_neighbours.contains(&(n.clone(), peer.name.clone())) {
                    json!({"ip": peer.ips[0].to_string(), "device": "eth0", "state": "PERMANENT", "lladdr": "02:00:00:de:ad:01"})
                } else {
                    json!({"ip": peer.ips[0].to_string(), "device": "eth0", "state": "REACHABLE", "lladdr": mac_of(peer.ips[0])})
                }
            })
            .collect();
        report(json!({
            "source": {"node": n.to_string()},
            "at": now().get(),
            "links": [
                {"name": "lo", "index": 1, "up": true, "mtu": 65536, "addresses": ["127.0.0.1/8"]},
                {"name": "eth0", "index": 2, "up": true, "mtu": uplink_mtu, "addresses": [format!("{}/24", me.ips[0])], "kind": "veth", "lladdr": mac_of(me.ips[0])},
            ],
            "routes": routes,
            "rules": rules,
            "neighbours": neighbours,
            "nat_services": nat,
            "sysctls": sysctls,
            "resolv_conf": null,
            "proxy_mode": "iptables",
            "errors": [],
            "filter_drops": drops,
            "nat_rules": nat_rules,
        }))
    }

    fn pod_report(&self, inv: &Inventory, p: &PodRef) -> InspectionReport {
        let drops: Vec<serde_json::Value> = self
            .filters
            .iter()
            .filter_map(|(q, g)| match g {
                FilteredSources::Pod(from) if q == p => {
                    let ip = inv.pod(from)?.ips[0];
                    Some(json!({
                        "hook": "input", "source": format!("{ip}/32"), "reject": false,
                        "rule": format!("INPUT: -s {ip}/32 -j DROP"),
                    }))
                }
                _ => None,
            })
            .chain(self.pods_blocking_services.contains(p).then(|| {
                json!({
                    "hook": "output", "protocol": "tcp", "destination": "10.96.0.0/16", "reject": false,
                    "rule": "OUTPUT: -d 10.96.0.0/16 -p tcp -j DROP",
                })
            }))
            .chain((self.dns_server_drops_udp && p.name.as_str() == "coredns-0").then(|| {
                json!({
                    "hook": "input", "protocol": "udp", "reject": false,
                    "destination_ports": [{"first": 53, "last": 53}],
                    "rule": "INPUT: -p udp -m udp --dport 53 -j DROP",
                })
            }))
            .chain(self.ports_rejected.iter().filter(|(q, _)| q == p).map(|(_, port)| {
                json!({
                    "hook": "input", "protocol": "tcp", "reject": true,
                    "destination_ports": [{"first": port, "last": port}],
                    "rule": format!("INPUT: -p tcp -m tcp --dport {port} -j REJECT --reject-with tcp-reset"),
                })
            }))
            .collect();
        let nat_rules: Vec<serde_json::Value> = self
            .pod_dnat_by_hand
            .iter()
            .filter(|(q, ..)| q == p)
            .filter_map(|(_, s, port, to)| {
                let vip = inv.service(s)?.cluster_ips.first()?.to_string();
                Some(json!({
                    "hook": "output", "protocol": "tcp", "destination": {"net": format!("{vip}/32")},
                    "destination_ports": [{"first": port, "last": port}],
                    "action": {"kind": "dnat", "address": to.to_string()}, "opaque": self.nat_rules_opaque,
                    "rule": format!("-A OUTPUT -d {vip}/32 -p tcp -m tcp --dport {port} -j DNAT --to-destination {to}"),
                }))
            })
            .collect();
        let keepalive = self
            .keepalive
            .iter()
            .find(|(q, _)| q == p)
            .map(|(_, s)| *s)
            .or(self.keepalive_all)
            .unwrap_or(7200);
        let nameserver = self
            .bad_resolver
            .iter()
            .find(|(q, _)| q == p)
            .map_or_else(|| "10.96.0.10".to_owned(), |(_, ns)| ns.to_string());
        let addresses: Vec<String> =
            inv.pod(p).filter(|_| !self.pods_unaddressed.contains(p)).map_or_else(Vec::new, |i| {
                i.ips.iter().map(|ip| format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 })).collect()
            });
        report(json!({
            "source": {"pod": p.to_string()},
            "at": now().get(),
            "links": [
                {"name": "lo", "index": 1, "up": true, "mtu": 65536, "addresses": ["127.0.0.1/8"]},
                {"name": "eth0", "index": 3, "up": !self.pods_down.contains(p), "mtu": 1500, "addresses": addresses, "kind": "veth"},
            ],
            // A link down takes its routes with it, as the kernel does.
            "routes": if self.pods_down.contains(p) {
                json!([])
            } else if self.pods_unrouted.contains(p) {
                json!([{"destination": "169.254.1.1/32", "device": "eth0", "table": 254, "metric": 0}])
            } else if self.pods_misrouting_services.contains(p) {
                json!([
                    {"destination": "0.0.0.0/0", "gateway": "169.254.1.1", "device": "eth0", "table": 254, "metric": 0},
                    {"destination": "10.96.0.0/16", "gateway": "169.254.1.99", "device": "eth0", "table": 254, "metric": 0},
                ])
            } else {
                json!([{"destination": "0.0.0.0/0", "gateway": "169.254.1.1", "device": "eth0", "table": 254, "metric": 0}])
            },
            "neighbours": if self.pods_misrouting_services.contains(p) {
                json!([{"ip": "169.254.1.99", "device": "eth0", "state": "INCOMPLETE"}])
            } else {
                json!([])
            },
            "nat_services": [],
            "sysctls": [{"key": "net.ipv4.tcp_keepalive_time", "value": keepalive.to_string()}],
            "resolv_conf": {
                "nameservers": [nameserver],
                "search": [format!("{}.svc.cluster.local", p.namespace), "svc.cluster.local", "cluster.local"],
                "ndots": 5, "timeout_secs": 5, "attempts": 2,
            },
            "proxy_mode": null,
            "errors": [],
            "filter_drops": drops,
            "nat_rules": nat_rules,
        }))
    }

    /// A failing result of the probe's kind (for silent agents and flaky cells).
    fn failing(&self, source: &Source, target: &Target, kind: ProbeKind, at: UnixMillis) -> ProbeResult {
        let outcome = match kind {
            ProbeKind::Icmp | ProbeKind::Mtu => Outcome::Icmp(IcmpFailure::Timeout),
            ProbeKind::Tcp | ProbeKind::Http => Outcome::Tcp(TcpFailure::Timeout),
            ProbeKind::Dns => Outcome::Dns(DnsFailure::Timeout),
        };
        let mut r = base(source, target, kind, outcome, at);
        if kind == ProbeKind::Icmp {
            r.burst = Burst::new(3, 0).ok();
        }
        r
    }

    /// Whether the enforced NetworkPolicies shut `transport` from `source` to pod `dst`: a
    /// side that denies counts unless its pod's node does not enforce.
    fn policy_shuts(&self, inv: &Inventory, source: &Source, dst: &PodRef, transport: Transport) -> bool {
        if self.policies.is_empty() {
            return false;
        }
        let set = PolicySet::from_objects(&self.policies, &self.namespaces)
            .expect("the simulator's policies are valid");
        let Some(d) = inv.pod(dst) else { return false };
        let src = match source {
            Source::Pod(p) => match inv.pod(p) {
                Some(i) => Endpoint::Pod(PodEndpoint::of(i)),
                None => return false,
            },
            Source::Node(n) => match inv.node(n) {
                Some(info) => Endpoint::Host { ip: info.ips[0], node: n, kind: HostKind::Node },
                None => return false,
            },
        };
        let v = set.evaluate(&Traffic {
            source: src,
            destination: Endpoint::Pod(PodEndpoint::of(d)),
            transport,
            via: Via::Direct,
        });
        if v.as_written != Some(Decision::Deny) {
            return false;
        }
        let enforced = |n: &NodeName| !self.policies_unenforced_on.contains(n);
        let ingress = matches!(v.ingress, Side::Denied { .. }) && enforced(&d.node);
        let egress = matches!(v.egress, Side::Denied { .. })
            && source.pod().and_then(|p| inv.pod(p)).is_some_and(|i| enforced(&i.node));
        ingress || egress
    }

    /// Whether a FORWARD policy drop stops a new connection from `source` (on `from`) to a
    /// destination on `to` (pings are not new: their conntrack entries stay fresh).
    fn new_flows_dropped(
        &self,
        source: &Source,
        from: &NodeName,
        to: &NodeName,
        dst_pod: Option<&PodRef>,
    ) -> bool {
        let pod_source = matches!(source, Source::Pod(_));
        let forwarded_out = pod_source && (dst_pod.is_some() || from != to);
        let forwarded_in = dst_pod.is_some() && (pod_source || from != to);
        (forwarded_out && self.forward_policy_drop.contains(from))
            || (forwarded_in && self.forward_policy_drop.contains(to))
    }

    /// How a pod-network path from `source` (on `from`) to a destination on `to` fares.
    fn path(
        &self,
        source: &Source,
        from: &NodeName,
        to: &NodeName,
        dst_pod: Option<&PodRef>,
    ) -> Option<Outcome> {
        if let Source::Pod(p) = source
            && (self.mute(p))
        {
            return Some(Outcome::Tcp(TcpFailure::Unreachable));
        }
        if dst_pod.is_some_and(|p| self.mute(p)) {
            return Some(Outcome::Tcp(TcpFailure::Timeout));
        }
        let filtered = |(p, g): &(PodRef, FilteredSources)| {
            (dst_pod == Some(p)
                && match g {
                    FilteredSources::Node(n) => n == from,
                    FilteredSources::Pod(q) => source.pod() == Some(q),
                    FilteredSources::Namespace(ns) => {
                        source.pod().is_some_and(|s| s.namespace.as_str() == ns)
                    }
                })
                // The pod's own stateless rule (`INPUT -s <q> -j DROP`) drops q's replies to
                // it as well: its paths to q fail too.
                || matches!(g, FilteredSources::Pod(q) if source.pod() == Some(p) && dst_pod == Some(q))
        };
        if self.filters.iter().any(filtered) && source.pod() != dst_pod {
            return Some(Outcome::Tcp(TcpFailure::Timeout));
        }
        // Without forwarding a node passes nothing between its pods and the rest: a pod's
        // packets reach the node itself only, and only the node itself reaches its pods.
        let pod_source = matches!(source, Source::Pod(_));
        let forwarded_out = pod_source && (dst_pod.is_some() || from != to);
        let forwarded_in = dst_pod.is_some() && (pod_source || from != to);
        let stops = |n: &NodeName| self.forwarding_off.contains(n) || self.forwarding_broken.contains(n);
        if (forwarded_out && stops(from)) || (forwarded_in && stops(to)) {
            return Some(Outcome::Tcp(TcpFailure::Timeout));
        }
        if from == to {
            return None;
        }
        let timeout = Some(Outcome::Tcp(TcpFailure::Timeout));
        if self.isolated.contains(from) || self.isolated.contains(to) {
            return timeout;
        }
        if dst_pod.is_none()
            && self.node_addresses_blackholed.iter().any(|(n, peer)| {
                (n == from && peer == to) || (matches!(source, Source::Node(s) if s == peer) && n == to)
            })
        {
            return timeout;
        }
        if matches!(source, Source::Pod(_))
            && dst_pod.is_some()
            && self
                .forward_drops_from
                .iter()
                .any(|(n, peer)| (peer == from && n == to) || (n == from && peer == to))
        {
            return timeout;
        }
        if self.snat_loses_replies(source, from, to, dst_pod.is_some()) {
            return timeout;
        }
        let between = |(a, b): &(NodeName, NodeName)| (a == from && b == to) || (a == to && b == from);
        if self.pairs_cut.iter().any(between) || self.wrong_neighbours.iter().any(between) {
            return timeout;
        }
        let unrouted = |m: &NodeName, q: &NodeName| {
            self.route_gap(m, q).is_some() || self.routes_via.iter().any(|(a, b, _)| a == m && b == q)
        };
        if dst_pod.is_some() && unrouted(from, to) {
            return Some(Outcome::Tcp(TcpFailure::Unreachable));
        }
        if matches!(source, Source::Pod(_)) && unrouted(to, from) {
            return timeout;
        }
        None
    }

    /// TCP to a pod's port, from `source` on `from` (`vip`: sent to a VIP, translated on
    /// `from`).
    fn tcp_to_pod(
        &self,
        inv: &Inventory,
        source: &Source,
        from: &NodeName,
        (p, vip): (&PodRef, bool),
        port: u16,
    ) -> Option<Outcome> {
        let to = inv.pod(p).map(|i| i.node.clone())?;
        if self.nat_sends_away(source, from, (p, &to, vip), port) {
            return Some(Outcome::Tcp(TcpFailure::Timeout));
        }
        // A pod reaches its own address over loopback, interface down or not.
        let itself = matches!(source, Source::Pod(s) if s == p);
        if let Some(o) = self.path(source, from, &to, Some(p)).filter(|_| !itself) {
            return Some(o);
        }
        if self.ports_closed.contains(&(p.clone(), port)) || self.ports_rejected.contains(&(p.clone(), port))
        {
            return Some(Outcome::Tcp(TcpFailure::Refused));
        }
        if self.ports_dropped.contains(&(p.clone(), port)) {
            return Some(Outcome::Tcp(TcpFailure::Timeout));
        }
        // A FORWARD rule: into the node's pods from anywhere but the node itself, and out of
        // its pods to any pod.
        let from_node_itself = matches!(source, Source::Node(m) if *m == to);
        let forwarded_out =
            matches!(source, Source::Pod(_)) && self.firewall_drops.contains(&(from.clone(), port));
        if (self.firewall_drops.contains(&(to.clone(), port)) && !from_node_itself) || forwarded_out {
            return Some(Outcome::Tcp(TcpFailure::Timeout));
        }
        if self.new_flows_dropped(source, from, &to, Some(p)) {
            return Some(Outcome::Tcp(TcpFailure::Timeout));
        }
        if let Ok(port) = Port::new(u32::from(port))
            && self.policy_shuts(inv, source, p, Transport::Tcp(port))
        {
            return Some(Outcome::Tcp(TcpFailure::Timeout));
        }
        let is_dns = p.name.as_str().starts_with("coredns") && port == 53;
        if is_dns && (self.dns_down || self.dns_blocked.contains(from)) {
            return Some(Outcome::Tcp(TcpFailure::Timeout));
        }
        None
    }

    /// Whether a DNAT by hand sends TCP from `source` (on `from`) to pod `p` (on `to`) away: it
    /// enters a node with such a rule before routing with the pod's address as its destination.
    fn nat_sends_away(
        &self,
        source: &Source,
        from: &NodeName,
        (p, to, vip): (&PodRef, &NodeName, bool),
        port: u16,
    ) -> bool {
        let pod_source = matches!(source, Source::Pod(_));
        self.dnat_by_hand.iter().any(|(n, q, q_port, _)| {
            let enters = (pod_source && from == n && !vip) || (from != n && to == n);
            q == p && *q_port == port && enters
        })
    }

    /// Whether an SNAT by hand makes the replies of `source`'s packets (on `from`) to a pod on
    /// `to` go nowhere.
    fn snat_loses_replies(&self, source: &Source, from: &NodeName, to: &NodeName, dst_pod: bool) -> bool {
        matches!(source, Source::Pod(_))
            && dst_pod
            && self.snat_by_hand.iter().any(|(n, peer, _)| n == from && peer == to)
    }

    #[allow(clippy::too_many_arguments)]
    fn result(
        &self,
        inv: &Inventory,
        agent: &NodeName,
        source: &Source,
        target: &Target,
        kind: ProbeKind,
        k: i64,
        at: UnixMillis,
    ) -> ProbeResult {
        let cell = format!("{source}|{target}|{kind}");
        if let Some((n, share)) = &self.flaky
            && n == agent
            && coin(&cell) < *share
        {
            return self.failing(source, target, kind, at);
        }
        if let Some((n, share)) = &self.flaky_results
            && n == agent
            && coin(&format!("{cell}|{k}")) < *share
        {
            return self.failing(source, target, kind, at);
        }
        let pick = |n: usize| (hash(&cell) as usize).wrapping_add(k.rem_euclid(1 << 16) as usize) % n.max(1);
        match (kind, target) {
            (ProbeKind::Icmp, Target::Pod { pod: p, .. }) => {
                if self.policy_shuts(inv, source, p, Transport::Icmp) {
                    return base(source, target, kind, Outcome::Icmp(IcmpFailure::Timeout), at);
                }
                let to = inv.pod(p).map(|i| i.node.clone()).unwrap_or_else(|| agent.clone());
                self.icmp(source, target, agent, &to, Some(p), k, at)
            }
            (ProbeKind::Icmp, Target::Node { node: to, .. }) => {
                self.icmp(source, target, agent, to, None, k, at)
            }
            (ProbeKind::Mtu, Target::Pod { pod: p, ip, .. }) => {
                let to = inv.pod(p).map(|i| i.node.clone()).unwrap_or_else(|| agent.clone());
                if let Some(o) = self.path(source, agent, &to, Some(p)) {
                    let outcome = if o == Outcome::Tcp(TcpFailure::Unreachable) {
                        Outcome::Icmp(IcmpFailure::Unreachable)
                    } else {
                        Outcome::Icmp(IcmpFailure::Timeout)
                    };
                    return base(source, target, kind, outcome, at);
                }
                let one_way = self.mtu_one_way.as_ref().is_some_and(|(n, dir)| {
                    agent != &to
                        && match dir {
                            // The large request enters `to`, the small reply enters the agent's node.
                            Direction::In => n == &to,
                            Direction::Out => n == agent,
                        }
                });
                if one_way {
                    return ProbeResult {
                        path_mtu: PathMtu::new(1400).ok(),
                        detail: Detail::lossy(&format!(
                            "path MTU to {ip} is 1400 bytes, below the route MTU 1500: 1401-byte echoes vanished \
                             without an ICMP error (a path-MTU black hole)"
                        )),
                        ..base(source, target, kind, Outcome::Mtu(MtuFailure::Reduced), at)
                    };
                }
                if from_icmp_block(&self.icmp_blocked, agent, &to) {
                    return base(source, target, kind, Outcome::Icmp(IcmpFailure::Timeout), at);
                }
                match &self.mtu {
                    Some((n, size)) if agent != &to && (n == agent || n == &to) => ProbeResult {
                        path_mtu: PathMtu::new(*size).ok(),
                        detail: Detail::lossy(&format!(
                            "path MTU to {ip} is {size} bytes, below the route MTU 1500: {}-byte echoes vanished \
                             without an ICMP error (a path-MTU black hole)",
                            size + 1
                        )),
                        ..base(source, target, kind, Outcome::Mtu(MtuFailure::Reduced), at)
                    },
                    _ => ProbeResult {
                        path_mtu: PathMtu::new(1500).ok(),
                        ..base(source, target, kind, Outcome::Ok, at)
                    },
                }
            }
            (ProbeKind::Tcp, Target::Pod { pod: p, port: Some(port), .. }) => {
                let o = self.tcp_to_pod(inv, source, agent, (p, false), port.get());
                base(source, target, kind, o.unwrap_or(Outcome::Ok), at)
            }
            (ProbeKind::Tcp, Target::Service { via: ServiceVia::Endpoint(p), port, .. }) => {
                let o = self.tcp_to_pod(inv, source, agent, (p, false), port.get());
                base(source, target, kind, o.unwrap_or(Outcome::Ok), at)
            }
            (ProbeKind::Tcp, Target::Service { service, port, via: ServiceVia::ClusterIp, .. }) => {
                let info = inv.service(service).unwrap();
                let backends: Vec<_> = info.ready_endpoints().collect();
                let outcome = if let Source::Pod(p) = source
                    && self.mute(p)
                {
                    Outcome::Tcp(TcpFailure::Unreachable)
                } else if matches!(source, Source::Pod(p) if self.pods_blocking_services.contains(p)
                    || self.pods_misrouting_services.contains(p)
                    || self.pod_dnat_by_hand.iter().any(|(q, s, q_port, _)| q == p && s == service && *q_port == port.get()))
                {
                    Outcome::Tcp(TcpFailure::Timeout)
                } else if self.dnat_missing.contains(&(agent.clone(), service.clone(), port.get())) {
                    Outcome::Tcp(TcpFailure::Unreachable)
                } else if backends.is_empty() {
                    Outcome::Tcp(TcpFailure::Refused)
                } else {
                    let k = pick(backends.len());
                    let b = backends[k];
                    let target_port =
                        info.ports.iter().find(|sp| sp.port == *port).map_or(*port, |sp| sp.target_port);
                    if k == 0 && self.dnat_wrong_port.contains(&(agent.clone(), service.clone(), port.get()))
                    {
                        return base(source, target, kind, Outcome::Tcp(TcpFailure::Refused), at);
                    }
                    let bp = b.pod.clone().unwrap();
                    self.tcp_to_pod(inv, source, agent, (&bp, true), target_port.get()).unwrap_or(Outcome::Ok)
                };
                base(source, target, kind, outcome, at)
            }
            (ProbeKind::Tcp, Target::Service { service, port, via: ServiceVia::NodePort, ip }) => {
                let to = inv.nodes.iter().find(|n| n.ips.contains(ip)).unwrap().name.clone();
                let info = inv.service(service).unwrap();
                let local = info.external_traffic_policy == TrafficPolicy::Local;
                let backends: Vec<_> =
                    info.ready_endpoints().filter(|e| !local || e.node.as_ref() == Some(&to)).collect();
                let outcome = if let Some(o) = self.path(source, agent, &to, None) {
                    o
                } else if self.new_flows_dropped(source, agent, &to, None) {
                    Outcome::Tcp(TcpFailure::Timeout)
                } else if self.nodeport_missing.contains(&(to.clone(), port.get())) {
                    Outcome::Tcp(TcpFailure::Refused)
                } else if backends.is_empty() {
                    Outcome::Tcp(TcpFailure::Timeout)
                } else {
                    let b = backends[pick(backends.len())];
                    let bp = b.pod.clone().unwrap();
                    let target_port =
                        info.ports.iter().find(|sp| sp.node_port == Some(*port)).unwrap().target_port;
                    self.tcp_to_pod(inv, &Source::Node(to.clone()), &to, (&bp, true), target_port.get())
                        .unwrap_or(Outcome::Ok)
                };
                base(source, target, kind, outcome, at)
            }
            (ProbeKind::Dns, Target::Dns { name, nameserver, transport, .. }) => {
                let udp_blocked = matches!(source, Source::Pod(p) if self.udp_dns_blocked.contains(p));
                // Lookups through resolv.conf go over UDP first, and time out there.
                let vip_blocked = matches!(source, Source::Pod(p) if self.pods_blocking_services.contains(p));
                // Misrouted: every query to a VIP goes nowhere, UDP and TCP alike.
                let misrouted = matches!(source, Source::Pod(p) if self.pods_misrouting_services.contains(p));
                if misrouted && nameserver.is_none_or(|ns| ns.to_string().starts_with("10.96.")) {
                    return base(source, target, kind, Outcome::Dns(DnsFailure::Timeout), at);
                }
                if vip_blocked && nameserver.is_some() && *transport == DnsTransport::Tcp {
                    return base(source, target, kind, Outcome::Dns(DnsFailure::Timeout), at);
                }
                if self.dns_server_drops_udp && (nameserver.is_none() || *transport == DnsTransport::Udp) {
                    return base(source, target, kind, Outcome::Dns(DnsFailure::Timeout), at);
                }
                if udp_blocked && (nameserver.is_none() || *transport == DnsTransport::Udp) {
                    return base(source, target, kind, Outcome::Dns(DnsFailure::NoNameserver), at);
                }
                self.dns(inv, agent, source, target, name, *nameserver, at)
            }
            _ => base(source, target, kind, Outcome::Ok, at),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn icmp(
        &self,
        source: &Source,
        target: &Target,
        from: &NodeName,
        to: &NodeName,
        dst_pod: Option<&PodRef>,
        k: i64,
        at: UnixMillis,
    ) -> ProbeResult {
        if let Some(o) = self.path(source, from, to, dst_pod) {
            let outcome = if o == Outcome::Tcp(TcpFailure::Unreachable) {
                Outcome::Icmp(IcmpFailure::Unreachable)
            } else {
                Outcome::Icmp(IcmpFailure::Timeout)
            };
            return ProbeResult {
                burst: Burst::new(3, 0).ok(),
                ..base(source, target, ProbeKind::Icmp, outcome, at)
            };
        }
        if from != to && self.icmp_blocked.contains(to) {
            return ProbeResult {
                burst: Burst::new(3, 0).ok(),
                ..base(source, target, ProbeKind::Icmp, Outcome::Icmp(IcmpFailure::Timeout), at)
            };
        }
        let mut survive = match &self.loss {
            Some((n, p)) if from != to && (n == from || n == to) => (1.0 - p) * (1.0 - p),
            _ => 1.0,
        };
        // One way: the request enters `to`, the reply enters `from`; each crosses the faulty
        // direction at most once.
        if let Some((n, p, dir)) = &self.loss_one_way
            && from != to
        {
            let hit = match dir {
                Direction::In => n == to || n == from,
                Direction::Out => n == from || n == to,
            };
            if hit {
                survive *= 1.0 - p;
            }
        }
        let received =
            (0..3).filter(|j| coin(&format!("{source}|{target}|{k}|{j}")) < survive).count() as u32;
        let outcome = if received > 0 { Outcome::Ok } else { Outcome::Icmp(IcmpFailure::Timeout) };
        ProbeResult {
            burst: Burst::new(3, received).ok(),
            ..base(source, target, ProbeKind::Icmp, outcome, at)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn dns(
        &self,
        inv: &Inventory,
        agent: &NodeName,
        source: &Source,
        target: &Target,
        name: &DnsName,
        nameserver: Option<IpAddr>,
        at: UnixMillis,
    ) -> ProbeResult {
        let fail = |f: DnsFailure| base(source, target, ProbeKind::Dns, Outcome::Dns(f), at);
        if let Source::Pod(p) = source {
            if self.mute(p) {
                return fail(DnsFailure::NoNameserver);
            }
            if nameserver.is_none() && self.bad_resolver.iter().any(|(q, _)| q == p) {
                return fail(DnsFailure::Timeout);
            }
        }
        let kube_dns = svc("kube-system/kube-dns");
        if self.dnat_missing.iter().any(|(n, s, port)| n == agent && *s == kube_dns && *port == 53) {
            return fail(DnsFailure::Timeout);
        }
        let coredns = pod("kube-system/coredns-0");
        if self.dns_blocked.contains(agent) || self.dns_down {
            return fail(DnsFailure::Timeout);
        }
        if self.path(source, agent, &node("node-1"), Some(&coredns)).is_some()
            || self.new_flows_dropped(source, agent, &node("node-1"), Some(&coredns))
        {
            return fail(DnsFailure::Timeout);
        }
        if self.dns_servfail {
            return fail(DnsFailure::ServFail);
        }
        if let Some(share) = self.dns_loss
            && coin(&format!("{source}|{target}|{}", at.get())) < share
        {
            return fail(DnsFailure::Timeout);
        }
        let asked = name.as_str().trim_end_matches('.');
        if self.names_missing.iter().any(|m| m == asked) {
            return fail(DnsFailure::NxDomain);
        }
        let answer = inv
            .services
            .iter()
            .find(|s| asked.starts_with(&format!("{}.{}", s.name, s.namespace)))
            .map(|s| {
                if s.is_headless() {
                    s.endpoints.iter().map(|e| e.ip).collect()
                } else {
                    s.cluster_ips.clone()
                }
            })
            .unwrap_or_default();
        if answer.is_empty() {
            return fail(DnsFailure::NxDomain);
        }
        ProbeResult {
            answers: answer,
            nameserver: Some(nameserver.unwrap_or_else(|| "10.96.0.10".parse().unwrap())),
            ..base(source, target, ProbeKind::Dns, Outcome::Ok, at)
        }
    }
}

/// ICMP from `from` into `to` is dropped by an ICMP filter on `to`.
fn from_icmp_block(blocked: &[NodeName], from: &NodeName, to: &NodeName) -> bool {
    from != to && blocked.contains(to)
}

fn report(value: serde_json::Value) -> InspectionReport {
    serde_json::from_value(value).unwrap()
}

/// A result with the usual fields for its outcome.
fn base(source: &Source, target: &Target, kind: ProbeKind, outcome: Outcome, at: UnixMillis) -> ProbeResult {
    let outcome = match (kind, outcome) {
        // The model keeps each kind's outcomes to its layers.
        (ProbeKind::Icmp | ProbeKind::Mtu, Outcome::Tcp(TcpFailure::Unreachable)) => {
            Outcome::Icmp(IcmpFailure::Unreachable)
        }
        (ProbeKind::Icmp | ProbeKind::Mtu, Outcome::Tcp(_)) => Outcome::Icmp(IcmpFailure::Timeout),
        (_, o) => o,
    };
    ProbeResult {
        source: source.clone(),
        target: target.clone(),
        kind,
        outcome,
        rtt: outcome.is_ok().then(|| Rtt::from_micros(300, false).unwrap()),
        at,
        detail: Detail::default(),
        burst: None,
        http_status: None,
        path_mtu: None,
        answers: vec![],
        nameserver: None,
    }
}

/// What each agent probes, in the shape of `agent/src/plan.rs`: from every pod, ICMP and TCP
/// to every other pod and port, TCP to every VIP and endpoint, DNS for `<svc>.<ns>` through
/// resolv.conf and each nameserver directly over UDP and TCP; from every node, ICMP to the
/// other nodes and every pod, NodePorts on every node, path MTU to one pod per other node.
pub fn plan(inv: &Inventory) -> Vec<(NodeName, Source, Target, ProbeKind)> {
    let mut out = Vec::new();
    for me in &inv.pods {
        let agent = me.node.clone();
        let source = Source::Pod(me.pod_ref());
        let mut add = |target: Target, kind| out.push((agent.clone(), source.clone(), target, kind));
        for other in inv.pods.iter().filter(|p| p.pod_ref() != me.pod_ref()) {
            for &ip in &other.ips {
                add(Target::Pod { pod: other.pod_ref(), ip, port: None }, ProbeKind::Icmp);
                for cp in other.ports.iter().filter(|c| c.protocol == Protocol::Tcp) {
                    add(Target::Pod { pod: other.pod_ref(), ip, port: Some(cp.port) }, ProbeKind::Tcp);
                }
            }
        }
        for s in &inv.services {
            let tcp = || s.ports.iter().filter(|p| p.protocol == Protocol::Tcp);
            for &vip in &s.cluster_ips {
                for p in tcp() {
                    add(
                        Target::Service {
                            service: s.service_ref(),
                            ip: vip,
                            port: p.port,
                            via: ServiceVia::ClusterIp,
                        },
                        ProbeKind::Tcp,
                    );
                }
            }
            for e in s.ready_endpoints() {
                let Some(p) = &e.pod else { continue };
                for sp in tcp() {
                    let via = ServiceVia::Endpoint(p.clone());
                    add(
                        Target::Service { service: s.service_ref(), ip: e.ip, port: sp.target_port, via },
                        ProbeKind::Tcp,
                    );
                }
            }
            let name = DnsName::new(format!("{}.{}", s.name, s.namespace)).unwrap();
            add(
                Target::Dns { name, record: RecordType::A, nameserver: None, transport: DnsTransport::Udp },
                ProbeKind::Dns,
            );
        }
        for &ns in &inv.cluster.dns_ips {
            let name = DnsName::new("kube-dns.kube-system.svc.cluster.local.").unwrap();
            for transport in [DnsTransport::Udp, DnsTransport::Tcp] {
                let target = Target::Dns {
                    name: name.clone(),
                    record: RecordType::A,
                    nameserver: Some(ns),
                    transport,
                };
                add(target, ProbeKind::Dns);
            }
        }
    }
    for me in &inv.nodes {
        let agent = me.name.clone();
        let source = Source::Node(agent.clone());
        let mut add = |target: Target, kind| out.push((agent.clone(), source.clone(), target, kind));
        for other in inv.nodes.iter().filter(|n| n.name != me.name) {
            add(Target::Node { node: other.name.clone(), ip: other.ips[0], port: None }, ProbeKind::Icmp);
            if let Some(p) = inv.pods_on(&other.name).next() {
                add(Target::Pod { pod: p.pod_ref(), ip: p.ips[0], port: None }, ProbeKind::Mtu);
            }
        }
        for p in &inv.pods {
            add(Target::Pod { pod: p.pod_ref(), ip: p.ips[0], port: None }, ProbeKind::Icmp);
        }
        for s in &inv.services {
            for sp in s.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
                let Some(np) = sp.node_port else { continue };
                for n in &inv.nodes {
                    let target = Target::Service {
                        service: s.service_ref(),
                        ip: n.ips[0],
                        port: np,
                        via: ServiceVia::NodePort,
                    };
                    add(target, ProbeKind::Tcp);
                }
            }
        }
    }
    out
}
