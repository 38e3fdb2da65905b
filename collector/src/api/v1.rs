//! The `/api/v1` JSON types: the shapes users' scripts rely on (DESIGN.md, "Collector API
//! (contract)"). They are their own structs and enums, converted from the domain types in one
//! place (the `From` impls here), so a change to the model never changes the wire by accident:
//! a new domain variant fails to compile here until someone decides its v1 spelling.
//!
//! Conventions: times are Unix milliseconds in fields ending `_unix_ms`; round-trip times are
//! milliseconds (microsecond precision) in fields ending `_ms`; a value that does not exist is
//! `null`, never a magic number; every field of a successful answer is always present, so a
//! script can rely on the shape. Fields may be added (the contract is extended, never changed).

use std::time::Duration;

use netdiag_model::agents::AgentInfo;
use netdiag_model::finding::{Culprit as ModelCulprit, CulpritKind, Diagnosis, Finding as ModelFinding};
use netdiag_model::matrix::{CellStatus, MatrixCell as ModelCell, MatrixLevel, MatrixSnapshot};
use netdiag_model::probe::ProbeKind;
use netdiag_model::result::ProbeResult;
use netdiag_model::run::{ProbeRunRequest, RunDone, RunId, RunStep, StepStatus as ModelStepStatus};
use netdiag_model::{Severity as ModelSeverity, UnixMillis};
use serde::{Deserialize, Serialize};

/// `level=pod|node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Pod,
    Node,
}

impl From<MatrixLevel> for Level {
    fn from(l: MatrixLevel) -> Self {
        match l {
            MatrixLevel::Pod => Level::Pod,
            MatrixLevel::Node => Level::Node,
        }
    }
}

/// A probe kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Icmp,
    Tcp,
    Dns,
    Http,
    Mtu,
}

impl From<ProbeKind> for Kind {
    fn from(k: ProbeKind) -> Self {
        match k {
            ProbeKind::Icmp => Kind::Icmp,
            ProbeKind::Tcp => Kind::Tcp,
            ProbeKind::Dns => Kind::Dns,
            ProbeKind::Http => Kind::Http,
            ProbeKind::Mtu => Kind::Mtu,
        }
    }
}

impl From<Kind> for ProbeKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Icmp => ProbeKind::Icmp,
            Kind::Tcp => ProbeKind::Tcp,
            Kind::Dns => ProbeKind::Dns,
            Kind::Http => ProbeKind::Http,
            Kind::Mtu => ProbeKind::Mtu,
        }
    }
}

/// The `kind` a matrix was asked for: one kind, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindFilter {
    All,
    Icmp,
    Tcp,
    Dns,
    Http,
    Mtu,
}

impl From<Option<ProbeKind>> for KindFilter {
    fn from(k: Option<ProbeKind>) -> Self {
        match k.map(Kind::from) {
            None => KindFilter::All,
            Some(Kind::Icmp) => KindFilter::Icmp,
            Some(Kind::Tcp) => KindFilter::Tcp,
            Some(Kind::Dns) => KindFilter::Dns,
            Some(Kind::Http) => KindFilter::Http,
            Some(Kind::Mtu) => KindFilter::Mtu,
        }
    }
}

/// A cell's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Degraded,
    Failed,
    Unknown,
}

impl From<CellStatus> for Status {
    fn from(s: CellStatus) -> Self {
        match s {
            CellStatus::Ok => Status::Ok,
            CellStatus::Degraded => Status::Degraded,
            CellStatus::Failed => Status::Failed,
            CellStatus::Unknown => Status::Unknown,
        }
    }
}

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    // Below 2^53 µs (285 years) the conversion is exact.
    d.as_micros() as f64 / 1000.0
}

/// One source→destination cell for one probe kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixCell {
    /// A pod (`<ns>/<name>`) or `node/<name>` at the pod level; a node name at the node level.
    pub source: String,
    /// What was probed (see `collector/src/matrix/key.rs` for every label's shape).
    pub destination: String,
    pub kind: Kind,
    pub status: Status,
    /// Lost packets over packets sent in the window, 0.0 to 1.0.
    pub loss_ratio: f64,
    /// `null` without RTT samples in the window.
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p99_ms: Option<f64>,
    /// The latest error in the window; `null` when there was none.
    pub last_error: Option<String>,
    /// Results in the window.
    pub samples: u64,
    /// The latest result's time; `null` when the cell never had one.
    pub last_update_unix_ms: Option<i64>,
    /// The `key` of the finding that explains this cell, for every failed or degraded
    /// pod-level cell (every one is claimed by exactly one finding); `null` otherwise, at the
    /// node level, and where the diagnosis was not at hand (the CLI's gRPC path).
    #[serde(default)]
    pub claimed_by: Option<String>,
    /// For a failed or degraded pod-level cell NetworkPolicy keeps shut, as intended (no
    /// finding claims it): the policy verdict in one sentence. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_by_policy: Option<String>,
}

