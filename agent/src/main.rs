//! `netdiag-agent`: the node agent binary (a DaemonSet on every node), a thin wrapper over
//! [`netdiag_agent::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    netdiag_agent::cli::run(netdiag_agent::cli::AgentCli::parse())
}
