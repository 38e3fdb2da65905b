//! `netdiag`: the command line. A thin binary over the library crates: parse flags, call in,
//! print for people (tables) or scripts (`-o json`). `netdiag agent` and `netdiag collector`
//! run the daemons (the same code as the `netdiag-agent` and `netdiag-collector` binaries).
//! `kubectl-netdiag` ([`plugin`]) is the same matrix, diagnose, probe and agents commands,
//! reaching the collector through the Kubernetes API server's service proxy.

mod collector_api;
mod demo;
mod junit;
mod kube_proxy;
mod lab_cmd;
mod output;
pub mod plugin;
mod probe_cmd;
mod query_cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "netdiag",
    version,
    about = "Kubernetes network diagnostics: connectivity matrix, failure localization, on-demand probes"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `netdiag_lab=debug`.
    #[arg(long, env = "NETDIAG_CLI_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on the lab: cluster, collector, one agent per node; live matrix and
    /// findings; Ctrl-C tears it all down.
    Demo(demo::DemoArgs),
    /// Build and drive the lab: a sealed Kubernetes-shaped cluster of network namespaces.
    Lab(lab_cmd::LabArgs),
    /// The connectivity matrix from the collector.
    Matrix(Via<query_cmd::MatrixOpts>),
    /// The collector's findings: what is broken, where, and the evidence. Exits 0 when no
    /// finding is at or above --fail-on, 1 when one is, 2 when the diagnosis could not be had.
    Diagnose(Via<query_cmd::DiagnoseOpts>),
    /// The agents the collector knows.
    Agents(Via<query_cmd::AgentsOpts>),
    /// Probe now from a pod or node to a target, step by step as the runbook walks it; exits 0
    /// when no problem is found (or NetworkPolicy denies the path and it fails, as intended), 1
    /// with a verdict, 2 when the run could not be done.
    Probe(Via<probe_cmd::ProbeOpts>),
    /// Run a node agent (as `netdiag-agent`).
    Agent(Box<netdiag_agent::cli::AgentCli>),
    /// Run the collector (as `netdiag-collector`).
    Collector(Box<netdiag_collector::cli::CollectorCli>),
}

/// A command's options with the collector's address (`--collector`).
#[derive(Debug, clap::Args)]
struct Via<T: clap::Args> {
    #[command(flatten)]
    collector: query_cmd::CollectorArg,
    #[command(flatten)]
    opts: T,
}

/// The `netdiag` binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The daemons set up their own logging (and the agent may enter a namespace first).
    let daemon = matches!(cli.command, Command::Agent(_) | Command::Collector(_));
    if !daemon {
        init_logging(&cli.log);
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netdiag: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub(crate) fn init_logging(log: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn run(command: Command) -> Result<std::process::ExitCode> {
    match command {
        Command::Lab(args) => lab_cmd::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Matrix(v) => query_cmd::blocking(query_cmd::matrix(&v.collector.grpc(), v.opts)),
        Command::Diagnose(v) => query_cmd::blocking(query_cmd::diagnose(&v.collector.grpc(), v.opts)),
        Command::Agents(v) => query_cmd::blocking(query_cmd::agents(&v.collector.grpc(), v.opts)),
        Command::Probe(v) => {
            let collector = v.collector.grpc();
            Ok(probe_cmd::run_blocking(|_| async move { Ok(collector) }, v.opts))
        }
        Command::Agent(a) => Ok(netdiag_agent::cli::run(*a)),
        Command::Collector(c) => Ok(netdiag_collector::cli::run(*c)),
    }
}
