//! An on-demand run's whole lifecycle, for the HTTP API and the gRPC query service alike:
//!
//! 1. [`Dispatcher::admit`]: authenticate ([`super::auth`]), then the caller's rate limit
//!    ([`super::limiter`]); the [`Admitted`] it returns is what [`Dispatcher::start`] takes, so
//!    no run starts unchecked.
//! 2. [`Dispatcher::start`]: expand against the inventory ([`netdiag_diagnose::run::expand`]: 400/403/404), the
//!    source's agent must be connected and take runs (503), the concurrency cap (429), then the
//!    `RunRequest` goes down the agent's session under a fresh run id.
//! 3. A task per run turns the agent's `RunProgress` ([`super::registry`]) into events
//!    ([`ProbeRunEvent`]: steps as they finish, the verdict, done) and ends the run on the
//!    agent's `RunDone`, the hard time limit (cancel sent, `Failed`), the agent's session
//!    ending (`Failed`, saying so) or the caller going away (the event stream dropped: cancel
//!    sent). A guard sends the cancel however else the task ends.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::Stream;
use netdiag_model::NodeName;
use netdiag_model::finding::Finding;
use netdiag_model::run::{ProbeRunEvent, ProbeRunRequest, RunDone, RunId, RunStep, RunUpdate};
use netdiag_model::session::{Capability, CollectorMessage};
use netdiag_model::text::Text;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use super::auth::{AuthError, Credentials, authorize};
use super::config::{RunsConfig, human};
use super::limiter::RateLimiter;
use super::registry::{RunInbox, RunSignal};
use crate::ingest::Ingest;
use crate::state::{CollectorState, now};
use netdiag_diagnose::run::expand::{self, ExpandedRun, Refusal, Scope};
use netdiag_diagnose::run::verdict::verdict;

/// Who asks for a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The peer address; None when the transport did not say (treated as not loopback).
    pub addr: Option<IpAddr>,
    pub credentials: Credentials,
}

/// How a refusal is answered (HTTP status / gRPC code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// 400 / InvalidArgument.
    BadRequest,
    /// 401 / Unauthenticated.
    Unauthenticated,
    /// 403 / PermissionDenied.
    Forbidden,
    /// 404 / NotFound.
    NotFound,
    /// 429 / ResourceExhausted.
    TooManyRequests,
    /// 503 / Unavailable.
    Unavailable,
}

/// A run that was not started, and why (the message is for the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub kind: RefusalKind,
    pub message: String,
    /// For `TooManyRequests`: when trying again can succeed.
    pub retry_after: Option<Duration>,
}

impl Refused {
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        Refused { kind, message: message.into(), retry_after: None }
    }

    fn busy(message: String, retry_after: Duration) -> Self {
        Refused { kind: RefusalKind::TooManyRequests, message, retry_after: Some(retry_after) }
    }

    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)).map(|s| s.max(1))
    }
}

impl From<AuthError> for Refused {
    fn from(e: AuthError) -> Self {
        let kind = if e.is_unauthenticated() { RefusalKind::Unauthenticated } else { RefusalKind::Forbidden };
        Refused::new(kind, e.to_string())
    }
}

/// Proof that a caller passed authentication and its rate limit.
#[derive(Debug)]
pub struct Admitted {
    caller: Option<IpAddr>,
}

/// Starts runs. Cheap to clone; every clone shares the limits.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Arc<CollectorState>,
    ingest: Ingest,
    config: RunsConfig,
    limiter: Mutex<RateLimiter>,
    next: AtomicU64,
    /// Distinguishes this process's run ids from an earlier one's (agents may outlive it).
    epoch: i64,
}

impl Dispatcher {
    pub fn new(state: Arc<CollectorState>, ingest: Ingest, config: RunsConfig) -> Self {
        let limiter = Mutex::new(RateLimiter::new(config.per_minute));
        let epoch = now().get();
        Dispatcher {
            inner: Arc::new(Inner { state, ingest, config, limiter, next: AtomicU64::new(1), epoch }),
        }
    }

