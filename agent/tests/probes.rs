//! The agent's ICMP, TCP, HTTP and path-MTU probes against the lab: each runs from inside a
//! pod's namespace (through `SourceNs`), and must classify a healthy path and each injected
//! fault with the exact outcome, in results that pass `ProbeResult::check`.
//!
//! Needs root, `ip`, `iptables` and `nft`, like `tests/tests/lab.rs`. Each test builds its own
//! lab (unique names), so they run in parallel.

// Helpers here panic on purpose: a panic is how a test reports what it found.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netdiag_agent::probe::icmp::Pinger;
use netdiag_agent::probe::{http, mtu, tcp};
use netdiag_agent::source::SourceNs;
use netdiag_lab::plan::LabPlan;
use netdiag_model::probe::{ServiceVia, Source, Target};
use netdiag_model::result::ProbeResult;
use netdiag_model::{HttpFailure, HttpPath, IcmpFailure, MtuFailure, Outcome, Port, TcpFailure};
use netdiag_tests::lab::TestLab;
use socket2::{Domain, Protocol, Type};

/// Long enough that a live path always answers.
const T: Duration = Duration::from_millis(1000);
/// For probes expected to fail by silence.
const DROP_T: Duration = Duration::from_millis(400);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn enter(lab: &TestLab, pod: &str) -> SourceNs {
    let p = lab.pod(pod);
    SourceNs::enter(Source::Pod(p.pod.clone()), &LabPlan::netns_path(&p.netns), None).unwrap()
}

fn pod(lab: &TestLab, name: &str, port: Option<u32>) -> Target {
    let p = lab.pod(name);
    Target::Pod { pod: p.pod.clone(), ip: p.ip.into(), port: port.map(|n| Port::new(n).unwrap()) }
}

/// The result, after checking it is consistent and printing it (`--nocapture` shows the
/// numbers measured in the lab).
fn checked(r: ProbeResult) -> ProbeResult {
    r.check().unwrap_or_else(|e| panic!("inconsistent result ({e}): {r:?}"));
    eprintln!("{} {} -> {}: {} | {}", r.kind, r.source, r.target, r.outcome.as_str(), r.detail);
    r
}

fn counts(r: &ProbeResult) -> Option<(u32, u32)> {
    r.burst.map(|b| (b.sent(), b.received()))
}

#[test]
fn icmp_reaches_a_pod_then_times_out_when_it_goes_down() {
    let lab = TestLab::up();
    let src = enter(&lab, "tidb/demo-tikv-0");
    let (dst, other) = (pod(&lab, "tidb/demo-pd-1", None), pod(&lab, "tidb/demo-pd-2", None));
    runtime().block_on(async {
        let pinger = Pinger::new(&src).await.unwrap();
        let second = Pinger::new(&src).await.unwrap();
        assert_ne!(pinger.ident(), second.ident(), "two live pingers never share an identifier");

        let (a, b) = tokio::join!(pinger.ping(&dst, 5, 56, T), second.ping(&dst, 5, 56, T));
        for r in [checked(a), checked(b)] {
            assert_eq!(r.outcome, Outcome::Ok);
            assert_eq!(counts(&r), Some((5, 5)), "concurrent pingers to one host keep their replies apart");
            let rtt = r.rtt.unwrap();
            assert!(rtt.as_duration() < T, "{rtt}");
        }
        let big = checked(pinger.ping(&dst, 2, 1400, T).await);
        assert_eq!(big.outcome, Outcome::Ok);

        lab.fault("pod-down tidb/demo-pd-1");
        let down = checked(pinger.ping(&dst, 3, 56, DROP_T).await);
        assert_eq!(down.outcome, Outcome::Icmp(IcmpFailure::Timeout));
        assert_eq!(counts(&down), Some((3, 0)));
        assert_eq!(down.rtt, None);
        assert_eq!(checked(pinger.ping(&other, 3, 56, T).await).outcome, Outcome::Ok, "other pods answer");
        let mtu = checked(mtu::path_mtu(&src, &dst, &mtu::DEFAULT_LADDER, DROP_T).await);
        assert_eq!(mtu.outcome, Outcome::Icmp(IcmpFailure::Timeout), "no size comes back from a down pod");
        assert_eq!(mtu.path_mtu, None);
    });
}

#[test]
fn icmp_and_tcp_report_unreachable_when_a_node_loses_its_route() {
    let lab = TestLab::up();
    let src = enter(&lab, "tidb/demo-pd-0");
    let (dst, dst_tcp) = (pod(&lab, "tidb/demo-pd-2", None), pod(&lab, "tidb/demo-pd-2", Some(2379)));
    lab.fault("route-missing node-1 node-3");
    runtime().block_on(async {
        // The node answers with ICMP "network unreachable", which Linux rate-limits per
        // destination: the SYN goes first, so its error is never the one held back.
        let tcp = checked(tcp::connect(&src, &dst_tcp, T).await);
        assert_eq!(tcp.outcome, Outcome::Tcp(TcpFailure::Unreachable));
        let pinger = Pinger::new(&src).await.unwrap();
        let icmp = checked(pinger.ping(&dst, 3, 56, T).await);
        assert_eq!(icmp.outcome, Outcome::Icmp(IcmpFailure::Unreachable));
        assert_eq!(counts(&icmp), Some((3, 0)));
        assert!(icmp.detail.as_str().contains("network unreachable"), "{}", icmp.detail);
    });
}

