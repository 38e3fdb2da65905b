//! The uplink against a real collector session service on loopback: the collector is stopped
//! and started again while the agent streams, and every result still arrives exactly once.
//! Also the wire forms: tabled batches only to a collector that announces it reads them, and an
//! older agent's plain batches still accepted.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use netdiag_agent::buffer::BufferLimits;
use netdiag_agent::uplink::{self, Backoff, Outbound, UplinkConfig, UplinkStats};
use netdiag_collector::ingest::Ingest;
use netdiag_collector::sink::Recorder;
use netdiag_model::outcome::Outcome;
use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::result::{Detail, ProbeResult, ResultBatch, Seq};
use netdiag_model::session::{AgentMessage, AgentVersion, Hello, InstanceId};
use netdiag_model::time::UnixMillis;
use netdiag_proto::v1;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

fn result(id: i64) -> ProbeResult {
    ProbeResult {
        source: "tidb/demo-pd-0".parse().unwrap(),
        target: Target::Address { ip: "10.244.1.9".parse().unwrap(), port: None },
        kind: ProbeKind::Icmp,
        outcome: Outcome::Ok,
        rtt: None,
        // The id rides in the timestamp so the test can tell results apart.
        at: UnixMillis::new(id).unwrap(),
        detail: Detail::default(),
        burst: None,
        http_status: None,
        path_mtu: None,
        answers: vec![],
        nameserver: None,
    }
}

struct Collector {
    recorder: Arc<Recorder>,
    stop: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

async fn start_collector(addr: SocketAddr) -> Collector {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let recorder = Arc::new(Recorder::default());
    let (stop, stop_rx) = watch::channel(false);
    let ingest = Ingest::new(recorder.clone(), stop_rx.clone());
    let mut signal = stop_rx;
    let server = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(ingest.into_service())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async move {
                    let _ = signal.wait_for(|s| *s).await;
                },
            )
            .await
            .unwrap();
    });
    Collector { recorder, stop, server }
}

impl Collector {
    async fn stop(self) -> Arc<Recorder> {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.server).await.expect("collector stops").unwrap();
        self.recorder
    }
}

fn hello() -> Hello {
    Hello {
        node: "node-1".parse().unwrap(),
        agent_version: AgentVersion::new("0.1.0").unwrap(),
        capabilities: Default::default(),
        pods: vec![],
        node_ips: vec![],
        first_unacked_seq: Seq::FIRST,
        instance_id: InstanceId::new("test-instance-1").unwrap(),
    }
}

fn received(r: &Recorder) -> Vec<(u64, Vec<i64>)> {
    r.snapshot()
        .values()
        .flat_map(|a| a.batches.iter().map(|b| (b.seq.get(), b.results.iter().map(|r| r.at.get()).collect())))
        .collect()
}

