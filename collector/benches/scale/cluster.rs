//! The simulated cluster, a pure function of its shape, so the bench (which seeds fakekube) and
//! the load process (which answers probes) build the same one: `nodes` nodes, `pods` pods each,
//! grouped in workloads of [`REPLICAS`] spread over consecutive nodes, every other workload
//! behind a ClusterIP Service (one Service per 20 pods, each with its 10 endpoints), 50
//! namespaces, and kube-dns (two CoreDNS pods). Addresses encode the node, so a probe's target
//! is placed without a lookup: node `i` is `172.16.0.0/16` host `i + 1`, its pods
//! `10.(64 + i / 256).(i % 256).(slot + 2)`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Result, ensure};
use netdiag_model::inventory::{
    ClusterInfo, ContainerPort, EndpointInfo, Inventory, NodeInfo, PodInfo, Protocol, ProxyMode, ServiceInfo,
    ServiceKind, ServicePort, TrafficPolicy,
};
use netdiag_model::{NodeName, PodRef, Port};

/// Pods per workload (Deployment).
pub(crate) const REPLICAS: usize = 10;
/// The pods' one TCP port.
pub(crate) const APP_PORT: u16 = 8080;
/// Slots from here up are for churned pods.
pub(crate) const CHURN_SLOT: usize = 200;
pub(crate) const DNS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) nodes: usize,
    pub(crate) pods_per_node: usize,
}

impl Shape {
    pub(crate) fn check(self) -> Result<Self> {
        ensure!((3..=16_000).contains(&self.nodes), "NODES must be 3 to 16000");
        ensure!((1..CHURN_SLOT - 2).contains(&self.pods_per_node), "PODS must be 1 to {}", CHURN_SLOT - 3);
        Ok(self)
    }

    pub(crate) fn workloads(self) -> usize {
        (self.nodes * self.pods_per_node).div_ceil(REPLICAS)
    }
}

pub(crate) fn node_name(i: usize) -> NodeName {
    NodeName::new(format!("node-{i:05}")).unwrap_or_else(|_| unreachable!("a valid node name"))
}

/// The index of a node named by [`node_name`].
pub(crate) fn node_index(name: &str) -> Option<usize> {
    name.strip_prefix("node-")?.parse().ok()
}

pub(crate) fn node_ip(i: usize) -> IpAddr {
    let h = i + 1;
    IpAddr::V4(Ipv4Addr::new(172, 16, (h / 256) as u8, (h % 256) as u8))
}

pub(crate) fn pod_ip(node: usize, slot: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, (64 + node / 256) as u8, (node % 256) as u8, (slot + 2) as u8))
}

/// The node a pod or node address belongs to.
pub(crate) fn node_of_ip(ip: IpAddr) -> Option<usize> {
    let IpAddr::V4(v4) = ip else { return None };
    let [a, b, c, d] = v4.octets();
    match (a, b) {
        (10, 64..=127) => Some((usize::from(b) - 64) * 256 + usize::from(c)),
        (172, 16) => (usize::from(c) * 256 + usize::from(d)).checked_sub(1),
        _ => None,
    }
}

fn service_ip(s: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 97 + (s / 65_536) as u8, ((s / 256) % 256) as u8, (s % 256) as u8))
}

fn name<T: std::str::FromStr>(s: String) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap_or_else(|e| unreachable!("a valid generated name {s}: {e:?}"))
}

fn port(p: u16) -> Port {
    Port::new(u32::from(p)).unwrap_or_else(|_| unreachable!("a valid port"))
}

/// A Running pod of the simulated cluster.
pub(crate) fn pod(namespace: &str, pod_name: String, node: usize, slot: usize, app: &str) -> PodInfo {
    PodInfo {
        namespace: name(namespace.to_owned()),
        name: name(pod_name),
        node: node_name(node),
        ips: vec![pod_ip(node, slot)],
        labels: BTreeMap::from([("app".to_owned(), app.to_owned())]),
        ports: vec![ContainerPort {
            name: Some("http".into()),
            port: port(APP_PORT),
            protocol: Protocol::Tcp,
        }],
        netns: None,
        resolv_conf: None,
    }
}