impl From<ModelCell> for MatrixCell {
    fn from(c: ModelCell) -> Self {
        MatrixCell {
            source: c.source.into_string(),
            destination: c.destination.into_string(),
            kind: c.kind.into(),
            status: c.status.into(),
            loss_ratio: c.loss_ratio.get(),
            rtt_p50_ms: c.rtt_p50.map(millis),
            rtt_p99_ms: c.rtt_p99.map(millis),
            last_error: (!c.last_error.is_empty()).then(|| c.last_error.into_string()),
            samples: c.samples,
            last_update_unix_ms: c.last_update.map(UnixMillis::get),
            claimed_by: None,
            denied_by_policy: None,
        }
    }
}

/// `GET /api/v1/matrix`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixResponse {
    /// The level and kind the cells are for (the query, with its defaults filled in).
    pub level: Level,
    pub kind: KindFilter,
    /// Ordered by source, destination and kind.
    pub cells: Vec<MatrixCell>,
    pub generated_unix_ms: i64,
}

impl MatrixResponse {
    pub fn new(level: MatrixLevel, kind: Option<ProbeKind>, snapshot: MatrixSnapshot) -> Self {
        MatrixResponse {
            level: level.into(),
            kind: kind.into(),
            cells: snapshot.cells.into_iter().map(MatrixCell::from).collect(),
            generated_unix_ms: snapshot.generated_at.get(),
        }
    }

    /// Fills each pod-level cell's `claimed_by` from `diagnosis`.
    pub fn with_claims(mut self, diagnosis: &crate::state::DiagnosisSnapshot) -> Self {
        if self.level != Level::Pod {
            return self;
        }
        for c in &mut self.cells {
            c.claimed_by = diagnosis.claimed_by(&c.source, &c.destination, c.kind.into());
            c.denied_by_policy =
                diagnosis.denied_by_policy(&c.source, &c.destination, c.kind.into()).map(str::to_owned);
        }
        self
    }
}

/// How urgent a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl From<ModelSeverity> for Severity {
    fn from(s: ModelSeverity) -> Self {
        match s {
            ModelSeverity::Info => Severity::Info,
            ModelSeverity::Warning => Severity::Warning,
            ModelSeverity::Critical => Severity::Critical,
        }
    }
}

/// What kind of thing a finding blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CulpritType {
    Pod,
    Node,
    NodePair,
    Service,
    Dns,
    Port,
    Path,
    NetworkPolicy,
}

impl From<CulpritKind> for CulpritType {
    fn from(k: CulpritKind) -> Self {
        match k {
            CulpritKind::Pod => CulpritType::Pod,
            CulpritKind::Node => CulpritType::Node,
            CulpritKind::NodePair => CulpritType::NodePair,
            CulpritKind::Service => CulpritType::Service,
            CulpritKind::Dns => CulpritType::Dns,
            CulpritKind::Port => CulpritType::Port,
            CulpritKind::Path => CulpritType::Path,
            CulpritKind::NetworkPolicy => CulpritType::NetworkPolicy,
        }
    }
}

/// The component a finding blames: `{"type": "node_pair", "name": "node-1→node-2"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Culprit {
    #[serde(rename = "type")]
    pub kind: CulpritType,
    pub name: String,
}

impl From<ModelCulprit> for Culprit {
    fn from(c: ModelCulprit) -> Self {
        Culprit { kind: c.kind.into(), name: c.name.into_string() }
    }
}

/// A verdict with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `<id> <culprit>`: what a matrix cell's `claimed_by` names.
    #[serde(default)]
    pub key: String,
    /// A stable id for the kind of finding (`dns-nxdomain`, `node-pair-loss`, …).
    pub id: String,
    pub severity: Severity,
    /// One line a network engineer reads first.
    pub verdict: String,
    /// `null` when the finding blames nothing in particular.
    pub culprit: Option<Culprit>,
    pub affected: Vec<String>,
    pub evidence: Vec<String>,
    /// The runbook section (`"1.6"`) or a URL; `null` when there is none.
    pub runbook: Option<String>,
    /// What to do; empty when there is nothing to suggest.
    pub suggestion: String,
    /// When this collector's diagnosis first listed the finding (since its latest start);
    /// `null` when unknown.
    #[serde(default)]
    pub first_seen_unix_ms: Option<i64>,
    /// When a diagnosis last listed it.
    #[serde(default)]
    pub last_seen_unix_ms: Option<i64>,
}

