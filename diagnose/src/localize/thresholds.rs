//! The numbers that decide when a component is blamed, in one place. The defaults are chosen
//! so that one noisy agent or one flaky cell convicts nothing: a component needs several
//! failing cells, seen by at least two agents where two can see it, and a failing share well
//! above what random trouble produces.

/// When localization blames a component.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Share of the still-unexplained cells through a component that must fail for it to be
    /// blamed, where a component is not cleared by a single working path (a node's service
    /// path, a node's DNS, a path MTU).
    pub fail_share: f64,
    /// Distinct agents that must see a failure (fewer only when fewer agents can see it).
    pub min_observers: usize,
    /// Failing cells a component needs, whatever its share.
    pub min_failing_cells: usize,
    /// Loss ratio from which a working ICMP cell counts as lossy.
    pub lossy_cell: f64,
    /// Share of the cross-node ICMP cells through a node that must be lossy to blame it.
    pub loss_share: f64,
    /// A keepalive above this many seconds is a risk (runbook 2.3) when no idle cut is known.
    pub keepalive_unverified_above_secs: u64,
    /// Entries of `affected` listed before "and N more".
    pub max_affected: usize,
    /// Matrix cells quoted as evidence per finding.
    pub max_evidence_cells: usize,
    /// An agent not heard from for this share of the matrix's `agent_stale_after` is quiet:
    /// its cells are treated as unknown (agents report every fraction of a second while
    /// probing).
    pub quiet_share_of_stale: f64,
}

impl Default for Thresholds {
    /// 80 % failing, 2 agents, 2 cells; ICMP loss from 2 % on 60 % of a node's paths; keepalive
    /// above 600 s; 20 affected pairs and 8 evidence cells per finding; agents quiet after a
    /// quarter of the staleness bound.
    fn default() -> Self {
        Thresholds {
            fail_share: 0.8,
            min_observers: 2,
            min_failing_cells: 2,
            lossy_cell: 0.02,
            loss_share: 0.6,
            keepalive_unverified_above_secs: 600,
            max_affected: 20,
            max_evidence_cells: 8,
            quiet_share_of_stale: 0.25,
        }
    }
}
