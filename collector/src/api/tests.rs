//! The HTTP app through `oneshot`, no socket: a lab-like inventory, agents fed through the
//! [`Sink`] methods, and every route's status, headers and JSON shape.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, header};
use netdiag_model::dns::{DnsName, DnsTransport, RecordType};
use netdiag_model::finding::{Culprit, CulpritKind, Diagnosis, Finding, FindingId, Severity};
use netdiag_model::inventory::Inventory;
use netdiag_model::outcome::{DnsFailure, IcmpFailure, TcpFailure};
use netdiag_model::probe::{ProbeKind, ServiceVia, Target};
use netdiag_model::result::{Burst, Detail, ProbeResult, ResultBatch, Rtt, Seq};
use netdiag_model::session::{AgentVersion, Capability, Hello, InstanceId, LocalPod};
use netdiag_model::text::Text;
use netdiag_model::{NodeName, Outcome, Port, UnixMillis};
use serde_json::{Value, json};
use tonic::codegen::Service;

use super::router;
use super::v1::{self, DiagnosisResponse};
use crate::metrics::CollectorMetrics;
use crate::runs::config::RunsConfig;
use crate::runs::dispatch::Dispatcher;
use crate::sink::Sink;
use crate::state::{CollectorState, now};
use netdiag_diagnose::matrix::{InventoryIndex, MatrixConfig};

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
  - {namespace: kube-system, name: coredns-0, node: node-1, ips: [10.244.1.10]}
  - {namespace: tidb, name: demo-pd-0, node: node-1, ips: [10.244.1.2]}
  - {namespace: tidb, name: demo-pd-1, node: node-2, ips: [10.244.2.2]}
  - {namespace: tidb, name: demo-tikv-0, node: node-3, ips: [10.244.3.3]}
services:
  - namespace: tidb
    name: demo-pd
    type: ClusterIP
    cluster_ips: [10.96.0.20]
    ports: [{name: client, port: 2379, target_port: 2379}]
    endpoints:
      - {ip: 10.244.1.2, pod: tidb/demo-pd-0, node: node-1, ready: true}
      - {ip: 10.244.2.2, pod: tidb/demo-pd-1, node: node-2, ready: true}
"#;

/// The error text agents report for the failing path: must reach the API, never the metrics.
const TIMEOUT_DETAIL: &str = "connect to 10.244.2.2:2379 timed out after 1000ms";

// --- oneshot ---

/// Sends one request through the router, as `tower::ServiceExt::oneshot` does (`tower` is not
/// a direct dependency; tonic re-exports the `Service` trait).
pub(in crate::api) async fn oneshot(app: Router, request: Request<Body>) -> Response<Body> {
    let mut app = app;
    match std::future::poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut app, cx)).await {
        Ok(()) => {}
        Err(e) => match e {},
    }
    match app.call(request).await {
        Ok(response) => response,
        Err(e) => match e {},
    }
}

