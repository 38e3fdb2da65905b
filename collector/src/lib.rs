//! netdiag's collector: receives every agent's stream and (in later stages) keeps the
//! connectivity matrix, localizes failures and serves the API, UI and metrics.

pub mod ingest;
pub mod localize;
pub mod matrix;
pub mod sink;
pub mod state;
