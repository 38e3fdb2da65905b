//! The lab's servers on real sockets, loopback only (127.0.0.1, port 0): the cluster DNS over
//! UDP and TCP queried with hickory-proto messages, and the app listeners over TCP.

// `allow-unwrap-in-tests` covers `#[test]` functions, not this crate's helpers; they unwrap
// for the same reason: a panic is how a test reports a failure.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use netdiag_lab::servers::{
    AppIdentity, AppInfo, AppKind, DnsMode, DnsZone, MAX_APP_CONNECTIONS, PdCluster, PdMember, SharedZone,
    serve_app, serve_dns,
};
use netdiag_model::inventory::Inventory;
use netdiag_model::{Name as PodName, Port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const LOOPBACK: &str = "127.0.0.1:0";
const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing happens" is watched for.
const QUIET: Duration = Duration::from_millis(400);

const INVENTORY: &str = r#"
version: 1
cluster:
  name: lab
  domain: cluster.local
  pod_cidrs: [10.244.0.0/16]
  service_cidrs: [10.96.0.0/16]
  node_cidrs: [172.29.0.0/24]
  dns_ips: [10.96.0.10]
  proxy_mode: iptables
nodes:
  - { name: node-1, ips: [172.29.0.11], pod_cidrs: [10.244.1.0/24] }
pods:
  - { namespace: tidb, name: demo-pd-0, node: node-1, ips: [10.244.1.2] }
  - { namespace: tidb, name: demo-pd-1, node: node-1, ips: [10.244.1.3] }
  - { namespace: tidb, name: demo-pd-2, node: node-1, ips: [10.244.1.4] }
services:
  - namespace: tidb
    name: demo-pd
    type: ClusterIP
    cluster_ips: [10.96.0.20, "fd00:10:96::20"]
    ports: [{ port: 2379, target_port: 2379 }]
  - namespace: tidb
    name: demo-pd-peer
    type: ClusterIP
    ports: [{ port: 2380, target_port: 2380 }]
    endpoints:
      - { ip: 10.244.1.2, pod: tidb/demo-pd-0, ready: true }
      - { ip: 10.244.1.3, pod: tidb/demo-pd-1, ready: true }
      - { ip: 10.244.1.4, pod: tidb/demo-pd-2, ready: true }
"#;

fn inventory() -> Inventory {
    Inventory::from_yaml(INVENTORY).unwrap()
}

struct Dns {
    udp: SocketAddr,
    tcp: SocketAddr,
    zone: SharedZone,
    mode: watch::Sender<DnsMode>,
    task: JoinHandle<()>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_dns() -> Dns {
    let udp = UdpSocket::bind(LOOPBACK).await.unwrap();
    let tcp = TcpListener::bind(LOOPBACK).await.unwrap();
    let (udp_addr, tcp_addr) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
    let zone = SharedZone::new(DnsZone::from_inventory(&inventory()));
    let (mode, mode_rx) = watch::channel(DnsMode::Normal);
    let task = tokio::spawn(serve_dns(udp, tcp, zone.clone(), mode_rx));
    Dns { udp: udp_addr, tcp: tcp_addr, zone, mode, task }
}

fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

/// Sends raw bytes over UDP; `None` if nothing comes back within [`QUIET`].
async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(LOOPBACK).await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, from) = timeout(QUIET, socket.recv_from(&mut buf)).await.ok()?.unwrap();
    assert_eq!(from, server);
    buf.truncate(n);
    Some(buf)
}

async fn udp_ask(server: SocketAddr, q: &Message) -> Message {
    let bytes = udp_raw(server, &q.to_vec().unwrap()).await.expect("an answer over UDP");
    let r = Message::from_vec(&bytes).unwrap();
    assert_eq!(r.metadata.id, q.metadata.id);
    assert!(r.metadata.authoritative);
    r
}

async fn tcp_ask(stream: &mut TcpStream, q: &Message) -> Message {
    let bytes = q.to_vec().unwrap();
    let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    framed.extend(bytes);
    stream.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    timeout(WAIT, stream.read_exact(&mut len)).await.unwrap().unwrap();
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut body).await.unwrap();
    let r = Message::from_vec(&body).unwrap();
    assert_eq!(r.metadata.id, q.metadata.id);
    r
}

