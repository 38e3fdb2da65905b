//! On-demand probe runs ("probe from pod X to svc/Y:2379 now, show every step"): expanding a
//! request into the runbook's steps against the inventory ([`expand`]), and reading the steps'
//! results back into a verdict ([`verdict`]). Both pure; the lifecycle around them (auth,
//! limits, dispatch to the source's agent, timeouts, cancel) lives in the other modules:
//! [`dispatch`] (the lifecycle, for HTTP and gRPC), [`auth`], [`limiter`] (per-caller rate
//! limit), [`registry`] (runs in flight by id, progress routing, the concurrency cap) and
//! [`config`].

pub mod auth;
pub mod config;
pub mod dispatch;
pub mod expand;
pub mod limiter;
pub mod registry;
pub mod verdict;

#[cfg(test)]
pub(crate) mod testkit;
