//! `--junit FILE`: the diagnosis or a probe run as a JUnit XML report for CI (the
//! `testsuites`/`testsuite`/`testcase` shape Jenkins, GitLab and GitHub's test reporters read).
//!
//! - `diagnose`: one test case per finding, a `failure` (message: the verdict; body: culprit,
//!   evidence, runbook, suggestion) when the finding is at or above `--fail-on`, passing with the
//!   same text as `system-out` otherwise; no finding: one passing case "cluster network"; paths
//!   NetworkPolicy denies as intended: one passing case listing them, never a failure.
//! - `probe`: one test case per step (a `failure` for a failed step, message: the step's
//!   description; body: its evidence), then a "verdict" case: a `failure` with the verdict, or an
//!   `error` when the run could not be done.
//!
//! Text is escaped for XML (`&<>"'`), and characters XML 1.0 cannot hold (control characters but
//! tab, newline and carriage return) become U+FFFD.

use std::path::Path;

use anyhow::{Context, Result};
use netdiag_collector::api::v1 as v1json;

use crate::query_cmd::name;

/// Escapes `text` for an XML attribute or element.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Kept in attributes too, where a literal would be normalized to a space.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// What a test case ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Pass { output: String },
    Failure { message: String, kind: String, body: String },
    Error { message: String },
}

#[derive(Debug, Clone, PartialEq)]
struct Case {
    classname: String,
    name: String,
    seconds: f64,
    outcome: Outcome,
}

/// One suite in a `testsuites` document.
fn document(suite: &str, cases: &[Case]) -> String {
    let failures = cases.iter().filter(|c| matches!(c.outcome, Outcome::Failure { .. })).count();
    let errors = cases.iter().filter(|c| matches!(c.outcome, Outcome::Error { .. })).count();
    let time: f64 = cases.iter().map(|c| c.seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"netdiag\" tests=\"{n}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">\n\
         <testsuite name=\"{}\" tests=\"{n}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"{time:.3}\">\n",
        escape(suite),
        n = cases.len(),
    ));
    for c in cases {
        out.push_str(&format!(
            "<testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
            escape(&c.classname),
            escape(&c.name),
            c.seconds
        ));
        match &c.outcome {
            Outcome::Pass { output } if output.is_empty() => out.push_str("/>\n"),
            Outcome::Pass { output } => {
                out.push_str(&format!(">\n<system-out>{}</system-out>\n</testcase>\n", escape(output)))
            }
            Outcome::Failure { message, kind, body } => out.push_str(&format!(
                ">\n<failure message=\"{}\" type=\"{}\">{}</failure>\n</testcase>\n",
                escape(message),
                escape(kind),
                escape(body)
            )),
            Outcome::Error { message } => out.push_str(&format!(
                ">\n<error message=\"{}\" type=\"not-done\">{}</error>\n</testcase>\n",
                escape(message),
                escape(message)
            )),
        }
    }
    out.push_str("</testsuite>\n</testsuites>\n");
    out
}

/// A finding's detail, one item a line.
fn finding_text(f: &v1json::Finding) -> String {
    let mut lines = vec![format!("[{}] {} ({})", name(&f.severity), f.verdict, f.id)];
    if let Some(c) = &f.culprit {
        lines.push(format!("culprit: {} {}", name(&c.kind), c.name));
    }
    lines.extend(f.affected.iter().map(|a| format!("affected: {a}")));
    lines.extend(f.evidence.iter().map(|e| format!("evidence: {e}")));
    if let Some(r) = &f.runbook {
        lines.push(format!("runbook: §{r}"));
    }
    if !f.suggestion.is_empty() {
        lines.push(format!("suggestion: {}", f.suggestion));
    }
    lines.join("\n")
}

