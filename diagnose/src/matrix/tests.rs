//! The matrix end to end: results in, cells and statuses out, on a fake clock and a small
//! three-node inventory.

use std::net::IpAddr;
use std::time::Duration;

use netdiag_model::dns::{DnsName, DnsTransport, RecordType};
use netdiag_model::inventory::Inventory;
use netdiag_model::outcome::{DnsFailure, HttpFailure, IcmpFailure, TcpFailure};
use netdiag_model::probe::{ProbeKind, ServiceVia, Source, Target};
use netdiag_model::result::{Burst, Detail, ProbeResult, ResultBatch, Rtt, Seq};
use netdiag_model::{CellStatus, MatrixLevel, MatrixQuery, NodeName, Outcome, Port, UnixMillis};
use proptest::prelude::*;

use super::status::{DEGRADED_LOSS_RATIO, FAILED_STREAK};
use super::*;

const INVENTORY: &str = r#"
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
  - {namespace: tidb, name: pd-0, node: node-1, ips: [10.244.1.2, "fd00:244:1::2"]}
  - {namespace: tidb, name: pd-1, node: node-2, ips: [10.244.2.2]}
  - {namespace: tidb, name: tikv-0, node: node-2, ips: [10.244.2.3]}
  - {namespace: tidb, name: tidb-0, node: node-3, ips: [10.244.3.2]}
services:
  - namespace: tidb
    name: pd
    type: ClusterIP
    cluster_ips: [10.96.0.20]
    ports: [{name: client, port: 2379, target_port: 2379}]
    endpoints:
      - {ip: 10.244.1.2, pod: tidb/pd-0, node: node-1, ready: true}
      - {ip: 10.244.2.2, pod: tidb/pd-1, node: node-2, ready: true}
  - namespace: tidb
    name: tidb
    type: NodePort
    cluster_ips: [10.96.0.40]
    ports: [{port: 4000, target_port: 4000, node_port: 30400}]
    endpoints: [{ip: 10.244.3.2, pod: tidb/tidb-0, node: node-3, ready: true}]
"#;

fn index() -> InventoryIndex {
    InventoryIndex::new(&Inventory::from_yaml(INVENTORY).unwrap())
}

/// The fake clock: `secs` after a bucket-aligned origin.
fn t(secs: f64) -> UnixMillis {
    t_ms((secs * 1000.0).round() as i64)
}

fn t_ms(ms: i64) -> UnixMillis {
    UnixMillis::new(1_700_000_000_000 + ms).unwrap()
}

