//! `netdiag matrix`, `netdiag diagnose`, `netdiag agents`: the collector's views (over its gRPC
//! query service, or its HTTP API through the API server for `kubectl netdiag`: [`Collector`]),
//! as tables for people or JSON for scripts, always in the HTTP API's v1 shapes. For CI,
//! `diagnose` exits 1 when a finding at or above `--fail-on` exists (2 when it could not get the
//! diagnosis) and writes a JUnit report with `--junit`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use netdiag_collector::api::v1 as v1json;
use netdiag_model::matrix::{MatrixLevel, MatrixQuery};
use netdiag_model::probe::ProbeKind;

use crate::collector_api::Collector;
use crate::output::{Format, table};

#[derive(Debug, Clone, Args)]
pub(crate) struct CollectorArg {
    /// The collector's API address (HTTP and gRPC share it).
    #[arg(long, env = "NETDIAG_COLLECTOR_URL", default_value = netdiag_model::config::defaults::COLLECTOR_URL)]
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
pub(crate) struct MatrixOpts {
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
pub(crate) struct DiagnoseOpts {
    /// Exit with status 1 when a finding at or above this severity exists (`never`: only 0 or
    /// 2). The same threshold decides which findings are failures in --junit.
    #[arg(long, value_enum, default_value = "critical")]
    fail_on: SeverityArg,
    /// Also write the diagnosis as a JUnit XML report to this file, for CI: one test case per
    /// finding (a failure when at or above --fail-on), one passing "cluster network" case when
    /// there is none; paths NetworkPolicy denies as intended are no failure.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

#[derive(Debug, Args)]
pub(crate) struct AgentsOpts {
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

impl CollectorArg {
    /// The collector over gRPC at `--collector`.
    pub(crate) fn grpc(&self) -> Collector {
        Collector::Grpc(self.collector.clone())
    }
}

/// Runs a command's future on a runtime of its own.
pub(crate) fn blocking(f: impl std::future::Future<Output = Result<ExitCode>>) -> Result<ExitCode> {
    runtime()?.block_on(f)
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn ms(d: Option<f64>) -> String {
    d.map(|d| format!("{d:.2}")).unwrap_or_else(|| "-".into())
}

/// The API's name for an enum value (`node_pair`, `degraded`, …): what the tables print.
pub(crate) fn name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".to_owned(),
    }
}

pub(crate) fn render_matrix(m: &v1json::MatrixResponse, problems_only: bool) -> String {
    let rows: Vec<Vec<String>> = m
        .cells
        .iter()
        .filter(|c| !problems_only || c.status != v1json::Status::Ok)
        .map(|c| {
            vec![
                c.source.clone(),
                c.destination.clone(),
                name(&c.kind),
                name(&c.status),
                format!("{:.0}%", c.loss_ratio * 100.0),
                ms(c.rtt_p50_ms),
                ms(c.rtt_p99_ms),
                c.samples.to_string(),
                c.last_error.as_deref().unwrap_or_default().chars().take(80).collect(),
            ]
        })
        .collect();
    table(
        &["SOURCE", "DESTINATION", "KIND", "STATUS", "LOSS", "P50 MS", "P99 MS", "SAMPLES", "LAST ERROR"],
        &rows,
    )
}

pub(crate) fn render_diagnosis(d: &v1json::DiagnosisResponse) -> String {
    let mut out = String::new();
    if d.findings.is_empty() {
        out.push_str(if d.denied_by_policy_total == 0 {
            "no findings: every probed path works\n"
        } else {
            "no findings: every probed path works, or NetworkPolicy denies it as intended\n"
        });
    }
    for f in &d.findings {
        out.push_str(&format!("[{}] {} ({})\n", name(&f.severity), f.verdict, f.id));
        if let Some(c) = &f.culprit {
            out.push_str(&format!("  culprit:    {} {}\n", name(&c.kind), c.name));
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

fn render_agents(agents: &[v1json::Agent]) -> String {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.node.clone(),
                if a.connected { "connected".into() } else { "disconnected".into() },
                a.agent_version.clone(),
                a.pods.to_string(),
                a.results_received.to_string(),
                a.results_dropped.to_string(),
            ]
        })
        .collect();
    table(&["NODE", "SESSION", "VERSION", "PODS", "RESULTS", "DROPPED"], &rows)
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) async fn matrix(collector: &Collector, opts: MatrixOpts) -> Result<ExitCode> {
    let query = MatrixQuery {
        level: match opts.level {
            LevelArg::Pod => MatrixLevel::Pod,
            LevelArg::Node => MatrixLevel::Node,
        },
        kind: match opts.kind {
            KindArg::All => None,
            KindArg::Icmp => Some(ProbeKind::Icmp),
            KindArg::Tcp => Some(ProbeKind::Tcp),
            KindArg::Dns => Some(ProbeKind::Dns),
            KindArg::Http => Some(ProbeKind::Http),
            KindArg::Mtu => Some(ProbeKind::Mtu),
        },
    };
    let matrix = collector.matrix(query).await?;
    match opts.output {
        // The HTTP API's /api/v1/matrix.
        Format::Json => print_json(&matrix)?,
        Format::Table => print!("{}", render_matrix(&matrix, opts.problems)),
    }
    Ok(ExitCode::SUCCESS)
}

/// The exit status `diagnose` ends with when the diagnosis could not be had.
pub(crate) const EXIT_NOT_DONE: u8 = 2;

/// Whether a finding of `severity` fails the check at `fail_on`.
pub(crate) fn fails(fail_on: SeverityArg, severity: v1json::Severity) -> bool {
    let threshold = match fail_on {
        SeverityArg::Info => v1json::Severity::Info,
        SeverityArg::Warning => v1json::Severity::Warning,
        SeverityArg::Critical => v1json::Severity::Critical,
        SeverityArg::Never => return false,
    };
    severity >= threshold
}

pub(crate) async fn diagnose(collector: &Collector, opts: DiagnoseOpts) -> Result<ExitCode> {
    let diagnosis = match collector.diagnosis().await {
        Ok(d) => d,
        Err(e) => return diagnose_not_done(&e, &opts),
    };
    match opts.output {
        Format::Json => print_json(&diagnosis)?,
        Format::Table => print!("{}", render_diagnosis(&diagnosis)),
    }
    if let Some(path) = &opts.junit {
        crate::junit::write(path, &crate::junit::diagnosis(&diagnosis, |s| fails(opts.fail_on, s)))?;
    }
    let fail = diagnosis.findings.iter().any(|f| fails(opts.fail_on, f.severity));
    Ok(if fail { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `diagnose` when the diagnosis could not be had: says why, writes the JUnit report as one
/// error, exits 2.
pub(crate) fn diagnose_not_done(e: &anyhow::Error, opts: &DiagnoseOpts) -> Result<ExitCode> {
    eprintln!("netdiag: {e:#}");
    if let Some(path) = &opts.junit {
        let report = crate::junit::not_done("netdiag diagnose", "cluster network", &format!("{e:#}"));
        crate::junit::write(path, &report)?;
    }
    Ok(ExitCode::from(EXIT_NOT_DONE))
}

pub(crate) async fn agents(collector: &Collector, opts: AgentsOpts) -> Result<ExitCode> {
    let agents = collector.agents().await?;
    match opts.output {
        Format::Json => print_json(&agents)?,
        Format::Table => print!("{}", render_agents(&agents.agents)),
    }
    Ok(ExitCode::SUCCESS)
}
