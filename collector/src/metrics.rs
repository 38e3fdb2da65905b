//! The collector's Prometheus metrics (`GET /metrics`, text format 0.0.4).
//!
//! Two sources. Fed at ingest by [`CollectorMetrics::observe_batch`] (the sink calls it for
//! every accepted batch): probe results per node (what its agent reported, and what was probed
//! towards it), kind and outcome, and per node RTT histograms. Computed at scrape time from
//! [`CollectorState`] by [`CollectorMetrics::render`]: ingest and drop counters, matrix cells per
//! status, findings, agent sessions.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `netdiag_probe_results_total` | counter | `node` (the reporting agent's), `kind`, `outcome` |
//! | `netdiag_probe_inbound_results_total` | counter | `node` (the probed one), `kind`, `outcome` |
//! | `netdiag_probe_rtt_seconds` | histogram (successful probes) | `node`, `kind` |
//! | `netdiag_ingest_batches_total` | counter | |
//! | `netdiag_ingest_results_total` | counter | |
//! | `netdiag_ingest_duplicate_batches_total` | counter | |
//! | `netdiag_ingest_invalid_messages_total` | counter | |
//! | `netdiag_ingest_inspections_total` | counter | |
//! | `netdiag_results_dropped_total` | counter | `reason`: `agent_buffer_full`, `too_old`, `matrix_full` |
//! | `netdiag_results_unplaced_total` | counter | |
//! | `netdiag_agent_quota_exceeded_total` | counter | `reason`: `foreign_source`, `cells`, `batch_rate` |
//! | `netdiag_matrix_cells` | gauge | `level`, `kind`, `status` (every combination, zeros included) |
//! | `netdiag_findings` | gauge | `id`, `severity` |
//! | `netdiag_finding_active` | gauge (1) | `id`, `severity`, `culprit_type`, `culprit` |
//! | `netdiag_agent_sessions_connected` | gauge | |
//! | `netdiag_agent_connected` | gauge (0/1) | `node` |
//! | `netdiag_agent_results_received_total` | counter | `node` |
//! | `netdiag_agent_results_dropped_total` | counter | `node` |
//! | `netdiag_diagnoses_total` | counter | |
//! | `netdiag_diagnosis_duration_seconds` | gauge (the latest diagnosis) | |
//! | `netdiag_plan_rounds_total` | counter | |
//! | `netdiag_plan_round_duration_seconds` | gauge (the latest round of every agent's plan) | |
//! | `netdiag_plan_round_plans` | gauge (plans the latest round computed) | |
//!
//! Labels come from bounded sets only (STYLE.md §8), and grow with the nodes, never with
//! pairs of them or with pods: `node` is a node the inventory knows (an agent's own, or for
//! inbound results the node a target is on; agents cannot mint series); `kind` and `outcome`
//! are the model's fixed names; finding `id`s come from the localization code. Never a node
//! pair, a pod, an IP address or error text: per-pair detail lives in the API (at 5 000 nodes
//! the per-pair series were 2.5 million, a 279 MB scrape).
//!
//! The one exception is `netdiag_finding_active`: one series per *active* finding, naming its
//! culprit (`culprit_type` one of the model's culprit kinds — `node`, `node_pair`, `pod`,
//! `service`, `dns`, `port`, `path` — and `culprit` its name, e.g. `node-1↔node-2`), so an alert
//! can say what to look at. It is bounded by the findings, not by the cluster: at most
//! [`MAX_ACTIVE_FINDING_SERIES`] series, the most severe first (the diagnosis is sorted that way);
//! the rest are still counted in `netdiag_findings`. A finding without a culprit has both culprit
//! labels empty.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use hashbrown::HashMap;

use netdiag_model::agents::AgentInfo;
use netdiag_model::matrix::{CellStatus, MatrixLevel};
use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::result::{ProbeResult, ResultBatch};
use netdiag_model::{Finding, NodeName, Outcome, Severity, UnixMillis};
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::quota::QuotaReason;
use crate::state::{CollectorState, IngestCounters};
use netdiag_diagnose::matrix::{InventoryIndex, MatrixCounters, NodeDestinationRef, PlacedBatch};

/// The `Content-Type` of [`CollectorMetrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The metric name prefix.
const PREFIX: &str = "netdiag";