fn uplink_config(addr: SocketAddr, limits: BufferLimits) -> UplinkConfig {
    UplinkConfig {
        id: 0,
        collector: format!("http://{addr}"),
        hello: hello(),
        limits,
        backoff: Backoff { min: Duration::from_millis(20), max: Duration::from_millis(200) },
        connect_timeout: Duration::from_millis(500),
        open_timeout: Duration::from_millis(500),
        tls: None,
        identity_token: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_restart_loses_nothing_and_duplicates_nothing() {
    // Find a free loopback port, then run the collector there (twice).
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let first = start_collector(addr).await;

    let (out_tx, out_rx) = mpsc::channel(1024);
    let (in_tx, _in_rx) = mpsc::channel(1024);
    let (stats_tx, stats_rx) = watch::channel(UplinkStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = BufferLimits { batch_size: 50, linger: Duration::from_millis(20), capacity: 100_000 };
    let agent = tokio::spawn(uplink::run(uplink_config(addr, limits), out_rx, in_tx, stats_tx, stop_rx));

    const TOTAL: i64 = 6_000;
    let feeder = tokio::spawn(async move {
        for id in 1..=TOTAL {
            out_tx.send(Outbound::Result(Box::new(result(id)))).await.unwrap();
            if id % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        out_tx
    });

    // Let part of the stream through, then stop the collector mid-stream.
    let mut stats = stats_rx.clone();
    stats.wait_for(|s| s.acked_results >= 1_000).await.unwrap();
    let first = first.stop().await;
    stats.wait_for(|s| !s.connected).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = start_collector(addr).await;

    let _out_tx = feeder.await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), stats.wait_for(|s| s.acked_results == TOTAL as u64))
        .await
        .expect("every result acknowledged")
        .unwrap();
    let second_rec = second.stop().await;
    stop_tx.send(true).unwrap();
    agent.await.unwrap();

    let a = received(&first);
    let b = received(&second_rec);
    assert!(!a.is_empty() && !b.is_empty(), "both collectors received batches");
    let mut ids = Vec::new();
    let mut seqs = BTreeSet::new();
    for (seq, batch) in a.iter().chain(&b) {
        assert!(seqs.insert(*seq), "batch {seq} arrived twice");
        ids.extend(batch.iter().copied());
    }
    let unique: BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "a result arrived twice");
    assert_eq!(unique, (1..=TOTAL).collect::<BTreeSet<_>>(), "every result arrived");
    // Sequences are contiguous across the restart: the agent resumed where the first stopped.
    let all: Vec<u64> = seqs.into_iter().collect();
    assert_eq!(all, (1..=all.len() as u64).collect::<Vec<_>>());
    let s = stats_rx.borrow().clone();
    assert_eq!(s.dropped_results, 0);
    assert!(s.connects >= 2, "{s:?}");
}

/// A collector that takes the connection and never answers (hung, or a replica stuck in its
/// start): the uplink gives up on the hello and retries instead of waiting forever, and keeps
/// taking what the agent hands it meanwhile, so the agent (and its other collectors) never
/// back up behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_holds_nothing_up() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            held.push(conn);
        }
    });
    // A small intake: were the uplink not taking while connecting, the feeder would block.
    let (out_tx, out_rx) = mpsc::channel(4);
    let (in_tx, _in_rx) = mpsc::channel(1024);
    let (stats_tx, stats_rx) = watch::channel(UplinkStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = BufferLimits { batch_size: 10, linger: Duration::from_millis(10), capacity: 500 };
    let agent = tokio::spawn(uplink::run(uplink_config(addr, limits), out_rx, in_tx, stats_tx, stop_rx));
    let fed = tokio::time::timeout(Duration::from_secs(5), async {
        for id in 1..=300 {
            out_tx.send(Outbound::Result(Box::new(result(id)))).await.unwrap();
        }
    })
    .await;
    assert!(fed.is_ok(), "the agent backed up behind a collector that never answers");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let s = stats_rx.borrow().clone();
    assert_eq!(s.connects, 0, "{s:?}");
    assert!(
        accepted.load(std::sync::atomic::Ordering::Relaxed) >= 2,
        "the uplink gave up on the hello and retried"
    );
    assert_eq!(s.held_results, 300, "{s:?}");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), agent).await.unwrap().unwrap();
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_is_bounded_while_the_collector_is_away_and_drops_are_reported() {
    // Nothing listens on this port (bound then released): the agent must buffer, bounded.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (out_tx, out_rx) = mpsc::channel(1024);
    let (in_tx, _in_rx) = mpsc::channel(1024);
    let (stats_tx, stats_rx) = watch::channel(UplinkStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = BufferLimits { batch_size: 10, linger: Duration::from_millis(10), capacity: 200 };
    let agent = tokio::spawn(uplink::run(uplink_config(addr, limits), out_rx, in_tx, stats_tx, stop_rx));
    for id in 1..=1_000 {
        out_tx.send(Outbound::Result(Box::new(result(id)))).await.unwrap();
    }
    let mut stats = stats_rx.clone();
    tokio::time::timeout(Duration::from_secs(10), stats.wait_for(|s| s.dropped_results == 800))
        .await
        .expect("drops counted")
        .unwrap();
    assert!(stats_rx.borrow().held_results <= 200);

    // The collector comes up: the newest 200 arrive, and the drop count with them.
    let collector = start_collector(addr).await;
    tokio::time::timeout(Duration::from_secs(10), stats.wait_for(|s| s.acked_results == 200))
        .await
        .expect("buffered results delivered")
        .unwrap();
    let rec = collector.stop().await;
    stop_tx.send(true).unwrap();
    agent.await.unwrap();
    let batches = rec.snapshot().into_values().flat_map(|a| a.batches).collect::<Vec<_>>();
    let ids: Vec<i64> = batches.iter().flat_map(|b| b.results.iter().map(|r| r.at.get())).collect();
    assert_eq!(ids, (801..=1000).collect::<Vec<_>>(), "oldest dropped first");
    assert_eq!(batches.iter().map(|b| b.dropped).sum::<u64>(), 800, "the drop count reaches the collector");
}

/// A stand-in collector that keeps the result batches exactly as they came over the wire and
/// acknowledges them; `announce` makes it say it reads tabled batches, as the real one does.
#[derive(Clone)]
struct WireCollector {
    batches: Arc<std::sync::Mutex<Vec<v1::ResultBatch>>>,
    announce: bool,
}

type ReplyStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<v1::CollectorMessage, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl v1::agent_session_server::AgentSession for WireCollector {
    type SessionStream = ReplyStream;

    async fn session(
        &self,
        request: tonic::Request<tonic::Streaming<v1::AgentMessage>>,
    ) -> Result<tonic::Response<ReplyStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let batches = self.batches.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = inbound.next().await {
                if let Some(v1::agent_message::Body::Results(b)) = msg.body {
                    let ack = v1::CollectorMessage {
                        body: Some(v1::collector_message::Body::Ack(v1::Ack { seq: b.seq })),
                    };
                    batches.lock().unwrap().push(b);
                    let _ = tx.send(Ok(ack)).await;
                }
            }
        });
        let mut response = tonic::Response::new(Box::pin(ReceiverStream::new(rx)) as ReplyStream);
        if self.announce {
            response.metadata_mut().insert(
                netdiag_proto::ACCEPTS_HEADER,
                tonic::metadata::MetadataValue::from_static("other-thing, result-tables"),
            );
        }
        Ok(response)
    }
}

