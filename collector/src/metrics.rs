//! The collector's Prometheus metrics (`GET /metrics`, text format 0.0.4).
//!
//! Two sources. Fed at ingest by [`CollectorMetrics::observe_batch`] (the sink calls it for
//! every accepted batch): probe results per node pair, kind and outcome, and per node pair RTT
//! histograms. Computed at scrape time from [`CollectorState`] by [`CollectorMetrics::render`]:
//! ingest and drop counters, matrix cells per status, findings, agent sessions.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `netdiag_probe_results_total` | counter | `node`, `node_pair`, `kind`, `outcome` |
//! | `netdiag_probe_rtt_seconds` | histogram (successful probes) | `node`, `node_pair`, `kind` |
//! | `netdiag_ingest_batches_total` | counter | |
//! | `netdiag_ingest_results_total` | counter | |
//! | `netdiag_ingest_duplicate_batches_total` | counter | |
//! | `netdiag_ingest_invalid_messages_total` | counter | |
//! | `netdiag_ingest_inspections_total` | counter | |
//! | `netdiag_results_dropped_total` | counter | `reason`: `agent_buffer_full`, `too_old`, `matrix_full` |
//! | `netdiag_results_unplaced_total` | counter | |
//! | `netdiag_matrix_cells` | gauge | `level`, `kind`, `status` (every combination, zeros included) |
//! | `netdiag_findings` | gauge | `id`, `severity` |
//! | `netdiag_agent_sessions_connected` | gauge | |
//! | `netdiag_agent_connected` | gauge (0/1) | `node` |
//! | `netdiag_agent_results_received_total` | counter | `node` |
//! | `netdiag_agent_results_dropped_total` | counter | `node` |
//!
//! Labels come from bounded sets only (STYLE.md §8): `node` is the reporting agent's node,
//! `node_pair` is `<node>-><destination>` where the destination is a node the inventory knows,
//! `svc/*`, `dns/*`, `external/*` or `unknown` (a target the inventory cannot place, or a node
//! name an agent reported that the inventory does not have: agents cannot mint series);
//! `kind` and `outcome` are the model's fixed names; finding `id`s come from the localization
//! code. Never a pod, an IP address or error text: per-pair detail lives in the API.

use std::collections::BTreeMap;
use std::fmt;

use netdiag_model::agents::AgentInfo;
use netdiag_model::matrix::{CellStatus, MatrixLevel};
use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::result::{ProbeResult, ResultBatch};
use netdiag_model::{NodeName, Severity, UnixMillis};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::matrix::{InventoryIndex, MatrixCounters, NodeDestination, NodeKey};
use crate::state::{CollectorState, IngestCounters};

/// The `Content-Type` of [`CollectorMetrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The metric name prefix.
const PREFIX: &str = "netdiag";

/// RTT histogram bounds in seconds: 100 µs to 2.5 s.
const RTT_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The destination label of results whose target the inventory cannot place.
const UNKNOWN: &str = "unknown";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    node: String,
    node_pair: String,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PairLabels {
    node: String,
    node_pair: String,
    kind: &'static str,
}

fn rtt_histogram() -> Histogram {
    Histogram::new(RTT_BUCKETS)
}

/// The metrics fed at ingest, and the registry they are exposed from.
#[derive(Debug)]
pub struct CollectorMetrics {
    registry: Registry,
    results: Family<ResultLabels, Counter>,
    rtt: Family<PairLabels, Histogram, fn() -> Histogram>,
}

impl Default for CollectorMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let results = Family::<ResultLabels, Counter>::default();
        let rtt = Family::<PairLabels, Histogram, fn() -> Histogram>::new_with_constructor(rtt_histogram);
        registry.register(
            "probe_results",
            "Probe results received, by reporting node, node pair, probe kind and outcome",
            results.clone(),
        );
        registry.register_with_unit(
            "probe_rtt",
            "Round-trip time of successful probes, by reporting node, node pair and probe kind",
            Unit::Seconds,
            rtt.clone(),
        );
        CollectorMetrics { registry, results, rtt }
    }
}

/// The node-level destination of a result as a bounded label: a node the inventory knows, a
/// pseudo-destination (`svc/*`, `dns/*`, `external/*`) or [`UNKNOWN`].
fn destination_label(node: &NodeName, result: &ProbeResult, index: &InventoryIndex) -> String {
    if let Target::Node { node: named, ip, .. } = &result.target {
        // The only destination an agent names itself: keep it only if the inventory agrees.
        return match index.node_with_ip(*ip) {
            Some(known) if known == named => known.to_string(),
            _ => UNKNOWN.to_owned(),
        };
    }
    match NodeKey::of(node, result, index).map(|k| k.destination) {
        Some(NodeDestination::Node(n)) => n.to_string(),
        Some(pseudo) => pseudo.to_string(),
        None => UNKNOWN.to_owned(),
    }
}

impl CollectorMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a batch `node`'s agent sent (call once per accepted, non-duplicate batch);
    /// `index` places destinations on nodes.
    pub fn observe_batch(&self, node: &NodeName, batch: &ResultBatch, index: &InventoryIndex) {
        for result in &batch.results {
            self.observe(node, result, index);
        }
    }

    fn observe(&self, node: &NodeName, result: &ProbeResult, index: &InventoryIndex) {
        let pair = format!("{node}->{}", destination_label(node, result, index));
        let kind = result.kind.as_str();
        let labels =
            ResultLabels { node: node.to_string(), node_pair: pair, kind, outcome: result.outcome.as_str() };
        self.results.get_or_create(&labels).inc();
        if result.outcome.is_ok()
            && let Some(rtt) = result.rtt
        {
            let labels = PairLabels { node: labels.node, node_pair: labels.node_pair, kind };
            self.rtt.get_or_create(&labels).observe(rtt.as_duration().as_secs_f64());
        }
    }

    /// The text exposition: the ingest-fed metrics, then what `state` says at `now`.
    pub fn render(&self, state: &CollectorState, now: UnixMillis) -> String {
        let snapshot = StateSnapshot::take(state, now);
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
    agents: Vec<AgentInfo>,
}

const STATUSES: [CellStatus; 4] =
    [CellStatus::Ok, CellStatus::Degraded, CellStatus::Failed, CellStatus::Unknown];

impl StateSnapshot {
    fn take(state: &CollectorState, now: UnixMillis) -> Self {
        let mut cells = BTreeMap::new();
        for level in [MatrixLevel::Pod, MatrixLevel::Node] {
            for kind in ProbeKind::ALL {
                for status in STATUSES {
                    cells.insert((level, kind, status), 0);
                }
            }
        }
        let matrix = state.with_matrix(|m| {
            for (key, stats) in m.pod_cells(now) {
                *cells.entry((MatrixLevel::Pod, key.kind, stats.status)).or_default() += 1;
            }
            for (key, stats) in m.node_cells(now) {
                *cells.entry((MatrixLevel::Node, key.kind, stats.status)).or_default() += 1;
            }
            m.counters()
        });
        let mut findings = BTreeMap::new();
        for f in state.diagnosis(now).findings {
            *findings.entry((f.id.as_str().to_owned(), f.severity)).or_default() += 1;
        }
        StateSnapshot { ingest: state.counters(), matrix, cells, findings, agents: state.agents(now) }
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
        Ok(())
    }
}