/// RTT histogram bounds in seconds: 100 µs to 2.5 s.
const RTT_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// At most this many `netdiag_finding_active` series per scrape (the diagnosis itself holds up
/// to [`netdiag_model::limits::MAX_FINDINGS`]).
pub const MAX_ACTIVE_FINDING_SERIES: usize = 1_000;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    node: String,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    node: String,
    kind: &'static str,
}

/// Bucket counts (the last one `+Inf`), sum and count of RTTs in seconds.
#[derive(Debug, Clone, Default)]
struct RttCounts {
    buckets: [u64; RTT_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl RttCounts {
    fn observe(&mut self, seconds: f64) {
        let i = RTT_BUCKETS.iter().position(|&le| seconds <= le).unwrap_or(RTT_BUCKETS.len());
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn merge(&mut self, other: &RttCounts) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// A classic Prometheus histogram over [`RTT_BUCKETS`] that takes a whole batch's samples under
/// one lock (`prometheus_client`'s `Histogram` takes one per sample).
#[derive(Debug, Clone, Default)]
struct RttHistogram {
    inner: Arc<Mutex<RttCounts>>,
}

impl RttHistogram {
    fn add(&self, counts: &RttCounts) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.merge(counts);
        }
    }
}

impl TypedMetric for RttHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for RttHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let counts = self.inner.lock().map(|c| c.clone()).unwrap_or_default();
        let bounds = RTT_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(counts.buckets).collect();
        encoder.encode_histogram::<NoLabelSet>(counts.sum, counts.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The series handles of one node, so a batch touches each of its series once without
/// formatting or hashing label strings: what its agent reported, and what was probed towards it.
#[derive(Debug, Default)]
struct NodeSeries {
    results: HashMap<(ProbeKind, Outcome), Counter>,
    inbound: HashMap<(ProbeKind, Outcome), Counter>,
    rtt: HashMap<ProbeKind, RttHistogram>,
}

/// The metrics fed at ingest, and the registry they are exposed from.
#[derive(Debug)]
pub struct CollectorMetrics {
    registry: Registry,
    results: Family<ResultLabels, Counter>,
    inbound: Family<ResultLabels, Counter>,
    rtt: Family<KindLabels, RttHistogram>,
    /// Handles into the families per node (bounded like the labels).
    series: Mutex<HashMap<NodeName, NodeSeries>>,
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let results = Family::<ResultLabels, Counter>::default();
        let inbound = Family::<ResultLabels, Counter>::default();
        let rtt = Family::<KindLabels, RttHistogram>::default();
        registry.register(
            "probe_results",
            "Probe results the node's agent reported, by probe kind and outcome (every destination)",
            results.clone(),
        );
        registry.register(
            "probe_inbound_results",
            "Results of probes towards the node (its address or a pod on it) from any agent, by \
             probe kind and outcome",
            inbound.clone(),
        );
        registry.register_with_unit(
            "probe_rtt",
            "Round-trip time of the node's agent's successful probes, by probe kind",
            Unit::Seconds,
            rtt.clone(),
        );
        CollectorMetrics { registry, results, inbound, rtt, series: Mutex::default() }
    }
}

/// The node a result's target is on, when the inventory knows it: `placed` when it is a node,
/// and for a target an agent names as a node, only when the inventory agrees on its address
/// (agents cannot mint series).
fn destination_node<'a>(
    result: &ProbeResult,
    placed: Option<NodeDestinationRef<'a>>,
    index: &'a InventoryIndex,
) -> Option<&'a NodeName> {
    if let Target::Node { node: named, ip, .. } = &result.target {
        return index.node_with_ip(*ip).filter(|known| *known == named);
    }
    match placed {
        Some(NodeDestinationRef::Node(n)) => Some(n),
        _ => None,
    }
}

/// A batch's counts, grouped by series before any lock is taken.
#[derive(Debug, Default)]
struct BatchCounts<'a> {
    results: HashMap<(ProbeKind, Outcome), u64>,
    inbound: HashMap<(&'a NodeName, ProbeKind, Outcome), u64>,
    rtt: HashMap<ProbeKind, RttCounts>,
}

