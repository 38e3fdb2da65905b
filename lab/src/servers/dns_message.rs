//! DNS on the wire, without sockets: one request's bytes in, the response's bytes out (or
//! nothing). The lab's cluster DNS is authoritative for the cluster domain and answers
//! NXDOMAIN for everything else: the lab is sealed and has no upstream.
//!
//! Behaviour, in order: fewer than 12 bytes or a message that is itself a response → no reply
//! (never answer a response: two servers would bounce errors forever); undecodable → FORMERR;
//! an opcode other than QUERY → NOTIMP; not exactly one question → FORMERR; EDNS version above
//! 0 → BADVERS; [`DnsMode::ServFail`] → SERVFAIL; a class other than IN → REFUSED; otherwise
//! the zone's answer with TTL [`DNS_TTL`], the AA bit, the question echoed and, for negative
//! answers inside the zone, the zone's SOA in the authority section (RFC 2308). UDP answers
//! larger than the client's limit (512 bytes, or its EDNS payload size) are sent truncated (TC)
//! so the client retries over TCP.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::dns_zone::{Answer, DnsZone};

/// TTL of every record the lab's DNS hands out, and of negative answers (SOA minimum).
pub const DNS_TTL: u32 = 5;

/// The largest UDP payload the server offers in its own EDNS record.
const SERVER_UDP_PAYLOAD: u16 = 1232;
/// The largest DNS message a UDP client without EDNS accepts (RFC 1035).
const CLASSIC_UDP_LIMIT: usize = 512;
/// A DNS message over TCP is prefixed by its length in two bytes.
const TCP_LIMIT: usize = u16::MAX as usize;
const HEADER_LEN: usize = 12;

/// How the cluster DNS behaves; switching to [`DnsMode::ServFail`] is a lab fault.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsMode {
    /// Answer from the zone.
    #[default]
    Normal,
    /// Answer every well-formed query with SERVFAIL, like a CoreDNS that lost its API server.
    ServFail,
}

/// Which transport a request came over; it decides the size limit of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsTransport {
    Udp,
    Tcp,
}

/// Builds the response to one DNS request. `None` means "send nothing": the request is too
/// short to have an id, is itself a response, or the response cannot be encoded at all.
/// Never panics, whatever the bytes.
pub fn dns_response(
    request: &[u8],
    zone: &DnsZone,
    mode: DnsMode,
    transport: DnsTransport,
) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(request.get(..HEADER_LEN)?)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        debug!(id = header.metadata.id, "ignoring a DNS response sent to the server");
        return None;
    }
    let (response, limit) = match Message::from_vec(request) {
        Ok(query) => {
            let limit = size_limit(&query, transport);
            (answer(&query, zone, mode), limit)
        }
        Err(error) => {
            debug!(id = header.metadata.id, %error, "undecodable DNS query");
            let limit = size_limit_without_edns(transport);
            (reply_to(&header.metadata, ResponseCode::FormErr), limit)
        }
    };
    encode(response, limit)
}

/// The answer to a decoded query, before encoding.
fn answer(query: &Message, zone: &DnsZone, mode: DnsMode) -> Message {
    let mut response = reply_to(&query.metadata, ResponseCode::NoError);
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(SERVER_UDP_PAYLOAD);
        response.edns = Some(edns);
    }
    if query.metadata.op_code != OpCode::Query {
        return with_rcode(response, ResponseCode::NotImp);
    }
    let [question] = query.queries.as_slice() else {
        return with_rcode(response, ResponseCode::FormErr);
    };
    response.add_query(question.clone());
    if query.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return with_rcode(response, ResponseCode::BADVERS);
    }
    if mode == DnsMode::ServFail {
        debug!(name = %question.name(), "answering SERVFAIL (lab fault)");
        return with_rcode(response, ResponseCode::ServFail);
    }
    if question.query_class() != DNSClass::IN {
        return with_rcode(response, ResponseCode::Refused);
    }
    let key = name_key(question.name());
    let outcome = match &key {
        Some(key) => zone.lookup(key, question.query_type()),
        None => Answer::NxDomain,
    };
    debug!(name = %question.name(), qtype = %question.query_type(), ?outcome, "DNS query");
    let in_zone = key.as_deref().is_some_and(|k| zone.contains(k));
    let apex = key.as_deref().is_some_and(|k| k.eq_ignore_ascii_case(zone.domain()));
    match outcome {
        Answer::Records(ips) => {
            for ip in ips {
                response.add_answer(address_record(question, ip));
            }
        }
        Answer::NoData if apex && question.query_type() == RecordType::SOA => {
            if let Some(soa) = soa_record(zone) {
                response.add_answer(soa);
            }
        }
        Answer::NoData => add_negative_soa(&mut response, zone, in_zone),
        Answer::NxDomain => {
            response.metadata.response_code = ResponseCode::NXDomain;
            add_negative_soa(&mut response, zone, in_zone);
        }
    }
    response
}

