//! `netdiag`: the command line. A thin binary over the library crates: parse flags, call in,
//! print for people (tables) or scripts (`-o json`).

mod demo;
mod lab_cmd;
mod output;

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
    #[arg(long, global = true, env = "NETDIAG_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build and drive the lab: a sealed Kubernetes-shaped cluster of network namespaces.
    Lab(lab_cmd::LabArgs),
    /// Run the whole thing on the lab: cluster, servers, live status; Ctrl-C tears it down.
    Demo(demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netdiag: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<std::process::ExitCode> {
    match cli.command {
        Command::Lab(args) => lab_cmd::run(args),
        Command::Demo(args) => demo::run(args),
    }
}
