//! Findings (verdicts) and the diagnosis response that lists them.

use netdiag_model::finding::PolicyDenial;
use netdiag_model::limits::{MAX_AFFECTED, MAX_FINDING_EVIDENCE, MAX_FINDINGS, MAX_POLICY_DENIALS};
use netdiag_model::{Culprit, CulpritKind, Diagnosis, Finding, FindingId, Text};

use super::enums::{self, wire};
use super::error::{At, ConvertError, ErrorKind};
use super::field::{Result, list, non_empty, opt_str, opt_to_wire, unix_ms};
use crate::v1;

impl TryFrom<v1::Culprit> for Culprit {
    type Error = ConvertError;
    fn try_from(c: v1::Culprit) -> Result<Self> {
        Ok(Culprit {
            kind: non_empty(c.r#type, |s| s.parse::<CulpritKind>()).at("type")?,
            name: non_empty(c.name, Text::new).at("name")?,
        })
    }
}

impl From<Culprit> for v1::Culprit {
    fn from(c: Culprit) -> Self {
        v1::Culprit { r#type: c.kind.as_str().to_owned(), name: c.name.into() }
    }
}

impl TryFrom<v1::Finding> for Finding {
    type Error = ConvertError;
    fn try_from(f: v1::Finding) -> Result<Self> {
        Ok(Finding {
            id: FindingId::new(f.id).at("id")?,
            severity: enums::severity(f.severity).at("severity")?,
            verdict: non_empty(f.verdict, Text::new).at("verdict")?,
            culprit: f.culprit.map(Culprit::try_from).transpose().at("culprit")?,
            affected: list(f.affected, MAX_AFFECTED, |a| Ok(Text::new(a)?)).at("affected")?,
            evidence: list(f.evidence, MAX_FINDING_EVIDENCE, |e| Ok(Text::new(e)?)).at("evidence")?,
            runbook: opt_str(f.runbook, Text::new).at("runbook")?,
            suggestion: Text::new(f.suggestion).at("suggestion")?,
        })
    }
}

impl From<Finding> for v1::Finding {
    fn from(f: Finding) -> Self {
        v1::Finding {
            id: f.id.into(),
            severity: wire::<v1::Severity, _>(f.severity),
            verdict: f.verdict.into(),
            culprit: f.culprit.map(Into::into),
            affected: f.affected.into_iter().map(Into::into).collect(),
            evidence: f.evidence.into_iter().map(Into::into).collect(),
            runbook: opt_to_wire(f.runbook),
            suggestion: f.suggestion.into(),
        }
    }
}

impl TryFrom<v1::DiagnosisResponse> for Diagnosis {
    type Error = ConvertError;
    fn try_from(d: v1::DiagnosisResponse) -> Result<Self> {
        let denied_by_policy = list(d.denied_by_policy, MAX_POLICY_DENIALS, |p| {
            Ok(PolicyDenial {
                path: Text::new(p.path).at("path")?,
                reason: Text::new(p.reason).at("reason")?,
            })
        })
        .at("denied_by_policy")?;
        if d.denied_by_policy_total < denied_by_policy.len() as u64 {
            return Err(ErrorKind::Conflict("denied_by_policy_total is below the paths listed"))
                .at("denied_by_policy_total");
        }
        Ok(Diagnosis {
            findings: list(d.findings, MAX_FINDINGS, Finding::try_from).at("findings")?,
            generated_at: unix_ms(d.generated_unix_ms).at("generated_unix_ms")?,
            denied_by_policy,
            denied_by_policy_total: d.denied_by_policy_total,
        })
    }
}

impl From<Diagnosis> for v1::DiagnosisResponse {
    fn from(d: Diagnosis) -> Self {
        v1::DiagnosisResponse {
            findings: d.findings.into_iter().map(Into::into).collect(),
            generated_unix_ms: d.generated_at.get(),
            denied_by_policy: d
                .denied_by_policy
                .into_iter()
                .map(|p| v1::PolicyDenial { path: p.path.into(), reason: p.reason.into() })
                .collect(),
            denied_by_policy_total: d.denied_by_policy_total,
        }
    }
}
