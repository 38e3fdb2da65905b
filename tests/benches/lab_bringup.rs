//! Benchmark (not a test): how long the default lab takes to come up and go down, per phase,
//! over a few rounds. Target: bring-up under 3 s. Run as root:
//! `cargo bench -p netdiag-tests --bench lab_bringup`.

use std::time::Instant;

use netdiag_lab::control;
use netdiag_lab::topology::{Overrides, Topology};

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let mut totals = Vec::new();
    for round in 1..=rounds {
        let topo = Topology::default_lab()?
            .with_overrides(&Overrides { name: Some(format!("bench{round}")), ..Default::default() })?;
        let started = Instant::now();
        let (state, report) = control::up(&topo)?;
        let up = started.elapsed();
        let started = Instant::now();
        control::down(&state.name)?;
        let down = started.elapsed();
        println!("round {round}: up {:>7.1} ms, down {:>7.1} ms", ms(up), ms(down));
        for (phase, d) in &report.timings.phases {
            println!("    {phase:<40} {:>7.1} ms", ms(*d));
        }
        totals.push(up);
    }
    totals.sort();
    println!(
        "default lab ({} namespaces) bring-up: median {:.1} ms, best {:.1} ms, worst {:.1} ms (target < 3000 ms)",
        Topology::default_lab().map(|t| t.nodes.len() + t.pods.len() + 1).unwrap_or(0),
        ms(totals[totals.len() / 2]),
        ms(totals[0]),
        ms(totals[totals.len() - 1])
    );
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
