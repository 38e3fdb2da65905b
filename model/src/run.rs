//! On-demand runs ("probe from pod X to svc/Y:2379 now, show every step"): the request, what it
//! aims at before resolution (`RunTarget`), and the steps and end it reports.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dns::{DnsName, DnsNameError};
use crate::finding::Finding;
use crate::http::HttpPath;
use crate::limits::{MAX_DETAIL_BYTES, MAX_LINE_BYTES, MAX_RUN_TIMEOUT, OutOfRange};
use crate::names::{NameError, NodeName, PodRef, Port, ServiceRef};
use crate::probe::Source;
use crate::result::ProbeResult;
use crate::run_plan::RunPlan;
use crate::text::{Text, TextError, check_token, excerpt, is_id_char, token_type};

fn check_run_id(s: &str) -> Result<(), TextError> {
    check_token("run id", s, 128, is_id_char)
}

token_type!(
    /// Names one on-demand run (letters, digits, `-_.:`; at most 128 bytes).
    RunId,
    check = check_run_id
);

fn check_step_name(s: &str) -> Result<(), TextError> {
    check_token("step name", s, 64, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_')
    })
}

token_type!(
    /// What a step does, as a short lowercase word: `resolve`, `icmp`, `tcp`, `nat-rules`, …
    StepName,
    check = check_step_name
);

/// How long each probe step of a run may take: whole milliseconds, 1ms to
/// [`MAX_RUN_TIMEOUT`] (10 minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct RunTimeout(u32);

impl RunTimeout {
    pub fn from_millis(ms: u32) -> Result<Self, OutOfRange> {
        let max = u32::try_from(MAX_RUN_TIMEOUT.as_millis()).unwrap_or(u32::MAX);
        if (1..=max).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(OutOfRange::new("run timeout (ms)", ms, "1 to 600000"))
        }
    }

    pub const fn as_millis(self) -> u32 {
        self.0
    }

    pub const fn as_duration(self) -> Duration {
        Duration::from_millis(self.0 as u64)
    }
}

impl TryFrom<u32> for RunTimeout {
    type Error = OutOfRange;
    fn try_from(ms: u32) -> Result<Self, OutOfRange> {
        Self::from_millis(ms)
    }
}

impl From<RunTimeout> for u32 {
    fn from(t: RunTimeout) -> u32 {
        t.0
    }
}

/// What the caller asked to reach, before resolution.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunTarget {
    Pod { pod: PodRef, port: Option<Port> },
    Service { service: ServiceRef, port: Port },
    Dns { name: DnsName, port: Option<Port> },
    Address { ip: IpAddr, port: Option<Port> },
    Node { node: NodeName, port: Option<Port> },
}

impl RunTarget {
    pub fn port(&self) -> Option<Port> {
        match self {
            RunTarget::Service { port, .. } => Some(*port),
            RunTarget::Pod { port, .. }
            | RunTarget::Dns { port, .. }
            | RunTarget::Address { port, .. }
            | RunTarget::Node { port, .. } => *port,
        }
    }
}

/// A run target the CLI syntax cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunTargetError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Dns(#[from] DnsNameError),
    #[error("service target {value:?} needs a port: write svc/<namespace>/<name>:<port>")]
    ServiceNeedsPort { value: String },
}

fn split_port(s: &str) -> Result<(&str, Option<Port>), NameError> {
    match s.rsplit_once(':') {
        Some((rest, port)) => Ok((rest, Some(port.parse()?))),
        None => Ok((s, None)),
    }
}

/// The CLI syntax: `<ns>/<pod>[:<port>]`, `svc/<ns>/<name>:<port>`, `node/<name>[:<port>]`,
/// `<ip>`, `<ip>:<port>` (`[v6]:<port>`), or `<dns name>[:<port>]`. A namespace called `node`
/// cannot be named this way, nor a pod in namespace `svc` whose name holds a `/`.
impl FromStr for RunTarget {
    type Err = RunTargetError;
    fn from_str(s: &str) -> Result<Self, RunTargetError> {
        if let Some(rest) = s.strip_prefix("svc/")
            && rest.contains('/')
        {
            let (svc, port) = split_port(rest)?;
            let port = port.ok_or_else(|| RunTargetError::ServiceNeedsPort { value: excerpt(s) })?;
            return Ok(RunTarget::Service { service: svc.parse()?, port });
        }
        if let Some(rest) = s.strip_prefix("node/") {
            let (node, port) = split_port(rest)?;
            return Ok(RunTarget::Node { node: node.parse()?, port });
        }
        if s.contains('/') {
            let (pod, port) = split_port(s)?;
            return Ok(RunTarget::Pod { pod: pod.parse()?, port });
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            let port = Port::new(addr.port().into())?;
            return Ok(RunTarget::Address { ip: addr.ip(), port: Some(port) });
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(RunTarget::Address { ip, port: None });
        }
        let (name, port) = split_port(s)?;
        Ok(RunTarget::Dns { name: name.parse()?, port })
    }
}

