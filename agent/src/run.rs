//! On-demand runs: the steps of a collector's [`RunPlan`] carried out inside the run's source
//! namespace — probes with the same code as the continuous plan, probes of the addresses a DNS
//! step answered (only those the plan allows), kube-proxy's NAT rules and the routes on the
//! source's node — each reported the moment it finishes, then the run's end. [`execute`] runs
//! one in-process; [`Runs`] is the agent's registry: at most [`MAX_RUNS`] at once, cancel by id.
//!
//! Steps are independent except a step probing DNS answers, which starts when its DNS step
//! ends; at most [`MAX_PARALLEL_STEPS`] run at once. Cancelling drops every step mid-probe
//! (their sockets close with them).

mod nat;
mod registry;
mod report;
mod routes;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use netdiag_model::NodeName;
use netdiag_model::plan::PlannedProbe;
use netdiag_model::probe::{ProbeKind, Source, Target};
use netdiag_model::result::ProbeResult;
use netdiag_model::run::{RunDone, RunId, RunProgress, RunRequest, RunStep, RunUpdate, StepStatus};
use netdiag_model::run_plan::{PlannedStep, RunPlan, RunPlanError, StepAction};
use netdiag_model::text::Text;
use netdiag_model::{HttpPath, Port};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info};

pub use self::registry::{MAX_RUNS, Runs};
use self::report::{StepReport, answers_report, cap_evidence, probe_report, split_answers};
use crate::sources::{SourceEntry, Sources};

/// At most this many steps of one run at once.
pub const MAX_PARALLEL_STEPS: usize = 16;
/// At most this many answers of one DNS step probed at once.
const MAX_PARALLEL_ANSWERS: usize = 8;

/// Why a run could not be carried out (not a network verdict).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("source {source_name} has no network namespace on {node}: the pod is gone or not started yet")]
    UnknownSource { source_name: String, node: NodeName },
    #[error(
        "source {source_name} is another node: this agent runs on {node}; send the run to the agent on \
         {other}"
    )]
    OtherNode { source_name: String, node: NodeName, other: NodeName },
    #[error("the run's plan is invalid; the collector and agent versions may disagree")]
    Plan(#[source] RunPlanError),
    #[error("the agent's source list is unusable (a thread panicked while holding it): restart the agent")]
    SourcesPoisoned,
    #[error("agent on {node} is busy: {running} runs in progress; try again")]
    Busy { node: NodeName, running: usize },
    #[error("run {run_id} is already in progress on {node}: wait for it or cancel it")]
    Duplicate { run_id: RunId, node: NodeName },
}

impl RunError {
    fn done(&self) -> RunDone {
        RunDone::Failed { error: Text::lossy(&netdiag_model::error_chain(self)) }
    }
}

/// Carries out `req` from this agent (on `node`), sending each step to `out` as it finishes and
/// then the run's end. A source without a namespace here ends the run with `RunDone::Failed`.
pub async fn execute(
    req: RunRequest,
    sources: Arc<RwLock<Sources>>,
    node: NodeName,
    out: mpsc::Sender<RunProgress>,
) {
    let run_id = req.run_id.clone();
    let done = run_steps(req, &sources, &node, &out).await;
    let _ = out.send(RunProgress { run_id, update: RunUpdate::Done(done) }).await;
}

/// What every step of one run shares.
#[derive(Debug)]
struct RunCtx {
    source: Source,
    entry: Arc<SourceEntry>,
    /// The agent's own node namespace (the source's node): NAT rules and node routes.
    node_entry: Option<Arc<SourceEntry>>,
    node: NodeName,
    timeout: Duration,
    plan: RunPlan,
}

impl RunCtx {
    fn new(req: RunRequest, sources: &RwLock<Sources>, node: &NodeName) -> Result<Self, RunError> {
        req.plan.check().map_err(RunError::Plan)?;
        let sources = sources.read().map_err(|_| RunError::SourcesPoisoned)?;
        let entry = sources.get(&req.source).ok_or_else(|| match &req.source {
            Source::Node(other) if other != node => RunError::OtherNode {
                source_name: req.source.to_string(),
                node: node.clone(),
                other: other.clone(),
            },
            _ => RunError::UnknownSource { source_name: req.source.to_string(), node: node.clone() },
        })?;
        let node_entry = sources.get(&Source::Node(node.clone()));
        Ok(Self {
            source: req.source,
            entry,
            node_entry,
            node: node.clone(),
            timeout: req.timeout.as_duration(),
            plan: req.plan,
        })
    }

    /// Runs `probe` from the run's source (whatever source the plan wrote in it).
    async fn probe(&self, probe: &PlannedProbe) -> ProbeResult {
        let probe = PlannedProbe { source: self.source.clone(), ..probe.clone() };
        crate::probe::run(&self.entry.ns, &self.entry.state, &probe, self.timeout).await
    }

    async fn probe_answers(
        &self,
        dns: Option<&ProbeResult>,
        resolve_step: u32,
        kind: ProbeKind,
        port: Option<Port>,
        http_path: Option<&HttpPath>,
    ) -> StepReport {
        let answers = dns.map(|r| r.answers.as_slice()).unwrap_or_default();
        let (allowed, refused) = split_answers(&self.plan, answers);
        let probes: Vec<PlannedProbe> = allowed
            .iter()
            .map(|ip| PlannedProbe {
                source: self.source.clone(),
                target: Target::Address { ip: *ip, port },
                kind,
                http_path: http_path.cloned(),
                every: netdiag_model::EveryRounds::ONE,
            })
            .collect();
        let permits = tokio::sync::Semaphore::new(MAX_PARALLEL_ANSWERS);
        let mut pending = Vec::with_capacity(probes.len());
        for p in &probes {
            let permits = &permits;
            pending.push(async move {
                let _permit = permits.acquire().await;
                self.probe(p).await
            });
        }
        let results = futures_util::future::join_all(pending).await;
        answers_report(allowed.into_iter().zip(results).collect(), &refused, resolve_step)
    }

