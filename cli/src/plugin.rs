//! `kubectl netdiag matrix|diagnose|probe|agents`: the `netdiag` commands of the same names,
//! reaching the collector's HTTP API through the Kubernetes API server's service proxy with the
//! user's kubeconfig ([`crate::kube_proxy`]): no port-forward, and RBAC on `services/proxy` in
//! the collector's namespace decides who may read (`get`) and who may probe (`create`).
//!
//! kubectl runs the `kubectl-netdiag` binary found on PATH with the arguments after `netdiag`
//! (and its environment, `KUBECONFIG` included); flags given before `netdiag` stay kubectl's,
//! so `--kubeconfig`, `--context` and `-n` go after it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::collector_api::Collector;
use crate::kube_proxy::{KubeProxy, ProxyTarget};
use crate::{probe_cmd, query_cmd};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-netdiag",
    bin_name = "kubectl netdiag",
    version,
    about = "netdiag through the Kubernetes API server: the connectivity matrix, the diagnosis, on-demand probes and the agents, from the collector behind its Service",
    after_help = "Exit status: matrix and agents 0, or 1 on error; diagnose 0 when no finding is at or above \
                  --fail-on, 1 when one is, 2 when the diagnosis could not be had; probe 0 no problem \
                  found, 1 a verdict, 2 the run could not be done (refused, RBAC, collector unreachable)."
)]
struct PluginCli {
    /// The kubeconfig file (default: KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, global = true)]
    context: Option<String>,
    /// The collector's namespace.
    #[arg(short = 'n', long, global = true, env = "NETDIAG_NAMESPACE", default_value = "netdiag")]
    namespace: String,
    /// The collector's Service (the chart's and the kustomize base's name).
    #[arg(long, global = true, env = "NETDIAG_SERVICE", default_value = "netdiag-collector")]
    service: String,
    /// The Service port of the collector's HTTP API: its name or number.
    #[arg(long, global = true, default_value = "http")]
    service_port: String,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, global = true, env = "NETDIAG_CLI_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// The connectivity matrix from the collector.
    Matrix(query_cmd::MatrixOpts),
    /// The collector's findings: what is broken, where, and the evidence.
    Diagnose(query_cmd::DiagnoseOpts),
    /// Probe now from a pod or node to a target, step by step as the runbook walks it (needs
    /// `create` on services/proxy, and the collector's API token when it has one).
    Probe(probe_cmd::ProbeOpts),
    /// The agents the collector knows.
    Agents(query_cmd::AgentsOpts),
}

/// The `kubectl-netdiag` binary.
pub fn main() -> ExitCode {
    let cli = PluginCli::parse();
    crate::init_logging(&cli.log);
    let target = ProxyTarget {
        kubeconfig: cli.kubeconfig,
        context: cli.context,
        namespace: cli.namespace,
        service: cli.service,
        port: cli.service_port,
    };
    let connect =
        |token| async move { Ok(Collector::Proxy(Box::new(KubeProxy::connect(target, token).await?))) };
    let result = match cli.command {
        PluginCommand::Probe(opts) => return probe_cmd::run_blocking(connect, opts),
        PluginCommand::Matrix(opts) => {
            query_cmd::blocking(async move { query_cmd::matrix(&connect(None).await?, opts).await })
        }
        PluginCommand::Diagnose(opts) => query_cmd::blocking(async move {
            match connect(None).await {
                Ok(c) => query_cmd::diagnose(&c, opts).await,
                Err(e) => query_cmd::diagnose_not_done(&e, &opts),
            }
        }),
        PluginCommand::Agents(opts) => {
            query_cmd::blocking(async move { query_cmd::agents(&connect(None).await?, opts).await })
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kubectl-netdiag: {e:#}");
            ExitCode::FAILURE
        }
    }
}
