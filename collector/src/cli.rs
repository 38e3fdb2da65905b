//! The collector's command line, shared by the `netdiag-collector` binary and `netdiag
//! collector`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ipnet::IpNet;
use netdiag_model::config::{ConfigDuration, defaults};
use netdiag_model::inventory::Inventory;
use socket2::{Domain, Socket, Type};

use crate::agents_tls::AgentsTlsArgs;
use crate::api::AllowedHost;
use crate::kube_inventory::{self, KubeArgs};
use crate::runs::auth::ApiToken;
use crate::runs::config::{DEFAULT_MAX_CONCURRENT, DEFAULT_PER_MINUTE, RunsConfig};
use crate::server::InventorySource;
use crate::state::CollectorState;
use netdiag_diagnose::matrix::MatrixConfig;

/// `netdiag-collector` / `netdiag collector` arguments.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "netdiag-collector",
    version,
    about = "netdiag collector: connectivity matrix, diagnosis, API and UI"
)]
pub struct CollectorCli {
    /// Inventory source: file:<path> (what `netdiag lab` writes, re-read when it changes) or
    /// kubernetes (watch the API server; see --kubeconfig and the cluster flags below).
    #[arg(long, env = "NETDIAG_INVENTORY")]
    pub inventory: String,
    /// Where agents connect (gRPC session service).
    #[arg(long, env = "NETDIAG_AGENTS_LISTEN", default_value = defaults::COLLECTOR_AGENTS)]
    pub agents_listen: SocketAddr,
    /// Create the agents' listener inside this network namespace (the lab's underlay).
    #[arg(long, env = "NETDIAG_AGENTS_NETNS")]
    pub agents_netns: Option<PathBuf>,
    /// HTTP API, UI, /metrics and the CLI's gRPC queries.
    #[arg(long, env = "NETDIAG_HTTP", default_value = defaults::COLLECTOR_HTTP)]
    pub http: SocketAddr,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "NETDIAG_LOG", default_value = "info")]
    pub log: String,
    /// A file holding the token on-demand runs must present (`Authorization: Bearer …`); without
    /// it the token is NETDIAG_API_TOKEN; without either, runs are taken only from loopback.
    #[arg(long, env = "NETDIAG_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// A host name (or address) the HTTP API, UI and CLI queries answer to besides localhost,
    /// loopback addresses and the listener's own address: the name of an Ingress or Service
    /// clients use. Requests naming another host are refused (DNS rebinding) unless they carry
    /// the API token. Repeat the flag, or comma-separate in the env.
    #[arg(
        long = "api-allowed-host",
        env = "NETDIAG_API_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub api_allowed_hosts: Vec<AllowedHost>,
    /// A range on-demand runs may target besides the cluster's pod, service and node ranges
    /// (CIDR; repeat the flag, or comma-separate in the env).
    #[arg(long = "run-allow", env = "NETDIAG_RUN_ALLOW", value_delimiter = ',', value_name = "CIDR")]
    pub run_allow: Vec<IpNet>,
    /// The hard limit on one on-demand run (500ms, 30s, 2m; at most 10m).
    #[arg(long, env = "NETDIAG_RUN_TIMEOUT", default_value = "30s", value_parser = parse_run_timeout)]
    pub run_timeout: Duration,
    /// On-demand runs in flight at once, over every caller.
    #[arg(long, env = "NETDIAG_MAX_CONCURRENT_RUNS", default_value_t = DEFAULT_MAX_CONCURRENT)]
    pub max_concurrent_runs: usize,
    /// On-demand runs a minute per caller address (also the burst).
    #[arg(long, env = "NETDIAG_RUNS_PER_MINUTE", default_value_t = DEFAULT_PER_MINUTE)]
    pub runs_per_minute: u32,
    #[command(flatten)]
    pub agents_tls: AgentsTlsArgs,
    #[command(flatten)]
    pub plans: crate::plans::PlanArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub kube_report: crate::kube_report::KubeReportArgs,
    #[command(flatten)]
    pub agent_identity: crate::agent_token::AgentIdentityArgs,
}

/// A run limit in the model's duration dialect (`500ms`, `30s`, `2m`), from 100 ms to 10 minutes.
fn parse_run_timeout(s: &str) -> Result<Duration, String> {
    let d = Duration::from(s.parse::<ConfigDuration>().map_err(|e| e.to_string())?);
    if d < Duration::from_millis(100) || d > netdiag_model::limits::MAX_RUN_TIMEOUT {
        return Err(format!("{s:?} is outside 100ms to 10m"));
    }
    Ok(d)
}

impl CollectorCli {
    /// The on-demand run settings; the token from --api-token-file, else NETDIAG_API_TOKEN.
    pub fn runs_config(&self) -> anyhow::Result<RunsConfig> {
        let token = ApiToken::from_file_or_env(self.api_token_file.as_deref())?;
        Ok(RunsConfig {
            token,
            allow: self.run_allow.clone(),
            run_limit: self.run_timeout,
            max_concurrent: self.max_concurrent_runs.max(1),
            per_minute: self.runs_per_minute.max(1),
            allowed_hosts: self.api_allowed_hosts.clone(),
            ..RunsConfig::default()
        })
    }
}

/// Binds a TCP listener, inside `netns` when given.
pub fn bind(addr: SocketAddr, netns: Option<&std::path::Path>) -> anyhow::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = match netns {
        Some(path) => netdiag_netns::socket_in(path, domain, Type::STREAM, None)
            .with_context(|| format!("cannot create a socket in {}", path.display()))?,
        None => Socket::new(domain, Type::STREAM, None).context("cannot create a socket")?,
    };
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into()).with_context(|| format!("cannot listen on {addr}"))?;
    socket.listen(1024)?;
    Ok(socket.into())
}

