//! The agent session service (`netdiag.v1.AgentSession`): one bidirectional stream per agent.
//! Hello first; then result batches (acknowledged by sequence, duplicates after a reconnect
//! counted once), inspection reports and run progress (routed by run id to the run's caller,
//! see [`crate::runs::registry`]). A misbehaving agent is cut off with a
//! logged reason; the others never notice: nothing sent to an agent ever waits on it (a
//! session whose queue is full is cut), a hello must come within [`HELLO_WITHIN`], sessions are
//! capped, and what is remembered of past agent instances expires.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
use crate::quota::{BatchRate, QuotaReason, Quotas};
use crate::sink::Sink;

/// Largest message an agent may send (a full batch is far smaller).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Invalid messages tolerated from one session before it is cut off.
pub const MAX_STRIKES: u32 = 10;
/// Outbound messages queued per session (acks, plans, runs) before the session counts as stuck.
const OUTBOUND_QUEUE: usize = 256;
/// The first message of a session must arrive this soon.
pub const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// Agent sessions served at once, by default (far above any cluster's node count).
pub const DEFAULT_MAX_SESSIONS: usize = 20_000;
/// An agent instance not heard from this long is forgotten (its duplicate detection with it:
/// an instance id is new at every agent start).
pub const INSTANCE_TTL: Duration = Duration::from_secs(3600);

/// The queue of messages to one connected agent.
type Outbox = mpsc::Sender<Result<v1::CollectorMessage, Status>>;

/// A connected agent: its queue, and how to end its session from outside.
#[derive(Debug, Clone)]
struct SessionHandle {
    tx: Outbox,
    cut: Arc<tokio::sync::Notify>,
}

/// What the collector remembers of an agent instance across its reconnects.
#[derive(Debug, Clone)]
struct InstanceState {
    /// Highest batch sequence accepted from this instance.
    last_seq: Option<Seq>,
    seen: Instant,
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
    #[error("it does not read its stream: {OUTBOUND_QUEUE} messages queued for it")]
    NotReading,
    #[error("its stream failed: {0}")]
    StreamFailed(String),
}

/// The session service. Cheap to clone; every clone shares state.
#[derive(Clone)]
pub struct Ingest {
    sink: Arc<dyn Sink>,
    instances: Arc<Mutex<HashMap<(NodeName, InstanceId), InstanceState>>>,
    sessions: Arc<Mutex<HashMap<NodeName, SessionHandle>>>,
    max_sessions: usize,
    hello_within: Duration,
    shutdown: watch::Receiver<bool>,
    /// Pods and plans for agents without an inventory, sent after their hello.
    planner: Option<Arc<Planner>>,
    /// Each agent's client certificate must be valid for the node it says it is.
    node_identity: bool,
    /// Each agent's bearer token must prove the node it says it is.
    tokens: Option<crate::agent_token::TokenReviewer>,
    /// The batch rate each session is held to.
    quotas: Quotas,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

impl Ingest {
    /// `shutdown` turning true ends every session after its last acknowledgement went out.
    pub fn new(sink: Arc<dyn Sink>, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            sink,
            instances: Arc::default(),
            sessions: Arc::default(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            hello_within: HELLO_WITHIN,
            shutdown,
            planner: None,
            node_identity: false,
            tokens: None,
            quotas: Quotas::default(),
        }
    }

    /// Holds each session to `quotas`' batch rate ([`Quotas::default`] otherwise).
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// Refuses a hello whose node the session's client certificate is not valid for
    /// ([`crate::agents_tls::check_node_identity`]).
    pub fn with_node_identity(mut self, required: bool) -> Self {
        self.node_identity = required;
        self
    }

    /// Refuses a hello whose node the session's bearer token does not prove
    /// ([`crate::agent_token`]).
    pub fn with_tokens(mut self, tokens: Option<crate::agent_token::TokenReviewer>) -> Self {
        self.tokens = tokens;
        self
    }

    /// How soon a session's hello must come ([`HELLO_WITHIN`] by default).
    pub fn with_hello_within(mut self, within: Duration) -> Self {
        self.hello_within = within;
        self
    }

    /// At most `max` agent sessions at once; more are refused (`RESOURCE_EXHAUSTED`).
    pub fn with_max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max;
        self
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