/// Streams `n` results through an uplink to a [`WireCollector`]; returns the raw batches.
async fn wire_batches(announce: bool, n: i64) -> Vec<v1::ResultBatch> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let collector = WireCollector { batches: Arc::default(), announce };
    let service = v1::agent_session_server::AgentSessionServer::new(collector.clone());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let (out_tx, out_rx) = mpsc::channel(1024);
    let (in_tx, _in_rx) = mpsc::channel(1024);
    let (stats_tx, stats_rx) = watch::channel(UplinkStats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = BufferLimits { batch_size: 10, linger: Duration::from_millis(10), capacity: 1_000 };
    let agent = tokio::spawn(uplink::run(uplink_config(addr, limits), out_rx, in_tx, stats_tx, stop_rx));
    for id in 1..=n {
        let mut r = result(id);
        // Two sources and three targets, repeated: what the tables are for.
        if id % 2 == 0 {
            r.source = "tidb/demo-pd-1".parse().unwrap();
        }
        r.target = Target::Pod {
            pod: format!("tidb/demo-tikv-{}", id % 3).parse().unwrap(),
            ip: format!("10.244.2.{}", id % 3 + 1).parse().unwrap(),
            port: None,
        };
        out_tx.send(Outbound::Result(Box::new(r))).await.unwrap();
    }
    let mut stats = stats_rx.clone();
    tokio::time::timeout(Duration::from_secs(10), stats.wait_for(|s| s.acked_results == n as u64))
        .await
        .expect("every result acknowledged")
        .unwrap();
    stop_tx.send(true).unwrap();
    agent.await.unwrap();
    server.abort();
    collector.batches.lock().unwrap().clone()
}

/// The results the real conversion reads from raw batches, by id.
fn converted(batches: Vec<v1::ResultBatch>) -> Vec<ProbeResult> {
    let mut results: Vec<ProbeResult> =
        batches.into_iter().flat_map(|b| ResultBatch::try_from(b).unwrap().results).collect();
    results.sort_by_key(|r| r.at);
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_go_tabled_only_to_a_collector_that_reads_them() {
    let tabled = wire_batches(true, 60).await;
    assert!(!tabled.is_empty());
    for b in &tabled {
        assert!(
            b.sources.len() <= 2 && b.targets.len() <= 3,
            "{} sources, {} targets",
            b.sources.len(),
            b.targets.len()
        );
        assert!(
            b.results.iter().all(|r| r.source.is_none() && r.source_ref.is_some() && r.target_ref.is_some())
        );
    }
    // A collector that does not announce the tabled form (an older one) gets plain batches.
    let plain = wire_batches(false, 60).await;
    for b in &plain {
        assert!(b.sources.is_empty() && b.targets.is_empty());
        assert!(b.results.iter().all(|r| r.source.is_some() && r.target.is_some() && r.source_ref.is_none()));
    }
    // Both carry the same results.
    let (tabled, plain) = (converted(tabled), converted(plain));
    assert_eq!(tabled.len(), 60);
    assert_eq!(tabled, plain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_agents_plain_batches_are_still_accepted() {
    // An agent from before the tabled form: a raw client that sends plain batches and ignores
    // the collector's headers.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let collector = start_collector(addr).await;
    let mut client =
        v1::agent_session_client::AgentSessionClient::connect(format!("http://{addr}")).await.unwrap();
    let batch = ResultBatch { seq: Seq::FIRST, results: (1..=5).map(result).collect(), dropped: 0 };
    let messages: Vec<v1::AgentMessage> =
        vec![AgentMessage::Hello(hello()).into(), AgentMessage::Results(batch.clone()).into()];
    let response = client.session(tokio_stream::iter(messages)).await.unwrap();
    assert_eq!(
        response.metadata().get(netdiag_proto::ACCEPTS_HEADER).and_then(|v| v.to_str().ok()),
        Some(netdiag_proto::ACCEPTS_RESULT_TABLES),
        "the collector announces what it reads"
    );
    let mut replies = response.into_inner();
    let ack =
        tokio::time::timeout(Duration::from_secs(10), replies.message()).await.unwrap().unwrap().unwrap();
    assert!(matches!(ack.body, Some(v1::collector_message::Body::Ack(v1::Ack { seq: 1 }))), "{ack:?}");
    drop(replies);
    let rec = collector.stop().await;
    let got: Vec<ResultBatch> = rec.snapshot().into_values().flat_map(|a| a.batches).collect();
    assert_eq!(got, vec![batch]);
}
