//! Probe results as step status and evidence, DNS answers filtered by the allowed ranges, an
//! answers step summed up, evidence capped: tables of real-shaped results.

use std::net::IpAddr;

use netdiag_model::dns::{DnsName, DnsTransport, RecordType};
use netdiag_model::outcome::{IcmpFailure, Outcome, TcpFailure};
use netdiag_model::result::{Burst, PathMtu, Rtt};
use netdiag_model::{HttpStatus, Port, Source, Target, UnixMillis};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn result(kind: ProbeKind, outcome: Outcome) -> ProbeResult {
    let target = match kind {
        ProbeKind::Dns => Target::Dns {
            name: DnsName::new("demo-pd.tidb").unwrap(),
            record: RecordType::A,
            nameserver: None,
            transport: DnsTransport::Udp,
        },
        _ => Target::Address { ip: ip("10.244.1.2"), port: Some(Port::new(2379).unwrap()) },
    };
    ProbeResult {
        source: Source::Pod("tidb/demo-pd-0".parse().unwrap()),
        target,
        kind,
        outcome,
        rtt: None,
        at: UnixMillis::new(1).unwrap(),
        detail: Default::default(),
        burst: None,
        http_status: None,
        path_mtu: None,
        answers: vec![],
        nameserver: None,
    }
}

fn icmp(sent: u32, received: u32) -> ProbeResult {
    let outcome = if received == 0 { Outcome::Icmp(IcmpFailure::Timeout) } else { Outcome::Ok };
    ProbeResult { burst: Some(Burst::new(sent, received).unwrap()), ..result(ProbeKind::Icmp, outcome) }
}

#[test]
fn status_follows_the_outcome_and_partial_icmp_loss_warns() {
    let cases = [
        (result(ProbeKind::Tcp, Outcome::Ok), StepStatus::Ok),
        (result(ProbeKind::Tcp, Outcome::Tcp(TcpFailure::Refused)), StepStatus::Failed),
        (result(ProbeKind::Tcp, Outcome::LocalError), StepStatus::Failed),
        (icmp(3, 3), StepStatus::Ok),
        (icmp(3, 2), StepStatus::Warning),
        (icmp(3, 0), StepStatus::Failed),
        // An MTU burst loses its too-large probes by design: not a warning.
        (
            ProbeResult { burst: Some(Burst::new(5, 3).unwrap()), ..result(ProbeKind::Mtu, Outcome::Ok) },
            StepStatus::Ok,
        ),
    ];
    for (r, want) in cases {
        assert_eq!(probe_status(&r), want, "{:?} {:?}", r.kind, r.outcome);
    }
}

#[test]
fn evidence_says_outcome_rtt_and_the_kinds_own_fact() {
    let rtt = Some(Rtt::from_micros(412, false).unwrap());
    let dns = ProbeResult {
        rtt,
        answers: vec![ip("10.96.0.20")],
        nameserver: Some(ip("10.96.0.10")),
        detail: Text::new("A demo-pd.tidb.svc.cluster.local @10.96.0.10/udp: NOERROR, 10.96.0.20").unwrap(),
        ..result(ProbeKind::Dns, Outcome::Ok)
    };
    assert_eq!(
        probe_evidence(&dns),
        [
            "ok in 412µs; answers 10.96.0.20, nameserver 10.96.0.10",
            "A demo-pd.tidb.svc.cluster.local @10.96.0.10/udp: NOERROR, 10.96.0.20"
        ]
    );
    let http = ProbeResult {
        rtt,
        http_status: Some(HttpStatus::new(503).unwrap()),
        ..result(ProbeKind::Http, Outcome::Http(netdiag_model::HttpFailure::Status))
    };
    assert_eq!(probe_evidence(&http), ["HTTP error status (not 2xx/3xx) in 412µs; HTTP 503"]);
    let mtu = ProbeResult {
        burst: Some(Burst::new(4, 2).unwrap()),
        path_mtu: Some(PathMtu::new(1450).unwrap()),
        ..result(ProbeKind::Mtu, Outcome::Ok)
    };
    assert_eq!(probe_evidence(&mtu), ["ok; 2/4 probes, path MTU 1450"]);
    assert_eq!(probe_evidence(&icmp(3, 2)), ["ok; 2/3 echo replies"]);
    let refused = result(ProbeKind::Tcp, Outcome::Tcp(TcpFailure::Refused));
    assert_eq!(probe_evidence(&refused), ["TCP connection refused (RST)"]);
    let nx = result(ProbeKind::Dns, Outcome::Dns(netdiag_model::DnsFailure::NxDomain));
    assert_eq!(probe_evidence(&nx), ["DNS NXDOMAIN: the name does not exist"], "no answers line on failure");

    let report = probe_report(refused.clone());
    assert_eq!(report.status, StepStatus::Failed);
    assert_eq!(report.result.as_deref(), Some(&refused));
}

