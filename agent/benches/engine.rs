//! Benchmark (not a test): the agent's probe engine next to the classic tools, in one run, on the
//! same lab targets, and the real agent's memory at scale. It prints numbers and asserts only
//! that they could be taken. Run as root with `fping` and `nmap` installed:
//! `scripts/bench-agent` (installs them), or `cargo bench -p netdiag-agent --bench engine`.
//!
//! What is measured, every packet sent from inside the lab's `node-1` namespace (never the
//! host's, which may route the lab's prefixes to the real network):
//!
//! - **ICMP** — echo requests to the default lab's 10 pods, round-robin. *agent*: the engine's
//!   [`Pinger`] (one echo per call, [`IN_FLIGHT`] calls in flight, on a 2-worker runtime like
//!   the agent's); *peer*: `fping -c` unpaced (`-p 0 -i 0`); *floor*: a blocking loop over one
//!   raw socket, one echo in flight — the kernel's work plus a `sendto` and a `recv`.
//! - **TCP** — handshakes to every listening TCP port of those pods, the same (address, port)
//!   list repeated. *agent*: `tcp::connect` (socket made in the namespace, handshake, RST);
//!   *peer*: `nmap -sT`, one run per port set with the address list repeated on stdin; *floor*:
//!   a blocking `connect` with a timeout and an RST close, one at a time.
//! - **RSS** — the real `netdiag-agent` binary in `node-1` of a lab where that node holds 30
//!   pods and the cluster 100 (each pod probes the other 100): VmRSS sampled for
//!   [`AGENT_RUN`], VmHWM, CPU as a share of one core, probes finished (from its `/metrics`).
//!   No collector listens, so results pile up in its bounded buffer; the growth per buffered
//!   result gives an estimate of RSS once the buffer is full.
//!
//! How to read it: *probes/s* is wall-clock throughput. *CPU per probe* is user + system time
//! (`getrusage`) divided by probes: `RUSAGE_SELF` less the lab's in-process server threads for
//! the agent's engine, `RUSAGE_CHILDREN` for fping and nmap (including `ip netns exec` and each
//! nmap run's start-up), `RUSAGE_THREAD` for the floor. Work the kernel does in softirq for
//! the prober's own packets is charged to whichever process was running, alike for all three.
//! Each figure is the median of `ROUNDS` (default 3) interleaved rounds; `ICMP_PROBES` (20000)
//! and `TCP_PROBES` (10000) set the batch sizes. Budgets (printed, never asserted): CPU per probe
//! within 2× the kernel floor the issue measured (ICMP 8 µs, TCP 45 µs) and no worse than the
//! peer; RSS ≤ 12 MiB. The bench exits non-zero only when a tool is missing or a measurement
//! could not be taken.
//!
//! More environment: `BENCH_PARTS` (`probes,agent`, the default, or either alone);
//! `AGENT_PODS` (`30`): the agent run's pods on its node, a comma list for a scale check
//! (`30,60,110`: one lab and one run each, the other nodes keep [`PODS_ELSEWHERE`]);
//! `AGENT_SECONDS` (20): each run's length; `AGENT_BIN`: the agent binary to run (default: the
//! one Cargo builds for the bench; the shipped one is `cargo build --profile agent`); `AGENT_PERF` (a path prefix): record the agent's
//! measured window with `perf record -g` into `<prefix>-<pods>.data` (perf's own sampling adds
//! a little to the CPU figures of that run).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use netdiag_agent::plan::{PlanOptions, SourcePods, derive_plan};
use netdiag_agent::probe::icmp::Pinger;
use netdiag_agent::probe::{ICMP_BURST, ICMP_PAYLOAD, tcp};
use netdiag_agent::source::SourceNs;
use netdiag_lab::plan::LabPlan;
use netdiag_model::inventory::{Inventory, Protocol};
use netdiag_model::plan::Schedule;
use netdiag_model::probe::{Source, Target};
use netdiag_model::{NodeName, Port};
use netdiag_tests::lab::TestLab;
use socket2::{Domain, Socket, Type};

/// Probes in flight in the engine (the agent's default `max_concurrency`).
const IN_FLIGHT: usize = 64;
/// Per-probe timeout, the agent's default; also fping's `-t`.
const TIMEOUT: Duration = Duration::from_secs(1);
/// The kernel floor per probe the issue measured on this kind of machine, and the budget: 2×.
const FLOOR_ICMP_US: f64 = 8.0;
const FLOOR_TCP_US: f64 = 45.0;
const BUDGET_RSS_MIB: f64 = 12.0;
/// The scale of the RSS run: pods on the agent's node (the default of `AGENT_PODS`), pods
/// elsewhere.
const PODS_ON_NODE: usize = 30;
const PODS_ELSEWHERE: usize = 70;
/// How long the real agent runs (the default of `AGENT_SECONDS`), and how much of the start is
/// left out of its CPU figures.
const AGENT_RUN_SECS: usize = 20;
const AGENT_WARMUP: Duration = Duration::from_secs(5);
const AGENT_INTERVAL: Duration = Duration::from_secs(5);
/// Where the agent serves `/metrics`, inside the node's namespace.
const AGENT_METRICS: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));
/// The identifier of the floor loop's echoes (no pinger of this process is alive then).
const FLOOR_IDENT: u16 = 0xbe7c;

