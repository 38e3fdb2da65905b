//! The planner without a network: who gets pods and plans, when changes are sent, generations.

use std::collections::BTreeSet;

use netdiag_model::matrix::{MatrixCell, Ratio};
use netdiag_model::probe::{ProbeKind, Source};
use netdiag_model::result::Seq;
use netdiag_model::session::{AgentVersion, InstanceId};
use netdiag_model::text::Text;

use super::*;
use netdiag_diagnose::matrix::MatrixConfig;
use netdiag_diagnose::sim::INVENTORY;

fn inventory() -> Inventory {
    Inventory::from_yaml(INVENTORY).unwrap()
}

fn planner() -> (Arc<CollectorState>, Arc<Planner>) {
    let state = Arc::new(CollectorState::new(inventory(), MatrixConfig::default()));
    let planner = Planner::new(state.clone(), PlansConfig::default());
    (state, planner)
}

fn hello(node: &str, collector_inventory: bool) -> Hello {
    let mut capabilities: BTreeSet<Capability> = [Capability::Icmp, Capability::Tcp].into();
    if collector_inventory {
        capabilities.insert(Capability::CollectorInventory);
    }
    Hello {
        node: node.parse().unwrap(),
        agent_version: AgentVersion::new("0.1.0").unwrap(),
        capabilities,
        pods: vec![],
        node_ips: vec![],
        first_unacked_seq: Seq::FIRST,
        instance_id: InstanceId::new(format!("{node}-test")).unwrap(),
    }
}

