//! Support for netdiag's end-to-end tests: a lab per test that cleans up after itself
//! ([`lab::TestLab`]), and plain-socket probes run from inside lab namespaces ([`probe`]), so
//! the lab is checked without netdiag's own agent.

pub mod certs;
pub mod cluster;
pub mod http;
pub mod kube;
pub mod lab;
pub mod load;
pub mod probe;
pub mod processes;
pub mod replica;