async fn send(app: Router, method: Method, uri: &str) -> (StatusCode, header::HeaderMap, String) {
    let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    let response = oneshot(app, request).await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap();
    (parts.status, parts.headers, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn get(app: Router, uri: &str) -> (StatusCode, header::HeaderMap, String) {
    send(app, Method::GET, uri).await
}

async fn get_json(app: Router, uri: &str) -> (StatusCode, Value) {
    let (status, headers, body) = get(app, uri).await;
    assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{uri}");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{uri}");
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}")))
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

// --- a lab with a fault: demo-pd-0 cannot reach demo-pd-1:2379 ---

fn node(name: &str) -> NodeName {
    name.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pod_target(pod: &str, addr: &str, port: Option<u32>) -> Target {
    Target::Pod { pod: pod.parse().unwrap(), ip: ip(addr), port: port.map(|p| Port::new(p).unwrap()) }
}

fn result(source: &str, target: Target, kind: ProbeKind, outcome: Outcome) -> ProbeResult {
    ProbeResult {
        source: source.parse().unwrap(),
        target,
        kind,
        outcome,
        rtt: outcome.is_ok().then(|| Rtt::from_micros(250, false).unwrap()),
        at: now(),
        detail: Detail::default(),
        burst: None,
        http_status: None,
        path_mtu: None,
        answers: vec![],
        nameserver: None,
    }
}

fn icmp(source: &str, target: Target, received: u32) -> ProbeResult {
    let outcome = if received > 0 { Outcome::Ok } else { Outcome::Icmp(IcmpFailure::Timeout) };
    ProbeResult {
        burst: Some(Burst::new(3, received).unwrap()),
        ..result(source, target, ProbeKind::Icmp, outcome)
    }
}

fn tcp_timeout(source: &str, target: Target) -> ProbeResult {
    ProbeResult {
        detail: Detail::lossy(TIMEOUT_DETAIL),
        ..result(source, target, ProbeKind::Tcp, Outcome::Tcp(TcpFailure::Timeout))
    }
}

fn hello(name: &str, pods: &[(&str, &str)]) -> Hello {
    Hello {
        node: node(name),
        agent_version: AgentVersion::new("0.1.0").unwrap(),
        capabilities: [Capability::Icmp, Capability::Tcp, Capability::Dns].into(),
        pods: pods
            .iter()
            .map(|(pod, addr)| LocalPod {
                pod: pod.parse().unwrap(),
                ips: vec![ip(addr)],
                host_network: false,
            })
            .collect(),
        node_ips: vec![],
        first_unacked_seq: Seq::FIRST,
        instance_id: InstanceId::new(format!("{name}-instance")).unwrap(),
    }
}

fn batch(seq: u64, results: Vec<ProbeResult>) -> ResultBatch {
    ResultBatch { seq: Seq::new(seq).unwrap(), results, dropped: 0 }
}

fn inventory() -> Inventory {
    Inventory::from_yaml(INVENTORY).unwrap()
}

/// What the agents sent, so the metrics can be fed the same batches.
fn lab_batches() -> Vec<(NodeName, ResultBatch)> {
    let pd1 = || pod_target("tidb/demo-pd-1", "10.244.2.2", Some(2379));
    let pd0 = || pod_target("tidb/demo-pd-0", "10.244.1.2", Some(2379));
    let dns = Target::Dns {
        name: DnsName::new("demo-pd.tidb").unwrap(),
        record: RecordType::A,
        nameserver: None,
        transport: DnsTransport::Udp,
    };
    let svc = Target::Service {
        service: "tidb/demo-pd".parse().unwrap(),
        ip: ip("10.96.0.20"),
        port: Port::new(2379).unwrap(),
        via: ServiceVia::ClusterIp,
    };
    // An agent naming a node the inventory does not have: must not mint a metric series.
    let invented = Target::Node { node: node("made-up-node"), ip: ip("192.0.2.7"), port: None };
    let node1 = vec![
        tcp_timeout("tidb/demo-pd-0", pd1()),
        tcp_timeout("tidb/demo-pd-0", pd1()),
        tcp_timeout("tidb/demo-pd-0", pd1()),
        icmp("tidb/demo-pd-0", pod_target("tidb/demo-pd-1", "10.244.2.2", None), 3),
        icmp("tidb/demo-pd-0", pod_target("tidb/demo-tikv-0", "10.244.3.3", None), 3),
        result("tidb/demo-pd-0", svc, ProbeKind::Tcp, Outcome::Ok),
        result("tidb/demo-pd-0", dns.clone(), ProbeKind::Dns, Outcome::Ok),
        icmp("node/node-1", invented, 3),
    ];
    let node2 = vec![
        result("tidb/demo-pd-1", pd0(), ProbeKind::Tcp, Outcome::Ok),
        icmp("tidb/demo-pd-1", pod_target("tidb/demo-pd-0", "10.244.1.2", None), 3),
        ProbeResult {
            detail: Detail::lossy("NXDOMAIN from 10.96.0.10"),
            ..result("tidb/demo-pd-1", dns, ProbeKind::Dns, Outcome::Dns(DnsFailure::NxDomain))
        },
    ];
    vec![(node("node-1"), batch(1, node1)), (node("node-2"), batch(1, node2))]
}

struct Lab {
    state: Arc<CollectorState>,
    metrics: Arc<CollectorMetrics>,
}

impl Lab {
    fn app(&self) -> Router {
        app_for(self.state.clone(), self.metrics.clone())
    }
}

/// The router over `state`, with default run settings and no agent session (the Sink is fed
/// directly), so runs are refused with 503.
fn app_for(state: Arc<CollectorState>, metrics: Arc<CollectorMetrics>) -> Router {
    let (_, stop) = tokio::sync::watch::channel(false);
    let ingest = crate::ingest::Ingest::new(state.clone(), stop);
    let runs = Dispatcher::new(state.clone(), ingest, RunsConfig::default());
    router(state, metrics, runs)
}

fn lab() -> Lab {
    let state = Arc::new(CollectorState::new(inventory(), MatrixConfig::default()));
    let metrics = Arc::new(CollectorMetrics::new());
    let index = InventoryIndex::new(&inventory());
    state.agent_connected(&hello("node-1", &[("tidb/demo-pd-0", "10.244.1.2")]));
    state.agent_connected(&hello("node-2", &[("tidb/demo-pd-1", "10.244.2.2")]));
    state.agent_connected(&hello("node-3", &[("tidb/demo-tikv-0", "10.244.3.3")]));
    state.agent_disconnected(&node("node-3"));
    for (node, batch) in lab_batches() {
        metrics.observe_batch(&node, &batch, &index);
        state.results(&node, batch);
    }
    state.duplicate_batch(&node("node-1"));
    state.invalid_message(&node("node-2"));
    Lab { state, metrics }
}

fn find<'a>(cells: &'a [Value], source: &str, destination: &str, kind: &str) -> &'a Value {
    cells
        .iter()
        .find(|c| c["source"] == source && c["destination"] == destination && c["kind"] == kind)
        .unwrap_or_else(|| panic!("no cell {source} → {destination} ({kind}) in {cells:#?}"))
}

const CELL_FIELDS: [&str; 11] = [
    "claimed_by",
    "source",
    "destination",
    "kind",
    "status",
    "loss_ratio",
    "rtt_p50_ms",
    "rtt_p99_ms",
    "last_error",
    "samples",
    "last_update_unix_ms",
];

// --- matrix ---

#[tokio::test]
async fn the_pod_matrix_shows_the_failing_path_with_its_numbers() {
    let lab = lab();
    let (status, body) = get_json(lab.app(), "/api/v1/matrix").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&body), set(&["level", "kind", "cells", "generated_unix_ms"]));
    assert_eq!((body["level"].as_str(), body["kind"].as_str()), (Some("pod"), Some("all")));
    let cells = body["cells"].as_array().unwrap();
    for c in cells {
        assert_eq!(keys(c), set(&CELL_FIELDS), "{c}");
    }

    let failed = find(cells, "tidb/demo-pd-0", "tidb/demo-pd-1:2379", "tcp");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["loss_ratio"], 1.0);
    assert_eq!(failed["samples"], 3);
    assert_eq!(failed["rtt_p50_ms"], Value::Null);
    let error = failed["last_error"].as_str().unwrap();
    assert!(error.contains(TIMEOUT_DETAIL), "{error}");
    assert!(failed["last_update_unix_ms"].as_i64().unwrap() > 1_600_000_000_000);

    let ok = find(cells, "tidb/demo-pd-0", "tidb/demo-pd-1", "icmp");
    assert_eq!(ok["status"], "ok");
    assert_eq!(ok["loss_ratio"], 0.0);
    assert_eq!(ok["last_error"], Value::Null);
    let p50 = ok["rtt_p50_ms"].as_f64().unwrap();
    assert!((0.2..=0.3).contains(&p50), "250 µs is about 0.25 ms: {p50}");

    let dns = find(cells, "tidb/demo-pd-1", "dns/demo-pd.tidb", "dns");
    assert_eq!(dns["status"], "failed");
    find(cells, "tidb/demo-pd-0", "svc/tidb/demo-pd:2379", "tcp");
}

