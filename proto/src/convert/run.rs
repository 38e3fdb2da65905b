//! On-demand runs: `RunRequest` and `RunTarget` (collector → agent), `RunProgress`, `RunStep`
//! and `RunDone` (agent → collector), `ProbeRunRequest` and `ProbeRunEvent` (CLI ↔ collector).

use std::net::SocketAddr;
use std::time::Duration;

use netdiag_model::inspect::NatProtocol;
use netdiag_model::limits::{MAX_DETAIL_BYTES, MAX_STEP_ELAPSED, MAX_STEP_EVIDENCE, OutOfRange};
use netdiag_model::run_plan::{MAX_ALLOWED_RANGES, MAX_RUN_STEPS, MAX_STEP_ADDRESSES};
use netdiag_model::text::excerpt;
use netdiag_model::{
    DnsName, HttpPath, NodeName, PlannedStep, ProbeResult, ProbeRunEvent, ProbeRunRequest, RunDone, RunId,
    RunPlan, RunProgress, RunRequest, RunStep, RunTarget, RunTimeout, RunUpdate, Source, StepAction,
    StepName, Text,
};

use super::enums::{self, wire};
use super::error::{At, ConvertError, ErrorKind};
use super::field::{
    Result, ip, list, micros_u64, net, non_empty, opt_port, opt_port_to_wire, opt_str, opt_to_wire, port,
    required,
};
use super::target::{pod_ref, req_service_ref, req_source, service_ref};
use crate::v1;

/// The outer `port` belongs to pod, DNS and node targets; the others carry their own.
fn no_outer_port(port: u32) -> Result<()> {
    if port == 0 {
        Ok(())
    } else {
        Err(ErrorKind::Conflict("set for a target that carries its own port")).at("port")
    }
}

impl TryFrom<v1::RunTarget> for RunTarget {
    type Error = ConvertError;
    fn try_from(t: v1::RunTarget) -> Result<Self> {
        use v1::run_target::Kind;
        match required(t.kind).at("kind")? {
            Kind::Pod(p) => {
                Ok(RunTarget::Pod { pod: pod_ref(p).at("pod")?, port: opt_port(t.port).at("port")? })
            }
            Kind::Service(s) => {
                no_outer_port(t.port)?;
                let service = req_service_ref(s.service).at("service").at("service")?;
                Ok(RunTarget::Service { service, port: port(s.port).at("port").at("service")? })
            }
            Kind::DnsName(n) => Ok(RunTarget::Dns {
                name: DnsName::new(n).at("dns_name")?,
                port: opt_port(t.port).at("port")?,
            }),
            Kind::Address(a) => {
                no_outer_port(t.port)?;
                Ok(RunTarget::Address {
                    ip: ip(&a.ip).at("ip").at("address")?,
                    port: opt_port(a.port).at("port").at("address")?,
                })
            }
            Kind::Node(n) => {
                Ok(RunTarget::Node { node: NodeName::new(n).at("node")?, port: opt_port(t.port).at("port")? })
            }
        }
    }
}

impl From<RunTarget> for v1::RunTarget {
    fn from(t: RunTarget) -> Self {
        use v1::run_target::Kind;
        let (kind, port) = match t {
            RunTarget::Pod { pod, port } => (Kind::Pod(pod.into()), port),
            RunTarget::Service { service, port } => (
                Kind::Service(v1::ServicePortRef { service: Some(service.into()), port: port.get().into() }),
                None,
            ),
            RunTarget::Dns { name, port } => (Kind::DnsName(name.into()), port),
            RunTarget::Address { ip, port } => {
                (Kind::Address(v1::AddressTarget { ip: ip.to_string(), port: opt_port_to_wire(port) }), None)
            }
            RunTarget::Node { node, port } => (Kind::Node(node.into()), port),
        };
        v1::RunTarget { kind: Some(kind), port: opt_port_to_wire(port) }
    }
}

impl TryFrom<v1::RunRequest> for RunRequest {
    type Error = ConvertError;
    fn try_from(r: v1::RunRequest) -> Result<Self> {
        Ok(RunRequest {
            run_id: RunId::new(r.run_id).at("run_id")?,
            source: req_source(r.source).at("source")?,
            target: required(r.target).and_then(TryInto::try_into).at("target")?,
            http_path: opt_str(r.http_path, HttpPath::new).at("http_path")?,
            timeout: RunTimeout::from_millis(r.timeout_ms).at("timeout_ms")?,
            plan: required(r.plan).and_then(TryInto::try_into).at("plan")?,
        })
    }
}

impl From<RunRequest> for v1::RunRequest {
    fn from(r: RunRequest) -> Self {
        v1::RunRequest {
            run_id: r.run_id.into(),
            source: Some(r.source.into()),
            target: Some(r.target.into()),
            http_path: opt_to_wire(r.http_path),
            timeout_ms: r.timeout.as_millis(),
            plan: Some(r.plan.into()),
        }
    }
}