impl From<ModelFinding> for Finding {
    fn from(f: ModelFinding) -> Self {
        Finding {
            key: crate::state::finding_key(&f),
            id: f.id.as_str().to_owned(),
            severity: f.severity.into(),
            verdict: f.verdict.into_string(),
            culprit: f.culprit.map(Culprit::from),
            affected: f.affected.into_iter().map(|a| a.into_string()).collect(),
            evidence: f.evidence.into_iter().map(|e| e.into_string()).collect(),
            runbook: f.runbook.map(|r| r.into_string()),
            suggestion: f.suggestion.into_string(),
            first_seen_unix_ms: None,
            last_seen_unix_ms: None,
        }
    }
}

/// `GET /api/v1/diagnosis`: findings, most severe first; empty when everything is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosisResponse {
    pub findings: Vec<Finding>,
    pub generated_unix_ms: i64,
    /// Failing paths NetworkPolicy keeps shut, as intended: never findings (at most 1000,
    /// in path order; `denied_by_policy_total` counts them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied_by_policy: Vec<PolicyDenial>,
    #[serde(default)]
    pub denied_by_policy_total: u64,
}

/// A failing path NetworkPolicy denies, as intended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDenial {
    /// `source -> destination kind`.
    pub path: String,
    /// The policy verdict in one sentence.
    pub reason: String,
}

impl From<Diagnosis> for DiagnosisResponse {
    fn from(d: Diagnosis) -> Self {
        let mut findings: Vec<Finding> = d.findings.into_iter().map(Finding::from).collect();
        // The contract promises most severe first; a stable sort keeps localization's order
        // within a severity.
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        DiagnosisResponse {
            findings,
            generated_unix_ms: d.generated_at.get(),
            denied_by_policy: d
                .denied_by_policy
                .into_iter()
                .map(|p| PolicyDenial { path: p.path.into_string(), reason: p.reason.into_string() })
                .collect(),
            denied_by_policy_total: d.denied_by_policy_total,
        }
    }
}

impl DiagnosisResponse {
    /// The snapshot's findings with when each was first and last seen.
    pub fn with_history(snapshot: &crate::state::DiagnosisSnapshot) -> Self {
        let mut response = DiagnosisResponse::from(snapshot.diagnosis.clone());
        for f in &mut response.findings {
            if let Some(seen) = snapshot.seen.get(&f.key) {
                f.first_seen_unix_ms = Some(seen.first.get());
                f.last_seen_unix_ms = Some(seen.last.get());
            }
        }
        response
    }
}

/// `GET /api/v1/events`: findings appearing and clearing, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsResponse {
    pub events: Vec<FindingEvent>,
}

/// One finding appearing or clearing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingEvent {
    pub at_unix_ms: i64,
    /// `appeared` or `cleared`.
    pub transition: String,
    /// The finding's `key`.
    pub key: String,
    pub id: String,
    /// What it said (its last words, for a cleared one).
    pub verdict: String,
    pub first_seen_unix_ms: i64,
}

impl From<crate::history::FindingEvent> for FindingEvent {
    fn from(e: crate::history::FindingEvent) -> Self {
        FindingEvent {
            at_unix_ms: e.at.get(),
            transition: match e.transition {
                crate::history::Transition::Appeared => "appeared",
                crate::history::Transition::Cleared => "cleared",
            }
            .to_owned(),
            key: e.key,
            id: e.id,
            verdict: e.verdict,
            first_seen_unix_ms: e.first_seen.get(),
        }
    }
}

/// One agent, as the collector knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub node: String,
    pub agent_version: String,
    /// The session is up and the agent was heard from recently.
    pub connected: bool,
    /// When the current (or last) session started.
    pub connected_since_unix_ms: Option<i64>,
    pub last_seen_unix_ms: Option<i64>,
    pub results_received: u64,
    /// Results the agent reported dropping (its buffer was full while the collector was away).
    pub results_dropped: u64,
    /// Pods the agent probes from.
    pub pods: u32,
    /// `icmp`, `tcp`, `dns`, `http`, `mtu`, `inspect_iptables`, `inspect_nftables`, `on_demand`.
    pub capabilities: Vec<String>,
}

