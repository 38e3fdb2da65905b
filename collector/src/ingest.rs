//! The agent session service (`netdiag.v1.AgentSession`): one bidirectional stream per agent.
//! Hello first; then result batches (acknowledged by sequence, duplicates after a reconnect
//! counted once), inspection reports and run progress (routed by run id to the run's caller,
//! see [`crate::runs::registry`]). A misbehaving agent is cut off with a
//! logged reason; the others never notice.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures_util::Stream;
use netdiag_model::NodeName;
use netdiag_model::result::Seq;
use netdiag_model::session::{AgentMessage, CollectorMessage, Hello, InstanceId};
use netdiag_proto::v1;
use netdiag_proto::v1::agent_session_server::{AgentSession, AgentSessionServer};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use crate::plans::Planner;
use crate::sink::Sink;

/// Largest message an agent may send (a full batch is far smaller).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Invalid messages tolerated from one session before it is cut off.
pub const MAX_STRIKES: u32 = 10;
/// Outbound messages queued per session (acks, plans, runs) before the session counts as stuck.
const OUTBOUND_QUEUE: usize = 256;

/// The queue of messages to one connected agent.
type Outbox = mpsc::Sender<Result<v1::CollectorMessage, Status>>;

/// What the collector remembers of an agent instance across its reconnects.
#[derive(Debug, Clone, Default)]
struct InstanceState {
    /// Highest batch sequence accepted from this instance.
    last_seq: Option<Seq>,
}

/// Why a session was ended by the collector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CutOff {
    #[error("the first message must be hello, got {0}")]
    NoHello(&'static str),
    #[error("too many invalid messages ({0}); last: {1}")]
    Strikes(u32, String),
    #[error("a second hello on the same session")]
    SecondHello,
}

/// The session service. Cheap to clone; every clone shares state.
#[derive(Clone)]
pub struct Ingest {
    sink: Arc<dyn Sink>,
    instances: Arc<Mutex<HashMap<(NodeName, InstanceId), InstanceState>>>,
    sessions: Arc<Mutex<HashMap<NodeName, Outbox>>>,
    shutdown: watch::Receiver<bool>,
    /// Pods and plans for agents without an inventory, sent after their hello.
    planner: Option<Arc<Planner>>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

impl Ingest {
    /// `shutdown` turning true ends every session after its last acknowledgement went out.
    pub fn new(sink: Arc<dyn Sink>, shutdown: watch::Receiver<bool>) -> Self {
        Self { sink, instances: Arc::default(), sessions: Arc::default(), shutdown, planner: None }
    }

    /// Sends `planner`'s pods and plan to every agent that asks for them in its hello.
    pub fn with_planner(mut self, planner: Arc<Planner>) -> Self {
        self.planner = Some(planner);
        self
    }

