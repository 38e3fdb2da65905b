//! `netdiag lab …`: up, down, status, fault, heal (and the hidden `serve` that `up` starts).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use netdiag_lab::control;
use netdiag_lab::faults::FAULTS;
use netdiag_lab::state::LabState;
use netdiag_lab::status::{LabStatus, status};
use netdiag_lab::topology::{Overlay, Overrides, Topology};
use netdiag_model::inventory::ProxyMode;

use crate::output::{Format, table};

#[derive(Debug, Args)]
pub(crate) struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Args)]
pub(crate) struct NameArg {
    /// Which lab (its name prefixes every namespace).
    #[arg(long, env = "NETDIAG_LAB", default_value = "lab")]
    pub(crate) name: String,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct TopologyArgs {
    /// Topology file (YAML); the default is the seed's TiDB cluster on 3 nodes with a
    /// NetworkPolicy set the lab enforces (lab/topologies/default.yaml); lab/topologies/open.yaml
    /// is the same cluster with every path open.
    #[arg(long, env = "NETDIAG_TOPOLOGY")]
    pub(crate) topology: Option<PathBuf>,
    /// Lab name (overrides the topology's).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// kube-proxy rule style on the nodes.
    #[arg(long, value_enum)]
    pub(crate) proxy_mode: Option<ProxyModeArg>,
    /// How nodes carry pod traffic.
    #[arg(long, value_enum)]
    pub(crate) overlay: Option<OverlayArg>,
    /// Dual-stack: IPv6 addresses for nodes, pods and services too.
    #[arg(long)]
    pub(crate) ipv6: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ProxyModeArg {
    Iptables,
    Nftables,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum OverlayArg {
    Routed,
    Vxlan,
}

impl TopologyArgs {
    pub(crate) fn load(&self) -> Result<Topology> {
        let topo = match &self.topology {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read topology file {}", path.display()))?;
                Topology::parse(&text).with_context(|| format!("in {}", path.display()))?
            }
            None => Topology::default_lab()?,
        };
        let overrides = Overrides {
            name: self.name.clone(),
            proxy_mode: self.proxy_mode.map(|m| match m {
                ProxyModeArg::Iptables => ProxyMode::Iptables,
                ProxyModeArg::Nftables => ProxyMode::Nftables,
            }),
            overlay: self.overlay.map(|o| match o {
                OverlayArg::Routed => Overlay::Routed,
                OverlayArg::Vxlan => Overlay::Vxlan,
            }),
            ipv6: self.ipv6,
        };
        Ok(topo.with_overrides(&overrides)?)
    }
}

fn fault_help() -> String {
    let mut s = String::from("Faults:\n");
    for (name, args, what) in FAULTS {
        s.push_str(&format!("  {:<20} {:<38} {what}\n", name, args));
    }
    s
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build the lab (as root) and start its servers in the background.
    Up(TopologyArgs),
    /// Tear the lab down: servers, processes inside it, namespaces, state.
    Down(NameArg),
    /// Every namespace, interface, address and active fault.
    Status {
        #[command(flatten)]
        name: NameArg,
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Inject a named fault (see the list below); `heal` removes it.
    #[command(after_help = fault_help())]
    Fault {
        #[command(flatten)]
        name: NameArg,
        /// The fault's name.
        fault: String,
        /// The fault's arguments.
        args: Vec<String>,
        /// `loss` and `mtu` only: hit just the packets coming into (`in`) or going out of
        /// (`out`) the node; both directions without it.
        #[arg(long, value_parser = ["in", "out"])]
        direction: Option<String>,
    },
    /// Replace a running lab's namespaces and NetworkPolicies with those of a topology file
    /// (its nodes, pods and services must be the lab's); the lab re-applies its policy rules.
    Policies {
        #[command(flatten)]
        name: NameArg,
        /// The topology file whose `namespaces` and `network_policies` to enforce, e.g.
        /// lab/topologies/default.yaml (a file without them removes every policy).
        #[arg(long)]
        topology: PathBuf,
    },
    /// Remove one fault (by id) or, without an id, every fault.
    Heal {
        #[command(flatten)]
        name: NameArg,
        id: Option<u32>,
    },
    /// Run the lab's servers in the foreground (what `up` starts in the background).
    #[command(hide = true)]
    Serve(NameArg),
}

pub(crate) fn run(args: LabArgs) -> Result<ExitCode> {
    match args.command {
        LabCommand::Up(t) => up(&t),
        LabCommand::Down(n) => {
            let report = control::down(&n.name)?;
            if report.namespaces.is_empty() {
                println!("lab {} was not up; nothing to remove", n.name);
            } else {
                println!(
                    "lab {}: removed {} namespaces{}",
                    n.name,
                    report.namespaces.len(),
                    if report.killed.is_empty() {
                        String::new()
                    } else {
                        format!(", stopped processes {:?}", report.killed)
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Status { name, output } => {
            let state = LabState::new(&name.name);
            if !state.exists() {
                bail!("lab {} is not up; start it with `netdiag lab up`", name.name);
            }
            let s = status(&state)?;
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&s)?),
                Format::Table => print!("{}", render_status(&s)),
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Fault { name, fault, mut args, direction } => {
            // The lab parses the option with the other arguments, and refuses it where it
            // does not apply.
            args.extend(direction.into_iter().flat_map(|d| ["--direction".to_owned(), d]));
            let f = control::fault(&name.name, &fault, &args)?;
            println!("fault {} injected: {}", f.id, f.description);
            println!("undo it with: netdiag lab heal {}", f.id);
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Policies { name, topology } => {
            let text = std::fs::read_to_string(&topology)
                .with_context(|| format!("cannot read topology file {}", topology.display()))?;
            let topo = Topology::parse(&text).with_context(|| format!("in {}", topology.display()))?;
            let plan = control::set_policies(&name.name, &topo)?;
            println!(
                "lab {}: {} network policies over {} namespaces enforced",
                name.name,
                plan.network_policies.len(),
                plan.namespaces.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Heal { name, id } => {
            let healed = control::heal(&name.name, id)?;
            if healed.is_empty() {
                println!("no active fault");
            }
            for f in healed {
                println!("healed fault {}: {}", f.id, f.description);
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Serve(n) => serve(&n.name),
    }
}

fn up(t: &TopologyArgs) -> Result<ExitCode> {
    let topo = t.load()?;
    let started = Instant::now();
    let (state, report) = control::up(&topo)?;
    if let Some(old) = &report.cleaned_up {
        println!(
            "cleaned up a lab {} left behind ({} namespaces, {} processes)",
            state.name,
            old.namespaces.len(),
            old.killed.len()
        );
    }
    if let Err(e) = start_server(&state) {
        let _ = control::down(&state.name);
        return Err(e);
    }
    let s = status(&state)?;
    print!("{}", render_status(&s));
    println!(
        "\nlab {} up in {:.2}s; inventory: {}",
        state.name,
        started.elapsed().as_secs_f64(),
        state.inventory_path().display()
    );
    println!("next: `netdiag lab fault --help`, `netdiag lab status -o json`, `netdiag lab down`");
    Ok(ExitCode::SUCCESS)
}

/// Starts `netdiag lab serve` in its own process group (so the terminal's Ctrl-C does not reach
/// it) and waits until it has bound every socket.
fn start_server(state: &LabState) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find the netdiag binary to start the lab server")?;
    let log = std::fs::File::create(state.log_path())
        .with_context(|| format!("cannot create {}", state.log_path().display()))?;
    let mut child = std::process::Command::new(exe)
        .args(["lab", "serve", "--name", &state.name])
        .env("NETDIAG_CLI_LOG", std::env::var("NETDIAG_CLI_LOG").unwrap_or_else(|_| "info".into()))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the lab server")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if state.server_pid().is_some() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the lab server exited ({status}): {}", log_tail(&state.log_path()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    bail!("the lab server did not come up within 15s: {}", log_tail(&state.log_path()))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

fn serve(name: &str) -> Result<ExitCode> {
    let state = LabState::new(name);
    let plan = state.read_plan().with_context(|| format!("lab {name} is not up"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(async { netdiag_lab::serve::serve(&plan, &state, crate::demo::shutdown_signal()).await })?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn render_status(s: &LabStatus) -> String {
    let mut out = format!(
        "lab {}: {} · kube-proxy {} · overlay {}{} · control {} · DNS {}\n\n",
        s.name,
        if s.up { "up" } else { "DEGRADED (namespaces missing)" },
        s.proxy_mode,
        s.overlay,
        if s.ipv6 { " · dual-stack" } else { "" },
        s.control_ip,
        s.dns_ip,
    );
    let rows: Vec<Vec<String>> = s
        .namespaces
        .iter()
        .map(|n| {
            let uplink = n.interfaces.iter().find(|i| i.name == "eth0" || i.name == "br0");
            vec![
                n.name.clone(),
                n.role.to_owned(),
                n.of.clone().unwrap_or_default(),
                uplink
                    .map(|i| {
                        i.addresses
                            .iter()
                            .filter(|a| !a.starts_with("fe80"))
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default(),
                if n.exists { uplink.map(|i| i.state.clone()).unwrap_or_default() } else { "MISSING".into() },
            ]
        })
        .collect();
    out.push_str(&table(&["NAMESPACE", "ROLE", "OF", "ADDRESSES", "LINK"], &rows));
    out.push('\n');
    if s.faults.is_empty() {
        out.push_str("no active fault\n");
    } else {
        let rows: Vec<Vec<String>> = s
            .faults
            .iter()
            .map(|f| vec![f.id.to_string(), f.spec.name().to_owned(), f.description.clone()])
            .collect();
        out.push_str(&table(&["FAULT", "NAME", "EFFECT"], &rows));
    }
    out.push_str(&format!(
        "servers: {}\n",
        match s.server_pid {
            Some(pid) => format!("running (pid {pid})"),
            None => "NOT running (DNS and apps do not answer)".into(),
        }
    ));
    out
}
