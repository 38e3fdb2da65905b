//! Plain-socket probes from inside a lab namespace: TCP connect, HTTP GET, ICMP echo and DNS
//! queries. Every socket is created inside the namespace (it keeps it for life), then used
//! from the test thread with blocking calls and timeouts.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use netdiag_lab::plan::LabPlan;

fn socket(netns: &str, domain: Domain, ty: Type, protocol: Protocol) -> io::Result<Socket> {
    netdiag_netns::socket_in(&LabPlan::netns_path(netns), domain, ty, Some(protocol))
        .map_err(io::Error::other)
}

fn domain_of(ip: IpAddr) -> Domain {
    if ip.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 }
}

/// How a connection attempt ended, as a probe classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Ok,
    Refused,
    Timeout,
    Unreachable,
    Other,
}

pub fn classify(e: &io::Error) -> Reach {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => Reach::Refused,
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Reach::Timeout,
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => Reach::Unreachable,
        _ => Reach::Other,
    }
}

/// TCP connect from inside `netns`; closes with RST so no connection lingers.
pub fn tcp(netns: &str, addr: SocketAddr, timeout: Duration) -> Reach {
    let s = match socket(netns, domain_of(addr.ip()), Type::STREAM, Protocol::TCP) {
        Ok(s) => s,
        Err(_) => return Reach::Other,
    };
    match s.connect_timeout(&addr.into(), timeout) {
        Ok(()) => {
            let _ = s.set_linger(Some(Duration::ZERO));
            Reach::Ok
        }
        Err(e) => classify(&e),
    }
}

/// `GET path` over HTTP/1.1; returns the status code and body.
pub fn http_get(netns: &str, addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let s = socket(netns, domain_of(addr.ip()), Type::STREAM, Protocol::TCP)?;
    s.connect_timeout(&addr.into(), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let mut stream: std::net::TcpStream = s.into();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One ICMP echo with `payload` bytes from inside `netns`; true when the reply came back.
pub fn ping(netns: &str, ip: IpAddr, payload: usize, timeout: Duration) -> io::Result<bool> {
    let (protocol, request, reply) = match ip {
        IpAddr::V4(_) => (Protocol::ICMPV4, 8u8, 0u8),
        IpAddr::V6(_) => (Protocol::ICMPV6, 128u8, 129u8),
    };
    let s = socket(netns, domain_of(ip), Type::RAW, protocol)?;
    let id = (std::process::id() as u16) ^ (payload as u16).rotate_left(7);
    let mut packet = vec![request, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    packet.extend((0..payload).map(|i| i as u8));
    if ip.is_ipv4() {
        let c = checksum(&packet);
        packet[2..4].copy_from_slice(&c.to_be_bytes());
    }
    s.send_to(&packet, &SockAddr::from(SocketAddr::new(ip, 0)))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        s.set_read_timeout(Some(left))?;
        let n = match (&s).read(&mut buf) {
            Ok(n) => n,
            Err(e) if classify(&e) == Reach::Timeout => return Ok(false),
            Err(e) => return Err(e),
        };
        let bytes = &buf[..n];
        // IPv4 raw sockets deliver the IP header too: check the sender there.
        let icmp = match ip {
            IpAddr::V4(want) => {
                if bytes.len() < 20 || bytes[12..16] != want.octets() {
                    continue;
                }
                let ihl = usize::from(bytes[0] & 0x0f) * 4;
                bytes.get(ihl..).unwrap_or_default()
            }
            IpAddr::V6(_) => bytes,
        };
        if icmp.len() >= 8 && icmp[0] == reply && icmp[4..6] == id.to_be_bytes() {
            return Ok(true);
        }
    }
}

/// The answer to one DNS query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    pub rcode: ResponseCode,
    pub ips: Vec<IpAddr>,
}

/// Sends one query for `name` (absolute) to `server` from inside `netns`, over UDP or TCP.
pub fn dns(
    netns: &str,
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    over_tcp: bool,
    timeout: Duration,
) -> io::Result<DnsAnswer> {
    let mut msg = Message::new(0x5eed, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    let qname = Name::from_ascii(name).map_err(io::Error::other)?;
    msg.add_query(Query::query(qname, qtype));
    let bytes = msg.to_vec().map_err(io::Error::other)?;
    let reply = if over_tcp {
        let s = socket(netns, domain_of(server.ip()), Type::STREAM, Protocol::TCP)?;
        s.connect_timeout(&server.into(), timeout)?;
        s.set_read_timeout(Some(timeout))?;
        let mut stream: std::net::TcpStream = s.into();
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len)?;
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut body)?;
        body
    } else {
        let s = socket(netns, domain_of(server.ip()), Type::DGRAM, Protocol::UDP)?;
        s.set_read_timeout(Some(timeout))?;
        let udp: std::net::UdpSocket = s.into();
        udp.send_to(&bytes, server)?;
        let mut buf = vec![0u8; 4096];
        let (n, _) = udp.recv_from(&mut buf)?;
        buf.truncate(n);
        buf
    };
    let answer = Message::from_vec(&reply).map_err(io::Error::other)?;
    let ips = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    Ok(DnsAnswer { rcode: answer.metadata.response_code, ips })
}
