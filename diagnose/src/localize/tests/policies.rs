//! NetworkPolicy in the diagnosis, over the simulator (which enforces the policies it is given
//! with [`crate::policy`]'s semantics, node by node): paths a policy denies and that fail are
//! denied as intended and never a finding; paths it denies that connect are
//! `policy-not-enforced`, on the node that ignores it or on the policy itself; a real fault
//! under policies is still named as without them.

use netdiag_model::CulpritKind;

use super::super::report::ids;
use super::super::{Thresholds, localize};
use super::{check_shape, summary};
use crate::sim::{World, now};

/// Ingress to every pod of `tidb` only from pods of `tidb` (the nodes' own addresses are
/// exempt for their local pods only).
pub(super) fn only_tidb() -> World {
    World::tidb_isolated()
}

fn run(world: &World) -> super::super::Localization {
    localize(&world.matrix(), &world.inspections(), &world.inventory(), now(), &Thresholds::default())
}

#[test]
fn paths_a_policy_denies_are_denied_as_intended_not_findings() {
    let l = run(&only_tidb());
    assert!(l.findings.is_empty(), "{:#?}", summary(&l.findings));
    let denied: Vec<String> = l
        .denied_by_policy
        .iter()
        .map(|(k, why)| format!("{} -> {} {}: {why}", k.source, k.destination, k.kind))
        .collect();
    assert!(
        denied.iter().any(|d| d.starts_with("kube-system/coredns-0 -> tidb/demo-pd-1:2379 tcp")
            && d.contains("tidb/only-tidb")),
        "{denied:#?}"
    );
    assert!(
        denied
            .iter()
            .all(|d| d.contains("-> tidb/") || d.contains("-> svc/tidb/") || d.contains("-> nodeport/")),
        "only paths into tidb (directly, by VIP or by demo-tidb's NodePort) are denied: {denied:#?}"
    );
    assert!(!denied.iter().any(|d| d.starts_with("tidb/")), "tidb pods reach each other: {denied:#?}");
}

#[test]
fn a_policy_one_node_ignores_is_named_on_that_node() {
    let l = run(&only_tidb().policies_unenforced_on("node-2"));
    assert_eq!(
        summary(&l.findings),
        vec![(ids::POLICY_NOT_ENFORCED.to_owned(), CulpritKind::Node, "node-2".to_owned())],
        "{:#?}",
        l.findings.iter().map(|f| f.verdict.as_str()).collect::<Vec<_>>()
    );
    let f = &l.findings[0];
    check_shape(f, Thresholds::default().max_affected);
    assert!(f.verdict.as_str().contains("not enforced on node node-2"), "{}", f.verdict);
    assert!(f.verdict.as_str().contains("tidb/only-tidb"), "{}", f.verdict);
    assert!(
        f.affected.iter().all(|p| p.as_str().contains("demo-pd-1")
            || p.as_str().contains("demo-tikv-1")
            || p.as_str().contains("demo-tidb-0")),
        "only paths into node-2's tidb pods: {:?}",
        f.affected
    );
    assert!(!l.denied_by_policy.is_empty(), "the policy still holds on node-1 and node-3");
}

#[test]
fn a_policy_no_node_enforces_blames_the_policy() {
    let world = only_tidb()
        .policies_unenforced_on("node-1")
        .policies_unenforced_on("node-2")
        .policies_unenforced_on("node-3");
    let l = run(&world);
    assert_eq!(
        summary(&l.findings),
        vec![(ids::POLICY_NOT_ENFORCED.to_owned(), CulpritKind::NetworkPolicy, "tidb/only-tidb".to_owned())]
    );
    assert!(l.denied_by_policy.is_empty());
}

#[test]
fn a_fault_under_policies_is_named_as_without_them_and_says_policy_is_not_why() {
    let l = run(&only_tidb().pod_down("tidb/demo-pd-1"));
    assert_eq!(
        summary(&l.findings),
        vec![(ids::POD_DOWN.to_owned(), CulpritKind::Pod, "tidb/demo-pd-1".to_owned())],
        "{:#?}",
        l.findings.iter().map(|f| f.verdict.as_str()).collect::<Vec<_>>()
    );
    let first = l.findings[0].evidence[0].as_str();
    assert!(
        first.starts_with("nothing in NetworkPolicy denies these paths, yet they fail (")
            && first.contains("allowed by policy tidb/only-tidb"),
        "{first}"
    );
    let plain = run(&World::healthy().pod_down("tidb/demo-pd-1"));
    assert!(
        !plain.findings[0].evidence.iter().any(|e| e.as_str().contains("NetworkPolicy")),
        "without policies nothing is said of them"
    );
}