impl From<AgentInfo> for Agent {
    fn from(a: AgentInfo) -> Self {
        Agent {
            node: a.node.as_str().to_owned(),
            agent_version: a.agent_version.as_str().to_owned(),
            connected: a.connected,
            connected_since_unix_ms: a.connected_since.map(UnixMillis::get),
            last_seen_unix_ms: a.last_seen.map(UnixMillis::get),
            results_received: a.results_received,
            results_dropped: a.results_dropped,
            pods: a.pods,
            capabilities: a.capabilities.iter().map(|c| c.as_str().to_owned()).collect(),
        }
    }
}

/// `GET /api/v1/agents`: every agent ever seen, by node name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentsResponse {
    pub agents: Vec<Agent>,
    pub generated_unix_ms: i64,
}

impl AgentsResponse {
    pub fn new(agents: Vec<AgentInfo>, now: UnixMillis) -> Self {
        let mut agents: Vec<Agent> = agents.into_iter().map(Agent::from).collect();
        agents.sort_by(|a, b| a.node.cmp(&b.node));
        AgentsResponse { agents, generated_unix_ms: now.get() }
    }
}

/// `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub ready: bool,
    /// Why not, when not ready.
    pub reason: Option<String>,
    /// Nodes in the collector's inventory.
    pub inventory_nodes: usize,
    pub agents_known: usize,
    pub agents_connected: usize,
    /// Connected agents that have sent this collector results since it started.
    #[serde(default)]
    pub agents_reporting: usize,
}

/// Every error answer: `{"error": "…"}`, plus the parameter at fault and its allowed values
/// when a query parameter was bad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
}

impl ErrorResponse {
    pub fn new(error: impl Into<String>) -> Self {
        ErrorResponse { error: error.into(), parameter: None, allowed: Vec::new() }
    }
}

// --- POST /api/v1/probe ---

/// `POST /api/v1/probe`'s body: `{"from", "to", "http_path"?, "timeout_ms"?}` (unknown fields
/// are refused, naming them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRequest {
    /// `<ns>/<pod>` or `node/<name>`.
    pub from: String,
    /// `<ns>/<pod>[:<port>]`, `svc/<ns>/<name>:<port>`, `node/<name>[:<port>]`, `<ip>[:<port>]`
    /// or `<dns name>[:<port>]`.
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
    /// Each probe step's timeout; the collector's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Failed,
    Skipped,
    Warning,
}

impl From<ModelStepStatus> for StepStatus {
    fn from(s: ModelStepStatus) -> Self {
        match s {
            ModelStepStatus::Ok => StepStatus::Ok,
            ModelStepStatus::Failed => StepStatus::Failed,
            ModelStepStatus::Skipped => StepStatus::Skipped,
            ModelStepStatus::Warning => StepStatus::Warning,
        }
    }
}

/// A probe step's result, summarized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub kind: Kind,
    /// What was probed, as a person reads it: `service tidb/demo-pd (10.96.0.20:2379)`.
    pub target: String,
    /// A stable name: `ok`, `tcp_timeout`, `dns_nxdomain`, … (as in the metrics).
    pub outcome: String,
    /// One line: the outcome in words, the RTT, counts and the agent's detail.
    pub summary: String,
    pub rtt_ms: Option<f64>,
    /// ICMP and MTU probes: packets sent and received; `null` for other kinds.
    pub sent: Option<u32>,
    pub received: Option<u32>,
    pub http_status: Option<u16>,
    pub path_mtu: Option<u32>,
    /// DNS probes: the addresses answered.
    pub answers: Vec<String>,
    /// The agent's detail (an error text); `null` when there is none.
    pub detail: Option<String>,
}

fn summary(r: &ProbeResult) -> String {
    let mut s = r.outcome.to_string();
    if let Some(rtt) = r.rtt {
        s.push_str(&format!(", rtt {rtt}"));
    }
    if let Some(b) = r.burst {
        s.push_str(&format!(", {}/{} received", b.received(), b.sent()));
    }
    if let Some(code) = r.http_status {
        s.push_str(&format!(", HTTP {}", code.get()));
    }
    if let Some(mtu) = r.path_mtu {
        s.push_str(&format!(", path MTU {}", mtu.get()));
    }
    if !r.answers.is_empty() {
        let answers: Vec<String> = r.answers.iter().map(ToString::to_string).collect();
        s.push_str(&format!(", answers {}", answers.join(" ")));
    }
    if !r.detail.is_empty() {
        s.push_str(&format!(": {}", r.detail.as_str()));
    }
    s
}