impl CollectorMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a batch `node`'s agent sent (call once per accepted, non-duplicate batch);
    /// `index` places destinations on nodes.
    pub fn observe_batch(&self, node: &NodeName, batch: &ResultBatch, index: &InventoryIndex) {
        self.observe_placed(node, &PlacedBatch::new(batch, index));
    }

    /// [`CollectorMetrics::observe_batch`] with the destinations already placed. The batch is
    /// grouped by series first, so each series is touched once per batch.
    pub fn observe_placed(&self, node: &NodeName, placed: &PlacedBatch<'_>) {
        let mut counts = BatchCounts::default();
        for (result, destination) in placed.iter() {
            let (kind, outcome) = (result.kind, result.outcome);
            *counts.results.entry((kind, outcome)).or_default() += 1;
            if let Some(to) = destination_node(result, destination, placed.index()) {
                *counts.inbound.entry((to, kind, outcome)).or_default() += 1;
            }
            if outcome.is_ok()
                && let Some(rtt) = result.rtt
            {
                counts.rtt.entry(kind).or_default().observe(rtt.as_duration().as_secs_f64());
            }
        }
        let Ok(mut series) = self.series.lock() else { return };
        let labels = |node: &NodeName, kind: ProbeKind, outcome: Outcome| ResultLabels {
            node: node.to_string(),
            kind: kind.as_str(),
            outcome: outcome.as_str(),
        };
        let own = node_series(&mut series, node);
        for ((kind, outcome), n) in counts.results {
            own.results
                .entry((kind, outcome))
                .or_insert_with(|| self.results.get_or_create_owned(&labels(node, kind, outcome)))
                .inc_by(n);
        }
        for (kind, rtt) in counts.rtt {
            own.rtt
                .entry(kind)
                .or_insert_with(|| {
                    self.rtt.get_or_create_owned(&KindLabels { node: node.to_string(), kind: kind.as_str() })
                })
                .add(&rtt);
        }
        for ((to, kind, outcome), n) in counts.inbound {
            node_series(&mut series, to)
                .inbound
                .entry((kind, outcome))
                .or_insert_with(|| self.inbound.get_or_create_owned(&labels(to, kind, outcome)))
                .inc_by(n);
        }
    }

    /// Drops `node`'s series: what its agent reported and what was probed towards it (its node
    /// left the inventory and the agent is gone).
    pub fn forget_node(&self, node: &NodeName) {
        let Ok(mut series) = self.series.lock() else { return };
        let Some(gone) = series.remove(node) else { return };
        let labels = |&(kind, outcome): &(ProbeKind, Outcome)| ResultLabels {
            node: node.to_string(),
            kind: kind.as_str(),
            outcome: outcome.as_str(),
        };
        for key in gone.results.keys() {
            self.results.remove(&labels(key));
        }
        for key in gone.inbound.keys() {
            self.inbound.remove(&labels(key));
        }
        for kind in gone.rtt.keys() {
            self.rtt.remove(&KindLabels { node: node.to_string(), kind: kind.as_str() });
        }
    }

    /// The text exposition: the ingest-fed metrics, then what `state` says at `now`.
    pub fn render(&self, state: &Arc<CollectorState>, now: UnixMillis) -> String {
        self.render_snapshot(StateSnapshot::take(state, now))
    }

    /// The text exposition of the ingest-fed metrics and `snapshot`.
    fn render_snapshot(&self, snapshot: StateSnapshot) -> String {
        let mut scrape = Registry::with_prefix(PREFIX);
        scrape.register_collector(Box::new(snapshot));
        let mut out = String::new();
        let encoded = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .and_then(|()| prometheus_client::encoding::prometheus_text::encode(&mut out, &scrape));
        if encoded.is_err() {
            // Writing to a String cannot fail; should an encoder ever refuse, answer an empty
            // scrape rather than half a family.
            out.clear();
        }
        out
    }
}

/// What the scrape-time metrics read from the state, copied out so no lock is held while
/// encoding.
#[derive(Debug)]
struct StateSnapshot {
    ingest: IngestCounters,
    matrix: MatrixCounters,
    cells: BTreeMap<(MatrixLevel, ProbeKind, CellStatus), u64>,
    findings: BTreeMap<(String, Severity), u64>,
    active: Vec<ActiveFinding>,
    agents: Vec<AgentInfo>,
    work: crate::state::WorkCounters,
    diagnosis_seconds: f64,
}

/// `node`'s series handles, made on first use.
fn node_series<'a>(series: &'a mut HashMap<NodeName, NodeSeries>, node: &NodeName) -> &'a mut NodeSeries {
    series.entry(node.clone()).or_default()
}

