//! The lab: a small Kubernetes-shaped cluster built from network namespaces on one machine,
//! sealed from the host network. It is netdiag's test bed and the demo a new user runs first.
//!
//! Pure parts (topology, addressing plan, kube-proxy rule rendering, fault specs) are separate
//! from the parts that touch the system (building namespaces, running commands, servers).

pub mod topology;
pub mod plan;
