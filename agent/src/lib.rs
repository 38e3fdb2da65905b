//! netdiag's node agent: finds the pods on its node and their network namespaces, probes and
//! inspects from inside each of them, and streams the results to the collector.

pub mod agent;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod inspect;
pub mod memory;
pub mod metrics;
pub mod namespaces;
pub mod plan;
pub mod privileges;
pub mod probe;
pub mod resolv_conf;
pub mod run;
pub mod scheduler;
pub mod shutdown;
pub mod source;
pub mod sources;
pub mod uplink;
