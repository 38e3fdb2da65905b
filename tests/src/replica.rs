//! What a test reads from one collector replica run as a process (by its API port): the
//! matrix, the findings, its connected agents — the views the restart and HA tests compare
//! across a SIGKILL, a restart and a rollout.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::get_json;
use crate::processes::{self, Daemon};

/// `GET path` on the collector whose API is on `port`; None unless it answered 200.
pub fn get(port: u16, path: &str) -> Option<Value> {
    match get_json(processes::api(port), path, Duration::from_secs(2)) {
        Ok((200, v)) => Some(v),
        _ => None,
    }
}

/// Polls `check` every 100 ms until it gives a value or `limit` passes; the value and how long
/// it took.
pub fn wait<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<(T, Duration)> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = check() {
            return Some((v, start.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The finding whose evidence quotes node-1's NAT rules (`dnat-missing node-1 …`): it exists
/// only with node-1's inspection in hand.
pub fn nat_finding(port: u16) -> Option<Value> {
    let d = get(port, "/api/v1/diagnosis")?;
    d["findings"]
        .as_array()?
        .iter()
        .find(|f| {
            f["id"] == "service-path-broken"
                && f["evidence"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|l| l.as_str().is_some_and(|l| l.contains("no DNAT rule"))))
        })
        .cloned()
}

/// Pod-level cells that are not `unknown`, and how many there are in all.
pub fn known_cells(port: u16) -> Option<(usize, usize)> {
    let m = get(port, "/api/v1/matrix?level=pod")?;
    let cells = m["cells"].as_array()?;
    Some((cells.iter().filter(|c| c["status"] != "unknown").count(), cells.len()))
}

/// Agents the collector has a session with now.
pub fn connected_agents(port: u16) -> usize {
    get(port, "/api/v1/agents")
        .and_then(|a| a["agents"].as_array().map(|v| v.iter().filter(|a| a["connected"] == true).count()))
        .unwrap_or(0)
}

/// The tails of the collectors' and agents' logs, for a failure message.
pub fn explain(collectors: &[&Daemon], agents: &[Daemon]) -> String {
    let mut out = String::new();
    for c in collectors.iter().copied().chain(agents) {
        out.push_str(&format!("\n{}:\n{}", c.log.display(), c.log_tail()));
    }
    out
}
