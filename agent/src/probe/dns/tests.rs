//! Unit tests for the DNS probe's pure parts: verdicts become valid results, hickory's errors
//! and the socket log become replies.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Query as DnsQuery, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType as HickoryType};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use netdiag_model::dns::{DnsName, DnsTransport, RecordType};
use netdiag_model::outcome::{DnsFailure, Outcome};
use netdiag_model::probe::{ProbeKind, Source, Target};

use super::glibc::{Answer, Reply};
use super::pod::{conf_path, ifindex, reply_of};
use super::provider::{Event, What};
use super::*;

fn own() -> SourceNs {
    SourceNs::own(Source::Node("node-1".parse().unwrap()), None)
}

fn dns_target(record: RecordType) -> Target {
    Target::Dns {
        name: DnsName::new("demo-pd").unwrap(),
        record,
        nameserver: None,
        transport: DnsTransport::Udp,
    }
}

fn answer(rcode: ResponseCode, ips: &[&str]) -> Answer {
    Answer {
        server: "10.96.0.10".parse().unwrap(),
        rcode,
        ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
        rtt: Duration::from_micros(800),
    }
}

#[test]
fn every_verdict_makes_a_valid_result() {
    let many: Vec<String> = (0..100).map(|i| format!("10.0.{}.{}", i / 250, i % 250)).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let cases: Vec<(Verdict, RecordType, Outcome)> = vec![
        (
            Verdict::answered(&answer(ResponseCode::NoError, &["10.96.0.20"]), Duration::ZERO, String::new()),
            RecordType::A,
            Outcome::Ok,
        ),
        (
            Verdict::answered(&answer(ResponseCode::NoError, &many), Duration::from_millis(3), String::new()),
            RecordType::A,
            Outcome::Ok,
        ),
        (
            Verdict::answered(&answer(ResponseCode::NoError, &[]), Duration::from_millis(1), String::new()),
            RecordType::Aaaa,
            Outcome::Dns(DnsFailure::NoRecords),
        ),
        (
            Verdict::answered(&answer(ResponseCode::NXDomain, &[]), Duration::from_millis(1), String::new()),
            RecordType::A,
            Outcome::Dns(DnsFailure::NxDomain),
        ),
        (
            Verdict::answered(&answer(ResponseCode::ServFail, &[]), Duration::from_millis(1), String::new()),
            RecordType::A,
            Outcome::Dns(DnsFailure::ServFail),
        ),
        (
            Verdict::answered(&answer(ResponseCode::Refused, &[]), Duration::from_millis(1), String::new()),
            RecordType::A,
            Outcome::Dns(DnsFailure::Refused),
        ),
        (
            Verdict::answered(
                &answer(ResponseCode::FormErr, &["10.0.0.1"]),
                Duration::from_millis(1),
                String::new(),
            ),
            RecordType::A,
            Outcome::Dns(DnsFailure::ServFail),
        ),
        (
            Verdict::failed(Outcome::Dns(DnsFailure::Timeout), "x".repeat(10_000)),
            RecordType::A,
            Outcome::Dns(DnsFailure::Timeout),
        ),
        (
            Verdict::failed(Outcome::Dns(DnsFailure::NoNameserver), String::new()),
            RecordType::Aaaa,
            Outcome::Dns(DnsFailure::NoNameserver),
        ),
        (Failure::Gone("gone".into()).into_verdict(), RecordType::A, Outcome::SourceGone),
        (Failure::Local("local".into()).into_verdict(), RecordType::A, Outcome::LocalError),
    ];
    let src = own();
    for (verdict, record, want) in cases {
        let r = verdict.clone().into_result(&src, &dns_target(record));
        assert_eq!(r.check(), Ok(()), "{verdict:?}");
        assert_eq!(r.outcome, want, "{verdict:?}");
        assert_eq!(r.kind, ProbeKind::Dns);
        assert!(r.answers.len() <= netdiag_model::limits::MAX_DNS_ANSWERS);
        if !r.outcome.is_ok() {
            assert!(r.answers.is_empty(), "answers only with an Ok outcome: {verdict:?}");
        }
    }
}

#[tokio::test]
async fn a_target_that_is_not_dns_is_a_valid_local_error() {
    let target = Target::Address { ip: "10.244.1.2".parse().unwrap(), port: None };
    let r = resolve(&own(), &target, Duration::from_secs(1)).await;
    assert_eq!(r.outcome, Outcome::LocalError);
    assert_eq!(r.check(), Ok(()));
    assert!(r.detail.as_str().contains("needs a dns target"), "{}", r.detail);
}

#[test]
fn only_the_agents_own_namespace_falls_back_to_etc_resolv_conf() {
    assert_eq!(conf_path(&own()).unwrap(), std::path::PathBuf::from("/etc/resolv.conf"));
    let given = SourceNs::own(Source::Node("node-1".parse().unwrap()), Some("/run/x/resolv.conf".into()));
    assert_eq!(conf_path(&given).unwrap(), std::path::PathBuf::from("/run/x/resolv.conf"));
    // A pod source without a resolv.conf is refused: see the lab test
    // `a_pod_without_a_known_resolv_conf_is_a_local_error` (entering a namespace needs root).
}

#[test]
fn if_inet6_names_interfaces() {
    let table = "fe800000000000000000000000000001 02 40 20 80     eth0\n\
                 00000000000000000000000000000001 01 80 10 80       lo\n\
                 garbage line\n";
    assert_eq!(ifindex(table, "eth0"), Some(2));
    assert_eq!(ifindex(table, "lo"), Some(1));
    assert_eq!(ifindex(table, "eth1"), None);
    assert_eq!(ifindex("", "eth0"), None);
}

