//! netdiag's domain model: the types every other crate speaks.
//!
//! Architecture invariant: this crate does no I/O and depends on no runtime (no tokio, tonic or
//! nix), so everything in it is unit-testable with plain values. Wire formats (protobuf, JSON API)
//! convert into these types at their own boundary, validating as they go.

pub mod agents;
pub mod config;
pub mod dns;
pub mod finding;
pub mod http;
pub mod inspect;
pub mod inventory;
pub mod limits;
pub mod matrix;
pub mod names;
pub mod netpol;
pub mod outcome;
pub mod plan;
pub mod probe;
pub mod result;
pub mod run;
pub mod run_plan;
pub mod session;
pub mod text;
pub mod time;

pub use agents::AgentInfo;
pub use dns::{DnsName, DnsNameError, DnsTransport, RecordType};
pub use finding::{Culprit, CulpritKind, Diagnosis, Finding, FindingId, Severity};
pub use http::{HttpPath, HttpStatus};
pub use inspect::InspectionReport;
pub use limits::OutOfRange;
pub use matrix::{CellStatus, MatrixCell, MatrixLevel, MatrixQuery, MatrixSnapshot, Ratio};
pub use names::{Name, NameError, Namespace, NodeName, PodRef, Port, ServiceRef};
pub use outcome::{DnsFailure, HttpFailure, IcmpFailure, Layer, MtuFailure, Outcome, TcpFailure};
pub use plan::{EveryRounds, PlannedProbe, ProbePlan, Schedule};
pub use probe::{ProbeKind, ServiceVia, Source, Target};
pub use result::{Burst, Detail, PathMtu, ProbeResult, ResultBatch, Rtt, Seq};
pub use run::{
    ProbeRunEvent, ProbeRunRequest, RunDone, RunId, RunProgress, RunRequest, RunStep, RunTarget, RunTimeout,
    RunUpdate, StepName, StepStatus,
};
pub use run_plan::{PlannedStep, RunPlan, RunPlanError, StepAction};
pub use session::{
    AgentMessage, AgentVersion, Capability, CollectorMessage, Hello, InstanceId, LocalPod, NodePods,
};
pub use text::{Text, TextError, error_chain};
pub use time::UnixMillis;
