//! The defaults agent, collector, CLI and demo share: the probe schedule an agent runs when
//! nothing says otherwise (and the collector plans with), and the addresses the daemons listen
//! on and the CLI looks for.

use std::time::Duration;

use crate::plan::Schedule;

/// How often each probe of a plan runs, below the collector's sampling threshold.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Probes in flight at once on one agent.
pub const MAX_CONCURRENCY: u32 = 64;
/// Probes one agent starts per second at most: a safety limit against a runaway plan, above
/// what a full plan asks on a large node (110 pods × 180 targets every 5 s: ~8 000/s), so a
/// plan keeps its interval rather than being stretched.
pub const MAX_PROBES_PER_SECOND: u32 = 10_000;

/// The collector's HTTP API, UI and metrics (loopback unless told otherwise).
pub const COLLECTOR_HTTP: &str = "127.0.0.1:7600";
/// The collector's agent-session listener.
pub const COLLECTOR_AGENTS: &str = "0.0.0.0:7700";
/// The port of [`COLLECTOR_AGENTS`], for agents pointed at a collector by address.
pub const AGENTS_PORT: u16 = 7700;
/// Where the collector is looked for by the CLI.
pub const COLLECTOR_URL: &str = "http://127.0.0.1:7600";
/// The agent's `/metrics`, `/healthz` and `/readyz`.
pub const AGENT_LISTEN: &str = "127.0.0.1:9464";

/// The schedule from the constants above.
impl Default for Schedule {
    fn default() -> Self {
        Schedule::new(PROBE_INTERVAL, PROBE_TIMEOUT, MAX_CONCURRENCY, MAX_PROBES_PER_SECOND)
            .unwrap_or_else(|e| unreachable!("the default schedule is within the model's limits: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_the_constants() {
        let s = Schedule::default();
        assert_eq!(s.interval(), PROBE_INTERVAL);
        assert_eq!(s.timeout(), PROBE_TIMEOUT);
        assert_eq!(s.max_concurrency().get(), MAX_CONCURRENCY);
        assert_eq!(s.max_probes_per_second().get(), MAX_PROBES_PER_SECOND);
        assert!(COLLECTOR_AGENTS.ends_with(&format!(":{AGENTS_PORT}")));
        assert!(COLLECTOR_URL.ends_with(COLLECTOR_HTTP));
    }
}
