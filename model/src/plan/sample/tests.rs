//! Sampled plans: fan-out and in-degree at 5 000 nodes, stability, failing pairs, and the full
//! plan below the threshold.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::*;
use crate::inventory::{
    ClusterInfo, ContainerPort, EndpointInfo, INVENTORY_VERSION, NodeInfo, ProxyMode, ServiceInfo,
    ServiceKind, ServicePort, TrafficPolicy,
};
use crate::plan::derive::SourcePods;
use crate::plan::{PlannedProbe, Schedule};
use crate::probe::{ProbeKind, Source, Target};
use crate::{PodRef, Port};

const PODS_PER_NODE: usize = 3;
const SERVICES: usize = 10;

fn policy() -> PlanPolicy {
    PlanPolicy::default()
}

fn opts() -> PlanOptions {
    PlanOptions {
        schedule: Schedule::new(Duration::from_secs(5), Duration::from_secs(1), 64, 500).unwrap(),
        http_checks: vec![],
        mtu: true,
        sources: SourcePods::All,
    }
}

fn node_name(i: usize) -> NodeName {
    format!("node-{i}").parse().unwrap()
}

/// `nodes` nodes with [`PODS_PER_NODE`] pods each (one TCP port), and [`SERVICES`] services with
/// a VIP and one endpoint each, spread over the cluster.
fn cluster(nodes: usize) -> Inventory {
    cluster_with(nodes, PODS_PER_NODE, SERVICES)
}

fn cluster_with(nodes: usize, pods_per_node: usize, service_count: usize) -> Inventory {
    let ip = |n: usize, host: usize| format!("10.{}.{}.{}", 100 + n / 250, n % 250, host).parse().unwrap();
    let port = Port::new(8080).unwrap();
    let nodes_v: Vec<NodeInfo> = (0..nodes)
        .map(|i| NodeInfo { name: node_name(i), ips: vec![ip(i, 1)], pod_cidrs: vec![], netns: None })
        .collect();
    let mut pods = Vec::new();
    for i in 0..nodes {
        for j in 0..pods_per_node {
            pods.push(PodInfo {
                namespace: "app".parse().unwrap(),
                name: format!("p-{i}-{j}").parse().unwrap(),
                node: node_name(i),
                ips: vec![ip(i, 10 + j)],
                labels: BTreeMap::new(),
                ports: vec![ContainerPort { name: None, port, protocol: Default::default() }],
                netns: None,
                resolv_conf: None,
            });
        }
    }
    let services = (0..service_count)
        .map(|s| {
            let backend = &pods[(s * 7919) % pods.len()];
            ServiceInfo {
                namespace: "app".parse().unwrap(),
                name: format!("svc-{s}").parse().unwrap(),
                kind: ServiceKind::ClusterIP,
                cluster_ips: vec![format!("10.96.{}.{}", s / 200, 10 + s % 200).parse().unwrap()],
                ports: vec![ServicePort {
                    name: None,
                    port: Port::new(80).unwrap(),
                    target_port: port,
                    node_port: None,
                    protocol: Default::default(),
                }],
                endpoints: vec![EndpointInfo {
                    ip: backend.ips[0],
                    pod: Some(backend.pod_ref()),
                    node: Some(backend.node.clone()),
                    hostname: None,
                    ready: true,
                }],
                external_traffic_policy: TrafficPolicy::Cluster,
            }
        })
        .collect();
    let inv = Inventory {
        version: INVENTORY_VERSION,
        cluster: ClusterInfo {
            name: "big".into(),
            domain: "cluster.local".into(),
            pod_cidrs: vec![],
            service_cidrs: vec![],
            node_cidrs: vec![],
            dns_ips: vec![],
            proxy_mode: ProxyMode::Iptables,
        },
        nodes: nodes_v,
        pods,
        services,
        namespaces: vec![],
        network_policies: vec![],
    };
    inv.validate().unwrap();
    inv
}

/// Target nodes of a plan: nodes pinged, and nodes of the pods probed.
fn reached(inv: &Inventory, plan: &ProbePlan) -> (BTreeSet<NodeName>, BTreeSet<PodRef>) {
    let mut nodes = BTreeSet::new();
    let mut pods = BTreeSet::new();
    for p in &plan.probes {
        match &p.target {
            Target::Node { node, .. } => {
                nodes.insert(node.clone());
            }
            Target::Pod { pod, .. } => {
                pods.insert(pod.clone());
            }
            _ => {}
        }
    }
    let _ = inv;
    (nodes, pods)
}

/// The bound the module doc states, for this cluster: per pod source, every other local pod and
/// `k·m` peer pods (ICMP + 1 port each), every VIP and DNS name; the node pings `k` peers and
/// their chosen pods, MTU to one pod per peer.
fn fan_out_bound(k: usize, m: usize) -> usize {
    let pod_targets = PODS_PER_NODE + k * m;
    let per_pod = (pod_targets - 1) * 2 + SERVICES * 2 /* VIP, DNS name */ + SERVICES /* endpoint */;
    let per_node = k + pod_targets + k;
    PODS_PER_NODE * per_pod + per_node
}

