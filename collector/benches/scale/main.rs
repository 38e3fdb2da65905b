//! Benchmark (not a test): the collector at cluster scale, on loopback only.
//!
//! For each size (`SIZES`, default 500,1000,5000 nodes × `PODS` pods, default 30): this process
//! seeds fakekube (in-process) with the simulated cluster ([`cluster`]), starts the real
//! `netdiag-collector` binary in kubernetes mode against it, and a load process (this binary
//! with `--load`, [`load`]) that opens one real agent session per node, takes the plan the
//! collector pushes and streams results at the plan's rate. After every node has its plan and
//! one plan interval has passed, it injects the faults (a dead node, a cut node pair that
//! probes each other, a dead pod; `LOSS` background loss throughout) and measures for
//! `max(SECS, 3 intervals + 10 s)`, churning pods through fakekube at `CHURN` per second.
//!
//! Printed per size: collector CPU (cores, from `/proc/<pid>/stat`) and RSS, ingest results/s,
//! the plan round (every agent's plan) and delivery of a plan after churn, diagnosis time,
//! `/api/v1/matrix?level=node` and `/api/v1/diagnosis` latency under load, `/metrics` size,
//! series and scrape time, memory per matrix cell, and when each injected fault was named —
//! then one table across the sizes. Figures, never budgets asserted.
//!
//! `cargo bench -p netdiag-collector --bench scale` (env: SIZES, PODS, SECS, CHURN, LOSS,
//! COLLECTOR_ARGS); `-- --quick` for a smoke run (60 nodes × 5 pods, 1 s probe interval).

mod cluster;
mod load;
mod measure;
mod report;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use netdiag_fakekube::{FakeKube, Kind};
use netdiag_model::inventory::Inventory;
use netdiag_model::plan::{PlanPolicy, Sampler};

use crate::cluster::Shape;
use crate::report::Row;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What one run is given.
#[derive(Debug, Clone)]
struct Settings {
    shape: Shape,
    secs: u64,
    churn_per_sec: f64,
    loss: f64,
    /// Probe interval flags for the collector (the quick run's are short).
    interval_args: Vec<String>,
    policy: PlanPolicy,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed (and reaped) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Plans the load process reported: (node, unix ms, probes).
#[derive(Debug, Default)]
struct Plans {
    received: Vec<(usize, i64, usize)>,
    errors: Vec<String>,
}

/// The injected faults, by name.
#[derive(Debug, Clone)]
struct Faults {
    dead_node: String,
    cut: (String, String),
    dead_pod: String,
}

/// A dead node, a cut pair the plans probe, a dead pod: away from CoreDNS's nodes and each other.
fn choose_faults(inv: &Inventory, policy: &PlanPolicy, shape: Shape) -> Faults {
    let n = shape.nodes;
    let dead = n / 2;
    let pod_node = n / 3;
    let a = (n / 4).max(2);
    let sampler = Sampler::new(inv, policy, &Default::default());
    let name_a = cluster::node_name(a);
    let avoid = [0, 1, dead, pod_node, a];
    let b = sampler
        .ring_peers(&name_a)
        .into_iter()
        .filter_map(|p| cluster::node_index(p.as_str()))
        .find(|i| !avoid.contains(i))
        .unwrap_or((a + 1) % n);
    // The first pod on `pod_node` (slot 0): global pod number `pod_node`.
    let w = pod_node / cluster::REPLICAS;
    let dead_pod = format!("ns-{}/w{w}-{}", w % 50, pod_node % cluster::REPLICAS);
    Faults {
        dead_node: cluster::node_name(dead).to_string(),
        cut: (name_a.to_string(), cluster::node_name(b).to_string()),
        dead_pod,
    }
}

/// When each fault was first named by a finding, since onset.
#[derive(Debug, Default, Clone, Copy)]
struct Found {
    dead_node: Option<Duration>,
    cut: Option<Duration>,
    dead_pod: Option<Duration>,
}

fn check_findings(body: &str, faults: &Faults, since: Duration, found: &mut Found) -> Vec<String> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else { return Vec::new() };
    let mut others = Vec::new();
    for f in json["findings"].as_array().into_iter().flatten() {
        let culprit = f["culprit"]["name"].as_str().unwrap_or_default();
        let id = f["id"].as_str().unwrap_or_default();
        let mut ours = false;
        if culprit == faults.dead_node {
            found.dead_node.get_or_insert(since);
            ours = true;
        }
        if culprit.contains(&faults.cut.0) && culprit.contains(&faults.cut.1) {
            found.cut.get_or_insert(since);
            ours = true;
        }
        if culprit == faults.dead_pod {
            found.dead_pod.get_or_insert(since);
            ours = true;
        }
        if !ours {
            others.push(format!("{id} {culprit}"));
        }
    }
    others
}

