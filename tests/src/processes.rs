//! The real binaries as separate processes on a lab: a collector (`netdiag-collector`) whose
//! agents' listener lives in the lab's underlay, and one `netdiag-agent` per node inside its
//! node's namespace — what a restart, a SIGKILL or a second replica needs, which in-process
//! daemons cannot show. Children are SIGKILLed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netdiag_lab::plan::LabPlan;

use crate::lab::TestLab;

/// The port agents connect to inside the lab's underlay (each lab has its own underlay).
pub const AGENTS_PORT: u16 = 7700;

/// A workspace binary (`netdiag-agent`, `netdiag-collector`, `kubectl-netdiag`):
/// `$NETDIAG_<NAME>_BIN` (`NETDIAG_AGENT_BIN`, `NETDIAG_KUBECTL_NETDIAG_BIN`), else next to this test's `deps/` directory (where
/// `cargo nextest run --workspace` and `cargo test --workspace` put it).
pub fn binary(name: &str) -> PathBuf {
    let var = format!("NETDIAG_{}_BIN", name.trim_start_matches("netdiag-").to_uppercase().replace('-', "_"));
    if let Some(p) = std::env::var_os(&var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>/deps/<test>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with --workspace (or `cargo build -p {}` first), or set {var}",
        path.display(),
        match name {
            "netdiag-agent" => "netdiag-agent",
            "kubectl-netdiag" => "netdiag",
            _ => "netdiag-collector",
        }
    );
    path
}

/// A free port on the host's loopback (bound, then released for the child to take).
pub fn free_loopback_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("addr").port()
}

/// A child process, SIGKILLed (and reaped) when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with its output in `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        cmd.stdin(Stdio::null()).stdout(file.try_clone().expect("log")).stderr(file);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Daemon { child: Some(child), log }
    }

    /// SIGKILL: no shutdown path runs, nothing is flushed.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, as Kubernetes stops a pod in a rollout, then waits (SIGKILL after `grace`).
    pub fn terminate(&mut self, grace: Duration) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let start = std::time::Instant::now();
            while start.elapsed() < grace {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The tail of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A collector for `lab`: agents on `<control ip>:AGENTS_PORT` in the underlay, the API on
/// `127.0.0.1:<http_port>`, plain gRPC (the lab is sealed), probe interval `interval`.
pub fn collector(lab: &TestLab, http_port: u16, tag: &str) -> Daemon {
    collector_replica(lab, AGENTS_PORT, http_port, tag)
}

/// One of several collector replicas for `lab`: its agents' listener on
/// `<control ip>:<agents_port>`, its API on `127.0.0.1:<http_port>`.
pub fn collector_replica(lab: &TestLab, agents_port: u16, http_port: u16, tag: &str) -> Daemon {
    let mut cmd = Command::new(binary("netdiag-collector"));
    cmd.arg("--inventory")
        .arg(format!("file:{}", lab.state.inventory_path().display()))
        .arg("--agents-listen")
        .arg(format!("{}:{agents_port}", lab.plan.control_ip))
        .arg("--agents-netns")
        .arg(LabPlan::netns_path(&lab.plan.underlay_netns))
        .arg("--http")
        .arg(format!("127.0.0.1:{http_port}"))
        .arg("--allow-insecure-agents")
        .args(["--log", "info"]);
    Daemon::spawn(cmd, lab.state.dir.join(format!("collector-{tag}.log")))
}

/// One agent per node of `lab`, each inside its node's namespace, probing every `interval`.
pub fn agents(lab: &TestLab, interval: Duration) -> Vec<Daemon> {
    agents_for(lab, interval, &[AGENTS_PORT])
}

/// One agent per node of `lab`, streaming to the collector replicas listening on each of
/// `agents_ports`.
pub fn agents_for(lab: &TestLab, interval: Duration, agents_ports: &[u16]) -> Vec<Daemon> {
    let collector = agents_ports
        .iter()
        .map(|port| format!("http://{}:{port}", lab.plan.control_ip))
        .collect::<Vec<_>>()
        .join(",");
    lab.plan
        .nodes
        .iter()
        .map(|node| {
            let mut cmd = Command::new(binary("netdiag-agent"));
            cmd.arg("--netns")
                .arg(LabPlan::netns_path(&node.netns))
                .args(["--node", node.name.as_str(), "--collector", &collector])
                .arg("--interval")
                .arg(format!("{}ms", interval.as_millis()))
                .arg("--inventory")
                .arg(format!("file:{}", lab.state.inventory_path().display()))
                // Inside the node's namespace: every agent can take the same port.
                .args(["--listen", "127.0.0.1:9464", "--log", "info"]);
            Daemon::spawn(cmd, lab.state.dir.join(format!("agent-{}.log", node.name)))
        })
        .collect()
}

/// The API address of a collector started with `http_port`.
pub fn api(http_port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], http_port))
}
