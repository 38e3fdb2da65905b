//! Namespace discovery is node-local: with two default labs up at once (the same pod IPs in
//! each), an agent without an inventory file, living in lab A's node-1 namespace, finds every
//! node-1 pod of lab A in lab A's namespace and never enters lab B's. Without the locality
//! rule every pod IP is in two namespaces, proves nothing, and no pod maps at all.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use netdiag_agent::namespaces;
use netdiag_agent::sources::{Discovery, Sources, inventory_from_collector};
use netdiag_lab::plan::LabPlan;
use netdiag_model::inventory::Inventory;
use netdiag_model::probe::Source;
use netdiag_model::session::{LocalPod, NodePods};
use netdiag_model::{DnsName, NodeName, PodRef};
use netdiag_netns::{NetnsId, netns_id};
use netdiag_tests::lab::TestLab;

/// What the collector would send lab `lab`'s `node` agent.
fn node_pods(lab: &TestLab, node: &NodeName) -> NodePods {
    let inv = Inventory::from_yaml(&std::fs::read_to_string(lab.state.inventory_path()).unwrap()).unwrap();
    NodePods {
        pods: inv
            .pods_on(node)
            .map(|p| LocalPod { pod: p.pod_ref(), ips: p.ips.clone(), host_network: false })
            .collect(),
        node_ips: inv.node(node).unwrap().ips.clone(),
        dns_ips: inv.cluster.dns_ips.clone(),
        cluster_domain: DnsName::new(inv.cluster.domain.trim_end_matches('.')).unwrap(),
    }
}

/// Every pod namespace of `lab`, by pod.
fn pod_netns(lab: &TestLab) -> BTreeMap<PodRef, NetnsId> {
    lab.plan.pods.iter().map(|p| (p.pod.clone(), netns_id(&LabPlan::netns_path(&p.netns)).unwrap())).collect()
}

#[test]
fn two_labs_with_the_same_pod_ips_each_map_their_own_pods() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(TestLab::up);
        let b = s.spawn(TestLab::up);
        (a.join().unwrap(), b.join().unwrap())
    });
    let node: NodeName = "node-1".parse().unwrap();
    let (a_ns, b_ns) = (pod_netns(&a), pod_netns(&b));
    let pods = node_pods(&a, &node);
    assert!(pods.pods.len() >= 2, "node-1 has pods: {pods:?}");
    let shared =
        pods.pods.iter().filter(|p| node_pods(&b, &node).pods.iter().any(|q| q.ips == p.ips)).count();
    assert_eq!(shared, pods.pods.len(), "both labs give node-1's pods the same IPs");

    let resolv_dir = std::env::temp_dir().join(format!("netdiag-discovery-test-{}", a.name()));
    let discovery = Discovery { resolv_dir: resolv_dir.clone(), ..Discovery::default() };
    let inv = inventory_from_collector(&node, &pods);
    let node_path = LabPlan::netns_path(&a.node("node-1").netns);
    // As the agent does, from a thread living in its node's namespace.
    let (local, report, sources) = netdiag_netns::run_in(&node_path, move || {
        let local: Vec<NetnsId> =
            namespaces::discover_local(&discovery.netns_dir, discovery.proc_dir.as_deref())
                .iter()
                .map(|f| f.id)
                .collect();
        let mut sources = Sources::default();
        let report = sources.refresh(&inv, &node, &discovery);
        let ids: BTreeMap<Source, Option<NetnsId>> =
            sources.all().map(|e| (e.ns.source().clone(), e.id)).collect();
        (local, report, ids)
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&resolv_dir);

    assert!(report.unreachable.is_empty(), "every node-1 pod is found: {report:?}");
    for p in &pods.pods {
        let got = sources.get(&Source::Pod(p.pod.clone())).copied().flatten();
        assert_eq!(
            got,
            Some(a_ns[&p.pod]),
            "{} maps to lab A's namespace (lab B's: {:?})",
            p.pod,
            b_ns[&p.pod]
        );
    }
    for id in b_ns.values() {
        assert!(!local.contains(id), "lab B's pod namespace {id:?} is not lab A's node-1's");
    }
    for p in a.plan.pods.iter().filter(|p| p.node.as_str() != "node-1") {
        assert!(!local.contains(&a_ns[&p.pod]), "{} lives on {}, not node-1", p.pod, p.node);
    }
    assert_eq!(sources.len(), pods.pods.len() + 1, "node-1's pods and the node: {sources:?}");
}
