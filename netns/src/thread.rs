//! Dedicated OS threads that enter a namespace: one-shot ([`run_in`]) and long-lived
//! ([`NetnsWorker`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use nix::sched::{CloneFlags, setns};
use socket2::{Domain, Protocol, Socket, Type};

use crate::NetnsError;

fn enter(path: &Path) -> Result<(), NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open { path: path.into(), source })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter { path: path.into(), source })
}

fn thread_name(path: &Path) -> String {
    let base = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    // Linux thread names are 15 bytes; keep the distinctive tail of the namespace name.
    let tail: String = base.chars().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect();
    format!("ns:{tail}")
}

/// Moves the calling thread into the namespace at `path`; threads it creates afterwards start
/// there too. For a thread dedicated to that namespace — a binary's `main` before it starts
/// any other thread, or a thread that then builds a whole runtime (an agent living inside a
/// lab node, as a hostNetwork DaemonSet pod lives in its node's namespace) — never a tokio
/// worker.
pub fn enter_current_thread(path: &Path) -> Result<(), NetnsError> {
    enter(path)
}

/// Runs `f` on a new OS thread that has entered the network namespace at `path`, and waits for
/// it. The thread ends with `f`, so the namespace is never held afterwards.
pub fn run_in<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let owned: PathBuf = path.into();
    let handle = std::thread::Builder::new()
        .name(thread_name(path))
        .spawn(move || -> Result<T, NetnsError> {
            enter(&owned)?;
            Ok(f())
        })
        .map_err(|source| NetnsError::Spawn { path: path.into(), source })?;
    handle.join().map_err(|_| NetnsError::Panicked { path: path.into() })?
}

/// Creates a socket inside the namespace at `path`. The socket keeps that namespace for its
/// whole life, whichever thread uses it later.
pub fn socket_in(
    path: &Path,
    domain: Domain,
    ty: Type,
    protocol: Option<Protocol>,
) -> Result<Socket, NetnsError> {
    let owned: PathBuf = path.into();
    run_in(path, move || Socket::new(domain, ty, protocol))?
        .map_err(|source| NetnsError::Socket { path: owned, source })
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread parked inside one network namespace that runs the closures it is given, one at a
/// time. Dropping the worker stops the thread and releases the namespace.
#[derive(Debug)]
pub struct NetnsWorker {
    path: PathBuf,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl NetnsWorker {
    /// Starts the thread and enters the namespace; fails if the namespace cannot be entered.
    pub fn start(path: &Path) -> Result<Self, NetnsError> {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), NetnsError>>(1);
        let owned: PathBuf = path.into();
        let thread = std::thread::Builder::new()
            .name(thread_name(path))
            .spawn(move || {
                let entered = enter(&owned);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    for job in jobs_rx {
                        job();
                    }
                }
            })
            .map_err(|source| NetnsError::Spawn { path: path.into(), source })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { path: path.into(), jobs: Some(jobs_tx), thread: Some(thread) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(NetnsError::Panicked { path: path.into() })
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` inside the namespace and waits for its result.
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| NetnsError::WorkerGone { path: self.path.clone() })?
            .send(job)
            .map_err(|_| NetnsError::WorkerGone { path: self.path.clone() })?;
        rx.recv().map_err(|_| NetnsError::Panicked { path: self.path.clone() })
    }

    /// Queues `f` to run inside the namespace and returns at once; `f` reports back through
    /// whatever channel it captures (async callers use a oneshot).
    pub fn spawn<F>(&self, f: F) -> Result<(), NetnsError>
    where
        F: FnOnce() + Send + 'static,
    {
        self.jobs
            .as_ref()
            .ok_or_else(|| NetnsError::WorkerGone { path: self.path.clone() })?
            .send(Box::new(f))
            .map_err(|_| NetnsError::WorkerGone { path: self.path.clone() })
    }

    /// Creates a socket inside the worker's namespace.
    pub fn socket(&self, domain: Domain, ty: Type, protocol: Option<Protocol>) -> Result<Socket, NetnsError> {
        self.run(move || Socket::new(domain, ty, protocol))?
            .map_err(|source| NetnsError::Socket { path: self.path.clone(), source })
    }
}

impl Drop for NetnsWorker {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