    fn missing_node(&self) -> StepReport {
        StepReport::new(
            StepStatus::Failed,
            vec![format!("the agent has no source for its own node {}: restart the agent", self.node)],
        )
    }

    async fn report(&self, action: &StepAction, dns: Option<&ProbeResult>) -> StepReport {
        match action {
            StepAction::Probe { probe } => probe_report(self.probe(probe).await),
            StepAction::ProbeAnswers { resolve_step, kind, port, http_path } => {
                self.probe_answers(dns, *resolve_step, *kind, *port, http_path.as_ref()).await
            }
            StepAction::NatRules { service: _, vip, port, protocol, expected, node_port } => {
                let Some(node_entry) = &self.node_entry else { return self.missing_node() };
                let q = nat::NatQuery {
                    vip: *vip,
                    port: *port,
                    protocol: *protocol,
                    expected: expected.clone(),
                    node_port: *node_port,
                };
                nat::nat_step(&node_entry.ns, &self.node, &q).await
            }
            StepAction::Routes { destinations } => {
                let mut namespaces = Vec::new();
                match &self.source {
                    Source::Node(n) => namespaces.push((n.to_string(), &self.entry.ns)),
                    Source::Pod(p) => {
                        namespaces.push((p.to_string(), &self.entry.ns));
                        let Some(node_entry) = &self.node_entry else { return self.missing_node() };
                        namespaces.push((self.node.to_string(), &node_entry.ns));
                    }
                }
                routes::routes_step(&namespaces, destinations).await
            }
        }
    }
}

fn run_step_of(index: usize, step: &PlannedStep, report: StepReport, elapsed: Duration) -> RunStep {
    RunStep {
        index: u32::try_from(index).unwrap_or(u32::MAX),
        name: step.name.clone(),
        description: step.description.clone(),
        status: report.status,
        result: report.result,
        evidence: cap_evidence(&report.evidence),
        elapsed,
    }
}

async fn run_one(
    ctx: Arc<RunCtx>,
    index: usize,
    step: PlannedStep,
    dns: Option<Arc<ProbeResult>>,
) -> RunStep {
    let started = Instant::now();
    let report = ctx.report(&step.action, dns.as_deref()).await;
    debug!(step = index, name = %step.name, status = %report.status, "run step finished");
    run_step_of(index, &step, report, started.elapsed())
}

/// Runs every step, sending each as it finishes; returns how the run ended.
async fn run_steps(
    req: RunRequest,
    sources: &RwLock<Sources>,
    node: &NodeName,
    out: &mpsc::Sender<RunProgress>,
) -> RunDone {
    let run_id = req.run_id.clone();
    let ctx = match RunCtx::new(req, sources, node) {
        Ok(ctx) => Arc::new(ctx),
        Err(e) => return e.done(),
    };
    info!(run = %run_id, source = %ctx.source, steps = ctx.plan.steps.len(), "on-demand run started");
    // Steps probing DNS answers wait for their DNS step; every other step is ready now.
    let mut waiting: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut ready: VecDeque<(usize, Option<Arc<ProbeResult>>)> = VecDeque::new();
    for (i, step) in ctx.plan.steps.iter().enumerate() {
        match &step.action {
            StepAction::ProbeAnswers { resolve_step, .. } => {
                let r = usize::try_from(*resolve_step).unwrap_or(usize::MAX);
                waiting.entry(r).or_default().push(i);
            }
            _ => ready.push_back((i, None)),
        }
    }
    let mut tasks = JoinSet::new();
    let mut indices = HashMap::new();
    loop {
        while tasks.len() < MAX_PARALLEL_STEPS
            && let Some((i, dns)) = ready.pop_front()
        {
            let Some(step) = ctx.plan.steps.get(i).cloned() else { continue };
            let handle = tasks.spawn(run_one(ctx.clone(), i, step, dns));
            indices.insert(handle.id(), i);
        }
        let Some(joined) = tasks.join_next_with_id().await else { break };
        let (id, step) = match joined {
            Ok((id, step)) => (id, Some(step)),
            Err(e) => (e.id(), None),
        };
        let Some(index) = indices.remove(&id) else { continue };
        let step = match (step, ctx.plan.steps.get(index)) {
            (Some(step), _) => step,
            (None, Some(planned)) => {
                let report = StepReport::new(
                    StepStatus::Failed,
                    vec!["the step's task ended abnormally (a bug in the agent): see the agent's log".into()],
                );
                run_step_of(index, planned, report, Duration::ZERO)
            }
            (None, None) => continue,
        };
        let dns = step.result.as_deref().cloned().map(Arc::new);
        for dependent in waiting.remove(&index).unwrap_or_default() {
            ready.push_back((dependent, dns.clone()));
        }
        if out.send(RunProgress { run_id: run_id.clone(), update: RunUpdate::Step(step) }).await.is_err() {
            return RunDone::Failed { error: Text::lossy("the run's progress channel closed") };
        }
    }
    info!(run = %run_id, "on-demand run completed");
    RunDone::Completed
}

#[cfg(test)]
mod tests;
