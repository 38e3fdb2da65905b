//! The running system on a lab that enforces NetworkPolicies (`lab/topologies/default.yaml`):
//! the paths the policies deny fail, as intended, and the diagnosis says nothing of them but
//! lists them apart; a node whose plugin stops enforcing is named; a deny no policy asks for is
//! a failure like any other; an on-demand run says what policy says of its path before it
//! probes. Needs root.

// Helpers here panic on purpose: a panic is how a test reports what it found.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use netdiag_collector::state::now;
use netdiag_lab::topology::DEFAULT_TOPOLOGY;
use netdiag_model::finding::CulpritKind;
use netdiag_model::matrix::{CellStatus, MatrixLevel, MatrixQuery};
use netdiag_model::probe::ProbeKind;
use netdiag_tests::cluster::{LabCluster, describe_findings};
use netdiag_tests::lab::TestLab;

const INTERVAL: Duration = Duration::from_secs(2);

fn settle() -> Duration {
    INTERVAL * 4
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[test]
fn denied_paths_are_intended_and_policy_faults_are_named() {
    let c = LabCluster::start(TestLab::from_yaml(DEFAULT_TOPOLOGY), INTERVAL);
    c.warm_up();

    // Healthy under policies: the denied paths fail and are listed apart, no finding.
    let quiet = c.wait_for(settle(), |c| {
        let d = c.diagnosis();
        (d.findings.is_empty() && d.denied_by_policy_total > 0).then_some(d)
    });
    let Some((d, took)) = quiet else {
        let d = c.diagnosis();
        panic!(
            "a healthy lab under its policies: findings\n  {}\nand {} paths denied by policy",
            d.findings
                .iter()
                .map(|f| format!(
                    "{} [{}]: {}\n    {}",
                    f.id,
                    f.culprit.as_ref().map(|c| c.name.as_str()).unwrap_or(""),
                    f.verdict,
                    f.evidence.iter().map(|e| e.as_str()).collect::<Vec<_>>().join("\n    ")
                ))
                .collect::<Vec<_>>()
                .join("\n  "),
            d.denied_by_policy_total
        );
    };
    eprintln!(
        "healthy under policies: no finding, {} paths denied as intended, after {took:?}",
        d.denied_by_policy_total
    );
    assert!(
        d.denied_by_policy.iter().any(|p| p
            .path
            .as_str()
            .starts_with("kube-system/coredns-0 -> tidb/demo-pd-")
            && p.reason.as_str().contains("denied")),
        "coredns may not reach PD's client port: {:#?}",
        d.denied_by_policy.iter().take(20).collect::<Vec<_>>()
    );

    // The denied paths are still probed (that is how the next fault is seen), but once every
    // few rounds: fewer samples than the paths policy allows.
    std::thread::sleep(INTERVAL * 8);
    let denied: BTreeSet<String> =
        c.diagnosis().denied_by_policy.iter().map(|p| p.path.to_string()).collect();
    let (mut denied_samples, mut allowed_samples) = (Vec::new(), Vec::new());
    for cell in
        c.collector.matrix(&MatrixQuery { level: MatrixLevel::Pod, kind: Some(ProbeKind::Tcp) }, now()).cells
    {
        let path = format!("{} -> {} {}", cell.source, cell.destination, cell.kind);
        if denied.contains(&path) {
            denied_samples.push(cell.samples);
        } else if cell.status == CellStatus::Ok {
            allowed_samples.push(cell.samples);
        }
    }
    let (d, a) = (median(&mut denied_samples), median(&mut allowed_samples));
    eprintln!(
        "samples per TCP cell, median: {d} denied ({} cells), {a} allowed ({} cells)",
        denied_samples.len(),
        allowed_samples.len()
    );
    assert!(!denied_samples.is_empty() && d > 0, "denied paths are still probed: {denied_samples:?}");
    assert!(d * 2 < a, "denied paths probed about as often as allowed ones: {d} vs {a}");

    // node-2's plugin stops enforcing: the paths its pods should refuse connect.
    c.lab.fault("policy-not-enforced node-2");
    let named = c.wait_for(settle(), |c| {
        let d = c.diagnosis();
        let ok = d.findings.len() == 1
            && d.findings[0].id.as_str() == "policy-not-enforced"
            && d.findings[0]
                .culprit
                .as_ref()
                .is_some_and(|cu| cu.kind == CulpritKind::Node && cu.name.as_str() == "node-2");
        ok.then_some(())
    });
    assert!(
        named.is_some(),
        "policy-not-enforced node-2: findings now\n  {}",
        describe_findings(&c.diagnosis().findings)
    );
    eprintln!("policy-not-enforced node-2 named in {:?}", named.unwrap().1);
    c.lab.heal();
    let cleared = c.wait_for(settle(), |c| c.diagnosis().findings.is_empty().then_some(()));
    assert!(cleared.is_some(), "healed, findings remain:\n  {}", describe_findings(&c.diagnosis().findings));

    // A deny no policy asks for: tidb-0 may reach pd-1's client port, and now cannot. The rule
    // sits in pd-1's own namespace, and its inspection carries it: the finding names the pod's
    // firewall and quotes the rule.
    c.lab.fault("extra-deny tidb/demo-pd-1 tidb/demo-tidb-0");
    let named = c.wait_for(settle(), |c| {
        let d = c.diagnosis();
        let ok = d.findings.len() == 1
            && d.findings[0].id.as_str() == "firewall-drop"
            && d.findings[0]
                .culprit
                .as_ref()
                .is_some_and(|cu| cu.kind == CulpritKind::Pod && cu.name.as_str() == "tidb/demo-pd-1");
        ok.then_some(())
    });
    assert!(
        named.is_some(),
        "extra-deny pd-1 from tidb-0: findings now\n  {}",
        describe_findings(&c.diagnosis().findings)
    );
    eprintln!(
        "extra-deny named as pd-1's own firewall in {:?}: {}",
        named.unwrap().1,
        describe_findings(&c.diagnosis().findings)
    );
}