    pub fn config(&self) -> &RunsConfig {
        &self.inner.config
    }

    /// Authenticates `caller` and takes one run from its rate limit.
    pub fn admit(&self, caller: &Caller) -> Result<Admitted, Refused> {
        authorize(self.inner.config.token.as_ref(), caller.addr, &caller.credentials)?;
        let key = caller.addr.map(|ip| ip.to_canonical());
        let taken = match self.inner.limiter.lock() {
            Ok(mut l) => l.take(key, Instant::now()),
            Err(p) => p.into_inner().take(key, Instant::now()),
        };
        if let Err(wait) = taken {
            let who = key.map_or_else(|| "callers of unknown address".to_owned(), |ip| ip.to_string());
            return Err(Refused::busy(
                format!(
                    "too many on-demand runs from {who}: at most {} a minute (--runs-per-minute); retry in {}",
                    self.inner.config.per_minute.max(1),
                    human(Duration::from_secs(wait.as_secs() + 1))
                ),
                wait,
            ));
        }
        Ok(Admitted { caller: key })
    }

    /// Plans the run, sends it to the source's agent and returns its events as they come.
    pub async fn start(&self, admitted: Admitted, request: ProbeRunRequest) -> Result<RunStream, Refused> {
        let inner = &self.inner;
        let limit = inner.config.run_limit;
        let step_timeout = request.timeout.unwrap_or(inner.config.default_step_timeout);
        if step_timeout.as_duration() > limit {
            return Err(Refused::new(
                RefusalKind::BadRequest,
                format!(
                    "timeout_ms {} is longer than this collector's {} limit on a whole run (--run-timeout); \
                     ask for less",
                    step_timeout.as_millis(),
                    human(limit)
                ),
            ));
        }
        let expanded = inner.state.with_inventory(|inventory| {
            let scope = Scope::new(inventory, &inner.config.allow);
            expand::expand(inventory, &scope, &request).map_err(|e| {
                let kind = match e.refusal() {
                    Refusal::BadRequest => RefusalKind::BadRequest,
                    Refusal::NotFound => RefusalKind::NotFound,
                    Refusal::Forbidden => RefusalKind::Forbidden,
                };
                Refused::new(kind, e.to_string())
            })
        })?;
        let node = expanded.node.clone();
        self.check_agent(&node)?;

        let run_id = self.next_id();
        let deadline = Instant::now() + limit;
        let inbox = inner
            .state
            .run_registry()
            .register(run_id.clone(), node.clone(), deadline, inner.config.max_concurrent)
            .map_err(|full| {
                Refused::busy(
                    format!(
                        "{} on-demand runs are already in flight, the most this collector runs at once \
                         (--max-concurrent-runs); retry shortly",
                        full.active
                    ),
                    full.retry_after,
                )
            })?;
        let message = CollectorMessage::Run(expanded.to_agent(run_id.clone(), step_timeout));
        if !inner.ingest.send_to(&node, message).await {
            return Err(not_connected(&node));
        }
        let span = info_span!("run", run = %run_id, %node, from = %request.from, to = %request.to);
        span.in_scope(|| info!(caller = ?admitted.caller, "on-demand run started"));
        let (tx, rx) = mpsc::unbounded_channel();
        let guard = CancelGuard {
            ingest: inner.ingest.clone(),
            node: node.clone(),
            run_id: run_id.clone(),
            armed: true,
        };
        let lifecycle =
            Lifecycle { state: inner.state.clone(), run: Arc::new(expanded), limit, deadline, guard };
        tokio::spawn(lifecycle.drive(inbox, tx).instrument(span));
        Ok(RunStream { run_id, events: rx })
    }

