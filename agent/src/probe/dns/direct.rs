//! One nameserver asked directly, with our own message on a socket born in the source's
//! namespace: the exact rcode and round trip of *that* server, no search list, no resolver.
//!
//! UDP: the socket is connected to the server (so an ICMP port unreachable reads as
//! ECONNREFUSED); the query goes out up to three times, spread over the timeout, each time
//! with a fresh id, so the answer's id says which send it answers and the RTT is exact. A
//! truncated (TC) answer is asked again over TCP in the time left. TCP: connect, one
//! length-prefixed query, one answer, then close with RST (`SO_LINGER` 0).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::{Name, RecordType};
use netdiag_model::dns::DnsTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpSocket, UdpSocket};
use tokio::time::Instant;
use tracing::debug;

use super::glibc::{Answer, Reply};
use super::provider::{SocketLog, make_socket};
use super::wire::{self, Decoded};
use super::{Failure, unreachable_words};
use crate::source::SourceNs;

/// Sends per UDP query, spread evenly over the probe's timeout.
const UDP_SENDS: u32 = 3;
const PORT: u16 = 53;

/// How a direct query ended.
#[derive(Debug)]
pub(super) struct Asked {
    pub(super) reply: Reply,
    /// Over TCP after a truncated UDP answer.
    pub(super) retried_over_tcp: bool,
}

/// Asks `server` for `name`/`rtype` over `transport`, until `deadline`.
pub(super) async fn ask(
    src: &SourceNs,
    log: &SocketLog,
    server: IpAddr,
    name: &Name,
    rtype: RecordType,
    transport: DnsTransport,
    deadline: Instant,
) -> Result<Asked, Failure> {
    let addr = SocketAddr::new(server, PORT);
    match transport {
        DnsTransport::Tcp => {
            Ok(Asked { reply: tcp(src, log, addr, name, rtype, deadline).await?, retried_over_tcp: false })
        }
        DnsTransport::Udp => match udp(src, log, addr, name, rtype, deadline).await? {
            UdpReply::Done(reply) => Ok(Asked { reply, retried_over_tcp: false }),
            UdpReply::Truncated => {
                debug!(%addr, "truncated UDP answer; asking again over TCP");
                Ok(Asked { reply: tcp(src, log, addr, name, rtype, deadline).await?, retried_over_tcp: true })
            }
        },
    }
}

enum UdpReply {
    Done(Reply),
    Truncated,
}

/// An I/O error on the way to the server: the network's doing, or ours.
fn io_reply(
    log: &SocketLog,
    addr: SocketAddr,
    transport: DnsTransport,
    e: &io::Error,
) -> Result<Reply, Failure> {
    log.failed(addr, transport, e);
    match unreachable_words(e.raw_os_error()) {
        Some(words) => Ok(Reply::Unreachable(format!("{addr}/{transport}: {words}"))),
        None => Err(Failure::Local(format!("talking to {addr}/{transport} failed: {e}"))),
    }
}

