//! `netdiag demo`: the README's first command. Builds the lab, runs its servers and the
//! collector in this process (agents' listener inside the lab, the API and UI on the host's
//! loopback: the lab's only door), starts one agent per node inside its node's namespace, and
//! prints the live matrix summary and the findings until Ctrl-C or SIGTERM, then tears
//! everything down. The collector requires an API token for on-demand runs even here: without
//! one it would take runs from any loopback caller, which includes a web page in the operator's
//! browser. The token is NETDIAG_API_TOKEN when set, else random for this run; the demo prints
//! how to use it and writes it to `<lab state>/api-token`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
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
use netdiag_model::config::defaults::{AGENT_LISTEN, AGENTS_PORT};
use netdiag_model::config::{ConfigDuration, defaults};
use netdiag_model::matrix::{CellStatus, MatrixLevel, MatrixQuery};

use crate::lab_cmd::{TopologyArgs, render_status};
use crate::query_cmd::render_diagnosis;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// The collector's HTTP API and UI (on the host).
    #[arg(long, env = "NETDIAG_HTTP", default_value = defaults::COLLECTOR_HTTP)]
    http: SocketAddr,
    /// Probe interval of the agents: shorter than the agents' default (5s), so the demo shows a
    /// fault within seconds.
    #[arg(long, default_value = "2s")]
    interval: ConfigDuration,
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

fn spawn_agents(
    state: &LabState,
    plan: &LabPlan,
    interval: ConfigDuration,
) -> Result<Vec<tokio::process::Child>> {
    let exe = std::env::current_exe().context("cannot find the netdiag binary to start the agents")?;
    let collector = format!("http://{}:{AGENTS_PORT}", plan.control_ip);
    let mut agents = Vec::new();
    for node in &plan.nodes {
        let log = std::fs::File::create(state.dir.join(format!("agent-{}.log", node.name)))?;
        let child = tokio::process::Command::new(&exe)
            .arg("agent")
            .arg("--netns")
            .arg(LabPlan::netns_path(&node.netns))
            .args(["--node", node.name.as_str(), "--collector", &collector])
            .args(["--interval", &interval.to_string()])
            .arg("--inventory")
            .arg(format!("file:{}", state.inventory_path().display()))
            .args(["--listen", AGENT_LISTEN])
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

/// The demo's API token: NETDIAG_API_TOKEN when set (true: the caller's own), else a random one.
fn api_token() -> Result<(ApiToken, bool)> {
    match ApiToken::from_file_or_env(None)? {
        Some(own) => Ok((own, true)),
        None => Ok((random_token()?, false)),
    }
}

/// 32 random bytes from the kernel, as hex.
fn random_token() -> Result<ApiToken> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom to make the demo's API token; set NETDIAG_API_TOKEN instead")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    ApiToken::new(&hex).context("the generated API token")
}

/// Writes the token where `netdiag probe --api-token-file` reads it; only root may read it.
fn write_token(path: &Path, token: &ApiToken) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(format!("{}\n", token.expose()).as_bytes()))
        .with_context(|| format!("cannot write the API token to {}", path.display()))
}

/// How to start a run against the demo: the token itself when the demo made it, a reference to
/// the caller's NETDIAG_API_TOKEN otherwise (their secret is not echoed).
fn runs_help(http: SocketAddr, token: &ApiToken, own: bool, file: &Path) -> String {
    let (origin, export, value) = if own {
        ("NETDIAG_API_TOKEN, yours", String::new(), "$NETDIAG_API_TOKEN".to_owned())
    } else {
        (
            "made for this run; set NETDIAG_API_TOKEN to choose one",
            format!("  export NETDIAG_API_TOKEN={}\n", token.expose()),
            token.expose().to_owned(),
        )
    };
    // The CLI's default collector (COLLECTOR_URL) is the demo's default address.
    let collector = match http.to_string().as_str() {
        defaults::COLLECTOR_HTTP => String::new(),
        _ => format!(" --collector http://{http}"),
    };
    format!(
        "On-demand runs need the API token ({origin}; also in {file}):\n{export}  \
         NETDIAG_API_TOKEN={value} netdiag probe{collector} --from tidb/demo-tidb-0 --to svc/tidb/demo-pd:2379\n  \
         netdiag probe{collector} --api-token-file {file} --from node/node-1 --to tidb/demo-pd-0 --port 2379\n  \
         curl -s -X POST http://{http}/api/v1/probe -H 'Content-Type: application/json' \\\n      \
         -H \"Authorization: Bearer {value}\" -d '{{\"from\": \"tidb/demo-tidb-0\", \"to\": \"svc/tidb/demo-pd:2379\"}}'\n",
        file = file.display(),
    )
}

