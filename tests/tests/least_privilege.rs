//! The agent with exactly the capabilities the DaemonSet grants — read from both manifests,
//! which must agree — as the real binary in each lab node's namespace under `setpriv`
//! (bounding, inheritable and ambient sets, `--no-new-privs`): probes from every pod and
//! inspections reach a real collector, and nothing is reported missing. Then node-1's agent
//! runs without each capability in turn and says which one is missing and what stops working,
//! and what it says is what happens.
//!
//! Needs root (the lab), `setpriv` (util-linux) and the workspace's binaries.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use netdiag_lab::plan::NodePlan;
use netdiag_tests::http::get_json;
use netdiag_tests::lab::TestLab;
use netdiag_tests::processes::{self, AGENTS_PORT, Daemon, binary};

const INTERVAL: Duration = Duration::from_secs(1);

/// The capabilities a manifest's agent container adds (the list under `add:`), lower case
/// without `CAP_`, as setpriv takes them.
fn added_capabilities(manifest: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut lines = text.lines().skip_while(|l| l.trim() != "add:").skip(1);
    let mut caps = BTreeSet::new();
    for line in lines.by_ref() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        let Some(cap) = t.strip_prefix("- ") else { break };
        caps.insert(cap.trim().to_lowercase());
    }
    caps
}

fn granted() -> BTreeSet<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let kustomize = added_capabilities(&format!("{root}/deploy/kustomize/base/agent-daemonset.yaml"));
    let helm = added_capabilities(&format!("{root}/deploy/helm/netdiag/templates/agent-daemonset.yaml"));
    assert!(!kustomize.is_empty(), "no capabilities found in the kustomize DaemonSet");
    assert_eq!(kustomize, helm, "Helm and kustomize grant the agent different capabilities");
    kustomize
}

/// `node`'s agent inside its namespace, with exactly `caps`.
fn agent(lab: &TestLab, node: &NodePlan, caps: &BTreeSet<String>, tag: &str) -> Daemon {
    let set = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &node.netns, "setpriv"])
        .arg(format!("--bounding-set={set}"))
        .arg(format!("--inh-caps={set}"))
        .arg(format!("--ambient-caps={set}"))
        .args(["--no-new-privs", "--"])
        .arg(binary("netdiag-agent"))
        .args(["--node", node.name.as_str()])
        .args(["--collector", &format!("http://{}:{AGENTS_PORT}", lab.plan.control_ip)])
        .arg("--interval")
        .arg(format!("{}ms", INTERVAL.as_millis()))
        .arg("--inventory")
        .arg(format!("file:{}", lab.state.inventory_path().display()))
        .args(["--listen", "127.0.0.1:9464", "--log", "info"])
        .env("NO_COLOR", "1");
    Daemon::spawn(cmd, lab.state.dir.join(format!("agent-{}-{tag}.log", node.name)))
}

fn wait<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = check() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

fn log(d: &Daemon) -> String {
    std::fs::read_to_string(&d.log).unwrap_or_default()
}

