//! Probe plans: what an agent probes continuously, how often and how hard; [`derive`] computes
//! a node's full plan from the inventory and [`sample`] the sampled one for large clusters.

pub mod derive;
pub mod sample;

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::HttpPath;
use crate::limits::{
    MAX_CONCURRENCY, MAX_INTERVAL, MAX_PROBES_PER_SECOND, MIN_INTERVAL, MIN_TIMEOUT, OutOfRange,
};
use crate::probe::{KindTargetError, ProbeKind, Source, Target};

pub use self::derive::{HttpCheck, PlanOptions, SourcePods, derive_plan};
pub use self::sample::{PlanPolicy, Sampler, SamplerIndex};

/// A schedule that could not work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    #[error("timeout {timeout:?} is longer than the interval {interval:?}: probes would overlap")]
    TimeoutAboveInterval { timeout: Duration, interval: Duration },
}

impl ScheduleError {
    /// The field of the plan the problem is reported at.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::OutOfRange(e) => e.what,
            ScheduleError::TimeoutAboveInterval { .. } => "timeout_ms",
        }
    }
}

/// How often and how hard an agent probes: interval 100ms to 1h, timeout 1ms up to the interval
/// (both in whole milliseconds, as the wire carries them), concurrency 1 to 10000, rate 1 to
/// 100000 probes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ScheduleRepr", into = "ScheduleRepr")]
pub struct Schedule {
    interval: Duration,
    timeout: Duration,
    max_concurrency: NonZeroU32,
    max_probes_per_second: NonZeroU32,
}

#[derive(Serialize, Deserialize)]
struct ScheduleRepr {
    #[serde(with = "crate::time::as_millis")]
    interval_ms: Duration,
    #[serde(with = "crate::time::as_millis")]
    timeout_ms: Duration,
    max_concurrency: u32,
    max_probes_per_second: u32,
}

impl Schedule {
    pub fn new(
        interval: Duration,
        timeout: Duration,
        max_concurrency: u32,
        max_probes_per_second: u32,
    ) -> Result<Self, ScheduleError> {
        fn ms(d: Duration) -> String {
            d.as_millis().to_string()
        }
        fn whole_ms(d: Duration) -> Duration {
            Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }
        let (interval, timeout) = (whole_ms(interval), whole_ms(timeout));
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
            return Err(OutOfRange::new("interval_ms", ms(interval), "100 to 3600000").into());
        }
        if timeout < MIN_TIMEOUT {
            return Err(OutOfRange::new("timeout_ms", ms(timeout), "at least 1").into());
        }
        if timeout > interval {
            return Err(ScheduleError::TimeoutAboveInterval { timeout, interval });
        }
        let max_concurrency = NonZeroU32::new(max_concurrency)
            .filter(|n| n.get() <= MAX_CONCURRENCY)
            .ok_or_else(|| OutOfRange::new("max_concurrency", max_concurrency, "1 to 10000"))?;
        let max_probes_per_second = NonZeroU32::new(max_probes_per_second)
            .filter(|n| n.get() <= MAX_PROBES_PER_SECOND)
            .ok_or_else(|| OutOfRange::new("max_probes_per_second", max_probes_per_second, "1 to 100000"))?;
        Ok(Self { interval, timeout, max_concurrency, max_probes_per_second })
    }

    pub const fn interval(&self) -> Duration {
        self.interval
    }

    pub const fn timeout(&self) -> Duration {
        self.timeout
    }

    pub const fn max_concurrency(&self) -> NonZeroU32 {
        self.max_concurrency
    }

    pub const fn max_probes_per_second(&self) -> NonZeroU32 {
        self.max_probes_per_second
    }
}

impl TryFrom<ScheduleRepr> for Schedule {
    type Error = ScheduleError;
    fn try_from(r: ScheduleRepr) -> Result<Self, ScheduleError> {
        Schedule::new(r.interval_ms, r.timeout_ms, r.max_concurrency, r.max_probes_per_second)
    }
}

impl From<Schedule> for ScheduleRepr {
    fn from(s: Schedule) -> ScheduleRepr {
        ScheduleRepr {
            interval_ms: s.interval,
            timeout_ms: s.timeout,
            max_concurrency: s.max_concurrency.get(),
            max_probes_per_second: s.max_probes_per_second.get(),
        }
    }
}

/// One probe in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlannedProbe {
    pub source: Source,
    pub target: Target,
    pub kind: ProbeKind,
    /// HTTP probes only; None requests `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_path: Option<HttpPath>,
    /// How often it runs: every round, or (a path NetworkPolicy keeps shut) once every few.
    #[serde(default, skip_serializing_if = "EveryRounds::is_every_round")]
    pub every: EveryRounds,
}

/// A planned probe runs once every this many rounds of its plan: 1 for the paths under watch,
/// more for the ones only sampled (a path policy denies is probed now and then, which is how
/// "policy not enforced" is noticed, without paying for it every round).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct EveryRounds(u32);

