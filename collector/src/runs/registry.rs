//! The runs in flight, keyed by run id: where an agent's `RunProgress` goes (only to the run it
//! names, and only from the node that run was sent to), the signal that a node's agent went
//! away, and the cap on concurrent runs. The collector's state owns one; [`RunInbox`] removes
//! its run when dropped, so a slot is never leaked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use netdiag_model::NodeName;
use netdiag_model::run::{RunId, RunProgress, RunUpdate};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

/// Updates queued per run before further ones are dropped (a run has at most 512 steps).
const RUN_QUEUE: usize = 1024;

/// What reaches a run's lifecycle from the agent side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunSignal {
    Update(RunUpdate),
    /// The session of the agent running it ended.
    AgentGone,
}

#[derive(Debug)]
struct Active {
    node: NodeName,
    deadline: Instant,
    tx: mpsc::Sender<RunSignal>,
}

/// Every run in flight.
#[derive(Debug, Default)]
pub struct RunRegistry {
    runs: Mutex<HashMap<RunId, Active>>,
}

/// The concurrency cap is reached; a slot frees at the latest after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtCapacity {
    pub active: usize,
    pub retry_after: Duration,
}

impl RunRegistry {
    fn lock(&self) -> MutexGuard<'_, HashMap<RunId, Active>> {
        self.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a run on `node` unless `cap` runs are in flight.
    pub fn register(
        self: &Arc<Self>,
        id: RunId,
        node: NodeName,
        deadline: Instant,
        cap: usize,
    ) -> Result<RunInbox, AtCapacity> {
        let mut runs = self.lock();
        if runs.len() >= cap {
            let now = Instant::now();
            let soonest = runs.values().map(|r| r.deadline).min().unwrap_or(now);
            let retry_after = soonest.saturating_duration_since(now).max(Duration::from_secs(1));
            return Err(AtCapacity { active: runs.len(), retry_after });
        }
        let (tx, rx) = mpsc::channel(RUN_QUEUE);
        runs.insert(id.clone(), Active { node, deadline, tx });
        Ok(RunInbox { id, rx, registry: self.clone() })
    }

    /// Routes progress from `node` to its run; progress for another node's run, or for a run
    /// no longer in flight (it timed out, its caller left), is dropped.
    pub fn deliver(&self, node: &NodeName, progress: RunProgress) {
        let runs = self.lock();
        match runs.get(&progress.run_id) {
            Some(run) if &run.node == node => {
                if run.tx.try_send(RunSignal::Update(progress.update)).is_err() {
                    debug!(%node, run = %progress.run_id, "run progress dropped: the run's queue is full or closed");
                }
            }
            Some(run) => {
                debug!(%node, owner = %run.node, run = %progress.run_id, "run progress from the wrong node dropped")
            }
            None => debug!(%node, run = %progress.run_id, "progress for a run not in flight dropped"),
        }
    }

    /// Tells every run on `node` that its agent's session ended.
    pub fn agent_gone(&self, node: &NodeName) {
        for run in self.lock().values().filter(|r| &r.node == node) {
            let _ = run.tx.try_send(RunSignal::AgentGone);
        }
    }

    /// Runs in flight.
    pub fn active(&self) -> usize {
        self.lock().len()
    }

    fn remove(&self, id: &RunId) {
        self.lock().remove(id);
    }
}

/// One run's receiving end; dropping it takes the run out of the registry.
#[derive(Debug)]
pub struct RunInbox {
    id: RunId,
    rx: mpsc::Receiver<RunSignal>,
    registry: Arc<RunRegistry>,
}

impl RunInbox {
    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// The next signal; None only if the registry dropped the run (it does not while the
    /// inbox lives).
    pub async fn recv(&mut self) -> Option<RunSignal> {
        self.rx.recv().await
    }
}

impl Drop for RunInbox {
    fn drop(&mut self) {
        self.registry.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use netdiag_model::run::RunDone;

    use super::*;

    fn node(n: &str) -> NodeName {
        NodeName::new(n).unwrap()
    }

    fn id(s: &str) -> RunId {
        RunId::new(s).unwrap()
    }

    fn done(run: &str) -> RunProgress {
        RunProgress { run_id: id(run), update: RunUpdate::Done(RunDone::Completed) }
    }

    #[tokio::test]
    async fn progress_reaches_only_its_run_from_its_node() {
        let reg = Arc::new(RunRegistry::default());
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut a = reg.register(id("a"), node("node-1"), deadline, 8).unwrap();
        let mut b = reg.register(id("b"), node("node-2"), deadline, 8).unwrap();
        reg.deliver(&node("node-2"), done("a")); // wrong node: dropped
        reg.deliver(&node("node-1"), done("zzz")); // unknown run: dropped
        reg.deliver(&node("node-1"), done("a"));
        assert_eq!(a.recv().await, Some(RunSignal::Update(RunUpdate::Done(RunDone::Completed))));
        reg.agent_gone(&node("node-2"));
        assert_eq!(b.recv().await, Some(RunSignal::AgentGone));
        assert!(a.rx.try_recv().is_err(), "node-1's run heard nothing else");
    }

    #[tokio::test]
    async fn the_cap_counts_live_inboxes_and_says_when_to_retry() {
        let reg = Arc::new(RunRegistry::default());
        let now = Instant::now();
        let first = reg.register(id("a"), node("node-1"), now + Duration::from_secs(30), 2).unwrap();
        let _second = reg.register(id("b"), node("node-1"), now + Duration::from_secs(10), 2).unwrap();
        let full = reg.register(id("c"), node("node-1"), now + Duration::from_secs(30), 2).unwrap_err();
        assert_eq!(full.active, 2);
        assert!(full.retry_after <= Duration::from_secs(10), "the soonest deadline: {full:?}");
        assert!(full.retry_after > Duration::from_secs(9), "{full:?}");
        drop(first);
        assert_eq!(reg.active(), 1);
        assert!(reg.register(id("c"), node("node-1"), now, 2).is_ok());
    }
}
