//! On-demand probe runs ("probe from pod X to svc/Y:2379 now, show every step"): the
//! lifecycle around the engine's pure expansion and verdict (`netdiag_diagnose::run`):
//! [`dispatch`] (the lifecycle, for HTTP and gRPC), [`auth`], [`limiter`] (per-caller rate
//! limit), [`registry`] (runs in flight by id, progress routing, the concurrency cap) and
//! [`config`].

pub mod auth;
pub mod config;
pub mod dispatch;
pub mod limiter;
pub mod registry;

#[cfg(test)]
pub(crate) mod testkit;
