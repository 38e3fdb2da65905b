//! ICMP echo packets for the MTU probe's RAW sockets, pure: building an echo request whose IP
//! packet has an exact total size, and reading what a RAW socket hands back (an IPv4 socket
//! delivers the IP header too, an ICMPv6 socket only the ICMPv6 message).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 header (no options) plus the ICMP echo header.
pub(super) const V4_OVERHEAD: u16 = 20 + 8;
/// IPv6 header (no extension headers) plus the ICMPv6 echo header.
pub(super) const V6_OVERHEAD: u16 = 40 + 8;

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;

/// The headers in front of the echo payload for `target`'s family.
pub(super) fn overhead(v6: bool) -> u16 {
    if v6 { V6_OVERHEAD } else { V4_OVERHEAD }
}

/// The Internet checksum (RFC 1071) of `data`.
pub(super) fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .fold(0u32, |acc, w| {
            let s = acc + w;
            (s & 0xffff) + (s >> 16)
        });
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The ICMP part of an echo request whose IP packet is `total` bytes long, or None when
/// `total` cannot even hold the headers. IPv4 gets its checksum here; for ICMPv6 the kernel
/// fills it in (RFC 3542).
pub(super) fn echo_request(v6: bool, ident: u16, seq: u16, total: u16) -> Option<Vec<u8>> {
    let payload = usize::from(total.checked_sub(overhead(v6))?);
    let mut packet = Vec::with_capacity(8 + payload);
    packet.extend_from_slice(&[if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 }, 0, 0, 0]);
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend((0..payload).map(|i| (i % 251) as u8));
    if !v6 {
        let c = checksum(&packet);
        packet[2..4].copy_from_slice(&c.to_be_bytes());
    }
    Some(packet)
}

/// What a received ICMP message says about one of our echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// An echo reply from the target.
    Reply { ident: u16, seq: u16 },
    /// An ICMP error from `from` quoting an echo request we sent to the target; `mtu` is the
    /// next-hop MTU of a "fragmentation needed" / "packet too big".
    Error { ident: u16, seq: u16, from: IpAddr, ty: u8, code: u8, mtu: Option<u32> },
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads what a RAW socket received from `from`, keeping only answers about echoes to
/// `target`: replies from it, and errors quoting a request to it.
pub(super) fn parse(bytes: &[u8], from: IpAddr, target: IpAddr) -> Option<Answer> {
    match target {
        IpAddr::V4(t) => parse_v4(bytes, t),
        IpAddr::V6(t) => parse_v6(bytes, from, t),
    }
}

/// An IPv4 packet's header length and its payload, if it is a well-formed IPv4 header.
fn ipv4_payload(packet: &[u8]) -> Option<(usize, &[u8])> {
    let first = *packet.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 {
        return None;
    }
    Some((ihl, packet.get(ihl..)?))
}