#[test]
fn tcp_connects_then_is_refused_or_dropped_while_icmp_still_answers() {
    let lab = TestLab::up();
    let src = enter(&lab, "tidb/demo-tikv-0");
    let (client, peer) = (pod(&lab, "tidb/demo-pd-1", Some(2379)), pod(&lab, "tidb/demo-pd-1", Some(2380)));
    runtime().block_on(async {
        let ok = checked(tcp::connect(&src, &client, T).await);
        assert_eq!(ok.outcome, Outcome::Ok);
        assert!(ok.rtt.unwrap().as_duration() < T);

        lab.fault("port-closed tidb/demo-pd-1 2379");
        lab.fault("port-drop tidb/demo-pd-1 2380");
        let refused = checked(tcp::connect(&src, &client, T).await);
        assert_eq!(refused.outcome, Outcome::Tcp(TcpFailure::Refused));
        let dropped = checked(tcp::connect(&src, &peer, DROP_T).await);
        assert_eq!(dropped.outcome, Outcome::Tcp(TcpFailure::Timeout));
        assert_eq!(dropped.rtt, None);

        let pinger = Pinger::new(&src).await.unwrap();
        let icmp = checked(pinger.ping(&pod(&lab, "tidb/demo-pd-1", None), 3, 56, T).await);
        assert_eq!(icmp.outcome, Outcome::Ok, "ICMP still answers");

        lab.heal();
        assert_eq!(checked(tcp::connect(&src, &client, T).await).outcome, Outcome::Ok);
    });
}

#[test]
fn http_gets_pd_members_through_the_service_vip_and_404_for_unknown_paths() {
    let lab = TestLab::up();
    let src = enter(&lab, "tidb/demo-tikv-0");
    let pd = lab.service("tidb/demo-pd");
    let vip = Target::Service {
        service: pd.service.clone(),
        ip: pd.cluster_ip.unwrap().into(),
        port: Port::new(2379).unwrap(),
        via: ServiceVia::ClusterIp,
    };
    assert_eq!(vip.socket_addr(), Some("10.96.0.20:2379".parse().unwrap()));
    runtime().block_on(async {
        let members = HttpPath::new("/pd/api/v1/members").unwrap();
        let ok = checked(http::get(&src, &vip, &members, T).await);
        assert_eq!(ok.outcome, Outcome::Ok);
        assert_eq!(ok.http_status.map(|s| s.get()), Some(200));
        assert!(ok.rtt.is_some());
        assert!(ok.detail.as_str().contains("connect "), "{}", ok.detail);

        let nope = checked(http::get(&src, &vip, &HttpPath::new("/nope").unwrap(), T).await);
        assert_eq!(nope.outcome, Outcome::Http(HttpFailure::Status));
        assert_eq!(nope.http_status.map(|s| s.get()), Some(404));

        lab.fault("port-closed tidb/demo-pd-1 2379");
        let direct = pod(&lab, "tidb/demo-pd-1", Some(2379));
        let refused = checked(http::get(&src, &direct, &members, T).await);
        assert_eq!(
            refused.outcome,
            Outcome::Tcp(TcpFailure::Refused),
            "the handshake fails at the TCP layer"
        );
        assert_eq!(refused.http_status, None);
    });
}

/// A listener inside `pod`'s namespace that accepts connections and, for each, writes the
/// next of `replies` and then holds the connection open and silent.
fn odd_server(
    lab: &TestLab,
    pod: &str,
    port: u16,
    replies: Vec<&'static [u8]>,
) -> std::thread::JoinHandle<()> {
    let netns = LabPlan::netns_path(&lab.pod(pod).netns);
    let socket = netdiag_netns::socket_in(&netns, Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into()).unwrap();
    socket.listen(8).unwrap();
    let listener: std::net::TcpListener = socket.into();
    std::thread::spawn(move || {
        let mut held = vec![];
        for reply in replies {
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(reply).unwrap();
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(3));
    })
}

#[test]
fn http_says_protocol_for_a_non_http_answer_and_timeout_for_silence() {
    let lab = TestLab::up();
    let src = enter(&lab, "tidb/demo-tikv-0");
    let server = odd_server(&lab, "tidb/demo-pd-1", 8081, vec![b"SSH-2.0-OpenSSH_9.6\r\n", b""]);
    let target = pod(&lab, "tidb/demo-pd-1", Some(8081));
    runtime().block_on(async {
        let ssh = checked(http::get(&src, &target, &HttpPath::root(), T).await);
        assert_eq!(ssh.outcome, Outcome::Http(HttpFailure::Protocol));
        assert_eq!(ssh.http_status, None);
        assert!(ssh.detail.as_str().contains("not HTTP"), "{}", ssh.detail);
        let silent = checked(http::get(&src, &target, &HttpPath::root(), DROP_T).await);
        assert_eq!(silent.outcome, Outcome::Http(HttpFailure::Timeout));
    });
    server.join().unwrap();
}