/// The diagnosis as a report; `fails` says whether a finding of a severity is a failure.
pub(crate) fn diagnosis(d: &v1json::DiagnosisResponse, fails: impl Fn(v1json::Severity) -> bool) -> String {
    let mut cases: Vec<Case> = d
        .findings
        .iter()
        .map(|f| {
            let culprit =
                f.culprit.as_ref().map(|c| format!(" {} {}", name(&c.kind), c.name)).unwrap_or_default();
            let outcome = if fails(f.severity) {
                Outcome::Failure { message: f.verdict.clone(), kind: f.id.clone(), body: finding_text(f) }
            } else {
                Outcome::Pass { output: format!("below --fail-on: {}", finding_text(f)) }
            };
            Case {
                classname: "netdiag.diagnose".into(),
                name: format!("{}{culprit}", f.id),
                seconds: 0.0,
                outcome,
            }
        })
        .collect();
    if cases.is_empty() {
        cases.push(Case {
            classname: "netdiag.diagnose".into(),
            name: "cluster network".into(),
            seconds: 0.0,
            outcome: Outcome::Pass { output: "no findings: every probed path works".into() },
        });
    }
    if d.denied_by_policy_total > 0 {
        let mut lines =
            vec![format!("{} paths denied by NetworkPolicy, as intended", d.denied_by_policy_total)];
        lines.extend(d.denied_by_policy.iter().map(|p| format!("{}: {}", p.path, p.reason)));
        cases.push(Case {
            classname: "netdiag.diagnose".into(),
            name: "NetworkPolicy denials as intended".into(),
            seconds: 0.0,
            outcome: Outcome::Pass { output: lines.join("\n") },
        });
    }
    document("netdiag diagnose", &cases)
}

/// A probe run as a report.
pub(crate) fn probe(r: &v1json::ProbeResponse) -> String {
    let classname = format!("netdiag.probe.{} → {}", r.from, r.to);
    // A path NetworkPolicy denies, whose steps fail as it intends, is no problem.
    let as_intended = crate::probe_cmd::denied_as_intended(r.verdict.as_ref());
    let mut cases: Vec<Case> = r
        .steps
        .iter()
        .map(|s| {
            let evidence = s.evidence.join("\n");
            let body = if evidence.is_empty() {
                s.result.as_ref().map(|r| r.summary.clone()).unwrap_or_default()
            } else {
                evidence
            };
            let outcome = if s.status == v1json::StepStatus::Failed && as_intended {
                Outcome::Pass { output: format!("failed, as NetworkPolicy intends: {body}") }
            } else if s.status == v1json::StepStatus::Failed {
                Outcome::Failure { message: s.description.clone(), kind: s.name.clone(), body }
            } else {
                Outcome::Pass { output: format!("{}: {body}", name(&s.status)) }
            };
            Case {
                classname: classname.clone(),
                name: format!("[{}] {}: {}", s.index, s.name, s.description),
                seconds: s.elapsed_ms / 1000.0,
                outcome,
            }
        })
        .collect();
    let outcome = match (&r.verdict, r.done.end) {
        (Some(f), v1json::RunEnd::Completed) if as_intended => Outcome::Pass { output: f.verdict.clone() },
        (Some(f), _) => {
            Outcome::Failure { message: f.verdict.clone(), kind: f.id.clone(), body: finding_text(f) }
        }
        (None, v1json::RunEnd::Completed) => {
            Outcome::Pass { output: "no problem found: every step passed".into() }
        }
        (None, end) => Outcome::Error {
            message: format!(
                "the run could not be done ({}): {}",
                name(&end),
                r.done.error.as_deref().unwrap_or("no reason given")
            ),
        },
    };
    cases.push(Case { classname, name: "verdict".into(), seconds: 0.0, outcome });
    document("netdiag probe", &cases)
}

/// A report of one case in error: the command could not do its job.
pub(crate) fn not_done(suite: &str, case: &str, message: &str) -> String {
    let classname = format!("netdiag.{}", suite.trim_start_matches("netdiag "));
    document(
        suite,
        &[Case {
            classname,
            name: case.into(),
            seconds: 0.0,
            outcome: Outcome::Error { message: message.into() },
        }],
    )
}

