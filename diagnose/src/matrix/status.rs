//! The verdict on a cell, from its window and its agent's liveness. In order:
//!
//! 1. `unknown` when the reporting agent has not been heard from for longer than the staleness
//!    bound: its silence says nothing about the network, so its cells are never `failed`;
//! 2. `unknown` when the window holds no attempt (agent-side errors alone are not attempts);
//! 3. `ok` when (pod level only) the latest [`RECOVERED_STREAK`] attempts all succeeded without
//!    losing a packet: a path that was repaired reads `ok` within a few probes instead of
//!    carrying its old failures for a whole window (the loss ratio still shows them);
//! 4. `failed` when there was at least one failed attempt and (almost) every recent attempt
//!    failed: no success in the window, or at most [`FAILED_MAX_SUCCESS_RATIO`] of attempts
//!    succeeded, or (pod level only) the latest [`FAILED_STREAK`] attempts all failed — a path
//!    that just broke is `failed` within a few probes rather than after a whole window;
//! 5. `degraded` when (pod level) the latest [`DEGRADED_STREAK`] attempts failed — a path
//!    that just broke — or when its failed attempts, or the echoes lost within answered bursts,
//!    are significantly more than a healthy network's [`NOISE_FLOOR`] (a one-sided binomial
//!    test, by its Chernoff bound, at [`NOISE_P`]): a stray timeout or a few lost echoes are
//!    noise, not a degraded path — and every degraded cell must be explained by a finding;
//! 6. `ok` otherwise.
//!
//! The streak rule is for pod-level cells only: a node-level cell mixes many paths, so a few
//! failures in a row there (one dead pod's ports probed back to back) say little.

use netdiag_model::CellStatus;

use super::window::WindowSummary;

/// Consecutive failed attempts (latest first) that make a pod-level cell `failed`.
pub const FAILED_STREAK: u32 = 3;
/// Consecutive clean successes (latest first) that make a pod-level cell `ok` again.
pub const RECOVERED_STREAK: u32 = 2;
/// A cell whose attempts succeeded at most this often is `failed`.
pub const FAILED_MAX_SUCCESS_RATIO: f64 = 0.05;
/// A cell that lost more than this share of its packets is at least `degraded`.
pub const DEGRADED_LOSS_RATIO: f64 = 0.01;
/// Consecutive failed attempts (latest first) that make a pod-level cell `degraded`.
pub const DEGRADED_STREAK: u32 = 2;
/// The share of attempts, or of echoes, a healthy network may lose.
pub const NOISE_FLOOR: f64 = 0.01;
/// How unlikely under the noise floor a level's failures must be, over all its cells at once
/// (a Bonferroni correction: a level of 100 000 cells does not show a hundred times more
/// noise as `degraded` than one of 1 000).
pub const NOISE_P: f64 = 0.01;

/// Whether `bad` of `n` is significantly more than the noise floor, for one of `tests` cells
/// judged together: the binomial tail P(X ≥ bad) ≤ exp(−n·KL(bad/n ‖ floor)) (Chernoff) is
/// below [`NOISE_P`] / `tests`.
pub fn above_noise(bad: u64, n: u64, tests: usize) -> bool {
    if n == 0 || bad == 0 {
        return false;
    }
    let q = bad as f64 / n as f64;
    if q <= NOISE_FLOOR {
        return false;
    }
    let term = |x: f64, y: f64| if x > 0.0 { x * (x / y).ln() } else { 0.0 };
    let kl = term(q, NOISE_FLOOR) + term(1.0 - q, 1.0 - NOISE_FLOOR);
    n as f64 * kl >= (tests.max(1) as f64 / NOISE_P).ln()
}

/// What the rules look at besides the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// The reporting agent was heard from within the staleness bound.
    pub agent_fresh: bool,
    /// Failed attempts since the last success, when the streak rule applies (pod level).
    pub streak: Option<u32>,
    /// Successful attempts without loss since the last failure, when the recovery rule applies
    /// (pod level).
    pub clean: Option<u32>,
    /// Cells judged together at this level (the noise test's correction).
    pub cells: usize,
}

