//! The lab: a small Kubernetes-shaped cluster built from network namespaces on one machine,
//! sealed from the host network. It is netdiag's test bed and the demo a new user runs first.
//!
//! Pure parts (topology, addressing plan, kube-proxy rule rendering, fault specs, desired
//! state) are separate from the parts that touch the system (bring-up, reconcile, teardown,
//! status, servers).

pub mod bringup;
pub mod control;
pub mod desired;
pub mod faults;
pub mod netcmd;
pub mod netpol;
pub mod plan;
pub mod preflight;
pub mod reconcile;
pub mod rules;
pub mod serve;
pub mod servers;
pub mod state;
pub mod status;
pub mod teardown;
pub mod topology;
