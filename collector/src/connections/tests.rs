//! The cap and the first-bytes deadline, over real loopback sockets.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const LIMITS: ConnLimits = ConnLimits { max: 1, tcp_keepalive: Duration::from_secs(60) };

/// A listener and a client connected to it, as the server accepted it.
async fn pair(listener: &TcpListener) -> (TcpStream, (TcpStream, SocketAddr)) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    (client, listener.accept().await.unwrap())
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_until_one_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gate = Gate::new("test", LIMITS);
    let (_c1, (s1, p1)) = pair(&listener).await;
    let first = gate.admit(&s1, p1).expect("room for one");
    assert_eq!(gate.open(), 1);
    let (_c2, (s2, p2)) = pair(&listener).await;
    assert!(gate.admit(&s2, p2).is_none(), "the cap is one");
    let keepalive = socket2::SockRef::from(&s1).keepalive().unwrap();
    assert!(keepalive, "TCP keepalive is on");
    drop(first);
    let (_c3, (s3, p3)) = pair(&listener).await;
    assert!(gate.admit(&s3, p3).is_some(), "a closed connection frees its place");
}

/// Reads from `server` until it fails, ends or `limit` passes; how long that took and whether it timed out.
async fn read_until_cut(server: &mut Limited<TcpStream>, limit: Duration) -> (Duration, bool) {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), server.read(&mut buf)).await {
            Err(_) => return (started.elapsed(), false),
            Ok(Ok(0)) => return (started.elapsed(), false),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return (started.elapsed(), e.kind() == std::io::ErrorKind::TimedOut),
        }
    }
}

#[tokio::test]
async fn a_client_that_sends_half_its_preface_is_cut_in_time() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gate = Gate::new("test", LIMITS);
    let (mut client, (tcp, peer)) = pair(&listener).await;
    let permit = gate.admit(&tcp, peer).unwrap();
    let mut server = Limited::new(tcp, permit).first_bytes_within(
        H2_PREFACE_LEN,
        Duration::from_millis(300),
        peer,
        "test",
    );
    client.write_all(&b"PRI * HTTP/2.0\r\n"[..]).await.unwrap(); // 16 of 24 bytes, then silence
    let (took, timed_out) = read_until_cut(&mut server, Duration::from_secs(5)).await;
    assert!(timed_out, "cut with TimedOut");
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "{took:?}");
    drop(server);
    assert_eq!(gate.open(), 0, "its place is freed");
}

#[tokio::test]
async fn a_client_that_sends_its_preface_in_time_is_not_cut() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gate = Gate::new("test", LIMITS);
    let (mut client, (tcp, peer)) = pair(&listener).await;
    let permit = gate.admit(&tcp, peer).unwrap();
    let mut server = Limited::new(tcp, permit).first_bytes_within(
        H2_PREFACE_LEN,
        Duration::from_millis(300),
        peer,
        "test",
    );
    client.write_all(&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..]).await.unwrap();
    let mut buf = [0u8; 24];
    server.read_exact(&mut buf).await.unwrap();
    // Quiet after the preface is the protocol's business (HTTP/2 keepalive), not this deadline.
    let (took, timed_out) = read_until_cut(&mut server, Duration::from_secs(1)).await;
    assert!(!timed_out && took >= Duration::from_millis(900), "{took:?}");
}