fn server() -> SocketAddr {
    "10.96.0.10:53".parse().unwrap()
}

fn event(what: What) -> Event {
    Event { server: server(), transport: DnsTransport::Udp, what }
}

fn failed(errno: i32) -> Event {
    let e = io::Error::from_raw_os_error(errno);
    event(What::Failed { errno: Some(errno), error: e.to_string() })
}

#[test]
fn hickory_results_and_socket_events_become_replies() {
    let name = super::wire::absolute("demo-pd.tidb.svc.cluster.local").unwrap();
    let query = DnsQuery::query(name.clone(), HickoryType::A);
    let record = Record::from_rdata(name, 5, RData::A(A("10.96.0.20".parse().unwrap())));
    let found = Lookup::new_with_max_ttl(query.clone(), [record]);
    let empty = Lookup::new_with_max_ttl(query.clone(), []);
    let nx = || NetError::from(NoRecords::new(query.clone(), ResponseCode::NXDomain));
    let made = event(What::Made { netns_cookie: Some(7) });
    let ms = Duration::from_millis(1);
    let rcode = |r: Result<Reply, Failure>| match r {
        Ok(Reply::Answer(a)) => format!("{}:{}", rcode_name(a.rcode), a.ips.len()),
        Ok(Reply::Silent) => "silent".into(),
        Ok(Reply::Garbled(_)) => "garbled".into(),
        Ok(Reply::Unreachable(why)) => format!("unreachable:{why}"),
        Err(Failure::Gone(_)) => "gone".into(),
        Err(Failure::Local(_)) => "local".into(),
    };
    let t = HickoryType::A;
    assert_eq!(rcode(reply_of(None, t, server(), ms, std::slice::from_ref(&made))), "silent");
    assert_eq!(rcode(reply_of(Some(Ok(found)), t, server(), ms, &[])), "NOERROR:1");
    assert_eq!(rcode(reply_of(Some(Ok(empty)), t, server(), ms, &[])), "NOERROR:0");
    assert_eq!(rcode(reply_of(Some(Err(nx())), t, server(), ms, &[])), "NXDOMAIN:0");
    let servfail = NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail));
    assert_eq!(rcode(reply_of(Some(Err(servfail)), t, server(), ms, &[])), "SERVFAIL:0");
    assert_eq!(rcode(reply_of(Some(Err(NetError::Timeout)), t, server(), ms, &[])), "silent");
    let refused = vec![made.clone(), failed(libc::ECONNREFUSED)];
    let got = rcode(reply_of(Some(Err(NetError::NoConnections)), t, server(), ms, &refused));
    assert!(got.starts_with("unreachable:10.96.0.10:53/udp: refused"), "{got}");
    let answered_later = vec![failed(libc::ECONNREFUSED), event(What::Received)];
    assert_eq!(
        rcode(reply_of(Some(Err(NetError::NoConnections)), t, server(), ms, &answered_later)),
        "silent"
    );
    assert_eq!(
        rcode(reply_of(Some(Err(NetError::NoConnections)), t, server(), ms, &[failed(libc::EMFILE)])),
        "local"
    );
    let unreachable_io = NetError::from(io::Error::from_raw_os_error(libc::ENETUNREACH));
    assert!(rcode(reply_of(Some(Err(unreachable_io)), t, server(), ms, &[])).starts_with("unreachable:"));
    let gone = event(What::NotMade { gone: true, error: "worker gone".into() });
    assert_eq!(rcode(reply_of(Some(Err(NetError::NoConnections)), t, server(), ms, &[gone])), "gone");
    let cannot = event(What::NotMade { gone: false, error: "EMFILE".into() });
    assert_eq!(rcode(reply_of(None, t, server(), ms, &[cannot])), "local");
    assert_eq!(rcode(reply_of(Some(Err(NetError::QueryCaseMismatch)), t, server(), ms, &[])), "garbled");
}

#[test]
fn errnos_that_mean_unreachable() {
    for errno in [libc::ECONNREFUSED, libc::EHOSTUNREACH, libc::ENETUNREACH, libc::EPERM] {
        assert!(unreachable_words(Some(errno)).is_some(), "{errno}");
    }
    for errno in [libc::EMFILE, libc::EINVAL, libc::ENOBUFS] {
        assert!(unreachable_words(Some(errno)).is_none(), "{errno}");
    }
    assert!(unreachable_words(None).is_none());
}

#[test]
fn answers_read_like_dig() {
    let words = |rcode, ips: &[&str], record| answer_words(&answer(rcode, ips), record);
    assert_eq!(words(ResponseCode::NoError, &["10.96.0.20"], RecordType::A), "NOERROR, 10.96.0.20");
    assert_eq!(
        words(ResponseCode::NoError, &["10.0.0.1", "10.0.0.2"], RecordType::A),
        "NOERROR, 2 addresses"
    );
    assert_eq!(words(ResponseCode::NoError, &[], RecordType::Aaaa), "NOERROR, no AAAA record");
    assert_eq!(words(ResponseCode::NXDomain, &[], RecordType::A), "NXDOMAIN");
    assert_eq!(rcode_name(ResponseCode::Unknown(24)), "RCODE24");
    let _: IpAddr = answer(ResponseCode::NoError, &["10.0.0.1"]).ips[0];
}