fn start_collector(
    settings: &Settings,
    kubeconfig: &std::path::Path,
    agents: u16,
    http: u16,
    timings: &Arc<Mutex<Timings>>,
) -> Result<Proc> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netdiag-collector"));
    cmd.args(["--inventory", "kubernetes", "--kubeconfig"])
        .arg(kubeconfig)
        .args(["--agents-listen", &format!("127.0.0.1:{agents}"), "--http", &format!("127.0.0.1:{http}")])
        // Each diagnosis and plan round is logged with its time at debug: read from stderr.
        .args([
            "--node-cidr",
            "172.16.0.0/16",
            "--log",
            "warn,netdiag_collector::state=debug,netdiag_collector::plans=debug",
        ])
        .args(&settings.interval_args)
        .args(std::env::var("COLLECTOR_ARGS").unwrap_or_default().split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot start netdiag-collector")?;
    let stderr = child.stderr.take().context("collector stderr")?;
    let timings = timings.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let line = strip_ansi(&line);
            let took =
                || line.split_whitespace().find_map(|w| w.strip_prefix("took_ms="))?.parse::<f64>().ok();
            let plans =
                || line.split_whitespace().find_map(|w| w.strip_prefix("plans="))?.parse::<f64>().ok();
            let Ok(mut t) = timings.lock() else { return };
            if line.contains("diagnosis computed") {
                t.diagnoses.extend(took().map(|ms| ms / 1e3));
            } else if line.contains("plan round computed") {
                t.plan_rounds.extend(took().zip(plans()).map(|(ms, n)| (ms / 1e3, n)));
            } else if !line.contains(" DEBUG ") {
                eprintln!("  collector: {line}");
            }
        }
    });
    Ok(Proc(child))
}

/// `line` without terminal colour escapes (the collector's log may carry them).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters… final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The collector's own timings, from its debug log: seconds per diagnosis, and per plan round
/// with its plan count.
#[derive(Debug, Default, Clone)]
struct Timings {
    diagnoses: Vec<f64>,
    plan_rounds: Vec<(f64, f64)>,
}

fn start_load(settings: &Settings, agents: u16) -> Result<(Proc, ChildStdin, Arc<Mutex<Plans>>)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--load", &format!("127.0.0.1:{agents}")])
        .env("NODES_", settings.shape.nodes.to_string())
        .env("PODS_", settings.shape.pods_per_node.to_string())
        .env("LOSS_", settings.loss.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the load process")?;
    let stdin = child.stdin.take().context("load stdin")?;
    let stdout = child.stdout.take().context("load stdout")?;
    let plans = Arc::new(Mutex::new(Plans::default()));
    let p = plans.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let w: Vec<&str> = line.split_whitespace().collect();
            let Ok(mut plans) = p.lock() else { return };
            match w.as_slice() {
                ["plan", node, at, probes, _pods] => {
                    if let (Ok(n), Ok(at), Ok(probes)) = (node.parse(), at.parse(), probes.parse()) {
                        plans.received.push((n, at, probes));
                    }
                }
                _ => {
                    if plans.errors.len() < 5 {
                        eprintln!("  load: {line}");
                    }
                    plans.errors.push(line);
                }
            }
        }
    });
    Ok((Proc(child), stdin, plans))
}