fn split(msgs: Vec<CollectorMessage>) -> (Option<NodePods>, Option<ProbePlan>) {
    let (mut pods, mut plan) = (None, None);
    for m in msgs {
        match m {
            CollectorMessage::Pods(p) => pods = Some(p),
            CollectorMessage::Plan(p) => plan = Some(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    (pods, plan)
}

#[test]
fn agents_with_an_inventory_get_nothing() {
    let (_, planner) = planner();
    assert!(planner.on_hello(&hello("node-1", false)).is_empty());
    assert!(planner.refresh(|_| true).is_empty(), "and are not refreshed either");
}

#[test]
fn agents_without_one_get_their_pods_then_their_plan() {
    let (_, planner) = planner();
    let msgs = planner.on_hello(&hello("node-1", true));
    assert!(matches!(msgs.first(), Some(CollectorMessage::Pods(_))), "pods first, so sources exist");
    let (pods, plan) = split(msgs);
    let (pods, plan) = (pods.unwrap(), plan.unwrap());
    let inv = inventory();
    let node = "node-1".parse().unwrap();
    let want: Vec<String> = inv.pods_on(&node).map(|p| p.pod_ref().to_string()).collect();
    assert_eq!(pods.pods.iter().map(|p| p.pod.to_string()).collect::<Vec<_>>(), want);
    assert_eq!(pods.dns_ips, inv.cluster.dns_ips);
    assert_eq!(pods.cluster_domain.as_str(), "cluster.local");
    assert!(plan.generation.get() >= planner.epoch, "generations start at the collector's start");
    let sources: BTreeSet<Source> = plan.probes.iter().map(|p| p.source.clone()).collect();
    assert_eq!(sources.len(), want.len() + 1, "the node and every pod on it: {sources:?}");
    assert_eq!(plan.schedule.interval(), PlanPolicy::default().base_interval);
}

#[test]
fn only_changes_are_sent_and_generations_grow() {
    let (state, planner) = planner();
    let (_, first) = split(planner.on_hello(&hello("node-1", true)));
    let (_, other) = split(planner.on_hello(&hello("node-2", true)));
    assert!(planner.refresh(|_| true).is_empty(), "nothing changed");

    // A pod on node-2 goes away: node-2's pod list changes; every plan that targeted it too.
    let mut inv = inventory();
    let gone = inv.pods.iter().position(|p| p.node.as_str() == "node-2").unwrap();
    inv.pods.remove(gone);
    state.set_inventory(inv);
    let changes = planner.refresh(|_| true);
    let to = |node: &str| -> Vec<&CollectorMessage> {
        changes.iter().filter(|(n, _)| n.as_str() == node).map(|(_, m)| m).collect()
    };
    assert!(
        matches!(to("node-2")[..], [CollectorMessage::Pods(_), CollectorMessage::Plan(_)]),
        "{changes:?}"
    );
    match to("node-1")[..] {
        [CollectorMessage::Plan(p)] => assert!(p.generation > first.unwrap().generation),
        ref other => panic!("node-1 should get only a new plan: {other:?}"),
    }
    let Some(CollectorMessage::Plan(p)) = to("node-2").last().copied() else { unreachable!() };
    assert!(p.generation > other.unwrap().generation);

    // A node whose agent left is forgotten; its next hello gets everything again.
    assert!(planner.refresh(|n| n.as_str() != "node-1").is_empty());
    let (pods, plan) = split(planner.on_hello(&hello("node-1", true)));
    assert!(pods.is_some() && plan.is_some());
}

#[test]
fn failing_pairs_are_failed_or_degraded_node_cells() {
    let cell = |src: &str, dst: &str, status| MatrixCell {
        source: Text::lossy(src),
        destination: Text::lossy(dst),
        kind: ProbeKind::Icmp,
        status,
        loss_ratio: Ratio::new(0.0).unwrap(),
        rtt_p50: None,
        rtt_p99: None,
        last_error: Text::lossy(""),
        samples: 3,
        last_update: None,
    };
    let snapshot = MatrixSnapshot {
        cells: vec![
            cell("node-1", "node-2", CellStatus::Failed),
            cell("node-2", "node-3", CellStatus::Degraded),
            cell("node-3", "node-1", CellStatus::Ok),
            cell("node-1", "node-3", CellStatus::Unknown),
            cell("node-1", "tidb/demo-pd", CellStatus::Failed),
        ],
        generated_at: now(),
    };
    let names = |a: &str, b: &str| (a.parse().unwrap(), b.parse().unwrap());
    let want: BTreeSet<(NodeName, NodeName)> = [names("node-1", "node-2"), names("node-2", "node-3")].into();
    assert_eq!(failing_pairs(&snapshot), want);
}

#[test]
fn plan_flags_become_the_policy_or_say_what_is_wrong() {
    use clap::Parser;
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        plans: super::PlanArgs,
    }
    let parse =
        |args: &[&str]| Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).unwrap().plans;
    let defaults = parse(&[]).config().unwrap();
    assert_eq!(defaults.policy, netdiag_model::plan::PlanPolicy::default());
    let custom =
        parse(&["--peers-per-node", "3", "--probe-interval", "1500ms", "--max-probe-interval", "30s"])
            .config()
            .unwrap();
    assert_eq!(custom.policy.peers_per_node, 3);
    assert_eq!(custom.schedule.interval(), std::time::Duration::from_millis(1500));
    assert_eq!(
        custom.schedule,
        netdiag_model::plan::Schedule::new(
            std::time::Duration::from_millis(1500),
            netdiag_model::config::defaults::PROBE_TIMEOUT,
            netdiag_model::config::defaults::MAX_CONCURRENCY,
            netdiag_model::config::defaults::MAX_PROBES_PER_SECOND,
        )
        .unwrap(),
        "the agent's defaults, with the plan's interval"
    );
    let e = parse(&["--peers-per-node", "0"]).config().unwrap_err();
    assert!(e.contains("--peers-per-node"), "{e}");
    let e = parse(&["--probe-interval", "90s"]).config().unwrap_err();
    assert!(
        e.contains("--probe-interval (90s) must be above 0 and at most --max-probe-interval (1m)"),
        "{e}"
    );
    let e = Cli::try_parse_from(["x", "--probe-interval", "10"]).unwrap_err().to_string();
    assert!(e.contains("write a number and a unit"), "{e}");
}

#[test]
fn paths_network_policy_keeps_shut_are_planned_once_every_few_rounds() {
    use netdiag_diagnose::policy::pace::DENIED_EVERY;
    use netdiag_diagnose::sim::World;
    let with_policy = World::tidb_isolated().inventory();
    let state = Arc::new(CollectorState::new(with_policy, MatrixConfig::default()));
    let planner = Planner::new(state, PlansConfig::default());
    let (_, plan) = split(planner.on_hello(&hello("node-1", true)));
    let plan = plan.unwrap();
    let paced: Vec<_> = plan.probes.iter().filter(|p| !p.every.is_every_round()).collect();
    assert!(!paced.is_empty(), "node-1's pods outside tidb probe tidb's pods");
    for p in &paced {
        assert_eq!(p.every.get(), DENIED_EVERY);
        assert!(matches!(&p.source, Source::Pod(s) if s.namespace.as_str() != "tidb"), "{p:?}");
    }
    let (_, unpaced) = split(planner_without_policies().on_hello(&hello("node-1", true)));
    assert!(unpaced.unwrap().probes.iter().all(|p| p.every.is_every_round()));
}

fn planner_without_policies() -> Arc<Planner> {
    planner().1
}

#[test]
fn a_new_pod_replans_at_once_only_its_node_and_the_nodes_probing_it() {
    // Sampled with one peer each: node-2 is probed by one node only.
    let policy = PlanPolicy { full_mesh_below: 2, peers_per_node: 1, ..PlanPolicy::default() };
    let state = Arc::new(CollectorState::new(inventory(), MatrixConfig::default()));
    let planner =
        Planner::new(state.clone(), PlansConfig { policy: policy.clone(), ..PlansConfig::default() });
    let inv = inventory();
    for n in &inv.nodes {
        planner.on_hello(&hello(n.name.as_str(), true));
    }
    let node2: NodeName = "node-2".parse().unwrap();
    let sampler = Sampler::new(&inv, &policy, &BTreeSet::new());
    let mut may: BTreeSet<String> = inv
        .nodes
        .iter()
        .filter(|n| sampler.ring_peers(&n.name).contains(&&node2))
        .map(|n| n.name.to_string())
        .collect();
    may.insert("node-2".into());
    assert!(may.len() < inv.nodes.len(), "{may:?}");

    let mut grown = inv.clone();
    let mut pod = grown.pods.iter().find(|p| p.node == node2).unwrap().clone();
    pod.name = "churned".parse().unwrap();
    pod.ips = vec!["10.244.2.99".parse().unwrap()];
    grown.pods.push(pod);
    state.set_inventory(grown.clone());
    let changes = planner.refresh_touched(|_| true).expect("only pods changed");
    let changed: BTreeSet<String> = changes.iter().map(|(n, _)| n.to_string()).collect();
    assert!(changed.is_subset(&may), "{changed:?} ⊄ {may:?}");
    let pods = changes.iter().find_map(|(n, m)| match m {
        CollectorMessage::Pods(p) if *n == node2 => Some(p),
        _ => None,
    });
    assert!(pods.unwrap().pods.iter().any(|p| p.pod.to_string().ends_with("/churned")), "{changes:?}");
    assert!(planner.refresh_touched(|_| true).unwrap().is_empty(), "nothing new: nothing sent");

    // A new Service may change every plan: the caller runs a full round.
    let mut more = grown;
    let mut svc = more.services[0].clone();
    svc.name = "another".parse().unwrap();
    more.services.push(svc);
    state.set_inventory(more);
    assert!(planner.refresh_touched(|_| true).is_none());
}
