//! `netdiag-collector`: the collector binary, a thin wrapper over [`netdiag_collector::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    netdiag_collector::cli::run(netdiag_collector::cli::CollectorCli::parse())
}