fn node(name: &str) -> NodeName {
    name.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn port(p: u32) -> Option<Port> {
    Some(Port::new(p).unwrap())
}

fn pod_target(pod: &str, addr: &str, p: Option<Port>) -> Target {
    Target::Pod { pod: pod.parse().unwrap(), ip: ip(addr), port: p }
}

/// A TCP result from `source` to `target` at `at`.
fn tcp(source: &str, target: Target, outcome: Outcome, at: UnixMillis) -> ProbeResult {
    ProbeResult {
        source: source.parse().unwrap(),
        target,
        kind: ProbeKind::Tcp,
        outcome,
        rtt: outcome.is_ok().then(|| Rtt::from_micros(250, false).unwrap()),
        at,
        detail: Detail::default(),
        burst: None,
        http_status: None,
        path_mtu: None,
        answers: vec![],
        nameserver: None,
    }
}

fn icmp(source: &str, target: Target, sent: u32, received: u32, at: UnixMillis) -> ProbeResult {
    let outcome = if received > 0 { Outcome::Ok } else { Outcome::Icmp(IcmpFailure::Timeout) };
    ProbeResult {
        kind: ProbeKind::Icmp,
        burst: Some(Burst::new(sent, received).unwrap()),
        ..tcp(source, target, outcome, at)
    }
}

fn pd1_2379() -> Target {
    pod_target("tidb/pd-1", "10.244.2.2", port(2379))
}

fn pod_key(source: &str, target: &Target, kind: ProbeKind) -> PodKey {
    PodKey { source: source.parse().unwrap(), destination: Destination::of(target, &index()), kind }
}

fn node_key(source: &str, destination: NodeDestination, kind: ProbeKind) -> NodeKey {
    NodeKey { source: node(source), destination, kind }
}

#[test]
fn keys_and_labels_name_what_was_probed() {
    let idx = index();
    let svc = |via, addr: &str, p| Target::Service {
        service: "tidb/pd".parse().unwrap(),
        ip: ip(addr),
        port: Port::new(p).unwrap(),
        via,
    };
    let dns = |name: &str, record, nameserver: Option<&str>, transport| Target::Dns {
        name: DnsName::new(name).unwrap(),
        record,
        nameserver: nameserver.map(ip),
        transport,
    };
    let endpoint = ServiceVia::Endpoint("tidb/pd-1".parse().unwrap());
    let cases: Vec<(&str, Target, &str, &str)> = vec![
        ("tidb/pd-0", pd1_2379(), "tidb/pd-1:2379", "node-2"),
        ("tidb/pd-0", pod_target("tidb/pd-1", "10.244.2.2", None), "tidb/pd-1", "node-2"),
        ("tidb/pd-1", pod_target("tidb/pd-0", "fd00:244:1::2", port(2379)), "tidb/pd-0:2379#v6", "node-1"),
        ("tidb/pd-0", svc(ServiceVia::ClusterIp, "10.96.0.20", 2379), "svc/tidb/pd:2379", "svc/*"),
        ("tidb/pd-0", svc(endpoint, "10.244.2.2", 2379), "svc/tidb/pd@tidb/pd-1:2379", "node-2"),
        ("node/node-1", svc(ServiceVia::NodePort, "172.29.0.13", 30400), "nodeport/node-3:30400", "node-3"),
        (
            "node/node-1",
            svc(ServiceVia::NodePort, "192.0.2.9", 30400),
            "nodeport/192.0.2.9:30400",
            "external/*",
        ),
        (
            "node/node-1",
            Target::Node { node: node("node-2"), ip: ip("172.29.0.12"), port: None },
            "node/node-2",
            "node-2",
        ),
        (
            "node/node-1",
            Target::Node { node: node("node-2"), ip: ip("172.29.0.12"), port: port(10250) },
            "node/node-2:10250",
            "node-2",
        ),
        ("tidb/pd-0", dns("pd.tidb", RecordType::A, None, DnsTransport::Udp), "dns/pd.tidb", "dns/*"),
        ("tidb/pd-0", dns("pd.tidb", RecordType::Aaaa, None, DnsTransport::Udp), "dns/pd.tidb#aaaa", "dns/*"),
        (
            "tidb/pd-0",
            dns("pd.tidb", RecordType::A, None, DnsTransport::Tcp),
            "dns/pd.tidb@resolv.conf/tcp",
            "dns/*",
        ),
        (
            "tidb/pd-0",
            dns(
                "kubernetes.default.svc.cluster.local.",
                RecordType::A,
                Some("10.96.0.10"),
                DnsTransport::Tcp,
            ),
            "dns/kubernetes.default.svc.cluster.local.@10.96.0.10/tcp",
            "dns/*",
        ),
        (
            "tidb/pd-0",
            dns("a.b", RecordType::A, Some("fd00::10"), DnsTransport::Udp),
            "dns/a.b@[fd00::10]/udp",
            "dns/*",
        ),
        (
            "tidb/pd-0",
            Target::Address { ip: ip("10.244.3.2"), port: port(4000) },
            "10.244.3.2:4000",
            "node-3",
        ),
        ("tidb/pd-0", Target::Address { ip: ip("10.244.3.99"), port: None }, "10.244.3.99", "node-3"),
        ("tidb/pd-0", Target::Address { ip: ip("10.96.7.7"), port: port(80) }, "10.96.7.7:80", "svc/*"),
        (
            "tidb/pd-0",
            Target::Address { ip: ip("2001:db8::1"), port: port(443) },
            "[2001:db8::1]:443",
            "external/*",
        ),
    ];
    for (source, target, pod_label, node_label) in cases {
        let r = tcp(source, target, Outcome::Ok, t(1.0));
        let pk = PodKey::of(&r, &idx);
        assert_eq!(pk.labels(), (source.to_owned(), pod_label.to_owned()), "{}", r.target);
        let nk = NodeKey::of(&node("node-1"), &r, &idx).unwrap();
        assert_eq!(nk.labels(), ("node-1".to_owned(), node_label.to_owned()), "{}", r.target);
    }
    // A pod the inventory does not know, at an address outside every pod CIDR: pod level only.
    let r = tcp("tidb/pd-0", pod_target("tidb/gone", "10.250.0.1", port(1)), Outcome::Ok, t(1.0));
    assert_eq!(NodeKey::of(&node("node-1"), &r, &idx), None);
    assert_eq!(PodKey::of(&r, &idx).labels().1, "tidb/gone:1");
}

#[test]
fn statuses_from_results() {
    let now = t(30.0);
    let refused = Outcome::Tcp(TcpFailure::Refused);
    let timeout = Outcome::Tcp(TcpFailure::Timeout);
    // (name, outcomes one per second ending at `now`, status, loss ratio)
    let cases: Vec<(&str, Vec<Outcome>, CellStatus, f64)> = vec![
        ("healthy", vec![Outcome::Ok; 10], CellStatus::Ok, 0.0),
        ("all fail", vec![timeout; 10], CellStatus::Failed, 1.0),
        // One failure among successes is noise: the cell stays ok (its loss still shows it).
        ("one blip", [vec![Outcome::Ok; 9], vec![refused]].concat(), CellStatus::Ok, 0.1),
        ("two blips", [vec![Outcome::Ok; 8], vec![refused; 2]].concat(), CellStatus::Degraded, 0.2),
        // Three clean successes after the failures: repaired, ok again at once (loss still shows).
        ("recovered", [vec![timeout; 5], vec![Outcome::Ok; 5]].concat(), CellStatus::Ok, 0.5),
        ("recovering", [vec![timeout; 5], vec![Outcome::Ok; 1]].concat(), CellStatus::Degraded, 5.0 / 6.0),
        // A stray timeout after a repair is judged against what the path does since the
        // repair, not against the outage the window still holds.
        (
            "repaired, then one stray timeout",
            [vec![timeout; 15], vec![Outcome::Ok; 12], vec![timeout]].concat(),
            CellStatus::Ok,
            16.0 / 28.0,
        ),
        (
            "repaired, then flaky",
            [vec![timeout; 15], vec![Outcome::Ok; 8], [timeout, Outcome::Ok].repeat(4), vec![timeout]]
                .concat(),
            CellStatus::Degraded,
            20.0 / 32.0,
        ),
        (
            "just broke",
            [vec![Outcome::Ok; 7], vec![timeout; FAILED_STREAK as usize]].concat(),
            CellStatus::Failed,
            0.3,
        ),
        ("agent errors only", vec![Outcome::LocalError; 4], CellStatus::Unknown, 0.0),
        (
            "source gone beside successes",
            [vec![Outcome::Ok; 3], vec![Outcome::SourceGone]].concat(),
            CellStatus::Ok,
            0.0,
        ),
    ];
    for (name, outcomes, status, loss) in cases {
        let mut m = Matrix::default();
        let n = outcomes.len();
        for (i, o) in outcomes.into_iter().enumerate() {
            let at = t(30.0 - (n - 1 - i) as f64);
            m.record(&node("node-1"), &tcp("tidb/pd-0", pd1_2379(), o, at), &index(), at);
        }
        let cell = m.pod_cell(&pod_key("tidb/pd-0", &pd1_2379(), ProbeKind::Tcp), now).unwrap();
        assert_eq!(cell.status, status, "{name}");
        assert!((cell.loss_ratio.get() - loss).abs() < 1e-9, "{name}: loss {}", cell.loss_ratio.get());
        assert_eq!(cell.samples(), n as u64, "{name}");
    }
}

/// A repaired cell's counts since its repair leave the outage out (what pooled degradation
/// evidence reads), while the window's counts still show it.
#[test]
fn counts_since_a_repair_leave_the_outage_out() {
    let timeout = Outcome::Tcp(TcpFailure::Timeout);
    let outcomes = [vec![timeout; 15], vec![Outcome::Ok; 12], vec![timeout]].concat();
    let mut m = Matrix::default();
    let n = outcomes.len();
    for (i, o) in outcomes.into_iter().enumerate() {
        let at = t(30.0 - (n - 1 - i) as f64);
        m.record(&node("node-1"), &tcp("tidb/pd-0", pd1_2379(), o, at), &index(), at);
    }
    let cell = m.pod_cell(&pod_key("tidb/pd-0", &pd1_2379(), ProbeKind::Tcp), t(30.0)).unwrap();
    assert_eq!((cell.successes, cell.failures), (12, 16));
    assert_eq!(cell.since_repair.failures, 1, "only the stray timeout: {:?}", cell.since_repair);
    assert!(cell.since_repair.successes >= 10, "{:?}", cell.since_repair);
    let history = m.pod_cell_history(&pod_key("tidb/pd-0", &pd1_2379(), ProbeKind::Tcp), t(30.0)).unwrap();
    assert_eq!(history.iter().map(|b| b.failures).sum::<u64>(), 1, "{history:?}");
}

#[test]
fn a_failed_cell_carries_the_last_error() {
    let mut m = Matrix::default();
    let idx = index();
    for (i, detail) in
        ["connect to 10.244.2.2:2379: timed out after 1s", "  connect to 10.244.2.2:2379: again \n"]
            .into_iter()
            .enumerate()
    {
        let at = t(i as f64);
        let r = ProbeResult {
            detail: Detail::new(detail).unwrap(),
            ..tcp("tidb/pd-0", pd1_2379(), Outcome::Tcp(TcpFailure::Timeout), at)
        };
        m.record(&node("node-1"), &r, &idx, at);
    }
    let snap = m.snapshot(&MatrixQuery { level: MatrixLevel::Pod, kind: Some(ProbeKind::Tcp) }, t(2.0));
    assert_eq!(snap.cells.len(), 1);
    let cell = &snap.cells[0];
    assert_eq!(cell.status, CellStatus::Failed);
    assert_eq!(
        cell.last_error.as_str(),
        "TCP connect timeout: SYN unanswered: connect to 10.244.2.2:2379: again"
    );
    assert_eq!((cell.source.as_str(), cell.destination.as_str()), ("tidb/pd-0", "tidb/pd-1:2379"));
    assert_eq!((cell.rtt_p50, cell.rtt_p99, cell.samples), (None, None, 2));
    assert_eq!(cell.last_update, Some(t(1.0)));
    let stats = m.pod_cell(&pod_key("tidb/pd-0", &pd1_2379(), ProbeKind::Tcp), t(2.0)).unwrap();
    assert_eq!(stats.last_outcome, Outcome::Tcp(TcpFailure::Timeout));
    assert_eq!(stats.consecutive_failures, 2);

    // Once the failures leave the window the error is no longer shown (the raw stats keep it).
    let later = t(200.0);
    m.agent_seen(&node("node-1"), later);
    let ok = tcp("tidb/pd-0", pd1_2379(), Outcome::Ok, later);
    m.record(&node("node-1"), &ok, &idx, later);
    let snap = m.snapshot(&MatrixQuery { level: MatrixLevel::Pod, kind: Some(ProbeKind::Tcp) }, later);
    assert_eq!(snap.cells[0].status, CellStatus::Ok);
    assert!(snap.cells[0].last_error.is_empty());
    let stats = m.pod_cell(&pod_key("tidb/pd-0", &pd1_2379(), ProbeKind::Tcp), later).unwrap();
    assert!(stats.last_error.is_some() && !stats.last_error_in_window);
    assert_eq!(stats.consecutive_failures, 0);
}

#[test]
fn partial_icmp_loss_is_degraded_with_the_packet_loss_ratio() {
    let mut m = Matrix::default();
    let target = pod_target("tidb/pd-1", "10.244.2.2", None);
    // (sent, received) per burst: 40 sent, 31 received.
    for (i, (sent, received)) in [(10, 10), (10, 9), (10, 10), (10, 2)].into_iter().enumerate() {
        let at = t(i as f64 * 5.0);
        m.record(&node("node-1"), &icmp("tidb/pd-0", target.clone(), sent, received, at), &index(), at);
    }
    let cell = m.pod_cell(&pod_key("tidb/pd-0", &target, ProbeKind::Icmp), t(16.0)).unwrap();
    assert_eq!(cell.status, CellStatus::Degraded);
    assert_eq!((cell.packets_sent, cell.packets_received), (40, 31));
    assert!((cell.loss_ratio.get() - 9.0 / 40.0).abs() < 1e-9);
    assert_eq!((cell.successes, cell.failures), (4, 0));

    // A whole burst lost is a failed attempt; every burst lost is a failed cell.
    let mut m = Matrix::default();
    for i in 0..3 {
        let at = t(f64::from(i));
        m.record(&node("node-1"), &icmp("tidb/pd-0", target.clone(), 3, 0, at), &index(), at);
    }
    let cell = m.pod_cell(&pod_key("tidb/pd-0", &target, ProbeKind::Icmp), t(3.0)).unwrap();
    assert_eq!((cell.status, cell.loss_ratio.get()), (CellStatus::Failed, 1.0));
    assert_eq!(cell.last_error.unwrap().text.as_str(), "ICMP timeout: no echo reply");
}

/// Records `rtts` (µs) spread over the last 55 s and checks p50/p99 against the exact sorted
/// quantiles at the same rank.
fn check_quantiles(name: &str, rtts: &[u64]) {
    let mut m = Matrix::default();
    let idx = index();
    let now = t(59.0);
    for (i, &us) in rtts.iter().enumerate() {
        let at = t(4.0 + 55.0 * i as f64 / rtts.len() as f64);
        let r = ProbeResult {
            rtt: Some(Rtt::from_micros(us, false).unwrap()),
            ..tcp("tidb/pd-0", pd1_2379(), Outcome::Ok, at)
        };
        m.record(&node("node-1"), &r, &idx, at);
    }
    let cell = m.pod_cell(&pod_key("tidb/pd-0", &pd1_2379(), ProbeKind::Tcp), now).unwrap();
    assert_eq!(cell.successes, rtts.len() as u64, "{name}: every sample is in the window");
    let mut sorted = rtts.to_vec();
    sorted.sort_unstable();
    for (q, got) in [(0.5, cell.rtt_p50), (0.99, cell.rtt_p99)] {
        let exact = sorted[(q * (sorted.len() - 1) as f64).floor() as usize] as f64;
        let got = got.unwrap().as_nanos() as f64 / 1000.0;
        let err = (got - exact).abs() / exact;
        assert!(err <= sketch::RELATIVE_ERROR + 1e-9, "{name} p{}: {got}µs vs exact {exact}µs", q * 100.0);
    }
}

#[test]
fn rtt_quantiles_are_within_the_sketch_bound() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let uniform: Vec<u64> = (0..5_000).map(|_| 500 + next() % 9_500).collect();
    let bimodal: Vec<u64> =
        (0..5_000).map(|i| if i % 50 < 3 { 80_000 + next() % 40_000 } else { 300 + next() % 200 }).collect();
    check_quantiles("uniform 0.5-10ms", &uniform);
    check_quantiles("bimodal 0.3ms / 100ms tail", &bimodal);
    check_quantiles("constant 1.234ms", &[1_234; 1_000]);
}