#[test]
fn path_mtu_is_1500_between_nodes_until_a_node_black_holes_big_packets() {
    let lab = TestLab::up();
    let src = enter(&lab, "tidb/demo-pd-0");
    let (on_node2, on_node3) = (pod(&lab, "tidb/demo-pd-1", None), pod(&lab, "tidb/demo-pd-2", None));
    runtime().block_on(async {
        for dst in [&on_node2, &on_node3] {
            let r = checked(mtu::path_mtu(&src, dst, &mtu::DEFAULT_LADDER, DROP_T).await);
            assert_eq!(r.outcome, Outcome::Ok);
            assert_eq!(r.path_mtu.map(|m| m.get()), Some(1500));
        }

        lab.fault("mtu node-2 1200");
        let reduced = checked(mtu::path_mtu(&src, &on_node2, &mtu::DEFAULT_LADDER, DROP_T).await);
        assert_eq!(reduced.outcome, Outcome::Mtu(MtuFailure::Reduced));
        let found = reduced.path_mtu.unwrap().get();
        assert!((577..=1200).contains(&found), "path MTU {found}");
        assert_eq!(found, 1200, "the search narrows to the byte");
        assert!(reduced.detail.as_str().contains("black hole"), "{}", reduced.detail);

        let still = checked(mtu::path_mtu(&src, &on_node3, &mtu::DEFAULT_LADDER, DROP_T).await);
        assert_eq!(still.outcome, Outcome::Ok);
        assert_eq!(still.path_mtu.map(|m| m.get()), Some(1500));
    });
}

#[test]
fn ipv6_pods_answer_icmp_and_tcp_and_their_path_mtu_is_measured() {
    let lab = TestLab::with(|t| t.replace("ipv6: false", "ipv6: true"));
    let src = enter(&lab, "tidb/demo-pd-0");
    let p = lab.pod("tidb/demo-pd-2");
    let v6 = |port: Option<u32>| Target::Pod {
        pod: p.pod.clone(),
        ip: p.ip_v6.unwrap().into(),
        port: port.map(|n| Port::new(n).unwrap()),
    };
    runtime().block_on(async {
        let pinger = Pinger::new(&src).await.unwrap();
        let icmp = checked(pinger.ping(&v6(None), 3, 56, T).await);
        assert_eq!(icmp.outcome, Outcome::Ok);
        assert_eq!(counts(&icmp), Some((3, 3)));
        assert_eq!(checked(tcp::connect(&src, &v6(Some(2379)), T).await).outcome, Outcome::Ok);
        let mtu = checked(mtu::path_mtu(&src, &v6(None), &mtu::DEFAULT_LADDER, DROP_T).await);
        assert_eq!(mtu.outcome, Outcome::Ok);
        assert_eq!(mtu.path_mtu.map(|m| m.get()), Some(1500));

        lab.fault("mtu node-3 1300");
        let reduced = checked(mtu::path_mtu(&src, &v6(None), &mtu::DEFAULT_LADDER, DROP_T).await);
        assert_eq!(reduced.outcome, Outcome::Mtu(MtuFailure::Reduced));
        assert_eq!(reduced.path_mtu.map(|m| m.get()), Some(1300));
    });
}

#[test]
fn source_sockets_live_in_the_pod_namespace() {
    let lab = TestLab::up();
    let p = lab.pod("tidb/demo-pd-0");
    let src = enter(&lab, "tidb/demo-pd-0");
    let ours = src.socket(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    let theirs =
        netdiag_netns::socket_in(&LabPlan::netns_path(&p.netns), Domain::IPV4, Type::DGRAM, None).unwrap();
    let host = socket2::Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
    let cookie = |s: &socket2::Socket| netdiag_netns::socket_netns_cookie(s).unwrap();
    assert_eq!(cookie(&ours), cookie(&theirs), "a SourceNs socket is born in the pod's namespace");
    assert_ne!(cookie(&ours), cookie(&host), "not in the host's");
    let other = netdiag_netns::socket_in(
        &LabPlan::netns_path(&lab.pod("tidb/demo-pd-1").netns),
        Domain::IPV4,
        Type::DGRAM,
        None,
    )
    .unwrap();
    assert_ne!(cookie(&ours), cookie(&other), "nor in another pod's");
    // A probe from inside reaches an address that exists only inside the lab.
    let dst: IpAddr = lab.pod("tidb/demo-pd-1").ip.into();
    let r = runtime().block_on(tcp::connect(
        &src,
        &Target::Address { ip: dst, port: Some(Port::new(2379).unwrap()) },
        T,
    ));
    assert_eq!(checked(r).outcome, Outcome::Ok);
}
