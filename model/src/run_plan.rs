//! The collector's expansion of an on-demand run against its inventory: the concrete steps an
//! agent carries out inside the source's namespace, in the runbook's order (resolve → VIP →
//! each backend → NAT rules → routes). The agent needs no inventory of its own to run one, and
//! the collector keeps the plan to read the steps' results back into a verdict.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::http::HttpPath;
use crate::inspect::NatProtocol;
use crate::limits::{MAX_LINE_BYTES, OutOfRange};
use crate::names::{Port, ServiceRef};
use crate::plan::PlannedProbe;
use crate::probe::{ProbeKind, Target};
use crate::run::StepName;
use crate::text::Text;

/// At most this many steps in one run.
pub const MAX_RUN_STEPS: usize = 512;
/// At most this many addresses in one step's list (routes, expected NAT endpoints).
pub const MAX_STEP_ADDRESSES: usize = 1024;
/// At most this many allowed ranges.
pub const MAX_ALLOWED_RANGES: usize = 256;

/// What one step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StepAction {
    /// One probe from the run's source: a DNS lookup (`resolve`), ICMP, TCP, HTTP or MTU.
    Probe { probe: PlannedProbe },
    /// Probe every address an earlier DNS step answered, when it lies in the plan's `allowed`
    /// ranges (a name can resolve anywhere; the run must not follow it out of the cluster).
    ProbeAnswers {
        /// Index of the DNS probe step whose answers to probe; always an earlier step.
        resolve_step: u32,
        kind: ProbeKind,
        port: Option<Port>,
        http_path: Option<HttpPath>,
    },
    /// Look up the kube-proxy NAT rules of the source's node for `vip:port`, and compare their
    /// DNAT targets with the service's ready endpoints.
    NatRules {
        service: Option<ServiceRef>,
        vip: IpAddr,
        port: Port,
        protocol: NatProtocol,
        /// Ready endpoints (`ip:targetPort`) the rules should send to.
        expected: Vec<SocketAddr>,
        /// A NodePort rule rather than a ClusterIP one.
        node_port: bool,
    },
    /// Look up the route toward each address in the source's namespace and, for a pod source,
    /// in its node's namespace too.
    Routes { destinations: Vec<IpAddr> },
}

/// One planned step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub name: StepName,
    /// "TCP connect 10.96.0.20:2379 (service tidb/demo-pd)"
    pub description: Text<MAX_LINE_BYTES>,
    pub action: StepAction,
}

/// A plan whose steps contradict each other; `field()` names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunPlanError {
    #[error(transparent)]
    TooLarge(#[from] OutOfRange),
    #[error("step {step} probes the answers of step {resolve_step}, which is not an earlier DNS probe step")]
    NotAResolveStep { step: usize, resolve_step: u32 },
    #[error("step {step}: {kind} probes cannot follow DNS answers (use icmp, tcp or http)")]
    KindCannotFollowAnswers { step: usize, kind: ProbeKind },
    #[error("step {step}: a {kind} probe of answers needs a port")]
    AnswersNeedPort { step: usize, kind: ProbeKind },
    #[error("step {step}: http_path is only for http probes")]
    PathNotForKind { step: usize },
    #[error("step {step}: an invalid probe: {reason}")]
    Probe { step: usize, reason: String },
}

/// The concrete steps of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPlan {
    pub steps: Vec<PlannedStep>,
    /// Where addresses learned during the run (DNS answers) may be probed: the cluster's pod,
    /// service and node ranges plus the collector's allow-list.
    pub allowed: Vec<IpNet>,
}

