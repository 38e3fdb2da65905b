//! The kube_report plan as tables: a finding appearing, persisting and clearing gives exactly
//! these condition patches and Events (series bumps, rate limits) for a given history and `now`.

use netdiag_model::finding::{FindingId, Severity};
use netdiag_model::text::Text;
use serde_json::json;

use super::*;
use crate::history::FindingHistory;

fn at(s: i64) -> UnixMillis {
    UnixMillis::new(1_700_000_000_000 + s * 1000).unwrap()
}

fn finding(id: &str, kind: CulpritKind, culprit: &str, verdict: &str) -> Finding {
    Finding {
        id: FindingId::new(id).unwrap(),
        severity: Severity::Critical,
        verdict: Text::lossy(verdict),
        culprit: Some(Culprit { kind, name: Text::lossy(culprit) }),
        affected: vec![],
        evidence: vec![],
        runbook: None,
        suggestion: Text::default(),
    }
}

fn isolated(node: &str) -> Finding {
    finding("node-isolated", CulpritKind::Node, node, &format!("{node} is cut off from every other node"))
}

/// Runs the findings of one diagnosis through a history and the reporter, as the writer does;
/// every write is taken as done.
struct Round {
    history: FindingHistory,
    reporter: Reporter,
}

impl Round {
    fn new(config: ReportConfig) -> Self {
        Round { history: FindingHistory::default(), reporter: Reporter::new(config, at(0)) }
    }

    fn run(&mut self, findings: &[Finding], now: UnixMillis) -> Plan {
        self.history.observe(findings, now);
        let transitions = self.history.since(self.reporter.seq);
        let plan = self.reporter.plan(findings, &transitions, now);
        plan.conditions.iter().for_each(|w| self.reporter.condition_written(w));
        plan
    }
}

/// A plan's conditions as `node status reason message transition-second`.
fn conditions(plan: &Plan) -> Vec<String> {
    plan.conditions
        .iter()
        .map(|w| {
            let c = &w.condition;
            let since = (c.last_transition.get() - at(0).get()) / 1000;
            format!("{} {} {} {} @{since}", w.node, c.status, c.reason, c.message)
        })
        .collect()
}

/// A plan's events as `object type reason count name-is-new`.
fn events(plan: &Plan) -> Vec<String> {
    plan.events
        .iter()
        .map(|e| {
            let ev = &e.event;
            format!(
                "{} {} {} x{}{}",
                e.series.object,
                ev.type_.as_deref().unwrap_or(""),
                ev.reason.as_deref().unwrap_or(""),
                ev.count.unwrap_or(0),
                if e.repeat { " (bump)" } else { "" }
            )
        })
        .collect()
}

#[test]
fn culprits_name_their_objects() {
    let node = |n: &str| ObjectKey::node(n);
    let pod = |ns: &str, n: &str| ObjectKey { kind: ObjectKind::Pod, namespace: ns.into(), name: n.into() };
    let svc =
        |ns: &str, n: &str| ObjectKey { kind: ObjectKind::Service, namespace: ns.into(), name: n.into() };
    let cases: Vec<(CulpritKind, &str, Vec<ObjectKey>)> = vec![
        (CulpritKind::Node, "node-3", vec![node("node-3")]),
        (CulpritKind::NodePair, "node-1↔node-2", vec![node("node-1"), node("node-2")]),
        (CulpritKind::NodePair, "node-1→node-2", vec![node("node-1"), node("node-2")]),
        (CulpritKind::Pod, "tidb/demo-pd-0", vec![pod("tidb", "demo-pd-0")]),
        (CulpritKind::Pod, "ns-16/w816-6 from namespace ns-16", vec![pod("ns-16", "w816-6")]),
        (CulpritKind::Port, "tidb/demo-pd-0:2379", vec![pod("tidb", "demo-pd-0")]),
        (CulpritKind::Service, "tidb/demo-pd", vec![svc("tidb", "demo-pd")]),
        (CulpritKind::Service, "not-namespaced", vec![]),
        (CulpritKind::Dns, "cluster DNS", vec![]),
        (CulpritKind::Dns, "cluster DNS from node-2", vec![]),
        (CulpritKind::Path, "svc/tidb/demo-pd from node-1", vec![]),
    ];
    for (kind, name, want) in cases {
        assert_eq!(objects(&Culprit { kind, name: Text::lossy(name) }), want, "{kind} {name}");
    }
}