/// The labels of one `netdiag_finding_active` series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ActiveFinding {
    id: String,
    severity: Severity,
    culprit_type: &'static str,
    culprit: String,
}

/// `findings`' counts by id and severity, and their `netdiag_finding_active` series: one per
/// distinct label set, in the findings' order (most severe first), at most
/// [`MAX_ACTIVE_FINDING_SERIES`].
fn finding_series(findings: &[Finding]) -> (BTreeMap<(String, Severity), u64>, Vec<ActiveFinding>) {
    let mut counts = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut active = Vec::new();
    for f in findings {
        *counts.entry((f.id.as_str().to_owned(), f.severity)).or_default() += 1;
        if active.len() >= MAX_ACTIVE_FINDING_SERIES {
            continue;
        }
        let series = ActiveFinding {
            id: f.id.as_str().to_owned(),
            severity: f.severity,
            culprit_type: f.culprit.as_ref().map_or("", |c| c.kind.as_str()),
            culprit: f.culprit.as_ref().map_or_else(String::new, |c| c.name.as_str().to_owned()),
        };
        // Two findings may differ only in their verdict: one series for both.
        if seen.insert(series.clone()) {
            active.push(series);
        }
    }
    (counts, active)
}

const STATUSES: [CellStatus; 4] =
    [CellStatus::Ok, CellStatus::Degraded, CellStatus::Failed, CellStatus::Unknown];

impl StateSnapshot {
    fn take(state: &Arc<CollectorState>, now: UnixMillis) -> Self {
        let mut cells = BTreeMap::new();
        for level in [MatrixLevel::Pod, MatrixLevel::Node] {
            for kind in ProbeKind::ALL {
                for status in STATUSES {
                    cells.insert((level, kind, status), 0);
                }
            }
        }
        // Cell counts and findings come from the diagnosis snapshot: a scrape walks no matrix
        // under the locks ingest needs, and never waits for a diagnosis while there is one.
        let diagnosis = state.diagnosis_served(now);
        for (key, n) in &diagnosis.cell_counts {
            *cells.entry(*key).or_default() += n;
        }
        let matrix = state.with_matrix(|m| m.counters());
        let (findings, active) = finding_series(&diagnosis.diagnosis.findings);
        StateSnapshot {
            ingest: state.counters(),
            matrix,
            cells,
            findings,
            active,
            agents: state.agents(now),
            work: state.work(),
            diagnosis_seconds: diagnosis.took.as_secs_f64(),
        }
    }
}

fn level_str(level: MatrixLevel) -> &'static str {
    match level {
        MatrixLevel::Pod => "pod",
        MatrixLevel::Node => "node",
    }
}

fn status_str(status: CellStatus) -> &'static str {
    match status {
        CellStatus::Ok => "ok",
        CellStatus::Degraded => "degraded",
        CellStatus::Failed => "failed",
        CellStatus::Unknown => "unknown",
    }
}