impl RunPlan {
    /// Checks what the types cannot: sizes, and that every `ProbeAnswers` step follows an earlier
    /// DNS probe step with a kind and port that make sense.
    pub fn check(&self) -> Result<(), RunPlanError> {
        if self.steps.len() > MAX_RUN_STEPS {
            return Err(OutOfRange::new("steps", self.steps.len(), "at most 512").into());
        }
        if self.allowed.len() > MAX_ALLOWED_RANGES {
            return Err(OutOfRange::new("allowed ranges", self.allowed.len(), "at most 256").into());
        }
        for (i, step) in self.steps.iter().enumerate() {
            match &step.action {
                StepAction::Probe { probe } => {
                    probe.check().map_err(|e| RunPlanError::Probe { step: i, reason: e.to_string() })?;
                }
                StepAction::ProbeAnswers { resolve_step, kind, port, http_path } => {
                    let earlier = usize::try_from(*resolve_step).ok().filter(|r| *r < i);
                    let is_dns = earlier.and_then(|r| self.steps.get(r)).is_some_and(
                        |s| matches!(&s.action, StepAction::Probe { probe } if probe.kind == ProbeKind::Dns),
                    );
                    if !is_dns {
                        return Err(RunPlanError::NotAResolveStep { step: i, resolve_step: *resolve_step });
                    }
                    match kind {
                        ProbeKind::Icmp => {}
                        ProbeKind::Tcp | ProbeKind::Http if port.is_none() => {
                            return Err(RunPlanError::AnswersNeedPort { step: i, kind: *kind });
                        }
                        ProbeKind::Tcp | ProbeKind::Http => {}
                        other => return Err(RunPlanError::KindCannotFollowAnswers { step: i, kind: *other }),
                    }
                    if http_path.is_some() && *kind != ProbeKind::Http {
                        return Err(RunPlanError::PathNotForKind { step: i });
                    }
                }
                StepAction::NatRules { expected, .. } => {
                    if expected.len() > MAX_STEP_ADDRESSES {
                        return Err(
                            OutOfRange::new("expected endpoints", expected.len(), "at most 1024").into()
                        );
                    }
                }
                StepAction::Routes { destinations } => {
                    if destinations.len() > MAX_STEP_ADDRESSES {
                        return Err(
                            OutOfRange::new("destinations", destinations.len(), "at most 1024").into()
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether `ip` may be probed when it was learned during the run.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(&ip))
    }

    /// The planned probe of step `index`, if that step is a single probe.
    pub fn probe(&self, index: u32) -> Option<&PlannedProbe> {
        match &self.steps.get(usize::try_from(index).ok()?)?.action {
            StepAction::Probe { probe } => Some(probe),
            _ => None,
        }
    }
}

impl StepAction {
    /// The address a single-probe step aims at, for evidence and verdicts.
    pub fn target(&self) -> Option<&Target> {
        match self {
            StepAction::Probe { probe } => Some(&probe.target),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{DnsName, DnsTransport, RecordType};
    use crate::probe::Source;

    fn dns_step() -> PlannedStep {
        PlannedStep {
            name: StepName::new("resolve").unwrap(),
            description: Text::new("resolve demo-pd.tidb").unwrap(),
            action: StepAction::Probe {
                probe: PlannedProbe {
                    source: Source::Pod("tidb/demo-pd-0".parse().unwrap()),
                    target: Target::Dns {
                        name: DnsName::new("demo-pd.tidb").unwrap(),
                        record: RecordType::A,
                        nameserver: None,
                        transport: DnsTransport::Udp,
                    },
                    kind: ProbeKind::Dns,
                    http_path: None,
                    every: crate::EveryRounds::ONE,
                },
            },
        }
    }

    fn answers_step(resolve_step: u32, kind: ProbeKind, port: Option<u16>) -> PlannedStep {
        PlannedStep {
            name: StepName::new("tcp").unwrap(),
            description: Text::new("connect to every answer").unwrap(),
            action: StepAction::ProbeAnswers {
                resolve_step,
                kind,
                port: port.map(|p| Port::new(p.into()).unwrap()),
                http_path: None,
            },
        }
    }

    #[test]
    fn answers_follow_an_earlier_dns_step() {
        let ok = RunPlan {
            steps: vec![dns_step(), answers_step(0, ProbeKind::Tcp, Some(2379))],
            allowed: vec!["10.0.0.0/8".parse().unwrap()],
        };
        ok.check().unwrap();
        assert!(ok.allows("10.96.0.20".parse().unwrap()));
        assert!(!ok.allows("192.0.2.1".parse().unwrap()));

        let forward =
            RunPlan { steps: vec![answers_step(1, ProbeKind::Tcp, Some(1)), dns_step()], allowed: vec![] };
        assert!(matches!(forward.check(), Err(RunPlanError::NotAResolveStep { step: 0, .. })));
        let itself =
            RunPlan { steps: vec![dns_step(), answers_step(1, ProbeKind::Icmp, None)], allowed: vec![] };
        assert!(itself.check().is_err());
        let no_port =
            RunPlan { steps: vec![dns_step(), answers_step(0, ProbeKind::Tcp, None)], allowed: vec![] };
        assert!(matches!(no_port.check(), Err(RunPlanError::AnswersNeedPort { .. })));
        let mtu = RunPlan { steps: vec![dns_step(), answers_step(0, ProbeKind::Mtu, None)], allowed: vec![] };
        assert!(matches!(mtu.check(), Err(RunPlanError::KindCannotFollowAnswers { .. })));
    }
}
