//! The agent's own plan when the collector has not sent one: the model's pure derivation
//! ([`netdiag_model::plan::derive`]), shared with the collector.

pub use netdiag_model::plan::derive::{HttpCheck, PlanOptions, SourcePods, derive_plan};
