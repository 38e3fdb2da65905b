//! DNS over a stream without a socket: [`serve_dns_stream`] on an in-memory duplex pipe, with
//! short timeouts.

use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::servers::dns_zone::Answer;
use crate::servers::fixtures::{inventory, zone};

const SHORT: TcpTimeouts = TcpTimeouts { idle: Duration::from_millis(300), io: Duration::from_millis(300) };

fn framed(name: &str, id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let bytes = m.to_vec().unwrap();
    let mut out = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    out.extend(bytes);
    out
}

async fn read_answer(client: &mut DuplexStream) -> Message {
    let mut len = [0u8; 2];
    client.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    client.read_exact(&mut body).await.unwrap();
    Message::from_vec(&body).unwrap()
}

async fn assert_closed(client: &mut DuplexStream) {
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
        .await
        .expect("server closes the stream")
        .unwrap();
    assert_eq!(n, 0, "no bytes after the answers");
}

#[tokio::test]
async fn several_queries_share_one_connection_until_idle() {
    let (mut client, server) = tokio::io::duplex(4096);
    let shared = SharedZone::new(zone());
    let (_mode_tx, mode) = watch::channel(DnsMode::Normal);
    let server = tokio::spawn(async move { serve_dns_stream(server, &shared, &mode, SHORT).await });

    // Two queries in one write, a third after the first answers.
    let mut both = framed("demo-pd.tidb.svc.cluster.local.", 1);
    both.extend(framed("nope.cluster.local.", 2));
    client.write_all(&both).await.unwrap();
    let first = read_answer(&mut client).await;
    assert_eq!((first.metadata.id, first.answers.len()), (1, 1));
    let second = read_answer(&mut client).await;
    assert_eq!((second.metadata.id, second.metadata.response_code), (2, ResponseCode::NXDomain));
    client.write_all(&framed("demo-pd-peer.tidb.svc.cluster.local.", 3)).await.unwrap();
    assert_eq!(read_answer(&mut client).await.answers.len(), 3);

    let idle_since = Instant::now();
    assert_closed(&mut client).await;
    assert!(idle_since.elapsed() >= SHORT.idle, "closed only after the idle timeout");
    server.await.unwrap();
}

#[tokio::test]
async fn zero_length_or_stalled_messages_close_the_connection() {
    let shared = SharedZone::new(zone());
    let (_mode_tx, mode) = watch::channel(DnsMode::Normal);

    let (mut client, server) = tokio::io::duplex(4096);
    let (z, m) = (shared.clone(), mode.clone());
    let task = tokio::spawn(async move { serve_dns_stream(server, &z, &m, SHORT).await });
    client.write_all(&[0, 0]).await.unwrap();
    assert_closed(&mut client).await;
    task.await.unwrap();

    // The length promises 100 bytes; only 3 come.
    let (mut client, server) = tokio::io::duplex(4096);
    let task = tokio::spawn(async move { serve_dns_stream(server, &shared, &mode, SHORT).await });
    client.write_all(&[0, 100, 1, 2, 3]).await.unwrap();
    assert_closed(&mut client).await;
    task.await.unwrap();
}

#[tokio::test]
async fn zone_replacement_and_mode_apply_to_the_next_query() {
    let (mut client, server) = tokio::io::duplex(4096);
    let shared = SharedZone::new(zone());
    let (mode_tx, mode) = watch::channel(DnsMode::Normal);
    let handle = shared.clone();
    let server = tokio::spawn(async move { serve_dns_stream(server, &handle, &mode, SHORT).await });

    client.write_all(&framed("demo-pd.tidb.svc.cluster.local.", 1)).await.unwrap();
    assert_eq!(read_answer(&mut client).await.answers.len(), 1);

    let mut inv = inventory();
    inv.services.retain(|s| s.name.as_str() != "demo-pd");
    let before = shared.current();
    shared.replace(DnsZone::from_inventory(&inv));
    assert_eq!(
        before.lookup("demo-pd.tidb.svc.cluster.local", RecordType::A),
        Answer::Records(vec!["10.96.0.20".parse().unwrap()]),
        "a zone taken before the swap is unchanged"
    );
    client.write_all(&framed("demo-pd.tidb.svc.cluster.local.", 2)).await.unwrap();
    assert_eq!(read_answer(&mut client).await.metadata.response_code, ResponseCode::NXDomain);

    mode_tx.send(DnsMode::ServFail).unwrap();
    client.write_all(&framed("demo-pd-peer.tidb.svc.cluster.local.", 3)).await.unwrap();
    assert_eq!(read_answer(&mut client).await.metadata.response_code, ResponseCode::ServFail);

    drop(client);
    server.await.unwrap();
}
