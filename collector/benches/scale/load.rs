//! The load process (this binary with `--load`): one real agent session per simulated node,
//! speaking the wire a current agent speaks — a hello announcing `collector_inventory`, then
//! tabled result batches — so the collector pushes each node its pods and plan. Every second
//! each node sends the slice of its plan due in that second (the whole plan once per the
//! plan's interval), answered by the fault model below.
//!
//! Faults arrive on stdin (`faults <dead node> <cut a> <cut b> <dead pod>`): the dead node's
//! session ends and everything addressed to it fails; probes across the cut pair fail both
//! ways; probes to and from the dead pod fail; every other probe fails with probability `LOSS`.
//! Plans received are reported on stdout (`plan <node> <unix ms> <probes> <pods>`) for the
//! bench to time.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use netdiag_model::http::HttpStatus;
use netdiag_model::outcome::{DnsFailure, IcmpFailure, TcpFailure};
use netdiag_model::plan::{PlannedProbe, ProbePlan};
use netdiag_model::probe::{ProbeKind, ServiceVia, Source, Target};
use netdiag_model::result::{Burst, Detail, PathMtu, ProbeResult, ResultBatch, Rtt, Seq};
use netdiag_model::session::{AgentMessage, AgentVersion, Capability, CollectorMessage, Hello, InstanceId};
use netdiag_model::time::UnixMillis;
use netdiag_model::{Outcome, PodRef};
use netdiag_proto::v1;
use tokio::sync::{Semaphore, mpsc};

use crate::cluster::{self, Shape};

/// How often each node sends a batch.
const TICK: Duration = Duration::from_secs(1);
/// Sessions being opened at once.
const CONNECTING: usize = 200;

/// The injected faults, by node index and pod.
#[derive(Debug, Default, Clone)]
struct Faults {
    dead_node: Option<usize>,
    cut: Option<(usize, usize)>,
    dead_pod: Option<PodRef>,
}

#[derive(Debug)]
struct World {
    backends: HashMap<IpAddr, Vec<(PodRef, usize)>>,
    faults: RwLock<Faults>,
    loss: f64,
}

/// A small deterministic generator (xorshift64*): the load needs no cryptographic randomness.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

impl World {
    /// The node (and pod) a probe reaches.
    fn destination<'a>(&'a self, target: &'a Target, rng: &mut Rng) -> (Option<usize>, Option<&'a PodRef>) {
        let backend = |ip: &IpAddr, rng: &mut Rng| {
            let b = self.backends.get(ip).filter(|b| !b.is_empty())?;
            b.get(rng.next() as usize % b.len())
        };
        match target {
            Target::Pod { pod, ip, .. } => (cluster::node_of_ip(*ip), Some(pod)),
            Target::Service { ip, via: ServiceVia::Endpoint(pod), .. } => {
                (cluster::node_of_ip(*ip), Some(pod))
            }
            Target::Service { ip, via: ServiceVia::ClusterIp, .. } => {
                backend(ip, rng).map_or((None, None), |(p, n)| (Some(*n), Some(p)))
            }
            Target::Dns { .. } => {
                backend(&IpAddr::V4(cluster::DNS_VIP), rng).map_or((None, None), |(p, n)| (Some(*n), Some(p)))
            }
            Target::Service { ip, .. } | Target::Node { ip, .. } | Target::Address { ip, .. } => {
                (cluster::node_of_ip(*ip), None)
            }
        }
    }

    fn fails(&self, me: usize, probe: &PlannedProbe, rng: &mut Rng) -> bool {
        let f = self.faults.read().map(|f| f.clone()).unwrap_or_default();
        let (node, pod) = self.destination(&probe.target, rng);
        let source_pod = match &probe.source {
            Source::Pod(p) => Some(p),
            _ => None,
        };
        let dead_pod = f.dead_pod.as_ref().is_some_and(|d| pod == Some(d) || source_pod == Some(d));
        let cut = f.cut.is_some_and(|(a, b)| node.is_some_and(|n| (me, n) == (a, b) || (me, n) == (b, a)));
        dead_pod || cut || node.is_some_and(|n| f.dead_node == Some(n)) || rng.chance(self.loss)
    }

    fn result(&self, me: usize, probe: &PlannedProbe, at: UnixMillis, rng: &mut Rng) -> ProbeResult {
        let failed = self.fails(me, probe, rng);
        let ok = |r: &mut Rng| Rtt::from_micros(150 + r.next() % 400, false).ok();
        let mut result = ProbeResult {
            source: probe.source.clone(),
            target: probe.target.clone(),
            kind: probe.kind,
            outcome: Outcome::Ok,
            rtt: if failed { None } else { ok(rng) },
            at,
            detail: Detail::default(),
            burst: None,
            http_status: None,
            path_mtu: None,
            answers: Vec::new(),
            nameserver: None,
        };
        match probe.kind {
            ProbeKind::Icmp => {
                result.burst = Burst::new(3, if failed { 0 } else { 3 }).ok();
                if failed {
                    result.outcome = Outcome::Icmp(IcmpFailure::Timeout);
                }
            }
            ProbeKind::Mtu if failed => result.outcome = Outcome::Icmp(IcmpFailure::Timeout),
            ProbeKind::Mtu => result.path_mtu = PathMtu::new(1500).ok(),
            ProbeKind::Tcp if failed => result.outcome = Outcome::Tcp(TcpFailure::Timeout),
            ProbeKind::Http if failed => result.outcome = Outcome::Tcp(TcpFailure::Timeout),
            ProbeKind::Http => result.http_status = HttpStatus::new(200).ok(),
            ProbeKind::Dns if failed => result.outcome = Outcome::Dns(DnsFailure::Timeout),
            ProbeKind::Dns => result.nameserver = Some(IpAddr::V4(cluster::DNS_VIP)),
            ProbeKind::Tcp => {}
        }
        result
    }
}

