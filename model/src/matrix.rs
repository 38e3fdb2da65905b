//! The connectivity matrix as the query service serves it: one cell per source, destination and
//! probe kind, with its status and latency summary.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::{MAX_LINE_BYTES, OutOfRange};
use crate::probe::ProbeKind;
use crate::text::Text;
use crate::time::UnixMillis;

/// Whether the matrix is per pod or per node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatrixLevel {
    #[default]
    Pod,
    Node,
}

/// What the CLI asks the matrix for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MatrixQuery {
    pub level: MatrixLevel,
    /// None: every kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ProbeKind>,
}

/// The verdict on one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    Ok,
    Degraded,
    Failed,
    /// No recent samples.
    Unknown,
}

impl fmt::Display for CellStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CellStatus::Ok => "ok",
            CellStatus::Degraded => "degraded",
            CellStatus::Failed => "failed",
            CellStatus::Unknown => "unknown",
        })
    }
}

/// A fraction from 0.0 to 1.0 (never NaN).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Ratio(f64);

impl Ratio {
    pub const ZERO: Ratio = Ratio(0.0);

    pub fn new(r: f64) -> Result<Self, OutOfRange> {
        if (0.0..=1.0).contains(&r) { Ok(Self(r)) } else { Err(OutOfRange::new("ratio", r, "0.0 to 1.0")) }
    }

    pub const fn get(self) -> f64 {
        self.0
    }
}

// Ratio is never NaN, so equality is reflexive.
impl Eq for Ratio {}

impl TryFrom<f64> for Ratio {
    type Error = OutOfRange;
    fn try_from(r: f64) -> Result<Self, OutOfRange> {
        Self::new(r)
    }
}

impl From<Ratio> for f64 {
    fn from(r: Ratio) -> f64 {
        r.0
    }
}

/// One source→destination cell for one probe kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixCell {
    /// A pod (`<ns>/<name>`) or a node name, depending on the level.
    pub source: Text<MAX_LINE_BYTES>,
    pub destination: Text<MAX_LINE_BYTES>,
    pub kind: ProbeKind,
    pub status: CellStatus,
    pub loss_ratio: Ratio,
    /// Microsecond precision; None without RTT samples.
    #[serde(default, rename = "rtt_p50_us", with = "crate::time::as_micros_opt")]
    pub rtt_p50: Option<Duration>,
    #[serde(default, rename = "rtt_p99_us", with = "crate::time::as_micros_opt")]
    pub rtt_p99: Option<Duration>,
    #[serde(default, skip_serializing_if = "Text::is_empty")]
    pub last_error: Text<MAX_LINE_BYTES>,
    pub samples: u64,
    /// None when the cell never had a sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<UnixMillis>,
}

/// The matrix at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixSnapshot {
    pub cells: Vec<MatrixCell>,
    pub generated_at: UnixMillis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_fractions() {
        for bad in [-0.1, 1.000_1, f64::NAN, f64::INFINITY] {
            assert!(Ratio::new(bad).is_err(), "{bad}");
        }
        assert_eq!(Ratio::new(0.25).unwrap().get(), 0.25);
        assert!(serde_json::from_str::<Ratio>("2.0").is_err());
    }

    #[test]
    fn the_default_query_is_every_kind_per_pod() {
        assert_eq!(MatrixQuery::default(), MatrixQuery { level: MatrixLevel::Pod, kind: None });
    }
}
