//! Conversions between the `v1` wire types and `netdiag_model`, one module per message family.
//!
//! Inbound (`TryFrom<v1::X> for model::X`): every field is checked (required sub-messages and
//! oneofs set, enums known and not UNSPECIFIED, numbers in range, names and addresses valid,
//! strings and lists capped by `netdiag_model::limits`), and a failure is a [`ConvertError`]
//! whose path names the field, e.g. `results[3].target.pod.ip`. Hostile input never panics.
//!
//! Outbound (`From<model::X> for v1::X`): infallible, since the model's values are already valid.
//!
//! Entry points: `AgentMessage` and `CollectorMessage` (the session stream), and for the query
//! service `MatrixRequest`/`MatrixResponse`, `DiagnosisResponse`, `ProbeRunRequest`/
//! `ProbeRunEvent` and `ListAgentsResponse`.

mod enums;
mod error;
mod field;
mod finding;
mod inspect;
mod plan;
mod query;
mod result;
mod run;
mod session;
mod target;

#[cfg(test)]
mod tests;

pub use self::error::{ConvertError, ErrorKind};
pub use self::result::tabled_result_batch;
