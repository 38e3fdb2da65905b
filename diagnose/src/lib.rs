//! netdiag's diagnosis engine: the connectivity matrix ([`matrix`]), localization of failures
//! over it and the inspections ([`localize`]), and on-demand runs' expansion and verdicts
//! ([`run`]). Pure: plain data and a `now` in, cells and findings out. Cargo enforces it: this
//! crate depends on the domain model and small pure crates only (no tokio, tonic, axum, kube,
//! netns), so the core is tested with plain values and builds in seconds.

pub mod localize;
pub mod matrix;
pub mod policy;
pub mod run;

#[cfg(any(test, feature = "sim"))]
pub mod scenario;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
