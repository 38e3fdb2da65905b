//! One cell's state (its window and what it last saw) and the stats read from it at an
//! instant ([`CellStats`]), which both the API's [`MatrixCell`] and localization use.

use std::time::Duration;

use netdiag_model::limits::MAX_LINE_BYTES;
use netdiag_model::probe::ProbeKind;
use netdiag_model::result::ProbeResult;
use netdiag_model::text::Text;
use netdiag_model::{CellStatus, MatrixCell, NodeName, Outcome, Ratio, UnixMillis};

use super::intern::Id;
use super::status::{self, Context};
use super::window::{BucketCounts, Sample, SampleClass, Window, WindowSpec};

/// The text of a failed result as the API shows it: the outcome, then the agent's detail.
pub fn error_text(result: &ProbeResult) -> Text<MAX_LINE_BYTES> {
    let detail = result.detail.as_str().trim();
    if detail.is_empty() {
        Text::lossy(&result.outcome.to_string())
    } else {
        Text::lossy(&format!("{}: {detail}", result.outcome))
    }
}

/// How a result counts towards a window. ICMP bursts count their packets; any other result
/// is one packet, received when the probe succeeded. Agent-side failures (`source_gone`,
/// `local_error`) count no packets and no attempt.
pub fn sample_of(result: &ProbeResult) -> Sample {
    let class = if result.outcome.is_ok() {
        SampleClass::Success
    } else if result.outcome.is_network_failure() {
        SampleClass::Failure
    } else {
        SampleClass::AgentError
    };
    let (packets_sent, packets_received) = match (class, result.kind, result.burst) {
        (SampleClass::AgentError, _, _) => (0, 0),
        (_, ProbeKind::Icmp, Some(b)) => (b.sent(), b.received()),
        (SampleClass::Success, _, _) => (1, 1),
        (_, _, _) => (1, 0),
    };
    let rtt_micros = match class {
        SampleClass::AgentError => None,
        _ => result.rtt.map(|r| r.as_micros()),
    };
    Sample { class, packets_sent, packets_received, rtt_micros }
}

/// The last error a cell saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    pub text: Text<MAX_LINE_BYTES>,
    pub at: UnixMillis,
}

/// One cell's memory: constant in the number of samples.
#[derive(Debug, Clone)]
pub(super) struct CellState {
    /// The agent whose results fill this cell (the latest one, should a pod move), as the
    /// matrix interned it (compared per result) and by name.
    agent_id: Id,
    agent: NodeName,
    window: Window,
    last_outcome: Outcome,
    last_update: UnixMillis,
    last_error: Option<LastError>,
    /// Failed attempts since the last successful one, in arrival order.
    streak: u32,
    /// Successful attempts without a lost packet since the last failure or loss.
    clean: u32,
    /// The time of the latest failure or loss.
    trouble_at: Option<UnixMillis>,
    /// The failures in a row reached [`status::FAILED_STREAK`] and no repair followed yet.
    outage: bool,
    /// The first window bucket after the latest outage that ended (the path came back for
    /// [`status::RECOVERED_STREAK`] clean attempts): what came before is history.
    repaired_from: Option<i64>,
}

impl CellState {
    pub(super) fn new(spec: &WindowSpec, agent_id: Id, agent: &NodeName, at: UnixMillis) -> Self {
        CellState {
            agent_id,
            agent: agent.clone(),
            window: Window::new(spec),
            last_outcome: Outcome::Ok,
            last_update: at,
            last_error: None,
            streak: 0,
            clean: 0,
            trouble_at: None,
            outage: false,
            repaired_from: None,
        }
    }

    /// Counts `result` (taken at `at`, already clamped to `now`) reported by `agent` (interned
    /// as `agent_id`); false when it fell outside the window.
    pub(super) fn record(
        &mut self,
        spec: &WindowSpec,
        agent_id: Id,
        agent: &NodeName,
        result: &ProbeResult,
        at: UnixMillis,
        now: UnixMillis,
    ) -> bool {
        let sample = sample_of(result);
        if !self.window.add(spec, at, now, &sample) {
            return false;
        }
        if self.agent_id != agent_id {
            self.agent_id = agent_id;
            self.agent = agent.clone();
        }
        match sample.class {
            SampleClass::Success if sample.packets_received >= sample.packets_sent => {
                self.streak = 0;
                self.clean = self.clean.saturating_add(1);
                if self.outage && self.clean >= status::RECOVERED_STREAK {
                    self.outage = false;
                    self.repaired_from = self.trouble_at.map(|t| spec.epoch(t) + 1);
                }
            }
            SampleClass::Success => {
                self.streak = 0;
                self.clean = 0;
                self.trouble_at = self.trouble_at.max(Some(at));
            }
            SampleClass::Failure => {
                self.streak = self.streak.saturating_add(1);
                self.clean = 0;
                self.trouble_at = self.trouble_at.max(Some(at));
                self.outage |= self.streak >= status::FAILED_STREAK;
            }
            SampleClass::AgentError => {}
        }
        if at >= self.last_update {
            self.last_update = at;
            self.last_outcome = result.outcome;
        }
        if sample.class != SampleClass::Success && self.last_error.as_ref().is_none_or(|e| at >= e.at) {
            self.last_error = Some(LastError { text: error_text(result), at });
        }
        true
    }