async fn udp(
    src: &SourceNs,
    log: &SocketLog,
    addr: SocketAddr,
    name: &Name,
    rtype: RecordType,
    deadline: Instant,
) -> Result<UdpReply, Failure> {
    let socket = make_socket(src, log, addr, DnsTransport::Udp).await?;
    if let Err(e) = socket.set_nonblocking(true).and_then(|()| socket.connect(&addr.into())) {
        return io_reply(log, addr, DnsTransport::Udp, &e).map(UdpReply::Done);
    }
    let socket = match UdpSocket::from_std(socket.into()) {
        Ok(s) => s,
        Err(e) => {
            return Err(Failure::Local(format!("cannot register the UDP socket with the runtime: {e}")));
        }
    };
    let spacing = deadline.saturating_duration_since(Instant::now()) / UDP_SENDS;
    let mut sent: Vec<(u16, Instant)> = Vec::new();
    let mut next_send = Instant::now();
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    let mut watch_errors = true;
    loop {
        if sent.len() < UDP_SENDS as usize && Instant::now() >= next_send {
            let id = fresh_id(&sent);
            let bytes = wire::query(id, name, rtype).map_err(Failure::Local)?;
            // Stamped before the send: on a veth path the answer can be back before send()
            // returns.
            let at = Instant::now();
            if let Err(e) = socket.send(&bytes).await {
                return io_reply(log, addr, DnsTransport::Udp, &e).map(UdpReply::Done);
            }
            sent.push((id, at));
            next_send = Instant::now() + spacing.max(Duration::from_millis(1));
        }
        let wake = if sent.len() < UDP_SENDS as usize { next_send.min(deadline) } else { deadline };
        tokio::select! {
            // tokio wakes readers on EPOLLIN only; an ICMP port unreachable raises EPOLLERR.
            _ = socket.ready(Interest::ERROR), if watch_errors => {
                match socket.take_error() {
                    Ok(Some(e)) | Err(e) => return io_reply(log, addr, DnsTransport::Udp, &e).map(UdpReply::Done),
                    // The readiness stays set once seen: stop watching rather than spin.
                    Ok(None) => watch_errors = false,
                }
            }
            received = socket.recv(&mut buf) => {
                let len = match received {
                    Ok(len) => len,
                    Err(e) => return io_reply(log, addr, DnsTransport::Udp, &e).map(UdpReply::Done),
                };
                log.received(addr, DnsTransport::Udp);
                let ids: Vec<u16> = sent.iter().map(|(id, _)| *id).collect();
                match wire::decode(buf.get(..len).unwrap_or_default(), &ids, name, rtype) {
                    Decoded::NotOurs => debug!(%addr, len, "ignoring a datagram that does not answer our query"),
                    Decoded::Garbled(why) => debug!(%addr, %why, "ignoring an unreadable datagram"),
                    Decoded::Reply { truncated: true, .. } => return Ok(UdpReply::Truncated),
                    Decoded::Reply { id, rcode, ips, .. } => {
                        let at = sent.iter().find(|(i, _)| *i == id).map_or_else(Instant::now, |(_, t)| *t);
                        let answer = Answer { server: addr.ip(), rcode, ips, rtt: at.elapsed() };
                        return Ok(UdpReply::Done(Reply::Answer(answer)));
                    }
                }
            }
            () = tokio::time::sleep_until(wake) => {
                if Instant::now() >= deadline {
                    return Ok(UdpReply::Done(Reply::Silent));
                }
            }
        }
    }
}

/// A message id not used by an earlier send of this query.
fn fresh_id(sent: &[(u16, Instant)]) -> u16 {
    loop {
        let id = fastrand::u16(..);
        if !sent.iter().any(|(i, _)| *i == id) {
            return id;
        }
    }
}

async fn tcp(
    src: &SourceNs,
    log: &SocketLog,
    addr: SocketAddr,
    name: &Name,
    rtype: RecordType,
    deadline: Instant,
) -> Result<Reply, Failure> {
    let socket = make_socket(src, log, addr, DnsTransport::Tcp).await?;
    // SO_LINGER 0: closing sends RST, so probes leave no conntrack entries behind.
    if let Err(e) = socket.set_nonblocking(true).and_then(|()| socket.set_linger(Some(Duration::ZERO))) {
        return Err(Failure::Local(format!("cannot prepare the TCP socket: {e}")));
    }
    let tcp = TcpSocket::from_std_stream(socket.into());
    let _ = tcp.set_nodelay(true);
    let mut stream = match tokio::time::timeout_at(deadline, tcp.connect(addr)).await {
        Err(_) => return Ok(Reply::Silent),
        Ok(Err(e)) => return io_reply(log, addr, DnsTransport::Tcp, &e),
        Ok(Ok(s)) => s,
    };
    let id = fastrand::u16(..);
    let bytes = wire::query(id, name, rtype).map_err(Failure::Local)?;
    let len =
        u16::try_from(bytes.len()).map_err(|_| Failure::Local("query longer than 65535 bytes".into()))?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    let started = Instant::now();
    let exchange = async {
        stream.write_all(&framed).await?;
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut body).await?;
        Ok::<_, io::Error>(body)
    };
    let body = match tokio::time::timeout_at(deadline, exchange).await {
        Err(_) => return Ok(Reply::Silent),
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            log.failed(addr, DnsTransport::Tcp, &e);
            return Ok(Reply::Garbled(format!("{addr}/tcp closed the connection without an answer")));
        }
        Ok(Err(e)) => return io_reply(log, addr, DnsTransport::Tcp, &e),
        Ok(Ok(body)) => body,
    };
    let rtt = started.elapsed();
    log.received(addr, DnsTransport::Tcp);
    Ok(match wire::decode(&body, &[id], name, rtype) {
        Decoded::Reply { rcode, ips, .. } => Reply::Answer(Answer { server: addr.ip(), rcode, ips, rtt }),
        Decoded::NotOurs => Reply::Garbled(format!("{addr}/tcp answered something that is not our query")),
        Decoded::Garbled(why) => Reply::Garbled(format!("{addr}/tcp: {why}")),
    })
}