#[test]
fn the_window_slides() {
    let mut m = Matrix::default();
    let idx = index();
    let n1 = node("node-1");
    let key = pod_key("tidb/pd-0", &pd1_2379(), ProbeKind::Tcp);
    // Failures for the first 10 s, then successes every 5 s up to 100 s.
    for i in 0..10 {
        let at = t(f64::from(i));
        m.record(&n1, &tcp("tidb/pd-0", pd1_2379(), Outcome::Tcp(TcpFailure::Timeout), at), &idx, at);
    }
    let status_at = |m: &Matrix, s| m.pod_cell(&key, t(s)).unwrap().status;
    assert_eq!(status_at(&m, 10.0), CellStatus::Failed);
    for i in 2..=20 {
        let at = t(f64::from(i) * 5.0);
        m.record(&n1, &tcp("tidb/pd-0", pd1_2379(), Outcome::Ok, at), &idx, at);
        // The first success leaves it degraded; the second clean one in a row heals it.
        let want = if i < 3 { CellStatus::Degraded } else { CellStatus::Ok };
        assert_eq!(status_at(&m, f64::from(i) * 5.0), want, "at {}s", i * 5);
    }
    // Silence: the agent keeps talking, but no sample for this cell in the window.
    m.agent_seen(&n1, t(161.0));
    assert_eq!(status_at(&m, 161.0), CellStatus::Unknown);
    let cell = m.pod_cell(&key, t(161.0)).unwrap();
    assert_eq!((cell.samples(), cell.rtt_p50, cell.last_update), (0, None, t(100.0)));
}