/// Sources (pods of `node`) with an `ok` pod-level cell of `kind`.
fn ok_sources(port: u16, kind: &str, pods: &[String]) -> BTreeSet<String> {
    let Ok((200, m)) = get_json(
        processes::api(port),
        &format!("/api/v1/matrix?level=pod&kind={kind}"),
        Duration::from_secs(5),
    ) else {
        return BTreeSet::new();
    };
    m["cells"]
        .as_array()
        .map(|cells| {
            cells
                .iter()
                .filter(|c| c["status"] == "ok")
                .filter_map(|c| c["source"].as_str())
                .filter(|s| pods.iter().any(|p| p == s))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn pods_of(lab: &TestLab, node: &NodePlan) -> Vec<String> {
    lab.plan.pods.iter().filter(|p| p.node == node.name).map(|p| p.pod.to_string()).collect()
}

#[test]
fn the_agent_works_with_exactly_the_daemonsets_capabilities_and_names_each_one_missing() {
    let caps = granted();
    let lab = TestLab::up();
    let port = processes::free_loopback_port();
    let collector = processes::collector(&lab, port, "privileges");
    let agents: Vec<Daemon> = lab.plan.nodes.iter().map(|n| agent(&lab, n, &caps, "granted")).collect();
    let explain = |agents: &[Daemon]| {
        let mut out = format!("collector:\n{}", collector.log_tail());
        for a in agents {
            out.push_str(&format!("\n{}:\n{}", a.log.display(), a.log_tail()));
        }
        out
    };

    // Probes from every pod of every node (setns and raw sockets work), ICMP and TCP.
    for node in &lab.plan.nodes {
        let pods = pods_of(&lab, node);
        for kind in ["icmp", "tcp"] {
            let all = wait(Duration::from_secs(30), || {
                let ok = ok_sources(port, kind, &pods);
                (ok.len() == pods.len()).then_some(())
            });
            assert!(
                all.is_some(),
                "{kind} probes from {}'s pods {pods:?} never all worked\n{}",
                node.name,
                explain(&agents)
            );
        }
    }
    // Inspections reached the collector, and nothing in them failed to read.
    let inspections = wait(Duration::from_secs(10), || {
        let (_, text) = get_text(port, "/metrics")?;
        let n: f64 = text
            .lines()
            .find(|l| l.starts_with("netdiag_ingest_inspections_total"))?
            .split_whitespace()
            .last()?
            .parse()
            .ok()?;
        (n >= lab.plan.nodes.len() as f64).then_some(n)
    });
    assert!(inspections.is_some(), "no inspections reached the collector\n{}", explain(&agents));
    for a in &agents {
        let text = log(a);
        assert!(text.contains("the agent has the capabilities it uses"), "{}:\n{text}", a.log.display());
        assert!(!text.contains("runs without"), "{}:\n{text}", a.log.display());
        assert!(!text.contains("inspection incomplete"), "{}:\n{text}", a.log.display());
        assert!(!text.contains("cannot enter the pod's namespace"), "{}:\n{text}", a.log.display());
    }

    // node-1's agent without each capability in turn: it names the capability and what stops
    // working, and that is what happens.
    let node1 = lab.plan.nodes[0].clone();
    let mut others = agents;
    let first = others.remove(0);
    drop(first);
    for cap in &caps {
        let mut fewer = caps.clone();
        fewer.remove(cap);
        let weak = agent(&lab, &node1, &fewer, &format!("without-{cap}"));
        let name = format!("CAP_{}", cap.to_uppercase());
        let consequence = match cap.as_str() {
            "net_admin" => Some("inspection incomplete"),
            "sys_admin" => Some("cannot enter the pod's namespace"),
            _ => None,
        };
        let said = wait(Duration::from_secs(20), || {
            let text = log(&weak);
            let named = text.contains(&format!("the agent runs without {name}"));
            let shown = consequence.is_none_or(|line| text.contains(line));
            (named && shown).then_some(text)
        });
        assert!(said.is_some(), "node-1's agent without {name} did not say so\n{}", log(&weak));
        let text = log(&weak);
        println!("without {name}: {}", text.lines().find(|l| l.contains("runs without")).unwrap_or_default());
        if let Some(line) = consequence.and_then(|c| text.lines().find(|l| l.contains(c))) {
            println!("  and then: {line}");
        }
        drop(weak);
    }
    drop(others);
    drop(collector);
}

/// `GET path` as text.
fn get_text(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(processes::api(port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

/// Whether `setpriv` with `caps` can read `/proc/<pid>/ns/net` of `pid`.
fn reads_netns_of(pid: u32, caps: &BTreeSet<String>) -> bool {
    let set = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    Command::new("setpriv")
        .arg(format!("--bounding-set={set}"))
        .arg(format!("--inh-caps={set}"))
        .arg(format!("--ambient-caps={set}"))
        .args(["--no-new-privs", "--", "readlink"])
        .arg(format!("/proc/{pid}/ns/net"))
        .output()
        .unwrap()
        .status
        .success()
}

/// CAP_SYS_PTRACE is not used in the lab (its inventory names each pod's namespace), so the
/// test above cannot show it is needed: a pod's process owned by another user, as in a real
/// cluster, is what namespace discovery opens through /proc — and only with it.
#[test]
fn sys_ptrace_is_what_opens_another_users_namespace_through_proc() {
    let caps = granted();
    assert!(caps.contains("sys_ptrace"));
    // A process of another user (nobody), standing in for a pod's container process.
    let mut other = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    let pid = other.id();
    std::thread::sleep(Duration::from_millis(200));
    let with = reads_netns_of(pid, &caps);
    let mut fewer = caps.clone();
    fewer.remove("sys_ptrace");
    let without = reads_netns_of(pid, &fewer);
    let _ = other.kill();
    let _ = other.wait();
    assert!(with, "with the DaemonSet's capabilities /proc/{pid}/ns/net is readable");
    assert!(!without, "without CAP_SYS_PTRACE another user's /proc/<pid>/ns/net is refused");
}