fn plan(allowed: &[&str]) -> RunPlan {
    RunPlan { steps: vec![], allowed: allowed.iter().map(|n| n.parse().unwrap()).collect() }
}

#[test]
fn answers_outside_the_allowed_ranges_are_not_probed() {
    let p = plan(&["10.96.0.0/12", "10.244.0.0/16", "fd00:10:96::/112"]);
    let answers = [
        ip("10.96.0.20"),
        ip("192.0.2.7"),
        ip("10.244.3.4"),
        ip("10.96.0.20"),
        ip("fd00:10:96::20"),
        ip("2001:db8::1"),
    ];
    let (allowed, refused) = split_answers(&p, &answers);
    assert_eq!(allowed, [ip("10.96.0.20"), ip("10.244.3.4"), ip("fd00:10:96::20")], "in order, once each");
    assert_eq!(refused, [ip("192.0.2.7"), ip("2001:db8::1")]);
    let (none, all) = split_answers(&plan(&[]), &answers[..2]);
    assert!(none.is_empty());
    assert_eq!(all.len(), 2, "an empty allow-list allows nothing");
}

#[test]
fn an_answers_step_fails_on_any_failure_and_keeps_the_first_failing_result() {
    let ok = result(ProbeKind::Tcp, Outcome::Ok);
    let refused = result(ProbeKind::Tcp, Outcome::Tcp(TcpFailure::Refused));
    let timeout = result(ProbeKind::Tcp, Outcome::Tcp(TcpFailure::Timeout));
    let r = answers_report(
        vec![
            (ip("10.244.1.2"), ok.clone()),
            (ip("10.244.2.2"), refused.clone()),
            (ip("10.244.3.2"), timeout),
        ],
        &[ip("192.0.2.7")],
        0,
    );
    assert_eq!(r.status, StepStatus::Failed);
    assert_eq!(r.result.as_deref(), Some(&refused));
    assert_eq!(
        r.evidence,
        [
            "10.244.1.2: ok",
            "10.244.2.2: TCP connection refused (RST)",
            "10.244.3.2: TCP connect timeout: SYN unanswered",
            "192.0.2.7 not probed: outside the cluster's ranges and the allow-list",
        ]
    );

    let all_ok = answers_report(vec![(ip("10.244.1.2"), ok.clone()), (ip("10.244.2.2"), ok.clone())], &[], 0);
    assert_eq!((all_ok.status, all_ok.result.as_deref()), (StepStatus::Ok, Some(&ok)));
    let warned = answers_report(vec![(ip("10.244.1.2"), icmp(3, 1))], &[], 0);
    assert_eq!(warned.status, StepStatus::Warning);

    let nothing = answers_report(vec![], &[], 2);
    assert_eq!(nothing.status, StepStatus::Skipped);
    assert_eq!(nothing.evidence, ["step 2 answered no address: nothing to probe"]);
    let only_outside = answers_report(vec![], &[ip("192.0.2.7")], 2);
    assert_eq!(only_outside.status, StepStatus::Skipped);
    assert_eq!(only_outside.evidence.len(), 1);
    assert!(only_outside.result.is_none());
}

#[test]
fn evidence_is_capped_to_what_the_wire_carries() {
    let few: Vec<String> = (0..3).map(|i| format!("line {i}")).collect();
    assert_eq!(cap_evidence(&few).len(), 3);
    let many: Vec<String> = (0..300).map(|i| format!("line {i}")).collect();
    let capped = cap_evidence(&many);
    assert_eq!(capped.len(), MAX_STEP_EVIDENCE);
    assert_eq!(capped[MAX_STEP_EVIDENCE - 2].as_str(), "line 254");
    assert_eq!(capped.last().unwrap().as_str(), "45 more lines left out");
    let long = cap_evidence(&["x".repeat(10_000)]);
    assert!(long[0].as_str().len() <= MAX_DETAIL_BYTES);
}