/// How the agent runs are made (from the environment).
#[derive(Debug, Clone)]
struct AgentRunOptions {
    pods_on_node: Vec<usize>,
    run: Duration,
    perf: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    preflight()?;
    let rounds = env_count("ROUNDS", 3)?;
    let icmp_n = env_count("ICMP_PROBES", 20_000)?;
    let tcp_n = env_count("TCP_PROBES", 10_000)?;
    let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "probes,agent".into());
    let parts: Vec<&str> = parts.split(',').map(str::trim).collect();
    ensure!(
        !parts.is_empty() && parts.iter().all(|p| ["probes", "agent"].contains(p)),
        "BENCH_PARTS={parts:?}: expected probes, agent or both (comma-separated)"
    );
    let opts = AgentRunOptions {
        pods_on_node: env_list("AGENT_PODS", PODS_ON_NODE)?,
        run: Duration::from_secs(env_count("AGENT_SECONDS", AGENT_RUN_SECS)? as u64),
        perf: std::env::var_os("AGENT_PERF").map(PathBuf::from),
    };
    ensure!(opts.run > AGENT_WARMUP + Duration::from_secs(2), "AGENT_SECONDS: at least 8");
    let started = Instant::now();
    let probes = if parts.contains(&"probes") { Some(probe_rounds(rounds, icmp_n, tcp_n)?) } else { None };
    let mut agents = vec![];
    if parts.contains(&"agent") {
        for &pods in &opts.pods_on_node {
            agents.push(agent_at_scale(pods, &opts)?);
        }
    }
    print_summary(probes.as_ref(), &agents);
    println!("\nbench took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn preflight() -> anyhow::Result<()> {
    ensure!(nix::unistd::Uid::effective().is_root(), "the engine bench builds a lab: run it as root");
    let missing: Vec<&str> = ["ip", "fping", "nmap"].into_iter().filter(|t| !on_path(t)).collect();
    ensure!(
        missing.is_empty(),
        "{} not found: install with `apt-get install -y fping nmap` (or run scripts/bench-agent, which does)",
        missing.join(" and ")
    );
    Ok(())
}

/// A comma list of positive whole numbers from the environment, or `[default]`.
fn env_list(name: &str, default: usize) -> anyhow::Result<Vec<usize>> {
    match std::env::var(name) {
        Err(_) => Ok(vec![default]),
        Ok(text) => text
            .split(',')
            .map(|n| match n.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("{name}={text:?}: expected positive whole numbers, comma-separated"),
            })
            .collect(),
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

fn env_count(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{name}={text:?}: expected a positive whole number"),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

/// User + system time of `who` (`RUSAGE_SELF`, `RUSAGE_CHILDREN` or `RUSAGE_THREAD`).
/// Through libc: the workspace's `nix` is built without its `resource` feature.
fn rusage(who: libc::c_int) -> anyhow::Result<Duration> {
    #[allow(unsafe_code)]
    // SAFETY: `rusage` is plain integers, so all-zero is a valid value; getrusage only writes
    // into the struct it is given, which lives for the whole call.
    let (rc, ru) = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        let rc = libc::getrusage(who, &raw mut ru);
        (rc, ru)
    };
    ensure!(rc == 0, "getrusage({who}): {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// The threads the in-process lab servers run on: every thread of this process but the main one,
/// listed right after the lab came up and before the bench starts any of its own.
fn server_threads() -> anyhow::Result<Vec<u32>> {
    let me = std::process::id();
    let mut tids = vec![];
    for entry in std::fs::read_dir("/proc/self/task").context("listing /proc/self/task")? {
        let name = entry?.file_name();
        let tid: u32 = name.to_string_lossy().parse().context("a thread id in /proc/self/task")?;
        if tid != me {
            tids.push(tid);
        }
    }
    ensure!(!tids.is_empty(), "the lab's servers have no thread of their own in this process");
    Ok(tids)
}

/// CPU time of one thread of this process, from `/proc/self/task/<tid>/schedstat` (ns on CPU).
fn thread_cpu(tid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/self/task/{tid}/schedstat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let ns: u64 = text
        .split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .with_context(|| format!("{path}: {text:?} has no run time"))?;
    Ok(Duration::from_nanos(ns))
}

/// Clocks read at the start and end of a batch.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    own: Duration,
    servers: Duration,
    children: Duration,
}

impl Mark {
    fn now(servers: &[u32]) -> anyhow::Result<Self> {
        let mut server_cpu = Duration::ZERO;
        for &tid in servers {
            server_cpu += thread_cpu(tid)?;
        }
        Ok(Self {
            at: Instant::now(),
            own: rusage(libc::RUSAGE_SELF)?,
            servers: server_cpu,
            children: rusage(libc::RUSAGE_CHILDREN)?,
        })
    }

    /// This process's CPU since `start`, the lab servers' share left out (and returned apart).
    fn own_since(&self, start: &Mark) -> (Duration, Duration) {
        let servers = self.servers.saturating_sub(start.servers);
        (self.own.saturating_sub(start.own).saturating_sub(servers), servers)
    }
}

/// One timed batch of probes by one prober.
#[derive(Debug, Clone, Copy)]
struct Batch {
    probes: u64,
    answered: u64,
    wall: Duration,
    cpu: Duration,
    /// CPU of the lab's servers during the batch, not counted in `cpu`.
    servers: Duration,
}

impl Batch {
    fn per_sec(&self) -> f64 {
        self.probes as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.probes.max(1) as f64
    }
    fn servers_us(&self) -> f64 {
        self.servers.as_secs_f64() * 1e6 / self.probes.max(1) as f64
    }
    fn loss_pct(&self) -> f64 {
        100.0 * self.probes.saturating_sub(self.answered) as f64 / self.probes.max(1) as f64
    }
    fn line(&self) -> String {
        format!(
            "{:>9.0} probes/s  {:>6.1} µs CPU/probe  loss {:>5.2} %  ({} probes, {:.0} ms)",
            self.per_sec(),
            self.cpu_us(),
            self.loss_pct(),
            self.probes,
            self.wall.as_secs_f64() * 1e3
        )
    }
}

/// Every batch of one prober, summarized by medians.
#[derive(Debug, Default)]
struct Series(Vec<Batch>);

impl Series {
    fn median(&self, f: impl Fn(&Batch) -> f64) -> f64 {
        let mut v: Vec<f64> = self.0.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }
    fn per_sec(&self) -> f64 {
        self.median(Batch::per_sec)
    }
    fn cpu_us(&self) -> f64 {
        self.median(Batch::cpu_us)
    }
    /// Loss over every batch together.
    fn loss_pct(&self) -> f64 {
        let sent: u64 = self.0.iter().map(|b| b.probes).sum();
        let answered: u64 = self.0.iter().map(|b| b.answered).sum();
        100.0 * sent.saturating_sub(answered) as f64 / sent.max(1) as f64
    }
}

// ---------------------------------------------------------------------------------------------
// ICMP and TCP, side by side

/// Agent, peer and floor for one probe kind.
#[derive(Debug, Default)]
struct Comparison {
    agent: Series,
    peer: Series,
    floor: Series,
    peer_command: String,
}

#[derive(Debug)]
struct ProbeRounds {
    icmp: Comparison,
    tcp: Comparison,
}

/// Where the probes go: the default lab's pods, seen from `node-1`.
#[derive(Debug)]
struct Targets {
    node: NodeName,
    netns: String,
    netns_path: PathBuf,
    pod_ips: Vec<Ipv4Addr>,
    icmp: Vec<Target>,
    /// Every (pod, TCP port) the lab listens on.
    tcp: Vec<Target>,
    /// nmap's view of the same list: the pods grouped by their port set.
    tcp_groups: BTreeMap<String, Vec<Ipv4Addr>>,
}

impl Targets {
    fn of(lab: &TestLab) -> Self {
        let node = lab.node("node-1");
        let (mut icmp, mut tcp, mut pod_ips) = (vec![], vec![], vec![]);
        let mut tcp_groups: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
        for pod in &lab.plan.pods {
            pod_ips.push(pod.ip);
            icmp.push(Target::Pod { pod: pod.pod.clone(), ip: pod.ip.into(), port: None });
            let ports: Vec<Port> = lab
                .plan
                .listening_ports(pod)
                .into_iter()
                .filter(|(_, proto)| *proto == Protocol::Tcp)
                .map(|(port, _)| port)
                .collect();
            for &port in &ports {
                tcp.push(Target::Pod { pod: pod.pod.clone(), ip: pod.ip.into(), port: Some(port) });
            }
            if !ports.is_empty() {
                let key = ports.iter().map(|p| p.get().to_string()).collect::<Vec<_>>().join(",");
                tcp_groups.entry(key).or_default().push(pod.ip);
            }
        }
        Self {
            node: node.name.clone(),
            netns: node.netns.clone(),
            netns_path: LabPlan::netns_path(&node.netns),
            pod_ips,
            icmp,
            tcp,
            tcp_groups,
        }
    }
}

fn probe_rounds(rounds: usize, icmp_n: usize, tcp_n: usize) -> anyhow::Result<ProbeRounds> {
    let lab = TestLab::up();
    let servers = server_threads()?;
    let t = Targets::of(&lab);
    ensure!(!t.icmp.is_empty() && !t.tcp.is_empty(), "the default lab has no pods to probe");
    // Whole rounds over the targets, so every prober gets exactly the same list.
    let per_pod = icmp_n.div_ceil(t.icmp.len());
    let icmp_total = per_pod * t.icmp.len();
    let tcp_reps = tcp_n.div_ceil(t.tcp.len());
    let tcp_total = tcp_reps * t.tcp.len();
    println!(
        "lab {} up: probing from {} ({} pods; {} TCP ports among them); {rounds} rounds",
        lab.name(),
        t.netns,
        t.icmp.len(),
        t.tcp.len()
    );
    let mut icmp = Comparison::default();
    let mut tcp_cmp = Comparison::default();
    for round in 1..=rounds {
        println!("round {round}:");
        let floor = icmp_floor(&t, icmp_total)?;
        println!("  icmp floor  {}", floor.line());
        icmp.floor.0.push(floor);
        let agent = icmp_engine(&t, icmp_total, &servers)?;
        println!("  icmp agent  {}", agent.line());
        icmp.agent.0.push(agent);
        let (peer, command) = icmp_fping(&t, per_pod)?;
        println!("  icmp fping  {}", peer.line());
        icmp.peer.0.push(peer);
        icmp.peer_command = command;

        let floor = tcp_floor(&t, tcp_total)?;
        println!("  tcp floor   {}", floor.line());
        tcp_cmp.floor.0.push(floor);
        let agent = tcp_engine(&t, tcp_total, &servers)?;
        println!(
            "  tcp agent   {}  (+{:.1} µs/probe in the lab's servers, not counted)",
            agent.line(),
            agent.servers_us()
        );
        tcp_cmp.agent.0.push(agent);
        let (peer, command) = tcp_nmap(&t, tcp_reps)?;
        println!("  tcp nmap    {}", peer.line());
        tcp_cmp.peer.0.push(peer);
        tcp_cmp.peer_command = command;
    }
    drop(lab);
    Ok(ProbeRounds { icmp, tcp: tcp_cmp })
}

/// The agent binary's runtime shape: multi-threaded, two workers.
fn agent_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting a tokio runtime")
}

/// Runs `probe(i)` for every `i` below `total`, at most `in_flight` at once (as many tasks, each
/// taking the next index), and sums what the probes return.
async fn lanes<F, Fut>(total: usize, in_flight: usize, probe: F) -> anyhow::Result<u64>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = u64> + Send,
{
    let probe = Arc::new(probe);
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..in_flight.min(total) {
        let (probe, next) = (probe.clone(), next.clone());
        set.spawn(async move {
            let mut sum = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return sum;
                }
                sum += probe(i).await;
            }
        });
    }
    let mut sum = 0;
    while let Some(lane) = set.join_next().await {
        sum += lane.context("a probe task panicked")?;
    }
    Ok(sum)
}

