//! `netdiag matrix`, `netdiag diagnose`, `netdiag agents`: the collector's views over its gRPC
//! query service, as tables for people or JSON for scripts. `diagnose` exits non-zero when a
//! finding at or above `--fail-on` exists, for CI use.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use netdiag_collector::api::v1 as v1json;
use netdiag_model::agents::AgentInfo;
use netdiag_model::finding::{Diagnosis, Severity};
use netdiag_model::matrix::{CellStatus, MatrixLevel, MatrixQuery, MatrixSnapshot};
use netdiag_model::probe::ProbeKind;
use netdiag_proto::v1;
use netdiag_proto::v1::query_client::QueryClient;

use crate::output::{Format, table};

#[derive(Debug, Clone, Args)]
pub(crate) struct CollectorArg {
    /// The collector's API address (HTTP and gRPC share it).
    #[arg(long, env = "NETDIAG_COLLECTOR_URL", default_value = "http://127.0.0.1:7600")]
    pub(crate) collector: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LevelArg {
    Pod,
    Node,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum KindArg {
    All,
    Icmp,
    Tcp,
    Dns,
    Http,
    Mtu,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SeverityArg {
    Info,
    Warning,
    Critical,
    /// Never fail.
    Never,
}

#[derive(Debug, Args)]
pub(crate) struct MatrixArgs {
    #[command(flatten)]
    collector: CollectorArg,
    #[arg(long, value_enum, default_value = "pod")]
    level: LevelArg,
    #[arg(long, value_enum, default_value = "all")]
    kind: KindArg,
    /// Show only cells that are not ok.
    #[arg(long)]
    problems: bool,
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct DiagnoseArgs {
    #[command(flatten)]
    collector: CollectorArg,
    /// Exit with status 1 when a finding at or above this severity exists.
    #[arg(long, value_enum, default_value = "critical")]
    fail_on: SeverityArg,
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct AgentsArgs {
    #[command(flatten)]
    collector: CollectorArg,
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

async fn client(c: &CollectorArg) -> Result<QueryClient<tonic::transport::Channel>> {
    QueryClient::connect(c.collector.clone()).await.with_context(|| {
        format!(
            "cannot reach the collector at {} (is `netdiag demo` or a collector running? set --collector)",
            c.collector
        )
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn ms(d: Option<std::time::Duration>) -> String {
    d.map(|d| format!("{:.2}", d.as_secs_f64() * 1000.0)).unwrap_or_else(|| "-".into())
}

pub(crate) fn render_matrix(m: &MatrixSnapshot, problems_only: bool) -> String {
    let rows: Vec<Vec<String>> = m
        .cells
        .iter()
        .filter(|c| !problems_only || c.status != CellStatus::Ok)
        .map(|c| {
            vec![
                c.source.to_string(),
                c.destination.to_string(),
                c.kind.to_string(),
                c.status.to_string(),
                format!("{:.0}%", c.loss_ratio.get() * 100.0),
                ms(c.rtt_p50),
                ms(c.rtt_p99),
                c.samples.to_string(),
                c.last_error.to_string().chars().take(80).collect(),
            ]
        })
        .collect();
    table(
        &["SOURCE", "DESTINATION", "KIND", "STATUS", "LOSS", "P50 MS", "P99 MS", "SAMPLES", "LAST ERROR"],
        &rows,
    )
}

pub(crate) fn render_diagnosis(d: &Diagnosis) -> String {
    let mut out = String::new();
    if d.findings.is_empty() {
        out.push_str(if d.denied_by_policy_total == 0 {
            "no findings: every probed path works\n"
        } else {
            "no findings: every probed path works, or NetworkPolicy denies it as intended\n"
        });
    }
    for f in &d.findings {
        out.push_str(&format!("[{}] {} ({})\n", f.severity, f.verdict, f.id));
        if let Some(c) = &f.culprit {
            out.push_str(&format!("  culprit:    {} {}\n", c.kind, c.name));
        }
        for a in f.affected.iter().take(5) {
            out.push_str(&format!("  affected:   {a}\n"));
        }
        if f.affected.len() > 5 {
            out.push_str(&format!("  affected:   … and {} more\n", f.affected.len() - 5));
        }
        for e in &f.evidence {
            out.push_str(&format!("  evidence:   {e}\n"));
        }
        if let Some(r) = &f.runbook {
            out.push_str(&format!("  runbook:    §{r}\n"));
        }
        if !f.suggestion.is_empty() {
            out.push_str(&format!("  suggestion: {}\n", f.suggestion));
        }
    }
    if d.denied_by_policy_total > 0 {
        out.push_str(&format!(
            "\ndenied by NetworkPolicy, as intended (not findings): {} paths\n",
            d.denied_by_policy_total
        ));
        for p in d.denied_by_policy.iter().take(10) {
            out.push_str(&format!("  {}: {}\n", p.path, p.reason));
        }
        if d.denied_by_policy_total > 10 {
            out.push_str(&format!("  … and {} more (`-o json` lists them)\n", d.denied_by_policy_total - 10));
        }
    }
    out
}

fn render_agents(agents: &[AgentInfo]) -> String {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.node.to_string(),
                if a.connected { "connected".into() } else { "disconnected".into() },
                a.agent_version.to_string(),
                a.pods.to_string(),
                a.results_received.to_string(),
                a.results_dropped.to_string(),
            ]
        })
        .collect();
    table(&["NODE", "SESSION", "VERSION", "PODS", "RESULTS", "DROPPED"], &rows)
}

pub(crate) fn matrix(args: MatrixArgs) -> Result<ExitCode> {
    let query = MatrixQuery {
        level: match args.level {
            LevelArg::Pod => MatrixLevel::Pod,
            LevelArg::Node => MatrixLevel::Node,
        },
        kind: match args.kind {
            KindArg::All => None,
            KindArg::Icmp => Some(ProbeKind::Icmp),
            KindArg::Tcp => Some(ProbeKind::Tcp),
            KindArg::Dns => Some(ProbeKind::Dns),
            KindArg::Http => Some(ProbeKind::Http),
            KindArg::Mtu => Some(ProbeKind::Mtu),
        },
    };
    let snapshot = runtime()?.block_on(async {
        let mut c = client(&args.collector).await?;
        let resp = c.get_matrix(v1::MatrixRequest::from(query)).await.context("matrix query failed")?;
        MatrixSnapshot::try_from(resp.into_inner()).context("the collector sent an invalid matrix")
    })?;
    match args.output {
        // The same JSON as the HTTP API's /api/v1/matrix.
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&v1json::MatrixResponse::new(query.level, query.kind, snapshot))?
        ),
        Format::Table => print!("{}", render_matrix(&snapshot, args.problems)),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn diagnose(args: DiagnoseArgs) -> Result<ExitCode> {
    let diagnosis = runtime()?.block_on(async {
        let mut c = client(&args.collector).await?;
        let resp = c.get_diagnosis(v1::DiagnosisRequest {}).await.context("diagnosis query failed")?;
        Diagnosis::try_from(resp.into_inner()).context("the collector sent an invalid diagnosis")
    })?;
    match args.output {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(&v1json::DiagnosisResponse::from(diagnosis.clone()))?)
        }
        Format::Table => print!("{}", render_diagnosis(&diagnosis)),
    }
    let threshold = match args.fail_on {
        SeverityArg::Info => Some(Severity::Info),
        SeverityArg::Warning => Some(Severity::Warning),
        SeverityArg::Critical => Some(Severity::Critical),
        SeverityArg::Never => None,
    };
    let fail = threshold.is_some_and(|t| diagnosis.findings.iter().any(|f| f.severity >= t));
    Ok(if fail { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

pub(crate) fn agents(args: AgentsArgs) -> Result<ExitCode> {
    let agents = runtime()?.block_on(async {
        let mut c = client(&args.collector).await?;
        let resp = c.list_agents(v1::ListAgentsRequest {}).await.context("agents query failed")?;
        Vec::<AgentInfo>::try_from(resp.into_inner()).context("the collector sent an invalid agent list")
    })?;
    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&v1json::AgentsResponse::new(
                agents,
                netdiag_collector::state::now()
            ))?
        ),
        Format::Table => print!("{}", render_agents(&agents)),
    }
    Ok(ExitCode::SUCCESS)
}
