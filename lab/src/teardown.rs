//! Removing a lab completely: its server process, every process still inside one of its
//! namespaces, the namespaces (their bind mounts and, with them, every veth and bridge), and the
//! state directory. Works from the recorded plan, so it also cleans up after a crash.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netcmd::{self, error_chain};
use crate::plan::{LabPlan, NETNS_DIR};
use crate::state::{LabState, StateError};

#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("namespaces {left:?} are still there after `ip netns del`: {detail}")]
    Leftover { left: Vec<String>, detail: String },
}

/// What a teardown removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TeardownReport {
    pub namespaces: Vec<String>,
    pub killed: Vec<i32>,
}

/// The lab's namespaces that exist now: from the plan when it is readable, else every
/// namespace named `<lab>-…` (the plan is written before any namespace, so this fallback only
/// matters when the state directory itself was damaged).
fn lab_namespaces(state: &LabState) -> Vec<String> {
    let existing: BTreeSet<String> = std::fs::read_dir(NETNS_DIR)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    match state.read_plan() {
        Ok(plan) => plan.namespaces().into_iter().filter(|n| existing.contains(n)).collect(),
        Err(_) => {
            let prefix = format!("{}-", state.name);
            existing.into_iter().filter(|n| n.starts_with(&prefix)).collect()
        }
    }
}

/// Processes (other than this one) with any thread inside one of `namespaces`.
fn processes_inside(namespaces: &[String]) -> Vec<i32> {
    let ids: BTreeSet<netdiag_netns::NetnsId> =
        namespaces.iter().filter_map(|n| netdiag_netns::netns_id(&LabPlan::netns_path(n)).ok()).collect();
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else { return pids };
    for entry in proc_dir.filter_map(|e| e.ok()) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == me {
            continue;
        }
        let tasks = entry.path().join("task");
        let inside = std::fs::read_dir(&tasks)
            .map(|d| {
                d.filter_map(|t| t.ok()).any(|t| {
                    netdiag_netns::netns_id(&t.path().join("ns/net")).is_ok_and(|id| ids.contains(&id))
                })
            })
            .unwrap_or(false);
        if inside {
            pids.push(pid);
        }
    }
    pids
}

fn terminate(pids: &[i32], grace: Duration) {
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if pids.iter().all(|&p| kill(Pid::from_raw(p), None).is_err()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Tears the lab down. Idempotent: tearing down a lab that is not there succeeds.
pub fn teardown(state: &LabState) -> Result<TeardownReport, TeardownError> {
    let mut report = TeardownReport::default();
    if let Some(pid) = state.server_pid()
        && pid != std::process::id() as i32
    {
        terminate(&[pid], Duration::from_secs(3));
        report.killed.push(pid);
    }
    let namespaces = lab_namespaces(state);
    let inside = processes_inside(&namespaces);
    terminate(&inside, Duration::from_secs(2));
    report.killed.extend(inside);

    let dels: Vec<String> = namespaces.iter().map(|n| format!("netns del {n}")).collect();
    let result = netcmd::ip_batch(None, &dels);
    let left: Vec<String> =
        namespaces.iter().filter(|n| Path::new(NETNS_DIR).join(n).exists()).cloned().collect();
    if !left.is_empty() {
        let detail = result.err().map(|e| error_chain(&e)).unwrap_or_else(|| "no error output".into());
        return Err(TeardownError::Leftover { left, detail });
    }
    report.namespaces = namespaces;
    state.remove()?;
    Ok(report)
}
