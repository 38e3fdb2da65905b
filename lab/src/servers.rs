//! The servers that live inside the lab: the cluster DNS and the pods' app listeners.
//!
//! Pure parts: [`DnsZone`] (names from the inventory), `dns_message` ([`dns_response`]: DNS
//! bytes in, bytes out), `http` (an HTTP/1.x head parser), `apps` and `pd_api` (what each app
//! answers). I/O parts: `dns` ([`serve_dns`]) and `app_server` ([`serve_app`]), over a shared
//! bounded accept loop (`accept`).
//!
//! Architecture invariant: servers never bind or enter anything. They take sockets the caller
//! already bound (inside a pod's namespace via `netdiag_netns::socket_in`, on loopback in
//! tests), so this module never calls `setns` and runs on any runtime. A server runs until its
//! future is dropped; dropping it aborts its connections too.

mod accept;
mod app_server;
mod apps;
mod dns;
mod dns_message;
mod dns_zone;
#[cfg(test)]
mod fixtures;
mod http;
mod pd_api;

pub use app_server::{MAX_APP_CONNECTIONS, serve_app};
pub use apps::{AppIdentity, AppInfo, AppKind};
pub use dns::{MAX_DNS_TCP_CONNECTIONS, SharedZone, serve_dns};
pub use dns_message::{DNS_TTL, DnsMode, DnsTransport, dns_response};
pub use dns_zone::{Answer, DnsZone};
pub use pd_api::{PdCluster, PdMember};
