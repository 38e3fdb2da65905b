//! Counting an agent message's repeated fields on the wire, before prost decodes it. A decoded
//! protobuf element costs far more than its encoding (an empty `ProbeResult` is 2 bytes on the
//! wire and a few hundred in memory), so a 16 MiB message of empty results would allocate
//! gigabytes before the conversion's per-field caps ever ran. The prescan walks the wire
//! format without allocating and refuses a message whose repeated fields exceed the model's
//! limits, or whose nesting holds more elements than any real message, naming the field.

use netdiag_model::limits::{
    MAX_FILTER_DROPS, MAX_FILTER_PORT_RANGES, MAX_INSPECTION_ERRORS, MAX_LINK_ADDRESSES, MAX_LINKS,
    MAX_LOCAL_PODS, MAX_NAT_RULES, MAX_NAT_SERVICES, MAX_NAT_TARGETS, MAX_NEIGHBOURS, MAX_RESULTS_PER_BATCH,
    MAX_ROUTE_RULES, MAX_ROUTES, MAX_SYSCTLS,
};

/// Elements (tags) in one message, at every depth: far above a full batch (100 000 results of
/// a dozen fields each), far below what would exhaust memory.
pub const MAX_ELEMENTS: usize = 2_000_000;

/// Why a message was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrescanError {
    #[error("malformed protobuf at byte {0}")]
    Malformed(usize),
    #[error("{field} has more than {max} entries")]
    TooMany { field: &'static str, max: usize },
    #[error("the message holds more than {MAX_ELEMENTS} elements")]
    TooManyElements,
}

/// One field's value as the wire holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Scalar,
    Bytes(&'a [u8]),
}