pub fn load_inventory(source: &str) -> anyhow::Result<(Inventory, PathBuf)> {
    let path =
        source.strip_prefix("file:").filter(|p| !p.is_empty()).map(PathBuf::from).with_context(|| {
            format!("{source:?} is not an inventory source; use file:<path> or kubernetes")
        })?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the inventory {}", path.display()))?;
    let inv = Inventory::from_yaml(&text).with_context(|| format!("inventory {}", path.display()))?;
    Ok((inv, path))
}

/// The first inventory and where its changes come from: the file, or the Kubernetes API (then
/// also the API's client configuration).
async fn inventory_source(
    cli: &CollectorCli,
) -> anyhow::Result<(Inventory, InventorySource, Option<kube::Config>)> {
    if cli.inventory != "kubernetes" {
        let (inventory, path) = load_inventory(&cli.inventory)?;
        return Ok((inventory, InventorySource::File(path), None));
    }
    let config = kube_inventory::client_config(cli.kube.kubeconfig.as_deref()).await?;
    let updates =
        kube_inventory::start(config.clone(), cli.kube.settings(), kube_inventory::READY_WITHIN).await?;
    let first = updates.borrow().clone();
    Ok((first, InventorySource::Watch(updates), Some(config)))
}

async fn run_async(cli: CollectorCli) -> anyhow::Result<()> {
    let (inventory, source, kube_config) = inventory_source(&cli).await?;
    let mut transport = cli.agents_tls.load()?;
    if cli.agent_identity.tokens() {
        let config = kube_config.clone().context(
            "--agent-identity token needs --inventory kubernetes: the API server reviews the agents' tokens",
        )?;
        let client = kube::Client::try_from(config)
            .context("cannot build a Kubernetes client to review agents' tokens")?;
        transport.tokens =
            Some(crate::agent_token::TokenReviewer::new(client, cli.agent_identity.service_account.clone()));
    }
    let kube_report = kube_config
        .filter(|_| cli.kube_report.node_conditions)
        .map(|config| crate::kube_report::KubeReport::from_args(config, &cli.kube_report));
    let runs = cli.runs_config()?;
    let agents = bind(cli.agents_listen, cli.agents_netns.as_deref())?;
    let http = bind(cli.http, None)?;
    let plans = cli.plans.config().map_err(anyhow::Error::msg)?;
    let state = Arc::new(CollectorState::new(inventory, MatrixConfig::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        let _ = stop_tx.send(true);
    });
    let config = crate::server::ServeConfig {
        agents,
        agents_transport: transport,
        http,
        inventory: source,
        runs,
        plans,
        kube_report,
    };
    crate::server::serve(state, config, stop_rx).await?;
    Ok(())
}

/// Runs the collector until SIGTERM or Ctrl-C.
pub fn run(cli: CollectorCli) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netdiag-collector: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netdiag-collector: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_flags_have_defaults_and_parse() {
        let cli = CollectorCli::try_parse_from([
            "netdiag-collector",
            "--inventory",
            "file:/x",
            "--run-allow",
            "192.0.2.0/24",
            "--run-allow",
            "fd00::/8",
            "--run-timeout",
            "2m",
        ])
        .unwrap();
        assert_eq!(cli.run_allow.len(), 2);
        assert_eq!(cli.run_timeout, Duration::from_secs(120));
        assert_eq!(cli.max_concurrent_runs, DEFAULT_MAX_CONCURRENT);
        let defaults = CollectorCli::try_parse_from(["netdiag-collector", "--inventory", "file:/x"]).unwrap();
        assert_eq!(defaults.run_timeout, Duration::from_secs(30));
        assert!(defaults.kube_report.node_conditions, "node conditions are on by default");
        let off = CollectorCli::try_parse_from([
            "netdiag-collector",
            "--inventory",
            "kubernetes",
            "--node-conditions=false",
        ])
        .unwrap();
        assert!(!off.kube_report.node_conditions);
        for bad in ["0s", "11m", "5h", "x"] {
            assert!(parse_run_timeout(bad).is_err(), "{bad}");
        }
        assert!(
            CollectorCli::try_parse_from([
                "netdiag-collector",
                "--inventory",
                "file:/x",
                "--run-allow",
                "10.0.0.1/33"
            ])
            .is_err()
        );
    }

    #[test]
    fn allowed_hosts_repeat_and_refuse_what_is_not_a_host() {
        let cli = CollectorCli::try_parse_from([
            "netdiag-collector",
            "--inventory",
            "file:/x",
            "--api-allowed-host",
            "Netdiag.Example.com.",
            "--api-allowed-host",
            "[fd00::5]",
        ])
        .unwrap();
        let hosts: Vec<String> =
            cli.runs_config().unwrap().allowed_hosts.iter().map(|h| h.to_string()).collect();
        assert_eq!(hosts, ["netdiag.example.com", "fd00::5"]);
        for bad in ["http://netdiag.example.com", "netdiag.example.com:7600", "*.example.com", "a b"] {
            let e = CollectorCli::try_parse_from([
                "netdiag-collector",
                "--inventory",
                "file:/x",
                "--api-allowed-host",
                bad,
            ])
            .unwrap_err()
            .to_string();
            assert!(e.contains("is not a host name or address"), "{bad}: {e}");
        }
    }
}
