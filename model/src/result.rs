//! Probe results and the numbered batches agents send them in.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU64;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dns::RecordType;
use crate::http::HttpStatus;
use crate::limits::{MAX_BURST, MAX_DETAIL_BYTES, MAX_DNS_ANSWERS, MAX_RTT, OutOfRange};
use crate::outcome::{HttpFailure, MtuFailure, Outcome};
use crate::probe::{KindTargetError, ProbeKind, Source, Target};
use crate::text::Text;
use crate::time::UnixMillis;

/// A probe's human-readable detail: the error, the answering nameserver, …
pub type Detail = Text<MAX_DETAIL_BYTES>;

/// A batch sequence number: per agent instance, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Seq(NonZeroU64);

impl Seq {
    pub const FIRST: Seq = Seq(NonZeroU64::MIN);

    pub fn new(n: u64) -> Result<Self, OutOfRange> {
        NonZeroU64::new(n)
            .map(Seq)
            .ok_or_else(|| OutOfRange::new("sequence number", n, "sequences start at 1"))
    }

    pub const fn get(self) -> u64 {
        self.0.get()
    }

    /// The following sequence number; None after `u64::MAX`.
    pub fn next(self) -> Option<Seq> {
        self.0.checked_add(1).map(Seq)
    }
}

impl TryFrom<u64> for Seq {
    type Error = OutOfRange;
    fn try_from(n: u64) -> Result<Self, OutOfRange> {
        Self::new(n)
    }
}

impl From<Seq> for u64 {
    fn from(s: Seq) -> u64 {
        s.get()
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A measured round-trip time, in whole microseconds from 1µs to [`MAX_RTT`]. When the probe
/// finished below the timer's resolution, the value is only a lower bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RttRepr", into = "RttRepr")]
pub struct Rtt {
    micros: u64,
    lower_bound: bool,
}

#[derive(Serialize, Deserialize)]
struct RttRepr {
    us: u64,
    lower_bound: bool,
}

impl Rtt {
    pub fn from_micros(micros: u64, lower_bound: bool) -> Result<Self, OutOfRange> {
        let max = u64::try_from(MAX_RTT.as_micros()).unwrap_or(u64::MAX);
        if (1..=max).contains(&micros) {
            Ok(Self { micros, lower_bound })
        } else {
            Err(OutOfRange::new("RTT (µs)", micros, "1µs to 1 hour"))
        }
    }

    /// From a measured duration, rounded up to whole microseconds.
    pub fn from_duration(d: Duration, lower_bound: bool) -> Result<Self, OutOfRange> {
        let micros = d.as_nanos().div_ceil(1000);
        Self::from_micros(u64::try_from(micros).unwrap_or(u64::MAX), lower_bound)
    }

    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    pub const fn as_duration(self) -> Duration {
        Duration::from_micros(self.micros)
    }

    pub const fn is_lower_bound(self) -> bool {
        self.lower_bound
    }
}

impl TryFrom<RttRepr> for Rtt {
    type Error = OutOfRange;
    fn try_from(r: RttRepr) -> Result<Self, OutOfRange> {
        Rtt::from_micros(r.us, r.lower_bound)
    }
}

impl From<Rtt> for RttRepr {
    fn from(r: Rtt) -> RttRepr {
        RttRepr { us: r.micros, lower_bound: r.lower_bound }
    }
}

impl fmt::Display for Rtt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.lower_bound { "≥" } else { "" };
        if self.micros < 1000 {
            write!(f, "{sign}{}µs", self.micros)
        } else {
            write!(f, "{sign}{:.3}ms", self.micros as f64 / 1000.0)
        }
    }
}

/// Packets sent and received in an ICMP or MTU burst: 1 to [`MAX_BURST`] sent, no more received
/// than sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "BurstRepr", into = "BurstRepr")]
pub struct Burst {
    sent: u32,
    received: u32,
}

#[derive(Serialize, Deserialize)]
struct BurstRepr {
    sent: u32,
    received: u32,
}