    /// 503 unless the agent on `node` has a session and takes on-demand runs.
    fn check_agent(&self, node: &NodeName) -> Result<(), Refused> {
        if !self.inner.ingest.is_connected(node) {
            return Err(not_connected(node));
        }
        let agents = self.inner.state.agents(now());
        if let Some(agent) = agents.iter().find(|a| &a.node == node)
            && !agent.capabilities.contains(&Capability::OnDemand)
        {
            return Err(Refused::new(
                RefusalKind::Unavailable,
                format!(
                    "the agent on {node} (version {}) does not take on-demand runs: upgrade it to one \
                     that announces the on_demand capability (`netdiag agents` shows versions)",
                    agent.agent_version
                ),
            ));
        }
        Ok(())
    }

    fn next_id(&self) -> RunId {
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let text = format!("run-{:x}-{n}", self.inner.epoch);
        match RunId::new(text) {
            Ok(id) => id,
            // Hex digits, dashes and a counter always make a valid id.
            Err(e) => unreachable!("a generated run id is invalid: {e}"),
        }
    }
}

fn not_connected(node: &NodeName) -> Refused {
    Refused::new(
        RefusalKind::Unavailable,
        format!("the agent on {node} is not connected; check `netdiag agents`"),
    )
}

/// A started run's events: steps as they finish, then the verdict (if any), then done.
/// Dropping it before done cancels the run on the agent.
#[derive(Debug)]
pub struct RunStream {
    run_id: RunId,
    events: mpsc::UnboundedReceiver<ProbeRunEvent>,
}

impl RunStream {
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// The next event; None after done.
    pub async fn next(&mut self) -> Option<ProbeRunEvent> {
        self.events.recv().await
    }

    pub fn into_stream(self) -> impl Stream<Item = ProbeRunEvent> + Send + 'static {
        tokio_stream::wrappers::UnboundedReceiverStream::new(self.events)
    }
}

/// A run's events gathered into its outcome (for answers that come all at once: the HTTP API,
/// `netdiag probe -o json`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunRecord {
    /// In the order they finished.
    pub steps: Vec<RunStep>,
    pub verdict: Option<Finding>,
    /// What NetworkPolicy says of the path, when a policy isolates either end.
    pub policy: Option<Text<{ netdiag_model::limits::MAX_DETAIL_BYTES }>>,
    /// None until the run is done.
    pub done: Option<RunDone>,
}

impl RunRecord {
    pub fn apply(&mut self, event: ProbeRunEvent) {
        match event {
            ProbeRunEvent::Policy(p) => self.policy = Some(p),
            ProbeRunEvent::Step(s) => self.steps.push(s),
            ProbeRunEvent::Verdict(f) => self.verdict = Some(f),
            ProbeRunEvent::Done(d) => self.done = Some(d),
        }
    }

    /// Reads `stream` to its end.
    pub async fn collect(stream: &mut RunStream) -> Self {
        let mut record = RunRecord::default();
        while let Some(event) = stream.next().await {
            record.apply(event);
        }
        record
    }

    /// How the run ended; a stream that stopped without saying counts as failed.
    pub fn done_or_failed(&self) -> RunDone {
        self.done.clone().unwrap_or_else(|| RunDone::Failed {
            error: Text::lossy("the run ended without a result; see the collector's log"),
        })
    }
}

/// Sends `Cancel` to the agent when dropped armed (the task ended some unplanned way).
#[derive(Debug)]
struct CancelGuard {
    ingest: Ingest,
    node: NodeName,
    run_id: RunId,
    armed: bool,
}

impl CancelGuard {
    /// The agent finished (or is gone): nothing to cancel.
    fn disarm(&mut self) {
        self.armed = false;
    }

    async fn cancel(&mut self) {
        self.armed = false;
        if !self.ingest.send_to(&self.node, CollectorMessage::Cancel(self.run_id.clone())).await {
            debug!("cancel not sent: the agent is not connected");
        }
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (ingest, node, run_id) = (self.ingest.clone(), self.node.clone(), self.run_id.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = ingest.send_to(&node, CollectorMessage::Cancel(run_id)).await;
            });
        }
    }
}