/// RFC 2308: a negative answer from the zone's authority carries its SOA, whose minimum is the
/// negative TTL. Names outside the zone get no SOA: the lab is not their authority.
fn add_negative_soa(response: &mut Message, zone: &DnsZone, in_zone: bool) {
    if in_zone && let Some(soa) = soa_record(zone) {
        response.add_authority(soa);
    }
}

/// An empty authoritative response to `request` with `rcode`.
fn reply_to(request: &Metadata, rcode: ResponseCode) -> Message {
    let mut response = Message::response(request.id, request.op_code);
    // Copies id, opcode, RD and CD from the request.
    response.metadata = Metadata::response_from_request(request);
    response.metadata.authoritative = true;
    // Pods talk to the cluster DNS as a recursive resolver; CoreDNS sets RA as well.
    response.metadata.recursion_available = true;
    response.metadata.response_code = rcode;
    response
}

fn with_rcode(mut response: Message, rcode: ResponseCode) -> Message {
    response.metadata.response_code = rcode;
    response
}

fn address_record(question: &Query, ip: IpAddr) -> Record {
    // The owner is the question's name as asked, so 0x20 case randomization still matches.
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(question.name().clone(), DNS_TTL, data)
}

/// The zone's SOA, shaped like CoreDNS's; `None` if the domain is not a valid DNS name.
fn soa_record(zone: &DnsZone) -> Option<Record> {
    let apex = Name::from_ascii(format!("{}.", zone.domain())).ok()?;
    let mname = Name::from_ascii(format!("ns.dns.{}.", zone.domain())).ok()?;
    let rname = Name::from_ascii(format!("hostmaster.{}.", zone.domain())).ok()?;
    let soa = SOA::new(mname, rname, 1, 7200, 1800, 86400, DNS_TTL);
    Some(Record::from_rdata(apex, DNS_TTL, RData::SOA(soa)))
}

/// The question's name as a lowercase dotted string, or `None` when a label holds bytes no
/// cluster name can have (dots, spaces, control or non-ASCII bytes).
fn name_key(name: &Name) -> Option<String> {
    let mut key = String::new();
    for label in name.iter() {
        if label.is_empty() || !label.iter().all(|b| b.is_ascii_graphic() && *b != b'.') {
            return None;
        }
        if !key.is_empty() {
            key.push('.');
        }
        key.push_str(std::str::from_utf8(label).ok()?);
    }
    Some(key.to_ascii_lowercase())
}

fn size_limit(query: &Message, transport: DnsTransport) -> usize {
    match (transport, &query.edns) {
        (DnsTransport::Tcp, _) => TCP_LIMIT,
        (DnsTransport::Udp, None) => CLASSIC_UDP_LIMIT,
        (DnsTransport::Udp, Some(edns)) => {
            usize::from(edns.max_payload().min(SERVER_UDP_PAYLOAD)).max(CLASSIC_UDP_LIMIT)
        }
    }
}

fn size_limit_without_edns(transport: DnsTransport) -> usize {
    match transport {
        DnsTransport::Tcp => TCP_LIMIT,
        DnsTransport::Udp => CLASSIC_UDP_LIMIT,
    }
}

/// Encodes `response`; if it exceeds `limit`, drops the records and sets TC instead.
fn encode(mut response: Message, limit: usize) -> Option<Vec<u8>> {
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => return Some(bytes),
        Ok(bytes) => debug!(len = bytes.len(), limit, "DNS response truncated"),
        Err(error) => debug!(%error, "DNS response could not be encoded; sending it truncated"),
    }
    response.answers.clear();
    response.authorities.clear();
    response.additionals.clear();
    response.metadata.truncation = true;
    match response.to_vec() {
        Ok(bytes) if bytes.len() <= limit => Some(bytes),
        // Even the question does not fit (names are at most 255 bytes, so only a broken
        // encoder gets here): send nothing rather than something wrong.
        _ => None,
    }
}

#[cfg(test)]
mod tests;
