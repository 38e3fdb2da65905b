//! The bounds every value from the network must respect, in one place: the wire conversions
//! enforce them, and agents size their batches and texts by them.

use std::time::Duration;

/// A number (or duration) outside the range the model accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value} is out of range: {allowed}")]
pub struct OutOfRange {
    pub what: &'static str,
    pub value: String,
    pub allowed: &'static str,
}

impl OutOfRange {
    pub fn new(what: &'static str, value: impl ToString, allowed: &'static str) -> Self {
        Self { what, value: value.to_string(), allowed }
    }
}

/// The longest round trip we believe; anything longer is a clock or encoding bug.
pub const MAX_RTT: Duration = Duration::from_secs(3600);
/// Free text in a probe result (`detail`), a run step's evidence line, a finding's evidence.
pub const MAX_DETAIL_BYTES: usize = 4096;
/// Short human text: a step description, a verdict, an inspection error, a sysctl value.
pub const MAX_LINE_BYTES: usize = 1024;
/// Results in one batch.
pub const MAX_RESULTS_PER_BATCH: usize = 100_000;
/// Addresses in one DNS answer.
pub const MAX_DNS_ANSWERS: usize = 64;
/// Packets in one ICMP or MTU burst.
pub const MAX_BURST: u32 = 10_000;

/// Pods one agent reports in its Hello.
pub const MAX_LOCAL_PODS: usize = 4096;
/// IPs of one pod or one node.
pub const MAX_IPS: usize = 64;

/// Entries per table in an inspection report.
pub const MAX_LINKS: usize = 10_000;
pub const MAX_LINK_ADDRESSES: usize = 1024;
pub const MAX_ROUTES: usize = 100_000;
pub const MAX_ROUTE_RULES: usize = 10_000;
pub const MAX_NEIGHBOURS: usize = 100_000;
pub const MAX_NAT_SERVICES: usize = 100_000;
pub const MAX_NAT_TARGETS: usize = 10_000;
/// Drop and reject rules in one inspection.
pub const MAX_FILTER_DROPS: usize = 1_024;
/// Port ranges one drop rule may list (multiport takes 15).
pub const MAX_FILTER_PORT_RANGES: usize = 64;
/// NAT rules outside kube-proxy's chains in one inspection (their port ranges are capped as a
/// drop rule's).
pub const MAX_NAT_RULES: usize = 1_024;
pub const MAX_SYSCTLS: usize = 4096;
pub const MAX_INSPECTION_ERRORS: usize = 256;
pub const MAX_NAMESERVERS: usize = 16;
pub const MAX_SEARCH_DOMAINS: usize = 64;

/// Probe plans.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
pub const MAX_CONCURRENCY: u32 = 10_000;
pub const MAX_PROBES_PER_SECOND: u32 = 100_000;
pub const MAX_PLANNED_PROBES: usize = 100_000;

/// On-demand runs.
pub const MAX_RUN_TIMEOUT: Duration = Duration::from_secs(600);
pub const MAX_STEP_EVIDENCE: usize = 256;
pub const MAX_STEP_ELAPSED: Duration = Duration::from_secs(3600);

/// Findings and the query service.
pub const MAX_FINDINGS: usize = 10_000;
/// Failing paths a diagnosis lists as denied by NetworkPolicy (the rest are counted).
pub const MAX_POLICY_DENIALS: usize = 1_000;
pub const MAX_AFFECTED: usize = 10_000;
pub const MAX_FINDING_EVIDENCE: usize = 256;
pub const MAX_MATRIX_CELLS: usize = 1_000_000;
pub const MAX_AGENTS: usize = 100_000;
pub const MAX_CAPABILITIES: usize = 64;
