//! Probe plans: `ProbePlan` and its `PlannedProbe`s.

use std::num::NonZeroU64;
use std::time::Duration;

use netdiag_model::limits::{MAX_PLANNED_PROBES, OutOfRange};
use netdiag_model::{EveryRounds, HttpPath, PlannedProbe, ProbePlan, Schedule};

use super::enums::{self, wire};
use super::error::{At, ConvertError};
use super::field::{Result, list, millis_u32, opt_str, opt_to_wire, required};
use super::target::req_source;
use crate::v1;

impl TryFrom<v1::PlannedProbe> for PlannedProbe {
    type Error = ConvertError;
    fn try_from(p: v1::PlannedProbe) -> Result<Self> {
        let probe = PlannedProbe {
            source: req_source(p.source).at("source")?,
            target: required(p.target).and_then(TryInto::try_into).at("target")?,
            kind: enums::probe_kind(p.kind).at("kind")?,
            http_path: opt_str(p.http_path, HttpPath::new).at("http_path")?,
            // 0 is proto3's unset: an older collector's plan runs every probe every round.
            every: EveryRounds::new(p.every.max(1)).at("every")?,
        };
        if let Err(e) = probe.check() {
            let field = e.field();
            return Err(e).at(field);
        }
        Ok(probe)
    }
}

impl From<PlannedProbe> for v1::PlannedProbe {
    fn from(p: PlannedProbe) -> Self {
        v1::PlannedProbe {
            source: Some(p.source.into()),
            target: Some(p.target.into()),
            kind: wire::<v1::ProbeKind, _>(p.kind),
            http_path: opt_to_wire(p.http_path),
            every: p.every.get(),
        }
    }
}

impl TryFrom<v1::ProbePlan> for ProbePlan {
    type Error = ConvertError;
    fn try_from(p: v1::ProbePlan) -> Result<Self> {
        let generation = NonZeroU64::new(p.generation)
            .ok_or_else(|| OutOfRange::new("generation", 0, "generations start at 1"))
            .at("generation")?;
        let schedule = Schedule::new(
            Duration::from_millis(p.interval_ms.into()),
            Duration::from_millis(p.timeout_ms.into()),
            p.max_concurrency,
            p.max_probes_per_second,
        );
        let schedule = match schedule {
            Ok(s) => s,
            Err(e) => {
                let field = e.field();
                return Err(e).at(field);
            }
        };
        let probes = list(p.probes, MAX_PLANNED_PROBES, PlannedProbe::try_from).at("probes")?;
        Ok(ProbePlan { generation, schedule, probes })
    }
}

impl From<ProbePlan> for v1::ProbePlan {
    fn from(p: ProbePlan) -> Self {
        v1::ProbePlan {
            generation: p.generation.get(),
            interval_ms: millis_u32(p.schedule.interval()),
            timeout_ms: millis_u32(p.schedule.timeout()),
            max_concurrency: p.schedule.max_concurrency().get(),
            max_probes_per_second: p.schedule.max_probes_per_second().get(),
            probes: p.probes.into_iter().map(Into::into).collect(),
        }
    }
}