/// The fields of one message, in wire order.
fn fields(mut bytes: &[u8]) -> impl Iterator<Item = Result<(u32, Value<'_>), PrescanError>> + '_ {
    let start = bytes.len();
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            return None;
        }
        let at = start - bytes.len();
        let bad = || Some(Err(PrescanError::Malformed(at)));
        let Some(tag) = varint(&mut bytes) else { return bad() };
        let Ok(field) = u32::try_from(tag >> 3) else { return bad() };
        let value = match tag & 7 {
            0 => varint(&mut bytes).map(|_| Value::Scalar),
            1 => take(&mut bytes, 8).map(|_| Value::Scalar),
            2 => varint(&mut bytes)
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| take(&mut bytes, n))
                .map(Value::Bytes),
            5 => take(&mut bytes, 4).map(|_| Value::Scalar),
            _ => None,
        };
        match value {
            Some(v) if field > 0 => Some(Ok((field, v))),
            _ => bad(),
        }
    })
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut out = 0u64;
    for i in 0..10 {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        out |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if bytes.len() < n {
        return None;
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Some(head)
}

/// A repeated field's limit: (field number, name, most entries).
type Limit = (u32, &'static str, usize);

const BATCH: &[Limit] = &[
    (2, "results", MAX_RESULTS_PER_BATCH),
    (4, "sources", MAX_RESULTS_PER_BATCH),
    (5, "targets", MAX_RESULTS_PER_BATCH),
];
const HELLO: &[Limit] =
    &[(3, "hello.capabilities", 64), (4, "hello.pods", MAX_LOCAL_PODS), (5, "hello.node_ips", 64)];
const INSPECTION: &[Limit] = &[
    (3, "inspection.links", MAX_LINKS),
    (4, "inspection.routes", MAX_ROUTES),
    (5, "inspection.neighbours", MAX_NEIGHBOURS),
    (6, "inspection.nat_services", MAX_NAT_SERVICES),
    (7, "inspection.sysctls", MAX_SYSCTLS),
    (10, "inspection.errors", MAX_INSPECTION_ERRORS),
    (11, "inspection.filter_drops", MAX_FILTER_DROPS),
    (12, "inspection.rules", MAX_ROUTE_RULES),
    (13, "inspection.nat_rules", MAX_NAT_RULES),
];
/// Inside an inspection's repeated messages: a link's addresses, a NAT service's targets.
const INSPECTION_NESTED: &[(u32, u32, &str, usize)] = &[
    (3, 5, "inspection.links[].addresses", MAX_LINK_ADDRESSES),
    (6, 5, "inspection.nat_services[].targets", MAX_NAT_TARGETS),
    (11, 7, "inspection.filter_drops[].destination_ports", MAX_FILTER_PORT_RANGES),
    (13, 9, "inspection.nat_rules[].destination_ports", MAX_FILTER_PORT_RANGES),
];

/// Counts `bytes`' fields against `limits`; calls `each` on every field.
fn count<'a>(
    bytes: &'a [u8],
    limits: &[Limit],
    mut each: impl FnMut(u32, Value<'a>) -> Result<(), PrescanError>,
) -> Result<(), PrescanError> {
    let mut seen = vec![0usize; limits.len()];
    for f in fields(bytes) {
        let (field, value) = f?;
        if let Some(i) = limits.iter().position(|(n, _, _)| *n == field) {
            seen[i] += 1;
            if seen[i] > limits[i].2 {
                return Err(PrescanError::TooMany { field: limits[i].1, max: limits[i].2 });
            }
        }
        each(field, value)?;
    }
    Ok(())
}

/// Every tag at every depth where a length-delimited value parses as a message (strings that
/// happen to parse are counted too: the bound only gets safer).
fn elements(bytes: &[u8], budget: &mut usize, depth: u8) -> Result<(), PrescanError> {
    for f in fields(bytes) {
        let Ok((_, value)) = f else { return Ok(()) };
        *budget = budget.checked_sub(1).ok_or(PrescanError::TooManyElements)?;
        if let Value::Bytes(inner) = value
            && depth < 8
            && fields(inner).all(|f| f.is_ok())
        {
            elements(inner, budget, depth + 1)?;
        }
    }
    Ok(())
}

/// Checks an encoded `netdiag.v1.AgentMessage` before it is decoded.
pub fn agent_message(bytes: &[u8]) -> Result<(), PrescanError> {
    let mut budget = MAX_ELEMENTS;
    elements(bytes, &mut budget, 0)?;
    count(bytes, &[], |field, value| {
        let Value::Bytes(body) = value else { return Ok(()) };
        match field {
            1 => count(body, HELLO, |_, _| Ok(())),
            2 => count(body, BATCH, |_, _| Ok(())),
            3 => count(body, INSPECTION, |outer, v| {
                let Value::Bytes(inner) = v else { return Ok(()) };
                for &(o, n, name, max) in INSPECTION_NESTED {
                    if o == outer {
                        count(inner, &[(n, name, max)], |_, _| Ok(()))?;
                    }
                }
                Ok(())
            }),
            _ => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::v1;

    fn batch_of_empty_results(n: usize) -> Vec<u8> {
        let batch =
            v1::ResultBatch { seq: 1, results: vec![v1::ProbeResult::default(); n], ..Default::default() };
        v1::AgentMessage { body: Some(v1::agent_message::Body::Results(batch)) }.encode_to_vec()
    }

    #[test]
    fn a_batch_of_empty_results_past_the_limit_is_refused_before_decoding() {
        assert_eq!(agent_message(&batch_of_empty_results(1000)), Ok(()));
        let bomb = batch_of_empty_results(MAX_RESULTS_PER_BATCH + 1);
        assert!(bomb.len() < 1024 * 1024, "a small message: {} bytes", bomb.len());
        assert_eq!(
            agent_message(&bomb),
            Err(PrescanError::TooMany { field: "results", max: MAX_RESULTS_PER_BATCH })
        );
    }

    #[test]
    fn nested_repeated_fields_are_counted_too() {
        let service = v1::NatService {
            targets: vec![v1::NatTarget::default(); MAX_NAT_TARGETS + 1],
            ..Default::default()
        };
        let report = v1::InspectionReport { nat_services: vec![service], ..Default::default() };
        let msg =
            v1::AgentMessage { body: Some(v1::agent_message::Body::Inspection(report)) }.encode_to_vec();
        assert_eq!(
            agent_message(&msg),
            Err(PrescanError::TooMany { field: "inspection.nat_services[].targets", max: MAX_NAT_TARGETS })
        );
    }

    #[test]
    fn nat_rules_and_their_port_ranges_are_counted() {
        let inspection = |report: v1::InspectionReport| {
            agent_message(
                &v1::AgentMessage { body: Some(v1::agent_message::Body::Inspection(report)) }.encode_to_vec(),
            )
        };
        let rules = vec![v1::NatRule::default(); MAX_NAT_RULES + 1];
        assert_eq!(
            inspection(v1::InspectionReport { nat_rules: rules, ..Default::default() }),
            Err(PrescanError::TooMany { field: "inspection.nat_rules", max: MAX_NAT_RULES })
        );
        let rule = v1::NatRule {
            destination_ports: vec![v1::PortRange { first: 1, last: 2 }; MAX_FILTER_PORT_RANGES + 1],
            ..Default::default()
        };
        assert_eq!(
            inspection(v1::InspectionReport { nat_rules: vec![rule], ..Default::default() }),
            Err(PrescanError::TooMany {
                field: "inspection.nat_rules[].destination_ports",
                max: MAX_FILTER_PORT_RANGES
            })
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for bytes in [&[0xff_u8; 11][..], &[0x12, 0x05, 0x01], &[0x0b], &[0x00, 0x01], &[]] {
            let r = agent_message(bytes);
            assert!(r.is_ok() || matches!(r, Err(PrescanError::Malformed(_))), "{bytes:?}: {r:?}");
        }
    }

    #[test]
    fn real_messages_pass() {
        let hello = v1::Hello {
            node: "node-1".into(),
            pods: vec![v1::LocalPod::default(); 30],
            ..Default::default()
        };
        let msg = v1::AgentMessage { body: Some(v1::agent_message::Body::Hello(hello)) }.encode_to_vec();
        assert_eq!(agent_message(&msg), Ok(()));
    }
}
