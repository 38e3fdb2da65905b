//! Running a read-only tool (`iptables-save`, `nft`) inside a source's network namespace: the
//! child is spawned from the thread parked there, so it inherits that namespace, and is awaited
//! on the runtime with a deadline.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use netdiag_model::text::excerpt;

use crate::source::{SourceError, SourceNs};

/// How long one tool may take. `iptables-save` on a node with thousands of services takes well
/// under a second; more means the xtables lock is held or the tool is stuck.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a tool's output could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{program} is not installed where the agent runs: add it to the agent's image")]
    NotInstalled { program: &'static str },
    #[error("could not start {program}")]
    Spawn {
        program: &'static str,
        #[source]
        error: io::Error,
    },
    #[error("{program} did not finish within {}s: the xtables lock may be held, retry later", .timeout.as_secs())]
    Timeout { program: &'static str, timeout: Duration },
    #[error("waiting for {program}")]
    Wait {
        program: &'static str,
        #[source]
        error: io::Error,
    },
    #[error("{program} {args} failed ({status}): {stderr}")]
    Failed { program: &'static str, args: String, status: ExitStatus, stderr: String },
    #[error("could not run {program} in the source's namespace")]
    Source {
        program: &'static str,
        #[source]
        error: SourceError,
    },
}

impl CommandError {
    pub fn is_not_installed(&self) -> bool {
        matches!(self, CommandError::NotInstalled { .. })
    }
}

/// Runs `program args…` in `src`'s namespace and returns its standard output (lossily decoded:
/// rule comments are not always UTF-8).
pub(crate) async fn output(
    src: &SourceNs,
    program: &'static str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, CommandError> {
    let rt = tokio::runtime::Handle::current();
    let argv: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let spawned = src
        .run(move || {
            let _runtime = rt.enter();
            tokio::process::Command::new(program)
                .args(&argv)
                .env("LC_ALL", "C")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
        })
        .await
        .map_err(|error| CommandError::Source { program, error })?;
    let child = spawned.map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => CommandError::NotInstalled { program },
        _ => CommandError::Spawn { program, error },
    })?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| CommandError::Timeout { program, timeout })?
        .map_err(|error| CommandError::Wait { program, error })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(CommandError::Failed {
            program,
            args: args.join(" "),
            status: out.status,
            stderr: excerpt(stderr.trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
