//! The query service: findings and diagnoses, matrix requests and snapshots, agent listings.

use netdiag_model::{
    AgentInfo, Diagnosis, Finding, MatrixLevel, MatrixQuery, MatrixSnapshot, ProbeKind, Text,
};

use super::fixtures::*;
use crate::v1;

#[test]
fn query_messages_round_trip() {
    round_trip::<Finding, v1::Finding>(finding());
    round_trip::<Finding, v1::Finding>(Finding {
        culprit: None,
        affected: vec![],
        evidence: vec![],
        runbook: None,
        suggestion: Default::default(),
        ..finding()
    });
    round_trip::<Diagnosis, v1::DiagnosisResponse>(Diagnosis {
        findings: vec![finding()],
        generated_at: at(1_700_000_000_000),
        denied_by_policy: vec![],
        denied_by_policy_total: 0,
    });
    round_trip::<Diagnosis, v1::DiagnosisResponse>(Diagnosis {
        findings: vec![],
        generated_at: at(1_700_000_000_000),
        denied_by_policy: vec![netdiag_model::finding::PolicyDenial {
            path: Text::new("kube-system/coredns-0 -> tidb/demo-pd-0:2379 tcp".to_owned()).unwrap(),
            reason: Text::new(
                "denied: ingress is isolated by policy tidb/only-tidb and no rule admits it".to_owned(),
            )
            .unwrap(),
        }],
        denied_by_policy_total: 7,
    });
    round_trip::<MatrixSnapshot, v1::MatrixResponse>(matrix());
    round_trip::<Vec<AgentInfo>, v1::ListAgentsResponse>(agents());
    for q in [MatrixQuery::default(), MatrixQuery { level: MatrixLevel::Node, kind: Some(ProbeKind::Mtu) }] {
        round_trip::<MatrixQuery, v1::MatrixRequest>(q);
    }
}

#[test]
fn unspecified_matrix_request_means_every_kind_per_pod() {
    assert_eq!(MatrixQuery::try_from(v1::MatrixRequest::default()), Ok(MatrixQuery::default()));
    check_rejects::<MatrixQuery, _>(
        &v1::MatrixRequest::default(),
        &[
            ("level 3", |r| r.level = 3, "level", "3 is not a known matrix level"),
            ("kind 6", |r| r.kind = 6, "kind", "6 is not a known probe kind"),
        ],
    );
}

#[test]
fn hostile_findings() {
    let mut valid = v1::DiagnosisResponse::from(Diagnosis {
        findings: vec![finding()],
        generated_at: at(1),
        denied_by_policy: vec![],
        denied_by_policy_total: 0,
    });
    valid.denied_by_policy = vec![v1::PolicyDenial { path: "a -> b tcp".into(), reason: "denied".into() }];
    valid.denied_by_policy_total = 1;
    check_rejects::<Diagnosis, _>(
        &valid,
        &[
            ("no time", |d| d.generated_unix_ms = 0, "generated_unix_ms", "is missing"),
            ("bad id", |d| d.findings[0].id = "node pair".into(), "findings[0].id", "contains ' '"),
            (
                "severity unknown",
                |d| d.findings[0].severity = 4,
                "findings[0].severity",
                "4 is not a known severity",
            ),
            ("no verdict", |d| d.findings[0].verdict = String::new(), "findings[0].verdict", "is missing"),
            (
                "denials undercounted",
                |d| d.denied_by_policy_total = 0,
                "denied_by_policy_total",
                "below the paths listed",
            ),
            (
                "too many denials",
                |d| d.denied_by_policy = vec![d.denied_by_policy[0].clone(); 1_001],
                "denied_by_policy",
                "",
            ),
            (
                "culprit type",
                |d| d.findings[0].culprit.as_mut().unwrap().r#type = "nodepair".into(),
                "findings[0].culprit.type",
                "not a culprit type",
            ),
            (
                "culprit no type",
                |d| d.findings[0].culprit.as_mut().unwrap().r#type = String::new(),
                "findings[0].culprit.type",
                "is missing",
            ),
            (
                "culprit no name",
                |d| d.findings[0].culprit.as_mut().unwrap().name = String::new(),
                "findings[0].culprit.name",
                "is missing",
            ),
            (
                "affected",
                |d| d.findings[0].affected = vec![String::new(); 10_001],
                "findings[0].affected",
                "more than the 10000",
            ),
            (
                "runbook",
                |d| d.findings[0].runbook = "\u{1b}]8;;evil\u{7}".into(),
                "findings[0].runbook",
                "contains",
            ),
            (
                "too many",
                |d| d.findings = vec![v1::Finding::default(); 10_001],
                "findings",
                "more than the 10000",
            ),
        ],
    );
}

#[test]
fn hostile_matrices() {
    let valid = v1::MatrixResponse::from(matrix());
    check_rejects::<MatrixSnapshot, _>(
        &valid,
        &[
            ("no time", |m| m.generated_unix_ms = 0, "generated_unix_ms", "is missing"),
            ("loss above 1", |m| m.cells[0].loss_ratio = 1.5, "cells[0].loss_ratio", "0.0 to 1.0"),
            ("loss NaN", |m| m.cells[0].loss_ratio = f64::NAN, "cells[0].loss_ratio", "NaN"),
            ("negative rtt", |m| m.cells[0].rtt_p50_ms = -1.0, "cells[0].rtt_p50_ms", "out of range"),
            ("NaN rtt", |m| m.cells[0].rtt_p50_ms = f64::NAN, "cells[0].rtt_p50_ms", "out of range"),
            (
                "infinite rtt",
                |m| m.cells[1].rtt_p99_ms = f64::INFINITY,
                "cells[1].rtt_p99_ms",
                "out of range",
            ),
            (
                "rtt over an hour",
                |m| m.cells[0].rtt_p99_ms = 3_600_001.0,
                "cells[0].rtt_p99_ms",
                "out of range",
            ),
            ("p99 below p50", |m| m.cells[0].rtt_p99_ms = 0.1, "cells[0].rtt_p99_ms", "below the median"),
            ("no source", |m| m.cells[0].source = String::new(), "cells[0].source", "is missing"),
            ("status", |m| m.cells[1].status = 0, "cells[1].status", "cell status is unspecified"),
            ("kind", |m| m.cells[1].kind = 0, "cells[1].kind", "probe kind is unspecified"),
            (
                "last update",
                |m| m.cells[1].last_update_unix_ms = -7,
                "cells[1].last_update_unix_ms",
                "out of range",
            ),
        ],
    );
}

#[test]
fn hostile_agent_lists() {
    let valid = v1::ListAgentsResponse::from(agents());
    check_rejects::<Vec<AgentInfo>, _>(
        &valid,
        &[
            ("bad node", |l| l.agents[0].node = "-node".into(), "agents[0].node", "-node"),
            (
                "no version",
                |l| l.agents[0].agent_version = String::new(),
                "agents[0].agent_version",
                "is empty",
            ),
            (
                "capability",
                |l| l.agents[0].capabilities = vec![99],
                "agents[0].capabilities[0]",
                "99 is not a known capability",
            ),
            (
                "since",
                |l| l.agents[0].connected_since_unix_ms = -1,
                "agents[0].connected_since_unix_ms",
                "out of range",
            ),
            (
                "too many",
                |l| l.agents = vec![v1::AgentInfo::default(); 100_001],
                "agents",
                "more than the 100000",
            ),
        ],
    );
}
