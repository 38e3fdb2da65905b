//! Probe results and batches: every probe kind round-trips; out-of-range numbers, unknown enums,
//! oversized text and lists, and fields that contradict each other are rejected at their path.

use netdiag_model::{ProbeResult, ResultBatch};

use super::fixtures::*;
use crate::v1;

#[test]
fn results_and_batches_round_trip() {
    for r in batch().results {
        round_trip::<ProbeResult, v1::ProbeResult>(r);
    }
    round_trip::<ResultBatch, v1::ResultBatch>(batch());
    let empty = ResultBatch { results: vec![], ..batch() };
    round_trip::<ResultBatch, v1::ResultBatch>(empty);
}

fn pod_target(b: &mut v1::ResultBatch, i: usize) -> &mut v1::PodTarget {
    match b.results[i].target.as_mut().and_then(|t| t.kind.as_mut()) {
        Some(v1::target::Kind::Pod(p)) => p,
        _ => panic!("result {i} has no pod target"),
    }
}

#[test]
fn hostile_batches() {
    // Indexes: 0 tcp, 1 icmp, 2 dns, 3 http (pod target), 4 mtu.
    let valid = v1::ResultBatch::from(batch());
    check_rejects::<ResultBatch, _>(
        &valid,
        &[
            ("seq 0", |b| b.seq = 0, "seq", "sequences start at 1"),
            (
                "bad target ip",
                |b| pod_target(b, 3).ip = "10.0.0.999".into(),
                "results[3].target.pod.ip",
                "\"10.0.0.999\" is not an IP address",
            ),
            ("unset source", |b| b.results[1].source = None, "results[1].source", "is missing"),
            ("unset target", |b| b.results[0].target = None, "results[0].target", "is missing"),
            (
                "unset target kind",
                |b| b.results[0].target = Some(v1::Target { kind: None }),
                "results[0].target.kind",
                "is missing",
            ),
            ("kind unspecified", |b| b.results[0].kind = 0, "results[0].kind", "probe kind is unspecified"),
            ("kind unknown", |b| b.results[0].kind = 77, "results[0].kind", "77 is not a known probe kind"),
            ("outcome unspecified", |b| b.results[4].outcome = 0, "results[4].outcome", "unspecified"),
            (
                "outcome unknown",
                |b| b.results[4].outcome = 16,
                "results[4].outcome",
                "16 is not a known probe outcome",
            ),
            (
                "rtt over an hour",
                |b| b.results[0].rtt_us = 3_600_000_001,
                "results[0].rtt_us",
                "out of range",
            ),
            ("rtt u64::MAX", |b| b.results[0].rtt_us = u64::MAX, "results[0].rtt_us", "out of range"),
            (
                "lower bound without rtt",
                |b| (b.results[0].rtt_us, b.results[0].rtt_lower_bound) = (0, true),
                "results[0].rtt_lower_bound",
                "rtt_us is 0",
            ),
            ("at unset", |b| b.results[2].at_unix_ms = 0, "results[2].at_unix_ms", "is missing"),
            ("at negative", |b| b.results[2].at_unix_ms = -1, "results[2].at_unix_ms", "out of range"),
            (
                "at year 10000",
                |b| b.results[2].at_unix_ms = i64::MAX,
                "results[2].at_unix_ms",
                "out of range",
            ),
            (
                "huge detail",
                |b| b.results[0].detail = "x".repeat(4097),
                "results[0].detail",
                "more than the 4096",
            ),
            (
                "terminal escape in detail",
                |b| b.results[0].detail = "ok\u{1b}[2J".into(),
                "results[0].detail",
                "contains '\\u{1b}'",
            ),
            (
                "received > sent",
                |b| b.results[1].received = 4,
                "results[1].received",
                "received 4 packets but sent only 3",
            ),
            ("received without sent", |b| b.results[0].received = 1, "results[0].received", "sent only 0"),
            ("burst too big", |b| b.results[1].sent = 10_001, "results[1].sent", "1 to 10000"),
            ("http status 999", |b| b.results[3].http_status = 999, "results[3].http_status", "100 to 599"),
            ("path mtu 20", |b| b.results[4].path_mtu = 20, "results[4].path_mtu", "68 to 65536"),
            (
                "65 answers",
                |b| b.results[2].answers = vec!["10.0.0.1".into(); 65],
                "results[2].answers",
                "65 entries, more than the 64",
            ),
            ("bad answer", |b| b.results[2].answers.push("ten".into()), "results[2].answers[2]", "\"ten\""),
            (
                "bad nameserver",
                |b| b.results[2].nameserver = "ns1".into(),
                "results[2].nameserver",
                "not an IP",
            ),
            (
                "dns kind on a service target",
                |b| b.results[0].kind = v1::ProbeKind::Dns as i32,
                "results[0].target",
                "needs a dns target",
            ),
            ("tcp to a portless target", |b| pod_target(b, 3).port = 0, "results[3].target", "needs a port"),
            (
                "nxdomain from a tcp probe",
                |b| b.results[0].outcome = v1::Outcome::DnsNxdomain as i32,
                "results[0].outcome",
                "a tcp probe cannot end in dns_nxdomain",
            ),
            (
                "status on tcp",
                |b| b.results[0].http_status = 200,
                "results[0].http_status",
                "only for http probes",
            ),
            ("burst on tcp", |b| b.results[0].sent = 1, "results[0].sent", "only for icmp and mtu probes"),
            (
                "answers on tcp",
                |b| b.results[0].answers = vec!["10.0.0.1".into()],
                "results[0].answers",
                "only for dns",
            ),
            (
                "status outcome without status",
                |b| b.results[3].http_status = 0,
                "results[3].http_status",
                "is required",
            ),
            ("mtu outcome without mtu", |b| b.results[4].path_mtu = 0, "results[4].path_mtu", "is required"),
            (
                "AAAA answer to an A query",
                |b| b.results[2].answers = vec!["fd00::1".into()],
                "results[2].answers",
                "cannot answer a query for A records",
            ),
        ],
    );
}

#[test]
fn oversized_batches_are_refused_before_conversion() {
    let mut b = v1::ResultBatch::from(batch());
    b.results = vec![v1::ProbeResult::default(); 100_001];
    let err = ResultBatch::try_from(b).unwrap_err();
    assert_eq!(err.path(), "results");
    assert!(err.to_string().contains("100001 entries, more than the 100000 allowed"), "{err}");
}