#[tokio::test]
async fn the_node_matrix_aggregates_by_node() {
    let lab = lab();
    let (status, body) = get_json(lab.app(), "/api/v1/matrix?level=node").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["level"], "node");
    let cells = body["cells"].as_array().unwrap();
    for c in cells {
        assert_eq!(keys(c), set(&CELL_FIELDS), "{c}");
        assert!(!c["source"].as_str().unwrap().contains('/'), "node-level sources are node names: {c}");
    }
    assert_eq!(find(cells, "node-1", "node-2", "tcp")["status"], "failed");
    assert_eq!(find(cells, "node-1", "node-2", "icmp")["status"], "ok");
    assert_eq!(find(cells, "node-1", "node-3", "icmp")["status"], "ok");
    assert_eq!(find(cells, "node-2", "node-1", "tcp")["status"], "ok");
    find(cells, "node-1", "svc/*", "tcp");
    find(cells, "node-1", "dns/*", "dns");
}

#[tokio::test]
async fn the_node_and_status_filters_narrow_the_matrix() {
    let lab = lab();
    let (status, body) = get_json(lab.app(), "/api/v1/matrix?level=node&node=node-2&status=failed").await;
    assert_eq!(status, StatusCode::OK);
    let cells = body["cells"].as_array().unwrap();
    let pairs: Vec<(&str, &str)> =
        cells.iter().map(|c| (c["source"].as_str().unwrap(), c["destination"].as_str().unwrap())).collect();
    assert_eq!(pairs, [("node-1", "node-2"), ("node-2", "dns/*")], "the failed cells from or to node-2");
    let (_, to_or_from) = get_json(lab.app(), "/api/v1/matrix?level=node&node=node-3").await;
    let cells = to_or_from["cells"].as_array().unwrap();
    assert!(!cells.is_empty());
    assert!(cells.iter().all(|c| c["source"] == "node-3" || c["destination"] == "node-3"), "{cells:#?}");
    let (_, failed) = get_json(lab.app(), "/api/v1/matrix?status=failed").await;
    let cells = failed["cells"].as_array().unwrap();
    assert!(!cells.is_empty());
    assert!(cells.iter().all(|c| c["status"] == "failed" && !c["claimed_by"].is_null()), "{cells:#?}");
}

#[tokio::test]
async fn the_kind_filter_keeps_one_kind() {
    let lab = lab();
    for (uri, level, kind) in [
        ("/api/v1/matrix?kind=icmp", "pod", "icmp"),
        ("/api/v1/matrix?level=node&kind=tcp", "node", "tcp"),
        ("/api/v1/matrix?kind=dns&level=pod", "pod", "dns"),
    ] {
        let (status, body) = get_json(lab.app(), uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!((body["level"].as_str(), body["kind"].as_str()), (Some(level), Some(kind)), "{uri}");
        let cells = body["cells"].as_array().unwrap();
        assert!(!cells.is_empty(), "{uri}");
        assert!(cells.iter().all(|c| c["kind"] == kind), "{uri}: {cells:#?}");
    }
    let (_, mtu) = get_json(lab.app(), "/api/v1/matrix?kind=mtu").await;
    assert_eq!(mtu["cells"], json!([]), "no MTU probe ran");
    let (_, all) = get_json(lab.app(), "/api/v1/matrix?kind=all").await;
    let (_, default) = get_json(lab.app(), "/api/v1/matrix").await;
    assert_eq!(all["cells"], default["cells"]);
}

#[tokio::test]
async fn bad_parameters_are_a_400_naming_the_parameter_and_the_allowed_values() {
    let lab = lab();
    let cases = [
        ("/api/v1/matrix?level=cluster", Some("level"), "pod, node"),
        ("/api/v1/matrix?level=", Some("level"), "pod, node"),
        ("/api/v1/matrix?kind=udp", Some("kind"), "icmp, tcp, dns, http, mtu, all"),
        ("/api/v1/matrix?level=node&kind=ICMP", Some("kind"), "icmp, tcp, dns, http, mtu, all"),
        ("/api/v1/matrix?levle=node", Some("levle"), "level, kind"),
        ("/api/v1/matrix?level=pod&level=node", Some("level"), "more than once"),
        ("/api/v1/diagnosis?verbose=1", Some("verbose"), "takes no parameters"),
        ("/api/v1/agents?node=node-1", Some("node"), "takes no parameters"),
    ];
    for (uri, parameter, text) in cases {
        let (status, body) = get_json(lab.app(), uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        let error = body["error"].as_str().unwrap_or_else(|| panic!("{uri}: {body}"));
        assert!(error.contains(text), "{uri}: {error}");
        assert_eq!(body["parameter"].as_str(), parameter, "{uri}");
        if let Some(p) = parameter {
            assert!(error.contains(p), "{uri}: the message names the parameter: {error}");
        }
    }
    let (_, body) = get_json(lab.app(), "/api/v1/matrix?kind=udp").await;
    assert_eq!(body["allowed"], json!(["icmp", "tcp", "dns", "http", "mtu", "all"]));
}

// --- diagnosis ---

const FINDING_FIELDS: [&str; 11] = [
    "key",
    "id",
    "severity",
    "verdict",
    "culprit",
    "affected",
    "evidence",
    "runbook",
    "suggestion",
    "first_seen_unix_ms",
    "last_seen_unix_ms",
];

#[tokio::test]
async fn the_diagnosis_has_the_contract_shape() {
    let lab = lab();
    let (status, body) = get_json(lab.app(), "/api/v1/diagnosis").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&body), set(&["findings", "generated_unix_ms", "denied_by_policy_total"]));
    assert_eq!(body["denied_by_policy_total"], 0, "the lab without policies denies nothing");
    let findings = body["findings"].as_array().unwrap();
    for f in findings {
        assert_eq!(keys(f), set(&FINDING_FIELDS), "{f}");
    }
    let severities: Vec<&str> = findings.iter().map(|f| f["severity"].as_str().unwrap()).collect();
    let rank = |s: &str| ["critical", "warning", "info"].iter().position(|x| *x == s).unwrap();
    assert!(severities.windows(2).all(|w| rank(w[0]) <= rank(w[1])), "most severe first: {severities:?}");

    let healthy = Arc::new(CollectorState::new(inventory(), MatrixConfig::default()));
    let (status, body) = get_json(app_for(healthy, lab.metrics.clone()), "/api/v1/diagnosis").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["findings"], json!([]), "empty list when everything is healthy");
}

