//! Wire-level tests for [`dns_response`]: queries built with hickory-proto, answers decoded
//! with it, and random or mutated bytes that must never panic.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use proptest::prelude::*;

use super::*;
use crate::servers::fixtures::{inventory, zone};

fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

fn ask_with(zone: &DnsZone, q: &Message, mode: DnsMode, transport: DnsTransport) -> Message {
    let bytes = dns_response(&q.to_vec().unwrap(), zone, mode, transport).expect("an answer");
    let r = Message::from_vec(&bytes).unwrap();
    assert_eq!(r.metadata.id, q.metadata.id);
    assert_eq!(r.metadata.message_type, MessageType::Response);
    assert!(r.metadata.authoritative, "AA bit");
    r
}

fn ask(name: &str, qtype: RecordType) -> Message {
    ask_with(&zone(), &query(name, qtype), DnsMode::Normal, DnsTransport::Udp)
}

fn addresses(r: &Message) -> Vec<IpAddr> {
    r.answers
        .iter()
        .map(|rec| match &rec.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            other => panic!("unexpected record {other:?}"),
        })
        .collect()
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn has_soa_authority(r: &Message) -> bool {
    matches!(r.authorities.as_slice(), [soa] if matches!(soa.data, RData::SOA(_))
        && soa.name.to_ascii() == "cluster.local.")
}