#[test]
fn conditions_are_written_on_change_only_and_cleared_as_npd_does() {
    let mut r = Round::new(ReportConfig::default());
    let loss = |pct: u32| finding("node-packet-loss", CulpritKind::Node, "node-2", &format!("{pct}% lost"));
    let pair = finding("node-pair", CulpritKind::NodePair, "node-1↔node-3", "node-1 and node-3 cannot talk");
    let cut = "node-3 is cut off from every other node";
    // (round at second, findings, conditions written)
    let rounds: Vec<(i64, Vec<Finding>, Vec<String>)> = vec![
        (0, vec![], vec![]),
        (5, vec![isolated("node-3")], vec![format!("node-3 true node-isolated {cut} @5")]),
        (10, vec![isolated("node-3")], vec![]),
        (
            15,
            vec![isolated("node-3"), pair.clone(), loss(30)],
            vec![
                "node-1 true node-pair node-1 and node-3 cannot talk @15".into(),
                "node-2 true node-packet-loss 30% lost @15".into(),
                // Another finding blames node-3: written at once, its transition kept.
                format!("node-3 true node-isolated {cut} (also: node-pair) @5"),
            ],
        ),
        // A new message alone waits for the refresh interval…
        (20, vec![isolated("node-3"), pair.clone(), loss(31)], vec![]),
        // …then is written, its transition time kept.
        (
            80,
            vec![isolated("node-3"), pair.clone(), loss(32)],
            vec!["node-2 true node-packet-loss 32% lost @15".into()],
        ),
        // The other finding gone: written at once.
        (
            81,
            vec![isolated("node-3"), loss(32)],
            vec![
                "node-1 false NetworkOk no netdiag finding blames this node @81".into(),
                format!("node-3 true node-isolated {cut} @5"),
            ],
        ),
        (
            85,
            vec![],
            vec![
                format!("node-2 false {REASON_OK} {MESSAGE_OK} @85"),
                format!("node-3 false {REASON_OK} {MESSAGE_OK} @85"),
            ],
        ),
        (90, vec![], vec![]),
        // The reason changing is a write at once; the status stays, so does its transition time.
        (95, vec![isolated("node-3")], vec![format!("node-3 true node-isolated {cut} @95")]),
        (
            100,
            vec![finding("node-mtu", CulpritKind::Node, "node-3", "MTU")],
            vec!["node-3 true node-mtu MTU @95".into()],
        ),
    ];
    for (s, findings, want) in rounds {
        assert_eq!(conditions(&r.run(&findings, at(s))), want, "round at {s}s");
    }
}

#[test]
fn a_failed_write_is_planned_again_and_a_gone_node_forgotten() {
    let mut reporter = Reporter::new(ReportConfig::default(), at(0));
    let plan = reporter.plan(&[isolated("node-3")], &[], at(5));
    assert_eq!(plan.conditions.len(), 1);
    // Not confirmed: the next round wants it again (its transition is when it gets written).
    let again = reporter.plan(&[isolated("node-3")], &[], at(10));
    assert_eq!(conditions(&again), [format!("node-3 true node-isolated {} @10", isolated("node-3").verdict)]);
    reporter.condition_written(&again.conditions[0]);
    assert!(reporter.plan(&[isolated("node-3")], &[], at(15)).conditions.is_empty());
    reporter.forget_node("node-3");
    assert!(reporter.plan(&[], &[], at(20)).conditions.is_empty(), "a forgotten node is left alone");
}

