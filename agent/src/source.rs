//! A probe source: the agent's own namespace (the node, like a hostNetwork pod) or a pod's
//! namespace, entered by a thread parked there ([`netdiag_netns::NetnsWorker`]). Everything a
//! probe or inspection needs from a namespace — sockets, netlink connections, ping clients,
//! commands — is made through [`SourceNs`], never by calling `setns` here.
//!
//! Probe sockets come from a small reserve ([`SourceNs::probe_socket`]): the parked thread makes
//! [`SOCKET_BATCH`] at a time, so a probe rarely waits for a hop to it (waking that thread and
//! being woken back cost more than the socket).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use netdiag_model::probe::Source;
use netdiag_netns::{NetnsError, NetnsWorker};
use socket2::{Domain, Protocol, Socket, Type};

/// Why work could not run in a source's namespace.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {source_name}: its network namespace is gone")]
    Gone { source_name: String },
    #[error("source {source_name}")]
    Netns {
        source_name: String,
        #[source]
        error: NetnsError,
    },
}

/// Sockets made in one hop to the parked thread, when the reserve has none of a kind.
pub const SOCKET_BATCH: usize = 8;

/// What a socket is: domain, type, protocol.
type SocketKind = (Domain, Type, Protocol);

/// Unused sockets made in the namespace ahead of need, with their kind.
#[derive(Debug, Default)]
struct SocketReserve(Mutex<Vec<(SocketKind, Socket)>>);

impl SocketReserve {
    fn take(&self, kind: SocketKind) -> Option<Socket> {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let at = held.iter().position(|(k, _)| *k == kind)?;
        Some(held.swap_remove(at).1)
    }

    fn put(&self, sockets: impl IntoIterator<Item = (SocketKind, Socket)>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend(sockets);
    }
}

/// One place probes can run from.
#[derive(Debug)]
pub struct SourceNs {
    source: Source,
    worker: Option<NetnsWorker>,
    resolv_conf: Option<PathBuf>,
    reserve: SocketReserve,
}

impl SourceNs {
    /// The agent's own namespace (node or hostNetwork source).
    pub fn own(source: Source, resolv_conf: Option<PathBuf>) -> Self {
        Self { source, worker: None, resolv_conf, reserve: SocketReserve::default() }
    }

    /// Enters the namespace at `netns` with a parked thread; fails if it cannot be entered.
    pub fn enter(source: Source, netns: &Path, resolv_conf: Option<PathBuf>) -> Result<Self, SourceError> {
        let worker = NetnsWorker::start(netns)
            .map_err(|error| SourceError::Netns { source_name: source.to_string(), error })?;
        Ok(Self { source, worker: Some(worker), resolv_conf, reserve: SocketReserve::default() })
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The namespace path, or `None` for the agent's own namespace.
    pub fn netns_path(&self) -> Option<&Path> {
        self.worker.as_ref().map(NetnsWorker::path)
    }

    /// The source's own resolv.conf (as seen from the agent), if known.
    pub fn resolv_conf(&self) -> Option<&Path> {
        self.resolv_conf.as_deref()
    }

    /// A socket inside the source's namespace (cheap: one hop to the parked thread).
    pub fn socket(&self, domain: Domain, ty: Type, protocol: Option<Protocol>) -> io::Result<Socket> {
        match &self.worker {
            None => Socket::new(domain, ty, protocol),
            Some(w) => w.socket(domain, ty, protocol).map_err(io::Error::other),
        }
    }

    /// A fresh socket of this kind inside the source's namespace, for one probe: from the
    /// reserve, else one hop to the parked thread makes [`SOCKET_BATCH`] and keeps the rest
    /// (RAW sockets: one at a time).
    /// The outer error is the worker's; the inner one the kernel's refusal.
    pub async fn probe_socket(
        &self,
        domain: Domain,
        ty: Type,
        protocol: Protocol,
    ) -> Result<io::Result<Socket>, SourceError> {
        let kind = (domain, ty, protocol);
        if self.worker.is_none() {
            return Ok(Socket::new(domain, ty, Some(protocol)));
        }
        if let Some(socket) = self.reserve.take(kind) {
            return Ok(Ok(socket));
        }
        // A RAW socket gets a copy of every packet of its protocol from the moment it exists:
        // never kept in reserve.
        let batch = if ty == Type::RAW { 1 } else { SOCKET_BATCH };
        let made = self
            .run(move || {
                let mut made = Vec::with_capacity(batch);
                for _ in 0..batch {
                    match Socket::new(domain, ty, Some(protocol)) {
                        Ok(s) => made.push(s),
                        // The first refusal is the answer; later ones would say the same.
                        Err(e) if made.is_empty() => return Err(e),
                        Err(_) => break,
                    }
                }
                Ok(made)
            })
            .await?;
        Ok(made
            .map(|mut made| {
                let first = made.pop();
                self.reserve.put(made.into_iter().map(|s| (kind, s)));
                first.ok_or_else(|| io::Error::other("the namespace's thread made no socket"))
            })
            .and_then(|s| s))
    }

    /// Runs `f` inside the source's namespace and awaits its result without blocking the
    /// runtime. `f` may enter a tokio runtime `Handle` to create async resources there
    /// (netlink connections, ping clients): they keep the namespace they were created in.
    pub async fn run<T, F>(&self, f: F) -> Result<T, SourceError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match &self.worker {
            None => Ok(f()),
            Some(w) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                w.spawn(move || {
                    let _ = tx.send(f());
                })
                .map_err(|error| SourceError::Netns { source_name: self.source.to_string(), error })?;
                rx.await.map_err(|_| SourceError::Gone { source_name: self.source.to_string() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_hands_out_only_the_kind_asked_for() {
        let reserve = SocketReserve::default();
        let udp = (Domain::IPV4, Type::DGRAM, Protocol::UDP);
        let tcp = (Domain::IPV4, Type::STREAM, Protocol::TCP);
        let made = |k: SocketKind| (k, Socket::new(k.0, k.1, Some(k.2)).unwrap());
        reserve.put([made(udp), made(udp)]);
        assert!(reserve.take(tcp).is_none());
        let got = reserve.take(udp).unwrap();
        assert_eq!(got.r#type().unwrap(), Type::DGRAM);
        assert!(reserve.take(udp).is_some());
        assert!(reserve.take(udp).is_none(), "two made, two handed out");
    }
}
