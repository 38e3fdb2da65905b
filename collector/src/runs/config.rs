//! The limits and credentials of on-demand runs, parsed once at the binary's edge
//! ([`crate::cli`]) and read by [`super::dispatch`].

use std::time::Duration;

use ipnet::IpNet;
use netdiag_model::run::RunTimeout;

use super::auth::ApiToken;
use crate::api::AllowedHost;

/// How long a whole run may take unless configured otherwise.
pub const DEFAULT_RUN_LIMIT: Duration = Duration::from_secs(30);
/// Each probe step's timeout when the caller asks for none.
pub const DEFAULT_STEP_TIMEOUT_MS: u32 = 2000;
/// Runs in flight at once, over every caller.
pub const DEFAULT_MAX_CONCURRENT: usize = 8;
/// Runs a minute per caller IP (also the burst).
pub const DEFAULT_PER_MINUTE: u32 = 30;

/// On-demand run settings.
#[derive(Debug, Clone)]
pub struct RunsConfig {
    /// None: runs only from loopback callers.
    pub token: Option<ApiToken>,
    /// Ranges targets may be in besides the cluster's own.
    pub allow: Vec<IpNet>,
    /// The hard limit on a whole run; the agent is told to cancel when it passes.
    pub run_limit: Duration,
    /// Each probe step's timeout when the request gives none.
    pub default_step_timeout: RunTimeout,
    pub max_concurrent: usize,
    pub per_minute: u32,
    /// Names the HTTP API answers to besides `localhost`, loopback addresses and the listener's
    /// own address (`--api-allowed-host`; the Host and Origin checks of [`crate::api`]).
    pub allowed_hosts: Vec<AllowedHost>,
}

impl Default for RunsConfig {
    fn default() -> Self {
        RunsConfig {
            token: None,
            allow: Vec::new(),
            run_limit: DEFAULT_RUN_LIMIT,
            default_step_timeout: match RunTimeout::from_millis(DEFAULT_STEP_TIMEOUT_MS) {
                Ok(t) => t,
                Err(_) => unreachable!("2000 ms is within a run timeout's 1 ms to 10 min"),
            },
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            per_minute: DEFAULT_PER_MINUTE,
            allowed_hosts: Vec::new(),
        }
    }
}

/// "30 s", "1.5 s", "250 ms": how the limit is quoted in messages.
pub fn human(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_people_write_them() {
        assert_eq!(human(Duration::from_secs(30)), "30 s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human(Duration::from_millis(250)), "250 ms");
        assert_eq!(RunsConfig::default().default_step_timeout.as_millis(), DEFAULT_STEP_TIMEOUT_MS);
    }
}