#[test]
fn a_silent_agent_makes_its_cells_unknown_never_failed() {
    let mut m = Matrix::default();
    let idx = index();
    let (n1, n2) = (node("node-1"), node("node-2"));
    let to_tidb = pod_target("tidb/tidb-0", "10.244.3.2", port(4000));
    for i in 0..6 {
        let at = t(f64::from(i));
        m.record(&n1, &tcp("tidb/pd-0", pd1_2379(), Outcome::Tcp(TcpFailure::Timeout), at), &idx, at);
        m.record(&n1, &tcp("tidb/pd-0", to_tidb.clone(), Outcome::Ok, at), &idx, at);
        m.record(&n2, &tcp("tidb/pd-1", to_tidb.clone(), Outcome::Ok, at), &idx, at);
        m.record(&n2, &tcp("tidb/tikv-0", pd1_2379(), Outcome::Tcp(TcpFailure::Refused), at), &idx, at);
    }
    // node-2's agent keeps talking (nothing new to report); node-1's falls silent at 5 s.
    let now = t(36.0);
    m.agent_seen(&n2, now);
    assert!(!m.agent_fresh(&n1, now) && m.agent_fresh(&n2, now));
    let status = |level, kind| {
        m.snapshot(&MatrixQuery { level, kind: Some(kind) }, now)
            .cells
            .into_iter()
            .map(|c| (c.source.into_string(), c.destination.into_string(), c.status))
            .collect::<Vec<_>>()
    };
    let s = |a: &str, b: &str, st| (a.to_owned(), b.to_owned(), st);
    assert_eq!(
        status(MatrixLevel::Pod, ProbeKind::Tcp),
        vec![
            s("tidb/pd-0", "tidb/pd-1:2379", CellStatus::Unknown),
            s("tidb/pd-0", "tidb/tidb-0:4000", CellStatus::Unknown),
            s("tidb/pd-1", "tidb/tidb-0:4000", CellStatus::Ok),
            s("tidb/tikv-0", "tidb/pd-1:2379", CellStatus::Failed),
        ]
    );
    assert_eq!(
        status(MatrixLevel::Node, ProbeKind::Tcp),
        vec![
            s("node-1", "node-2", CellStatus::Unknown),
            s("node-1", "node-3", CellStatus::Unknown),
            s("node-2", "node-2", CellStatus::Failed),
            s("node-2", "node-3", CellStatus::Ok),
        ]
    );
    // The agent comes back: its cells read from their windows again.
    m.agent_seen(&n1, now);
    let back = m.pod_cell(&pod_key("tidb/pd-0", &pd1_2379(), ProbeKind::Tcp), now).unwrap();
    assert_eq!(back.status, CellStatus::Failed);
    assert!(m.agent_fresh(&n1, now) && m.agent_last_seen(&n1) == Some(now));
}