/// Each finding says since when it is listed; `/api/v1/events` lists the findings that
/// appeared (and cleared), newest first, bounded by `limit`.
#[tokio::test]
async fn findings_carry_their_history_and_events_list_the_transitions() {
    let lab = lab();
    let app = app_for(lab.state.clone(), lab.metrics.clone());
    let (_, diagnosis) = get_json(app.clone(), "/api/v1/diagnosis").await;
    let findings = diagnosis["findings"].as_array().unwrap();
    assert!(!findings.is_empty());
    for f in findings {
        let (first, last) =
            (f["first_seen_unix_ms"].as_i64().unwrap(), f["last_seen_unix_ms"].as_i64().unwrap());
        assert!(first <= last && last <= diagnosis["generated_unix_ms"].as_i64().unwrap(), "{f}");
    }
    let (status, events) = get_json(app.clone(), "/api/v1/events").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&events), set(&["events"]));
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), findings.len(), "one appearance per listed finding: {events:?}");
    for e in events {
        assert_eq!(
            keys(e),
            set(&["at_unix_ms", "transition", "key", "id", "verdict", "first_seen_unix_ms"]),
            "{e}"
        );
        assert_eq!(e["transition"], "appeared");
        assert!(findings.iter().any(|f| f["key"] == e["key"]), "{e}");
    }
    let (_, one) = get_json(app.clone(), "/api/v1/events?limit=1").await;
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    for bad in ["limit=0", "limit=1001", "limit=x", "limit=1&limit=2", "since=1"] {
        let (status, body) = get_json(app.clone(), &format!("/api/v1/events?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad}: {body}");
    }
}

#[tokio::test]
async fn every_failing_pod_cell_names_the_finding_that_claims_it() {
    let lab = lab();
    let app = app_for(lab.state.clone(), lab.metrics.clone());
    let (_, matrix) = get_json(app.clone(), "/api/v1/matrix?level=pod").await;
    let (_, diagnosis) = get_json(app.clone(), "/api/v1/diagnosis").await;
    let keys: BTreeSet<&str> =
        diagnosis["findings"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap()).collect();
    let cells = matrix["cells"].as_array().unwrap();
    let bad: Vec<&Value> =
        cells.iter().filter(|c| c["status"] == "failed" || c["status"] == "degraded").collect();
    assert!(!bad.is_empty(), "the lab has failing cells");
    for c in bad {
        let by = c["claimed_by"].as_str().unwrap_or_else(|| panic!("unclaimed: {c}"));
        assert!(keys.contains(by), "{by} is not a finding: {keys:?}");
    }
    for c in cells.iter().filter(|c| c["status"] == "ok") {
        assert!(c["claimed_by"].is_null(), "{c}");
    }
    let (_, nodes) = get_json(app, "/api/v1/matrix?level=node").await;
    assert!(nodes["cells"].as_array().unwrap().iter().all(|c| c["claimed_by"].is_null()));
}

fn finding(id: &str, severity: Severity) -> Finding {
    Finding {
        id: FindingId::new(id).unwrap(),
        severity,
        verdict: Text::lossy("node-1 cannot reach node-2"),
        culprit: Some(Culprit { kind: CulpritKind::NodePair, name: Text::lossy("node-1→node-2") }),
        affected: vec![Text::lossy("tidb/demo-pd-0"), Text::lossy("tidb/demo-pd-1")],
        evidence: vec![Text::lossy("tcp tidb/demo-pd-0 → tidb/demo-pd-1:2379: 3/3 timed out")],
        runbook: Some(Text::lossy("1.6")),
        suggestion: Text::lossy("look for a rule dropping traffic between the nodes"),
    }
}

