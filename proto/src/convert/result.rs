//! Probe results and result batches.

use netdiag_model::limits::{MAX_DNS_ANSWERS, MAX_RESULTS_PER_BATCH};
use netdiag_model::result::BurstError;
use netdiag_model::{Burst, Detail, HttpStatus, PathMtu, ProbeResult, ResultBatch, Rtt, Seq};

use super::enums::{self, wire};
use super::error::{At, ConvertError, ErrorKind};
use super::field::{Result, ip, list, opt_ip, required, unix_ms};
use super::target::req_source;
use crate::v1;

fn rtt(us: u64, lower_bound: bool) -> Result<Option<Rtt>> {
    match (us, lower_bound) {
        (0, false) => Ok(None),
        (0, true) => {
            Err(ErrorKind::Conflict("rtt_lower_bound is set but rtt_us is 0 (no RTT)")).at("rtt_lower_bound")
        }
        (us, lower_bound) => Rtt::from_micros(us, lower_bound).map(Some).at("rtt_us"),
    }
}

fn burst(sent: u32, received: u32) -> Result<Option<Burst>> {
    match (sent, received) {
        (0, 0) => Ok(None),
        (s, r) if r > s => Err(BurstError::MoreReceivedThanSent { sent: s, received: r }).at("received"),
        (s, r) => Burst::new(s, r).map(Some).at("sent"),
    }
}

impl TryFrom<v1::ProbeResult> for ProbeResult {
    type Error = ConvertError;
    fn try_from(r: v1::ProbeResult) -> Result<Self> {
        let result = ProbeResult {
            source: req_source(r.source).at("source")?,
            target: required(r.target).and_then(TryInto::try_into).at("target")?,
            kind: enums::probe_kind(r.kind).at("kind")?,
            outcome: enums::outcome(r.outcome).at("outcome")?,
            rtt: rtt(r.rtt_us, r.rtt_lower_bound)?,
            at: unix_ms(r.at_unix_ms).at("at_unix_ms")?,
            detail: Detail::new(r.detail).at("detail")?,
            burst: burst(r.sent, r.received)?,
            http_status: match r.http_status {
                0 => None,
                n => Some(HttpStatus::new(n).at("http_status")?),
            },
            path_mtu: match r.path_mtu {
                0 => None,
                n => Some(PathMtu::new(n).at("path_mtu")?),
            },
            answers: list(r.answers, MAX_DNS_ANSWERS, |a| ip(&a)).at("answers")?,
            nameserver: opt_ip(&r.nameserver).at("nameserver")?,
        };
        if let Err(e) = result.check() {
            let field = e.field();
            return Err(e).at(field);
        }
        Ok(result)
    }
}

impl From<ProbeResult> for v1::ProbeResult {
    fn from(r: ProbeResult) -> Self {
        v1::ProbeResult {
            source: Some(r.source.into()),
            target: Some(r.target.into()),
            kind: wire::<v1::ProbeKind, _>(r.kind),
            outcome: wire::<v1::Outcome, _>(r.outcome),
            rtt_us: r.rtt.map_or(0, Rtt::as_micros),
            rtt_lower_bound: r.rtt.is_some_and(Rtt::is_lower_bound),
            at_unix_ms: r.at.get(),
            detail: r.detail.into(),
            sent: r.burst.map_or(0, Burst::sent),
            received: r.burst.map_or(0, Burst::received),
            http_status: r.http_status.map_or(0, |s| s.get().into()),
            path_mtu: r.path_mtu.map_or(0, PathMtu::get),
            answers: r.answers.iter().map(ToString::to_string).collect(),
            nameserver: r.nameserver.map(|n| n.to_string()).unwrap_or_default(),
        }
    }
}

impl TryFrom<v1::ResultBatch> for ResultBatch {
    type Error = ConvertError;
    fn try_from(b: v1::ResultBatch) -> Result<Self> {
        Ok(ResultBatch {
            seq: Seq::new(b.seq).at("seq")?,
            results: list(b.results, MAX_RESULTS_PER_BATCH, ProbeResult::try_from).at("results")?,
            dropped: b.dropped,
        })
    }
}

impl From<ResultBatch> for v1::ResultBatch {
    fn from(b: ResultBatch) -> Self {
        v1::ResultBatch {
            seq: b.seq.get(),
            results: b.results.into_iter().map(Into::into).collect(),
            dropped: b.dropped,
        }
    }
}
