//! The class layer and the completeness invariant: failure classes no runbook rule was written
//! for (partial reachability, one-way faults, ICMP filters, DNS degradation) are found with
//! the right culprit, magnitudes read since the fault's onset, and every failed or degraded
//! cell of any scenario — random faults, several at once, noise — is claimed by exactly one
//! finding.

use netdiag_model::{CellStatus, CulpritKind, Finding};
use proptest::prelude::*;

use super::super::{Thresholds, localize};
use super::{has_evidence, summary};
use crate::sim::{Direction, World, now};

fn findings(world: &World) -> Vec<Finding> {
    super::run(world)
}

/// The one finding whose id is `id`, asserting there is exactly one and nothing else but
/// findings whose ids are in `also`.
fn the(world: &World, id: &str, also: &[&str]) -> Finding {
    let all = findings(world);
    let mine: Vec<&Finding> = all.iter().filter(|f| f.id.as_str() == id).collect();
    assert_eq!(mine.len(), 1, "want one {id}: {:#?}", summary(&all));
    for f in &all {
        assert!(f.id.as_str() == id || also.contains(&f.id.as_str()), "unexpected {f:#?}");
    }
    mine[0].clone()
}

fn culprit(f: &Finding) -> (CulpritKind, String) {
    let c = f.culprit.as_ref().unwrap();
    (c.kind, c.name.as_str().to_owned())
}

#[test]
fn a_pod_filtering_one_nodes_pods_is_partial_reachability_not_a_dead_pod() {
    let f =
        the(&World::healthy().filter_from_node("tidb/demo-pd-0", "node-2"), "source-group-unreachable", &[]);
    assert_eq!(culprit(&f), (CulpritKind::Pod, "tidb/demo-pd-0 from node node-2".to_owned()));
    assert!(f.verdict.as_str().contains("unreachable from node node-2"), "{}", f.verdict);
    assert!(f.verdict.as_str().contains("other sources reach it"), "{}", f.verdict);
    assert!(f.suggestion.as_str().contains("kubectl get networkpolicy -A"), "{}", f.suggestion);
}

#[test]
fn a_pod_filtering_one_namespace_names_the_namespace() {
    // demo-pd-0 drops kube-system's pods (CoreDNS) and nothing else.
    let f = the(
        &World::healthy().filter_from_namespace("tidb/demo-tikv-1", "kube-system"),
        "source-group-unreachable",
        &[],
    );
    assert!(culprit(&f).1.starts_with("tidb/demo-tikv-1 from"), "{f:#?}");
}

#[test]
fn a_one_way_mtu_black_hole_is_blamed_on_its_direction() {
    let world = World::healthy().mtu_one_way("node-3", Direction::In);
    let all = findings(&world);
    let f = all
        .iter()
        .find(|f| culprit(f).0 == CulpritKind::Node)
        .unwrap_or_else(|| panic!("{:#?}", summary(&all)));
    assert_eq!(culprit(f).1, "node-3", "{all:#?}");
    assert!(f.id.as_str().contains("inbound") || f.verdict.as_str().contains("into"), "{f:#?}");
    assert!(has_evidence(f, "the other direction"), "{f:#?}");
}

#[test]
fn icmp_filtered_with_tcp_working_blames_nothing() {
    let f = the(&World::healthy().icmp_blocked("node-2"), "icmp-filtered", &[]);
    assert_eq!(f.severity, netdiag_model::Severity::Info);
    assert!(f.verdict.as_str().contains("nothing is down"), "{}", f.verdict);
}

#[test]
fn dns_losing_a_share_of_queries_is_a_degradation_of_the_resolver() {
    let all = findings(&World::healthy().dns_loss(0.3));
    let dns: Vec<&Finding> = all.iter().filter(|f| culprit(f).0 == CulpritKind::Dns).collect();
    assert_eq!(dns.len(), 1, "{:#?}", summary(&all));
    assert!(all.iter().all(|f| culprit(f).0 == CulpritKind::Dns), "{:#?}", summary(&all));
    assert!(dns[0].verdict.as_str().contains("lookups"), "{}", dns[0].verdict);
}