/// One line of the live matrix; `denied` of its paths (failed, or degraded: a VIP policy shuts
/// for some backends) are shut as NetworkPolicy intends.
fn summary(state: &CollectorState, denied: u64) -> String {
    let snap = state.matrix(&MatrixQuery { level: MatrixLevel::Pod, kind: None }, now());
    let mut counts: BTreeMap<CellStatus, usize> = BTreeMap::new();
    for c in &snap.cells {
        *counts.entry(c.status).or_default() += 1;
    }
    let agents = state.agents(now());
    format!(
        "matrix: {} cells — {} ok, {} degraded, {} failed, {} unknown · {denied} paths denied by NetworkPolicy, as intended · agents connected: {}/{}",
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
    // On-demand runs need a token even on loopback: a browser on this machine is a loopback
    // caller too (see the module docs).
    let (token, own_token) = api_token()?;
    let token_file = state.dir.join("api-token");
    write_token(&token_file, &token)?;
    let help = runs_help(args.http, &token, own_token, &token_file);
    let runs = RunsConfig { token: Some(token), ..RunsConfig::default() };
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
            // A file inventory: no Kubernetes API to report to.
            kube_report: None,
        },
        stop_rx,
    ));
    let mut agents = spawn_agents(state, plan, args.interval)?;

    let watch = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(s) = status(state) {
            print!("{}", render_status(&s));
        }
        println!(
            "\nUI and API: http://{http}/  (matrix: http://{http}/api/v1/matrix, findings: http://{http}/api/v1/diagnosis)\n\
             From another terminal (as root):\n  netdiag matrix --problems\n  netdiag diagnose\n  netdiag lab fault node-pair node-1 node-2\n  netdiag lab heal\n\
             {help}\
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
            let diagnosis = collector.diagnosis(now());
            println!("{}", summary(&collector, diagnosis.denied_by_policy_total));
            let ids: Vec<String> =
                diagnosis.findings.iter().map(|f| format!("{}:{:?}", f.id, f.culprit)).collect();
            if last_ids.as_ref() != Some(&ids) {
                println!(
                    "{}",
                    render_diagnosis(&netdiag_collector::api::v1::DiagnosisResponse::from(diagnosis))
                );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_gives_commands_that_carry_the_token() {
        let token = ApiToken::new("0123abcd").unwrap();
        let file = Path::new("/run/netdiag/lab/api-token");
        let http: SocketAddr = "127.0.0.1:7600".parse().unwrap();
        let made = runs_help(http, &token, false, file);
        assert!(made.contains("export NETDIAG_API_TOKEN=0123abcd"), "{made}");
        assert!(made.contains("NETDIAG_API_TOKEN=0123abcd netdiag probe --from"), "{made}");
        assert!(made.contains("--api-token-file /run/netdiag/lab/api-token"), "{made}");
        assert!(made.contains("curl -s -X POST http://127.0.0.1:7600/api/v1/probe"), "{made}");
        assert!(made.contains("-H 'Content-Type: application/json'"), "{made}");
        assert!(made.contains("-H \"Authorization: Bearer 0123abcd\""), "{made}");
        // A token the caller chose is referred to, not echoed.
        let own = runs_help(http, &token, true, file);
        assert!(!own.contains("0123abcd") && own.contains("Bearer $NETDIAG_API_TOKEN"), "{own}");
        // Another address: the CLI is told where the collector is.
        let elsewhere = runs_help("127.0.0.1:17600".parse().unwrap(), &token, false, file);
        assert!(elsewhere.contains("netdiag probe --collector http://127.0.0.1:17600 --from"), "{elsewhere}");
    }

    #[test]
    fn generated_tokens_are_long_and_differ() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.expose().len(), 64);
        assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.expose(), b.expose());
    }
}
