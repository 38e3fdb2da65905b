//! `netdiag demo`: the README's first command. Builds the lab, runs its servers and the
//! collector in this process (agents' listener inside the lab, the API and UI on the host's
//! loopback: the lab's only door), starts one agent per node inside its node's namespace, and
//! prints the live matrix summary and the findings until Ctrl-C or SIGTERM, then tears
//! everything down.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use netdiag_collector::runs::auth::ApiToken;
use netdiag_collector::runs::config::RunsConfig;
use netdiag_collector::state::{CollectorState, now};
use netdiag_diagnose::matrix::MatrixConfig;
use netdiag_lab::control;
use netdiag_lab::plan::LabPlan;
use netdiag_lab::state::LabState;
use netdiag_lab::status::status;
use netdiag_model::matrix::{CellStatus, MatrixLevel, MatrixQuery};

use crate::lab_cmd::{TopologyArgs, render_status};
use crate::query_cmd::render_diagnosis;

/// Where agents reach the collector inside the lab.
const AGENTS_PORT: u16 = 7700;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// The collector's HTTP API and UI (on the host).
    #[arg(long, env = "NETDIAG_HTTP", default_value = "127.0.0.1:7600")]
    http: SocketAddr,
    /// Probe interval of the agents.
    #[arg(long, default_value = "2s")]
    interval: String,
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
    // Bind the host-side door first: a busy port should fail before the lab is built.
    let http = netdiag_collector::cli::bind(args.http, None).with_context(|| {
        format!("the collector's API address {} is taken; pick another with --http", args.http)
    })?;
    let (state, report) = control::up(&topo)?;
    let result = runtime.block_on(demo(&state, &report.plan, http, &args));
    let down = control::down(&state.name);
    println!("\ndemo stopped; lab {} torn down", state.name);
    result?;
    down?;
    Ok(ExitCode::SUCCESS)
}

fn spawn_agents(state: &LabState, plan: &LabPlan, interval: &str) -> Result<Vec<tokio::process::Child>> {
    let exe = std::env::current_exe().context("cannot find the netdiag binary to start the agents")?;
    let collector = format!("http://{}:{AGENTS_PORT}", plan.control_ip);
    let mut agents = Vec::new();
    for node in &plan.nodes {
        let log = std::fs::File::create(state.dir.join(format!("agent-{}.log", node.name)))?;
        let child = tokio::process::Command::new(&exe)
            .arg("agent")
            .arg("--netns")
            .arg(LabPlan::netns_path(&node.netns))
            .args(["--node", node.name.as_str(), "--collector", &collector, "--interval", interval])
            .arg("--inventory")
            .arg(format!("file:{}", state.inventory_path().display()))
            .args(["--listen", "127.0.0.1:9464"])
            .env("NETDIAG_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the agent for {}", node.name))?;
        agents.push(child);
    }
    Ok(agents)
}

fn summary(state: &CollectorState) -> String {
    let snap = state.matrix(&MatrixQuery { level: MatrixLevel::Pod, kind: None }, now());
    let mut counts: BTreeMap<CellStatus, usize> = BTreeMap::new();
    for c in &snap.cells {
        *counts.entry(c.status).or_default() += 1;
    }
    let agents = state.agents(now());
    format!(
        "matrix: {} cells — {} ok, {} degraded, {} failed, {} unknown · agents connected: {}/{}",
        snap.cells.len(),
        counts.get(&CellStatus::Ok).unwrap_or(&0),
        counts.get(&CellStatus::Degraded).unwrap_or(&0),
        counts.get(&CellStatus::Failed).unwrap_or(&0),
        counts.get(&CellStatus::Unknown).unwrap_or(&0),
        agents.iter().filter(|a| a.connected).count(),
        agents.len(),
    )
}

async fn demo(state: &LabState, plan: &LabPlan, http: std::net::TcpListener, args: &DemoArgs) -> Result<()> {
    let inventory_text = std::fs::read_to_string(state.inventory_path())?;
    let inventory = netdiag_model::inventory::Inventory::from_yaml(&inventory_text)?;
    let agents_listener = netdiag_collector::cli::bind(
        SocketAddr::new(plan.control_ip.into(), AGENTS_PORT),
        Some(&LabPlan::netns_path(&plan.underlay_netns)),
    )?;
    let collector = Arc::new(CollectorState::new(inventory, MatrixConfig::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // On-demand runs: loopback callers only, unless NETDIAG_API_TOKEN is set (then the token).
    let runs = match std::env::var("NETDIAG_API_TOKEN") {
        Ok(t) => RunsConfig {
            token: Some(ApiToken::new(&t).context("NETDIAG_API_TOKEN")?),
            ..RunsConfig::default()
        },
        Err(_) => RunsConfig::default(),
    };
    let server = tokio::spawn(netdiag_collector::server::serve(
        collector.clone(),
        netdiag_collector::server::ServeConfig {
            agents: agents_listener,
            // The lab is sealed: its agents reach the collector only over the lab's own underlay.
            agents_transport: netdiag_collector::agents_tls::AgentsTransport::insecure(),
            http,
            inventory: netdiag_collector::server::InventorySource::File(state.inventory_path()),
            runs,
            plans: Default::default(),
        },
        stop_rx,
    ));
    let mut agents = spawn_agents(state, plan, &args.interval)?;

    let watch = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(s) = status(state) {
            print!("{}", render_status(&s));
        }
        println!(
            "\nUI and API: http://{http}/  (matrix: http://{http}/api/v1/matrix, findings: http://{http}/api/v1/diagnosis)\n\
             From another terminal (as root):\n  netdiag matrix --problems\n  netdiag diagnose\n  netdiag lab fault node-pair node-1 node-2\n  netdiag lab heal\n\
             Ctrl-C here tears everything down.\n",
            http = args.http
        );
        let mut last_ids: Option<Vec<String>> = None;
        let mut last_faults: Vec<u32> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(3));
        loop {
            tick.tick().await;
            if let Ok(s) = status(state) {
                let ids: Vec<u32> = s.faults.iter().map(|f| f.id).collect();
                if ids != last_faults {
                    for f in s.faults.iter().filter(|f| !last_faults.contains(&f.id)) {
                        println!("\n>>> lab fault {} injected: {}", f.id, f.description);
                    }
                    if ids.is_empty() {
                        println!("\n>>> every lab fault healed");
                    }
                    last_faults = ids;
                }
            }
            println!("{}", summary(&collector));
            let diagnosis = collector.diagnosis(now());
            let ids: Vec<String> =
                diagnosis.findings.iter().map(|f| format!("{}:{:?}", f.id, f.culprit)).collect();
            if last_ids.as_ref() != Some(&ids) {
                println!("{}", render_diagnosis(&diagnosis));
                last_ids = Some(ids);
            }
        }
    };
    let lab_servers = netdiag_lab::serve::serve(plan, state, shutdown_signal());
    let result = tokio::select! {
        r = lab_servers => r.map_err(anyhow::Error::from),
        () = watch => Ok(()),
        r = server => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::from(e)),
            Err(e) => Err(anyhow::anyhow!("the collector stopped: {e}")),
        },
    };
    let _ = stop_tx.send(true);
    for a in &mut agents {
        let _ = a.start_kill();
    }
    for a in &mut agents {
        let _ = a.wait().await;
    }
    result
}