#[test]
fn findings_convert_to_the_contract_shape_most_severe_first() {
    let bare = Finding {
        culprit: None,
        affected: vec![],
        evidence: vec![],
        runbook: None,
        suggestion: Text::default(),
        ..finding("agent-silent", Severity::Info)
    };
    let diagnosis = Diagnosis {
        findings: vec![
            bare,
            finding("node-pair-loss", Severity::Critical),
            finding("dns-nxdomain", Severity::Warning),
        ],
        generated_at: UnixMillis::new(1_700_000_000_000).unwrap(),
        denied_by_policy: vec![netdiag_model::finding::PolicyDenial {
            path: Text::lossy("kube-system/coredns-0 -> tidb/demo-pd-0:2379 tcp"),
            reason: Text::lossy("denied: ingress is isolated by policy tidb/only-tidb and no rule admits it"),
        }],
        denied_by_policy_total: 1,
    };
    let json = serde_json::to_value(DiagnosisResponse::from(diagnosis)).unwrap();
    assert_eq!(
        json,
        json!({
            "findings": [
                {
                    "key": "node-pair-loss node-1→node-2",
                    "id": "node-pair-loss",
                    "severity": "critical",
                    "verdict": "node-1 cannot reach node-2",
                    "culprit": {"type": "node_pair", "name": "node-1→node-2"},
                    "affected": ["tidb/demo-pd-0", "tidb/demo-pd-1"],
                    "evidence": ["tcp tidb/demo-pd-0 → tidb/demo-pd-1:2379: 3/3 timed out"],
                    "runbook": "1.6",
                    "suggestion": "look for a rule dropping traffic between the nodes",
                    "first_seen_unix_ms": null,
                    "last_seen_unix_ms": null
                },
                {
                    "key": "dns-nxdomain node-1→node-2",
                    "id": "dns-nxdomain",
                    "severity": "warning",
                    "verdict": "node-1 cannot reach node-2",
                    "culprit": {"type": "node_pair", "name": "node-1→node-2"},
                    "affected": ["tidb/demo-pd-0", "tidb/demo-pd-1"],
                    "evidence": ["tcp tidb/demo-pd-0 → tidb/demo-pd-1:2379: 3/3 timed out"],
                    "runbook": "1.6",
                    "suggestion": "look for a rule dropping traffic between the nodes",
                    "first_seen_unix_ms": null,
                    "last_seen_unix_ms": null
                },
                {
                    "key": "agent-silent",
                    "id": "agent-silent",
                    "severity": "info",
                    "verdict": "node-1 cannot reach node-2",
                    "culprit": null,
                    "affected": [],
                    "evidence": [],
                    "runbook": null,
                    "suggestion": "",
                    "first_seen_unix_ms": null,
                    "last_seen_unix_ms": null
                }
            ],
            "generated_unix_ms": 1_700_000_000_000i64,
            "denied_by_policy": [{
                "path": "kube-system/coredns-0 -> tidb/demo-pd-0:2379 tcp",
                "reason": "denied: ingress is isolated by policy tidb/only-tidb and no rule admits it"
            }],
            "denied_by_policy_total": 1
        })
    );
    let back: DiagnosisResponse = serde_json::from_value(json).unwrap();
    assert_eq!(back.findings[0].culprit.as_ref().map(|c| c.kind), Some(v1::CulpritType::NodePair));
}

#[test]
fn every_culprit_type_has_its_contract_name() {
    for k in CulpritKind::ALL {
        let v1: v1::CulpritType = k.into();
        assert_eq!(serde_json::to_value(v1).unwrap(), json!(k.as_str()));
    }
}

// --- agents ---

#[tokio::test]
async fn agents_list_every_node_with_its_session() {
    let lab = lab();
    let (status, body) = get_json(lab.app(), "/api/v1/agents").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys(&body), set(&["agents", "generated_unix_ms"]));
    let agents = body["agents"].as_array().unwrap();
    let nodes: Vec<&str> = agents.iter().map(|a| a["node"].as_str().unwrap()).collect();
    assert_eq!(nodes, ["node-1", "node-2", "node-3"]);
    let fields = [
        "node",
        "agent_version",
        "connected",
        "connected_since_unix_ms",
        "last_seen_unix_ms",
        "results_received",
        "results_dropped",
        "pods",
        "capabilities",
    ];
    for a in agents {
        assert_eq!(keys(a), set(&fields), "{a}");
    }
    assert_eq!(agents[0]["connected"], true);
    assert_eq!(agents[0]["results_received"], 8);
    assert_eq!(agents[0]["pods"], 1);
    assert_eq!(agents[0]["agent_version"], "0.1.0");
    assert_eq!(agents[0]["capabilities"], json!(["icmp", "tcp", "dns"]));
    assert_eq!(agents[2]["connected"], false, "node-3's session ended");
}

#[tokio::test]
async fn dropped_counts_an_agent_reports_saturate_instead_of_overflowing() {
    // An agent says how many results it dropped; a huge (or hostile) number must neither panic
    // (debug overflow) nor poison the locks that every later batch needs.
    let lab = lab();
    let huge = |seq| ResultBatch { dropped: u64::MAX - 1, ..batch(seq, vec![]) };
    lab.state.results(&node("node-1"), huge(10));
    lab.state.results(&node("node-1"), huge(11));
    let one = icmp("tidb/demo-pd-0", pod_target("tidb/demo-pd-1", "10.244.2.2", None), 1);
    lab.state.results(&node("node-1"), batch(12, vec![one]));
    let (_, body) = get_json(lab.app(), "/api/v1/agents").await;
    assert_eq!(body["agents"][0]["results_dropped"], u64::MAX);
    assert_eq!(body["agents"][0]["results_received"], 9, "later batches still counted");
    let counters = lab.state.counters();
    assert_eq!(counters.dropped_by_agents, u64::MAX);
    assert_eq!(counters.batches, 5);
    let (status, _, text) = get(lab.app(), "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains(&format!("netdiag_results_dropped_total{{reason=\"agent_buffer_full\"}} {}", u64::MAX)),
        "{text}"
    );
}

// --- metrics ---

/// `(name, labels)` of every sample line.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, _value) = line.rsplit_once(' ').unwrap();
            let Some((name, labels)) = series.split_once('{') else {
                return (series.to_owned(), BTreeMap::new());
            };
            let labels = labels
                .trim_end_matches('}')
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once("=\"").unwrap();
                    (k.to_owned(), v.trim_end_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels)
        })
        .collect()
}