fn icmp_engine(t: &Targets, total: usize, servers: &[u32]) -> anyhow::Result<Batch> {
    agent_runtime()?.block_on(async {
        let src = SourceNs::enter(Source::Node(t.node.clone()), &t.netns_path, None)
            .context("entering the node's namespace")?;
        let pinger = Arc::new(Pinger::new(&src).await.context("opening the engine's ICMP sockets")?);
        let targets: Arc<[Target]> = t.icmp.clone().into();
        let echo = move |i: usize| {
            let (pinger, targets) = (pinger.clone(), targets.clone());
            async move {
                let r = pinger.ping(&targets[i % targets.len()], 1, ICMP_PAYLOAD, TIMEOUT).await;
                r.burst.map_or(0, |b| u64::from(b.received()))
            }
        };
        let echo = Arc::new(echo);
        let warm = echo.clone();
        lanes(t.icmp.len(), IN_FLIGHT, move |i| warm(i)).await?;
        let start = Mark::now(servers)?;
        let answered = lanes(total, IN_FLIGHT, move |i| echo(i)).await?;
        let end = Mark::now(servers)?;
        let (cpu, servers) = end.own_since(&start);
        Ok(Batch { probes: total as u64, answered, wall: end.at - start.at, cpu, servers })
    })
}

