//! Running the system's network tools (`ip`, `bridge`, `iptables-restore`, `nft`) with their
//! output captured and their failures turned into errors that quote the command.

use std::io::Write;
use std::process::{Command, Stdio};

/// A network command that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("`{program}` is not installed (install it, e.g. `apt-get install -y {package}`)")]
    Missing { program: String, package: &'static str },
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String },
}

/// The Debian package that ships a program, for install hints.
fn package_of(program: &str) -> &'static str {
    match program {
        "ip" | "bridge" => "iproute2",
        "nft" => "nftables",
        p if p.starts_with("ip6tables") || p.starts_with("iptables") => "iptables",
        _ => "<the package that provides it>",
    }
}

/// Finds a program on PATH.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// Fails with an install hint when a program is missing.
pub fn require(program: &str) -> Result<std::path::PathBuf, CommandError> {
    which(program)
        .ok_or_else(|| CommandError::Missing { program: program.to_owned(), package: package_of(program) })
}

/// Runs `program args…`, optionally inside a named network namespace (`ip netns exec`), with
/// `stdin` fed to it; returns stdout.
pub fn run(
    netns: Option<&str>,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, CommandError> {
    let binary = require(program)?;
    let mut cmd;
    let shown;
    match netns {
        Some(ns) => {
            let ip = require("ip")?;
            cmd = Command::new(ip);
            cmd.args(["netns", "exec", ns]).arg(&binary).args(args);
            shown = format!("ip netns exec {ns} {program} {}", args.join(" "));
        }
        None => {
            cmd = Command::new(&binary);
            cmd.args(args);
            shown = format!("{program} {}", args.join(" "));
        }
    }
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| CommandError::Spawn { command: shown.clone(), source })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A tool that exits early closes its stdin; its exit status tells the story.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out =
        child.wait_with_output().map_err(|source| CommandError::Spawn { command: shown.clone(), source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.trim();
        Err(CommandError::Failed {
            command: shown,
            status: out.status.to_string(),
            stderr: if stderr.is_empty() {
                "(no error output)".into()
            } else {
                stderr.chars().take(2000).collect()
            },
        })
    }
}

/// Runs many `ip` commands in one process (`ip [-n ns] -batch -`). Each line is an `ip`
/// command without the leading `ip`. `-force` keeps going after an error so every failure is
/// reported, and the whole batch fails if any line failed.
pub fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<(), CommandError> {
    batch("ip", netns, lines)
}

/// Like [`ip_batch`] for the `bridge` tool (VXLAN forwarding entries).
pub fn bridge_batch(netns: Option<&str>, lines: &[String]) -> Result<(), CommandError> {
    batch("bridge", netns, lines)
}

fn batch(program: &str, netns: Option<&str>, lines: &[String]) -> Result<(), CommandError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-force", "-batch", "-"]);
    let text = lines.join("\n") + "\n";
    run(None, program, &args, Some(&text)).map(drop)
}

pub use netdiag_model::error_chain;
