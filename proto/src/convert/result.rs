//! Probe results and result batches, in both wire forms of a batch: plain (every result
//! carries its source and target) and tabled (a batch's distinct sources and targets sent once,
//! results referring to them by index). Both convert to the same [`ResultBatch`]; a tabled
//! batch's entries are converted and checked once, then shared by the results that name them.

use std::collections::HashMap;

use netdiag_model::limits::{MAX_DNS_ANSWERS, MAX_RESULTS_PER_BATCH};
use netdiag_model::result::BurstError;
use netdiag_model::{Burst, Detail, HttpStatus, PathMtu, ProbeResult, ResultBatch, Rtt, Seq, Source, Target};

use super::enums::{self, wire};
use super::error::{At, ConvertError, ErrorKind};
use super::field::{Result, ip, list, opt_ip, unix_ms};
use super::target::{Names, source_with, tabled_target, target_with};
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

/// A result batch's tables (its tabled form), converted and checked once for all its results.
#[derive(Debug)]
struct Tables {
    sources: Vec<Source>,
    targets: Vec<Target>,
}

/// Where a result's source or target comes from: inline, or by index into a batch's table
/// (`tables` is None outside a batch). Exactly one of the two.
fn inline_or_ref<W, M: Clone>(
    inline: Option<W>,
    index: Option<u32>,
    table: Option<&[M]>,
    (field, ref_field, table_name): (&'static str, &'static str, &'static str),
    both: &'static str,
    outside: &'static str,
    convert: impl FnOnce(W) -> Result<M>,
) -> Result<M> {
    match (inline, index) {
        (Some(w), None) => convert(w).at(field),
        (None, Some(index)) => {
            let Some(table) = table else { return Err(ErrorKind::Conflict(outside)).at(ref_field) };
            let len = table.len();
            let entry = usize::try_from(index).ok().and_then(|i| table.get(i));
            entry.cloned().ok_or(ErrorKind::BadRef { index, len, table: table_name }).at(ref_field)
        }
        (Some(_), Some(_)) => Err(ErrorKind::Conflict(both)).at(ref_field),
        (None, None) => Err(ConvertError::from(ErrorKind::Missing)).at(field),
    }
}

/// Converts one result; `tables` are its batch's (None for a result outside a batch).
fn probe_result(r: v1::ProbeResult, tables: Option<&Tables>) -> Result<ProbeResult> {
    let source = inline_or_ref(
        r.source,
        r.source_ref,
        tables.map(|t| t.sources.as_slice()),
        ("source", "source_ref", "sources"),
        "set either source or source_ref, not both",
        "only a result inside a batch can refer to a source table",
        Source::try_from,
    )?;
    let target = inline_or_ref(
        r.target,
        r.target_ref,
        tables.map(|t| t.targets.as_slice()),
        ("target", "target_ref", "targets"),
        "set either target or target_ref, not both",
        "only a result inside a batch can refer to a target table",
        |t| Target::try_from(*t),
    )?;
    let result = ProbeResult {
        source,
        target,
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

impl TryFrom<v1::ProbeResult> for ProbeResult {
    type Error = ConvertError;
    fn try_from(r: v1::ProbeResult) -> Result<Self> {
        probe_result(r, None)
    }
}

/// Every field of `r` but its source and target.
fn result_fields(r: &ProbeResult) -> v1::ProbeResult {
    v1::ProbeResult {
        source: None,
        target: None,
        kind: wire::<v1::ProbeKind, _>(r.kind),
        outcome: wire::<v1::Outcome, _>(r.outcome),
        rtt_us: r.rtt.map_or(0, Rtt::as_micros),
        rtt_lower_bound: r.rtt.is_some_and(Rtt::is_lower_bound),
        at_unix_ms: r.at.get(),
        detail: r.detail.as_str().to_owned(),
        sent: r.burst.map_or(0, Burst::sent),
        received: r.burst.map_or(0, Burst::received),
        http_status: r.http_status.map_or(0, |s| s.get().into()),
        path_mtu: r.path_mtu.map_or(0, PathMtu::get),
        answers: r.answers.iter().map(ToString::to_string).collect(),
        nameserver: r.nameserver.map(|n| n.to_string()).unwrap_or_default(),
        source_ref: None,
        target_ref: None,
    }
}

impl From<ProbeResult> for v1::ProbeResult {
    fn from(r: ProbeResult) -> Self {
        let fields = result_fields(&r);
        v1::ProbeResult { source: Some(r.source.into()), target: Some(Box::new(r.target.into())), ..fields }
    }
}

impl TryFrom<v1::ResultBatch> for ResultBatch {
    type Error = ConvertError;
    fn try_from(b: v1::ResultBatch) -> Result<Self> {
        let seq = Seq::new(b.seq).at("seq")?;
        // Names recur across a batch's table entries: each is checked and allocated once.
        let mut names = Names::shared();
        let tables = Tables {
            sources: list(b.sources, MAX_RESULTS_PER_BATCH, |s| source_with(s, &mut names)).at("sources")?,
            targets: list(b.targets, MAX_RESULTS_PER_BATCH, |t| target_with(t, &mut names)).at("targets")?,
        };
        let results =
            list(b.results, MAX_RESULTS_PER_BATCH, |r| probe_result(r, Some(&tables))).at("results")?;
        Ok(ResultBatch { seq, results, dropped: b.dropped })
    }
}

/// The plain form: every result carries its own source and target (what every collector reads).
impl From<ResultBatch> for v1::ResultBatch {
    fn from(b: ResultBatch) -> Self {
        v1::ResultBatch {
            seq: b.seq.get(),
            results: b.results.into_iter().map(Into::into).collect(),
            dropped: b.dropped,
            sources: Vec::new(),
            targets: Vec::new(),
        }
    }
}

/// The tabled form of `batch` (see `ResultBatch` in the .proto): each distinct source and
/// target once, results referring to them by index, table addresses as bytes. Only for a
/// collector that announced [`crate::ACCEPTS_RESULT_TABLES`]; it converts back to the same
/// batch as the plain form.
pub fn tabled_result_batch(batch: &ResultBatch) -> v1::ResultBatch {
    let mut source_ix: HashMap<&Source, u32> = HashMap::new();
    let mut target_ix: HashMap<&Target, u32> = HashMap::new();
    let (mut sources, mut targets) = (Vec::new(), Vec::new());
    let mut results = Vec::with_capacity(batch.results.len());
    for r in &batch.results {
        // A batch holds at most MAX_RESULTS_PER_BATCH results: indexes fit a u32.
        let next = u32::try_from(sources.len()).unwrap_or(u32::MAX);
        let source_ref = *source_ix.entry(&r.source).or_insert_with(|| {
            sources.push(v1::Source::from(r.source.clone()));
            next
        });
        let next = u32::try_from(targets.len()).unwrap_or(u32::MAX);
        let target_ref = *target_ix.entry(&r.target).or_insert_with(|| {
            targets.push(tabled_target(&r.target));
            next
        });
        results.push(v1::ProbeResult {
            source_ref: Some(source_ref),
            target_ref: Some(target_ref),
            ..result_fields(r)
        });
    }
    v1::ResultBatch { seq: batch.seq.get(), results, dropped: batch.dropped, sources, targets }
}