struct Lifecycle {
    state: Arc<CollectorState>,
    run: Arc<ExpandedRun>,
    limit: Duration,
    deadline: Instant,
    guard: CancelGuard,
}

/// How the caller side of a run ended, for the log.
enum End {
    Done(RunDone),
    CallerLeft,
}

impl Lifecycle {
    async fn drive(mut self, mut inbox: RunInbox, events: mpsc::UnboundedSender<ProbeRunEvent>) {
        let started = Instant::now();
        let planned = self.run.plan.steps.len();
        if let Some(p) = &self.run.policy {
            let _ = events.send(ProbeRunEvent::Policy(Text::lossy(&p.summary)));
        }
        let mut steps: Vec<RunStep> = Vec::new();
        let mut seen = BTreeSet::new();
        let end = loop {
            let signal = tokio::select! {
                () = events.closed() => {
                    self.guard.cancel().await;
                    break End::CallerLeft;
                }
                () = tokio::time::sleep_until(self.deadline) => {
                    self.guard.cancel().await;
                    let error = format!(
                        "run exceeded the {} limit; the agent on {} was told to cancel it (steps that \
                         finished are shown; raise the collector's --run-timeout or ask for a shorter \
                         timeout_ms)",
                        human(self.limit),
                        self.guard.node
                    );
                    break End::Done(RunDone::Failed { error: Text::lossy(&error) });
                }
                signal = inbox.recv() => signal,
            };
            match signal {
                Some(RunSignal::Update(RunUpdate::Step(step))) => {
                    let index = step.index;
                    if usize::try_from(index).is_ok_and(|i| i < planned) && seen.insert(index) {
                        steps.push(step.clone());
                        if events.send(ProbeRunEvent::Step(step)).is_err() {
                            self.guard.cancel().await;
                            break End::CallerLeft;
                        }
                    } else {
                        debug!(index, planned, "a step the plan does not have, or a repeat, dropped");
                    }
                }
                Some(RunSignal::Update(RunUpdate::Done(done))) => {
                    self.guard.disarm();
                    if done == RunDone::Completed
                        && let Some(finding) = self.verdict(&steps).await
                    {
                        let _ = events.send(ProbeRunEvent::Verdict(finding));
                    }
                    break End::Done(done);
                }
                Some(RunSignal::AgentGone) | None => {
                    self.guard.disarm();
                    let error = format!(
                        "the agent on {} disconnected during the run; retry once `netdiag agents` shows it \
                         connected",
                        self.guard.node
                    );
                    break End::Done(RunDone::Failed { error: Text::lossy(&error) });
                }
            }
        };
        let elapsed_ms = started.elapsed().as_millis();
        match end {
            End::Done(done) => {
                match &done {
                    RunDone::Completed => info!(steps = steps.len(), elapsed_ms, "on-demand run completed"),
                    RunDone::Cancelled => info!(elapsed_ms, "on-demand run cancelled by the agent"),
                    RunDone::Failed { error } => warn!(%error, elapsed_ms, "on-demand run failed"),
                }
                let _ = events.send(ProbeRunEvent::Done(done));
            }
            End::CallerLeft => info!(elapsed_ms, "the caller left; on-demand run cancelled"),
        }
        drop(inbox);
    }

    /// The verdict over the steps and the continuous diagnosis (which walks the matrix: on the
    /// blocking pool).
    async fn verdict(&self, steps: &[RunStep]) -> Option<Finding> {
        let (state, run, steps) = (self.state.clone(), self.run.clone(), steps.to_vec());
        let found = tokio::task::spawn_blocking(move || {
            let continuous = state.diagnosis(now()).findings;
            verdict(&run, &steps, &continuous)
        })
        .await;
        match found {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "the verdict could not be computed");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