#[test]
fn never_heard_agents_are_unknown_too() {
    // `record` counts as hearing from the agent; an agent whose last word is older than the
    // staleness bound is silent even if its results still sit in the window.
    let mut m =
        Matrix::new(MatrixConfig { agent_stale_after: Duration::from_secs(5), ..MatrixConfig::default() });
    let r = tcp("tidb/pd-0", pd1_2379(), Outcome::Ok, t(0.0));
    m.record(&node("node-1"), &r, &index(), t(0.0));
    let key = pod_key("tidb/pd-0", &pd1_2379(), ProbeKind::Tcp);
    assert_eq!(m.pod_cell(&key, t(5.0)).unwrap().status, CellStatus::Ok);
    assert_eq!(m.pod_cell(&key, t_ms(5_001)).unwrap().status, CellStatus::Unknown);
    assert!(!Matrix::default().agent_fresh(&node("node-9"), t(0.0)));
}

#[test]
fn pod_results_aggregate_into_node_pairs() {
    let mut m = Matrix::default();
    let idx = index();
    let n1 = node("node-1");
    let now = t(10.0);
    // From pd-0 (node-1): pd-1 and tikv-0 on node-2 (one refusing), tidb-0 on node-3, a VIP,
    // a DNS name, an outside address; and from node-1 itself to node-2.
    let pd = |via| Target::Service {
        service: "tidb/pd".parse().unwrap(),
        ip: ip("10.96.0.20"),
        port: Port::new(2379).unwrap(),
        via,
    };
    let dns = Target::Dns {
        name: DnsName::new("pd.tidb").unwrap(),
        record: RecordType::A,
        nameserver: None,
        transport: DnsTransport::Udp,
    };
    let results = vec![
        tcp("tidb/pd-0", pd1_2379(), Outcome::Ok, now),
        tcp(
            "tidb/pd-0",
            pod_target("tidb/tikv-0", "10.244.2.3", port(20160)),
            Outcome::Tcp(TcpFailure::Refused),
            now,
        ),
        tcp("tidb/pd-0", pod_target("tidb/tidb-0", "10.244.3.2", port(4000)), Outcome::Ok, now),
        tcp("tidb/pd-0", pd(ServiceVia::ClusterIp), Outcome::Ok, now),
        tcp(
            "tidb/pd-0",
            Target::Address { ip: ip("192.0.2.1"), port: port(443) },
            Outcome::Tcp(TcpFailure::Timeout),
            now,
        ),
        ProbeResult {
            kind: ProbeKind::Dns,
            ..tcp("tidb/pd-0", dns, Outcome::Dns(DnsFailure::NxDomain), now)
        },
        icmp(
            "node/node-1",
            Target::Node { node: node("node-2"), ip: ip("172.29.0.12"), port: None },
            4,
            4,
            now,
        ),
        icmp("tidb/pd-0", pod_target("tidb/pd-1", "10.244.2.2", None), 4, 2, now),
    ];
    for r in &results {
        m.record(&n1, r, &idx, now);
    }
    assert_eq!(m.cell_counts(), (8, 6));
    let cells: Vec<_> = m
        .node_cells(now)
        .map(|(k, c)| {
            (k.labels().1, k.kind, c.status, c.successes, c.failures, c.packets_sent, c.packets_received)
        })
        .collect();
    let row = |d: &str, k, st, s, f, ps, pr| (d.to_owned(), k, st, s, f, ps, pr);
    use CellStatus::*;
    use ProbeKind::*;
    assert_eq!(
        cells,
        vec![
            row("node-2", Icmp, Ok, 2, 0, 8, 6),
            row("node-2", Tcp, Ok, 1, 1, 2, 1),
            row("node-3", Tcp, Ok, 1, 0, 1, 1),
            row("svc/*", Tcp, Ok, 1, 0, 1, 1),
            row("dns/*", Dns, Failed, 0, 1, 1, 0),
            row("external/*", Tcp, Failed, 0, 1, 1, 0),
        ]
    );
    assert!(m.node_cell(&node_key("node-1", NodeDestination::Node(node("node-2")), Tcp), now).is_some());
    assert!(m.node_cells(now).all(|(k, _)| k.source == n1));
    // The node snapshot's labels are plain node names.
    let snap = m.snapshot(&MatrixQuery { level: MatrixLevel::Node, kind: None }, now);
    assert_eq!(snap.cells.len(), 6);
    assert_eq!(snap.generated_at, now);
    assert!(snap.cells.iter().all(|c| c.source.as_str() == "node-1"));
}

