//! The `netdiag.v1` protobuf contract (generated at build time by protox + tonic-prost-build) and
//! its validated conversions into the domain model.
//!
//! Architecture invariant: a message from the network is read only after its `TryFrom<v1::X>` in
//! [`convert`] has turned it into domain types, checking every field and naming the failing one in
//! its error; the rest of netdiag never works with an unchecked `v1` value.

#[allow(missing_debug_implementations, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("netdiag.v1");
}

pub mod convert;

pub use convert::{ConvertError, ErrorKind};