fn hello(node: usize) -> Result<v1::AgentMessage> {
    use Capability::*;
    Ok(AgentMessage::Hello(Hello {
        node: cluster::node_name(node),
        agent_version: AgentVersion::new("0.1.0")?,
        capabilities: [Icmp, Tcp, Dns, Http, Mtu, CollectorInventory].into_iter().collect(),
        pods: vec![],
        node_ips: vec![cluster::node_ip(node)],
        first_unacked_seq: Seq::FIRST,
        instance_id: InstanceId::new(format!("scale-{node}"))?,
    })
    .into())
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Sends `node`'s slice of its plan every tick until the node dies or the session ends.
async fn stream(
    node: usize,
    world: Arc<World>,
    plan: Arc<RwLock<Option<ProbePlan>>>,
    tx: mpsc::Sender<v1::AgentMessage>,
) {
    let mut tick = tokio::time::interval(TICK);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (node as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
    let (mut cursor, mut seq, mut owed) = (0usize, 1u64, 0.0f64);
    loop {
        tick.tick().await;
        if world.faults.read().is_ok_and(|f| f.dead_node == Some(node)) {
            return;
        }
        let Some(batch) = plan.read().ok().and_then(|p| {
            let p = p.as_ref()?;
            if p.probes.is_empty() {
                return None;
            }
            // The plan's rate: all of it once per interval.
            owed += p.probes.len() as f64 * TICK.as_secs_f64() / p.schedule.interval().as_secs_f64();
            let n = owed.floor() as usize;
            owed -= n as f64;
            let at = UnixMillis::from_system_time(std::time::SystemTime::now()).ok()?;
            let results = (0..n)
                .map(|i| world.result(node, &p.probes[(cursor + i) % p.probes.len()], at, &mut rng))
                .collect::<Vec<_>>();
            cursor = (cursor + n) % p.probes.len();
            Some(results)
        }) else {
            continue;
        };
        if batch.is_empty() {
            continue;
        }
        let Ok(s) = Seq::new(seq) else { return };
        seq += 1;
        let batch = ResultBatch { seq: s, results: batch, dropped: 0 };
        let msg = v1::AgentMessage {
            body: Some(v1::agent_message::Body::Results(netdiag_proto::convert::tabled_result_batch(&batch))),
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

/// One simulated agent: its session, the plans it is pushed, its stream of results.
async fn agent(addr: SocketAddr, node: usize, world: Arc<World>, gate: Arc<Semaphore>) -> Result<()> {
    let (tx, rx) = mpsc::channel(8);
    let plan: Arc<RwLock<Option<ProbePlan>>> = Arc::default();
    let mut replies = {
        let _permit = gate.acquire().await?;
        let mut client = v1::agent_session_client::AgentSessionClient::connect(format!("http://{addr}"))
            .await
            .with_context(|| format!("node {node}: cannot connect to the collector"))?
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        tx.send(hello(node)?).await?;
        client.session(tokio_stream::wrappers::ReceiverStream::new(rx)).await?.into_inner()
    };
    tokio::spawn(stream(node, world.clone(), plan.clone(), tx));
    let mut pods = 0usize;
    while let Some(msg) = replies.message().await? {
        match CollectorMessage::try_from(msg) {
            Ok(CollectorMessage::Plan(p)) => {
                let now = netdiag_collector::state::now().get();
                say(format!("plan {node} {now} {} {pods}", p.probes.len()));
                if let Ok(mut slot) = plan.write() {
                    *slot = Some(p);
                }
            }
            Ok(CollectorMessage::Pods(p)) => pods = p.pods.len(),
            Ok(_) => {}
            Err(e) => say(format!("error node {node}: the collector sent what an agent refuses: {e}")),
        }
        if world.faults.read().is_ok_and(|f| f.dead_node == Some(node)) {
            return Ok(());
        }
    }
    Ok(())
}

/// Applies `faults …` lines from the bench.
fn read_faults(world: Arc<World>) {
    for line in std::io::stdin().lines().map_while(Result::ok) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [_, dead, a, b, pod] = words.as_slice() else { continue };
        let node = |s: &str| cluster::node_index(s);
        if let Ok(mut f) = world.faults.write() {
            *f = Faults { dead_node: node(dead), cut: node(a).zip(node(b)), dead_pod: pod.parse().ok() };
        }
    }
}

pub(crate) async fn run(addr: SocketAddr, shape: Shape, loss: f64) -> Result<()> {
    let inv = cluster::inventory(shape);
    let world = Arc::new(World { backends: cluster::backends(&inv), faults: RwLock::default(), loss });
    drop(inv);
    let w = world.clone();
    std::thread::spawn(move || read_faults(w));
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let tasks: Vec<_> =
        (0..shape.nodes).map(|n| tokio::spawn(agent(addr, n, world.clone(), gate.clone()))).collect();
    for (n, t) in tasks.into_iter().enumerate() {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => say(format!("error node {n}: {e:#}")),
            Err(e) => say(format!("error node {n}: {e}")),
        }
    }
    Ok(())
}