/// Waits for `check` (polling every 200 ms) up to `limit`.
fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if started.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One size, end to end.
fn run(settings: &Settings, rt: &tokio::runtime::Runtime) -> Result<Row> {
    let shape = settings.shape;
    let mut row = Row { nodes: shape.nodes, pods: shape.nodes * shape.pods_per_node, ..Row::default() };
    let inv = cluster::inventory(shape);
    row.services = inv.services.len();
    let faults = choose_faults(&inv, &settings.policy, shape);
    let interval = settings.policy.interval(shape.nodes);

    let seeded = Instant::now();
    let fake = rt.block_on(FakeKube::start())?;
    fake.seed(&inv)?;
    eprintln!(
        "{} nodes × {} pods: {} pods, {} services seeded in {:.1} s; probe interval {interval:?}",
        shape.nodes,
        shape.pods_per_node,
        inv.pods.len(),
        inv.services.len(),
        seeded.elapsed().as_secs_f64()
    );
    drop(inv);
    let kubeconfig = std::env::temp_dir().join(format!("netdiag-scale-{}.kubeconfig", std::process::id()));
    fake.write_kubeconfig(&kubeconfig)?;
    let (agents_port, http_port) = (free_port()?, free_port()?);
    let api = SocketAddr::from(([127, 0, 0, 1], http_port));

    let started = Instant::now();
    let timings = Arc::new(Mutex::new(Timings::default()));
    let collector = start_collector(settings, &kubeconfig, agents_port, http_port, &timings)?;
    let pid = collector.0.id();
    wait_for(Duration::from_secs(600), || measure::get(api, "/readyz").ok())
        .context("the collector did not become ready")?;
    row.startup = started.elapsed();
    row.rss_idle = measure::rss_bytes(pid)?;
    eprintln!("  collector ready in {:.1} s, RSS {} MiB", row.startup.as_secs_f64(), row.rss_idle >> 20);

    let load_started = Instant::now();
    let (load, mut load_in, plans) = start_load(settings, agents_port)?;
    let all = wait_for(Duration::from_secs(900), || {
        let p = plans.lock().ok()?;
        let mut nodes: Vec<usize> = p.received.iter().map(|r| r.0).collect();
        nodes.sort_unstable();
        nodes.dedup();
        (nodes.len() == shape.nodes).then(|| p.received.iter().map(|r| r.2).collect::<Vec<_>>())
    });
    let Some(sizes) = all else {
        let p = plans.lock().map(|p| (p.received.len(), p.errors.len())).unwrap_or_default();
        bail!("not every node got a plan within 15 minutes ({} plans, {} errors)", p.0, p.1);
    };
    row.all_plans_delivered = load_started.elapsed();
    row.probes_per_plan = measure::quantile(&sizes.iter().map(|&s| s as f64).collect::<Vec<_>>(), 0.5);
    eprintln!(
        "  every node has its plan after {:.1} s (median {} probes)",
        row.all_plans_delivered.as_secs_f64(),
        row.probes_per_plan
    );

    // One interval of results before the faults.
    std::thread::sleep(interval);
    writeln!(load_in, "faults {} {} {} {}", faults.dead_node, faults.cut.0, faults.cut.1, faults.dead_pod)?;
    eprintln!(
        "  faults: dead node {}, cut {}↔{}, dead pod {}",
        faults.dead_node, faults.cut.0, faults.cut.1, faults.dead_pod
    );
    let onset = Instant::now();
    let measure_for = Duration::from_secs(settings.secs).max(interval * 3 + Duration::from_secs(10));

    // Churn: pods created through fakekube, each deleted 30 s later.
    let churned: Arc<Mutex<Vec<(usize, i64)>>> = Arc::default();
    let churn_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churner = {
        let (churned, stop) = (churned.clone(), churn_stop.clone());
        let every = Duration::from_secs_f64(1.0 / settings.churn_per_sec.max(0.01));
        let fake = &fake;
        std::thread::scope(|scope| -> Result<Measured> {
            let stopping = stop.clone();
            let churn = scope.spawn(move || {
                let mut live = std::collections::VecDeque::new();
                let mut seq = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let pod = cluster::churn_pod(shape, seq);
                    let node = cluster::node_index(pod.node.as_str()).unwrap_or(0);
                    let obj = netdiag_fakekube::seed::pod(&pod, None);
                    if fake.apply(&obj).is_ok() {
                        let at = netdiag_collector::state::now().get();
                        if let Ok(mut c) = churned.lock() {
                            c.push((node, at));
                        }
                        live.push_back((Instant::now(), pod.name.to_string()));
                    }
                    while live.front().is_some_and(|(t, _)| t.elapsed() > Duration::from_secs(30)) {
                        if let Some((_, name)) = live.pop_front() {
                            fake.delete(Kind::Pod, "churn", &name);
                        }
                    }
                    seq += 1;
                    std::thread::sleep(every);
                }
            });
            let measured = sample(api, pid, measure_for, &faults, onset);
            stopping.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = churn.join();
            measured
        })
    };
    let mut m = churner?;
    // The collector's own timings while measuring (the first rounds planned for a cluster
    // still connecting).
    if let Ok(t) = timings.lock() {
        m.diagnosis_ticks = t.diagnoses.clone();
        m.plan_rounds = t.plan_rounds.iter().copied().filter(|r| r.1 > 0.0).collect();
    }
    row.absorb(m);

    // Plan delivery after churn: the first plan a churned node got after its pod was applied.
    let delays: Vec<f64> = {
        let c = churned.lock().map(|c| c.clone()).unwrap_or_default();
        let p = plans.lock().map(|p| p.received.clone()).unwrap_or_default();
        c.iter()
            .filter_map(|&(node, at)| p.iter().filter(|r| r.0 == node && r.1 >= at).map(|r| r.1 - at).min())
            .map(|ms| ms as f64 / 1000.0)
            .collect()
    };
    row.churn_events = delays.len();
    row.plan_after_churn_p50 = measure::quantile(&delays, 0.5);
    row.plan_after_churn_max = measure::quantile(&delays, 1.0);
    row.plan_errors = plans.lock().map(|p| p.errors.len()).unwrap_or_default();
    row.interval = interval;
    let _ = std::fs::remove_file(&kubeconfig);
    drop(load);
    drop(collector);
    Ok(row)
}

