//! Benchmark (not a test): the end-to-end time of an on-demand run (the HTTP call on the
//! collector, dispatch to the source's agent over its session, every step in the source's
//! namespace, the verdict) against the probes' own time, in the lab. Budget: overhead ≤ 50 ms.
//! Run as root: `cargo bench -p netdiag-tests --bench probe_run` (`ROUNDS=n` for more rounds).
//!
//! Figures per run shape, medians (p90) over the rounds:
//! - `e2e`: the caller's wall time for the whole POST;
//! - `sum rtt`: the sum of every probe step's own RTT (what the issue compares against);
//! - `overhead` = e2e − sum rtt;
//! - `slowest step`: the longest step's own wall time (steps run concurrently, so the run can
//!   not finish before it), and `dispatch` = e2e − slowest step: what netdiag itself adds
//!   around the probes (HTTP, planning, the session both ways, the verdict).

use std::time::{Duration, Instant};

use netdiag_collector::runs::config::RunsConfig;
use netdiag_tests::cluster::LabCluster;
use netdiag_tests::http::post_json;
use netdiag_tests::lab::TestLab;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    // The per-caller rate limit would refuse a benchmark's burst of runs.
    let runs = RunsConfig { per_minute: 100_000, ..RunsConfig::default() };
    let c = LabCluster::start_with(TestLab::up(), Duration::from_secs(2), runs);
    // Wait for every agent's session (runs need it) and a first round of results.
    let ready = c.wait_for(Duration::from_secs(30), |c| {
        let agents = c.collector.agents(netdiag_collector::state::now());
        (agents.len() == 3 && agents.iter().all(|a| a.connected && a.results_received > 0)).then_some(())
    });
    anyhow::ensure!(ready.is_some(), "the lab's agents never connected");
    let shapes = [
        (
            "pod -> service (VIP, 3 backends, HTTP)",
            "tidb/demo-tikv-0",
            "svc/tidb/demo-pd:2379",
            Some("/pd/api/v1/members"),
        ),
        ("pod -> pod on another node", "tidb/demo-pd-0", "tidb/demo-pd-2:2379", None),
        ("pod -> pod on the same node", "tidb/demo-pd-0", "tidb/demo-tikv-0:20160", None),
        ("node -> NodePort service", "node/node-2", "svc/tidb/demo-tidb:4000", None),
    ];
    println!("{rounds} rounds per shape; medians (p90), ms");
    for (label, from, to, http) in shapes {
        let mut e2e = Vec::new();
        let mut rtt = Vec::new();
        let mut slowest = Vec::new();
        let mut steps = 0;
        for _ in 0..rounds {
            let mut body = json!({"from": from, "to": to});
            if let Some(p) = http {
                body["http_path"] = json!(p);
            }
            let started = Instant::now();
            let (status, run) = post_json(c.http, "/api/v1/probe", &body, None, Duration::from_secs(60))?;
            let took = started.elapsed();
            anyhow::ensure!(status == 200 && run["done"]["end"] == "completed", "{label}: {status} {run}");
            let all = run["steps"].as_array().cloned().unwrap_or_default();
            steps = all.len();
            e2e.push(ms(took));
            rtt.push(all.iter().filter_map(|s| s["result"]["rtt_ms"].as_f64()).sum::<f64>());
            slowest.push(all.iter().filter_map(|s| s["elapsed_ms"].as_f64()).fold(0.0, f64::max));
        }
        let overhead: Vec<f64> = e2e.iter().zip(&rtt).map(|(e, r)| e - r).collect();
        let dispatch: Vec<f64> = e2e.iter().zip(&slowest).map(|(e, s)| e - s).collect();
        println!("{label}: {steps} steps");
        println!(
            "    e2e {}  sum rtt {}  overhead {}  slowest step {}  dispatch {}",
            stat(&e2e),
            stat(&rtt),
            stat(&overhead),
            stat(&slowest),
            stat(&dispatch)
        );
    }
    println!("budget: overhead <= 50 ms");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stat(v: &[f64]) -> String {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let at = |q: f64| s.get(((s.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    format!("{:.1} ({:.1})", at(0.5), at(0.9))
}
