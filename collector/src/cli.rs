//! The collector's command line, shared by the `netdiag-collector` binary and `netdiag
//! collector`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use netdiag_model::inventory::Inventory;
use socket2::{Domain, Socket, Type};

use crate::matrix::MatrixConfig;
use crate::metrics::CollectorMetrics;
use crate::state::CollectorState;

/// `netdiag-collector` / `netdiag collector` arguments.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "netdiag-collector",
    version,
    about = "netdiag collector: connectivity matrix, diagnosis, API and UI"
)]
pub struct CollectorCli {
    /// Inventory source: file:<path> (what `netdiag lab` writes).
    #[arg(long, env = "NETDIAG_INVENTORY")]
    pub inventory: String,
    /// Where agents connect (gRPC session service).
    #[arg(long, env = "NETDIAG_AGENTS_LISTEN", default_value = "0.0.0.0:7700")]
    pub agents_listen: SocketAddr,
    /// Create the agents' listener inside this network namespace (the lab's underlay).
    #[arg(long, env = "NETDIAG_AGENTS_NETNS")]
    pub agents_netns: Option<PathBuf>,
    /// HTTP API, UI, /metrics and the CLI's gRPC queries.
    #[arg(long, env = "NETDIAG_HTTP", default_value = "127.0.0.1:7600")]
    pub http: SocketAddr,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "NETDIAG_LOG", default_value = "info")]
    pub log: String,
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
    let path = source
        .strip_prefix("file:")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .with_context(|| format!("{source:?} is not an inventory source; use file:<path>"))?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the inventory {}", path.display()))?;
    let inv = Inventory::from_yaml(&text).with_context(|| format!("inventory {}", path.display()))?;
    Ok((inv, path))
}

async fn run_async(cli: CollectorCli) -> anyhow::Result<()> {
    let (inventory, path) = load_inventory(&cli.inventory)?;
    let agents = bind(cli.agents_listen, cli.agents_netns.as_deref())?;
    let http = bind(cli.http, None)?;
    let state = Arc::new(CollectorState::new(inventory, MatrixConfig::default()));
    let metrics = Arc::new(CollectorMetrics::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        let _ = stop_tx.send(true);
    });
    crate::server::serve(state, metrics, agents, http, Some(path), stop_rx).await?;
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
