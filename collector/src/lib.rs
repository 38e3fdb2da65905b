//! netdiag's collector: receives every agent's stream, keeps the connectivity matrix,
//! localizes failures and serves the HTTP API, the web UI, Prometheus metrics and the CLI's
//! gRPC queries.

pub mod agent_token;
pub mod agents_tls;
pub mod api;
pub mod cli;
pub mod connections;
pub mod history;
pub mod ingest;
pub mod kube_inventory;
pub mod kube_report;
pub mod lease;
pub mod metrics;
pub mod plans;
pub mod query;
pub mod quota;
pub mod runs;
pub mod server;
pub mod sink;
pub mod state;
pub mod ui;
