//! The agent's own metrics and health endpoints (`/metrics`, `/healthz`, `/readyz`) on a local
//! port. Labels come from bounded sets only (probe kind, outcome); per-pair detail lives in the
//! collector, never in Prometheus series.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use netdiag_model::result::ProbeResult;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::uplink::UplinkStats;

/// The metric name prefix.
const PREFIX: &str = "netdiag_agent";

/// The `Content-Type` of [`AgentMetrics::render`]'s output: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// A collector replica, as given in `--collector` (a bounded set: at most
/// [`crate::config::MAX_COLLECTORS`]).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CollectorLabel {
    collector: String,
}

fn rtt_histogram() -> Histogram {
    // 50 µs to ~3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// Counters and gauges the agent updates as it works.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    probes: Family<ProbeLabels, Counter>,
    rtt: Family<KindLabel, Histogram, fn() -> Histogram>,
    sources: Gauge,
    connected: Family<CollectorLabel, Gauge>,
    buffered: Family<CollectorLabel, Gauge>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let probes = Family::<ProbeLabels, Counter>::default();
        let rtt = Family::<KindLabel, Histogram, fn() -> Histogram>::new_with_constructor(rtt_histogram);
        let sources = Gauge::default();
        let connected = Family::<CollectorLabel, Gauge>::default();
        let buffered = Family::<CollectorLabel, Gauge>::default();
        registry.register("probes", "Probes finished, by kind and outcome", probes.clone());
        registry.register("probe_rtt_seconds", "Round-trip time of successful probes", rtt.clone());
        registry.register("sources", "Namespaces the agent probes from (node and pods)", sources.clone());
        registry.register(
            "uplink_connected",
            "1 while the session to the collector (replica) is up",
            connected.clone(),
        );
        registry.register(
            "buffered_results",
            "Results held until the collector (replica) acknowledges them",
            buffered.clone(),
        );
        Self { registry, probes, rtt, sources, connected, buffered }
    }
}

impl AgentMetrics {
    pub fn observe(&self, r: &ProbeResult) {
        let kind = r.kind.as_str();
        self.probes.get_or_create(&ProbeLabels { kind, outcome: r.outcome.as_str() }).inc();
        if r.outcome.is_ok()
            && let Some(rtt) = r.rtt
        {
            self.rtt.get_or_create(&KindLabel { kind }).observe(rtt.as_duration().as_secs_f64());
        }
    }

    pub fn set_sources(&self, n: usize) {
        self.sources.set(n as i64);
    }

    /// The Prometheus text exposition (format 0.0.4, [`CONTENT_TYPE`]), with each uplink's
    /// numbers as of now (one per collector replica, labelled with its address). Not
    /// OpenMetrics: served as `text/plain`, an OpenMetrics counter (`# HELP x`, sample
    /// `x_total`) reads to the Prometheus text parser as a sample without help text.
    pub fn render(&self, uplinks: &[(String, UplinkStats)]) -> String {
        for (collector, stats) in uplinks {
            let label = CollectorLabel { collector: collector.clone() };
            self.connected.get_or_create(&label).set(i64::from(stats.connected));
            self.buffered.get_or_create(&label).set(stats.held_results as i64);
        }
        // The uplinks' running totals are counters, read from their stats at each scrape.
        let mut totals = Registry::with_prefix(PREFIX);
        totals.register_collector(Box::new(UplinkTotals(uplinks.to_vec())));
        let mut out = String::new();
        let encoded = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .and_then(|()| prometheus_client::encoding::prometheus_text::encode(&mut out, &totals));
        if encoded.is_err() {
            out.clear();
        }
        out
    }
}

/// The uplinks' totals as counters, per collector: `netdiag_agent_dropped_results_total`,
/// `netdiag_agent_batches_sent_total`, `netdiag_agent_acked_results_total`.
#[derive(Debug)]
struct UplinkTotals(Vec<(String, UplinkStats)>);

impl Collector for UplinkTotals {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        type Pick = fn(&UplinkStats) -> u64;
        let totals: [(&str, &str, Pick); 3] = [
            ("dropped_results", "Results dropped because the buffer was full.", |s| s.dropped_results),
            ("batches_sent", "Result batches sent to the collector.", |s| s.batches_sent),
            ("acked_results", "Results the collector acknowledged.", |s| s.acked_results),
        ];
        for (name, help, pick) in totals {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (collector, stats) in &self.0 {
                let label = CollectorLabel { collector: collector.clone() };
                ConstCounter::new(pick(stats)).encode(family.encode_family(&label)?)?;
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: Arc<AgentMetrics>,
    /// Each collector replica's address and its uplink's stats.
    uplinks: Arc<[(String, watch::Receiver<UplinkStats>)]>,
    ready: watch::Receiver<bool>,
    /// Configuration warnings `/readyz` repeats (they do not make the agent unready).
    warnings: Arc<[String]>,
}

/// The `/metrics`, `/healthz` and `/readyz` router; `warnings` are appended to `/readyz`.
pub fn router(
    metrics: Arc<AgentMetrics>,
    uplinks: Vec<(String, watch::Receiver<UplinkStats>)>,
    ready: watch::Receiver<bool>,
    warnings: Vec<String>,
) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(HttpState { metrics, uplinks: uplinks.into(), ready, warnings: warnings.into() })
}

async fn render_metrics(State(s): State<HttpState>) -> impl IntoResponse {
    let stats: Vec<(String, UplinkStats)> =
        s.uplinks.iter().map(|(collector, rx)| (collector.clone(), rx.borrow().clone())).collect();
    ([("content-type", CONTENT_TYPE)], s.metrics.render(&stats))
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    let (status, mut body) = if *s.ready.borrow() {
        (StatusCode::OK, String::from("ready\n"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            String::from("not ready: the inventory or probe sources are not loaded yet\n"),
        )
    };
    for w in s.warnings.iter() {
        body.push_str(&format!("warning: {w}\n"));
    }
    (status, body)
}

/// Serves the router on `addr` until `stop`.
pub async fn serve(addr: SocketAddr, app: Router, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { crate::shutdown::stopped(&mut stop).await })
        .await
}

#[cfg(test)]
mod tests {
    use netdiag_model::outcome::TcpFailure;
    use netdiag_model::probe::{ProbeKind, Target};
    use netdiag_model::result::{Detail, Rtt};
    use netdiag_model::{Outcome, UnixMillis};