#[test]
fn snapshots_filter_by_kind_and_keep_a_stable_order() {
    let mut m = Matrix::default();
    let idx = index();
    let now = t(1.0);
    let results = [
        tcp("tidb/tikv-0", pd1_2379(), Outcome::Ok, now),
        icmp("tidb/pd-0", pod_target("tidb/pd-1", "10.244.2.2", None), 1, 1, now),
        tcp("tidb/pd-0", pod_target("tidb/tidb-0", "10.244.3.2", port(4000)), Outcome::Ok, now),
        tcp("node/node-2", pd1_2379(), Outcome::Ok, now),
        tcp("tidb/pd-0", pd1_2379(), Outcome::Ok, now),
    ];
    // Insertion order does not matter.
    let mut reversed = Matrix::default();
    for r in &results {
        m.record(&node("node-1"), r, &idx, now);
    }
    for r in results.iter().rev() {
        reversed.record(&node("node-1"), r, &idx, now);
    }
    let all = MatrixQuery::default();
    assert_eq!(m.snapshot(&all, now), reversed.snapshot(&all, now));
    let order: Vec<_> = m
        .snapshot(&all, now)
        .cells
        .into_iter()
        .map(|c| format!("{} -> {} {}", c.source, c.destination, c.kind))
        .collect();
    assert_eq!(
        order,
        [
            "tidb/pd-0 -> tidb/pd-1 icmp",
            "tidb/pd-0 -> tidb/pd-1:2379 tcp",
            "tidb/pd-0 -> tidb/tidb-0:4000 tcp",
            "tidb/tikv-0 -> tidb/pd-1:2379 tcp",
            "node/node-2 -> tidb/pd-1:2379 tcp",
        ]
    );
    let icmp_only = m.snapshot(&MatrixQuery { level: MatrixLevel::Pod, kind: Some(ProbeKind::Icmp) }, now);
    assert_eq!(icmp_only.cells.len(), 1);
    assert!(
        m.snapshot(&MatrixQuery { level: MatrixLevel::Pod, kind: Some(ProbeKind::Dns) }, now)
            .cells
            .is_empty()
    );
    // The contract's JSON fields.
    let json = serde_json::to_value(&icmp_only.cells[0]).unwrap();
    for field in [
        "source",
        "destination",
        "kind",
        "status",
        "loss_ratio",
        "rtt_p50_us",
        "rtt_p99_us",
        "samples",
        "last_update",
    ] {
        assert!(json.get(field).is_some(), "{field} in {json}");
    }
    assert_eq!(json["status"], "ok");
}

#[test]
fn results_are_placed_by_their_own_time_clamped_to_now() {
    let mut m = Matrix::default();
    let idx = index();
    let n1 = node("node-1");
    let key = pod_key("tidb/pd-0", &pd1_2379(), ProbeKind::Tcp);
    let now = t(100.0);
    // Older than the window when it arrives (buffered through a long disconnect): dropped.
    m.record(&n1, &tcp("tidb/pd-0", pd1_2379(), Outcome::Tcp(TcpFailure::Timeout), t(10.0)), &idx, now);
    assert_eq!(m.pod_cell(&key, now), None);
    assert_eq!(m.counters().too_old, 1);
    // From a fast agent clock: counted now.
    m.record(&n1, &tcp("tidb/pd-0", pd1_2379(), Outcome::Ok, t(5_000.0)), &idx, now);
    let cell = m.pod_cell(&key, now).unwrap();
    assert_eq!((cell.status, cell.last_update), (CellStatus::Ok, now));
    assert_eq!(m.counters(), MatrixCounters { recorded: 1, too_old: 1, unplaced: 0, refused_full: 0 });
}

#[test]
fn batches_count_every_result_and_the_agent() {
    let mut m = Matrix::default();
    let now = t(3.0);
    let batch = ResultBatch {
        seq: Seq::FIRST,
        results: vec![
            tcp("tidb/pd-0", pd1_2379(), Outcome::Ok, t(1.0)),
            tcp("tidb/pd-0", pd1_2379(), Outcome::Http(HttpFailure::Status), t(2.0)),
            tcp("tidb/pd-0", pod_target("tidb/gone", "10.250.0.1", port(1)), Outcome::Ok, t(2.0)),
        ],
        dropped: 0,
    };
    m.record_batch(&node("node-1"), &batch, &index(), now);
    assert_eq!(m.agent_last_seen(&node("node-1")), Some(now));
    assert_eq!(m.counters(), MatrixCounters { recorded: 3, too_old: 0, unplaced: 1, refused_full: 0 });
    assert_eq!(m.cell_counts(), (2, 1));
}