fn tcp_engine(t: &Targets, total: usize, servers: &[u32]) -> anyhow::Result<Batch> {
    agent_runtime()?.block_on(async {
        let src = Arc::new(
            SourceNs::enter(Source::Node(t.node.clone()), &t.netns_path, None)
                .context("entering the node's namespace")?,
        );
        let targets: Arc<[Target]> = t.tcp.clone().into();
        let connect = Arc::new(move |i: usize| {
            let (src, targets) = (src.clone(), targets.clone());
            async move {
                let r = tcp::connect(&src, &targets[i % targets.len()], TIMEOUT).await;
                u64::from(r.outcome.is_ok())
            }
        });
        let warm = connect.clone();
        lanes(t.tcp.len(), IN_FLIGHT, move |i| warm(i)).await?;
        let start = Mark::now(servers)?;
        let answered = lanes(total, IN_FLIGHT, move |i| connect(i)).await?;
        let end = Mark::now(servers)?;
        let (cpu, servers) = end.own_since(&start);
        Ok(Batch { probes: total as u64, answered, wall: end.at - start.at, cpu, servers })
    })
}

/// The ICMP checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 =
        bytes.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(seq: u16) -> Vec<u8> {
    let mut p = vec![8, 0, 0, 0];
    p.extend(FLOOR_IDENT.to_be_bytes());
    p.extend(seq.to_be_bytes());
    p.extend((0..ICMP_PAYLOAD).map(|i| (i % 251) as u8));
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// Whether a raw IPv4 datagram is the echo reply to our request `seq`.
fn is_our_reply(packet: &[u8], seq: u16) -> bool {
    let ihl = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
    match packet.get(ihl..ihl + 8) {
        Some(icmp) => {
            icmp[0] == 0 && icmp[4..6] == FLOOR_IDENT.to_be_bytes() && icmp[6..8] == seq.to_be_bytes()
        }
        None => false,
    }
}

/// One echo at a time over a blocking raw socket; returns replies received.
fn floor_echoes(sock: &Socket, ips: &[Ipv4Addr], total: usize, first_seq: u16) -> anyhow::Result<u64> {
    let mut buf = [0u8; 2048];
    let mut answered = 0;
    for i in 0..total {
        let seq = first_seq.wrapping_add(i as u16);
        let to = SocketAddr::V4(SocketAddrV4::new(ips[i % ips.len()], 0));
        sock.send_to(&echo_request(seq), &to.into()).context("sending an echo request")?;
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            match (&*sock).read(&mut buf) {
                Ok(n) if is_our_reply(&buf[..n], seq) => {
                    answered += 1;
                    break;
                }
                Ok(_) => {}
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break;
                }
                Err(e) => return Err(e).context("receiving echo replies"),
            }
        }
    }
    Ok(answered)
}

fn icmp_floor(t: &Targets, total: usize) -> anyhow::Result<Batch> {
    let ips = t.pod_ips.clone();
    netdiag_netns::run_in(&t.netns_path, move || -> anyhow::Result<Batch> {
        let sock = Socket::new(Domain::IPV4, Type::RAW, Some(socket2::Protocol::ICMPV4))
            .context("opening a raw ICMP socket")?;
        sock.set_read_timeout(Some(TIMEOUT))?;
        floor_echoes(&sock, &ips, ips.len(), 0)?;
        let (at, cpu) = (Instant::now(), rusage(libc::RUSAGE_THREAD)?);
        let answered = floor_echoes(&sock, &ips, total, 1000)?;
        let (wall, cpu) = (at.elapsed(), rusage(libc::RUSAGE_THREAD)? - cpu);
        Ok(Batch { probes: total as u64, answered, wall, cpu, servers: Duration::ZERO })
    })
    .context("running the ICMP floor loop in the node's namespace")?
}

fn tcp_floor(t: &Targets, total: usize) -> anyhow::Result<Batch> {
    let addrs: Vec<SocketAddr> = t.tcp.iter().filter_map(Target::socket_addr).collect();
    netdiag_netns::run_in(&t.netns_path, move || -> anyhow::Result<Batch> {
        let connects = |n: usize| -> anyhow::Result<u64> {
            let mut ok = 0;
            for i in 0..n {
                let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(socket2::Protocol::TCP))
                    .context("opening a TCP socket")?;
                sock.set_linger(Some(Duration::ZERO))?;
                ok += u64::from(sock.connect_timeout(&addrs[i % addrs.len()].into(), TIMEOUT).is_ok());
            }
            Ok(ok)
        };
        connects(addrs.len())?;
        let (at, cpu) = (Instant::now(), rusage(libc::RUSAGE_THREAD)?);
        let answered = connects(total)?;
        let (wall, cpu) = (at.elapsed(), rusage(libc::RUSAGE_THREAD)? - cpu);
        Ok(Batch { probes: total as u64, answered, wall, cpu, servers: Duration::ZERO })
    })
    .context("running the TCP floor loop in the node's namespace")?
}

/// `ip netns exec <node> <tool> <args…>`, its stdin fed from `input` while its output is
/// collected; fails unless it exits with one of `ok_codes`.
fn run_in_node(
    netns: &str,
    tool: &str,
    args: &[String],
    input: String,
    ok_codes: &[i32],
) -> anyhow::Result<std::process::Output> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns, tool])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {tool}"))?;
    let mut stdin = child.stdin.take().context("the child's stdin")?;
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().with_context(|| format!("waiting for {tool}"))?;
    let _ = writer.join();
    let code = out.status.code().unwrap_or(-1);
    ensure!(
        ok_codes.contains(&code),
        "{tool} exited with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out)
}