fn severity_str(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// One family of constant samples.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A family with a single unlabelled gauge.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

/// A family with a single unlabelled counter.
fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

impl prometheus_client::collector::Collector for StateSnapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let i = &self.ingest;
        counter(&mut e, "ingest_batches", "Result batches accepted from agents.", i.batches)?;
        counter(&mut e, "ingest_results", "Probe results accepted from agents.", i.results)?;
        counter(
            &mut e,
            "ingest_duplicate_batches",
            "Batches resent after a reconnect that were already stored (counted once).",
            i.duplicates,
        )?;
        counter(&mut e, "ingest_invalid_messages", "Agent messages that failed validation.", i.invalid)?;
        counter(&mut e, "ingest_inspections", "Inspection reports accepted from agents.", i.inspections)?;
        counter(
            &mut e,
            "ingest_inspections_refused",
            "Inspection reports refused: about a source on another node, or past an agent's bound.",
            i.foreign_inspections,
        )?;
        family(
            &mut e,
            "agent_quota_exceeded",
            "Agents' quota overruns by reason: results for a source on another node (dropped), \
             results for new cells past an agent's cell quota (dropped), batches past the batch \
             rate (read later, not lost).",
            MetricType::Counter,
            QuotaReason::ALL
                .map(|reason| ([("reason", reason.as_str())], ConstCounter::new(i.quota_exceeded(reason)))),
        )?;
        family(
            &mut e,
            "results_dropped",
            "Probe results lost: dropped by agents whose buffer was full, older than the matrix \
             window on arrival, or refused by a full matrix level (counted per level).",
            MetricType::Counter,
            [
                ("agent_buffer_full", i.dropped_by_agents),
                ("too_old", self.matrix.too_old),
                ("matrix_full", self.matrix.refused_full),
            ]
            .map(|(reason, n)| ([("reason", reason)], ConstCounter::new(n))),
        )?;
        counter(
            &mut e,
            "results_unplaced",
            "Probe results whose pod target the inventory could not place on a node (pod level only).",
            self.matrix.unplaced,
        )?;
        family(
            &mut e,
            "matrix_cells",
            "Connectivity matrix cells by level, probe kind and status.",
            MetricType::Gauge,
            self.cells.iter().map(|((level, kind, status), n)| {
                let labels =
                    [("level", level_str(*level)), ("kind", kind.as_str()), ("status", status_str(*status))];
                (labels, ConstGauge::new(*n))
            }),
        )?;
        family(
            &mut e,
            "findings",
            "Current findings by id and severity.",
            MetricType::Gauge,
            self.findings.iter().map(|((id, severity), n)| {
                ([("id", id.as_str()), ("severity", severity_str(*severity))], ConstGauge::new(*n))
            }),
        )?;
        family(
            &mut e,
            "finding_active",
            &format!(
                "1 for each current finding, naming its culprit (culprit_type: node, node_pair, pod, \
                 service, dns, port or path); the most severe first, at most \
                 {MAX_ACTIVE_FINDING_SERIES} series."
            ),
            MetricType::Gauge,
            self.active.iter().map(|a| {
                let labels = [
                    ("id", a.id.as_str()),
                    ("severity", severity_str(a.severity)),
                    ("culprit_type", a.culprit_type),
                    ("culprit", a.culprit.as_str()),
                ];
                (labels, ConstGauge::new(1))
            }),
        )?;
        let connected = self.agents.iter().filter(|a| a.connected).count();
        let metric = e.encode_descriptor(
            "agent_sessions_connected",
            "Agents with a live session heard from recently.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(connected as u64).encode(metric)?;
        let per_node =
            |f: fn(&AgentInfo) -> u64| self.agents.iter().map(move |a| ([("node", a.node.as_str())], f(a)));
        family(
            &mut e,
            "agent_connected",
            "1 while the node's agent has a live session and was heard from recently.",
            MetricType::Gauge,
            per_node(|a| u64::from(a.connected)).map(|(l, v)| (l, ConstGauge::new(v))),
        )?;
        family(
            &mut e,
            "agent_results_received",
            "Probe results received from the node's agent.",
            MetricType::Counter,
            per_node(|a| a.results_received).map(|(l, v)| (l, ConstCounter::new(v))),
        )?;
        family(
            &mut e,
            "agent_results_dropped",
            "Probe results the node's agent reported dropping (its buffer was full).",
            MetricType::Counter,
            per_node(|a| a.results_dropped).map(|(l, v)| (l, ConstCounter::new(v))),
        )?;
        let w = &self.work;
        counter(&mut e, "diagnoses", "Diagnoses computed (at most one a second).", w.diagnoses)?;
        gauge(
            &mut e,
            "diagnosis_duration_seconds",
            "How long the latest diagnosis took: copying the matrix and inspections, and localizing.",
            self.diagnosis_seconds,
        )?;
        counter(
            &mut e,
            "plan_rounds",
            "Rounds recomputing every connected agent's probe plan.",
            w.plan_rounds,
        )?;
        gauge(
            &mut e,
            "plan_round_duration_seconds",
            "How long the latest plan round took to compute every connected agent's plan.",
            w.plan_round_seconds,
        )?;
        gauge(
            &mut e,
            "plan_round_plans",
            "Plans the latest plan round computed (one per connected plan-taking agent).",
            w.plan_round_plans as f64,
        )?;
        Ok(())
    }
}

