//! One DNS query on the wire, without sockets: build it, decide whether bytes that came back
//! answer it, and read the addresses of the asked type out of records.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use netdiag_model::dns::RecordType as ModelRecordType;

/// The query type a probe's record type asks for.
pub(super) fn qtype(record: ModelRecordType) -> RecordType {
    match record {
        ModelRecordType::A => RecordType::A,
        ModelRecordType::Aaaa => RecordType::AAAA,
    }
}

/// An absolute name (`demo-pd.tidb.svc.cluster.local.`) from a name with or without the
/// trailing dot.
pub(super) fn absolute(name: &str) -> Result<Name, String> {
    let mut n =
        Name::from_ascii(name).map_err(|e| format!("{name:?} is not a DNS name hickory accepts: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

/// A recursive query for `name` and `rtype` with message id `id`: what glibc sends (RD set,
/// no EDNS).
pub(super) fn query(id: u16, name: &Name, rtype: RecordType) -> Result<Vec<u8>, String> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name.clone(), rtype));
    msg.to_vec().map_err(|e| format!("cannot encode the query: {e}"))
}

/// What a datagram or TCP message says about our query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decoded {
    /// Not an answer to any of our ids and question: ignore it, keep waiting.
    NotOurs,
    /// Our id, but not a DNS message we can read.
    Garbled(String),
    Reply {
        id: u16,
        rcode: ResponseCode,
        truncated: bool,
        ips: Vec<IpAddr>,
    },
}

/// Reads `bytes` as the answer to a query for `name`/`rtype` sent with one of `ids`. The
/// question must be echoed (case-insensitively); an error answer without a question is
/// accepted, as some servers send FORMERR or REFUSED that way.
pub(super) fn decode(bytes: &[u8], ids: &[u16], name: &Name, rtype: RecordType) -> Decoded {
    let Some(id) = bytes.first_chunk::<2>().map(|b| u16::from_be_bytes(*b)) else {
        return Decoded::NotOurs;
    };
    if !ids.contains(&id) {
        return Decoded::NotOurs;
    }
    let msg = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(e) => return Decoded::Garbled(format!("undecodable answer ({} bytes): {e}", bytes.len())),
    };
    if msg.metadata.message_type != MessageType::Response {
        return Decoded::NotOurs;
    }
    let rcode = msg.metadata.response_code;
    let ours = |q: &Query| q.name() == name && q.query_type() == rtype && q.query_class() == DNSClass::IN;
    let question_ok = match msg.queries.as_slice() {
        [q] => ours(q),
        [] => rcode != ResponseCode::NoError,
        _ => false,
    };
    if !question_ok {
        return Decoded::NotOurs;
    }
    Decoded::Reply { id, rcode, truncated: msg.metadata.truncation, ips: addresses(&msg.answers, rtype) }
}

/// The addresses of type `rtype` among `records`, in order, without repeats.
pub(super) fn addresses(records: &[Record], rtype: RecordType) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for r in records {
        let ip: IpAddr = match (&r.data, rtype) {
            (RData::A(a), RecordType::A) => a.0.into(),
            (RData::AAAA(a), RecordType::AAAA) => a.0.into(),
            _ => continue,
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};

    use super::*;

    fn name() -> Name {
        absolute("demo-pd.tidb.svc.cluster.local").unwrap()
    }

    fn response(
        id: u16,
        rcode: ResponseCode,
        question: Option<(&str, RecordType)>,
        answers: Vec<Record>,
    ) -> Vec<u8> {
        let mut m = Message::response(id, OpCode::Query);
        m.metadata.response_code = rcode;
        if let Some((n, t)) = question {
            m.add_query(Query::query(absolute(n).unwrap(), t));
        }
        m.add_answers(answers);
        m.to_vec().unwrap()
    }

    fn a(ip: &str) -> Record {
        Record::from_rdata(name(), 5, RData::A(A(ip.parse().unwrap())))
    }

    #[test]
    fn queries_are_recursive_and_round_trip() {
        let bytes = query(7, &name(), RecordType::A).unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.id, 7);
        assert!(m.metadata.recursion_desired);
        assert!(m.edns.is_none());
        assert_eq!(m.queries[0].name().to_string(), "demo-pd.tidb.svc.cluster.local.");
        assert!(absolute("a..b").is_err());
    }

    #[test]
    fn decode_accepts_only_answers_to_our_question() {
        let q = Some(("demo-pd.tidb.svc.cluster.local.", RecordType::A));
        let ok = response(7, ResponseCode::NoError, q, vec![a("10.96.0.20"), a("10.96.0.20")]);
        assert_eq!(
            decode(&ok, &[1, 7], &name(), RecordType::A),
            Decoded::Reply {
                id: 7,
                rcode: ResponseCode::NoError,
                truncated: false,
                ips: vec!["10.96.0.20".parse().unwrap()]
            }
        );
        let upper = Some(("DEMO-PD.tidb.svc.cluster.local.", RecordType::A));
        assert!(
            matches!(
                decode(&response(7, ResponseCode::NoError, upper, vec![]), &[7], &name(), RecordType::A),
                Decoded::Reply { .. }
            ),
            "0x20 case"
        );
        assert_eq!(decode(&ok, &[8], &name(), RecordType::A), Decoded::NotOurs, "wrong id");
        assert_eq!(decode(&ok, &[7], &name(), RecordType::AAAA), Decoded::NotOurs, "wrong type");
        let other = response(7, ResponseCode::NoError, Some(("evil.example.", RecordType::A)), vec![]);
        assert_eq!(decode(&other, &[7], &name(), RecordType::A), Decoded::NotOurs, "forged question");
        let refused = response(7, ResponseCode::Refused, None, vec![]);
        assert!(matches!(
            decode(&refused, &[7], &name(), RecordType::A),
            Decoded::Reply { rcode: ResponseCode::Refused, .. }
        ));
        let empty_ok = response(7, ResponseCode::NoError, None, vec![]);
        assert_eq!(decode(&empty_ok, &[7], &name(), RecordType::A), Decoded::NotOurs);
        assert_eq!(decode(&[0], &[7], &name(), RecordType::A), Decoded::NotOurs, "too short for an id");
        assert!(matches!(decode(&[0, 7, 0x81], &[7], &name(), RecordType::A), Decoded::Garbled(_)));
        let query_back = query(7, &name(), RecordType::A).unwrap();
        assert_eq!(
            decode(&query_back, &[7], &name(), RecordType::A),
            Decoded::NotOurs,
            "our own query echoed"
        );
    }

    #[test]
    fn addresses_follow_cnames_by_type() {
        let records = vec![
            Record::from_rdata(name(), 5, RData::CNAME(CNAME(absolute("x.example").unwrap()))),
            Record::from_rdata(absolute("x.example").unwrap(), 5, RData::A(A("10.0.0.1".parse().unwrap()))),
            Record::from_rdata(
                absolute("x.example").unwrap(),
                5,
                RData::AAAA(AAAA("fd00::1".parse().unwrap())),
            ),
        ];
        assert_eq!(addresses(&records, RecordType::A), vec!["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(addresses(&records, RecordType::AAAA), vec!["fd00::1".parse::<IpAddr>().unwrap()]);
    }
}