    pub(super) fn agent(&self) -> &NodeName {
        &self.agent
    }

    pub(super) fn agent_id(&self) -> Id {
        self.agent_id
    }

    pub(super) fn last_update(&self) -> UnixMillis {
        self.last_update
    }

    /// The stats at `now`; `streak_rule` for pod-level cells.
    pub(super) fn stats(
        &self,
        spec: &WindowSpec,
        now: UnixMillis,
        agent_fresh: bool,
        streak_rule: bool,
        cells: usize,
    ) -> CellStats {
        let window = self.window.summary(spec, now);
        // Only a window with trouble in it can hold a repair.
        let repaired = (window.failures > 0 || window.packets_received < window.packets_sent)
            .then(|| self.window.since_repair(spec, now, self.repaired_from));
        let current = repaired.as_ref().unwrap_or(&window);
        let status = status::classify(
            &window,
            current,
            Context {
                agent_fresh,
                streak: streak_rule.then_some(self.streak),
                clean: streak_rule.then_some(self.clean),
                cells,
            },
        );
        CellStats {
            status,
            agent: self.agent.clone(),
            agent_fresh,
            loss_ratio: Ratio::new(window.loss_ratio()).unwrap_or(Ratio::ZERO),
            rtt_p50: window.rtt.quantile(0.5),
            rtt_p99: window.rtt.quantile(0.99),
            successes: window.successes,
            failures: window.failures,
            agent_errors: window.agent_errors,
            packets_sent: window.packets_sent,
            packets_received: window.packets_received,
            since_repair: Counts {
                successes: current.successes,
                failures: current.failures,
                packets_sent: current.packets_sent,
                packets_received: current.packets_received.min(current.packets_sent),
            },
            consecutive_failures: self.streak,
            last_outcome: self.last_outcome,
            last_update: self.last_update,
            last_error: self.last_error.clone(),
            last_error_in_window: self.last_error.as_ref().is_some_and(|e| spec.contains(e.at, now)),
        }
    }

    /// The window's buckets with attempts since its latest repair, oldest first.
    pub(super) fn history_since_repair(&self, spec: &WindowSpec, now: UnixMillis) -> Vec<BucketCounts> {
        self.window.history_since_repair(spec, now, self.repaired_from)
    }

    /// Bytes held beyond the map entry itself.
    pub(super) fn heap_bytes(&self) -> usize {
        self.window.retained_bytes()
            + self.agent.as_str().len()
            + self.last_error.as_ref().map_or(0, |e| e.text.as_str().len())
    }
}

/// A cell at one instant: the window's counts and the verdict on them.
#[derive(Debug, Clone, PartialEq)]
pub struct CellStats {
    pub status: CellStatus,
    /// The agent reporting this cell.
    pub agent: NodeName,
    /// That agent was heard from within the staleness bound.
    pub agent_fresh: bool,
    /// Lost packets over packets sent, in the window.
    pub loss_ratio: Ratio,
    pub rtt_p50: Option<Duration>,
    pub rtt_p99: Option<Duration>,
    /// Attempts in the window that succeeded.
    pub successes: u64,
    /// Attempts in the window that failed in the network.
    pub failures: u64,
    /// Results in the window the agent could not run (not attempts).
    pub agent_errors: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// The window's counts since its latest repair (all of it when there was none): what the
    /// path does now, without an outage that ended ([`super::window::Window::since_repair`]).
    pub since_repair: Counts,
    /// Failed attempts since the last success, in arrival order (across the window's edge).
    pub consecutive_failures: u32,
    /// The outcome of the latest result (by its time), in the window or not.
    pub last_outcome: Outcome,
    /// The time of the latest result.
    pub last_update: UnixMillis,
    /// The latest failure or agent error, in the window or not.
    pub last_error: Option<LastError>,
    /// `last_error` happened inside the window.
    pub last_error_in_window: bool,
}

/// Attempts and packets over a stretch of a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub successes: u64,
    pub failures: u64,
    pub packets_sent: u64,
    /// At most `packets_sent`.
    pub packets_received: u64,
}

impl Counts {
    /// Lost packets (a failed attempt loses its packets).
    pub fn lost(&self) -> u64 {
        self.packets_sent - self.packets_received
    }

    /// Some attempt failed or some packet was lost.
    pub fn troubled(&self) -> bool {
        self.failures > 0 || self.packets_received < self.packets_sent
    }
}

impl CellStats {
    /// Successes plus failures.
    pub fn attempts(&self) -> u64 {
        self.successes + self.failures
    }

    /// Every result in the window.
    pub fn samples(&self) -> u64 {
        self.attempts() + self.agent_errors
    }

    /// The API's cell. The last error is shown only while it is inside the window.
    pub fn to_matrix_cell(&self, source: &str, destination: &str, kind: ProbeKind) -> MatrixCell {
        let last_error = match &self.last_error {
            Some(e) if self.last_error_in_window => e.text.clone(),
            _ => Text::default(),
        };
        MatrixCell {
            source: Text::lossy(source),
            destination: Text::lossy(destination),
            kind,
            status: self.status,
            loss_ratio: self.loss_ratio,
            rtt_p50: self.rtt_p50,
            rtt_p99: self.rtt_p99,
            last_error,
            samples: self.samples(),
            last_update: Some(self.last_update),
        }
    }
}