fn socket_addr(s: &str) -> Result<SocketAddr> {
    if s.is_empty() {
        return Err(ErrorKind::Missing.into());
    }
    s.parse().map_err(|_| ErrorKind::BadSocketAddr { value: excerpt(s) }.into())
}

impl TryFrom<v1::PlannedStep> for PlannedStep {
    type Error = ConvertError;
    fn try_from(s: v1::PlannedStep) -> Result<Self> {
        use v1::planned_step::Action;
        let action = match required(s.action).at("action")? {
            Action::Probe(p) => StepAction::Probe { probe: p.try_into().at("probe")? },
            Action::ProbeAnswers(a) => StepAction::ProbeAnswers {
                resolve_step: a.resolve_step,
                kind: enums::probe_kind(a.kind).at("kind").at("probe_answers")?,
                port: opt_port(a.port).at("port").at("probe_answers")?,
                http_path: opt_str(a.http_path, HttpPath::new).at("http_path").at("probe_answers")?,
            },
            Action::NatRules(n) => StepAction::NatRules {
                service: n.service.map(service_ref).transpose().at("service").at("nat_rules")?,
                vip: ip(&n.vip).at("vip").at("nat_rules")?,
                port: port(n.port).at("port").at("nat_rules")?,
                protocol: n
                    .protocol
                    .parse::<NatProtocol>()
                    .map_err(ConvertError::from)
                    .at("protocol")
                    .at("nat_rules")?,
                expected: list(n.expected, MAX_STEP_ADDRESSES, |e| socket_addr(&e))
                    .at("expected")
                    .at("nat_rules")?,
                node_port: n.node_port,
            },
            Action::Routes(r) => StepAction::Routes {
                destinations: list(r.destinations, MAX_STEP_ADDRESSES, |d| ip(&d))
                    .at("destinations")
                    .at("routes")?,
            },
        };
        Ok(PlannedStep {
            name: StepName::new(s.name).at("name")?,
            description: Text::new(s.description).at("description")?,
            action,
        })
    }
}

impl From<PlannedStep> for v1::PlannedStep {
    fn from(s: PlannedStep) -> Self {
        use v1::planned_step::Action;
        let action = match s.action {
            StepAction::Probe { probe } => Action::Probe(probe.into()),
            StepAction::ProbeAnswers { resolve_step, kind, port, http_path } => {
                Action::ProbeAnswers(v1::ProbeAnswers {
                    resolve_step,
                    kind: wire::<v1::ProbeKind, _>(kind),
                    port: opt_port_to_wire(port),
                    http_path: opt_to_wire(http_path),
                })
            }
            StepAction::NatRules { service, vip, port, protocol, expected, node_port } => {
                Action::NatRules(v1::NatRulesCheck {
                    service: service.map(Into::into),
                    vip: vip.to_string(),
                    port: port.get().into(),
                    protocol: protocol.as_str().to_owned(),
                    expected: expected.iter().map(ToString::to_string).collect(),
                    node_port,
                })
            }
            StepAction::Routes { destinations } => Action::Routes(v1::RoutesCheck {
                destinations: destinations.iter().map(ToString::to_string).collect(),
            }),
        };
        v1::PlannedStep { name: s.name.into(), description: s.description.into(), action: Some(action) }
    }
}

impl TryFrom<v1::RunPlan> for RunPlan {
    type Error = ConvertError;
    fn try_from(p: v1::RunPlan) -> Result<Self> {
        let plan = RunPlan {
            steps: list(p.steps, MAX_RUN_STEPS, PlannedStep::try_from).at("steps")?,
            allowed: list(p.allowed, MAX_ALLOWED_RANGES, |n| net(&n)).at("allowed")?,
        };
        plan.check().map_err(ConvertError::from).at("steps")?;
        Ok(plan)
    }
}

impl From<RunPlan> for v1::RunPlan {
    fn from(p: RunPlan) -> Self {
        v1::RunPlan {
            steps: p.steps.into_iter().map(Into::into).collect(),
            allowed: p.allowed.iter().map(ToString::to_string).collect(),
        }
    }
}

impl TryFrom<v1::RunStep> for RunStep {
    type Error = ConvertError;
    fn try_from(s: v1::RunStep) -> Result<Self> {
        let elapsed = Duration::from_micros(s.elapsed_us);
        if elapsed > MAX_STEP_ELAPSED {
            return Err(OutOfRange::new("elapsed (µs)", s.elapsed_us, "at most one hour")).at("elapsed_us");
        }
        Ok(RunStep {
            index: s.index,
            name: StepName::new(s.name).at("name")?,
            description: Text::new(s.description).at("description")?,
            status: enums::step_status(s.status).at("status")?,
            result: s.result.map(ProbeResult::try_from).transpose().at("result")?.map(Box::new),
            evidence: list(s.evidence, MAX_STEP_EVIDENCE, |e| Ok(Text::new(e)?)).at("evidence")?,
            elapsed,
        })
    }
}

