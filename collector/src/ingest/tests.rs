//! The session service's defences, over real loopback gRPC: an agent that stops reading is
//! cut without holding anyone up, a session without a hello is refused in time, and the
//! session cap holds.

use std::sync::Arc;
use std::time::Duration;

use netdiag_diagnose::matrix::MatrixConfig;
use netdiag_model::NodeName;
use netdiag_model::inventory::Inventory;
use netdiag_model::result::{ResultBatch, Seq};
use netdiag_model::session::{AgentMessage, CollectorMessage};
use netdiag_proto::v1;
use netdiag_proto::v1::agent_session_client::AgentSessionClient;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::Ingest;
use crate::quota::Quotas;
use crate::runs::testkit::{INVENTORY, Rig};
use crate::state::CollectorState;

fn node(s: &str) -> NodeName {
    NodeName::new(s).unwrap()
}

#[tokio::test]
async fn an_agent_that_stops_reading_is_cut_and_nobody_waits_on_it() {
    let rig = Rig::new(Default::default()).await;
    let _stuck = rig.agent("node-1").await; // never reads what the collector sends
    let _fine = rig.agent("node-2").await;
    // Fill node-1's stream (HTTP/2 window, then the session's queue): every send returns at
    // once, and the session is cut when its queue is full.
    let flood = async {
        let mut sent = 0u64;
        while rig.ingest.send_to(&node("node-1"), CollectorMessage::Inspect(None)).await {
            sent += 1;
            assert!(sent < 10_000_000, "the queue never filled");
        }
        sent
    };
    let sent =
        tokio::time::timeout(Duration::from_secs(20), flood).await.expect("no send ever waits on an agent");
    assert!(sent > 0);
    tokio::time::timeout(Duration::from_secs(5), async {
        while rig.ingest.is_connected(&node("node-1")) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the stuck session is cut");
    assert!(rig.ingest.is_connected(&node("node-2")), "the other agent is untouched");
    assert!(rig.ingest.send_to(&node("node-2"), CollectorMessage::Inspect(None)).await);
}

/// A session service on loopback with `edit` applied to its ingest.
async fn serve(edit: impl FnOnce(Ingest) -> Ingest) -> (std::net::SocketAddr, watch::Sender<bool>) {
    let state =
        Arc::new(CollectorState::new(Inventory::from_yaml(INVENTORY).unwrap(), MatrixConfig::default()));
    let (stop, stop_rx) = watch::channel(false);
    let ingest = edit(Ingest::new(state, stop_rx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ingest.into_service())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, stop)
}

#[tokio::test]
async fn a_session_without_a_hello_is_refused_in_time() {
    let (addr, _stop) = serve(|i| i.with_hello_within(Duration::from_millis(300))).await;
    let mut client = AgentSessionClient::connect(format!("http://{addr}")).await.unwrap();
    let (_up, rx) = mpsc::channel::<v1::AgentMessage>(1);
    let started = std::time::Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(5), client.session(ReceiverStream::new(rx)))
        .await
        .expect("refused, not left hanging")
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status}");
    assert!(status.message().contains("no hello within"), "{status}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn sessions_beyond_the_cap_are_refused_with_a_reason() {
    let rig = Rig::new(Default::default()).await;
    let _one = rig.agent("node-1").await;
    let (addr, _stop) = serve(|i| i.with_max_sessions(0)).await;
    let mut client = AgentSessionClient::connect(format!("http://{addr}")).await.unwrap();
    let (_up, rx) = mpsc::channel::<v1::AgentMessage>(1);
    let status = client.session(ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    assert!(status.message().contains("cap"), "{status}");
}

fn hello(node: &str) -> netdiag_model::session::Hello {
    serde_json::from_value(serde_json::json!({
        "node": node, "agent_version": "0.1.0", "capabilities": [], "pods": [], "node_ips": [],
        "first_unacked_seq": 1, "instance_id": format!("{node}-1"),
    }))
    .unwrap()
}

#[tokio::test]
async fn a_hello_naming_a_node_the_inventory_lacks_is_refused() {
    let (addr, _stop) = serve(|i| i).await;
    let mut client = AgentSessionClient::connect(format!("http://{addr}")).await.unwrap();
    let (up, rx) = mpsc::channel::<v1::AgentMessage>(1);
    up.send(AgentMessage::Hello(hello("node-99")).into()).await.unwrap();
    let status = client.session(ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    assert!(status.message().contains("node-99 is not in the collector's inventory"), "{status}");
}

#[tokio::test]
async fn batches_past_the_rate_are_read_later_and_none_is_lost() {
    let quotas = Quotas { batches_per_second: 10.0, batch_burst: 1.0, ..Quotas::default() };
    let (addr, _stop) = serve(|i| i.with_quotas(quotas)).await;
    let mut client = AgentSessionClient::connect(format!("http://{addr}")).await.unwrap();
    let (up, rx) = mpsc::channel::<v1::AgentMessage>(16);
    up.send(AgentMessage::Hello(hello("node-1")).into()).await.unwrap();
    let mut down = client.session(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let started = std::time::Instant::now();
    for seq in 1..=6 {
        let batch = ResultBatch { seq: Seq::new(seq).unwrap(), results: vec![], dropped: 0 };
        up.send(AgentMessage::Results(batch).into()).await.unwrap();
    }
    let mut acked = Vec::new();
    while acked.len() < 6 {
        let msg =
            tokio::time::timeout(Duration::from_secs(5), down.message()).await.unwrap().unwrap().unwrap();
        if let Ok(CollectorMessage::Ack(seq)) = CollectorMessage::try_from(msg) {
            acked.push(seq.get());
        }
    }
    assert_eq!(acked, [1, 2, 3, 4, 5, 6], "every batch is acknowledged");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450), "five batches past the burst at 10/s: {took:?}");
}

#[tokio::test]
async fn an_agent_that_keeps_speaking_for_another_node_is_cut() {
    let (addr, _stop) = serve(|i| i).await;
    let mut client = AgentSessionClient::connect(format!("http://{addr}")).await.unwrap();
    let (up, rx) = mpsc::channel::<v1::AgentMessage>(32);
    up.send(AgentMessage::Hello(hello("node-1")).into()).await.unwrap();
    let mut down = client.session(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let foreign: netdiag_model::result::ProbeResult = serde_json::from_value(serde_json::json!({
        "source": "tidb/demo-pd-1".parse::<netdiag_model::probe::Source>().unwrap(), // on node-2
        "target": {"type": "address", "ip": "10.9.0.1", "port": null},
        "kind": "icmp", "outcome": "ok", "at": crate::state::now(),
    }))
    .unwrap();
    for seq in 1..=u64::from(super::MAX_STRIKES) {
        let batch = ResultBatch { seq: Seq::new(seq).unwrap(), results: vec![foreign.clone()], dropped: 0 };
        up.send(AgentMessage::Results(batch).into()).await.unwrap();
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match down.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the session is cut");
    let status = ended.expect("with a reason");
    assert!(status.message().contains("sources on another node"), "{status}");
}
