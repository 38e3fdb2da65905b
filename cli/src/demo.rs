//! `netdiag demo`: the README's first command. Builds the lab, runs its servers in this
//! process, prints the lab's status and every change of its fault list, and tears everything
//! down on Ctrl-C or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use netdiag_lab::control;
use netdiag_lab::state::LabState;
use netdiag_lab::status::status;

use crate::lab_cmd::{TopologyArgs, render_status};

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    topology: TopologyArgs,
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

pub(crate) fn run(args: DemoArgs) -> Result<ExitCode> {
    let topo = args.topology.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (state, report) = control::up(&topo)?;
    let result = runtime.block_on(demo(&state, &report.plan));
    let down = control::down(&state.name);
    println!("\ndemo stopped; lab {} torn down", state.name);
    result?;
    down?;
    Ok(ExitCode::SUCCESS)
}

async fn demo(state: &LabState, plan: &netdiag_lab::plan::LabPlan) -> Result<()> {
    let watch = async {
        // Give the servers a moment to bind before the first status.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut last_faults = None;
        loop {
            if let Ok(s) = status(state) {
                let ids: Vec<u32> = s.faults.iter().map(|f| f.id).collect();
                if last_faults.as_ref() != Some(&ids) {
                    if last_faults.is_none() {
                        print!("{}", render_status(&s));
                        println!(
                            "\nthe lab is up. From another terminal (as root):\n  netdiag lab status -o json\n  netdiag lab fault node-pair node-1 node-2\n  netdiag lab heal\nCtrl-C here tears everything down.\n"
                        );
                    } else if s.faults.is_empty() {
                        println!("faults healed: the lab is healthy");
                    } else {
                        for f in &s.faults {
                            println!("active fault {}: {}", f.id, f.description);
                        }
                    }
                    last_faults = Some(ids);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let serve = netdiag_lab::serve::serve(plan, state, shutdown_signal());
    tokio::select! {
        r = serve => r?,
        () = watch => {}
    }
    Ok(())
}