fn v4_addr(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

fn parse_v4(packet: &[u8], target: Ipv4Addr) -> Option<Answer> {
    if *packet.get(9)? != PROTO_ICMP {
        return None;
    }
    let from = v4_addr(packet, 12)?;
    let (_, icmp) = ipv4_payload(packet)?;
    let (ty, code) = (*icmp.first()?, *icmp.get(1)?);
    match ty {
        ECHO_REPLY_V4 if from == target => Some(Answer::Reply { ident: be16(icmp, 4)?, seq: be16(icmp, 6)? }),
        3 | 11 | 12 => {
            let quoted = icmp.get(8..)?;
            if *quoted.get(9)? != PROTO_ICMP || v4_addr(quoted, 16)? != target {
                return None;
            }
            let (_, echo) = ipv4_payload(quoted)?;
            if *echo.first()? != ECHO_REQUEST_V4 {
                return None;
            }
            let mtu = (ty == 3 && code == 4).then(|| be16(icmp, 6).map(u32::from)).flatten();
            Some(Answer::Error {
                ident: be16(echo, 4)?,
                seq: be16(echo, 6)?,
                from: from.into(),
                ty,
                code,
                mtu: mtu.filter(|m| *m > 0),
            })
        }
        _ => None,
    }
}

fn parse_v6(icmp: &[u8], from: IpAddr, target: Ipv6Addr) -> Option<Answer> {
    let (ty, code) = (*icmp.first()?, *icmp.get(1)?);
    match ty {
        ECHO_REPLY_V6 if from == IpAddr::V6(target) => {
            Some(Answer::Reply { ident: be16(icmp, 4)?, seq: be16(icmp, 6)? })
        }
        1..=4 => {
            let quoted = icmp.get(8..)?;
            let dst: [u8; 16] = quoted.get(24..40)?.try_into().ok()?;
            // Our requests carry no extension headers: the echo follows the base header.
            if *quoted.get(6)? != PROTO_ICMPV6 || Ipv6Addr::from(dst) != target {
                return None;
            }
            let echo = quoted.get(40..)?;
            if *echo.first()? != ECHO_REQUEST_V6 {
                return None;
            }
            let mtu = if ty == 2 {
                let m: [u8; 4] = icmp.get(4..8)?.try_into().ok()?;
                Some(u32::from_be_bytes(m)).filter(|m| *m > 0)
            } else {
                None
            };
            Some(Answer::Error { ident: be16(echo, 4)?, seq: be16(echo, 6)?, from, ty, code, mtu })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: [u8; 4] = [10, 244, 1, 5];
    const TARGET: [u8; 4] = [10, 244, 2, 7];
    const ROUTER: [u8; 4] = [172, 29, 0, 12];

    fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, PROTO_ICMP, 0, 0]);
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(payload);
        p
    }

    fn target() -> IpAddr {
        IpAddr::from(TARGET)
    }

    #[test]
    fn echo_requests_have_the_exact_size_and_a_valid_checksum() {
        let p = echo_request(false, 0x1234, 7, 1500).unwrap();
        assert_eq!(p.len() + 20, 1500);
        assert_eq!(&p[..2], &[8, 0]);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
        assert_eq!(checksum(&p), 0, "a packet with its checksum in place sums to zero");
        let odd = echo_request(false, 1, 1, 1001).unwrap();
        assert_eq!(checksum(&odd), 0, "odd lengths pad with a zero byte");
        let v6 = echo_request(true, 9, 3, 1280).unwrap();
        assert_eq!(v6.len() + 40, 1280);
        assert_eq!((v6[0], &v6[2..4]), (128, &[0u8, 0][..]), "the kernel fills the ICMPv6 checksum");
        assert_eq!(echo_request(false, 1, 1, 27), None);
        assert_eq!(echo_request(true, 1, 1, 47), None);
        assert_eq!(echo_request(false, 1, 1, 28).map(|p| p.len()), Some(8));
    }

    #[test]
    fn checksum_matches_rfc_1071_example() {
        // RFC 1071 section 3: the one's complement sum of these words is 0xddf2.
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
    }

    #[test]
    fn v4_replies_are_ours_only_from_the_target() {
        let mut reply = echo_request(false, 0xbeef, 42, 100).unwrap();
        reply[0] = ECHO_REPLY_V4;
        let from_target = ipv4(TARGET, US, &reply);
        assert_eq!(parse(&from_target, target(), target()), Some(Answer::Reply { ident: 0xbeef, seq: 42 }));
        let from_elsewhere = ipv4(ROUTER, US, &reply);
        assert_eq!(parse(&from_elsewhere, ROUTER.into(), target()), None);
        let request = ipv4(TARGET, US, &echo_request(false, 0xbeef, 42, 100).unwrap());
        assert_eq!(parse(&request, target(), target()), None, "someone pinging us is not an answer");
        assert_eq!(parse(&from_target[..22], target(), target()), None, "truncated");
    }

    #[test]
    fn v4_fragmentation_needed_names_the_next_hop_mtu() {
        let original = ipv4(US, TARGET, &echo_request(false, 0xbeef, 9, 1500).unwrap());
        let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x04, 0xb0]; // next-hop MTU 1200
        icmp.extend_from_slice(&original[..28]);
        let error = ipv4(ROUTER, US, &icmp);
        assert_eq!(
            parse(&error, ROUTER.into(), target()),
            Some(Answer::Error {
                ident: 0xbeef,
                seq: 9,
                from: ROUTER.into(),
                ty: 3,
                code: 4,
                mtu: Some(1200)
            })
        );
        let mut host_unreachable = icmp.clone();
        host_unreachable[1] = 1;
        let Some(Answer::Error { code: 1, mtu: None, .. }) =
            parse(&ipv4(ROUTER, US, &host_unreachable), ROUTER.into(), target())
        else {
            panic!("host unreachable not read")
        };
        let other_target = ipv4(US, ROUTER, &echo_request(false, 0xbeef, 9, 100).unwrap());
        let mut about_other = vec![3, 1, 0, 0, 0, 0, 0, 0];
        about_other.extend_from_slice(&other_target[..28]);
        assert_eq!(parse(&ipv4(ROUTER, US, &about_other), ROUTER.into(), target()), None);
    }

    #[test]
    fn v6_replies_and_packet_too_big() {
        let t6: Ipv6Addr = "fd00:10:244:2::7".parse().unwrap();
        let router: IpAddr = "fd00:172:29::12".parse().unwrap();
        let mut reply = echo_request(true, 0xbeef, 5, 1280).unwrap();
        reply[0] = ECHO_REPLY_V6;
        assert_eq!(parse(&reply, t6.into(), t6.into()), Some(Answer::Reply { ident: 0xbeef, seq: 5 }));
        assert_eq!(parse(&reply, router, t6.into()), None);

        let mut quoted = vec![0x60, 0, 0, 0, 0x05, 0x00, PROTO_ICMPV6, 64];
        quoted.extend_from_slice(&"fd00:10:244:1::5".parse::<Ipv6Addr>().unwrap().octets());
        quoted.extend_from_slice(&t6.octets());
        quoted.extend_from_slice(&echo_request(true, 0xbeef, 6, 1400).unwrap()[..8]);
        let mut too_big = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00]; // MTU 1280
        too_big.extend_from_slice(&quoted);
        assert_eq!(
            parse(&too_big, router, t6.into()),
            Some(Answer::Error { ident: 0xbeef, seq: 6, from: router, ty: 2, code: 0, mtu: Some(1280) })
        );
    }
}
