//! How a step's findings read: a probe result as a status and one or two human lines, the
//! answers a DNS step found filtered by the run's allowed ranges, a step probing several
//! answers summed up, and evidence capped to what the wire carries. Pure.

use std::net::IpAddr;

use netdiag_model::limits::{MAX_DETAIL_BYTES, MAX_STEP_EVIDENCE};
use netdiag_model::probe::ProbeKind;
use netdiag_model::result::ProbeResult;
use netdiag_model::run::StepStatus;
use netdiag_model::run_plan::RunPlan;
use netdiag_model::text::Text;

/// What a step found, before it is stamped with its index, name and wall time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepReport {
    pub(crate) status: StepStatus,
    pub(crate) result: Option<Box<ProbeResult>>,
    pub(crate) evidence: Vec<String>,
}

impl StepReport {
    pub(crate) fn new(status: StepStatus, evidence: Vec<String>) -> Self {
        Self { status, result: None, evidence }
    }
}

/// Ok when the outcome is ok, Warning for an ICMP burst that lost some replies but not all,
/// Failed otherwise.
pub(crate) fn probe_status(r: &ProbeResult) -> StepStatus {
    if !r.outcome.is_ok() {
        return StepStatus::Failed;
    }
    let partial_loss = r.burst.is_some_and(|b| b.received() < b.sent());
    if r.kind == ProbeKind::Icmp && partial_loss { StepStatus::Warning } else { StepStatus::Ok }
}

/// One line of what happened (outcome, RTT, and the kind's own fact: DNS answers, HTTP status,
/// replies received, path MTU), then the probe's detail when it has one.
pub(crate) fn probe_evidence(r: &ProbeResult) -> Vec<String> {
    let mut line = r.outcome.to_string();
    if let Some(rtt) = r.rtt {
        line.push_str(&format!(" in {rtt}"));
    }
    let mut facts = Vec::new();
    if r.kind == ProbeKind::Dns && (r.outcome.is_ok() || !r.answers.is_empty()) {
        let answers: Vec<String> = r.answers.iter().map(IpAddr::to_string).collect();
        facts.push(format!(
            "answers {}",
            if answers.is_empty() { "none".to_owned() } else { answers.join(", ") }
        ));
    }
    if let Some(ns) = r.nameserver {
        facts.push(format!("nameserver {ns}"));
    }
    if let Some(status) = r.http_status {
        facts.push(format!("HTTP {status}"));
    }
    if let Some(b) = r.burst {
        let what = if r.kind == ProbeKind::Mtu { "probes" } else { "echo replies" };
        facts.push(format!("{}/{} {what}", b.received(), b.sent()));
    }
    if let Some(mtu) = r.path_mtu {
        facts.push(format!("path MTU {}", mtu.get()));
    }
    if !facts.is_empty() {
        line.push_str("; ");
        line.push_str(&facts.join(", "));
    }
    let mut lines = vec![line];
    if !r.detail.is_empty() {
        lines.push(r.detail.as_str().to_owned());
    }
    lines
}

/// A probe step's report.
pub(crate) fn probe_report(r: ProbeResult) -> StepReport {
    StepReport { status: probe_status(&r), evidence: probe_evidence(&r), result: Some(Box::new(r)) }
}

/// The answers of a DNS step split into those the run may probe and those it must not.
pub(crate) fn split_answers(plan: &RunPlan, answers: &[IpAddr]) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let mut seen = Vec::new();
    for ip in answers {
        if !seen.contains(ip) {
            seen.push(*ip);
        }
    }
    seen.into_iter().partition(|ip| plan.allows(*ip))
}

/// The evidence line of an answer left alone.
pub(crate) fn not_probed_line(ip: IpAddr) -> String {
    format!("{ip} not probed: outside the cluster's ranges and the allow-list")
}

/// The report of a step that probed each allowed answer of a DNS step: Failed if any probe
/// failed, Warning if any warned, Skipped when nothing was probed; the result is the first
/// failing one (else the first); one evidence line per address, the refused ones included.
pub(crate) fn answers_report(
    probed: Vec<(IpAddr, ProbeResult)>,
    refused: &[IpAddr],
    resolve_step: u32,
) -> StepReport {
    let mut evidence: Vec<String> =
        probed.iter().map(|(ip, r)| format!("{ip}: {}", probe_evidence(r).join(" — "))).collect();
    evidence.extend(refused.iter().map(|ip| not_probed_line(*ip)));
    if probed.is_empty() {
        if refused.is_empty() {
            evidence.push(format!("step {resolve_step} answered no address: nothing to probe"));
        }
        return StepReport::new(StepStatus::Skipped, evidence);
    }
    let statuses: Vec<StepStatus> = probed.iter().map(|(_, r)| probe_status(r)).collect();
    let status = if statuses.contains(&StepStatus::Failed) {
        StepStatus::Failed
    } else if statuses.contains(&StepStatus::Warning) {
        StepStatus::Warning
    } else {
        StepStatus::Ok
    };
    let first_failed = statuses.iter().position(|s| *s == StepStatus::Failed).unwrap_or(0);
    let result = probed.into_iter().nth(first_failed).map(|(_, r)| Box::new(r));
    StepReport { status, result, evidence }
}

/// Evidence as the wire carries it: each line cut to fit, at most [`MAX_STEP_EVIDENCE`] lines
/// (the last one says how many were left out).
pub(crate) fn cap_evidence(lines: &[String]) -> Vec<Text<MAX_DETAIL_BYTES>> {
    if lines.len() <= MAX_STEP_EVIDENCE {
        return lines.iter().map(|l| Text::lossy(l)).collect();
    }
    let kept = MAX_STEP_EVIDENCE - 1;
    let mut out: Vec<Text<MAX_DETAIL_BYTES>> = lines[..kept].iter().map(|l| Text::lossy(l)).collect();
    out.push(Text::lossy(&format!("{} more lines left out", lines.len() - kept)));
    out
}

#[cfg(test)]
mod tests;