#[test]
fn five_thousand_nodes_bounded_fan_out_and_k_probers_each() {
    let started = Instant::now();
    let inv = cluster(5_000);
    let p = policy();
    let sampler = Sampler::new(&inv, &p, &BTreeSet::new());
    assert!(sampler.is_sampled());
    let (k, m) = (p.peers_per_node, p.pods_per_peer);
    let bound = fan_out_bound(k, m);
    let mut probed_by: BTreeMap<NodeName, usize> = BTreeMap::new();
    let mut max_fan_out = 0;
    for n in &inv.nodes {
        let plan = sampler.plan(&n.name, &opts(), NonZeroU64::MIN);
        max_fan_out = max_fan_out.max(plan.probes.len());
        assert!(plan.probes.len() <= bound, "{}: {} probes > {bound}", n.name, plan.probes.len());
        let (nodes, pods) = reached(&inv, &plan);
        assert_eq!(nodes.len(), k, "{} pings {} nodes", n.name, nodes.len());
        assert!(pods.len() <= PODS_PER_NODE + k * m, "{} reaches {} pods", n.name, pods.len());
        for peer in nodes {
            *probed_by.entry(peer).or_default() += 1;
        }
    }
    assert_eq!(probed_by.len(), inv.nodes.len(), "every node has a prober");
    assert!(probed_by.values().all(|&d| d == k), "every node is probed by exactly k = {k} nodes");
    assert_eq!(p.interval(5_000), Duration::from_secs(60), "capped");
    let elapsed = started.elapsed();
    eprintln!("5000 nodes: max fan-out {max_fan_out} probes (bound {bound}), {elapsed:?}");
}

#[test]
fn a_new_node_moves_few_assignments() {
    let (before, after) = (cluster(2_000), cluster(2_001));
    let p = policy();
    let (a, b) = (Sampler::new(&before, &p, &BTreeSet::new()), Sampler::new(&after, &p, &BTreeSet::new()));
    let edges = |s: &Sampler<'_>, inv: &Inventory| -> BTreeSet<(NodeName, NodeName)> {
        inv.nodes
            .iter()
            .flat_map(|n| s.ring_peers(&n.name).into_iter().map(|peer| (n.name.clone(), peer.clone())))
            .collect()
    };
    let (old, new) = (edges(&a, &before), edges(&b, &after));
    let k = p.peers_per_node;
    assert_eq!(old.difference(&new).count(), k, "k predecessors each drop one peer");
    assert_eq!(new.difference(&old).count(), 2 * k, "…for the new node, which probes k of its own");
    // Pods chosen on a peer do not depend on the rest of the cluster.
    let prober = node_name(17);
    for peer in a.ring_peers(&prober).into_iter().filter(|peer| b.ring_peers(&prober).contains(peer)) {
        assert_eq!(
            a.chosen_pods(prober.as_str(), peer.as_str()),
            b.chosen_pods(prober.as_str(), peer.as_str())
        );
    }
}

#[test]
fn a_failing_pair_is_probed_fully_both_ways() {
    let inv = cluster(500);
    let p = policy();
    let (x, y) = (node_name(3), node_name(400));
    let plain = Sampler::new(&inv, &p, &BTreeSet::new());
    assert!(
        !plain.ring_peers(&x).contains(&&y) && !plain.ring_peers(&y).contains(&&x),
        "pick a non-peer pair"
    );
    let failing: BTreeSet<_> = [(x.clone(), y.clone())].into();
    let s = Sampler::new(&inv, &p, &failing);
    for (from, to) in [(&x, &y), (&y, &x)] {
        let plan = s.plan(from, &opts(), NonZeroU64::MIN);
        let (nodes, pods) = reached(&inv, &plan);
        assert!(nodes.contains(to), "{from} pings {to}");
        assert_eq!(nodes.len(), p.peers_per_node + 1);
        let all_of_peer: BTreeSet<PodRef> = inv.pods_on(to).map(PodInfo::pod_ref).collect();
        assert!(all_of_peer.is_subset(&pods), "{from} reaches every pod of {to}");
        for pod in inv.pods_on(from) {
            let from_pod = Source::Pod(pod.pod_ref());
            for target in &all_of_peer {
                let icmp = PlannedProbe {
                    source: from_pod.clone(),
                    target: Target::Pod {
                        pod: target.clone(),
                        ip: inv.pod(target).unwrap().ips[0],
                        port: None,
                    },
                    kind: ProbeKind::Icmp,
                    http_path: None,
                    every: crate::EveryRounds::ONE,
                };
                assert!(plan.probes.contains(&icmp), "{from_pod} → {target}");
            }
        }
    }
    // The rest of the cluster is untouched.
    let other = node_name(250);
    assert_eq!(s.plan(&other, &opts(), NonZeroU64::MIN), plain.plan(&other, &opts(), NonZeroU64::MIN));
}

