//! Benchmark (not a test): collector ingest over real gRPC on loopback, next to the raw decode
//! rate of the same batches.
//!
//! The collector (session service, `CollectorState` sink: validation, de-duplication, matrix
//! and metrics) runs in this process; the load — many simulated agents, each one session
//! streaming batches of 500 results — runs in a child process (this binary with `--load`), so
//! `getrusage(RUSAGE_SELF)` counts the collector's CPU only. Printed: results/s of wall time,
//! results per CPU-second of the collector (the "per core" figure), and the single-threaded
//! rate of decoding the same protobuf batches and converting them to the domain model, which
//! bounds what ingest can reach. Budget: ≥ 1 M results/s per core.
//!
//! The simulated agents send what a current agent sends this collector: batches in the tabled
//! wire form (each distinct source and target once per batch); `WIRE=plain` sends the plain form
//! of older agents instead. The raw rate is printed for both forms.
//!
//! `cargo bench -p netdiag-collector --bench ingest` (env: AGENTS, BATCHES, BATCH, WIRE).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use netdiag_collector::ingest::Ingest;
use netdiag_collector::state::CollectorState;
use netdiag_diagnose::matrix::MatrixConfig;
use netdiag_model::inventory::Inventory;
use netdiag_model::outcome::Outcome;
use netdiag_model::probe::{ProbeKind, Source, Target};
use netdiag_model::result::{Detail, ProbeResult, ResultBatch, Rtt, Seq};
use netdiag_model::session::{AgentMessage, AgentVersion, Hello, InstanceId};
use netdiag_model::time::UnixMillis;
use netdiag_proto::v1;
use prost::Message;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A lab-shaped inventory: `nodes` nodes with 10 pods each.
fn inventory(nodes: usize) -> Result<Inventory> {
    let mut text = String::from(
        "version: 1\ncluster: {name: bench, domain: cluster.local, pod_cidrs: [10.244.0.0/16], service_cidrs: [10.96.0.0/16], node_cidrs: [172.29.0.0/24], dns_ips: [10.96.0.10], proxy_mode: iptables}\nnodes:\n",
    );
    for n in 1..=nodes {
        text.push_str(&format!(
            "  - {{name: node-{n}, ips: [172.29.0.{}], pod_cidrs: [10.244.{n}.0/24]}}\n",
            10 + n
        ));
    }
    text.push_str("pods:\n");
    for n in 1..=nodes {
        for p in 0..10 {
            text.push_str(&format!(
                "  - {{namespace: bench, name: pod-{n}-{p}, node: node-{n}, ips: [10.244.{n}.{}]}}\n",
                p + 2
            ));
        }
    }
    text.push_str("services: []\n");
    Ok(Inventory::from_yaml(&text)?)
}

/// The wire form the simulated agents use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Tabled,
    Plain,
}

impl Wire {
    fn from_env() -> Result<Self> {
        match std::env::var("WIRE").as_deref() {
            Err(_) | Ok("tabled") => Ok(Wire::Tabled),
            Ok("plain") => Ok(Wire::Plain),
            Ok(other) => anyhow::bail!("WIRE={other:?}: expected tabled or plain"),
        }
    }

    fn encode(self, batch: ResultBatch) -> v1::AgentMessage {
        match self {
            Wire::Plain => AgentMessage::Results(batch).into(),
            Wire::Tabled => v1::AgentMessage {
                body: Some(v1::agent_message::Body::Results(netdiag_proto::convert::tabled_result_batch(
                    &batch,
                ))),
            },
        }
    }
}

/// The batches agent `n` sends: pod→pod ICMP and TCP results across the cluster.
fn batches(
    agent: usize,
    nodes: usize,
    count: usize,
    size: usize,
    wire: Wire,
) -> Result<Vec<v1::AgentMessage>> {
    let mut out = Vec::with_capacity(count);
    for b in 0..count {
        let mut results = Vec::with_capacity(size);
        for i in 0..size {
            let src_pod = i % 10;
            let dst_node = 1 + (i / 10) % nodes;
            let dst_pod = (i / 3) % 10;
            let tcp = i % 2 == 0;
            results.push(ProbeResult {
                source: Source::Pod(format!("bench/pod-{agent}-{src_pod}").parse()?),
                target: Target::Pod {
                    pod: format!("bench/pod-{dst_node}-{dst_pod}").parse()?,
                    ip: format!("10.244.{dst_node}.{}", dst_pod + 2).parse()?,
                    port: tcp.then(|| netdiag_model::Port::new(8080)).transpose()?,
                },
                kind: if tcp { ProbeKind::Tcp } else { ProbeKind::Icmp },
                outcome: Outcome::Ok,
                rtt: Some(Rtt::from_micros(50 + (i as u64 * 7) % 400, false)?),
                at: UnixMillis::from_system_time(std::time::SystemTime::now())?,
                detail: Detail::default(),
                burst: None,
                http_status: None,
                path_mtu: None,
                answers: vec![],
                nameserver: None,
            });
        }
        let batch = ResultBatch { seq: Seq::new(b as u64 + 1)?, results, dropped: 0 };
        out.push(wire.encode(batch));
    }
    Ok(out)
}

