//! The runs an agent has in progress: at most [`MAX_RUNS`] at once, each on its own task so
//! the main loop never waits for one, each cancellable by id. Exactly one end is sent per run:
//! whoever removes the run from the registry (the run finishing, or a cancel) sends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use netdiag_model::NodeName;
use netdiag_model::run::{RunDone, RunId, RunProgress, RunRequest, RunUpdate};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::info;

use super::{RunError, run_steps};
use crate::sources::Sources;

/// At most this many runs at once per agent.
pub const MAX_RUNS: usize = 4;

/// The runs in progress on this agent.
#[derive(Debug, Clone)]
pub struct Runs {
    node: NodeName,
    max: usize,
    running: Arc<Mutex<HashMap<RunId, JoinHandle<()>>>>,
}

fn send_later(out: mpsc::Sender<RunProgress>, run_id: RunId, done: RunDone) {
    tokio::spawn(async move {
        let _ = out.send(RunProgress { run_id, update: RunUpdate::Done(done) }).await;
    });
}

impl Runs {
    /// The registry of the agent on `node`, with the default limit.
    pub fn new(node: NodeName) -> Self {
        Self::with_limit(node, MAX_RUNS)
    }

    pub fn with_limit(node: NodeName, max: usize) -> Self {
        Self { node, max, running: Arc::default() }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RunId, JoinHandle<()>>> {
        // The map stays consistent whatever panicked while holding it.
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many runs are in progress.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts `req` on its own task and returns at once. Over the limit, or with the id of a
    /// run in progress, the run ends at once with `RunDone::Failed` saying why.
    pub fn start(&self, req: RunRequest, sources: Arc<RwLock<Sources>>, out: mpsc::Sender<RunProgress>) {
        let run_id = req.run_id.clone();
        let mut running = self.lock();
        if running.len() >= self.max {
            let busy = RunError::Busy { node: self.node.clone(), running: running.len() };
            info!(run = %run_id, "{busy}");
            send_later(out, run_id, busy.done());
            return;
        }
        if running.contains_key(&run_id) {
            let dup = RunError::Duplicate { run_id: run_id.clone(), node: self.node.clone() };
            send_later(out, run_id, dup.done());
            return;
        }
        let runs = self.clone();
        let node = self.node.clone();
        let id = run_id.clone();
        // Holding the lock while spawning: the run cannot remove itself before it is listed.
        let task = tokio::spawn(async move {
            let done = run_steps(req, &sources, &node, &out).await;
            if runs.lock().remove(&id).is_some() {
                let _ = out.send(RunProgress { run_id: id, update: RunUpdate::Done(done) }).await;
            }
        });
        running.insert(run_id, task);
    }

    /// Cancels run `run_id`: its steps are dropped mid-probe, then `RunDone::Cancelled` is sent
    /// (after any step it had already sent). False when no such run is in progress.
    pub fn cancel(&self, run_id: &RunId, out: mpsc::Sender<RunProgress>) -> bool {
        let Some(task) = self.lock().remove(run_id) else { return false };
        task.abort();
        let run_id = run_id.clone();
        info!(run = %run_id, "on-demand run cancelled");
        tokio::spawn(async move {
            let _ = task.await;
            let _ = out.send(RunProgress { run_id, update: RunUpdate::Done(RunDone::Cancelled) }).await;
        });
        true
    }
}
