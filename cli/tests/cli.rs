//! The `netdiag` binary's user-facing errors: each names what failed and what to do.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn netdiag() -> Command {
    Command::new(env!("CARGO_BIN_EXE_netdiag"))
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn bad_topology_file_names_line_and_field() {
    let dir = std::env::temp_dir().join(format!("netdiag-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "nodes:\n  - name: node-1\npods:\n  - { namespace: kube-system, name: coredns-0, node: node-1, app: dns }\n  - { namespace: tidb, name: pd, node: node-7 }\n",
    )
    .unwrap();
    let (ok, text) = run(netdiag().args(["lab", "up", "--topology"]).arg(&file));
    assert!(!ok);
    assert!(text.contains("line 5") && text.contains("pods[].node") && text.contains("node-7"), "{text}");
    assert!(text.contains("bad.yaml"), "names the file: {text}");
    let (ok, text) = run(netdiag().args(["lab", "up", "--topology", "/nonexistent/topo.yaml"]));
    assert!(!ok && text.contains("cannot read topology file /nonexistent/topo.yaml"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_iptables_is_named_with_its_package() {
    // A PATH that has `ip` but no iptables.
    let dir = std::env::temp_dir().join(format!("netdiag-path-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ip = Command::new("sh").args(["-c", "command -v ip"]).output().unwrap();
    let ip = String::from_utf8(ip.stdout).unwrap();
    let link = dir.join("ip");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(ip.trim(), &link).unwrap();
    let (ok, text) = run(netdiag().args(["lab", "up", "--name", "nopath"]).env("PATH", &dir));
    assert!(!ok);
    assert!(
        text.contains("`iptables-restore` is not installed") && text.contains("apt-get install -y iptables"),
        "{text}"
    );
    let (ok, text) =
        run(netdiag().args(["lab", "up", "--name", "nopath", "--proxy-mode", "nftables"]).env("PATH", &dir));
    assert!(!ok && text.contains("is not installed"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!std::path::Path::new("/var/run/netns/nopath-node-1").exists(), "nothing was built");
}

#[test]
fn not_root_is_refused_with_a_hint() {
    let (ok, text) = run(Command::new("setpriv").args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        env!("CARGO_BIN_EXE_netdiag"),
        "lab",
        "up",
        "--name",
        "nobody",
    ]));
    assert!(!ok);
    assert!(text.contains("needs root"), "{text}");
}

#[test]
fn unknown_fault_and_lab_not_up() {
    let (ok, text) = run(netdiag().args(["lab", "fault", "--name", "notup", "node-pair", "a", "b"]));
    assert!(!ok && text.contains("lab notup is not up"), "{text}");
    let (ok, text) = run(netdiag().args(["lab", "status", "--name", "notup"]));
    assert!(!ok && text.contains("not up"), "{text}");
    let (ok, text) = run(netdiag().args(["lab", "down", "--name", "notup"]));
    assert!(ok && text.contains("was not up"), "{text}");
    let (ok, text) = run(netdiag().args(["lab", "fault", "--help"]));
    assert!(ok && text.contains("node-pair") && text.contains("dns-servfail"), "{text}");
}

/// A `netdiag collector` on loopback (no agent), killed when dropped.
struct Collector {
    child: std::process::Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const INVENTORY: &str = "version: 1
cluster: {name: t, domain: cluster.local, pod_cidrs: [10.244.0.0/16], service_cidrs: [10.96.0.0/16], node_cidrs: [172.29.0.0/24], dns_ips: [10.96.0.10], proxy_mode: iptables}
nodes:
  - {name: node-1, ips: [172.29.0.11], pod_cidrs: [10.244.1.0/24]}
pods:
  - {namespace: tidb, name: demo-pd-0, node: node-1, ips: [10.244.1.2]}
services: []
";

fn collector(tag: &str, token: Option<&str>) -> Collector {
    let dir = std::env::temp_dir().join(format!("netdiag-probe-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inventory = dir.join("inventory.yaml");
    std::fs::write(&inventory, INVENTORY).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = netdiag();
    cmd.args(["collector", "--agents-listen", "127.0.0.1:0", "--http", &format!("127.0.0.1:{port}")])
        .arg("--inventory")
        .arg(format!("file:{}", inventory.display()))
        .env_remove("NETDIAG_API_TOKEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(t) = token {
        cmd.env("NETDIAG_API_TOKEN", t);
    }
    let child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the collector did not come up");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Collector { child, url: format!("http://127.0.0.1:{port}"), dir }
}

fn probe(c: &Collector, args: &[&str]) -> (i32, String, String) {
    let out = netdiag()
        .args(["probe", "--collector", &c.url])
        .args(args)
        .env_remove("NETDIAG_API_TOKEN")
        .env_remove("NETDIAG_API_TOKEN_FILE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn probe_refusals_say_why_and_exit_2() {
    let c = collector("open", None);
    let (code, _, err) = probe(&c, &["--from", "tidb/ghost", "--to", "tidb/demo-pd-0", "--port", "2379"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refused") && err.contains("tidb/ghost"), "{err}");
    let (code, _, err) = probe(&c, &["--from", "tidb/demo-pd-0", "--to", "tidb/demo-pd-0:2379"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the agent on node-1 is not connected; check `netdiag agents`"), "{err}");
    let (code, out, _) = probe(&c, &["--from", "tidb/demo-pd-0", "--to", "8.8.8.8:53", "-o", "json"]);
    assert_eq!(code, 2);
    let body: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(body["error"].as_str().unwrap().contains("outside cluster ranges"), "{body}");
    let (code, _, err) = probe(&c, &["--from", "tidb/demo-pd-0", "--to", "svc/tidb/x"]);
    assert_eq!(code, 2);
    assert!(err.contains("--to") && err.contains("needs a port"), "{err}");
}

#[test]
fn probe_sends_the_token_from_a_file() {
    let c = collector("token", Some("s3cret"));
    let (code, _, err) = probe(&c, &["--from", "tidb/demo-pd-0", "--to", "tidb/demo-pd-0:2379"]);
    assert_eq!(code, 2);
    assert!(err.contains("API token"), "{err}");
    let file = c.dir.join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    let file = file.to_str().unwrap();
    let (code, _, err) =
        probe(&c, &["--from", "tidb/demo-pd-0", "--to", "tidb/demo-pd-0:2379", "--api-token-file", file]);
    assert_eq!(code, 2);
    assert!(err.contains("not connected"), "authenticated, then no agent: {err}");
}
