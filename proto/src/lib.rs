//! The `netdiag.v1` protobuf contract (generated at build time by protox + tonic-prost-build) and
//! its validated conversions into the domain model.

#[allow(missing_debug_implementations, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("netdiag.v1");
}