pub(crate) fn write(path: &Path, report: &str) -> Result<()> {
    std::fs::write(path, report)
        .with_context(|| format!("cannot write the JUnit report --junit {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_what_xml_cannot_hold_is_replaced() {
        assert_eq!(escape(r#"a<b>&"c"'d'"#), "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;");
        assert_eq!(escape("x\u{0}y\u{7}z\u{1b}"), "x\u{FFFD}y\u{FFFD}z\u{FFFD}");
        assert_eq!(escape("l1\nl2\tt\r"), "l1&#10;l2&#9;t&#13;");
        assert_eq!(escape("node-1→node-2 §1.6"), "node-1→node-2 §1.6");
    }

    fn finding(severity: v1json::Severity, verdict: &str) -> v1json::Finding {
        v1json::Finding {
            key: "k".into(),
            id: "node-isolated".into(),
            severity,
            verdict: verdict.into(),
            culprit: Some(v1json::Culprit { kind: v1json::CulpritType::Node, name: "node-3".into() }),
            affected: vec![],
            evidence: vec!["12/12 probes <to> node-3 failed".into()],
            runbook: Some("1.2".into()),
            suggestion: String::new(),
            first_seen_unix_ms: None,
            last_seen_unix_ms: None,
        }
    }

    fn diag(findings: Vec<v1json::Finding>, denied: u64) -> v1json::DiagnosisResponse {
        v1json::DiagnosisResponse {
            findings,
            generated_unix_ms: 0,
            denied_by_policy: (0..denied)
                .map(|i| v1json::PolicyDenial { path: format!("a/p{i} → b/q"), reason: "deny-all".into() })
                .collect(),
            denied_by_policy_total: denied,
        }
    }

    #[test]
    fn a_finding_at_the_threshold_is_a_failure_with_verdict_and_evidence() {
        let d = diag(
            vec![
                finding(v1json::Severity::Critical, "node node-3 is cut off & \"isolated\""),
                finding(v1json::Severity::Info, "minor"),
            ],
            2,
        );
        let xml = diagnosis_xml(&d);
        let want = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<testsuites name=\"netdiag\" tests=\"3\" failures=\"1\" errors=\"0\" time=\"0.000\">\n\
<testsuite name=\"netdiag diagnose\" tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"0\" time=\"0.000\">\n\
<testcase classname=\"netdiag.diagnose\" name=\"node-isolated node node-3\" time=\"0.000\">\n\
<failure message=\"node node-3 is cut off &amp; &quot;isolated&quot;\" type=\"node-isolated\">[critical] node node-3 is cut off &amp; &quot;isolated&quot; (node-isolated)&#10;culprit: node node-3&#10;evidence: 12/12 probes &lt;to&gt; node-3 failed&#10;runbook: §1.2</failure>\n\
</testcase>\n\
<testcase classname=\"netdiag.diagnose\" name=\"node-isolated node node-3\" time=\"0.000\">\n\
<system-out>below --fail-on: [info] minor (node-isolated)&#10;culprit: node node-3&#10;evidence: 12/12 probes &lt;to&gt; node-3 failed&#10;runbook: §1.2</system-out>\n\
</testcase>\n\
<testcase classname=\"netdiag.diagnose\" name=\"NetworkPolicy denials as intended\" time=\"0.000\">\n\
<system-out>2 paths denied by NetworkPolicy, as intended&#10;a/p0 → b/q: deny-all&#10;a/p1 → b/q: deny-all</system-out>\n\
</testcase>\n\
</testsuite>\n\
</testsuites>\n";
        assert_eq!(xml, want);
    }

    fn diagnosis_xml(d: &v1json::DiagnosisResponse) -> String {
        super::diagnosis(d, |s| s >= v1json::Severity::Warning)
    }

    #[test]
    fn no_finding_is_one_passing_case() {
        let xml = diagnosis_xml(&diag(vec![], 0));
        assert!(xml.contains("tests=\"1\" failures=\"0\""), "{xml}");
        assert!(xml.contains("name=\"cluster network\""), "{xml}");
        assert!(!xml.contains("<failure"), "{xml}");
        wellformed(&xml);
    }

    fn step(index: u32, status: v1json::StepStatus, evidence: &str) -> v1json::ProbeStep {
        v1json::ProbeStep {
            index,
            name: "tcp".into(),
            description: format!("TCP connect 10.96.0.20:2379 #{index}"),
            status,
            elapsed_ms: 1500.0,
            evidence: vec![evidence.into()],
            result: None,
        }
    }

    fn run(verdict: Option<v1json::Finding>, done: v1json::RunDoneJson) -> v1json::ProbeResponse {
        v1json::ProbeResponse {
            run_id: "r1".into(),
            from: "tidb/demo-tidb-0".into(),
            to: "svc/tidb/demo-pd:2379".into(),
            steps: vec![
                step(1, v1json::StepStatus::Ok, "connected"),
                step(2, v1json::StepStatus::Failed, "no SYN-ACK\u{7}"),
            ],
            verdict,
            done,
            elapsed_ms: 3000.0,
            policy: None,
        }
    }

    #[test]
    fn a_path_denied_as_policy_intends_passes() {
        let completed = v1json::RunDoneJson { end: v1json::RunEnd::Completed, error: None };
        let mut denied = finding(v1json::Severity::Info, "denied by NetworkPolicy, as intended");
        denied.id = "denied-by-policy".into();
        let r = run(Some(denied), completed.clone());
        let xml = probe(&r);
        assert!(xml.contains("failures=\"0\" errors=\"0\""), "{xml}");
        assert!(xml.contains("failed, as NetworkPolicy intends: no SYN-ACK"), "{xml}");
        assert_eq!(crate::probe_cmd::exit_code(r.verdict.as_ref(), &completed), 0);
        let other = run(Some(finding(v1json::Severity::Critical, "pd down")), completed.clone());
        assert_ne!(crate::probe_cmd::exit_code(other.verdict.as_ref(), &completed), 0);
    }

    #[test]
    fn a_run_is_a_case_per_step_and_one_for_the_verdict() {
        let completed = v1json::RunDoneJson { end: v1json::RunEnd::Completed, error: None };
        let xml = probe(&run(Some(finding(v1json::Severity::Critical, "pd down")), completed.clone()));
        assert!(xml.contains("tests=\"3\" failures=\"2\" errors=\"0\" time=\"3.000\""), "{xml}");
        assert!(xml.contains("<failure message=\"TCP connect 10.96.0.20:2379 #2\" type=\"tcp\">no SYN-ACK\u{FFFD}</failure>"), "{xml}");
        assert!(xml.contains("name=\"verdict\" time=\"0.000\">\n<failure message=\"pd down\""), "{xml}");
        assert!(
            xml.contains("classname=\"netdiag.probe.tidb/demo-tidb-0 → svc/tidb/demo-pd:2379\""),
            "{xml}"
        );
        wellformed(&xml);
        let failed =
            v1json::RunDoneJson { end: v1json::RunEnd::Failed, error: Some("the agent went away".into()) };
        let xml = probe(&run(None, failed));
        assert!(xml.contains("errors=\"1\""), "{xml}");
        assert!(
            xml.contains("<error message=\"the run could not be done (failed): the agent went away\""),
            "{xml}"
        );
        let xml = not_done("netdiag diagnose", "cluster network", "cannot reach <the> collector");
        assert!(xml.contains("<error message=\"cannot reach &lt;the&gt; collector\""), "{xml}");
        wellformed(&xml);
    }

    /// A small check of what a JUnit reader needs: tags balance, attribute values are quoted
    /// and hold no raw `<`, `&` only starts an entity, and no character XML 1.0 forbids.
    fn wellformed(xml: &str) {
        let body = xml.strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n").expect("declaration");
        assert!(!body.chars().any(|c| (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t')), "{xml}");
        for (i, _) in body.match_indices('&') {
            let rest = &body[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#10;", "&#13;", "&#9;"]
                    .iter()
                    .any(|e| rest.starts_with(e)),
                "a bare & at {i}: {xml}"
            );
        }
        let mut stack: Vec<String> = Vec::new();
        let mut rest = body;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("a tag ends") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "a raw < inside a tag: {tag}");
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes: {tag}");
            let tag_name =
                |t: &str| t.split_whitespace().next().unwrap_or_default().trim_end_matches('/').to_owned();
            if let Some(close) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(close), "mismatched </{close}>: {xml}");
            } else if !tag.ends_with('/') {
                stack.push(tag_name(tag));
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
    }
}