impl From<&ProbeResult> for StepResult {
    fn from(r: &ProbeResult) -> Self {
        StepResult {
            kind: r.kind.into(),
            target: r.target.to_string(),
            outcome: r.outcome.as_str().to_owned(),
            summary: summary(r),
            rtt_ms: r.rtt.map(|rtt| millis(rtt.as_duration())),
            sent: r.burst.map(|b| b.sent()),
            received: r.burst.map(|b| b.received()),
            http_status: r.http_status.map(|c| c.get()),
            path_mtu: r.path_mtu.map(|m| m.get()),
            answers: r.answers.iter().map(ToString::to_string).collect(),
            detail: (!r.detail.is_empty()).then(|| r.detail.as_str().to_owned()),
        }
    }
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeStep {
    /// The step's place in the runbook's order (steps may finish out of order).
    pub index: u32,
    /// `resolve`, `icmp`, `tcp`, `http`, `nat-rules`, `routes`, …
    pub name: String,
    pub description: String,
    pub status: StepStatus,
    pub elapsed_ms: f64,
    pub evidence: Vec<String>,
    /// `null` when the step was not a probe.
    pub result: Option<StepResult>,
}

impl From<&RunStep> for ProbeStep {
    fn from(s: &RunStep) -> Self {
        ProbeStep {
            index: s.index,
            name: s.name.as_str().to_owned(),
            description: s.description.as_str().to_owned(),
            status: s.status.into(),
            elapsed_ms: millis(s.elapsed),
            evidence: s.evidence.iter().map(|e| e.as_str().to_owned()).collect(),
            result: s.result.as_deref().map(StepResult::from),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// Every step ran (whatever the network verdict).
    Completed,
    /// The agent cancelled it.
    Cancelled,
    /// The run could not be carried out (the time limit, the agent went away, …): `error` says
    /// why. This is not a network verdict.
    Failed,
}

/// `{"end": "completed" | "cancelled" | "failed", "error": null | "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDoneJson {
    pub end: RunEnd,
    pub error: Option<String>,
}

impl From<&RunDone> for RunDoneJson {
    fn from(d: &RunDone) -> Self {
        match d {
            RunDone::Completed => RunDoneJson { end: RunEnd::Completed, error: None },
            RunDone::Cancelled => RunDoneJson { end: RunEnd::Cancelled, error: None },
            RunDone::Failed { error } => {
                RunDoneJson { end: RunEnd::Failed, error: Some(error.as_str().to_owned()) }
            }
        }
    }
}

/// `POST /api/v1/probe`'s answer (and `netdiag probe -o json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResponse {
    pub run_id: String,
    pub from: String,
    pub to: String,
    /// In the runbook's order.
    pub steps: Vec<ProbeStep>,
    /// A finding as in `/api/v1/diagnosis`; `null` when the run found no problem (or did not
    /// complete).
    pub verdict: Option<Finding>,
    pub done: RunDoneJson,
    pub elapsed_ms: f64,
    /// What NetworkPolicy says of the path (said before the run probed it); absent when no
    /// policy isolates either end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

impl ProbeResponse {
    /// A run's gathered events as the response (the HTTP API's and `netdiag probe -o json`'s).
    pub fn of_record(
        run_id: &RunId,
        request: &ProbeRunRequest,
        record: &crate::runs::dispatch::RunRecord,
        elapsed: Duration,
    ) -> Self {
        Self::new(run_id, request, &record.steps, record.verdict.clone(), &record.done_or_failed(), elapsed)
            .with_policy(record.policy.as_ref())
    }

    /// The response with what NetworkPolicy said of the path.
    pub fn with_policy(
        mut self,
        policy: Option<&netdiag_model::text::Text<{ netdiag_model::limits::MAX_DETAIL_BYTES }>>,
    ) -> Self {
        self.policy = policy.map(|p| p.as_str().to_owned());
        self
    }

    pub fn new(
        run_id: &RunId,
        request: &ProbeRunRequest,
        steps: &[RunStep],
        verdict: Option<ModelFinding>,
        done: &RunDone,
        elapsed: Duration,
    ) -> Self {
        let mut steps: Vec<ProbeStep> = steps.iter().map(ProbeStep::from).collect();
        steps.sort_by_key(|s| s.index);
        ProbeResponse {
            run_id: run_id.as_str().to_owned(),
            from: request.from.to_string(),
            to: request.to.to_string(),
            steps,
            verdict: verdict.map(Finding::from),
            done: done.into(),
            elapsed_ms: millis(elapsed),
            policy: None,
        }
    }
}
