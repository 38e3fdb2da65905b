//! The agent's command line, shared by the `netdiag-agent` binary and `netdiag agent`: config
//! from flags, `NETDIAG_*` and a YAML file; structured logs; stops cleanly on SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{AgentArgs, AgentConfig, LogFormat};
use clap::Parser;

/// `netdiag-agent` / `netdiag agent` arguments.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "netdiag-agent",
    version,
    about = "netdiag node agent: probes from inside every pod's network namespace"
)]
pub struct AgentCli {
    #[command(flatten)]
    pub args: AgentArgs,
    /// Enter this network namespace before starting (the lab's node namespaces; on a real node
    /// the DaemonSet's hostNetwork already puts the agent in the node's namespace).
    #[arg(long, env = "NETDIAG_NETNS")]
    pub netns: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "NETDIAG_LOG", default_value = "info")]
    pub log: String,
    /// Threads running probes. One keeps a node of 30 pods × 100 targets at ~16 % of a core
    /// (two: ~23 %, mostly waking each other); raise it only when one is saturated (the
    /// plan falls behind its interval on a very large node).
    #[arg(long, env = "NETDIAG_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_threads: u16,
}

/// Runs the agent with `cli` until SIGTERM or Ctrl-C. Call before any other thread exists
/// when `--netns` is given (the namespace is entered for the whole process).
pub fn run(cli: AgentCli) -> ExitCode {
    crate::memory::cap_malloc_arenas();
    let cfg = match AgentConfig::load(&cli.args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("netdiag-agent: {:#}", anyhow::Error::from(e));
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => {
            let _ = builder.json().try_init();
        }
        LogFormat::Text => {
            let _ = builder.try_init();
        }
    }
    // Said first, so a missing capability is the first thing an operator reads.
    crate::privileges::report();
    // Before any thread exists: every thread the runtime starts inherits the namespace.
    if let Some(path) = &cli.netns
        && let Err(e) = netdiag_netns::enter_current_thread(path)
    {
        eprintln!("netdiag-agent: {:#}", anyhow::Error::from(e));
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(cli.worker_threads))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("netdiag-agent: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
            let _ = stop_tx.send(true);
        });
        crate::agent::run(cfg, stop_rx).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netdiag-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