/// The whole cluster.
pub(crate) fn inventory(shape: Shape) -> Inventory {
    let Shape { nodes, pods_per_node } = shape;
    let node_list = (0..nodes)
        .map(|i| NodeInfo {
            name: node_name(i),
            ips: vec![node_ip(i)],
            pod_cidrs: vec![name(format!("10.{}.{}.0/24", 64 + i / 256, i % 256))],
            netns: None,
        })
        .collect();
    let mut pods = Vec::with_capacity(nodes * pods_per_node + 2);
    let mut services = Vec::new();
    for w in 0..shape.workloads() {
        let namespace = format!("ns-{}", w % 50);
        let app = format!("w{w}");
        let mut endpoints = Vec::new();
        for r in 0..REPLICAS {
            let g = w * REPLICAS + r;
            if g >= nodes * pods_per_node {
                break;
            }
            // Round robin: a workload's replicas land on consecutive nodes.
            let (node, slot) = (g % nodes, g / nodes);
            let p = pod(&namespace, format!("{app}-{r}"), node, slot, &app);
            endpoints.push(EndpointInfo {
                ip: p.ips[0],
                pod: Some(p.pod_ref()),
                node: Some(p.node.clone()),
                hostname: None,
                ready: true,
            });
            pods.push(p);
        }
        if w % 2 == 0 {
            services.push(ServiceInfo {
                namespace: name(namespace),
                name: name(format!("svc-{app}")),
                kind: ServiceKind::ClusterIP,
                cluster_ips: vec![service_ip(w / 2)],
                ports: vec![ServicePort {
                    name: Some("http".into()),
                    port: port(80),
                    target_port: port(APP_PORT),
                    node_port: None,
                    protocol: Protocol::Tcp,
                }],
                endpoints,
                external_traffic_policy: TrafficPolicy::Cluster,
            });
        }
    }
    // CoreDNS on the first two nodes, in the slot after the workloads'.
    let dns_slot = pods_per_node;
    let mut dns_endpoints = Vec::new();
    for (i, node) in [0, 1].into_iter().enumerate() {
        let mut p = pod("kube-system", format!("coredns-{i}"), node, dns_slot, "coredns");
        p.ports =
            vec![ContainerPort { name: Some("dns-tcp".into()), port: port(53), protocol: Protocol::Tcp }];
        dns_endpoints.push(EndpointInfo {
            ip: p.ips[0],
            pod: Some(p.pod_ref()),
            node: Some(p.node.clone()),
            hostname: None,
            ready: true,
        });
        pods.push(p);
    }
    services.push(ServiceInfo {
        namespace: name("kube-system".into()),
        name: name("kube-dns".into()),
        kind: ServiceKind::ClusterIP,
        cluster_ips: vec![IpAddr::V4(DNS_VIP)],
        ports: [("dns", Protocol::Udp), ("dns-tcp", Protocol::Tcp)]
            .into_iter()
            .map(|(n, protocol)| ServicePort {
                name: Some(n.into()),
                port: port(53),
                target_port: port(53),
                node_port: None,
                protocol,
            })
            .collect(),
        endpoints: dns_endpoints,
        external_traffic_policy: TrafficPolicy::Cluster,
    });
    Inventory {
        version: netdiag_model::inventory::INVENTORY_VERSION,
        cluster: ClusterInfo {
            name: "scale".into(),
            domain: "cluster.local".into(),
            pod_cidrs: vec![name("10.64.0.0/10".into())],
            service_cidrs: vec![name("10.96.0.0/12".into())],
            node_cidrs: vec![name("172.16.0.0/16".into())],
            dns_ips: vec![IpAddr::V4(DNS_VIP)],
            proxy_mode: ProxyMode::Iptables,
        },
        nodes: node_list,
        pods,
        services,
        namespaces: Vec::new(),
        network_policies: Vec::new(),
    }
}

/// Where a service VIP's traffic goes: its ready backends (pod, node).
pub(crate) fn backends(inv: &Inventory) -> HashMap<IpAddr, Vec<(PodRef, usize)>> {
    inv.services
        .iter()
        .flat_map(|s| {
            let eps: Vec<(PodRef, usize)> = s
                .ready_endpoints()
                .filter_map(|e| Some((e.pod.clone()?, node_index(e.node.as_ref()?.as_str())?)))
                .collect();
            s.cluster_ips.iter().map(move |ip| (*ip, eps.clone()))
        })
        .collect()
}

/// A churned pod: `churn/c<seq>` on node `seq % nodes`, in a slot past the workloads'.
pub(crate) fn churn_pod(shape: Shape, seq: usize) -> PodInfo {
    let node = (seq * 7919) % shape.nodes;
    let slot = CHURN_SLOT + (seq / shape.nodes) % 40;
    pod("churn", format!("c{seq}"), node, slot, "churn")
}
