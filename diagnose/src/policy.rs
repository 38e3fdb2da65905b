//! The NetworkPolicy expected verdict: what the cluster's `networking.k8s.io/v1` policies say a
//! connection should do, so a failing probe can be told apart from one the policies forbid.
//! Pure: checked policies ([`netdiag_model::netpol::Policy`]) and namespaces in, a
//! [`PolicyVerdict`] out. Semantics and the test table are `/work/shared/NETPOL.md`'s.
//!
//! - [`traffic`]: the question — a source and a destination ([`Endpoint`]: a pod, a node
//!   address or hostNetwork pod, an external address), the [`Transport`] (TCP/UDP/SCTP and a
//!   port, or ICMP) and how the destination was reached ([`Via`]: by its IP, through a
//!   ClusterIP already translated to a backend and its targetPort, or a NodePort/LoadBalancer).
//! - [`set`]: [`PolicySet`], the policies indexed by namespace, and [`PolicySet::evaluate`],
//!   which follows NETPOL.md §8: the source pod's egress, then the destination pod's ingress
//!   (own node and loopback by pod IP exempt first), each allowed when no policy isolates it
//!   for that direction or some rule of an isolating policy matches both peer and port; the
//!   verdict is their AND, then qualified.
//! - [`pace`]: how often a planned probe runs, by what policy says of its path (shut ones
//!   once every few rounds).
//! - [`rules`]: whether one rule's peers and ports match, and what a match relies on.
//! - [`verdict`]: the answer, with the deciding policies per direction, the plugin-dependent
//!   qualifiers (ipBlock on an in-cluster address, `endPort`, SCTP) and the undefined reasons
//!   (ICMP, egress to the pod's own node, Service hairpin, NodePort/LoadBalancer, hostNetwork
//!   peers); it renders as one short sentence.
//!
//! Architecture invariant: only connections are judged, never packets of an established one
//! (replies are implicitly allowed), and a rule is read exactly as written; what plugins
//! disagree on is a qualifier on the verdict, never a different verdict.

pub mod pace;
pub mod rules;
pub mod set;
pub mod traffic;
pub mod verdict;

#[cfg(test)]
mod tests;

pub use self::set::PolicySet;
pub use self::traffic::{Endpoint, HostKind, PodEndpoint, Traffic, Transport, Via};
pub use self::verdict::{
    Decision, Exemption, PluginDependence, PolicyVerdict, Side, UndefinedReason, Verdict,
};