/// A burst whose counts do not add up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BurstError {
    #[error(transparent)]
    Sent(OutOfRange),
    #[error("received {received} packets but sent only {sent}")]
    MoreReceivedThanSent { sent: u32, received: u32 },
}

impl Burst {
    pub fn new(sent: u32, received: u32) -> Result<Self, BurstError> {
        if !(1..=MAX_BURST).contains(&sent) {
            return Err(BurstError::Sent(OutOfRange::new("packets sent", sent, "1 to 10000")));
        }
        if received > sent {
            return Err(BurstError::MoreReceivedThanSent { sent, received });
        }
        Ok(Self { sent, received })
    }

    pub const fn sent(self) -> u32 {
        self.sent
    }

    pub const fn received(self) -> u32 {
        self.received
    }

    /// Lost packets as a fraction of those sent, 0.0 to 1.0.
    pub fn loss_ratio(self) -> f64 {
        f64::from(self.sent - self.received) / f64::from(self.sent)
    }
}

impl TryFrom<BurstRepr> for Burst {
    type Error = BurstError;
    fn try_from(r: BurstRepr) -> Result<Self, BurstError> {
        Burst::new(r.sent, r.received)
    }
}

impl From<Burst> for BurstRepr {
    fn from(b: Burst) -> BurstRepr {
        BurstRepr { sent: b.sent, received: b.received }
    }
}

/// A path MTU found by an MTU probe: 68 (the IPv4 minimum) to 65536 (loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct PathMtu(u32);

