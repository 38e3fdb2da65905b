//! `kubectl netdiag` against a lab's collector in kubernetes mode, through the fake API server's
//! service proxy: the real `kubectl-netdiag` binary with the fake's kubeconfig reads the
//! diagnosis (exit status and JUnit report following it), runs
//! `probe --from tidb/demo-tidb-0 --to svc/tidb/demo-pd:2379` to a verdict with the collector's
//! token in `X-Netdiag-Token`, is refused with a message naming the missing permission when RBAC
//! forbids `create` on services/proxy, and works as `kubectl netdiag …` through real kubectl.
//!
//! Needs root (the lab) and kubectl.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use netdiag_collector::runs::auth::ApiToken;
use netdiag_collector::runs::config::RunsConfig;
use netdiag_tests::cluster::{ClusterOptions, LabCluster, describe_findings};
use netdiag_tests::lab::TestLab;
use netdiag_tests::processes::binary;

const INTERVAL: Duration = Duration::from_secs(2);
const TOKEN: &str = "plugin-test-token-0123456789abcdef";

/// The collector's Service as the chart makes it. The fake allocates no cluster IP, so the
/// collector's inventory leaves it out (the lab's matrix is unchanged).
fn collector_service() -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "netdiag-collector", "namespace": "netdiag"},
        "spec": {"type": "ClusterIP", "ports": [
            {"name": "http", "port": 7600, "targetPort": "http", "protocol": "TCP"},
            {"name": "agents", "port": 7700, "targetPort": "agents", "protocol": "TCP"},
        ]},
    }))
    .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn plugin(kubeconfig: &Path, args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(binary("kubectl-netdiag"));
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args).env_remove("NETDIAG_API_TOKEN");
    cmd.env_remove("NETDIAG_API_TOKEN_FILE").env_remove("KUBECONFIG");
    if let Some(t) = token {
        cmd.env("NETDIAG_API_TOKEN", t);
    }
    cmd.output().expect("kubectl-netdiag runs")
}

#[test]
fn kubectl_netdiag_reads_and_probes_through_the_service_proxy_as_rbac_allows() {
    let runs = RunsConfig { token: Some(ApiToken::new(TOKEN).unwrap()), ..RunsConfig::default() };
    let opts = ClusterOptions { kubernetes: true, runs, ..ClusterOptions::default() };
    let c = LabCluster::start_opts(TestLab::up(), INTERVAL, opts);
    let fake = &c.kube.as_ref().unwrap().fake;
    fake.apply(&collector_service()).unwrap();
    // The endpoint behind the Service: the collector's API on the host's loopback.
    fake.proxy_service("netdiag", "netdiag-collector", "http", c.http);
    let kubeconfig = c.lab.state.dir.join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();
    c.warm_up();
    let healthy = c.diagnosis();
    assert!(healthy.findings.is_empty(), "a healthy lab:\n  {}", describe_findings(&healthy.findings));

    // diagnose: the lab's state, exit 0, a JUnit report with one passing case.
    let junit = c.lab.state.dir.join("diagnose.xml");
    let out = plugin(&kubeconfig, &["diagnose", "--junit", junit.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no findings: every probed path works"), "{}", text(&out));
    let report = std::fs::read_to_string(&junit).unwrap();
    assert!(
        report.contains("tests=\"1\" failures=\"0\"") && report.contains("name=\"cluster network\""),
        "{report}"
    );
    let before = fake.proxied_requests();
    assert!(before >= 1, "it went through the API server's proxy");

    // matrix and agents, as JSON in the API's shapes.
    let out = plugin(&kubeconfig, &["matrix", "--level", "node", "-o", "json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let matrix: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cells = matrix["cells"].as_array().unwrap();
    assert!(!cells.is_empty() && cells.iter().all(|c| c["status"] == "ok"), "{matrix:#}");
    let out = plugin(&kubeconfig, &["agents"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for node in &c.lab.plan.nodes {
        assert!(text(&out).contains(node.name.as_str()), "{}", text(&out));
    }

    // probe: the command, with the collector's token, completes with a verdict.
    let probe = ["probe", "--from", "tidb/demo-tidb-0", "--to", "svc/tidb/demo-pd:2379"];
    let junit = c.lab.state.dir.join("probe.xml");
    let mut args = probe.to_vec();
    args.extend(["--junit", junit.to_str().unwrap()]);
    let out = plugin(&kubeconfig, &args, Some(TOKEN));
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("probing tidb/demo-tidb-0 → svc/tidb/demo-pd:2379"), "{said}");
    assert!(said.contains("no problem found: every step passed"), "{said}");
    assert!(said.contains("[1] ok"), "the steps are printed: {said}");
    let report = std::fs::read_to_string(&junit).unwrap();
    assert!(
        report.contains("failures=\"0\" errors=\"0\"") && report.contains("name=\"verdict\""),
        "{report}"
    );

    // Without the token the collector refuses the run (the proxy passed it on).
    let out = plugin(&kubeconfig, &probe, None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("the collector refused: on-demand runs need the collector's API token"),
        "{}",
        text(&out)
    );

    // RBAC: without `create` on services/proxy the run never reaches the collector; reads still work.
    fake.forbid("create", "services/proxy");
    let forwarded = fake.proxied_requests();
    let out = plugin(&kubeconfig, &probe, Some(TOKEN));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("RBAC: you may not create services/proxy in namespace netdiag"),
        "the refusal names the permission: {}",
        text(&out)
    );
    assert_eq!(fake.proxied_requests(), forwarded, "the API server stopped it");
    let out = plugin(&kubeconfig, &["diagnose"], None);
    assert_eq!(out.status.code(), Some(0), "get is still allowed: {}", text(&out));
    fake.allow("create", "services/proxy");

    // A wrong namespace is named.
    let out = plugin(&kubeconfig, &["diagnose", "-n", "elsewhere"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("Service elsewhere/netdiag-collector is not there"), "{}", text(&out));

    // Real kubectl finds the plugin on PATH and passes the arguments (and KUBECONFIG) on.
    let bin_dir = binary("kubectl-netdiag").parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("kubectl")
        .args(["netdiag", "diagnose"])
        .env("PATH", &path)
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("kubectl is installed");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no findings"), "{}", text(&out));

    // A fault: diagnose names it, exits 1, and its JUnit report has the failure.
    c.lab.fault("node-isolate node-3");
    let found = c.wait_for(INTERVAL * 8, |c| {
        c.diagnosis().findings.iter().any(|f| f.id.as_str() == "node-isolated").then_some(())
    });
    assert!(found.is_some(), "node-isolated never found:\n  {}", describe_findings(&c.diagnosis().findings));
    let junit = c.lab.state.dir.join("diagnose-fault.xml");
    let out = Command::new("kubectl")
        .args(["netdiag", "diagnose", "--fail-on", "warning", "--junit", junit.to_str().unwrap()])
        .env("PATH", &path)
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("node node-3 is cut off"), "{}", text(&out));
    let report = std::fs::read_to_string(&junit).unwrap();
    assert!(
        report.contains("name=\"node-isolated node node-3\"")
            && report.contains("<failure message=\"node node-3 is cut off"),
        "{report}"
    );
}
