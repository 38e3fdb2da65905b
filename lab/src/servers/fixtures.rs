//! Test fixtures shared by the servers' unit tests: a small dual-stack inventory of a TiDB-like
//! cluster, whose cluster domain is spelled oddly on purpose (`Cluster.Local.`).

use netdiag_model::inventory::Inventory;

use super::dns_zone::DnsZone;

pub(crate) const INVENTORY: &str = r#"
version: 1
cluster:
  name: lab
  domain: Cluster.Local.
  pod_cidrs: [10.244.0.0/16, "fd00:10:244::/56"]
  service_cidrs: [10.96.0.0/16]
  node_cidrs: [172.29.0.0/24]
  dns_ips: [10.96.0.10]
  proxy_mode: iptables
nodes:
  - { name: node-1, ips: [172.29.0.11], pod_cidrs: [10.244.1.0/24] }
pods:
  - { namespace: tidb, name: demo-pd-0, node: node-1, ips: [10.244.1.2, "fd00:10:244:1::2"] }
  - { namespace: tidb, name: demo-pd-1, node: node-1, ips: [10.244.1.3] }
  - { namespace: tidb, name: demo-pd-2, node: node-1, ips: [10.244.1.4] }
  - { namespace: tidb, name: demo-tikv-0, node: node-1, ips: [10.244.1.5] }
services:
  - namespace: tidb
    name: demo-pd
    type: ClusterIP
    cluster_ips: [10.96.0.20, "fd00:10:96::20"]
    ports: [{ port: 2379, target_port: 2379 }]
    endpoints:
      - { ip: 10.244.1.2, pod: tidb/demo-pd-0, ready: true }
  - namespace: tidb
    name: demo-pd-peer
    type: ClusterIP
    ports: [{ port: 2380, target_port: 2380 }]
    endpoints:
      - { ip: 10.244.1.2, pod: tidb/demo-pd-0, hostname: Demo-PD-0, ready: true }
      - { ip: "fd00:10:244:1::2", pod: tidb/demo-pd-0, hostname: demo-pd-0, ready: true }
      - { ip: 10.244.1.3, pod: tidb/demo-pd-1, ready: true }
      - { ip: 10.244.1.4, pod: tidb/demo-pd-2, ready: false }
      - { ip: 10.244.1.9, ready: true }
  - namespace: tidb
    name: demo-tikv-peer
    type: ClusterIP
    ports: [{ port: 20160, target_port: 20160 }]
    endpoints:
      - { ip: 10.244.1.5, pod: tidb/demo-tikv-0, ready: false }
"#;

pub(crate) fn inventory() -> Inventory {
    Inventory::from_yaml(INVENTORY).unwrap()
}

pub(crate) fn zone() -> DnsZone {
    DnsZone::from_inventory(&inventory())
}
