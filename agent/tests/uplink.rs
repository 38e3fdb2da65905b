//! The uplink against a real collector session service on loopback: the collector is stopped
//! and started again while the agent streams, and every result still arrives exactly once.

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
use netdiag_model::result::{Detail, ProbeResult, Seq};
use netdiag_model::session::{AgentVersion, Hello, InstanceId};
use netdiag_model::time::UnixMillis;
use tokio::sync::{mpsc, watch};

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
        collector: format!("http://{addr}"),
        hello: hello(),
        limits,
        backoff: Backoff { min: Duration::from_millis(20), max: Duration::from_millis(200) },
        connect_timeout: Duration::from_millis(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_restart_loses_nothing_and_duplicates_nothing() {
    // Find a free loopback port, then run the collector there (twice).
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let first = start_collector(addr).await;

    let (out_tx, out_rx) = mpsc::channel(1024);
    let (in_tx, _in_rx) = mpsc::channel(16);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_is_bounded_while_the_collector_is_away_and_drops_are_reported() {
    // Nothing listens on this port (bound then released): the agent must buffer, bounded.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (out_tx, out_rx) = mpsc::channel(1024);
    let (in_tx, _in_rx) = mpsc::channel(16);
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