fn hello(agent: usize) -> Result<v1::AgentMessage> {
    Ok(AgentMessage::Hello(Hello {
        node: format!("node-{agent}").parse()?,
        agent_version: AgentVersion::new("0.1.0")?,
        capabilities: Default::default(),
        pods: vec![],
        node_ips: vec![],
        first_unacked_seq: Seq::FIRST,
        instance_id: InstanceId::new(format!("bench-{agent}"))?,
    })
    .into())
}

fn cpu_seconds(who: nix::sys::resource::UsageWho) -> f64 {
    nix::sys::resource::getrusage(who)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

/// The load generator (child process): every agent opens a session and streams its batches,
/// then waits for the last acknowledgement.
async fn load(addr: SocketAddr, agents: usize, count: usize, size: usize, wire: Wire) -> Result<()> {
    let mut tasks = Vec::new();
    for a in 1..=agents {
        let msgs = batches(a, agents, count, size, wire)?;
        let hello = hello(a)?;
        tasks.push(tokio::spawn(async move {
            let mut client = v1::agent_session_client::AgentSessionClient::connect(format!("http://{addr}"))
                .await?
                .max_encoding_message_size(64 << 20);
            let stream = tokio_stream::iter(std::iter::once(hello).chain(msgs));
            let mut replies = client.session(stream).await?.into_inner();
            let last = count as u64;
            while let Some(msg) = replies.message().await? {
                if let Some(v1::collector_message::Body::Ack(ack)) = msg.body
                    && ack.seq >= last
                {
                    break;
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (agents, count, size) = (env("AGENTS", 50), env("BATCHES", 40), env("BATCH", 500));
    let wire = Wire::from_env()?;
    let load_at = args.iter().position(|a| a == "--load");
    // Named threads, so a profile (`perf report --comm collector`) tells the two sides apart.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(if load_at.is_some() { "load" } else { "collector" })
        .enable_all()
        .build()?;
    if let Some(i) = load_at {
        let addr: SocketAddr = args.get(i + 1).context("--load <addr>")?.parse()?;
        return rt.block_on(load(addr, agents, count, size, wire));
    }

    // Raw decode + conversion of the same batches, single-threaded, in both wire forms.
    let decode_rate = |wire: Wire| -> Result<(f64, usize)> {
        let sample: Vec<Vec<u8>> =
            batches(1, agents, count.min(20), size, wire)?.iter().map(|m| m.encode_to_vec()).collect();
        let bytes = sample.iter().map(Vec::len).sum::<usize>() / sample.len().max(1);
        // A warm-up pass, then the best of five timed passes (a pass is short: one busy
        // neighbour would otherwise decide the number).
        let mut best = 0.0f64;
        for pass in 0..6 {
            let started = Instant::now();
            let mut decoded = 0usize;
            for _ in 0..5 {
                for bytes in &sample {
                    let msg = v1::AgentMessage::decode(bytes.as_slice())?;
                    if let AgentMessage::Results(b) = AgentMessage::try_from(msg)? {
                        decoded += b.results.len();
                    }
                }
            }
            if pass > 0 {
                best = best.max(decoded as f64 / started.elapsed().as_secs_f64());
            }
        }
        Ok((best, bytes))
    };
    let (tabled_rate, tabled_bytes) = decode_rate(Wire::Tabled)?;
    let (plain_rate, plain_bytes) = decode_rate(Wire::Plain)?;

    let state = Arc::new(CollectorState::new(inventory(agents)?, MatrixConfig::default()));
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let ingest = Ingest::new(state.clone(), stop_rx);
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let _ = tonic::transport::Server::builder()
            .add_service(ingest.into_service())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });

    let cpu0 = cpu_seconds(nix::sys::resource::UsageWho::RUSAGE_SELF);
    let started = Instant::now();
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(["--load", &addr.to_string()])
        .status()
        .context("cannot start the load generator")?;
    anyhow::ensure!(status.success(), "the load generator failed: {status}");
    let wall = started.elapsed();
    let cpu = cpu_seconds(nix::sys::resource::UsageWho::RUSAGE_SELF) - cpu0;
    let counters = state.counters();
    anyhow::ensure!(
        counters.results as usize == agents * count * size,
        "ingested {} of {} results",
        counters.results,
        agents * count * size
    );
    let total = counters.results as f64;
    std::thread::sleep(Duration::from_millis(100));
    let form = match wire {
        Wire::Tabled => "tabled",
        Wire::Plain => "plain",
    };
    println!(
        "collector ingest: {agents} agents × {count} batches × {size} results over gRPC on loopback ({form} batches)"
    );
    println!("  results ingested          {:>12}", counters.results);
    println!("  wall time                 {:>12.2} s", wall.as_secs_f64());
    println!("  results/s (wall)          {:>12.0}", total / wall.as_secs_f64());
    println!("  collector CPU             {:>12.2} s", cpu);
    println!("  results/s per core        {:>12.0}   (budget ≥ 1 000 000)", total / cpu.max(1e-9));
    println!(
        "  raw decode + convert      {tabled_rate:>12.0} results/s on one core, tabled batches ({tabled_bytes} B each)"
    );
    println!(
        "  raw decode + convert      {plain_rate:>12.0} results/s on one core, plain batches ({plain_bytes} B each)"
    );
    println!("  matrix cells              {:>12}", state.with_matrix(|m| m.cell_counts().0));
    Ok(())
}
