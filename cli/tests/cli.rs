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
