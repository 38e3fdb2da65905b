//! The per-agent quotas on plain values.

use netdiag_model::Outcome;
use netdiag_model::inventory::Inventory;
use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::result::{Detail, ProbeResult, Seq};

use super::*;

const INVENTORY: &str = "version: 1\ncluster: {name: t, domain: cluster.local, pod_cidrs: [10.244.0.0/16], service_cidrs: [10.96.0.0/16], node_cidrs: [172.29.0.0/24], dns_ips: [10.96.0.10], proxy_mode: iptables}\nnodes:\n  - {name: node-1, ips: [172.29.0.11], pod_cidrs: [10.244.1.0/24]}\n  - {name: node-2, ips: [172.29.0.12], pod_cidrs: [10.244.2.0/24]}\npods:\n  - {namespace: tidb, name: pd-0, node: node-1, ips: [10.244.1.2]}\n  - {namespace: tidb, name: pd-1, node: node-2, ips: [10.244.2.2]}\nservices: []\n";

fn at(ms: i64) -> UnixMillis {
    UnixMillis::new(1_700_000_000_000 + ms).unwrap()
}

fn result(source: &str, target_ip: u8) -> ProbeResult {
    ProbeResult {
        source: source.parse().unwrap(),
        target: Target::Address { ip: std::net::IpAddr::from([10, 9, 0, target_ip]), port: None },
        kind: ProbeKind::Icmp,
        outcome: Outcome::Ok,
        rtt: None,
        at: at(0),
        detail: Detail::default(),
        burst: None,
        http_status: None,
        path_mtu: None,
        answers: vec![],
        nameserver: None,
    }
}

fn batch(results: Vec<ProbeResult>) -> ResultBatch {
    ResultBatch { seq: Seq::FIRST, results, dropped: 0 }
}

fn node(n: &str) -> NodeName {
    n.parse().unwrap()
}

fn index() -> InventoryIndex {
    InventoryIndex::new(&Inventory::from_yaml(INVENTORY).unwrap())
}

#[test]
fn an_agent_reports_only_for_its_node_and_its_pods() {
    let mut quota = CellQuota::default();
    let mut b = batch(vec![
        result("node/node-1", 1),
        result("tidb/pd-0", 1),
        result("tidb/pd-1", 1),
        result("node/node-2", 1),
        result("tidb/pd-1", 2),
        result("default/discovered", 1),
    ]);
    let refused = quota.admit(&node("node-1"), &mut b, &index(), &Quotas::default(), at(0));
    assert_eq!(refused, Refused { foreign: 3, cells: 0, full: 0 });
    let kept: Vec<String> = b.results.iter().map(|r| r.source.to_string()).collect();
    assert_eq!(kept, ["node/node-1", "tidb/pd-0", "default/discovered"]);
}

#[test]
fn new_cells_past_an_agents_quota_are_refused_and_known_ones_kept() {
    let quotas = Quotas { cells_per_agent: 3, cells_total: 5, ..Quotas::default() };
    let mut quota = CellQuota::default();
    let five = || batch((1..=5).map(|t| result("node/node-1", t)).collect());
    let mut b = five();
    assert_eq!(quota.admit(&node("node-1"), &mut b, &index(), &quotas, at(0)).cells, 2);
    assert_eq!(b.results.len(), 3);
    // The same cells again are kept; the other two still refused.
    let mut b = five();
    assert_eq!(quota.admit(&node("node-1"), &mut b, &index(), &quotas, at(1)).cells, 2);
    // Another agent has its own quota, within the total: what the total refuses is no fault of
    // that agent's (counted apart, so it is not logged as that agent being over its quota).
    let mut b = batch((1..=5).map(|t| result("node/node-2", t)).collect());
    let refused = quota.admit(&node("node-2"), &mut b, &index(), &quotas, at(1));
    assert_eq!((refused.cells, refused.full), (0, 3), "total is 5");
    assert_eq!((quota.cells_of(&node("node-1")), quota.cells_of(&node("node-2"))), (3, 2));
}

#[test]
fn cells_not_written_for_a_while_are_forgotten_with_their_agent() {
    let mut quota = CellQuota::default();
    let quotas = Quotas { cells_per_agent: 2, ..Quotas::default() };
    let mut b = batch(vec![result("node/node-1", 1), result("node/node-1", 2)]);
    quota.admit(&node("node-1"), &mut b, &index(), &quotas, at(0));
    let mut b = batch(vec![result("node/node-1", 2)]);
    quota.admit(&node("node-1"), &mut b, &index(), &quotas, at(60_000));
    quota.expire(at(90_000), Duration::from_secs(60));
    assert_eq!(quota.cells_of(&node("node-1")), 1, "the cell written at 60 s is kept");
    let mut b = batch(vec![result("node/node-1", 3)]);
    assert_eq!(quota.admit(&node("node-1"), &mut b, &index(), &quotas, at(90_000)).cells, 0);
    quota.expire(at(1_000_000), Duration::from_secs(60));
    assert_eq!(quota.cells_of(&node("node-1")), 0);
    assert!(quota.per_agent.is_empty() && quota.total == 0);
}

#[test]
fn batches_past_the_burst_wait_for_the_rate() {
    let quotas = Quotas { batches_per_second: 10.0, batch_burst: 2.0, ..Quotas::default() };
    let t0 = Instant::now();
    let mut rate = BatchRate::new(&quotas, t0);
    assert_eq!(rate.take(t0), Duration::ZERO);
    assert_eq!(rate.take(t0), Duration::ZERO);
    let wait = rate.take(t0);
    assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
    // The caller waited: the next one comes a tenth of a second later.
    let t1 = t0 + wait;
    let wait = rate.take(t1);
    assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
    // A quiet second refills the burst, not more.
    let t2 = t1 + wait + Duration::from_secs(1);
    assert_eq!(rate.take(t2), Duration::ZERO);
    assert_eq!(rate.take(t2), Duration::ZERO);
    assert!(rate.take(t2) > Duration::ZERO);
}