#[test]
fn loss_is_reported_per_packet_since_the_fault_began() {
    // 30% loss into node-3 for the last half of the window: the figure is the fault's, not
    // diluted by the clean samples before it.
    let world = World::healthy().loss_one_way("node-3", 0.3, Direction::In).just_broke(3);
    let all = findings(&world);
    let f = all
        .iter()
        .find(|f| culprit(f) == (CulpritKind::Node, "node-3".to_owned()))
        .unwrap_or_else(|| panic!("{:#?}", summary(&all)));
    let pct: f64 = f
        .verdict
        .as_str()
        .split('%')
        .next()
        .and_then(|s| s.rsplit(|c: char| !c.is_ascii_digit() && c != '.').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no percentage: {}", f.verdict));
    assert!((25.0..=35.0).contains(&pct), "{pct}% in {}", f.verdict);
}

#[test]
fn two_faults_of_different_classes_are_found_independently() {
    let world = World::healthy().pod_down("tidb/demo-tikv-2").filter_from_node("tidb/demo-pd-0", "node-2");
    let all = findings(&world);
    let ids: Vec<&str> = all.iter().map(|f| f.id.as_str()).collect();
    assert!(ids.contains(&"pod-down"), "{:#?}", summary(&all));
    assert!(ids.contains(&"source-group-unreachable"), "{:#?}", summary(&all));
}

/// Every failed or degraded pod-level cell is claimed by exactly one finding or denied by
/// policy as intended (never both), and every claim points at a finding that exists.
fn assert_complete(world: &World) -> Result<(), TestCaseError> {
    let m = world.matrix();
    let l = localize(&m, &world.inspections(), &world.inventory(), now(), &Thresholds::default());
    let bad: Vec<_> = m
        .pod_cells(now())
        .filter(|(_, s)| matches!(s.status, CellStatus::Failed | CellStatus::Degraded))
        .map(|(k, _)| k.clone())
        .collect();
    let mut claimed: Vec<_> = l
        .claims
        .iter()
        .map(|(k, _)| k.clone())
        .chain(l.denied_by_policy.iter().map(|(k, _)| k.clone()))
        .collect();
    claimed.sort();
    prop_assert_eq!(&claimed, &bad, "claims {:#?}", summary(&l.findings));
    for (_, f) in &l.claims {
        prop_assert!(*f < l.findings.len());
    }
    Ok(())
}

/// One fault, chosen by `pick` among every class the simulator has.
fn fault(world: World, pick: u8, a: usize, b: usize) -> World {
    const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];
    const PODS: [&str; 6] = [
        "tidb/demo-pd-0",
        "tidb/demo-pd-1",
        "tidb/demo-tikv-2",
        "tidb/demo-tidb-0",
        "kube-system/coredns-0",
        "tidb/demo-tidb-1",
    ];
    let (n, m) = (NODES[a % 3], NODES[(a + 1 + b % 2) % 3]);
    let p = PODS[b % PODS.len()];
    match pick % 28 {
        0 => world.pod_down(p),
        1 => world.port_closed("tidb/demo-pd-1", 2379),
        2 => world.port_dropped("tidb/demo-tikv-2", 20160),
        3 => world.isolate(n),
        4 => world.cut_pair(n, m),
        5 => world.route_missing(n, m),
        6 => world.dnat_missing(n, "tidb/demo-pd", 2379),
        7 => world.dns_down(),
        8 => world.dns_block(n),
        9 => world.dns_servfail(),
        10 => world.mtu(n, 1400),
        11 => world.loss(n, 0.2),
        12 => world.filter_from_node(p, n),
        13 => world.filter_from_namespace(p, "kube-system"),
        14 => world.icmp_blocked(n),
        15 => world.dns_loss(0.25),
        16 => world.mtu_one_way(n, if b.is_multiple_of(2) { Direction::In } else { Direction::Out }),
        17 => world.loss_one_way(n, 0.3, Direction::In),
        18 => world.flaky_results(n, 0.1),
        19 => world.wrong_neighbour(n, m),
        20 => world.pod_unaddressed(p),
        21 => world.route_via(n, m, "172.29.0.99"),
        22 => world.uplink_mtu(n, 1200),
        23 => world.node_address_blackholed(n, m),
        24 => world.dnat_by_hand(n, "tidb/demo-pd-0", 2379, "10.244.1.99"),
        25 => world.snat_by_hand(n, m, "172.29.0.99"),
        26 => world.pod_dnat_by_hand("tidb/demo-tidb-0", "tidb/demo-pd", 2379, "10.244.9.9"),
        _ => world.silent(n),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_bad_cell_is_claimed_by_exactly_one_finding(
        faults in proptest::collection::vec((any::<u8>(), 0usize..3, 0usize..6), 0..3),
        timing in 0u8..3,
        policies in any::<bool>(),
    ) {
        let mut world = if policies { super::policies::only_tidb() } else { World::healthy() };
        for (pick, a, b) in faults {
            world = fault(world, pick, a, b);
        }
        world = match timing {
            0 => world,
            1 => world.just_broke(2),
            _ => world.just_healed(1),
        };
        assert_complete(&world)?;
    }
}

#[test]
fn a_resolver_failing_one_lookup_in_twelve_is_heard_of() {
    // 8 % of lookups time out: almost no single cell is significant, the resolver's hundred
    // lookups together are.
    let all = findings(&World::healthy().dns_loss(0.08));
    let dns: Vec<&Finding> = all.iter().filter(|f| culprit(f).0 == CulpritKind::Dns).collect();
    assert_eq!(dns.len(), 1, "{:#?}", summary(&all));
    assert!(dns[0].verdict.as_str().contains("lookups"), "{}", dns[0].verdict);
}