fn icmp_fping(t: &Targets, per_pod: usize) -> anyhow::Result<(Batch, String)> {
    let mut args: Vec<String> =
        ["-q", "-c", &per_pod.to_string(), "-p", "0", "-i", "0", "-t", &TIMEOUT.as_millis().to_string()]
            .map(String::from)
            .into();
    let shown = format!("ip netns exec {} fping {} <{} pod IPs>", t.netns, args.join(" "), t.pod_ips.len());
    args.extend(t.pod_ips.iter().map(Ipv4Addr::to_string));
    let start = Mark::now(&[])?;
    // fping exits 1 when some target did not answer: that is loss, not failure.
    let out = run_in_node(&t.netns, "fping", &args, String::new(), &[0, 1])?;
    let end = Mark::now(&[])?;
    // `-q -c` prints per target on stderr: `10.244.1.2 : xmt/rcv/%loss = 2000/2000/0%, …`.
    let text = String::from_utf8_lossy(&out.stderr);
    let (mut sent, mut received, mut seen) = (0u64, 0u64, 0usize);
    for line in text.lines() {
        let Some((_, counts)) = line.split_once("xmt/rcv/%loss = ") else { continue };
        let mut it = counts.split(['/', ',']);
        let (Some(x), Some(r)) = (it.next(), it.next()) else { continue };
        sent += x.trim().parse::<u64>().with_context(|| format!("fping's line {line:?}"))?;
        received += r.trim().parse::<u64>().with_context(|| format!("fping's line {line:?}"))?;
        seen += 1;
    }
    ensure!(seen == t.pod_ips.len(), "fping reported {seen} of {} targets: {text}", t.pod_ips.len());
    let cpu = end.children.saturating_sub(start.children);
    Ok((
        Batch { probes: sent, answered: received, wall: end.at - start.at, cpu, servers: Duration::ZERO },
        shown,
    ))
}

fn nmap_args(ports: &str) -> Vec<String> {
    ["-sT", "-n", "-Pn", "--max-retries", "0", "--min-rate", "100000", "-p", ports, "-oG", "-", "-iL", "-"]
        .map(String::from)
        .into()
}

fn tcp_nmap(t: &Targets, reps: usize) -> anyhow::Result<(Batch, String)> {
    let start = Mark::now(&[])?;
    let (mut attempts, mut open, mut expected) = (0u64, 0u64, 0u64);
    let mut shown = vec![];
    for (ports, ips) in &t.tcp_groups {
        let mut list = String::new();
        for _ in 0..reps {
            for ip in ips {
                let _ = writeln!(list, "{ip}");
            }
        }
        let out = run_in_node(&t.netns, "nmap", &nmap_args(ports), list, &[0])?;
        shown.push(format!(
            "ip netns exec {} nmap {}   # stdin: {} × {} pod IPs",
            t.netns,
            nmap_args(ports).join(" "),
            reps,
            ips.len()
        ));
        expected += (reps * ips.len() * ports.split(',').count()) as u64;
        // Grepable output: `Host: 10.244.1.3 ()\tPorts: 2379/open/tcp//etcd-client///, …`.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((_, entries)) = line.split_once("Ports: ") else { continue };
            for entry in entries.split(", ") {
                attempts += 1;
                open += u64::from(entry.split('/').nth(1) == Some("open"));
            }
        }
    }
    let end = Mark::now(&[])?;
    // Ports nmap did not report (e.g. folded into "Ignored State") count as unanswered.
    ensure!(attempts <= expected, "nmap reported {attempts} ports, more than the {expected} asked");
    let cpu = end.children.saturating_sub(start.children);
    let batch =
        Batch { probes: expected, answered: open, wall: end.at - start.at, cpu, servers: Duration::ZERO };
    Ok((batch, shown.join("\n  ")))
}

// ---------------------------------------------------------------------------------------------
// The real agent at scale

/// A cluster of 3 nodes: `node-1` holds `pods_on_node` pods, the others [`PODS_ELSEWHERE`];
/// every pod is a generic app on port 8080; the cluster DNS pod and service the lab requires.
fn scale_topology(pods_on_node: usize) -> String {
    let mut y = String::from(
        "name: lab\nproxy_mode: iptables\noverlay: routed\nipv6: false\n\
         node_cidr: 172.29.0.0/24\npod_cidr: 10.244.0.0/16\nservice_cidr: 10.96.0.0/16\n\
         cluster_domain: cluster.local\ndns_ip: 10.96.0.10\n\
         nodes:\n  - name: node-1\n  - name: node-2\n  - name: node-3\npods:\n\
         \x20 - { namespace: kube-system, name: coredns-0, node: node-2, app: dns, labels: { k8s-app: kube-dns } }\n",
    );
    for i in 0..pods_on_node + PODS_ELSEWHERE {
        let node = if i < pods_on_node { 1 } else { 2 + (i - pods_on_node) % 2 };
        let _ = writeln!(
            y,
            "  - {{ namespace: bench, name: app-{i:03}, node: node-{node}, app: generic, ports: [8080] }}"
        );
    }
    y.push_str(
        "services:\n  - namespace: kube-system\n    name: kube-dns\n    type: ClusterIP\n    cluster_ip: 10.96.0.10\n\
         \x20   selector: { k8s-app: kube-dns }\n    ports:\n\
         \x20     - { name: dns, port: 53, target_port: 53, protocol: UDP }\n\
         \x20     - { name: dns-tcp, port: 53, target_port: 53, protocol: TCP }\n",
    );
    y
}

#[derive(Debug)]
struct AgentAtScale {
    lab_up: Duration,
    cluster_pods: usize,
    node_pods: usize,
    planned: usize,
    planned_by_kind: BTreeMap<&'static str, usize>,
    max_rate: u32,
    /// Memory in KiB: VmRSS (the most sampled), VmHWM, and RssAnon / RssFile at the end.
    rss_max: u64,
    hwm: u64,
    anon: u64,
    file: u64,
    threads: u64,
    /// Agent CPU, probes finished and RssAnon growth between the end of the warm-up and the
    /// end of the run.
    window: Duration,
    cpu: Duration,
    /// CPU of the commands the agent ran and waited for (its inspections' `iptables-save`,
    /// `nft`), over the same window.
    children_cpu: Duration,
    probes: u64,
    anon_growth: u64,
    /// RssAnon (KiB) at the end of the warm-up.
    anon_warm: u64,
    /// Probes finished since the start: with no collector, every result is still held.
    held: u64,
    buffer_capacity: usize,
    /// WARN and ERROR log messages, with how often each came.
    complaints: BTreeMap<String, usize>,
    /// Resident KiB by what is mapped (the binary, each library, `[heap]`, other anonymous
    /// memory) at the end of the run, largest first.
    rss_by_mapping: Vec<(String, u64)>,
}

/// Stops the agent when the bench leaves early; [`Agent::stop`] is the orderly way.
#[derive(Debug)]
struct Agent(Option<Child>);

