//! netdiag's domain model: the types every other crate speaks.
//!
//! Architecture invariant: this crate does no I/O and depends on no runtime (no tokio, tonic or
//! nix), so everything in it is unit-testable with plain values. Wire formats (protobuf, JSON API)
//! convert into these types at their own boundary, validating as they go.

pub mod inventory;
pub mod names;
pub mod probe;

pub use names::{Name, NameError, Namespace, NodeName, PodRef, Port, ServiceRef};