/// `promtool check metrics` (Prometheus' own parser and linter) over an exposition, for the
/// tests of the real renderings: this crate's and the agent's.
#[doc(hidden)]
pub mod promtool {
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Ok(true) when promtool accepts `text`, Ok(false) when promtool is not installed and this
    /// is not CI (the caller skips), Err with promtool's words when it rejects `text` — or when
    /// it is missing and `CI=true`: there, scripts/deps installs it and a missing one must fail.
    pub fn check_metrics(text: &str) -> Result<bool, String> {
        let child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    return Err("promtool is not installed (CI=true; `scripts/deps test` installs it)".into());
                }
                eprintln!("promtool is not installed: not checked (`scripts/deps test` installs it)");
                return Ok(false);
            }
            Err(e) => return Err(format!("promtool: {e}")),
        };
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(text.as_bytes()).map_err(|e| format!("promtool's stdin: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("promtool: {e}"))?;
        if out.status.success() {
            Ok(true)
        } else {
            Err(format!(
                "promtool check metrics: {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use netdiag_diagnose::matrix::MatrixConfig;
    use netdiag_model::inventory::Inventory;
    use netdiag_model::outcome::TcpFailure;
    use netdiag_model::result::{Detail, Rtt, Seq};
    use netdiag_model::text::Text;
    use netdiag_model::{Culprit, CulpritKind, FindingId};

    use super::*;

    const INVENTORY: &str = "version: 1\ncluster: {name: t, domain: cluster.local, pod_cidrs: [10.244.0.0/16], service_cidrs: [10.96.0.0/16], node_cidrs: [172.29.0.0/24], dns_ips: [10.96.0.10], proxy_mode: iptables}\nnodes:\n  - {name: node-1, ips: [172.29.0.11], pod_cidrs: [10.244.1.0/24]}\n  - {name: node-2, ips: [172.29.0.12], pod_cidrs: [10.244.2.0/24]}\npods:\n  - {namespace: tidb, name: pd-0, node: node-1, ips: [10.244.1.2]}\n  - {namespace: tidb, name: pd-1, node: node-2, ips: [10.244.2.2]}\nservices: []\n";

    fn result(target: Target, kind: ProbeKind, outcome: Outcome, rtt_us: Option<u64>) -> ProbeResult {
        ProbeResult {
            source: "tidb/pd-0".parse().unwrap(),
            target,
            kind,
            outcome,
            rtt: rtt_us.map(|us| Rtt::from_micros(us, false).unwrap()),
            at: UnixMillis::new(1_700_000_000_000).unwrap(),
            detail: Detail::default(),
            burst: None,
            http_status: None,
            path_mtu: None,
            answers: vec![],
            nameserver: None,
        }
    }

    /// The value of the sample line that starts with `series`.
    fn value(text: &str, series: &str) -> f64 {
        let line =
            text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("{series}:\n{text}"));
        line.rsplit_once(' ').unwrap().1.parse().unwrap()
    }

    #[test]
    fn a_batch_is_counted_per_series_with_its_rtts_bucketed() {
        let index = InventoryIndex::new(&Inventory::from_yaml(INVENTORY).unwrap());
        let pd1 = || Target::Pod {
            pod: "tidb/pd-1".parse().unwrap(),
            ip: "10.244.2.2".parse().unwrap(),
            port: Some(netdiag_model::Port::new(2379).unwrap()),
        };
        // An agent naming a node the inventory does not have at that address.
        let invented =
            Target::Node { node: "node-9".parse().unwrap(), ip: "172.29.0.12".parse().unwrap(), port: None };
        let timeout = Outcome::Tcp(TcpFailure::Timeout);
        let batch = ResultBatch {
            seq: Seq::FIRST,
            results: vec![
                result(pd1(), ProbeKind::Tcp, Outcome::Ok, Some(100)),
                result(pd1(), ProbeKind::Tcp, timeout, None),
                result(pd1(), ProbeKind::Tcp, Outcome::Ok, Some(250)),
                result(invented, ProbeKind::Icmp, Outcome::Ok, Some(300)),
                result(pd1(), ProbeKind::Tcp, Outcome::Ok, Some(3_000)),
                result(pd1(), ProbeKind::Tcp, timeout, None),
            ],
            dropped: 0,
        };
        let metrics = CollectorMetrics::new();
        let node: NodeName = "node-1".parse().unwrap();
        metrics.observe_batch(&node, &batch, &index);
        metrics.observe_batch(&node, &batch, &index);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        let own = r#"node="node-1",kind="tcp""#;
        assert_eq!(value(&text, &format!(r#"netdiag_probe_results_total{{{own},outcome="ok"}}"#)), 6.0);
        assert_eq!(
            value(&text, &format!(r#"netdiag_probe_results_total{{{own},outcome="tcp_timeout"}}"#)),
            4.0
        );
        // The invented node is counted as node-1's result, towards no node.
        let icmp = r#"netdiag_probe_results_total{node="node-1",kind="icmp",outcome="ok"}"#;
        assert_eq!(value(&text, icmp), 2.0);
        let inbound = r#"netdiag_probe_inbound_results_total{node="node-2",kind="tcp""#;
        assert_eq!(value(&text, &format!(r#"{inbound},outcome="ok"}}"#)), 6.0);
        assert_eq!(value(&text, &format!(r#"{inbound},outcome="tcp_timeout"}}"#)), 4.0);
        assert!(
            !text.contains("node-9") && !text.contains(r#"inbound_results_total{node="node-1""#),
            "{text}"
        );
        // Buckets are cumulative; a value on a bound counts in it.
        for (le, n) in [("0.0001", 2.0), ("0.00025", 4.0), ("0.001", 4.0), ("0.005", 6.0), ("+Inf", 6.0)] {
            assert_eq!(
                value(&text, &format!(r#"netdiag_probe_rtt_seconds_bucket{{le="{le}",{own}}}"#)),
                n,
                "le {le}"
            );
        }
        assert_eq!(value(&text, &format!("netdiag_probe_rtt_seconds_count{{{own}}}")), 6.0);
        let sum = value(&text, &format!("netdiag_probe_rtt_seconds_sum{{{own}}}"));
        assert!((sum - 2.0 * (0.0001 + 0.00025 + 0.003)).abs() < 1e-12, "{sum}");
        metrics.forget_node(&"node-2".parse().unwrap());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        assert!(!text.contains(r#"node="node-2""#), "{text}");
    }

    fn finding(id: &str, severity: Severity, culprit: Option<(CulpritKind, &str)>, verdict: &str) -> Finding {
        Finding {
            id: FindingId::new(id).unwrap(),
            severity,
            verdict: Text::lossy(verdict),
            culprit: culprit.map(|(kind, name)| Culprit { kind, name: Text::lossy(name) }),
            affected: vec![],
            evidence: vec![],
            runbook: None,
            suggestion: Text::default(),
        }
    }

    /// What a scrape of a collector that received a batch and holds `findings` answers.
    fn scrape_with(findings: &[Finding]) -> String {
        let inventory = Inventory::from_yaml(INVENTORY).unwrap();
        let index = InventoryIndex::new(&inventory);
        let state = Arc::new(CollectorState::new(inventory, MatrixConfig::default()));
        let metrics = CollectorMetrics::new();
        let pd1 = Target::Pod {
            pod: "tidb/pd-1".parse().unwrap(),
            ip: "10.244.2.2".parse().unwrap(),
            port: Some(netdiag_model::Port::new(2379).unwrap()),
        };
        let batch = ResultBatch {
            seq: Seq::FIRST,
            results: vec![
                result(pd1.clone(), ProbeKind::Tcp, Outcome::Ok, Some(180)),
                result(pd1, ProbeKind::Tcp, Outcome::Tcp(TcpFailure::Timeout), None),
            ],
            dropped: 0,
        };
        metrics.observe_batch(&"node-1".parse().unwrap(), &batch, &index);
        let mut snapshot = StateSnapshot::take(&state, UnixMillis::new(1_700_000_000_000).unwrap());
        (snapshot.findings, snapshot.active) = finding_series(findings);
        metrics.render_snapshot(snapshot)
    }

    #[test]
    fn an_active_finding_names_its_culprit_with_escaped_labels() {
        let findings = [
            finding(
                "node-pair-broken",
                Severity::Critical,
                Some((CulpritKind::NodePair, "node-1↔node-2")),
                "a",
            ),
            // The same labels with another verdict: one series.
            finding(
                "node-pair-broken",
                Severity::Critical,
                Some((CulpritKind::NodePair, "node-1↔node-2")),
                "b",
            ),
            finding("dns-down", Severity::Critical, Some((CulpritKind::Dns, "cluster DNS")), "c"),
            finding(
                "unexplained-failures",
                Severity::Warning,
                Some((CulpritKind::Path, "a \"b\" c:\\d\ne")),
                "d",
            ),
            finding("agent-quiet", Severity::Info, None, "e"),
        ];
        let text = scrape_with(&findings);
        let active: Vec<&str> = text.lines().filter(|l| l.starts_with("netdiag_finding_active{")).collect();
        assert_eq!(
            active,
            [
                r#"netdiag_finding_active{id="node-pair-broken",severity="critical",culprit_type="node_pair",culprit="node-1↔node-2"} 1"#,
                r#"netdiag_finding_active{id="dns-down",severity="critical",culprit_type="dns",culprit="cluster DNS"} 1"#,
                r#"netdiag_finding_active{id="unexplained-failures",severity="warning",culprit_type="path",culprit="a \"b\" c:\\d\ne"} 1"#,
                r#"netdiag_finding_active{id="agent-quiet",severity="info",culprit_type="",culprit=""} 1"#,
            ],
            "{text}"
        );
        assert_eq!(value(&text, r#"netdiag_findings{id="node-pair-broken",severity="critical"}"#), 2.0);
    }

    #[test]
    fn active_finding_series_are_capped_most_severe_first() {
        let mut findings: Vec<Finding> = (0..MAX_ACTIVE_FINDING_SERIES)
            .map(|i| {
                finding(
                    "node-isolated",
                    Severity::Critical,
                    Some((CulpritKind::Node, &format!("node-{i}"))),
                    "v",
                )
            })
            .collect();
        findings.push(finding("pod-down", Severity::Warning, Some((CulpritKind::Pod, "tidb/pd-0")), "v"));
        let (counts, active) = finding_series(&findings);
        assert_eq!(active.len(), MAX_ACTIVE_FINDING_SERIES);
        assert!(active.iter().all(|a| a.severity == Severity::Critical));
        // Counted all the same.
        assert_eq!(counts.get(&("pod-down".to_owned(), Severity::Warning)), Some(&1));
        assert_eq!(counts.values().sum::<u64>(), MAX_ACTIVE_FINDING_SERIES as u64 + 1);
    }

    /// The exposition as served, with probe counters, RTT histograms and findings with
    /// culprits that need escaping, through Prometheus' own parser and linter.
    #[test]
    fn the_exposition_passes_promtool_check_metrics() {
        let findings = [
            finding(
                "node-pair-broken",
                Severity::Critical,
                Some((CulpritKind::NodePair, "node-1↔node-2")),
                "a",
            ),
            finding(
                "unexplained-failures",
                Severity::Warning,
                Some((CulpritKind::Path, "a \"b\" c:\\d\ne")),
                "d",
            ),
            finding("agent-quiet", Severity::Info, None, "e"),
        ];
        let text = scrape_with(&findings);
        assert!(
            text.contains("netdiag_probe_rtt_seconds_bucket{") && text.contains("netdiag_finding_active{")
        );
        assert!(!text.contains("# EOF"), "OpenMetrics' terminator in a {CONTENT_TYPE} exposition:\n{text}");
        if let Err(e) = promtool::check_metrics(&text) {
            panic!("{e}\n{text}");
        }
    }

    /// The check above can fail: promtool rejects what the Prometheus text parser cannot read,
    /// such as an OpenMetrics counter (`# HELP x`, sample `x_total`: "no help text", the bug
    /// the agent's /metrics had) and a malformed line.
    #[test]
    fn promtool_check_metrics_rejects_bad_expositions() {
        let mut registry = Registry::with_prefix(PREFIX);
        let counter = Counter::<u64>::default();
        counter.inc();
        registry.register("things", "Things", counter);
        let mut openmetrics = String::new();
        prometheus_client::encoding::text::encode(&mut openmetrics, &registry).unwrap();
        match promtool::check_metrics(&openmetrics) {
            Ok(true) => panic!("promtool accepted an OpenMetrics counter:\n{openmetrics}"),
            Ok(false) => return,
            Err(e) => assert!(e.contains("no help text"), "{e}"),
        }
        let malformed = "# HELP netdiag_x X.\n# TYPE netdiag_x gauge\nnetdiag_x{a=\"b} 1\n";
        assert!(promtool::check_metrics(malformed).is_err(), "promtool accepted {malformed:?}");
    }
}