impl Agent {
    fn pid(&self) -> anyhow::Result<u32> {
        self.0.as_ref().map(Child::id).context("the agent was already stopped")
    }

    /// SIGTERM, then up to 10 s for a clean exit.
    fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.0.take().context("the agent was already stopped")?;
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).context("signalling the agent")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the agent did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `/proc/<pid>/status` fields in kB (or plain counts).
fn status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("{path} has no {field}"))
}

/// Resident KiB of `pid` by mapping (`/proc/<pid>/smaps`): files by name, `[heap]` and
/// `[stack]` as named, every other anonymous mapping (thread stacks, malloc's arenas) together.
fn rss_by_mapping(pid: u32) -> anyhow::Result<Vec<(String, u64)>> {
    let path = format!("/proc/{pid}/smaps");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first().is_some_and(|f| f.contains('-') && !f.ends_with(':')) {
            current = match fields.get(5) {
                Some(name) => name.rsplit('/').next().unwrap_or(name).to_owned(),
                None => "anonymous".to_owned(),
            };
        } else if fields.first() == Some(&"Rss:") {
            *by.entry(current.clone()).or_default() +=
                fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    let mut out: Vec<(String, u64)> = by.into_iter().filter(|(_, kib)| *kib > 0).collect();
    out.sort_by_key(|(_, kib)| std::cmp::Reverse(*kib));
    Ok(out)
}

/// utime + stime of `pid` from `/proc/<pid>/stat`, and cutime + cstime (its waited-for
/// children).
fn process_cpu(pid: u32) -> anyhow::Result<(Duration, Duration)> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = text.rsplit_once(')').map(|(_, r)| r).with_context(|| format!("{path}: no command field"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |range: std::ops::Range<usize>| -> u64 {
        fields.get(range).into_iter().flatten().filter_map(|f| f.parse::<u64>().ok()).sum()
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.context("no CLK_TCK")? as f64;
    let secs = |t: u64| Duration::from_secs_f64(t as f64 / hz);
    Ok((secs(ticks(11..13)), secs(ticks(13..15))))
}

/// The agent's `/metrics`, fetched over a socket made inside the node's namespace.
fn scrape(netns: &Path) -> anyhow::Result<String> {
    let sock = netdiag_netns::socket_in(netns, Domain::IPV4, Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.connect_timeout(&AGENT_METRICS.into(), Duration::from_secs(2))
        .with_context(|| format!("connecting to the agent's /metrics on {AGENT_METRICS}"))?;
    let mut stream = std::net::TcpStream::from(sock);
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text).context("reading the agent's /metrics")?;
    ensure!(text.starts_with("HTTP/1.1 200"), "the agent's /metrics answered {:?}", text.lines().next());
    Ok(text)
}

/// Probes the agent has finished, from its metrics.
fn probes_finished(netns: &Path) -> anyhow::Result<u64> {
    let text = scrape(netns)?;
    let value =
        |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as u64;
    Ok(text.lines().filter(|l| l.starts_with("netdiag_agent_probes_total{")).map(value).sum())
}

/// WARN and ERROR messages of a JSON log, counted.
fn complaints(log: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let level = v["level"].as_str().unwrap_or_default();
        if level == "WARN" || level == "ERROR" {
            let message = v["fields"]["message"].as_str().unwrap_or_default();
            *out.entry(format!("{level} {message}")).or_insert(0) += 1;
        }
    }
    out
}

/// The agent binary to run: `AGENT_BIN` (e.g. one built with `--profile agent`, as shipped),
/// else the one Cargo built for this bench.
fn agent_binary() -> PathBuf {
    std::env::var_os("AGENT_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_netdiag-agent")), PathBuf::from)
}

/// `perf record -g` on `pid` until [`Perf::stop`].
#[derive(Debug)]
struct Perf(Child);

impl Perf {
    fn start(pid: u32, out: &Path) -> anyhow::Result<Self> {
        let child = Command::new("perf")
            .args(["record", "-F", "499", "-g", "-q", "-p", &pid.to_string(), "-o"])
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting perf record (AGENT_PERF is set: install linux-tools / perf)")?;
        Ok(Self(child))
    }

    /// SIGINT, so perf writes its file, then waits for it.
    fn stop(mut self) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).context("signalling perf")?;
        let status = self.0.wait().context("waiting for perf")?;
        // perf ends on the SIGINT it was sent, its file written.
        let interrupted = std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGINT);
        ensure!(status.success() || interrupted, "perf record exited with {status}");
        Ok(())
    }
}

