//! The DNS probe against the lab's cluster DNS, from inside pod namespaces: short names go
//! through the pod's own resolv.conf (search list, ndots:5) to a DNS server that exists only in
//! the lab, every DNS fault reads as its outcome, one nameserver can be asked directly, and
//! every socket the probe makes lives in the pod's namespace (`SO_NETNS_COOKIE`).
//!
//! Needs root, `ip`, `iptables` and `nft` (`.ci/run` installs them). Each test has its own lab.

// Helpers here panic on purpose: a panic is how a test reports what it found.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use netdiag_agent::probe::dns;
use netdiag_agent::source::SourceNs;
use netdiag_lab::plan::{LabPlan, resolv_conf_path};
use netdiag_model::dns::{DnsName, DnsTransport, RecordType};
use netdiag_model::outcome::{DnsFailure, Outcome};
use netdiag_model::probe::{Source, Target};
use netdiag_model::result::ProbeResult;
use netdiag_tests::lab::TestLab;
use socket2::{Domain, Type};

/// Long enough for any live path in the lab to answer.
const T: Duration = Duration::from_secs(2);
/// For probes expected to time out: the verdict comes at this timeout.
const DROP_T: Duration = Duration::from_millis(1200);

const DNS_VIP: &str = "10.96.0.10";

/// A source inside `pod`'s namespace with the resolv.conf the lab wrote for it.
fn pod_source(lab: &TestLab, pod: &str) -> SourceNs {
    let p = lab.pod(pod);
    let conf = resolv_conf_path(&lab.state.dir, &p.pod);
    assert!(conf.exists(), "the lab wrote {}", conf.display());
    SourceNs::enter(Source::Pod(p.pod.clone()), &LabPlan::netns_path(&p.netns), Some(conf)).unwrap()
}

/// A source inside `pod`'s namespace reading `resolv_conf` (written under the lab's state dir).
fn pod_source_with(lab: &TestLab, pod: &str, file: &str, resolv_conf: &str) -> SourceNs {
    let p = lab.pod(pod);
    let path: PathBuf = lab.state.dir.join(file);
    std::fs::write(&path, resolv_conf).unwrap();
    SourceNs::enter(Source::Pod(p.pod.clone()), &LabPlan::netns_path(&p.netns), Some(path)).unwrap()
}

fn target(name: &str, record: RecordType, nameserver: Option<&str>, transport: DnsTransport) -> Target {
    Target::Dns {
        name: DnsName::new(name).unwrap(),
        record,
        nameserver: nameserver.map(|ns| ns.parse().unwrap()),
        transport,
    }
}

fn a(name: &str) -> Target {
    target(name, RecordType::A, None, DnsTransport::Udp)
}

async fn probe(src: &SourceNs, t: &Target, timeout: Duration) -> ProbeResult {
    let started = Instant::now();
    let r = dns::resolve(src, t, timeout).await;
    let took = started.elapsed();
    assert_eq!(r.check(), Ok(()), "{r:?}");
    assert!(took < timeout + Duration::from_millis(500), "{t} took {took:?}, timeout {timeout:?}");
    eprintln!(
        "{} -> {t}: {} rtt={:?} ns={:?} answers={:?} ({took:?})\n    {}",
        r.source,
        r.outcome,
        r.rtt.map(|r| r.to_string()),
        r.nameserver,
        r.answers,
        r.detail
    );
    r
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[tokio::test]
async fn short_names_resolve_through_the_pods_own_resolv_conf() {
    let lab = TestLab::up();
    let src = pod_source(&lab, "tidb/demo-tikv-0");

    // `demo-pd` is known only to the lab's DNS, as demo-pd.tidb.svc.cluster.local: reaching it
    // takes the pod's search list (and its namespace, where 10.96.0.10 exists).
    let r = probe(&src, &a("demo-pd"), T).await;
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.detail);
    assert_eq!(r.answers, ips(&["10.96.0.20"]));
    assert_eq!(r.nameserver, Some(DNS_VIP.parse().unwrap()));
    assert!(r.rtt.is_some());
    assert!(r.detail.as_str().contains("demo-pd.tidb.svc.cluster.local."), "{}", r.detail);

    let over_tcp = probe(&src, &target("demo-pd", RecordType::A, None, DnsTransport::Tcp), T).await;
    assert_eq!(
        (over_tcp.outcome, over_tcp.answers),
        (Outcome::Ok, ips(&["10.96.0.20"])),
        "{}",
        over_tcp.detail
    );

    let mut pd_ips: Vec<IpAddr> =
        ["tidb/demo-pd-0", "tidb/demo-pd-1", "tidb/demo-pd-2"].iter().map(|p| lab.pod(p).ip.into()).collect();
    let mut peer = probe(&src, &a("demo-pd-peer"), T).await.answers;
    pd_ips.sort();
    peer.sort();
    assert_eq!(peer, pd_ips, "the headless service answers one record per PD pod");

    let fqdn = probe(&src, &a("demo-pd.tidb.svc.cluster.local."), T).await;
    assert_eq!(fqdn.answers, ips(&["10.96.0.20"]));

    let nope = probe(&src, &a("nope"), T).await;
    assert_eq!(nope.outcome, Outcome::Dns(DnsFailure::NxDomain), "{}", nope.detail);
    assert!(nope.answers.is_empty() && nope.nameserver.is_some());

    let aaaa = probe(&src, &target("demo-pd", RecordType::Aaaa, None, DnsTransport::Udp), T).await;
    assert_eq!(aaaa.outcome, Outcome::Dns(DnsFailure::NoRecords), "an IPv4-only service: {}", aaaa.detail);
}