impl EveryRounds {
    /// Every round.
    pub const ONE: EveryRounds = EveryRounds(1);
    /// The most rounds between two runs of a probe: a cell must still see a sample within the
    /// matrix's window at the longest intervals plans use.
    pub const MAX: u32 = 60;

    pub fn new(rounds: u32) -> Result<Self, OutOfRange> {
        if (1..=Self::MAX).contains(&rounds) {
            Ok(Self(rounds))
        } else {
            Err(OutOfRange::new("every", rounds, "a probe runs once every 1 to 60 rounds"))
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }

    pub fn is_every_round(&self) -> bool {
        self.0 == 1
    }
}

impl Default for EveryRounds {
    fn default() -> Self {
        Self::ONE
    }
}

impl TryFrom<u32> for EveryRounds {
    type Error = OutOfRange;
    fn try_from(n: u32) -> Result<Self, OutOfRange> {
        Self::new(n)
    }
}

impl From<EveryRounds> for u32 {
    fn from(e: EveryRounds) -> u32 {
        e.0
    }
}

/// A planned probe whose fields contradict each other; `field()` names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlannedProbeError {
    #[error(transparent)]
    Target(KindTargetError),
    #[error("http_path is only for http probes, and this is a {kind} probe")]
    PathNotForKind { kind: ProbeKind },
}

impl PlannedProbeError {
    pub fn field(&self) -> &'static str {
        match self {
            PlannedProbeError::Target(_) => "target",
            PlannedProbeError::PathNotForKind { .. } => "http_path",
        }
    }
}

impl PlannedProbe {
    /// Checks that the kind fits the target and the HTTP path.
    pub fn check(&self) -> Result<(), PlannedProbeError> {
        self.kind.check_target(&self.target).map_err(PlannedProbeError::Target)?;
        if self.http_path.is_some() && self.kind != ProbeKind::Http {
            return Err(PlannedProbeError::PathNotForKind { kind: self.kind });
        }
        Ok(())
    }
}

/// What an agent probes continuously; a plan with a higher generation replaces the current one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbePlan {
    pub generation: NonZeroU64,
    pub schedule: Schedule,
    pub probes: Vec<PlannedProbe>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn schedules_are_bounded() {
        assert!(Schedule::new(ms(1000), ms(500), 16, 100).is_ok());
        assert!(Schedule::new(ms(100), ms(100), 1, 1).is_ok());
        let cases: &[(Duration, Duration, u32, u32, &str)] = &[
            (ms(0), ms(0), 1, 1, "interval_ms"),
            (ms(99), ms(50), 1, 1, "interval_ms"),
            (ms(3_600_001), ms(50), 1, 1, "interval_ms"),
            (ms(1000), ms(0), 1, 1, "timeout_ms"),
            (ms(1000), ms(1001), 1, 1, "timeout_ms"),
            (ms(1000), ms(10), 0, 1, "max_concurrency"),
            (ms(1000), ms(10), 10_001, 1, "max_concurrency"),
            (ms(1000), ms(10), 1, 0, "max_probes_per_second"),
        ];
        for &(interval, timeout, conc, rate, field) in cases {
            let err = Schedule::new(interval, timeout, conc, rate).unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
    }

    #[test]
    fn schedules_keep_whole_milliseconds() {
        let s = Schedule::new(Duration::from_micros(100_900), Duration::from_micros(1_500), 1, 1).unwrap();
        assert_eq!((s.interval(), s.timeout()), (ms(100), ms(1)));
        assert!(Schedule::new(ms(100), Duration::from_micros(999), 1, 1).is_err());
    }

    #[test]
    fn schedules_serialize_in_millis_and_validate_on_read() {
        let s = Schedule::new(ms(1000), ms(500), 16, 100).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"interval_ms":1000,"timeout_ms":500,"max_concurrency":16,"max_probes_per_second":100}"#
        );
        assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), s);
        assert!(serde_json::from_str::<Schedule>(&json.replace("500", "5000")).is_err());
    }

    #[test]
    fn planned_probes_fit_their_kind() {
        let p = PlannedProbe {
            source: "node/node-1".parse().unwrap(),
            target: Target::Address { ip: "10.0.0.1".parse().unwrap(), port: None },
            kind: ProbeKind::Icmp,
            http_path: None,
            every: EveryRounds::ONE,
        };
        assert_eq!(p.check(), Ok(()));
        let with_path = PlannedProbe { http_path: Some(HttpPath::root()), ..p.clone() };
        assert_eq!(with_path.check().unwrap_err().field(), "http_path");
        let tcp = PlannedProbe { kind: ProbeKind::Tcp, ..p };
        assert_eq!(tcp.check().unwrap_err().field(), "target");
    }
}