impl From<RunStep> for v1::RunStep {
    fn from(s: RunStep) -> Self {
        v1::RunStep {
            index: s.index,
            name: s.name.into(),
            description: s.description.into(),
            status: wire::<v1::StepStatus, _>(s.status),
            result: s.result.map(|r| (*r).into()),
            evidence: s.evidence.into_iter().map(Into::into).collect(),
            elapsed_us: micros_u64(s.elapsed),
        }
    }
}

impl TryFrom<v1::RunDone> for RunDone {
    type Error = ConvertError;
    fn try_from(d: v1::RunDone) -> Result<Self> {
        match (d.cancelled, d.error.is_empty()) {
            (false, true) => Ok(RunDone::Completed),
            (true, true) => Ok(RunDone::Cancelled),
            (false, false) => {
                Ok(RunDone::Failed { error: Text::<MAX_DETAIL_BYTES>::new(d.error).at("error")? })
            }
            (true, false) => Err(ErrorKind::Conflict("a cancelled run carries no error")).at("error"),
        }
    }
}

impl From<RunDone> for v1::RunDone {
    fn from(d: RunDone) -> Self {
        match d {
            RunDone::Completed => v1::RunDone { cancelled: false, error: String::new() },
            RunDone::Cancelled => v1::RunDone { cancelled: true, error: String::new() },
            RunDone::Failed { error } => v1::RunDone { cancelled: false, error: error.into() },
        }
    }
}

impl TryFrom<v1::RunProgress> for RunProgress {
    type Error = ConvertError;
    fn try_from(p: v1::RunProgress) -> Result<Self> {
        use v1::run_progress::Body;
        let run_id = RunId::new(p.run_id).at("run_id")?;
        let update = match required(p.body).at("body")? {
            Body::Step(s) => RunUpdate::Step(s.try_into().at("step")?),
            Body::Done(d) => RunUpdate::Done(d.try_into().at("done")?),
        };
        Ok(RunProgress { run_id, update })
    }
}

impl From<RunProgress> for v1::RunProgress {
    fn from(p: RunProgress) -> Self {
        use v1::run_progress::Body;
        let body = match p.update {
            RunUpdate::Step(s) => Body::Step(s.into()),
            RunUpdate::Done(d) => Body::Done(d.into()),
        };
        v1::RunProgress { run_id: p.run_id.into(), body: Some(body) }
    }
}

impl TryFrom<v1::ProbeRunRequest> for ProbeRunRequest {
    type Error = ConvertError;
    fn try_from(r: v1::ProbeRunRequest) -> Result<Self> {
        Ok(ProbeRunRequest {
            from: non_empty(r.from, |s| s.parse::<Source>()).at("from")?,
            to: non_empty(r.to, |s| s.parse::<RunTarget>()).at("to")?,
            http_path: opt_str(r.http_path, HttpPath::new).at("http_path")?,
            timeout: match r.timeout_ms {
                0 => None,
                ms => Some(RunTimeout::from_millis(ms).at("timeout_ms")?),
            },
        })
    }
}

impl From<ProbeRunRequest> for v1::ProbeRunRequest {
    fn from(r: ProbeRunRequest) -> Self {
        v1::ProbeRunRequest {
            from: r.from.to_string(),
            to: r.to.to_string(),
            http_path: opt_to_wire(r.http_path),
            timeout_ms: r.timeout.map_or(0, RunTimeout::as_millis),
        }
    }
}

impl TryFrom<v1::ProbeRunEvent> for ProbeRunEvent {
    type Error = ConvertError;
    fn try_from(e: v1::ProbeRunEvent) -> Result<Self> {
        use v1::probe_run_event::Body;
        Ok(match required(e.body).at("body")? {
            Body::Policy(p) => ProbeRunEvent::Policy(non_empty(p, Text::new).at("policy")?),
            Body::Step(s) => ProbeRunEvent::Step(s.try_into().at("step")?),
            Body::Verdict(f) => ProbeRunEvent::Verdict(f.try_into().at("verdict")?),
            Body::Done(d) => ProbeRunEvent::Done(d.try_into().at("done")?),
        })
    }
}

impl From<ProbeRunEvent> for v1::ProbeRunEvent {
    fn from(e: ProbeRunEvent) -> Self {
        use v1::probe_run_event::Body;
        let body = match e {
            ProbeRunEvent::Policy(p) => Body::Policy(p.into()),
            ProbeRunEvent::Step(s) => Body::Step(s.into()),
            ProbeRunEvent::Verdict(f) => Body::Verdict(f.into()),
            ProbeRunEvent::Done(d) => Body::Done(d.into()),
        };
        v1::ProbeRunEvent { body: Some(body) }
    }
}