#[test]
fn expire_forgets_cells_without_results() {
    let config = MatrixConfig { expire_after: Duration::from_secs(300), ..MatrixConfig::default() };
    let mut m = Matrix::new(config);
    let idx = index();
    let to_tidb = pod_target("tidb/tidb-0", "10.244.3.2", port(4000));
    m.record(&node("node-1"), &tcp("tidb/pd-0", pd1_2379(), Outcome::Ok, t(0.0)), &idx, t(0.0));
    m.record(&node("node-2"), &tcp("tidb/pd-1", to_tidb.clone(), Outcome::Ok, t(200.0)), &idx, t(200.0));
    assert_eq!(m.cell_counts(), (2, 2));
    let before = m.retained_bytes();
    assert_eq!(m.expire(t(300.0)), 0, "exactly expire_after old is kept");
    assert_eq!(m.expire(t(301.0)), 2);
    assert_eq!(m.cell_counts(), (1, 1));
    assert!(m.retained_bytes() < before);
    assert!(m.pod_cell(&pod_key("tidb/pd-1", &to_tidb, ProbeKind::Tcp), t(301.0)).is_some());
    assert_eq!(m.agent_last_seen(&node("node-1")), None, "a silent agent with no cells is forgotten");
    assert_eq!(m.expire(t(1_000.0)), 2);
    assert_eq!((m.cell_counts(), m.retained_bytes()), ((0, 0), 0));
}

#[test]
fn names_forgotten_by_expire_never_mix_cells_when_their_ids_come_back() {
    let config = MatrixConfig { expire_after: Duration::from_secs(300), ..MatrixConfig::default() };
    let mut m = Matrix::new(config);
    let idx = index();
    let (n1, n2) = (node("node-1"), node("node-2"));
    let to_tidb = pod_target("tidb/tidb-0", "10.244.3.2", port(4000));
    m.record(&n1, &tcp("tidb/pd-0", pd1_2379(), Outcome::Tcp(TcpFailure::Refused), t(0.0)), &idx, t(0.0));
    assert_eq!(m.expire(t(400.0)), 2);
    assert_eq!(m.retained_bytes(), 0, "cells, names and the silent agent all forgotten");
    // New names take the freed ids; then the first cell comes back under fresh ids.
    m.record(
        &n2,
        &tcp("tidb/pd-1", to_tidb.clone(), Outcome::Tcp(TcpFailure::Timeout), t(401.0)),
        &idx,
        t(401.0),
    );
    m.record(&n1, &tcp("tidb/pd-0", pd1_2379(), Outcome::Ok, t(402.0)), &idx, t(402.0));
    assert_eq!(m.cell_counts(), (2, 2));
    let back = m.pod_cell(&pod_key("tidb/pd-0", &pd1_2379(), ProbeKind::Tcp), t(402.0)).unwrap();
    assert_eq!((back.successes, back.failures, back.agent.as_str()), (1, 0, "node-1"));
    let other = m.pod_cell(&pod_key("tidb/pd-1", &to_tidb, ProbeKind::Tcp), t(402.0)).unwrap();
    assert_eq!((other.successes, other.failures, other.agent.as_str()), (0, 1, "node-2"));
    let node_level =
        m.node_cell(&node_key("node-1", NodeDestination::Node(node("node-2")), ProbeKind::Tcp), t(402.0));
    assert_eq!(node_level.map(|c| (c.successes, c.failures)), Some((1, 0)));
}

#[test]
fn levels_stop_growing_at_max_cells() {
    let mut m = Matrix::new(MatrixConfig { max_cells: 2, ..MatrixConfig::default() });
    let now = t(1.0);
    for p in 1..=5 {
        let r = tcp("tidb/pd-0", Target::Address { ip: ip("192.0.2.1"), port: port(p) }, Outcome::Ok, now);
        m.record(&node("node-1"), &r, &index(), now);
    }
    assert_eq!(m.cell_counts(), (2, 1));
    assert_eq!(m.counters().refused_full, 3);
    // Existing cells keep counting.
    let r = tcp("tidb/pd-0", Target::Address { ip: ip("192.0.2.1"), port: port(1) }, Outcome::Ok, now);
    m.record(&node("node-1"), &r, &index(), now);
    assert_eq!(m.counters().recorded, 3);
}

#[test]
fn memory_does_not_grow_with_samples() {
    // 100 cells: 10 source pods × 10 destination ports, fed round-robin 10 ms apart (one round
    // of 100 results a second), an RTT per cell (seven values in all), every cell failing in
    // one round out of 13.
    let mut m = Matrix::default();
    let idx = index();
    let n1 = node("node-1");
    let sources: Vec<Source> = (0..10).map(|i| format!("tidb/client-{i}").parse().unwrap()).collect();
    let targets: Vec<Target> =
        (0..10).map(|p| pod_target("tidb/pd-1", "10.244.2.2", port(2000 + p))).collect();
    let record = |m: &mut Matrix, i: u64| {
        let at = t_ms(i as i64 * 10);
        let cell = (i % 100) as usize;
        let outcome = if (i / 100) % 13 == 5 { Outcome::Tcp(TcpFailure::Refused) } else { Outcome::Ok };
        let r = ProbeResult {
            source: sources[cell / 10].clone(),
            rtt: outcome.is_ok().then(|| Rtt::from_micros(200 + (cell as u64 % 7) * 30, false).unwrap()),
            ..tcp("tidb/pd-0", targets[cell % 10].clone(), outcome, at)
        };
        m.record(&n1, &r, &idx, at);
    };
    // The first window's worth: 12 buckets × 5 s at 100 results/s = 6 000 results.
    for i in 0..6_000 {
        record(&mut m, i);
    }
    let warm = m.retained_bytes();
    assert_eq!(m.cell_counts(), (100, 1));
    for i in 6_000..1_000_000 {
        record(&mut m, i);
    }
    assert_eq!(m.cell_counts(), (100, 1));
    assert_eq!(m.retained_bytes(), warm, "retained bytes after 1M results");
    // The bound: a ring of 12 buckets with at most MAX_BINS bins each, per cell, plus keys.
    let per_cell_bound = 12 * (sketch::MAX_BINS * 8 + 128) + 1024;
    assert!(warm <= 101 * per_cell_bound, "{warm} > {}", 101 * per_cell_bound);
    assert_eq!(m.counters().recorded, 1_000_000);
}