    use super::*;

    fn result(kind: ProbeKind, outcome: Outcome, rtt_us: Option<u64>) -> ProbeResult {
        ProbeResult {
            source: "tidb/pd-0".parse().unwrap(),
            target: Target::Node {
                node: "node-2".parse().unwrap(),
                ip: "192.0.2.12".parse().unwrap(),
                port: None,
            },
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

    /// The exposition as served, with probe counters and RTT histograms, in the Prometheus text
    /// format its Content-Type names, through Prometheus' own parser and linter (it used to be
    /// OpenMetrics served as text/plain: `promtool check metrics` exited 3, "no help text").
    #[test]
    fn the_exposition_passes_promtool_check_metrics() {
        let metrics = AgentMetrics::default();
        metrics.set_sources(3);
        metrics.observe(&result(ProbeKind::Icmp, Outcome::Ok, Some(120)));
        metrics.observe(&result(ProbeKind::Tcp, Outcome::Tcp(TcpFailure::Timeout), None));
        let uplink = UplinkStats {
            connected: true,
            connects: 1,
            batches_sent: 4,
            acked_results: 7,
            dropped_results: 1,
            held_results: 2,
        };
        let away = UplinkStats { connected: false, held_results: 9, ..UplinkStats::default() };
        let text = metrics.render(&[("http://c-0:7700".into(), uplink), ("http://c-1:7700".into(), away)]);
        assert!(CONTENT_TYPE.starts_with("text/plain; version=0.0.4"), "{CONTENT_TYPE}");
        for line in [
            "# HELP netdiag_agent_probes_total ",
            "# TYPE netdiag_agent_probes_total counter",
            r#"netdiag_agent_probes_total{kind="icmp",outcome="ok"} 1"#,
            r#"netdiag_agent_probes_total{kind="tcp",outcome="tcp_timeout"} 1"#,
            r#"netdiag_agent_probe_rtt_seconds_count{kind="icmp"} 1"#,
            r#"netdiag_agent_buffered_results{collector="http://c-0:7700"} 2"#,
            r#"netdiag_agent_buffered_results{collector="http://c-1:7700"} 9"#,
            r#"netdiag_agent_uplink_connected{collector="http://c-0:7700"} 1"#,
            r#"netdiag_agent_uplink_connected{collector="http://c-1:7700"} 0"#,
            "# TYPE netdiag_agent_dropped_results_total counter",
            r#"netdiag_agent_dropped_results_total{collector="http://c-0:7700"} 1"#,
            r#"netdiag_agent_batches_sent_total{collector="http://c-0:7700"} 4"#,
            r#"netdiag_agent_acked_results_total{collector="http://c-0:7700"} 7"#,
            r#"netdiag_agent_acked_results_total{collector="http://c-1:7700"} 0"#,
        ] {
            assert!(text.lines().any(|l| l.starts_with(line)), "{line}:\n{text}");
        }
        assert!(!text.contains("# EOF"), "OpenMetrics' terminator in a {CONTENT_TYPE} exposition:\n{text}");
        if let Err(e) = netdiag_collector::metrics::promtool::check_metrics(&text) {
            panic!("{e}\n{text}");
        }
    }

    /// `/readyz` repeats configuration warnings (kubernetes mode ignoring schedule flags) and
    /// stays 200: a warning is for the operator, not a reason to pull the agent.
    #[tokio::test]
    async fn readyz_says_what_the_configuration_ignores() {
        use http_body_util::BodyExt;
        let state = |ready: bool, warnings: Vec<String>| HttpState {
            metrics: Arc::new(AgentMetrics::default()),
            uplinks: vec![("http://c:7700".to_string(), watch::channel(UplinkStats::default()).1)].into(),
            ready: watch::channel(ready).1,
            warnings: warnings.into(),
        };
        let body = |r: axum::response::Response| async move {
            String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
        };
        let warned =
            readyz(State(state(true, vec!["--interval set but ignored".into()]))).await.into_response();
        assert_eq!(warned.status(), StatusCode::OK);
        assert_eq!(body(warned).await, "ready\nwarning: --interval set but ignored\n");
        let quiet = readyz(State(state(true, vec![]))).await.into_response();
        assert_eq!(body(quiet).await, "ready\n");
        let starting = readyz(State(state(false, vec!["x".into()]))).await.into_response();
        assert_eq!(starting.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(body(starting).await.ends_with("warning: x\n"));
    }
}