fn agent_at_scale(pods_on_node: usize, opts: &AgentRunOptions) -> anyhow::Result<AgentAtScale> {
    let started = Instant::now();
    let lab = TestLab::from_yaml(&scale_topology(pods_on_node));
    let lab_up = started.elapsed();
    let node = lab.node("node-1");
    let netns = LabPlan::netns_path(&node.netns);
    let inventory_path = lab.state.inventory_path();
    let text = std::fs::read_to_string(&inventory_path)
        .with_context(|| format!("reading {}", inventory_path.display()))?;
    let inv = Inventory::from_yaml(&text).context("the lab's inventory")?;
    // What the agent derives with the flags below and its defaults (1 s timeout, in flight and
    // starts per second as its config says).
    let max_rate = netdiag_model::config::defaults::MAX_PROBES_PER_SECOND;
    let schedule =
        Schedule::new(AGENT_INTERVAL, TIMEOUT, netdiag_model::config::defaults::MAX_CONCURRENCY, max_rate)?;
    let plan = derive_plan(
        &inv,
        &node.name,
        &PlanOptions { schedule, http_checks: vec![], mtu: true, sources: SourcePods::KnownNetns },
        NonZeroU64::MIN,
    );
    let mut planned_by_kind = BTreeMap::new();
    for p in &plan.probes {
        *planned_by_kind.entry(p.kind.as_str()).or_insert(0) += 1;
    }
    println!(
        "\nlab {} up in {:.1} s: {} pods, {} on {}; running the agent for {} s",
        lab.name(),
        lab_up.as_secs_f64(),
        inv.pods.len(),
        inv.pods_on(&node.name).count(),
        node.name,
        opts.run.as_secs()
    );

    let log_path = std::env::temp_dir().join(format!("netdiag-engine-bench-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let collector = format!("http://{}:7700", lab.plan.control_ip);
    let child = Command::new(agent_binary())
        .arg("--netns")
        .arg(&netns)
        .args(["--node", node.name.as_str(), "--collector", &collector])
        .args(["--interval", &format!("{}s", AGENT_INTERVAL.as_secs())])
        .args(["--log-format", "json", "--listen", &AGENT_METRICS.to_string()])
        .arg("--inventory")
        .arg(format!("file:{}", inventory_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting netdiag-agent")?;
    let mut agent = Agent(Some(child));
    let pid = agent.pid()?;
    let log_tail = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("its log ({}):\n{}", log_path.display(), lines[lines.len().saturating_sub(15)..].join("\n"))
    };

    let start = Instant::now();
    let (mut rss_max, mut threads) = (0, 0);
    // (when, agent CPU and its children's, probes finished, RssAnon) at the end of the warm-up.
    let mut warm: Option<(Instant, (Duration, Duration), u64, u64)> = None;
    let mut perf = None;
    while start.elapsed() < opts.run {
        if let Some(Some(status)) = agent.0.as_mut().map(Child::try_wait).transpose()? {
            bail!("the agent exited early ({status}); {}", log_tail());
        }
        rss_max = rss_max.max(status_field(pid, "VmRSS")?);
        threads = threads.max(status_field(pid, "Threads")?);
        if warm.is_none() && start.elapsed() >= AGENT_WARMUP {
            let probes = probes_finished(&netns).with_context(log_tail)?;
            warm = Some((Instant::now(), process_cpu(pid)?, probes, status_field(pid, "RssAnon")?));
            if let Some(prefix) = &opts.perf {
                let mut name = prefix.clone().into_os_string();
                name.push(format!("-{pods_on_node}.data"));
                perf = Some(Perf::start(pid, Path::new(&name))?);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (t0, cpu0, probes0, anon0) = warm.context("the run ended before its warm-up did")?;
    let held = probes_finished(&netns).with_context(log_tail)?;
    let (cpu1, t1) = (process_cpu(pid)?, Instant::now());
    if let Some(perf) = perf {
        perf.stop()?;
    }
    let (anon, file) = (status_field(pid, "RssAnon")?, status_field(pid, "RssFile")?);
    rss_max = rss_max.max(status_field(pid, "VmRSS")?);
    let hwm = status_field(pid, "VmHWM")?;
    let rss_by_mapping = rss_by_mapping(pid)?;
    let status = agent.stop()?;
    ensure!(status.success(), "the agent exited with {status} after SIGTERM; {}", log_tail());
    let complaints = complaints(&std::fs::read_to_string(&log_path).unwrap_or_default());
    let _ = std::fs::remove_file(&log_path);
    let result = AgentAtScale {
        lab_up,
        cluster_pods: inv.pods.len(),
        node_pods: inv.pods_on(&node.name).count(),
        planned: plan.probes.len(),
        planned_by_kind,
        max_rate,
        rss_max,
        hwm,
        anon,
        file,
        threads,
        window: t1 - t0,
        cpu: cpu1.0.saturating_sub(cpu0.0),
        children_cpu: cpu1.1.saturating_sub(cpu0.1),
        probes: held.saturating_sub(probes0),
        anon_growth: anon.saturating_sub(anon0),
        anon_warm: anon0,
        held,
        buffer_capacity: netdiag_agent::buffer::BufferLimits::default().capacity,
        complaints,
        rss_by_mapping,
    };
    drop(lab);
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Output

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "OVER" }
}

/// Throughput, CPU and loss rows for one probe kind.
fn comparison_rows(
    c: &Comparison,
    (kind, unit, units): (&str, &str, &str),
    peer: &str,
    issue_floor_us: f64,
) -> Vec<[String; 5]> {
    let budget = 2.0 * issue_floor_us;
    let within = c.agent.cpu_us() <= budget && c.agent.cpu_us() <= c.peer.cpu_us();
    vec![
        [
            format!("{kind} {units}/s"),
            format!("{:.0}", c.agent.per_sec()),
            format!("{:.0} ({peer})", c.peer.per_sec()),
            format!("{:.0}", c.floor.per_sec()),
            "—".into(),
        ],
        [
            format!("{kind} CPU µs/{unit}"),
            format!("{:.1}", c.agent.cpu_us()),
            format!("{:.1} ({peer})", c.peer.cpu_us()),
            format!("{:.1}", c.floor.cpu_us()),
            format!(
                "≤ {budget:.0} (2 × {issue_floor_us:.0}; 2 × floor here: {:.0}) and ≤ {peer}: {}",
                2.0 * c.floor.cpu_us(),
                verdict(within)
            ),
        ],
        [
            format!("{kind} {units} unanswered %"),
            format!("{:.2}", c.agent.loss_pct()),
            format!("{:.2} ({peer})", c.peer.loss_pct()),
            format!("{:.2}", c.floor.loss_pct()),
            "—".into(),
        ],
    ]
}

fn print_table(rows: &[[String; 5]]) {
    let header = ["metric", "agent", "peer", "floor (here)", "budget"].map(String::from);
    let width = |c: usize| rows.iter().chain([&header]).map(|r| r[c].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..5).map(width).collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(&header);
    line(&widths.iter().map(|&w| "-".repeat(w)).collect::<Vec<_>>());
    for r in rows {
        line(r);
    }
}

/// What the engine's own CPU per probe comes to over a plan's mix of kinds: an ICMP probe is
/// [`ICMP_BURST`] echoes; TCP, DNS and MTU probes are counted at one TCP connect each (a DNS
/// query or an MTU step is one exchange, like a handshake).
fn engine_us_per_probe(p: &ProbeRounds, by_kind: &BTreeMap<&'static str, usize>) -> f64 {
    let (mut us, mut n) = (0.0, 0usize);
    for (kind, count) in by_kind {
        let each = if *kind == "icmp" {
            f64::from(ICMP_BURST) * p.icmp.agent.cpu_us()
        } else {
            p.tcp.agent.cpu_us()
        };
        us += each * *count as f64;
        n += count;
    }
    us / n.max(1) as f64
}

fn print_agent(a: &AgentAtScale) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "\nagent at scale: {} pods in the cluster, {} on its node; plan: {} probes per {} s ({}) = {:.0}/s asked, starts capped at {}/s",
        a.cluster_pods,
        a.node_pods,
        a.planned,
        AGENT_INTERVAL.as_secs(),
        a.planned_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "),
        a.asked_per_sec(),
        a.max_rate
    );
    println!(
        "  lab up in {:.1} s; agent: {} threads, RSS {:.1} MiB = {:.1} anon ({:.1} after the warm-up) + {:.1} file (VmHWM {:.1}); \
         {} results held (no collector); anon grew ~{:.0} B per result: ~{:.1} MiB once its buffer is full ({} results); \
         its commands (inspections) used {:.1} % of a core besides",
        a.lab_up.as_secs_f64(),
        a.threads,
        mib(a.anon + a.file),
        mib(a.anon),
        mib(a.anon_warm),
        mib(a.file),
        mib(a.hwm),
        a.held,
        a.per_result_bytes(),
        a.projected_full_mib(),
        a.buffer_capacity,
        100.0 * a.children_cpu.as_secs_f64() / a.window.as_secs_f64(),
    );
    let top: Vec<String> =
        a.rss_by_mapping.iter().take(6).map(|(m, kib)| format!("{m} {:.1}", mib(*kib))).collect();
    println!("  RSS by mapping (MiB): {}", top.join(", "));
    for (message, n) in &a.complaints {
        println!("  agent log: {n} × {message}");
    }
}

impl AgentAtScale {
    fn asked_per_sec(&self) -> f64 {
        self.planned as f64 / AGENT_INTERVAL.as_secs_f64()
    }
    fn done_per_sec(&self) -> f64 {
        self.probes as f64 / self.window.as_secs_f64()
    }
    fn cpu_pct(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.window.as_secs_f64()
    }
    fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.probes.max(1) as f64
    }
    fn per_result_bytes(&self) -> f64 {
        self.anon_growth as f64 * 1024.0 / self.probes.max(1) as f64
    }
    /// VmRSS once the buffer is full: as measured when it filled during the run, else the
    /// largest sample plus the growth per result for the results still to come.
    fn projected_full_mib(&self) -> f64 {
        let unfilled = self.buffer_capacity.saturating_sub(usize::try_from(self.held).unwrap_or(usize::MAX));
        (self.rss_max.max(self.hwm) as f64 * 1024.0 + self.per_result_bytes() * unfilled as f64)
            / (1024.0 * 1024.0)
    }
    /// Whether the plan kept its interval: at least 98 % of the asked rate was done.
    fn kept_interval(&self) -> bool {
        self.done_per_sec() >= 0.98 * self.asked_per_sec()
    }
}

fn print_summary(p: Option<&ProbeRounds>, agents: &[AgentAtScale]) {
    if let Some(p) = p {
        println!("\npeer commands:\n  {}\n  {}", p.icmp.peer_command, p.tcp.peer_command);
    }
    agents.iter().for_each(print_agent);
    let mut rows = vec![];
    if let Some(p) = p {
        rows.extend(comparison_rows(&p.icmp, ("ICMP", "echo", "echoes"), "fping", FLOOR_ICMP_US));
        rows.extend(comparison_rows(&p.tcp, ("TCP", "connect", "connects"), "nmap -sT", FLOOR_TCP_US));
    }
    let none = || "—".to_owned();
    let first = agents.first();
    for a in agents {
        let size = format!("{} pods × {} targets", a.node_pods, a.cluster_pods - 1);
        rows.push([
            format!("agent plan ({size})"),
            format!(
                "{:.0} probes/s done of {:.0} asked (cap {}/s)",
                a.done_per_sec(),
                a.asked_per_sec(),
                a.max_rate
            ),
            none(),
            none(),
            format!("the full plan within its interval: {}", verdict(a.kept_interval())),
        ]);
        rows.push([
            format!("agent CPU % of a core ({size})"),
            format!("{:.1}", a.cpu_pct()),
            none(),
            none(),
            if a.node_pods == PODS_ON_NODE {
                format!("≤ 5: {}", verdict(a.cpu_pct() <= 5.0 && a.kept_interval()))
            } else {
                none()
            },
        ]);
        let engine = p.map(|p| engine_us_per_probe(p, &a.planned_by_kind));
        rows.push([
            format!("agent CPU µs/probe, all kinds ({size})"),
            format!("{:.1}", a.cpu_us()),
            none(),
            engine.map_or_else(none, |e| format!("{e:.1} (engine, the plan's mix)")),
            engine.map_or_else(none, |e| {
                format!("≤ 2 × engine = {:.1}: {}", 2.0 * e, verdict(a.cpu_us() <= 2.0 * e))
            }),
        ]);
        rows.push([
            format!("agent RSS MiB, buffer full ({size})"),
            format!(
                "{:.1} (VmRSS max {:.1}, VmHWM {:.1})",
                a.projected_full_mib(),
                a.rss_max as f64 / 1024.0,
                a.hwm as f64 / 1024.0
            ),
            none(),
            none(),
            format!("≤ {BUDGET_RSS_MIB:.0}: {}", verdict(a.projected_full_mib() <= BUDGET_RSS_MIB)),
        ]);
        if let Some(f) = first.filter(|f| f.node_pods != a.node_pods) {
            let plan = a.planned as f64 / f.planned as f64;
            let cpu = a.cpu_pct() / f.cpu_pct().max(1e-9);
            let rss = a.projected_full_mib() / f.projected_full_mib().max(1e-9);
            rows.push([
                format!("growth vs {} pods ({size})", f.node_pods),
                format!("plan ×{plan:.2}, CPU ×{cpu:.2}, RSS ×{rss:.2}"),
                none(),
                none(),
                format!("CPU and RSS no faster than the plan: {}", verdict(cpu <= plan && rss <= plan)),
            ]);
        }
    }
    println!();
    print_table(&rows);
    println!(
        "\n{}agent at scale: CPU (the agent's own threads; its commands are printed apart) and probes \
         over the last {:.0} s of each run.",
        p.map_or_else(String::new, |p| format!(
            "medians of {} rounds. floor: blocking loops, one probe in flight (RUSAGE_THREAD). ",
            p.icmp.agent.0.len()
        )),
        first.map_or(0.0, |a| a.window.as_secs_f64())
    );
}
