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

pub mod codec;
pub mod convert;
pub mod prescan;
pub mod tls;

pub use convert::{ConvertError, ErrorKind};

/// The `Session` response header in which a collector lists, comma-separated, the contract
/// extensions it accepts from agents beyond the base form (older collectors send none, and older
/// agents ignore it).
pub const ACCEPTS_HEADER: &str = "netdiag-accepts";
/// The extension: result batches in the tabled form ([`convert::tabled_result_batch`]).
pub const ACCEPTS_RESULT_TABLES: &str = "result-tables";

/// Whether a `netdiag-accepts` header value lists `extension`.
pub fn accepts(header: &str, extension: &str) -> bool {
    header.split(',').any(|e| e.trim() == extension)
}