impl fmt::Display for RunTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn port(f: &mut fmt::Formatter<'_>, p: &Option<Port>) -> fmt::Result {
            match p {
                Some(p) => write!(f, ":{p}"),
                None => Ok(()),
            }
        }
        match self {
            RunTarget::Pod { pod, port: p } => {
                write!(f, "{pod}")?;
                port(f, p)
            }
            RunTarget::Service { service, port } => write!(f, "svc/{service}:{port}"),
            RunTarget::Dns { name, port: p } => {
                write!(f, "{name}")?;
                port(f, p)
            }
            RunTarget::Address { ip, port: Some(p) } => {
                write!(f, "{}", SocketAddr::new(*ip, p.get()))
            }
            RunTarget::Address { ip, port: None } => write!(f, "{ip}"),
            RunTarget::Node { node, port: p } => {
                write!(f, "node/{node}")?;
                port(f, p)
            }
        }
    }
}

/// The collector asks an agent to run a diagnosis now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    pub run_id: RunId,
    pub source: Source,
    pub target: RunTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_path: Option<HttpPath>,
    /// Per probe step.
    #[serde(rename = "timeout_ms")]
    pub timeout: RunTimeout,
    /// The concrete steps, expanded by the collector from its inventory.
    pub plan: RunPlan,
}

/// The CLI asks the collector for an on-demand run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRunRequest {
    pub from: Source,
    pub to: RunTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_path: Option<HttpPath>,
    /// None: the collector's default.
    #[serde(default, rename = "timeout_ms", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<RunTimeout>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Failed,
    Skipped,
    Warning,
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StepStatus::Ok => "ok",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Warning => "warning",
        })
    }
}

/// One step of a run, as it finishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStep {
    pub index: u32,
    pub name: StepName,
    /// "TCP connect 10.96.0.20:2379 (service tidb/demo-pd)"
    pub description: Text<MAX_LINE_BYTES>,
    pub status: StepStatus,
    /// When the step was a probe (boxed: a result is large, and most steps have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<ProbeResult>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Text<MAX_DETAIL_BYTES>>,
    #[serde(rename = "elapsed_us", with = "crate::time::as_micros")]
    pub elapsed: Duration,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum RunDone {
    /// Every step ran (whatever the network verdict).
    Completed,
    Cancelled,
    /// The run could not be carried out; this is not a network verdict.
    Failed {
        error: Text<MAX_DETAIL_BYTES>,
    },
}

/// A run's progress as an agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunUpdate {
    Step(RunStep),
    Done(RunDone),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunProgress {
    pub run_id: RunId,
    pub update: RunUpdate,
}

/// What the collector streams to the CLI during an on-demand run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeRunEvent {
    /// What NetworkPolicy says of the run's path, sent before any step (the run probes it
    /// anyway, to tell whether the dataplane agrees); only when a policy isolates either end.
    Policy(Text<MAX_DETAIL_BYTES>),
    Step(RunStep),
    /// The run's verdict; absent when every step is ok.
    Verdict(Finding),
    Done(RunDone),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_targets_parse_the_cli_syntax() {
        let cases = [
            ("tidb/demo-pd-0", "pod"),
            ("tidb/demo-pd-0:2379", "pod"),
            ("svc/tidb/demo-pd:2379", "service"),
            ("svc/demo", "pod"),
            ("node/node-1", "node"),
            ("node/node-1:10250", "node"),
            ("10.96.0.20:2379", "address"),
            ("10.96.0.20", "address"),
            ("[fd00::20]:80", "address"),
            ("fd00::20", "address"),
            ("kubernetes.default", "dns"),
            ("demo-pd.tidb.svc:2379", "dns"),
        ];
        for (input, kind) in cases {
            let t: RunTarget = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            let json = serde_json::to_value(&t).unwrap();
            assert_eq!(json["type"], kind, "{input}");
            assert_eq!(t.to_string(), input, "display gives the input back");
        }
    }

    #[test]
    fn run_targets_reject_with_the_rule() {
        for bad in [
            "svc/tidb/demo-pd",
            "svc/tidb/demo-pd:0",
            "tidb/Demo",
            "node/",
            "a b",
            "10.0.0.1:0",
            "demo:99999",
            "",
        ] {
            assert!(bad.parse::<RunTarget>().is_err(), "{bad:?}");
        }
        let err = "svc/tidb/demo-pd".parse::<RunTarget>().unwrap_err();
        assert!(err.to_string().contains("needs a port"), "{err}");
    }

    #[test]
    fn run_timeouts() {
        assert!(RunTimeout::from_millis(0).is_err());
        assert!(RunTimeout::from_millis(600_001).is_err());
        assert_eq!(RunTimeout::from_millis(1500).unwrap().as_duration(), Duration::from_millis(1500));
    }

    #[test]
    fn ids_and_step_names() {
        assert!(RunId::new("run-42").is_ok());
        assert!(RunId::new("").is_err());
        assert!(StepName::new("nat-rules").is_ok());
        assert!(StepName::new("NAT rules").is_err());
    }

    #[test]
    fn run_done_serializes_tagged() {
        let done = RunDone::Failed { error: Text::new("source pod is gone").unwrap() };
        assert_eq!(serde_json::to_string(&done).unwrap(), r#"{"end":"failed","error":"source pod is gone"}"#);
    }
}
