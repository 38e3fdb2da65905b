//! `ConvertError`: what was wrong with an inbound message, and the path of the field at fault.

use std::fmt;

use netdiag_model::dns::DnsNameError;
use netdiag_model::finding::UnknownCulpritKind;
use netdiag_model::inspect::{NatServiceNameError, UnknownProtocol};
use netdiag_model::plan::{PlannedProbeError, ScheduleError};
use netdiag_model::result::{BurstError, ResultInvariant};
use netdiag_model::run::RunTargetError;
use netdiag_model::run_plan::RunPlanError;
use netdiag_model::{NameError, OutOfRange, TextError};

/// Why a field was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    #[error("is missing")]
    Missing,
    #[error("{what} is unspecified (0)")]
    Unspecified { what: &'static str },
    #[error("{value} is not a known {what}")]
    UnknownEnum { what: &'static str, value: i32 },
    #[error("{value:?} is not an IP address")]
    BadIp { value: String },
    #[error("an IP address is 4 or 16 bytes, not {len}")]
    BadIpBytes { len: usize },
    /// An index into one of a result batch's tables that is not there.
    #[error("{index} is not an index into the batch's {len} {table}")]
    BadRef { index: u32, len: usize, table: &'static str },
    #[error("{value:?} is not a network in CIDR notation (address/prefix)")]
    BadNetwork { value: String },
    #[error("has {len} entries, more than the {max} allowed")]
    TooMany { len: usize, max: usize },
    /// The field contradicts another one.
    #[error("{0}")]
    Conflict(&'static str),
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    DnsName(#[from] DnsNameError),
    #[error(transparent)]
    Burst(#[from] BurstError),
    #[error(transparent)]
    Result(#[from] ResultInvariant),
    #[error(transparent)]
    PlannedProbe(#[from] PlannedProbeError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    RunTarget(#[from] RunTargetError),
    #[error(transparent)]
    NatServiceName(#[from] NatServiceNameError),
    #[error(transparent)]
    Protocol(#[from] UnknownProtocol),
    #[error(transparent)]
    Culprit(#[from] UnknownCulpritKind),
    #[error("{value:?} is not an address with a port (ip:port or [v6]:port)")]
    BadSocketAddr { value: String },
    #[error(transparent)]
    RunPlan(#[from] RunPlanError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Field(&'static str),
    Index(usize),
}

/// An inbound message that does not convert: the field path (`results[3].target.pod.ip`) and
/// what was wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// Innermost segment first: errors are built at the leaf and wrapped on the way out.
    path: Vec<Segment>,
    kind: Box<ErrorKind>,
}

impl ConvertError {
    /// Where the error is, as `results[3].target.pod.ip`; empty for a whole message.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in self.path.iter().rev() {
            match seg {
                Segment::Field(f) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(f);
                }
                Segment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The same error, one field further out.
    pub(crate) fn in_field(mut self, field: &'static str) -> Self {
        self.path.push(Segment::Field(field));
        self
    }

    /// The same error, inside element `index` of a list.
    pub(crate) fn in_index(mut self, index: usize) -> Self {
        self.path.push(Segment::Index(index));
        self
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.path(), self.kind)
        }
    }
}

impl std::error::Error for ConvertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // Display already shows the kind; the chain goes on from the kind's own source.
        std::error::Error::source(&*self.kind)
    }
}

impl From<ErrorKind> for ConvertError {
    fn from(kind: ErrorKind) -> Self {
        Self { path: Vec::new(), kind: Box::new(kind) }
    }
}

macro_rules! from_model_error {
    ($($ty:ty),+ $(,)?) => {
        $(impl From<$ty> for ConvertError {
            fn from(e: $ty) -> Self {
                ErrorKind::from(e).into()
            }
        })+
    };
}

from_model_error!(
    OutOfRange,
    NameError,
    TextError,
    DnsNameError,
    BurstError,
    ResultInvariant,
    PlannedProbeError,
    ScheduleError,
    RunTargetError,
    NatServiceNameError,
    UnknownProtocol,
    UnknownCulpritKind,
    RunPlanError,
);

/// Adds path segments to an error on its way out of a field's conversion.
pub(crate) trait At<T> {
    fn at(self, field: &'static str) -> Result<T, ConvertError>;
    fn at_index(self, index: usize) -> Result<T, ConvertError>;
}

impl<T, E: Into<ConvertError>> At<T> for Result<T, E> {
    fn at(self, field: &'static str) -> Result<T, ConvertError> {
        self.map_err(|e| e.into().in_field(field))
    }

    fn at_index(self, index: usize) -> Result<T, ConvertError> {
        self.map_err(|e| e.into().in_index(index))
    }
}
