//! The HTTP side's deadlines and cap, over real loopback sockets.

use std::time::{Duration, Instant};

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

const SHORT: HttpLimits = HttpLimits {
    connections: ConnLimits { max: 2, tcp_keepalive: Duration::from_secs(60) },
    first_request_within: Duration::from_millis(500),
    header_read_timeout: Duration::from_millis(500),
};

/// The address of a server answering `GET /` with the caller's address.
async fn start(limits: HttpLimits) -> (SocketAddr, watch::Sender<bool>) {
    let app = Router::new()
        .route("/", get(|ConnectInfo(c): ConnectInfo<Connection>| async move { c.peer.to_string() }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "done"
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(serve(listener, app, limits, stop_rx));
    (addr, stop)
}

/// Reads until the server closes the connection (or 5 s pass); what it said and how long it took.
async fn until_closed(client: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut text = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut text)).await;
    (String::from_utf8_lossy(&text).into_owned(), started.elapsed())
}

#[tokio::test]
async fn a_request_is_answered_with_the_callers_address() {
    let (addr, _stop) = start(SHORT).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let me = client.local_addr().unwrap();
    client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let (text, _) = until_closed(&mut client).await;
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with(&me.to_string()), "{text}");
}

#[tokio::test]
async fn a_client_sending_half_a_header_is_cut_in_time() {
    let (addr, _stop) = start(SHORT).await;
    for half in [&b""[..], b"GET / HTTP/1.1\r\nHost: x\r\n", b"PRI * HTTP/2.0\r\n"] {
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(half).await.unwrap();
        let (text, took) = until_closed(&mut client).await;
        assert!(took < Duration::from_secs(3), "{half:?}: still open after {took:?}");
        assert!(!text.contains(" 200 "), "{half:?}: {text}");
    }
}

#[tokio::test]
async fn a_kept_alive_connection_must_send_its_next_header_in_time() {
    let (addr, _stop) = start(SHORT).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n").await.unwrap();
    let (text, took) = until_closed(&mut client).await;
    assert!(text.starts_with("HTTP/1.1 200"), "the first request is answered: {text}");
    assert!(took < Duration::from_secs(3), "the half second header is cut: {took:?}");
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    let (addr, _stop) = start(SHORT).await;
    let _one = TcpStream::connect(addr).await.unwrap();
    let _two = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut three = TcpStream::connect(addr).await.unwrap();
    let (text, took) = until_closed(&mut three).await;
    assert!(text.is_empty() && took < Duration::from_millis(400), "{text:?} after {took:?}");
}

#[tokio::test]
async fn a_first_request_that_takes_longer_than_the_deadline_is_not_cut() {
    let (addr, _stop) = start(SHORT).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let (text, took) = until_closed(&mut client).await;
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("done"), "{text:?} after {took:?}");
}