/// The status of a cell whose window holds `window`; the noise tests read `since_repair`,
/// the window since its latest repair ([`super::window::Window::since_repair`]), so an outage
/// that ended is not counted again when a stray failure follows it.
pub fn classify(window: &WindowSummary, since_repair: &WindowSummary, cx: Context) -> CellStatus {
    if !cx.agent_fresh {
        return CellStatus::Unknown;
    }
    let Some(success_ratio) = window.success_ratio() else { return CellStatus::Unknown };
    if cx.clean.is_some_and(|c| c >= RECOVERED_STREAK) {
        return CellStatus::Ok;
    }
    if window.failures > 0 {
        let streak = cx.streak.is_some_and(|s| s >= FAILED_STREAK);
        if window.successes == 0 || success_ratio <= FAILED_MAX_SUCCESS_RATIO || streak {
            return CellStatus::Failed;
        }
        if cx.streak.is_some_and(|s| s >= DEGRADED_STREAK)
            || above_noise(since_repair.failures, since_repair.attempts(), cx.cells)
        {
            return CellStatus::Degraded;
        }
    }
    // Loss within answered bursts: a whole burst lost is a failed attempt, judged above.
    let answered = since_repair.packets_sent.saturating_sub(since_repair.failed_packets);
    let lost = answered.saturating_sub(since_repair.packets_received);
    if lost as f64 > DEGRADED_LOSS_RATIO * answered as f64 && above_noise(lost, answered, cx.cells) {
        return CellStatus::Degraded;
    }
    CellStatus::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(successes: u64, failures: u64, agent_errors: u64, sent: u64, received: u64) -> WindowSummary {
        WindowSummary {
            successes,
            failures,
            agent_errors,
            packets_sent: sent,
            packets_received: received,
            ..WindowSummary::default()
        }
    }

    #[test]
    fn rules_in_order() {
        use CellStatus::*;
        let pod = |streak| Context { agent_fresh: true, streak: Some(streak), clean: Some(0), cells: 1 };
        let node = Context { agent_fresh: true, streak: None, clean: None, cells: 1 };
        let silent = Context { agent_fresh: false, streak: Some(9), clean: Some(0), cells: 1 };
        let healed = |clean| Context { agent_fresh: true, streak: Some(0), clean: Some(clean), cells: 1 };
        let cases: Vec<(&str, WindowSummary, Context, CellStatus)> = vec![
            ("all ok", window(12, 0, 0, 12, 12), pod(0), Ok),
            ("silent agent, all failing", window(0, 12, 0, 12, 0), silent, Unknown),
            ("empty window", window(0, 0, 0, 0, 0), pod(0), Unknown),
            ("agent errors only", window(0, 0, 5, 0, 0), pod(0), Unknown),
            ("one failure, nothing else", window(0, 1, 0, 1, 0), pod(1), Failed),
            ("all failed", window(0, 12, 0, 12, 0), node, Failed),
            ("just broke: 3 failures after 9 ok", window(9, 3, 0, 12, 9), pod(3), Failed),
            ("two failures after 9 ok", window(9, 2, 0, 11, 9), pod(2), Degraded),
            ("3 in a row at node level", window(9, 3, 0, 12, 9), node, Degraded),
            ("1 success in 40 at node level", window(1, 39, 0, 40, 1), node, Failed),
            ("1 success in 10 at node level", window(1, 9, 0, 10, 1), node, Degraded),
            ("recovered: failures then a success", window(5, 5, 0, 10, 5), pod(0), Degraded),
            ("burst loss 10%", window(10, 0, 0, 100, 90), pod(0), Degraded),
            ("burst loss 1% exactly", window(10, 0, 0, 100, 99), pod(0), Ok),
            ("one stray timeout among successes: noise", window(11, 1, 0, 12, 11), pod(1), Ok),
            ("two stray timeouts of 12, not in a row: noise", window(10, 2, 0, 12, 10), pod(0), Ok),
            ("three timeouts of 12: above the floor", window(9, 3, 0, 12, 9), pod(0), Degraded),
            ("one lost echo of 36: noise", window(12, 0, 0, 36, 35), pod(0), Ok),
            ("two lost echoes of 36: noise", window(12, 0, 0, 36, 34), pod(0), Ok),
            ("five lost echoes of 36", window(12, 0, 0, 36, 31), pod(0), Degraded),
            ("agent errors beside successes", window(10, 0, 3, 10, 10), pod(0), Ok),
            ("healed: 3 clean successes after 20 failures", window(3, 20, 0, 23, 3), healed(3), Ok),
            ("healed: 2 clean successes after 20 failures", window(2, 20, 0, 22, 2), healed(2), Ok),
            ("healing: 1 clean success after 10 failures", window(1, 10, 0, 11, 1), healed(1), Degraded),
            (
                "silent agent beats recovery",
                window(3, 0, 0, 3, 3),
                Context { agent_fresh: false, streak: None, clean: Some(5), cells: 1 },
                Unknown,
            ),
        ];
        for (name, w, cx, want) in cases {
            assert_eq!(classify(&w, &w, cx), want, "{name}");
        }
    }
}
