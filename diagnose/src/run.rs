//! On-demand probe runs, the pure half: expanding a request into the runbook's steps against
//! the inventory ([`expand`]), what NetworkPolicy says of its path ([`policy`]), and reading
//! the steps' results back into a verdict ([`verdict`]).
//! The lifecycle around them (auth, limits, dispatch, timeouts, cancel) is the collector's.

pub mod expand;
pub mod policy;
pub mod verdict;
