//! Probes: each kind in its own module, each run from a [`crate::source::SourceNs`] and
//! classified by layer and outcome into a `netdiag_model::result::ProbeResult`.

pub mod dns;
pub mod http;
pub mod icmp;
pub mod mtu;
pub mod tcp;
