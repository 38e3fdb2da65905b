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
                |b| b.results[0].target = Some(Box::new(v1::Target { kind: None })),
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

// --- the tabled form ---

fn tabled() -> v1::ResultBatch {
    crate::convert::tabled_result_batch(&batch())
}

fn table_pod_target(b: &mut v1::ResultBatch) -> &mut v1::PodTarget {
    b.targets
        .iter_mut()
        .find_map(|t| match t.kind.as_mut() {
            Some(v1::target::Kind::Pod(p)) => Some(p),
            _ => None,
        })
        .expect("the batch has a pod target")
}

#[test]
fn tabled_batches_round_trip_and_share_their_entries() {
    let wire = tabled();
    // Sources: tidb/demo-tikv-0 (four results) and node-1; every target is distinct.
    assert_eq!((wire.sources.len(), wire.targets.len()), (2, 5));
    assert!(wire.results.iter().all(|r| r.source.is_none() && r.target.is_none()));
    assert_eq!(wire.results.iter().map(|r| r.source_ref).collect::<Vec<_>>(), [0, 1, 0, 0, 0].map(Some));
    // Pod, service and node addresses travel as bytes (the pod's is IPv6: 16 bytes).
    assert_eq!(table_pod_target(&mut wire.clone()).ip_bytes.len(), 16);
    assert!(table_pod_target(&mut wire.clone()).ip.is_empty());
    let bytes = prost::Message::encode_to_vec(&wire);
    let decoded: v1::ResultBatch = prost::Message::decode(bytes.as_slice()).unwrap();
    assert_eq!(ResultBatch::try_from(decoded), Ok(batch()));
    assert!(bytes.len() < prost::Message::encoded_len(&v1::ResultBatch::from(batch())));
    let empty = ResultBatch { results: vec![], ..batch() };
    assert_eq!(ResultBatch::try_from(crate::convert::tabled_result_batch(&empty)), Ok(empty));
}

#[test]
fn plain_and_tabled_results_mix_in_one_batch() {
    // An old agent's batch has no tables at all (results_and_batches_round_trip); a batch may
    // also mix the two forms, result by result.
    let mut b = tabled();
    b.results[1] = v1::ProbeResult::from(batch().results[1].clone());
    assert_eq!(ResultBatch::try_from(b), Ok(batch()));
}

#[test]
fn hostile_tabled_batches() {
    check_rejects::<ResultBatch, _>(
        &tabled(),
        &[
            (
                "source index past the table",
                |b| b.results[1].source_ref = Some(2),
                "results[1].source_ref",
                "2 is not an index into the batch's 2 sources",
            ),
            (
                "target index u32::MAX",
                |b| b.results[0].target_ref = Some(u32::MAX),
                "results[0].target_ref",
                "4294967295 is not an index into the batch's 5 targets",
            ),
            (
                "index into an empty table",
                |b| b.sources.clear(),
                "results[0].source_ref",
                "0 is not an index into the batch's 0 sources",
            ),
            (
                "both inline and by index",
                |b| b.results[2].source = Some(v1::Source::from(batch().results[2].source.clone())),
                "results[2].source_ref",
                "either source or source_ref",
            ),
            ("neither", |b| b.results[3].target_ref = None, "results[3].target", "is missing"),
            (
                "ip bytes of length 5",
                |b| table_pod_target(b).ip_bytes = vec![10, 0, 0, 1, 7],
                "targets[3].pod.ip_bytes",
                "an IP address is 4 or 16 bytes, not 5",
            ),
            (
                "ip as text and as bytes",
                |b| table_pod_target(b).ip = "fd00:10:244::2".into(),
                "targets[3].pod.ip_bytes",
                "either ip or ip_bytes",
            ),
            ("no ip at all", |b| table_pod_target(b).ip_bytes.clear(), "targets[3].pod.ip", "is missing"),
            (
                "bad name in the source table",
                |b| match b.sources[0].kind.as_mut() {
                    Some(v1::source::Kind::Pod(p)) => p.name = "Not_A_Name".into(),
                    _ => panic!("source 0 is a pod"),
                },
                "sources[0].pod.name",
                "not a valid name",
            ),
            (
                // The entry is valid alone; the result using it must still fit its kind.
                "a table target that does not fit the result's kind",
                |b| b.results[0].target_ref = Some(2),
                "results[0].target",
                "needs a",
            ),
            (
                "oversized table",
                |b| b.targets = vec![v1::Target::default(); 100_001],
                "targets",
                "100001 entries, more than the 100000 allowed",
            ),
        ],
    );
}

#[test]
fn a_result_outside_a_batch_cannot_use_an_index() {
    let mut r = v1::ProbeResult::from(batch().results[0].clone());
    r.source = None;
    r.source_ref = Some(0);
    let err = ProbeResult::try_from(r).unwrap_err();
    assert_eq!(err.path(), "source_ref");
    assert!(err.to_string().contains("only a result inside a batch"), "{err}");
}

#[test]
fn ipv4_bytes_convert() {
    let mut b = tabled();
    let p = table_pod_target(&mut b);
    p.ip_bytes = vec![10, 244, 1, 2];
    let got = ResultBatch::try_from(b).unwrap();
    match &got.results[3].target {
        netdiag_model::Target::Pod { ip, .. } => {
            assert_eq!(*ip, "10.244.1.2".parse::<std::net::IpAddr>().unwrap())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_tabled_batch_shares_its_recurring_names() {
    // tcp (service tidb/demo-pd) and http (pod tidb/demo-pd-0) name namespace "tidb" in two
    // different table targets: converted once, the same text in memory.
    let got = ResultBatch::try_from(tabled()).unwrap();
    let namespace = |t: &netdiag_model::Target| match t {
        netdiag_model::Target::Service { service, .. } => service.namespace.as_str().as_ptr(),
        netdiag_model::Target::Pod { pod, .. } => pod.namespace.as_str().as_ptr(),
        other => panic!("{other:?}"),
    };
    assert_eq!(namespace(&got.results[0].target), namespace(&got.results[3].target));
    // The plain form converts each result on its own.
    let plain = ResultBatch::try_from(v1::ResultBatch::from(batch())).unwrap();
    assert_eq!(plain, got);
    assert_ne!(namespace(&plain.results[0].target), namespace(&plain.results[3].target));
}
