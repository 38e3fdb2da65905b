//! Simulated agents for load tests, speaking the real session protocol over gRPC on loopback:
//! honest ones (hello, then a batch of their own pods' results every interval, every batch
//! acknowledged) and hostile ones — raw bytes where messages belong, results for another
//! node's pods, a session that hangs (stops reading its socket), connections that never speak.
//! The inventory they match is [`inventory_yaml`]: `nodes` nodes with [`PODS_PER_NODE`] pods.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use netdiag_model::outcome::Outcome;
use netdiag_model::probe::{ProbeKind, Source, Target};
use netdiag_model::result::{Detail, ProbeResult, ResultBatch, Rtt, Seq};
use netdiag_model::session::{AgentMessage, AgentVersion, Hello, InstanceId};
use netdiag_model::time::UnixMillis;
use netdiag_proto::v1;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Pods per node in [`inventory_yaml`].
pub const PODS_PER_NODE: usize = 2;
/// The session method's path.
const SESSION: &str = "/netdiag.v1.AgentSession/Session";

fn node_ip(n: usize) -> String {
    format!("172.16.{}.{}", n / 250, n % 250 + 1)
}

fn pod_ip(n: usize, p: usize) -> String {
    format!("10.{}.{}.{}", n / 250, n % 250, p + 2)
}

/// An inventory of `nodes` nodes (`node-1`…) with [`PODS_PER_NODE`] pods each (`load/pod-<n>-<p>`).
pub fn inventory_yaml(nodes: usize) -> String {
    let mut text = String::from(
        "version: 1\ncluster: {name: load, domain: cluster.local, pod_cidrs: [10.0.0.0/8], service_cidrs: [10.96.0.0/16], node_cidrs: [172.16.0.0/12], dns_ips: [10.96.0.10], proxy_mode: iptables}\nnodes:\n",
    );
    for n in 1..=nodes {
        text.push_str(&format!(
            "  - {{name: node-{n}, ips: [{}], pod_cidrs: [10.{}.{}.0/24]}}\n",
            node_ip(n),
            n / 250,
            n % 250
        ));
    }
    text.push_str("pods:\n");
    for n in 1..=nodes {
        for p in 0..PODS_PER_NODE {
            text.push_str(&format!(
                "  - {{namespace: load, name: pod-{n}-{p}, node: node-{n}, ips: [{}]}}\n",
                pod_ip(n, p)
            ));
        }
    }
    text.push_str("services: []\n");
    text
}

/// The hello of node `n`'s agent.
pub fn hello(n: usize) -> v1::AgentMessage {
    AgentMessage::Hello(Hello {
        node: format!("node-{n}").parse().expect("node name"),
        agent_version: AgentVersion::new("0.1.0").expect("version"),
        capabilities: Default::default(),
        pods: vec![],
        node_ips: vec![],
        first_unacked_seq: Seq::FIRST,
        instance_id: InstanceId::new(format!("load-{n}")).expect("instance id"),
    })
    .into()
}

/// Batch `seq` of `size` ICMP results from node `from`'s pods (`pods_of`: the node whose pods
/// are named as sources, `from` for an honest agent) to pods of the next `size` nodes.
pub fn batch(pods_of: usize, nodes: usize, seq: u64, size: usize) -> v1::AgentMessage {
    let results = (0..size)
        .map(|i| {
            let to = 1 + (pods_of + i) % nodes;
            ProbeResult {
                source: Source::Pod(
                    format!("load/pod-{pods_of}-{}", i % PODS_PER_NODE).parse().expect("pod"),
                ),
                target: Target::Pod {
                    pod: format!("load/pod-{to}-0").parse().expect("pod"),
                    ip: pod_ip(to, 0).parse().expect("ip"),
                    port: None,
                },
                kind: ProbeKind::Icmp,
                outcome: Outcome::Ok,
                rtt: Rtt::from_micros(100 + i as u64, false).ok(),
                at: UnixMillis::from_system_time(std::time::SystemTime::now()).expect("now"),
                detail: Detail::default(),
                burst: None,
                http_status: None,
                path_mtu: None,
                answers: vec![],
                nameserver: None,
            }
        })
        .collect();
    AgentMessage::Results(ResultBatch { seq: Seq::new(seq).expect("seq"), results, dropped: 0 }).into()
}

/// `template` (a [`batch`]) as batch `seq`, its results finished now: building a batch once
/// per session keeps the load generator's own cost low.
pub fn restamp(template: &v1::AgentMessage, seq: u64) -> v1::AgentMessage {
    let mut msg = template.clone();
    let now = UnixMillis::from_system_time(std::time::SystemTime::now()).map(UnixMillis::get).unwrap_or(0);
    if let Some(v1::agent_message::Body::Results(b)) = &mut msg.body {
        b.seq = seq;
        for r in &mut b.results {
            r.at_unix_ms = now;
        }
    }
    msg
}

/// What an honest agent saw.
#[derive(Debug, Clone, Default)]
pub struct HonestReport {
    pub sent_batches: u64,
    pub acked_batches: u64,
    pub sent_results: u64,
    /// The session ended before its last batch was acknowledged (with why).
    pub lost: Option<String>,
}