#[test]
fn below_the_threshold_the_plan_is_the_full_plan() {
    let p = policy();
    let inv = cluster(p.full_mesh_below - 1);
    let failing: BTreeSet<_> = [(node_name(0), node_name(1))].into();
    let s = Sampler::new(&inv, &p, &failing);
    assert!(!s.is_sampled());
    for n in &inv.nodes {
        let full = crate::plan::derive_plan(&inv, &n.name, &opts(), NonZeroU64::MIN);
        assert_eq!(s.plan(&n.name, &opts(), NonZeroU64::MIN), full);
    }
    // And the lab's own inventory.
    let lab = crate::plan::derive::tests::inventory();
    let lab_opts = crate::plan::derive::tests::opts();
    let s = Sampler::new(&lab, &p, &BTreeSet::new());
    let node = "node-2".parse().unwrap();
    let want = PlanOptions { schedule: p.schedule(3, lab_opts.schedule), ..lab_opts.clone() };
    assert_eq!(
        s.plan(&node, &lab_opts, NonZeroU64::MIN),
        crate::plan::derive_plan(&lab, &node, &want, NonZeroU64::MIN)
    );
}

#[test]
fn the_interval_grows_in_steps_up_to_the_cap() {
    let p = PlanPolicy {
        full_mesh_below: 50,
        base_interval: Duration::from_secs(5),
        max_interval: Duration::from_secs(60),
        ..PlanPolicy::default()
    };
    let cases = [(1, 5), (49, 5), (50, 5), (51, 10), (100, 10), (101, 15), (500, 50), (600, 60), (5_000, 60)];
    for (nodes, secs) in cases {
        assert_eq!(p.interval(nodes), Duration::from_secs(secs), "{nodes} nodes");
    }
    let template = Schedule::new(Duration::from_secs(1), Duration::from_millis(800), 8, 100).unwrap();
    let s = p.schedule(500, template);
    assert_eq!(
        (s.interval(), s.timeout(), s.max_concurrency().get()),
        (Duration::from_secs(50), template.timeout(), 8)
    );
}

/// 5 000 nodes × 30 pods and one Service per 20 pods: the unthinned plan would pass the
/// model's limit on probes per plan; the thinned one stays near `L`-bounded, every pod is
/// probed (by its node and the pod before it), every Service by `k` nodes.
#[test]
fn thinned_plans_are_bounded_by_the_node_not_the_cluster() {
    const NODES: usize = 5_000;
    const PODS: usize = 30;
    let mut inv = cluster_with(NODES, PODS, NODES * PODS / 20);
    inv.cluster.dns_ips = vec![];
    let p = policy();
    let sampler = Sampler::new(&inv, &p, &BTreeSet::new());
    assert!(sampler.is_thinned(), "{} estimated cells", sampler.dense_cells());
    let mut probed: BTreeMap<PodRef, usize> = BTreeMap::new();
    let mut services: BTreeMap<String, BTreeSet<NodeName>> = BTreeMap::new();
    let (mut cells, mut max) = (0usize, 0usize);
    let started = Instant::now();
    for n in &inv.nodes {
        let plan = sampler.plan(&n.name, &opts(), NonZeroU64::MIN);
        cells += plan.probes.len();
        max = max.max(plan.probes.len());
        for probe in &plan.probes {
            match &probe.target {
                Target::Pod { pod, .. } if probe.kind == ProbeKind::Icmp => {
                    *probed.entry(pod.clone()).or_default() += 1
                }
                Target::Service { service, via: crate::probe::ServiceVia::ClusterIp, .. } => {
                    services.entry(service.to_string()).or_default().insert(n.name.clone());
                }
                _ => {}
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!("5000 × 30 thinned: {cells} probes, at most {max} per plan, {elapsed:?}");
    assert!(max < 400, "{max} probes in one plan");
    assert!(cells < 2_000_000, "{cells} pod-level probes in all");
    assert_eq!(probed.len(), inv.pods.len(), "every pod is probed");
    assert!(probed.values().all(|&n| n >= 2), "by its node and the pod before it at least");
    assert_eq!(services.len(), inv.services.len(), "every Service is probed");
    assert!(services.values().all(|n| n.len() == p.peers_per_node), "each from k nodes");
}

#[test]
fn hashes_are_stable_across_releases() {
    // Pinned: a change here reshuffles every cluster's peers on upgrade.
    assert_eq!(hash(&["node-1"]), hash(&["node-1"]));
    assert_ne!(hash(&["node-1", "x"]), hash(&["node-1x"]));
    assert_eq!(format!("{:016x}", hash(&["node-1"])), PINNED_NODE_1);
}

const PINNED_NODE_1: &str = "a8959e86a681b0eb";