    /// Queues a message to a connected agent without waiting; false when it is not connected.
    /// An agent whose queue is full does not read its stream: its session is cut (it
    /// reconnects and gets its plan again), so one stuck agent never holds up the planner,
    /// runs or cancels meant for others.
    pub async fn send_to(&self, node: &NodeName, msg: CollectorMessage) -> bool {
        let handle = self.sessions.lock().ok().and_then(|s| s.get(node).cloned());
        let Some(handle) = handle else { return false };
        match handle.tx.try_send(Ok(msg.into())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                handle.cut.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Whether `node`'s agent has a session up (what [`Self::send_to`] needs).
    pub fn is_connected(&self, node: &NodeName) -> bool {
        self.sessions.lock().is_ok_and(|s| s.get(node).is_some_and(|h| !h.tx.is_closed()))
    }

    /// Forgets agent instances not heard from for [`INSTANCE_TTL`].
    fn expire_instances(&self, now: Instant) {
        if let Ok(mut instances) = self.instances.lock() {
            instances.retain(|_, st| now.duration_since(st.seen) < INSTANCE_TTL);
        }
    }

    /// Accepts a batch unless this instance already delivered it; true when new.
    fn accept_seq(&self, node: &NodeName, instance: &InstanceId, seq: Seq) -> bool {
        let Ok(mut instances) = self.instances.lock() else { return false };
        let now = Instant::now();
        let state = instances
            .entry((node.clone(), instance.clone()))
            .or_insert(InstanceState { last_seq: None, seen: now });
        state.seen = now;
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
        self.expire_instances(Instant::now());
        let cut = Arc::new(tokio::sync::Notify::new());
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(node.clone(), SessionHandle { tx: tx.clone(), cut: cut.clone() });
        }
        for msg in self.planner.as_ref().map(|p| p.on_hello(&hello)).unwrap_or_default() {
            if tx.try_send(Ok(msg.into())).is_err() {
                cut.notify_one();
            }
        }
        let mut shutdown = self.shutdown.clone();
        let mut strikes = 0u32;
        let mut rate = BatchRate::new(&self.quotas, Instant::now());
        let reason: Option<CutOff> = loop {
            let msg = tokio::select! {
                () = stopped(&mut shutdown) => break None,
                () = cut.notified() => break Some(CutOff::NotReading),
                msg = inbound.next() => msg,
            };
            let msg = match msg {
                None => break None,
                // A peer that went away resets its stream (Cancelled); anything else — a message
                // that cannot be decoded or is too large, a connection that stopped answering
                // pings — is worth a line saying so.
                Some(Err(status)) if status.code() == tonic::Code::Cancelled => {
                    debug!(%node, %status, "agent stream ended");
                    break None;
                }
                Some(Err(status)) => break Some(CutOff::StreamFailed(status.message().to_owned())),
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
                    // Past the batch rate, the session is read later rather than refused:
                    // HTTP/2 flow control slows the agent down and nothing is lost.
                    let wait = rate.take(Instant::now());
                    if !wait.is_zero() {
                        self.sink.quota_exceeded(&node, QuotaReason::BatchRate);
                        tokio::select! {
                            () = stopped(&mut shutdown) => break None,
                            () = cut.notified() => break Some(CutOff::NotReading),
                            () = tokio::time::sleep(wait) => {}
                        }
                    }
                    let seq = batch.seq;
                    if self.accept_seq(&node, &instance, seq) {
                        // Results for another node's sources are dropped by the sink; an agent
                        // that keeps sending them (not one whose pod just moved) is cut.
                        let refused = self.sink.results(&node, batch);
                        if refused.foreign > 0 {
                            strikes += 1;
                            if strikes >= MAX_STRIKES {
                                let last = format!("{} results for sources on another node", refused.foreign);
                                break Some(CutOff::Strikes(strikes, last));
                            }
                        }
                    } else {
                        self.sink.duplicate_batch(&node);
                        debug!(%node, %seq, "duplicate batch acknowledged again");
                    }
                    // Acknowledge after the sink has it: a batch is never acked and lost. Never
                    // wait on the agent: one that does not read its acks is cut.
                    match tx.try_send(Ok(CollectorMessage::Ack(seq).into())) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => break Some(CutOff::NotReading),
                        Err(mpsc::error::TrySendError::Closed(_)) => break None,
                    }
                }
                AgentMessage::Inspection(report) => self.sink.inspection(&node, report),
                AgentMessage::RunProgress(progress) => self.sink.run_progress(&node, progress),
            }
        };
        if let Ok(mut s) = self.sessions.lock()
            && s.get(&node).is_some_and(|h| h.tx.same_channel(&tx))
        {
            s.remove(&node);
        }
        self.sink.agent_disconnected(&node);
        match reason {
            Some(cut) => {
                warn!(%node, reason = %cut, "agent cut off");
                let _ = tx.try_send(Err(Status::invalid_argument(cut.to_string())));
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
        let open = self.sessions.lock().map(|s| s.len()).unwrap_or(0);
        if open >= self.max_sessions {
            warn!(sessions = open, "agent refused: the session cap is reached");
            return Err(Status::resource_exhausted(format!(
                "the collector already serves {open} agent sessions, its cap; run more replicas or raise the cap"
            )));
        }
        let certs = request.peer_certs();
        let token =
            self.tokens.as_ref().map(|_| crate::agent_token::TokenReviewer::token(request.metadata()));
        let mut inbound = request.into_inner();
        let within = self.hello_within;
        let first = match tokio::time::timeout(within, inbound.next()).await {
            Ok(None) => return Err(Status::invalid_argument("the stream ended before hello")),
            Ok(Some(Err(status))) => {
                warn!(%status, "agent refused: its first message cannot be read");
                return Err(status);
            }
            Ok(Some(Ok(first))) => first,
            Err(_) => {
                warn!("agent refused: no hello within {within:?}");
                return Err(Status::deadline_exceeded(format!("no hello within {within:?}")));
            }
        };
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
        if self.node_identity {
            crate::agents_tls::check_node_identity(certs.as_deref().map(Vec::as_slice), &hello.node)?;
        }
        if let (Some(reviewer), Some(token)) = (&self.tokens, token) {
            let checked = match token {
                Ok(token) => reviewer.check(token, hello.node.as_str()).await,
                Err(e) => Err(e),
            };
            if let Err(e) = checked {
                warn!(node = %hello.node, reason = %e, "agent refused: its token does not prove its node");
                return Err(e.status());
            }
        }
        // Only nodes the inventory lists: names agents make up would each cost an agent entry
        // and metric series.
        if !self.sink.knows_node(&hello.node) {
            warn!(node = %hello.node, "agent refused: its node is not in the inventory");
            return Err(Status::permission_denied(format!(
                "node {} is not in the collector's inventory; the agent is taken once the inventory lists it \
                 (it retries by itself)",
                hello.node
            )));
        }
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

#[cfg(test)]
mod tests;