#[tokio::test]
async fn metrics_have_the_families_and_only_bounded_labels() {
    let lab = lab();
    let (status, headers, text) = get(lab.app(), "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; version=0.0.4; charset=utf-8");
    for family in [
        "netdiag_probe_results_total",
        "netdiag_probe_inbound_results_total",
        "netdiag_probe_rtt_seconds",
        "netdiag_ingest_batches_total",
        "netdiag_ingest_results_total",
        "netdiag_ingest_duplicate_batches_total",
        "netdiag_ingest_invalid_messages_total",
        "netdiag_ingest_inspections_total",
        "netdiag_results_dropped_total",
        "netdiag_results_unplaced_total",
        "netdiag_matrix_cells",
        "netdiag_findings",
        "netdiag_agent_sessions_connected",
        "netdiag_agent_connected",
        "netdiag_agent_results_received_total",
        "netdiag_agent_results_dropped_total",
    ] {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing:\n{text}");
    }

    let samples = samples(&text);
    let value = |line_start: &str| -> f64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(line_start))
            .unwrap_or_else(|| panic!("{line_start}:\n{text}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    };
    assert_eq!(value(r#"netdiag_probe_results_total{node="node-1",kind="tcp",outcome="tcp_timeout"}"#), 3.0);
    assert_eq!(value(r#"netdiag_probe_rtt_seconds_count{node="node-1",kind="icmp"}"#), 3.0);
    assert_eq!(
        value(r#"netdiag_probe_results_total{node="node-1",kind="icmp",outcome="ok"}"#),
        3.0,
        "node-2's pod, node-3's pod and the invented node: counted, never named"
    );
    assert_eq!(
        value(r#"netdiag_probe_inbound_results_total{node="node-2",kind="tcp",outcome="tcp_timeout"}"#),
        3.0
    );
    assert_eq!(value(r#"netdiag_probe_inbound_results_total{node="node-3",kind="icmp",outcome="ok"}"#), 1.0);
    assert_eq!(value("netdiag_ingest_batches_total "), 2.0);
    assert_eq!(value("netdiag_ingest_results_total "), 11.0);
    assert_eq!(value("netdiag_ingest_duplicate_batches_total "), 1.0);
    assert_eq!(value("netdiag_ingest_invalid_messages_total "), 1.0);
    assert_eq!(value("netdiag_agent_sessions_connected "), 2.0);
    assert_eq!(value(r#"netdiag_agent_connected{node="node-3"}"#), 0.0);
    assert_eq!(value(r#"netdiag_matrix_cells{level="pod",kind="tcp",status="failed"}"#), 1.0);
    assert_eq!(value(r#"netdiag_matrix_cells{level="node",kind="mtu",status="ok"}"#), 0.0);
    assert_eq!(value(r#"netdiag_results_dropped_total{reason="agent_buffer_full"}"#), 0.0);

    let allowed_labels =
        set(&["node", "kind", "outcome", "level", "status", "id", "severity", "reason", "le"]);
    let inv = inventory();
    let pods: Vec<String> = inv.pods.iter().map(|p| p.name.to_string()).collect();
    // The one family that names things: one series per current finding, its culprit as the
    // diagnosis says (bounded by the findings, not the cluster).
    let (_, diagnosis) = get_json(lab.app(), "/api/v1/diagnosis").await;
    let findings: BTreeSet<(String, String, String, String)> = diagnosis["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let culprit = |k: &str| f["culprit"][k].as_str().unwrap_or_default().to_owned();
            (
                f["id"].as_str().unwrap().to_owned(),
                f["severity"].as_str().unwrap().to_owned(),
                culprit("type"),
                culprit("name"),
            )
        })
        .collect();
    let active: BTreeSet<(String, String, String, String)> = samples
        .iter()
        .filter(|(name, _)| name == "netdiag_finding_active")
        .map(|(_, l)| {
            (l["id"].clone(), l["severity"].clone(), l["culprit_type"].clone(), l["culprit"].clone())
        })
        .collect();
    assert!(!findings.is_empty(), "the lab has findings: {diagnosis}");
    assert_eq!(active, findings, "one netdiag_finding_active series per finding");
    for (name, labels) in samples.iter().filter(|(name, _)| name != "netdiag_finding_active") {
        for (k, v) in labels {
            assert!(allowed_labels.contains(k.as_str()), "{name}: label {k} is not from a bounded set");
            assert!(v.parse::<IpAddr>().is_err(), "{name}: {k}={v} is an address");
            assert!(
                !v.contains("10.244.") && !v.contains("172.29.") && !v.contains("192.0.2."),
                "{name}: {k}={v}"
            );
            assert!(!pods.iter().any(|p| v.contains(p.as_str())), "{name}: {k}={v} names a pod");
            assert!(!v.contains("timed out") && !v.contains("NXDOMAIN"), "{name}: {k}={v} is error text");
            assert!(!v.contains("made-up-node"), "{name}: {k}={v} came from an agent");
        }
    }
    assert!(!text.contains(TIMEOUT_DETAIL), "error text never reaches the metrics");
}

// --- health and readiness ---

#[tokio::test]
async fn healthz_always_and_readyz_once_there_is_an_inventory_and_the_agents_reported() {
    let lab = lab();
    let (status, _, body) = get(lab.app(), "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));

    // Two of three nodes' agents have sent results: a fresh collector is still warming up.
    let (status, body) = get_json(lab.app(), "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body["reason"],
        "warming up: the agents of 2 of 3 nodes have sent results; ready at 3, or 60s after start at the latest"
    );
    assert_eq!(
        (
            &body["inventory_nodes"],
            &body["agents_known"],
            &body["agents_connected"],
            &body["agents_reporting"]
        ),
        (&json!(3), &json!(3), &json!(2), &json!(2))
    );

    let mut empty = inventory();
    empty.nodes.clear();
    empty.pods.clear();
    empty.services.clear();
    let state = Arc::new(CollectorState::new(empty, MatrixConfig::default()));
    let app = || app_for(state.clone(), lab.metrics.clone());
    let (status, _, _) = get(app(), "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = get_json(app(), "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ready"], false);
    assert!(body["reason"].as_str().unwrap().contains("inventory"), "{body}");
    state.set_inventory(inventory());
    let (status, body) = get_json(app(), "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["reason"].as_str().unwrap().starts_with("warming up: the agents of 0 of 3"), "{body}");
}

/// A starting collector is ready once the agents of 95 % of its nodes reported, or a minute
/// after start whatever they did (a dead agent must not keep it unready), never without an
/// inventory.
#[test]
fn readiness_waits_for_most_agents_within_a_bound() {
    use super::routes::{WARMUP_LIMIT, readiness};
    let early = std::time::Duration::from_secs(5);
    assert!(readiness(3, 3, early).is_ok());
    assert!(readiness(3, 2, early).is_err());
    assert!(readiness(100, 95, early).is_ok());
    assert!(readiness(100, 94, early).is_err());
    assert!(readiness(5_000, 4_750, early).is_ok(), "a few dead agents in a large cluster");
    assert!(readiness(3, 0, WARMUP_LIMIT).is_ok(), "the wait is bounded");
    let never = readiness(0, 0, WARMUP_LIMIT * 10).unwrap_err();
    assert!(never.contains("inventory"), "{never}");
}

// --- routing ---

#[tokio::test]
async fn unknown_api_paths_are_json_404s_and_wrong_methods_405s() {
    let lab = lab();
    for (method, uri) in [
        (Method::GET, "/api/v1/nope"),
        (Method::GET, "/api/v2/matrix"),
        (Method::GET, "/api"),
        (Method::POST, "/api/v1/probes"),
    ] {
        let (status, headers, body) = send(lab.app(), method.clone(), uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(body["error"].as_str().unwrap().contains(uri), "{body}");
    }
    let (status, _, _) = send(lab.app(), Method::POST, "/api/v1/matrix").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_router_merges_with_a_router_that_has_a_fallback() {
    // The server merges tonic's gRPC router, which has a fallback: ours must not have one.
    let lab = lab();
    let app = lab.app().merge(Router::new().fallback(|| async { StatusCode::IM_A_TEAPOT }));
    let (status, _, _) = get(app.clone(), "/grpc.Service/Method").await;
    assert_eq!(status, StatusCode::IM_A_TEAPOT);
    let (status, _) = get_json(app, "/api/v1/matrix").await;
    assert_eq!(status, StatusCode::OK);
}

// --- UI ---

#[tokio::test]
async fn the_ui_is_served_from_the_binary_with_its_test_hooks() {
    let lab = lab();
    let (status, headers, html) = get(lab.app(), "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"), "{csp}");
    for id in [
        r#"id="matrix""#,
        r#"id="cell-detail""#,
        r#"id="findings""#,
        r#"id="legend""#,
        r#"id="level""#,
        r#"id="kind""#,
        r#"id="namespace""#,
    ] {
        assert!(html.contains(id), "{id}");
    }
    assert!(html.contains(r#"src="/ui/app.js""#) && html.contains(r#"href="/ui/style.css""#));
    let (_, _, same) = get(lab.app(), "/ui/").await;
    assert_eq!(same, html);

    let (status, headers, js) = get(lab.app(), "/ui/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
    for hook in [
        r#"testid: "cell""#,
        r#"testid: "finding""#,
        "/api/v1/matrix?",
        "/api/v1/diagnosis",
        "REFRESH_MS = 2000",
    ] {
        assert!(js.contains(hook), "{hook}");
    }
    assert!(!js.contains("innerHTML"), "API text is never parsed as HTML");
    let (status, headers, css) = get(lab.app(), "/ui/style.css").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    for asset in [&html, &js, &css] {
        assert!(!asset.contains("http://") && !asset.contains("https://"), "no other origin is referenced");
    }
}

// --- POST /api/v1/probe ---

mod probe {
    use std::net::SocketAddr;
    use std::time::Duration;

    use axum::extract::ConnectInfo;
    use netdiag_model::run::{RunDone, RunProgress, RunStep, RunUpdate, StepName, StepStatus};

    use super::*;
    use crate::runs::auth::ApiToken;
    use crate::runs::testkit::{PROMPTLY, Rig};

    const BODY: &str = r#"{"from": "tidb/demo-pd-0", "to": "svc/tidb/demo-pd:2379"}"#;

    fn post(body: &str, from: Option<&str>, token: Option<&str>) -> Request<Body> {
        let mut r = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/probe")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let mut request = r.body(Body::from(body.to_owned())).unwrap();
        if let Some(ip) = from {
            let addr = SocketAddr::new(ip.parse().unwrap(), 40000);
            request.extensions_mut().insert(ConnectInfo(addr));
        }
        request
    }

    async fn call(app: Router, request: Request<Body>) -> (StatusCode, header::HeaderMap, Value) {
        let response = oneshot(app, request).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    fn app(rig: &Rig) -> Router {
        router(rig.state.clone(), Arc::new(CollectorMetrics::new()), rig.dispatcher.clone())
    }

    fn error(body: &Value) -> &str {
        body["error"].as_str().unwrap()
    }

    #[tokio::test]
    async fn the_token_is_required_when_configured() {
        let rig =
            Rig::new(RunsConfig { token: Some(ApiToken::new("s3cret").unwrap()), ..RunsConfig::default() })
                .await;
        let (status, headers, body) = call(app(&rig), post(BODY, Some("127.0.0.1"), None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(error(&body).contains("Authorization: Bearer"), "{body}");
        let (status, _, body) = call(app(&rig), post(BODY, Some("127.0.0.1"), Some("wrong"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(error(&body).contains("does not match"), "{body}");
        // The right token passes authentication, from anywhere; then no agent: 503.
        let (status, _, body) = call(app(&rig), post(BODY, Some("10.1.2.3"), Some("s3cret"))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(error(&body), "the agent on node-1 is not connected; check `netdiag agents`");
    }

    #[tokio::test]
    async fn without_a_token_only_loopback_callers() {
        let rig = Rig::new(RunsConfig::default()).await;
        for from in [Some("10.1.2.3"), None] {
            let (status, _, body) = call(app(&rig), post(BODY, from, None)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{from:?}");
            assert!(error(&body).contains("only from loopback"), "{body}");
        }
        let (status, _, _) = call(app(&rig), post(BODY, Some("::1"), None)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn bad_bodies_unknown_things_and_outside_targets_are_refused_with_the_reason() {
        let rig = Rig::new(RunsConfig::default()).await;
        let cases = [
            (r#"{"from": "tidb/demo-pd-0"}"#, StatusCode::BAD_REQUEST, "to: is required"),
            (
                r#"{"from": "tidb/demo-pd-0", "to": "x/y", "port": 1}"#,
                StatusCode::BAD_REQUEST,
                "port: unknown field",
            ),
            ("not json", StatusCode::BAD_REQUEST, "not JSON"),
            (r#"{"from": "tidb/ghost", "to": "tidb/demo-pd-1"}"#, StatusCode::NOT_FOUND, "tidb/ghost"),
            (r#"{"from": "tidb/demo-pd-0", "to": "svc/tidb/nope:80"}"#, StatusCode::NOT_FOUND, "tidb/nope"),
            (r#"{"from": "node/node-9", "to": "tidb/demo-pd-1"}"#, StatusCode::NOT_FOUND, "node-9"),
            (
                r#"{"from": "tidb/demo-pd-0", "to": "8.8.8.8:53"}"#,
                StatusCode::FORBIDDEN,
                "is outside cluster ranges",
            ),
        ];
        for (body, want, text) in cases {
            let (status, _, answer) = call(app(&rig), post(body, Some("127.0.0.1"), None)).await;
            assert_eq!(status, want, "{body}: {answer}");
            assert!(error(&answer).contains(text), "{body}: {answer}");
        }
        let (_, _, answer) =
            call(app(&rig), post(r#"{"from": 1, "to": "a/b"}"#, Some("127.0.0.1"), None)).await;
        assert_eq!(answer["parameter"], "from", "{answer}");
    }

    #[tokio::test]
    async fn the_call_past_the_rate_limit_is_a_429_with_retry_after() {
        let rig = Rig::new(RunsConfig { per_minute: 2, ..RunsConfig::default() }).await;
        for _ in 0..2 {
            let (status, _, _) = call(app(&rig), post(BODY, Some("127.0.0.1"), None)).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        }
        let (status, headers, body) = call(app(&rig), post(BODY, Some("127.0.0.1"), None)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "30");
        assert!(error(&body).contains("at most 2 a minute"), "{body}");
    }

    #[tokio::test]
    async fn the_concurrency_cap_is_a_429_with_retry_after() {
        let rig = Rig::new(RunsConfig { max_concurrent: 1, ..RunsConfig::default() }).await;
        let mut agent = rig.agent("node-1").await;
        let first = tokio::spawn(oneshot(app(&rig), post(BODY, Some("127.0.0.1"), None)));
        let _ = agent.run_request().await;
        let (status, headers, body) = call(app(&rig), post(BODY, Some("127.0.0.1"), None)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(headers.contains_key(header::RETRY_AFTER));
        first.abort();
    }

    fn step(index: u32) -> RunStep {
        RunStep {
            index,
            name: StepName::new("tcp").unwrap(),
            description: Text::new("TCP connect 10.96.0.20:2379 (service tidb/demo-pd)").unwrap(),
            status: StepStatus::Ok,
            result: None,
            evidence: vec![Text::new("SYN-ACK in 0.2 ms").unwrap()],
            elapsed: Duration::from_micros(2500),
        }
    }

    #[tokio::test]
    async fn a_run_answers_its_steps_verdict_and_end_in_the_contract_shape() {
        let rig = Rig::new(RunsConfig::default()).await;
        let mut agent = rig.agent("node-1").await;
        let body = r#"{"from": "tidb/demo-pd-0", "to": "svc/tidb/demo-pd:2379", "timeout_ms": 500}"#;
        let response = tokio::spawn(call(app(&rig), post(body, Some("127.0.0.1"), None)));
        let run = agent.run_request().await;
        assert_eq!(run.timeout.as_millis(), 500);
        // Finished out of order; answered in the runbook's.
        for index in [1, 0] {
            agent
                .send(RunProgress { run_id: run.run_id.clone(), update: RunUpdate::Step(step(index)) })
                .await;
        }
        agent
            .send(RunProgress { run_id: run.run_id.clone(), update: RunUpdate::Done(RunDone::Completed) })
            .await;
        let (status, headers, body) = tokio::time::timeout(PROMPTLY, response).await.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(keys(&body), set(&["run_id", "from", "to", "steps", "verdict", "done", "elapsed_ms"]));
        assert_eq!(body["run_id"], run.run_id.as_str());
        assert_eq!(body["from"], "tidb/demo-pd-0");
        assert_eq!(body["to"], "svc/tidb/demo-pd:2379");
        assert_eq!(body["done"], json!({"end": "completed", "error": null}));
        let steps = body["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0]["index"], 0);
        assert_eq!(
            steps[1],
            json!({"index": 1, "name": "tcp", "description": "TCP connect 10.96.0.20:2379 (service tidb/demo-pd)",
                   "status": "ok", "elapsed_ms": 2.5, "evidence": ["SYN-ACK in 0.2 ms"], "result": null})
        );
        if !body["verdict"].is_null() {
            assert_eq!(keys(&body["verdict"]), set(&FINDING_FIELDS), "a finding as in /diagnosis");
        }
    }

    #[tokio::test]
    async fn a_caller_hanging_up_cancels_the_run_on_the_agent() {
        let rig = Rig::new(RunsConfig::default()).await;
        let mut agent = rig.agent("node-1").await;
        let pending = tokio::spawn(oneshot(app(&rig), post(BODY, Some("127.0.0.1"), None)));
        let run = agent.run_request().await;
        pending.abort(); // drops the handler's future, as hyper does when the connection closes
        agent.expect_cancel(&run.run_id).await;
    }
}