#[tokio::test]
async fn servfail_fault_reads_as_servfail_and_heals() {
    let lab = TestLab::up();
    let src = pod_source(&lab, "tidb/demo-pd-2");
    assert_eq!(probe(&src, &a("demo-pd"), T).await.outcome, Outcome::Ok);

    lab.fault("dns-servfail");
    // The lab's server follows the fault list within ~200 ms.
    let deadline = Instant::now() + Duration::from_secs(3);
    let r = loop {
        let r = probe(&src, &a("demo-pd"), T).await;
        if r.outcome != Outcome::Ok || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(r.outcome, Outcome::Dns(DnsFailure::ServFail), "{}", r.detail);
    assert_eq!(r.nameserver, Some(DNS_VIP.parse().unwrap()));
    let direct = probe(
        &src,
        &target("demo-pd.tidb.svc.cluster.local", RecordType::A, Some(DNS_VIP), DnsTransport::Udp),
        T,
    )
    .await;
    assert_eq!(direct.outcome, Outcome::Dns(DnsFailure::ServFail), "{}", direct.detail);

    lab.heal();
    let deadline = Instant::now() + Duration::from_secs(3);
    while probe(&src, &a("demo-pd"), T).await.outcome != Outcome::Ok {
        assert!(Instant::now() < deadline, "SERVFAIL never went away");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn dns_block_times_out_on_one_node_and_dns_down_everywhere() {
    let lab = TestLab::up();
    let on_node1 = pod_source(&lab, "tidb/demo-tikv-0");
    let on_node2 = pod_source(&lab, "tidb/demo-pd-1");
    let on_node3 = pod_source(&lab, "tidb/demo-pd-2");

    lab.fault("dns-block node-2");
    let blocked = probe(&on_node2, &a("demo-pd"), DROP_T).await;
    assert_eq!(blocked.outcome, Outcome::Dns(DnsFailure::Timeout), "{}", blocked.detail);
    assert_eq!((blocked.rtt, blocked.nameserver), (None, None));
    let blocked_tcp =
        probe(&on_node2, &target("demo-pd", RecordType::A, None, DnsTransport::Tcp), DROP_T).await;
    assert_eq!(blocked_tcp.outcome, Outcome::Dns(DnsFailure::Timeout), "{}", blocked_tcp.detail);
    assert_eq!(probe(&on_node3, &a("demo-pd"), T).await.outcome, Outcome::Ok, "node-3 still resolves");
    lab.heal();
    assert_eq!(probe(&on_node2, &a("demo-pd"), T).await.outcome, Outcome::Ok, "healed");

    lab.fault("dns-down");
    for src in [&on_node1, &on_node2, &on_node3] {
        let r = probe(src, &a("demo-pd"), DROP_T).await;
        assert_eq!(r.outcome, Outcome::Dns(DnsFailure::Timeout), "{}", r.detail);
    }
    let direct = probe(
        &on_node3,
        &target("demo-pd.tidb.svc.cluster.local", RecordType::A, Some(DNS_VIP), DnsTransport::Udp),
        DROP_T,
    )
    .await;
    assert_eq!(direct.outcome, Outcome::Dns(DnsFailure::Timeout), "{}", direct.detail);
}

#[tokio::test]
async fn one_nameserver_asked_directly() {
    let lab = TestLab::up();
    let src = pod_source(&lab, "tidb/demo-tidb-1");
    let name = "demo-pd.tidb.svc.cluster.local";
    for transport in [DnsTransport::Udp, DnsTransport::Tcp] {
        let r = probe(&src, &target(name, RecordType::A, Some(DNS_VIP), transport), T).await;
        assert_eq!(r.outcome, Outcome::Ok, "{transport}: {}", r.detail);
        assert_eq!(r.answers, ips(&["10.96.0.20"]));
        assert_eq!(r.nameserver, Some(DNS_VIP.parse().unwrap()));
        assert!(r.rtt.is_some());
    }
    // No search list in a direct query: the short name is asked as-is, and does not exist.
    let short = probe(&src, &target("demo-pd", RecordType::A, Some(DNS_VIP), DnsTransport::Udp), T).await;
    assert_eq!(short.outcome, Outcome::Dns(DnsFailure::NxDomain), "{}", short.detail);
    // The DNS pod itself, past the VIP.
    let coredns: IpAddr = lab.pod("kube-system/coredns-0").ip.into();
    let r = probe(&src, &target(name, RecordType::A, Some(&coredns.to_string()), DnsTransport::Udp), T).await;
    assert_eq!((r.outcome, r.nameserver), (Outcome::Ok, Some(coredns)), "{}", r.detail);

    // A pod that listens on nothing at port 53: refused (ICMP port unreachable, TCP RST).
    let silent_pod = lab.pod("tidb/demo-pd-0").ip.to_string();
    for transport in [DnsTransport::Udp, DnsTransport::Tcp] {
        let r = probe(&src, &target(name, RecordType::A, Some(&silent_pod), transport), T).await;
        assert_eq!(r.outcome, Outcome::Dns(DnsFailure::NoNameserver), "{transport}: {}", r.detail);
        assert!(r.detail.as_str().contains("refused"), "{}", r.detail);
        assert_eq!(r.nameserver, None);
    }
}

#[tokio::test]
async fn resolv_conf_edge_cases_from_a_pod() {
    let lab = TestLab::up();
    let dead = lab.pod("tidb/demo-pd-0").ip;
    let pod = "tidb/demo-tikv-1";

    // Nothing listens at the only nameserver: no nameserver reachable, quickly.
    let src = pod_source_with(
        &lab,
        pod,
        "dead.conf",
        &format!("nameserver {dead}\nsearch tidb.svc.cluster.local\n"),
    );
    let r = probe(&src, &a("demo-pd"), T).await;
    assert_eq!(r.outcome, Outcome::Dns(DnsFailure::NoNameserver), "{}", r.detail);

    // The first nameserver refuses, the second answers: glibc moves on, and says who answered.
    // (Another pod, so the dead pod's ICMP rate limit towards the first is not in play.)
    let conf =
        format!("nameserver {dead}\nnameserver {DNS_VIP}\nsearch tidb.svc.cluster.local\noptions ndots:5\n");
    let src = pod_source_with(&lab, "tidb/demo-tikv-2", "second.conf", &conf);
    let r = probe(&src, &a("demo-pd"), T).await;
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.detail);
    assert_eq!(r.nameserver, Some(DNS_VIP.parse().unwrap()));

    // No nameserver line at all.
    let src = pod_source_with(&lab, pod, "empty.conf", "search tidb.svc.cluster.local\n");
    let r = probe(&src, &a("demo-pd"), T).await;
    assert_eq!(r.outcome, Outcome::Dns(DnsFailure::NoNameserver), "{}", r.detail);

    // Without a search list the short name is asked as-is: the lab's DNS has no `demo-pd.`.
    let src = pod_source_with(&lab, pod, "nosearch.conf", &format!("nameserver {DNS_VIP}\n"));
    let r = probe(&src, &a("demo-pd"), T).await;
    assert_eq!(r.outcome, Outcome::Dns(DnsFailure::NxDomain), "{}", r.detail);

    // A pod source whose resolv.conf is unknown is never given the agent's /etc/resolv.conf.
    let p = lab.pod(pod);
    let src = SourceNs::enter(Source::Pod(p.pod.clone()), &LabPlan::netns_path(&p.netns), None).unwrap();
    let r = probe(&src, &a("demo-pd"), T).await;
    assert_eq!(r.outcome, Outcome::LocalError, "{}", r.detail);
    assert!(r.detail.as_str().contains("resolv.conf of tidb/demo-tikv-1 is unknown"), "{}", r.detail);
}

#[tokio::test]
async fn dns_sockets_live_in_the_pods_namespace() {
    let lab = TestLab::up();
    let p = lab.pod("tidb/demo-tidb-0");
    let src = pod_source(&lab, "tidb/demo-tidb-0");
    let reference =
        netdiag_netns::socket_in(&LabPlan::netns_path(&p.netns), Domain::IPV4, Type::DGRAM, None).unwrap();
    let pod_cookie = netdiag_netns::socket_netns_cookie(&reference).unwrap();
    let here = socket2::Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
    assert_ne!(
        netdiag_netns::socket_netns_cookie(&here).unwrap(),
        pod_cookie,
        "the test runs outside the pod"
    );

    let targets = [
        a("demo-pd"),
        a("nope"),
        target("demo-pd", RecordType::A, None, DnsTransport::Tcp),
        target("demo-pd.tidb.svc.cluster.local", RecordType::A, Some(DNS_VIP), DnsTransport::Udp),
        target("demo-pd.tidb.svc.cluster.local", RecordType::A, Some(DNS_VIP), DnsTransport::Tcp),
    ];
    for t in &targets {
        let (r, sockets) = dns::resolve_traced(&src, t, T).await;
        assert!(
            r.outcome == Outcome::Ok || r.outcome == Outcome::Dns(DnsFailure::NxDomain),
            "{t}: {}",
            r.detail
        );
        assert!(!sockets.is_empty(), "{t}: the probe made its sockets through the provider");
        let want = match t {
            Target::Dns { transport, .. } => *transport,
            _ => unreachable!(),
        };
        assert!(sockets.iter().any(|s| s.transport == want), "{t}: {sockets:?}");
        for s in &sockets {
            assert_eq!(s.netns_cookie, Some(pod_cookie), "{t}: {s:?} lives in the pod's namespace");
        }
        eprintln!("{t}: {} sockets, all in the pod's namespace (cookie {pod_cookie})", sockets.len());
    }
}