#[test]
fn answers_a_and_aaaa_with_ttl_and_echoed_question() {
    let r = ask("demo-pd.tidb.svc.cluster.local.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.recursion_desired, "RD is copied");
    assert_eq!(r.queries.len(), 1);
    assert_eq!(r.queries[0].name().to_ascii(), "demo-pd.tidb.svc.cluster.local.");
    assert_eq!(addresses(&r), ips(&["10.96.0.20"]));
    assert!(r.answers.iter().all(|a| a.ttl == DNS_TTL));

    let r = ask("demo-pd.tidb.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(addresses(&r), ips(&["fd00:10:96::20"]));
}

#[test]
fn answers_keep_the_case_the_client_asked_in() {
    let r = ask("DeMo-Pd.TiDB.svc.Cluster.local.", RecordType::A);
    assert_eq!(addresses(&r), ips(&["10.96.0.20"]));
    assert_eq!(r.answers[0].name.to_ascii(), "DeMo-Pd.TiDB.svc.Cluster.local.");
}

#[test]
fn headless_services_answer_every_ready_endpoint() {
    let r = ask("demo-pd-peer.tidb.svc.cluster.local.", RecordType::A);
    assert_eq!(addresses(&r), ips(&["10.244.1.2", "10.244.1.3", "10.244.1.9"]));
    let r = ask("demo-pd-0.demo-pd-peer.tidb.svc.cluster.local.", RecordType::A);
    assert_eq!(addresses(&r), ips(&["10.244.1.2"]));
}

#[test]
fn negative_answers_carry_the_soa_inside_the_zone_only() {
    let r = ask("nope.tidb.svc.cluster.local.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert!(r.answers.is_empty());
    assert!(has_soa_authority(&r), "{r}");

    let r = ask("demo-pd-1.demo-pd-peer.tidb.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "NODATA");
    assert!(r.answers.is_empty());
    assert!(has_soa_authority(&r), "{r}");

    let r = ask("www.example.com.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "sealed: no upstream");
    assert!(r.authorities.is_empty());
}

#[test]
fn the_apex_answers_its_soa() {
    let r = ask("cluster.local.", RecordType::SOA);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(matches!(r.answers.as_slice(), [soa] if matches!(soa.data, RData::SOA(_))));
}

#[test]
fn servfail_mode_fails_every_query_but_echoes_it() {
    let q = query("demo-pd.tidb.svc.cluster.local.", RecordType::A);
    let r = ask_with(&zone(), &q, DnsMode::ServFail, DnsTransport::Tcp);
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(r.answers.is_empty());
    assert_eq!(r.queries, q.queries);
}

#[test]
fn malformed_queries_get_formerr_with_their_id() {
    // A header that promises one question, then garbage.
    let mut bytes = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    bytes.extend_from_slice(&[0xff, 0xfe, 0x01]);
    let r = Message::from_vec(&dns_response(&bytes, &zone(), DnsMode::Normal, DnsTransport::Udp).unwrap())
        .unwrap();
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

    let mut none = query("demo-pd.tidb.svc.cluster.local.", RecordType::A);
    none.queries.clear();
    let r = ask_with(&zone(), &none, DnsMode::Normal, DnsTransport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);

    let mut two = query("demo-pd.tidb.svc.cluster.local.", RecordType::A);
    two.add_query(Query::query(Name::from_ascii("cluster.local.").unwrap(), RecordType::A));
    let r = ask_with(&zone(), &two, DnsMode::Normal, DnsTransport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn short_messages_and_responses_get_no_reply() {
    let z = zone();
    assert_eq!(dns_response(&[], &z, DnsMode::Normal, DnsTransport::Udp), None);
    assert_eq!(dns_response(&[0; 11], &z, DnsMode::Normal, DnsTransport::Udp), None);
    let mut resp = query("demo-pd.tidb.svc.cluster.local.", RecordType::A);
    resp.metadata.message_type = MessageType::Response;
    let bytes = resp.to_vec().unwrap();
    assert_eq!(dns_response(&bytes, &z, DnsMode::Normal, DnsTransport::Udp), None);
}

#[test]
fn other_opcodes_classes_and_edns_versions_are_refused() {
    let mut notify = query("cluster.local.", RecordType::SOA);
    notify.metadata.op_code = OpCode::Notify;
    let r = ask_with(&zone(), &notify, DnsMode::Normal, DnsTransport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);

    let mut chaos = Message::query();
    let mut q = Query::query(Name::from_ascii("version.bind.").unwrap(), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    chaos.add_query(q);
    let r = ask_with(&zone(), &chaos, DnsMode::Normal, DnsTransport::Udp);
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);

    let mut v1 = query("demo-pd.tidb.svc.cluster.local.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    v1.set_edns(edns);
    let r = ask_with(&zone(), &v1, DnsMode::Normal, DnsTransport::Udp);
    // BADVERS and BADSIG share the value 16; the decoder names it BADSIG.
    assert_eq!(u16::from(r.metadata.response_code), u16::from(ResponseCode::BADVERS));
    assert!(r.edns.is_some(), "BADVERS travels in the OPT record");
}

#[test]
fn edns_queries_get_an_edns_answer() {
    let mut q = query("demo-pd.tidb.svc.cluster.local.", RecordType::A);
    q.set_edns(Edns::new());
    let r = ask_with(&zone(), &q, DnsMode::Normal, DnsTransport::Udp);
    assert_eq!(r.edns.as_ref().map(|e| e.max_payload()), Some(SERVER_UDP_PAYLOAD));
    assert_eq!(addresses(&r), ips(&["10.96.0.20"]));
}

#[test]
fn big_udp_answers_are_truncated_and_complete_over_tcp() {
    let mut inv = inventory();
    let svc = inv.services.iter_mut().find(|s| s.name.as_str() == "demo-pd-peer").unwrap();
    let template = svc.endpoints[0].clone();
    svc.endpoints = (1..=200u8)
        .map(|i| {
            let mut ep = template.clone();
            ep.ip = IpAddr::from([10, 244, 2, i]);
            ep.pod = None;
            ep.hostname = None;
            ep
        })
        .collect();
    let big = DnsZone::from_inventory(&inv);
    let q = query("demo-pd-peer.tidb.svc.cluster.local.", RecordType::A);

    let udp = ask_with(&big, &q, DnsMode::Normal, DnsTransport::Udp);
    assert!(udp.metadata.truncation, "TC set");
    assert!(udp.answers.is_empty());
    assert_eq!(udp.queries, q.queries);

    let mut with_edns = q.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    with_edns.set_edns(edns);
    let udp = ask_with(&big, &with_edns, DnsMode::Normal, DnsTransport::Udp);
    assert!(udp.metadata.truncation, "200 records exceed the server's 1232-byte payload too");

    let tcp = ask_with(&big, &q, DnsMode::Normal, DnsTransport::Tcp);
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 200);
}

fn check_reply(bytes: &[u8], reply: Option<Vec<u8>>) -> Result<(), TestCaseError> {
    if let Some(reply) = reply {
        let r = Message::from_vec(&reply);
        prop_assert!(r.is_ok(), "the server's own reply must decode");
        let r = r.unwrap();
        prop_assert_eq!(r.metadata.id, u16::from_be_bytes([bytes[0], bytes[1]]));
        prop_assert_eq!(r.metadata.message_type, MessageType::Response);
        prop_assert!(reply.len() <= usize::from(SERVER_UDP_PAYLOAD));
    }
    Ok(())
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let reply = dns_response(&bytes, &zone(), DnsMode::Normal, DnsTransport::Udp);
        check_reply(&bytes, reply)?;
    }

    #[test]
    fn mutated_queries_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut q = query("demo-pd-0.demo-pd-peer.tidb.svc.cluster.local.", RecordType::A);
        q.set_edns(Edns::new());
        let mut bytes = q.to_vec().unwrap();
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let reply = dns_response(&bytes, &zone(), DnsMode::Normal, DnsTransport::Udp);
        if bytes.len() >= HEADER_LEN && bytes[2] & 0x80 == 0 {
            prop_assert!(reply.is_some(), "every query with a header gets an answer");
        }
        check_reply(&bytes, reply)?;
    }
}