#[test]
fn conditions_found_at_start_are_cleared_after_the_grace_only() {
    let config = ReportConfig { inherited_grace: Duration::from_secs(60), ..ReportConfig::default() };
    let mut reporter = Reporter::new(config, at(0));
    let before = |status: bool| Condition {
        status,
        reason: "node-isolated".into(),
        message: "old".into(),
        last_transition: at(-100),
        written: at(-90),
    };
    reporter.known("node-3", before(true));
    reporter.known("node-4", before(false));
    assert!(reporter.plan(&[], &[], at(5)).conditions.is_empty(), "within the grace");
    // Blamed again within the grace: its new message written at once (the old one is over a
    // minute old), the transition kept.
    let cut = isolated("node-3").verdict;
    assert_eq!(
        conditions(&reporter.plan(&[isolated("node-3")], &[], at(6))),
        [format!("node-3 true node-isolated {cut} @-100")]
    );
    let plan = reporter.plan(&[], &[], at(61));
    assert_eq!(
        conditions(&plan),
        [
            format!("node-3 false {REASON_OK} {MESSAGE_OK} @61"),
            format!("node-4 false {REASON_OK} {MESSAGE_OK} @-100")
        ],
        "node-4 was False with another reason: rewritten, its transition kept"
    );
    let found = Condition::from_api(&plan.conditions[0].condition.to_api(), at(99)).unwrap();
    assert_eq!(found, plan.conditions[0].condition, "read back as written");
}

#[test]
fn events_per_transition_with_series_and_rate_limit() {
    let config = ReportConfig { burst: 3, refill: Duration::from_secs(100), ..ReportConfig::default() };
    let mut r = Round::new(config);
    let pair = finding("node-pair", CulpritKind::NodePair, "node-1↔node-3", "cut");
    let dns = finding("dns-down", CulpritKind::Dns, "cluster DNS", "DNS is down");
    let pod = finding("pod-down", CulpritKind::Pod, "tidb/demo-pd-0", "down");
    let rounds: Vec<(i64, Vec<Finding>, Vec<&str>, usize)> = vec![
        (
            5,
            vec![isolated("node-3"), dns.clone(), pod.clone()],
            vec!["node/node-3 Warning node-isolated x1", "pod/tidb/demo-pd-0 Warning pod-down x1"],
            0,
        ),
        (10, vec![isolated("node-3"), dns.clone(), pod.clone()], vec![], 0),
        (15, vec![], vec!["node/node-3 Normal node-isolated x1", "pod/tidb/demo-pd-0 Normal pod-down x1"], 0),
        // Flapping back: the same series, bumped; node-3's third event is its last token.
        (20, vec![isolated("node-3")], vec!["node/node-3 Warning node-isolated x2 (bump)"], 0),
        // node-1's first; node-3 has no token left for node-isolated clearing and node-pair.
        (25, vec![pair.clone()], vec!["node/node-1 Warning node-pair x1"], 2),
        // A token back after 100 s.
        (125, vec![], vec!["node/node-1 Normal node-pair x1", "node/node-3 Normal node-pair x1"], 0),
    ];
    for (s, findings, want, suppressed) in rounds {
        let plan = r.run(&findings, at(s));
        assert_eq!(events(&plan), want, "round at {s}s");
        assert_eq!(plan.suppressed.len(), suppressed, "round at {s}s: {:?}", plan.suppressed);
    }
}

#[test]
fn the_objects_written_are_exact() {
    let mut r = Round::new(ReportConfig::default());
    r.run(&[isolated("node-3")], at(5));
    let plan = r.run(&[], at(65));
    let write = &plan.conditions[0];
    assert_eq!(
        serde_json::to_value(write.condition.to_api()).unwrap(),
        json!({
            "type": "NetdiagNetwork",
            "status": "False",
            "reason": "NetworkOk",
            "message": "no netdiag finding blames this node",
            "lastTransitionTime": "2023-11-14T22:14:25Z",
            "lastHeartbeatTime": "2023-11-14T22:14:25Z",
        })
    );
    let cleared = &plan.events[0];
    assert_eq!(
        serde_json::to_value(&cleared.event).unwrap(),
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "node-3.18bcfe665e80002", "namespace": "default"},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": "node-3"},
            "reason": "node-isolated",
            "message": "cleared after 60s: node-3 is cut off from every other node",
            "type": "Normal",
            "count": 1,
            "firstTimestamp": "2023-11-14T22:14:25Z",
            "lastTimestamp": "2023-11-14T22:14:25Z",
            "source": {"component": "netdiag-collector"},
            "reportingComponent": "netdiag-collector",
        })
    );
    assert!(!cleared.repeat);
    assert_eq!(
        cleared.bump(),
        json!({"count": 1, "lastTimestamp": "2023-11-14T22:14:25Z", "message": "cleared after 60s: node-3 is cut off from every other node"})
    );
}
