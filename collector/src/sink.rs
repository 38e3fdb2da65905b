//! Where ingested agent data goes. The session service hands every accepted message to a
//! [`Sink`]; the matrix is one, [`Recorder`] (everything kept, for tests and dumps) another.

use std::collections::BTreeMap;
use std::sync::Mutex;

use netdiag_model::NodeName;
use netdiag_model::inspect::InspectionReport;
use netdiag_model::result::ResultBatch;
use netdiag_model::run::RunProgress;
use netdiag_model::session::Hello;

use crate::quota::Refused;

/// Receives what agents send, after validation and de-duplication.
pub trait Sink: Send + Sync + 'static {
    fn agent_connected(&self, hello: &Hello);
    fn agent_disconnected(&self, node: &NodeName);
    /// A batch never seen before from this agent instance; what the agent's quotas refused of
    /// it ([`crate::quota`]).
    fn results(&self, node: &NodeName, batch: ResultBatch) -> Refused;
    fn inspection(&self, node: &NodeName, report: InspectionReport);
    fn run_progress(&self, node: &NodeName, progress: RunProgress);
    /// A batch resent after a reconnect that was already accepted.
    fn duplicate_batch(&self, _node: &NodeName) {}
    /// A message that failed validation.
    fn invalid_message(&self, _node: &NodeName) {}
    /// Whether a session may say it is `node`'s agent (the collector's inventory lists it).
    fn knows_node(&self, _node: &NodeName) -> bool {
        true
    }
    /// `node`'s agent went past one of its quotas (the session service sees the batch rate).
    fn quota_exceeded(&self, _node: &NodeName, _reason: crate::quota::QuotaReason) {}
}

/// Per-agent record of everything received.
#[derive(Debug, Default, Clone)]
pub struct AgentRecord {
    pub hellos: Vec<Hello>,
    pub connected: bool,
    pub batches: Vec<ResultBatch>,
    pub inspections: Vec<InspectionReport>,
    pub run_progress: Vec<RunProgress>,
    pub duplicates: u64,
    pub invalid: u64,
}

/// A sink that keeps everything, per node.
#[derive(Debug, Default)]
pub struct Recorder {
    agents: Mutex<BTreeMap<NodeName, AgentRecord>>,
}

impl Recorder {
    pub fn snapshot(&self) -> BTreeMap<NodeName, AgentRecord> {
        self.agents.lock().map(|a| a.clone()).unwrap_or_default()
    }

    fn with(&self, node: &NodeName, f: impl FnOnce(&mut AgentRecord)) {
        if let Ok(mut agents) = self.agents.lock() {
            f(agents.entry(node.clone()).or_default());
        }
    }
}

impl Sink for Recorder {
    fn agent_connected(&self, hello: &Hello) {
        self.with(&hello.node, |r| {
            r.hellos.push(hello.clone());
            r.connected = true;
        });
    }
    fn agent_disconnected(&self, node: &NodeName) {
        self.with(node, |r| r.connected = false);
    }
    fn results(&self, node: &NodeName, batch: ResultBatch) -> Refused {
        self.with(node, |r| r.batches.push(batch));
        Refused::default()
    }
    fn inspection(&self, node: &NodeName, report: InspectionReport) {
        self.with(node, |r| r.inspections.push(report));
    }
    fn run_progress(&self, node: &NodeName, progress: RunProgress) {
        self.with(node, |r| r.run_progress.push(progress));
    }
    fn duplicate_batch(&self, node: &NodeName) {
        self.with(node, |r| r.duplicates += 1);
    }
    fn invalid_message(&self, node: &NodeName) {
        self.with(node, |r| r.invalid += 1);
    }
}