    /// The tonic service with the message size limit applied.
    pub fn into_service(self) -> AgentSessionServer<Self> {
        AgentSessionServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Sends a message to a connected agent; false when it is not connected.
    pub async fn send_to(&self, node: &NodeName, msg: CollectorMessage) -> bool {
        let tx = self.sessions.lock().ok().and_then(|s| s.get(node).cloned());
        match tx {
            Some(tx) => tx.send(Ok(msg.into())).await.is_ok(),
            None => false,
        }
    }

    /// Whether `node`'s agent has a session up (what [`Self::send_to`] needs).
    pub fn is_connected(&self, node: &NodeName) -> bool {
        self.sessions.lock().is_ok_and(|s| s.get(node).is_some_and(|tx| !tx.is_closed()))
    }

    /// Accepts a batch unless this instance already delivered it; true when new.
    fn accept_seq(&self, node: &NodeName, instance: &InstanceId, seq: Seq) -> bool {
        let Ok(mut instances) = self.instances.lock() else { return false };
        let state = instances.entry((node.clone(), instance.clone())).or_default();
        if state.last_seq.is_some_and(|last| seq <= last) {
            return false;
        }
        state.last_seq = Some(seq);
        true
    }

    async fn run_session(
        self,
        hello: Hello,
        mut inbound: Streaming<v1::AgentMessage>,
        tx: mpsc::Sender<Result<v1::CollectorMessage, Status>>,
    ) {
        let node = hello.node.clone();
        let instance = hello.instance_id.clone();
        info!(%node, %instance, version = %hello.agent_version, pods = hello.pods.len(), "agent connected");
        self.sink.agent_connected(&hello);
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(node.clone(), tx.clone());
        }
        for msg in self.planner.as_ref().map(|p| p.on_hello(&hello)).unwrap_or_default() {
            let _ = tx.send(Ok(msg.into())).await;
        }
        let mut shutdown = self.shutdown.clone();
        let mut strikes = 0u32;
        let reason: Option<CutOff> = loop {
            let msg = tokio::select! {
                () = stopped(&mut shutdown) => break None,
                msg = inbound.next() => msg,
            };
            let msg = match msg {
                None => break None,
                Some(Err(status)) => {
                    debug!(%node, %status, "agent stream ended");
                    break None;
                }
                Some(Ok(m)) => m,
            };
            let parsed = match AgentMessage::try_from(msg) {
                Ok(m) => m,
                Err(e) => {
                    strikes += 1;
                    self.sink.invalid_message(&node);
                    warn!(%node, error = %e, strikes, "invalid message from agent");
                    if strikes >= MAX_STRIKES {
                        break Some(CutOff::Strikes(strikes, e.to_string()));
                    }
                    continue;
                }
            };
            match parsed {
                AgentMessage::Hello(_) => break Some(CutOff::SecondHello),
                AgentMessage::Results(batch) => {
                    let seq = batch.seq;
                    if self.accept_seq(&node, &instance, seq) {
                        self.sink.results(&node, batch);
                    } else {
                        self.sink.duplicate_batch(&node);
                        debug!(%node, %seq, "duplicate batch acknowledged again");
                    }
                    // Acknowledge after the sink has it: a batch is never acked and lost.
                    if tx.send(Ok(CollectorMessage::Ack(seq).into())).await.is_err() {
                        break None;
                    }
                }
                AgentMessage::Inspection(report) => self.sink.inspection(&node, report),
                AgentMessage::RunProgress(progress) => self.sink.run_progress(&node, progress),
            }
        };
        if let Ok(mut s) = self.sessions.lock()
            && s.get(&node).is_some_and(|t| t.same_channel(&tx))
        {
            s.remove(&node);
        }
        self.sink.agent_disconnected(&node);
        match reason {
            Some(cut) => {
                warn!(%node, reason = %cut, "agent cut off");
                let _ = tx.send(Err(Status::invalid_argument(cut.to_string()))).await;
            }
            None => info!(%node, "agent session ended"),
        }
    }
}

/// Resolves once `shutdown` turns true (without holding the non-`Send` guard).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<v1::CollectorMessage, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AgentSession for Ingest {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("the stream ended before hello"))??;
        let hello = match AgentMessage::try_from(first) {
            Ok(AgentMessage::Hello(h)) => h,
            Ok(other) => {
                let kind = match other {
                    AgentMessage::Results(_) => "results",
                    AgentMessage::Inspection(_) => "inspection",
                    AgentMessage::RunProgress(_) => "run progress",
                    AgentMessage::Hello(_) => "hello",
                };
                warn!(reason = %CutOff::NoHello(kind), "agent refused");
                return Err(Status::invalid_argument(CutOff::NoHello(kind).to_string()));
            }
            Err(e) => {
                warn!(error = %e, "agent refused: invalid hello");
                return Err(Status::invalid_argument(format!("invalid hello: {e}")));
            }
        };
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        tokio::spawn(self.clone().run_session(hello, inbound, tx));
        let mut response: Response<SessionStream> = Response::new(Box::pin(ReceiverStream::new(rx)));
        // Agents send result batches in the tabled form only to a collector that says it reads
        // it (both forms are accepted regardless).
        if let Ok(accepts) = MetadataValue::try_from(netdiag_proto::ACCEPTS_RESULT_TABLES) {
            response.metadata_mut().insert(netdiag_proto::ACCEPTS_HEADER, accepts);
        }
        Ok(response)
    }
}