fn addresses(r: &Message) -> Vec<IpAddr> {
    r.answers
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn pd_app(port: u16) -> AppInfo {
    let ns = "tidb".parse().unwrap();
    let peer: PodName = "demo-pd-peer".parse().unwrap();
    let members = (0..3)
        .map(|i| {
            let pod: PodName = format!("demo-pd-{i}").parse().unwrap();
            PdMember::in_peer_service(&pod, &peer, &ns, Port::new(2379).unwrap(), Port::new(2380).unwrap())
        })
        .collect();
    AppInfo::new(
        "tidb/demo-pd-0".parse().unwrap(),
        ips(&["10.244.1.2"]),
        Port::new(u32::from(port)).unwrap(),
        AppKind::Pd,
    )
    .with_pd_api(PdCluster::new(members))
}

struct App {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_app(app: AppInfo) -> App {
    let listener = TcpListener::bind(LOOPBACK).await.unwrap();
    let addr = listener.local_addr().unwrap();
    App { addr, task: tokio::spawn(serve_app(listener, app)) }
}

/// One HTTP exchange: status code and body.
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: demo-pd\r\nUser-Agent: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    timeout(WAIT, stream.read_to_string(&mut out)).await.unwrap().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\nConnection: close"), "{head}");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// The tests sit in a `servers` module so `cargo test -p netdiag-lab servers` selects them.
mod servers {
    use super::*;

    #[tokio::test]
    async fn dns_answers_over_udp() {
        let dns = start_dns().await;
        let r = udp_ask(dns.udp, &query("demo-pd.tidb.svc.cluster.local.", RecordType::A)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addresses(&r), ips(&["10.96.0.20"]));
        assert!(r.answers.iter().all(|a| a.ttl == 5));

        let r = udp_ask(dns.udp, &query("demo-pd.tidb.svc.cluster.local.", RecordType::AAAA)).await;
        assert_eq!(addresses(&r), ips(&["fd00:10:96::20"]));

        let r = udp_ask(dns.udp, &query("demo-pd-peer.tidb.svc.cluster.local.", RecordType::A)).await;
        assert_eq!(addresses(&r), ips(&["10.244.1.2", "10.244.1.3", "10.244.1.4"]));

        let r =
            udp_ask(dns.udp, &query("demo-pd-1.demo-pd-peer.tidb.svc.cluster.local.", RecordType::A)).await;
        assert_eq!(addresses(&r), ips(&["10.244.1.3"]));

        let r = udp_ask(dns.udp, &query("demo-pd-peer.tidb.svc.cluster.local.", RecordType::AAAA)).await;
        assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NoError, 0), "NODATA");

        for name in ["gone.tidb.svc.cluster.local.", "github.com."] {
            let r = udp_ask(dns.udp, &query(name, RecordType::A)).await;
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{name}");
        }
    }

    #[tokio::test]
    async fn dns_answers_several_queries_per_tcp_connection() {
        let dns = start_dns().await;
        let mut stream = TcpStream::connect(dns.tcp).await.unwrap();
        let r = tcp_ask(&mut stream, &query("demo-pd.tidb.svc.cluster.local.", RecordType::A)).await;
        assert_eq!(addresses(&r), ips(&["10.96.0.20"]));
        let r = tcp_ask(&mut stream, &query("demo-pd-peer.tidb.svc.cluster.local.", RecordType::A)).await;
        assert_eq!(addresses(&r).len(), 3);
        let r = tcp_ask(&mut stream, &query("nothing.cluster.local.", RecordType::A)).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        let r = tcp_ask(&mut stream, &query("10-244-1-4.tidb.pod.cluster.local.", RecordType::A)).await;
        assert_eq!(addresses(&r), ips(&["10.244.1.4"]));
    }

    #[tokio::test]
    async fn dns_faults_and_zone_changes_apply_at_runtime() {
        let dns = start_dns().await;
        let q = query("demo-pd.tidb.svc.cluster.local.", RecordType::A);
        let mut stream = TcpStream::connect(dns.tcp).await.unwrap();

        dns.mode.send(DnsMode::ServFail).unwrap();
        let r = udp_ask(dns.udp, &q).await;
        assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::ServFail, 0));
        assert_eq!(r.queries, q.queries, "the question is echoed");
        let r = tcp_ask(&mut stream, &q).await;
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail, "open TCP connections too");

        dns.mode.send(DnsMode::Normal).unwrap();
        assert_eq!(addresses(&udp_ask(dns.udp, &q).await), ips(&["10.96.0.20"]));

        let mut inv = inventory();
        inv.services[0].cluster_ips = ips(&["10.96.0.99"]);
        dns.zone.replace(DnsZone::from_inventory(&inv));
        assert_eq!(addresses(&udp_ask(dns.udp, &q).await), ips(&["10.96.0.99"]));
        assert_eq!(addresses(&tcp_ask(&mut stream, &q).await), ips(&["10.96.0.99"]));
    }

    #[tokio::test]
    async fn dns_survives_garbage() {
        let dns = start_dns().await;
        // A header promising a question, then junk: FORMERR with the same id.
        let junk = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xee];
        let r = Message::from_vec(&udp_raw(dns.udp, &junk).await.expect("FORMERR")).unwrap();
        assert_eq!((r.metadata.id, r.metadata.response_code), (0xabcd, ResponseCode::FormErr));
        // Too short to carry an id: dropped.
        assert_eq!(udp_raw(dns.udp, b"hi").await, None);

        let mut stream = TcpStream::connect(dns.tcp).await.unwrap();
        stream.write_all(&[0, junk.len() as u8]).await.unwrap();
        stream.write_all(&junk).await.unwrap();
        let mut len = [0u8; 2];
        timeout(WAIT, stream.read_exact(&mut len)).await.unwrap().unwrap();
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut body).await.unwrap();
        assert_eq!(Message::from_vec(&body).unwrap().metadata.response_code, ResponseCode::FormErr);

        // Still serving.
        let q = query("demo-pd.tidb.svc.cluster.local.", RecordType::A);
        assert_eq!(addresses(&udp_ask(dns.udp, &q).await), ips(&["10.96.0.20"]));
        assert_eq!(addresses(&tcp_ask(&mut stream, &q).await), ips(&["10.96.0.20"]));
    }

    #[tokio::test]
    async fn pd_serves_its_members_and_identity() {
        let app = start_app(pd_app(2379)).await;

        let (status, body) = http_get(app.addr, "/pd/api/v1/members").await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["header"]["cluster_id"].as_u64().is_some());
        let members = v["members"].as_array().unwrap();
        let names: Vec<&str> = members.iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["demo-pd-0", "demo-pd-1", "demo-pd-2"]);
        assert_eq!(
            members[2]["client_urls"],
            serde_json::json!(["http://demo-pd-2.demo-pd-peer.tidb.svc:2379"])
        );
        assert_eq!(v["leader"]["name"], "demo-pd-0");

        let (status, body) = http_get(app.addr, "/pd/api/v1/health").await;
        assert_eq!(status, 200);
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health.as_array().unwrap().len(), 3);

        let (status, body) = http_get(app.addr, "/healthz").await;
        assert_eq!(status, 200);
        let who: AppIdentity = serde_json::from_str(&body).unwrap();
        assert_eq!(who, AppIdentity { pod: "tidb/demo-pd-0".into(), port: 2379, app: AppKind::Pd });

        let (status, _) = http_get(app.addr, "/pd/api/v1/stores").await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn silent_clients_stay_connected_until_they_leave() {
        let app = start_app(pd_app(2380)).await;
        let mut silent = TcpStream::connect(app.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let waited = timeout(QUIET, silent.read(&mut buf)).await;
        assert!(waited.is_err(), "the server neither answers nor closes: {waited:?}");
        drop(silent);

        // A plain TCP probe: connect, then reset.
        let probe = TcpStream::connect(app.addr).await.unwrap();
        socket2::SockRef::from(&probe).set_linger(Some(Duration::ZERO)).unwrap();
        drop(probe);

        let (status, _) = http_get(app.addr, "/").await;
        assert_eq!(status, 200, "still serving after a silent client and a reset");
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_free_slot() {
        let app = start_app(pd_app(2379)).await;
        let mut silent = Vec::with_capacity(MAX_APP_CONNECTIONS);
        for _ in 0..MAX_APP_CONNECTIONS {
            silent.push(TcpStream::connect(app.addr).await.unwrap());
        }
        // The kernel completes the handshake; the server does not take the connection yet.
        let mut extra = TcpStream::connect(app.addr).await.unwrap();
        extra.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await.unwrap();
        let mut out = String::new();
        assert!(timeout(QUIET, extra.read_to_string(&mut out)).await.is_err(), "served early: {out}");

        silent.pop();
        timeout(WAIT, extra.read_to_string(&mut out)).await.unwrap().unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    }
}