#[test]
fn the_matrix_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Matrix>();
}

fn arb_outcome() -> impl Strategy<Value = Outcome> {
    prop::sample::select(Outcome::ALL.to_vec())
}

fn arb_target() -> impl Strategy<Value = Target> {
    let pods = prop::sample::select(vec![
        ("tidb/pd-0", "10.244.1.2"),
        ("tidb/pd-1", "10.244.2.2"),
        ("tidb/tidb-0", "10.244.3.2"),
        ("tidb/gone", "10.250.0.9"),
    ]);
    let ports = prop::option::of(prop::sample::select(vec![53u32, 2379, 4000]));
    prop_oneof![
        (pods.clone(), ports.clone()).prop_map(|((p, a), port)| pod_target(
            p,
            a,
            port.map(|n| Port::new(n).unwrap())
        )),
        (pods, 0..3usize).prop_map(|((p, a), via)| Target::Service {
            service: "tidb/pd".parse().unwrap(),
            ip: ip(a),
            port: Port::new(2379).unwrap(),
            via: match via {
                0 => ServiceVia::ClusterIp,
                1 => ServiceVia::NodePort,
                _ => ServiceVia::Endpoint(p.parse().unwrap()),
            },
        }),
        prop::bool::ANY.prop_map(|v6| Target::Dns {
            name: DnsName::new("pd.tidb").unwrap(),
            record: if v6 { RecordType::Aaaa } else { RecordType::A },
            nameserver: v6.then(|| ip("10.96.0.10")),
            transport: DnsTransport::Udp,
        }),
        ports.prop_map(|port| Target::Address {
            ip: ip("192.0.2.1"),
            port: port.map(|n| Port::new(n).unwrap())
        }),
    ]
}

/// A result from an arbitrary source, at an arbitrary offset (-200 s to +20 s) from the
/// moment it is recorded, with arbitrary (even contradictory) fields.
fn arb_result() -> impl Strategy<Value = (usize, ProbeResult, i64)> {
    (
        0..3usize,
        prop::sample::select(vec!["tidb/pd-0", "tidb/pd-1", "node/node-1"]),
        arb_target(),
        prop::sample::select(ProbeKind::ALL.to_vec()),
        arb_outcome(),
        prop::option::of(1u64..10_000_000),
        prop::option::of((1u32..20).prop_flat_map(|sent| (Just(sent), 0..=sent))),
        -200_000i64..20_000,
        "[ -~]{0,40}",
    )
        .prop_map(|(agent, source, target, kind, outcome, rtt, burst, offset, detail)| {
            let r = ProbeResult {
                kind,
                rtt: rtt.map(|us| Rtt::from_micros(us, false).unwrap()),
                burst: burst.map(|(s, r)| Burst::new(s, r).unwrap()),
                detail: Detail::new(detail).unwrap(),
                ..tcp(source, target, outcome, t(1.0))
            };
            (agent, r, offset)
        })
}

proptest! {
    #[test]
    fn arbitrary_results_never_panic_and_statuses_agree_with_counts(
        results in prop::collection::vec(arb_result(), 1..200),
        step_ms in 0i64..2_000,
        silent_for in 0u64..60,
    ) {
        let mut m = Matrix::default();
        let idx = index();
        let agents = [node("node-1"), node("node-2"), node("node-3")];
        let mut now = t(300.0);
        for (agent, mut r, offset) in results {
            r.at = UnixMillis::new(now.get() + offset).unwrap();
            m.record(&agents[agent], &r, &idx, now);
            now = UnixMillis::new(now.get() + step_ms).unwrap();
        }
        let now = UnixMillis::new(now.get() + silent_for as i64 * 1000).unwrap();
        for level in [MatrixLevel::Pod, MatrixLevel::Node] {
            for cell in m.snapshot(&MatrixQuery { level, kind: None }, now).cells {
                prop_assert!((0.0..=1.0).contains(&cell.loss_ratio.get()));
                if let (Some(p50), Some(p99)) = (cell.rtt_p50, cell.rtt_p99) {
                    prop_assert!(p50 <= p99);
                }
            }
        }
        let check = |stats: &CellStats, agent_fresh: bool| -> Result<(), TestCaseError> {
            prop_assert_eq!(stats.agent_fresh, agent_fresh);
            match stats.status {
                CellStatus::Failed => prop_assert!(stats.failures >= 1),
                CellStatus::Ok => prop_assert!(stats.successes >= 1),
                CellStatus::Degraded => {
                    prop_assert!(stats.failures >= 1 || stats.loss_ratio.get() > DEGRADED_LOSS_RATIO)
                }
                CellStatus::Unknown => prop_assert!(!agent_fresh || stats.attempts() == 0),
            }
            if !agent_fresh {
                prop_assert_eq!(stats.status, CellStatus::Unknown);
            }
            Ok(())
        };
        let pods = m.pod_cells(now).map(|(_, s)| s);
        for stats in pods.chain(m.node_cells(now).map(|(_, s)| s)) {
            check(&stats, m.agent_fresh(&stats.agent, now))?;
        }
        m.expire(UnixMillis::new(now.get() + 3_600_000).unwrap());
        prop_assert_eq!(m.cell_counts(), (0, 0));
    }
}
