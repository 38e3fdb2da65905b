//! One app connection at a time, without a socket: [`serve_app_stream`] on an in-memory duplex
//! pipe with short timeouts.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

use super::*;
use crate::servers::apps::AppKind;

const SHORT: AppTimeouts = AppTimeouts {
    silent: Duration::from_millis(400),
    head: Duration::from_millis(300),
    write: Duration::from_millis(300),
    linger: Duration::from_millis(300),
};

fn app() -> AppInfo {
    AppInfo::new(
        "tidb/demo-tidb-0".parse().unwrap(),
        vec!["10.244.2.5".parse().unwrap()],
        netdiag_model::Port::new(4000).unwrap(),
        AppKind::Tidb,
    )
}

fn start() -> (DuplexStream, JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move { serve_app_stream(server, &app(), SHORT).await });
    (client, task)
}

/// Sends `request` and reads until the server closes its side.
async fn exchange(request: &[u8]) -> String {
    exchange_timed(request).await.0
}

/// Like [`exchange`], also returning how long the answer took.
async fn exchange_timed(request: &[u8]) -> (String, Duration) {
    let (mut client, task) = start();
    let started = Instant::now();
    client.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out)).await.unwrap().unwrap();
    let took = started.elapsed();
    drop(client);
    task.await.unwrap();
    (String::from_utf8(out).unwrap(), took)
}

#[tokio::test]
async fn answers_one_request_then_closes() {
    let text = exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    assert!(text.ends_with("{\"pod\":\"tidb/demo-tidb-0\",\"port\":4000,\"app\":\"tidb\"}\n"), "{text}");
}

#[tokio::test]
async fn a_request_in_pieces_is_assembled() {
    let (mut client, task) = start();
    for piece in [&b"GE"[..], b"T /nope HTTP/1.0\r\n", b"Host: x\r\n", b"\r\n"] {
        client.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut out = String::new();
    client.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 404 Not Found\r\n"), "{out}");
    task.await.unwrap();
}

#[tokio::test]
async fn garbage_gets_400_without_waiting() {
    let (text, took) = exchange_timed(b"\x16\x03\x01\x00\xa5\x01").await;
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(took < SHORT.head, "rejected on the first bytes, took {took:?}");
    let text = exchange(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 505 "), "{text}");
}

#[tokio::test]
async fn a_stalled_head_times_out_with_408() {
    let (mut client, task) = start();
    client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut out = String::new();
    client.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{out}");
    task.await.unwrap();
}

#[tokio::test]
async fn an_oversized_head_gets_431() {
    let mut request = b"GET / HTTP/1.1\r\n".to_vec();
    while request.len() <= MAX_HEAD_BYTES_FOR_TEST {
        request.extend(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let text = exchange(&request).await;
    assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
}

const MAX_HEAD_BYTES_FOR_TEST: usize = crate::servers::http::MAX_HEAD_BYTES;

#[tokio::test]
async fn a_silent_client_is_kept_until_the_silent_timeout() {
    let (mut client, task) = start();
    let started = Instant::now();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    assert!(out.is_empty());
    assert!(started.elapsed() >= SHORT.silent, "kept open for the whole silent period");
    task.await.unwrap();
}

#[tokio::test]
async fn a_silent_client_that_leaves_ends_the_connection() {
    let (client, task) = start();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!task.is_finished(), "still waiting for the client");
    let started = Instant::now();
    drop(client);
    task.await.unwrap();
    assert!(started.elapsed() < SHORT.silent, "ended by the client, not by the timeout");
}
