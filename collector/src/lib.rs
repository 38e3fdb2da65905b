//! netdiag's collector: receives every agent's stream, keeps the connectivity matrix,
//! localizes failures and serves the HTTP API, the web UI, Prometheus metrics and the CLI's
//! gRPC queries.

pub mod api;
pub mod cli;
pub mod ingest;
pub mod localize;
pub mod matrix;
pub mod metrics;
pub mod query;
pub mod server;
pub mod sink;
pub mod state;
pub mod ui;