impl PathMtu {
    pub fn new(mtu: u32) -> Result<Self, OutOfRange> {
        if (68..=65_536).contains(&mtu) {
            Ok(Self(mtu))
        } else {
            Err(OutOfRange::new("path MTU", mtu, "68 to 65536 bytes"))
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for PathMtu {
    type Error = OutOfRange;
    fn try_from(n: u32) -> Result<Self, OutOfRange> {
        Self::new(n)
    }
}

impl From<PathMtu> for u32 {
    fn from(m: PathMtu) -> u32 {
        m.0
    }
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub source: Source,
    pub target: Target,
    pub kind: ProbeKind,
    pub outcome: Outcome,
    /// None when there is no RTT (the probe failed before an answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt: Option<Rtt>,
    /// When the probe finished.
    pub at: UnixMillis,
    #[serde(default, skip_serializing_if = "Text::is_empty")]
    pub detail: Detail,
    /// ICMP and MTU probes: the burst's packet counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<Burst>,
    /// HTTP probes that got an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<HttpStatus>,
    /// MTU probes: the largest size that passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_mtu: Option<PathMtu>,
    /// DNS probes: the addresses answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<IpAddr>,
    /// DNS probes: the nameserver that answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameserver: Option<IpAddr>,
}

/// A probe result whose fields contradict each other; `field()` names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultInvariant {
    #[error(transparent)]
    Target(KindTargetError),
    #[error("a {kind} probe cannot end in {outcome}")]
    OutcomeNotForKind { kind: ProbeKind, outcome: &'static str },
    #[error("{field} is only for {only} probes, and this is a {kind} probe")]
    FieldNotForKind { field: &'static str, only: &'static str, kind: ProbeKind },
    #[error("{field} is required when the outcome is {outcome}")]
    MissingForOutcome { field: &'static str, outcome: &'static str },
    #[error("answers has {len} addresses, more than the {max} allowed")]
    TooManyAnswers { len: usize, max: usize },
    #[error("{ip} cannot answer a query for {record} records")]
    AnswerFamily { ip: IpAddr, record: RecordType },
}

impl ResultInvariant {
    /// The field of [`ProbeResult`] the problem is reported at.
    pub fn field(&self) -> &'static str {
        match self {
            ResultInvariant::Target(_) => "target",
            ResultInvariant::OutcomeNotForKind { .. } => "outcome",
            ResultInvariant::FieldNotForKind { field, .. }
            | ResultInvariant::MissingForOutcome { field, .. } => field,
            ResultInvariant::TooManyAnswers { .. } | ResultInvariant::AnswerFamily { .. } => "answers",
        }
    }
}

impl ProbeResult {
    /// Checks that the fields fit together: the kind fits the target and the outcome, and
    /// kind-specific fields appear only on their kind.
    pub fn check(&self) -> Result<(), ResultInvariant> {
        use ResultInvariant as E;
        let kind = self.kind;
        kind.check_target(&self.target).map_err(E::Target)?;
        if let Some(layer) = self.outcome.layer()
            && !kind.can_fail_at(layer)
        {
            return Err(E::OutcomeNotForKind { kind, outcome: self.outcome.as_str() });
        }
        let only = |field, only, ok: bool| {
            if ok { Ok(()) } else { Err(E::FieldNotForKind { field, only, kind }) }
        };
        let is = |k: ProbeKind| kind == k;
        if self.burst.is_some() {
            only("sent", "icmp and mtu", is(ProbeKind::Icmp) || is(ProbeKind::Mtu))?;
        }
        if self.http_status.is_some() {
            only("http_status", "http", is(ProbeKind::Http))?;
        }
        if self.path_mtu.is_some() {
            only("path_mtu", "mtu", is(ProbeKind::Mtu))?;
        }
        if !self.answers.is_empty() {
            only("answers", "dns", is(ProbeKind::Dns))?;
        }
        if self.nameserver.is_some() {
            only("nameserver", "dns", is(ProbeKind::Dns))?;
        }
        if self.outcome == Outcome::Http(HttpFailure::Status) && self.http_status.is_none() {
            return Err(E::MissingForOutcome { field: "http_status", outcome: self.outcome.as_str() });
        }
        if self.outcome == Outcome::Mtu(MtuFailure::Reduced) && self.path_mtu.is_none() {
            return Err(E::MissingForOutcome { field: "path_mtu", outcome: self.outcome.as_str() });
        }
        if self.answers.len() > MAX_DNS_ANSWERS {
            return Err(E::TooManyAnswers { len: self.answers.len(), max: MAX_DNS_ANSWERS });
        }
        if let Target::Dns { record, .. } = &self.target
            && let Some(ip) = self.answers.iter().find(|ip| !record.matches(ip))
        {
            return Err(E::AnswerFamily { ip: *ip, record: *record });
        }
        Ok(())
    }
}

/// Results an agent sends in one message, numbered so the collector can acknowledge them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultBatch {
    pub seq: Seq,
    pub results: Vec<ProbeResult>,
    /// Results the agent dropped (buffer full while the collector was away) since the last
    /// batch.
    pub dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{DnsName, DnsTransport};
    use crate::outcome::{DnsFailure, TcpFailure};

    fn tcp_result() -> ProbeResult {
        ProbeResult {
            source: "tidb/demo-tikv-0".parse().unwrap(),
            target: Target::Address {
                ip: "10.244.1.2".parse().unwrap(),
                port: Some(crate::Port::new(2379).unwrap()),
            },
            kind: ProbeKind::Tcp,
            outcome: Outcome::Ok,
            rtt: Some(Rtt::from_micros(250, false).unwrap()),
            at: UnixMillis::new(1_700_000_000_000).unwrap(),
            detail: Detail::default(),
            burst: None,
            http_status: None,
            path_mtu: None,
            answers: vec![],
            nameserver: None,
        }
    }

    fn dns_result() -> ProbeResult {
        ProbeResult {
            target: Target::Dns {
                name: DnsName::new("demo-pd.tidb").unwrap(),
                record: RecordType::A,
                nameserver: None,
                transport: DnsTransport::Udp,
            },
            kind: ProbeKind::Dns,
            answers: vec!["10.96.0.20".parse().unwrap()],
            nameserver: Some("10.96.0.10".parse().unwrap()),
            ..tcp_result()
        }
    }

    #[test]
    fn consistent_results_pass() {
        assert_eq!(tcp_result().check(), Ok(()));
        assert_eq!(dns_result().check(), Ok(()));
        let icmp = ProbeResult {
            kind: ProbeKind::Icmp,
            outcome: Outcome::Icmp(crate::outcome::IcmpFailure::Timeout),
            rtt: None,
            burst: Some(Burst::new(3, 0).unwrap()),
            ..tcp_result()
        };
        assert_eq!(icmp.check(), Ok(()));
    }

    #[test]
    fn contradictions_name_their_field() {
        let cases: Vec<(ProbeResult, &str)> = vec![
            (ProbeResult { kind: ProbeKind::Dns, ..tcp_result() }, "target"),
            (ProbeResult { outcome: Outcome::Dns(DnsFailure::NxDomain), ..tcp_result() }, "outcome"),
            (ProbeResult { burst: Some(Burst::new(1, 1).unwrap()), ..tcp_result() }, "sent"),
            (ProbeResult { http_status: Some(HttpStatus::new(200).unwrap()), ..tcp_result() }, "http_status"),
            (ProbeResult { path_mtu: Some(PathMtu::new(1400).unwrap()), ..tcp_result() }, "path_mtu"),
            (ProbeResult { answers: vec!["10.0.0.1".parse().unwrap()], ..tcp_result() }, "answers"),
            (ProbeResult { nameserver: Some("10.0.0.1".parse().unwrap()), ..tcp_result() }, "nameserver"),
            (ProbeResult { answers: vec!["fd00::1".parse().unwrap()], ..dns_result() }, "answers"),
            (ProbeResult { answers: vec!["10.0.0.1".parse().unwrap(); 65], ..dns_result() }, "answers"),
            (
                ProbeResult {
                    kind: ProbeKind::Http,
                    outcome: Outcome::Http(HttpFailure::Status),
                    ..tcp_result()
                },
                "http_status",
            ),
            (
                ProbeResult {
                    kind: ProbeKind::Mtu,
                    outcome: Outcome::Mtu(MtuFailure::Reduced),
                    ..tcp_result()
                },
                "path_mtu",
            ),
        ];
        for (result, field) in cases {
            let err = result.check().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
        let http_refused =
            ProbeResult { kind: ProbeKind::Http, outcome: Outcome::Tcp(TcpFailure::Refused), ..tcp_result() };
        assert_eq!(http_refused.check(), Ok(()), "an HTTP probe can fail its handshake");
    }

    #[test]
    fn value_types_hold_their_ranges() {
        assert!(Seq::new(0).is_err());
        assert_eq!(Seq::FIRST.next(), Some(Seq::new(2).unwrap()));
        assert_eq!(Seq::new(u64::MAX).unwrap().next(), None);
        assert!(Rtt::from_micros(0, false).is_err());
        assert!(Rtt::from_micros(3_600_000_001, false).is_err());
        assert_eq!(Rtt::from_duration(Duration::from_nanos(1), true).unwrap().as_micros(), 1);
        assert_eq!(Rtt::from_micros(1500, false).unwrap().to_string(), "1.500ms");
        assert_eq!(Rtt::from_micros(15, true).unwrap().to_string(), "≥15µs");
        assert!(matches!(Burst::new(2, 3), Err(BurstError::MoreReceivedThanSent { .. })));
        assert!(Burst::new(0, 0).is_err());
        assert_eq!(Burst::new(4, 3).unwrap().loss_ratio(), 0.25);
        assert!(PathMtu::new(67).is_err());
        assert!(PathMtu::new(65_537).is_err());
    }

    #[test]
    fn results_round_trip_through_json() {
        let r = dns_result();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"outcome\":\"ok\""), "{json}");
        assert_eq!(serde_json::from_str::<ProbeResult>(&json).unwrap(), r);
        assert!(serde_json::from_str::<Burst>(r#"{"sent":1,"received":2}"#).is_err());
    }
}