/// Node `n`'s honest agent: one session, a batch of `size` results every `every` until
/// `until`, then waits (at most 10 s) for the last acknowledgement.
pub async fn honest(
    addr: SocketAddr,
    n: usize,
    nodes: usize,
    size: usize,
    every: Duration,
    until: Instant,
) -> HonestReport {
    let mut report = HonestReport::default();
    let client = match v1::agent_session_client::AgentSessionClient::connect(format!("http://{addr}")).await {
        Ok(c) => c,
        Err(e) => {
            report.lost = Some(format!("cannot connect: {e}"));
            return report;
        }
    };
    let mut client = client.max_encoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(16);
    let _ = tx.send(hello(n)).await;
    let mut replies = match client.session(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            report.lost = Some(format!("refused: {status}"));
            return report;
        }
    };
    let template = batch(n, nodes, 1, size);
    let mut tick = tokio::time::interval(every);
    let mut seq = 0u64;
    let drain_until = until + Duration::from_secs(10);
    loop {
        let sending = Instant::now() < until;
        if !sending && report.acked_batches == seq {
            return report;
        }
        tokio::select! {
            _ = tick.tick(), if sending => {
                seq += 1;
                if tx.send(restamp(&template, seq)).await.is_err() {
                    report.lost = Some("the stream closed".to_owned());
                    return report;
                }
                report.sent_batches += 1;
                report.sent_results += size as u64;
            }
            reply = replies.message() => match reply {
                Ok(Some(msg)) => {
                    if let Some(v1::collector_message::Body::Ack(ack)) = msg.body {
                        report.acked_batches = report.acked_batches.max(ack.seq);
                    }
                }
                Ok(None) => {
                    report.lost = Some("the collector ended the session".to_owned());
                    return report;
                }
                Err(status) => {
                    report.lost = Some(format!("session failed: {status}"));
                    return report;
                }
            },
            () = tokio::time::sleep_until(drain_until.into()), if !sending => {
                report.lost = Some("no acknowledgement of the last batch within 10 s".to_owned());
                return report;
            }
        }
    }
}

/// A codec that sends and receives raw bytes as gRPC messages: garbage where a protobuf
/// message belongs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = buf.remaining();
        Ok(Some(buf.copy_to_bytes(n).to_vec()))
    }
}

/// Opens a session and sends `messages` as raw gRPC messages; how it ended (the collector's
/// status, or None if it stayed open for `limit`).
pub async fn raw_session(addr: SocketAddr, messages: Vec<Vec<u8>>, limit: Duration) -> Option<tonic::Status> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?.connect().await.ok()?;
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(64 << 20);
    grpc.ready().await.ok()?;
    let (tx, rx) = mpsc::channel(4);
    let sender = tokio::spawn(async move {
        for m in messages {
            if tx.send(m).await.is_err() {
                return;
            }
        }
        // Keep the stream open: the collector must be the one to end it.
        tx.closed().await;
    });
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(SESSION);
    let outcome = tokio::time::timeout(limit, async {
        match grpc.streaming(tonic::Request::new(ReceiverStream::new(rx)), path, RawCodec).await {
            Err(status) => status,
            Ok(response) => {
                let mut replies = response.into_inner();
                loop {
                    match replies.message().await {
                        Ok(Some(_)) => {}
                        Ok(None) => return tonic::Status::ok("ended"),
                        Err(status) => return status,
                    }
                }
            }
        }
    })
    .await
    .ok();
    sender.abort();
    outcome
}

/// The encoded hello of node `n`, for [`raw_session`].
pub fn hello_bytes(n: usize) -> Vec<u8> {
    hello(n).encode_to_vec()
}

/// `len` bytes of garbage (not a protobuf message any decoder accepts as an agent message).
pub fn garbage(len: usize) -> Vec<u8> {
    // Field 15, wire type 7 (invalid) first, then noise.
    let mut out = vec![0x7f];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    out
}

/// A stream whose reads stop (stay pending for good) once `stall` is set: a peer that stops
/// reading its socket while it keeps writing.
#[derive(Debug)]
pub struct Stalling<IO> {
    io: IO,
    stall: Arc<AtomicBool>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Stalling<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stall.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Stalling<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Node `n`'s agent that opens a session, sends one batch, then hangs — reads nothing from
/// its socket and writes nothing (a stopped process whose kernel still holds the connection) —
/// for `hold`.
pub async fn hangs(addr: SocketAddr, n: usize, nodes: usize, hold: Duration) -> Option<()> {
    let stall = Arc::new(AtomicBool::new(false));
    let connector = {
        let stall = stall.clone();
        tower::service_fn(move |_: tonic::codegen::http::Uri| {
            let stall = stall.clone();
            async move {
                let io = tokio::net::TcpStream::connect(addr).await?;
                Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(Stalling { io, stall }))
            }
        })
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_with_connector(connector)
        .await
        .ok()?;
    let mut client = v1::agent_session_client::AgentSessionClient::new(channel);
    let (tx, rx) = mpsc::channel(1);
    tx.send(hello(n)).await.ok()?;
    let _replies = client.session(ReceiverStream::new(rx)).await.ok()?;
    tx.send(batch(n, nodes, 1, 10)).await.ok()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stall.store(true, Ordering::Relaxed);
    tokio::time::sleep(hold).await;
    drop(tx);
    Some(())
}