/// Figures gathered while the cluster runs with its faults.
#[derive(Debug, Default)]
struct Measured {
    cores: Vec<f64>,
    rss: Vec<f64>,
    matrix_ms: Vec<f64>,
    diagnosis_ms: Vec<f64>,
    diagnosis_ticks: Vec<f64>,
    plan_rounds: Vec<(f64, f64)>,
    ingest_rate: Vec<f64>,
    scrapes: Vec<(f64, usize, usize)>,
    cells: f64,
    /// Results a full matrix level refused (`netdiag_results_dropped_total{reason="matrix_full"}`).
    refused_full: f64,
    found: Found,
    others: Vec<String>,
}

/// How often `/metrics` is scraped (Prometheus' usual interval is 15 to 30 s).
const SCRAPE_EVERY: Duration = Duration::from_secs(5);

/// Samples the running collector every second for `limit`.
fn sample(api: SocketAddr, pid: u32, limit: Duration, faults: &Faults, onset: Instant) -> Result<Measured> {
    let mut m = Measured::default();
    let mut last_cpu = (Instant::now(), measure::cpu_seconds(pid)?);
    let mut last_scrape: Option<(Instant, f64)> = None;
    let mut next_scrape = Instant::now();
    while onset.elapsed() < limit {
        let t0 = Instant::now();
        let (_, matrix) = measure::get(api, "/api/v1/matrix?level=node")?;
        m.matrix_ms.push(matrix.as_secs_f64() * 1e3);
        let (body, took) = measure::get(api, "/api/v1/diagnosis")?;
        m.diagnosis_ms.push(took.as_secs_f64() * 1e3);
        m.others = check_findings(&body, faults, onset.elapsed(), &mut m.found);
        if Instant::now() >= next_scrape {
            next_scrape += SCRAPE_EVERY;
            let (text, took) = measure::get(api, "/metrics")?;
            let now = Instant::now();
            let results = measure::metric_sum(&text, "netdiag_ingest_results_total");
            if let Some((at, before)) = last_scrape {
                m.ingest_rate.push((results - before) / now.duration_since(at).as_secs_f64());
            }
            last_scrape = Some((now, results));
            m.scrapes.push((took.as_secs_f64() * 1e3, text.len(), measure::series(&text)));
            m.cells = measure::metric_sum(&text, "netdiag_matrix_cells");
            m.refused_full =
                measure::metric_sum(&text, r#"netdiag_results_dropped_total{reason="matrix_full"}"#);
        }
        let cpu = measure::cpu_seconds(pid)?;
        let now = Instant::now();
        m.cores.push((cpu - last_cpu.1) / now.duration_since(last_cpu.0).as_secs_f64());
        last_cpu = (now, cpu);
        m.rss.push(measure::rss_bytes(pid)? as f64);
        if let Some(rest) = Duration::from_secs(1).checked_sub(t0.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    Ok(m)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--load") {
        let addr: SocketAddr = args.get(i + 1).context("--load <addr>")?.parse()?;
        let shape = Shape { nodes: env("NODES_", 0), pods_per_node: env("PODS_", 0) }.check()?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        return rt.block_on(load::run(addr, shape, env("LOSS_", 0.0)));
    }
    let quick = args.iter().any(|a| a == "--quick");
    let (sizes, pods, interval_args, policy) = if quick {
        let policy = PlanPolicy {
            base_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(2),
            ..PlanPolicy::default()
        };
        let flags = ["--probe-interval", "1s", "--max-probe-interval", "2s"];
        ("60".to_owned(), 5, flags.map(String::from).to_vec(), policy)
    } else {
        (env("SIZES", "500,1000,5000".to_owned()), env("PODS", 30), Vec::new(), PlanPolicy::default())
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut rows = Vec::new();
    for nodes in sizes.split(',').filter_map(|s| s.trim().parse().ok()) {
        let settings = Settings {
            shape: Shape { nodes, pods_per_node: pods }.check()?,
            secs: env("SECS", if quick { 5 } else { 0 }),
            churn_per_sec: env("CHURN", 0.2),
            loss: env("LOSS", 0.001),
            interval_args: interval_args.clone(),
            policy: policy.clone(),
        };
        let row = run(&settings, &rt)?;
        row.print_detail();
        rows.push(row);
    }
    report::table(&rows);
    Ok(())
}
