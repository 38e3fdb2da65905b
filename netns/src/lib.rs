//! The one place netdiag enters network namespaces.
//!
//! `setns(2)` moves only the calling thread, so every entry happens on a dedicated OS thread that
//! is never a tokio worker: [`run_in`] runs one closure on a short-lived thread inside a
//! namespace, [`NetnsWorker`] keeps a thread parked inside one for repeated work. Sockets created
//! there stay bound to that namespace and can be used from any thread or runtime afterwards
//! ([`socket_in`]); [`socket_netns_cookie`] proves which namespace a socket lives in.

mod identity;
mod thread;

pub use identity::{NetnsId, current_netns_id, netns_id, socket_netns_cookie};
pub use thread::{NetnsWorker, enter_current_thread, run_in, socket_in};

use std::path::PathBuf;

/// Why work inside a namespace could not run.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path} (is the pod gone, or are we not root?)")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {path} (needs CAP_SYS_ADMIN)")]
    Enter {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot start a thread for network namespace {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the thread working in network namespace {path} panicked")]
    Panicked { path: PathBuf },
    #[error("the worker for network namespace {path} has stopped")]
    WorkerGone { path: PathBuf },
    #[error("cannot create a socket in network namespace {path}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
