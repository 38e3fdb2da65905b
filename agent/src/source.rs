//! A probe source: the agent's own namespace (the node, like a hostNetwork pod) or a pod's
//! namespace, entered by a thread parked there ([`netdiag_netns::NetnsWorker`]). Everything a
//! probe or inspection needs from a namespace — sockets, netlink connections, ping clients,
//! commands — is made through [`SourceNs`], never by calling `setns` here.

use std::io;
use std::path::{Path, PathBuf};

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

/// One place probes can run from.
#[derive(Debug)]
pub struct SourceNs {
    source: Source,
    worker: Option<NetnsWorker>,
    resolv_conf: Option<PathBuf>,
}

impl SourceNs {
    /// The agent's own namespace (node or hostNetwork source).
    pub fn own(source: Source, resolv_conf: Option<PathBuf>) -> Self {
        Self { source, worker: None, resolv_conf }
    }

    /// Enters the namespace at `netns` with a parked thread; fails if it cannot be entered.
    pub fn enter(source: Source, netns: &Path, resolv_conf: Option<PathBuf>) -> Result<Self, SourceError> {
        let worker = NetnsWorker::start(netns)
            .map_err(|error| SourceError::Netns { source_name: source.to_string(), error })?;
        Ok(Self { source, worker: Some(worker), resolv_conf })
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
