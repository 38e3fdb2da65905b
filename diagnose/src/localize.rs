//! Localization: walks the runbook's decision tree over the matrix and the inspections and
//! names the culprit of each failure, with evidence. Pure: plain data and a `now` in, findings
//! out; no I/O, no clock.
//!
//! 1. **Evidence** ([`evidence`]): every pod-level cell the matrix knows at `now` that is `ok`,
//!    `degraded` or `failed`, placed on the nodes and pods at its ends. `unknown` cells (a
//!    silent agent's, or empty windows) are left out: unknown is not failed; so are the cells
//!    of an agent already quiet for a while, and a pod's probes of itself. A cell *fails now*
//!    when failed or its latest two results failed, and *works* when its latest succeeded, so
//!    a fault shows within two probes and a repair clears on the first good one.
//! 2. **Components, widest first** ([`rules`]): node, node pair (and a node's route to the
//!    other's pod CIDR), pod, a service's endpoint list, the DNS resolver (everywhere, from one
//!    node, from one pod) and the names it serves, a service's path through one node's NAT
//!    rules and NodePorts, pod:port, then degradations: path MTU, packet loss, keepalive
//!    against idle cuts. A component is *cleared* when a path through it works (a pod that
//!    answers anyone is not down; a node pair with any working pod-to-pod path is not cut);
//!    it is *blamed* only when enough of the still-unexplained cells through it fail, seen by
//!    enough agents ([`Thresholds`]), so one noisy agent or one flaky cell convicts nothing.
//!    A blamed component *claims* the failing cells it explains, including service and DNS
//!    cells whose backends sit behind it, and narrower components judge only what is left.
//! 3. **Classes** ([`cover`]): what no rule explained, explained by the component class that
//!    fits it best (a pod or node in one direction or both, a node pair one way or both, a
//!    destination seen from one group of sources, a service or the DNS from one node or
//!    everywhere; every kind or one), by a greedy cover over hit ratio and independent
//!    observers — hard failures first, then degradations with their magnitudes since onset.
//! 4. **The residue** ([`residual`]): quiet agents' frozen cells, pods' probes of themselves
//!    and whatever is still open go to the finding that blames their node or pod, an
//!    `agent-quiet` finding, or one `unexplained-failures` finding. **Invariant: every
//!    failed or degraded pod-level cell of the matrix is claimed by exactly one finding**
//!    ([`Localization::claims`]); the property test over the simulator checks it.
//! 5. **Firewalls and NAT on record** ([`firewall`]): a node's drop or reject rule that matches
//!    failing paths and no working one is quoted as evidence; findings it wholly explains that
//!    blame other components (its symptoms, scattered) become one `firewall-drop` finding.
//!    NAT rules outside kube-proxy's chains ([`nat_rules`]) the same way: a DNAT, REDIRECT or
//!    SNAT that rewrites failing paths and no working one becomes one `nat-rewrite` finding
//!    quoting the rule and saying where it sends the traffic.
//! 6. **NetworkPolicy** ([`policy`]): cells the cluster's policies keep shut are set apart
//!    before any rule runs (denied as intended: listed, never a finding); working cells a
//!    policy denies make a `policy-not-enforced` finding.
//! 7. **Findings** ([`report`]): one per blamed component, with the runbook's words and real
//!    names, the affected paths (capped), the cells and inspection lines behind it, the
//!    runbook section and what to check next; most severe first, then by id and culprit.

mod context;
mod cover;
mod evidence;
mod firewall;
mod hooks;
mod nat_rules;
mod policy;
pub(crate) mod report;
mod residual;
mod routing;
mod rules;
mod thresholds;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;

use netdiag_model::NodeName;
use netdiag_model::finding::Finding;
use netdiag_model::inspect::InspectionReport;
use netdiag_model::inventory::Inventory;
use netdiag_model::probe::Source;
use netdiag_model::time::UnixMillis;

use self::evidence::Claim;
pub use self::thresholds::Thresholds;
use crate::matrix::{Matrix, PodKey};

/// The findings and which of them explains each failed or degraded cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Localization {
    /// Most severe first; empty when everything is healthy.
    pub findings: Vec<Finding>,
    /// Every failed or degraded pod-level cell, with the index in `findings` of the finding
    /// that claims it (in key order). A cell is missing only when its finding was cut by the
    /// cap on findings, or when it is in `denied_by_policy`.
    pub claims: Vec<(PodKey, usize)>,
    /// Failed or degraded cells NetworkPolicy keeps shut, as intended (in key order), each
    /// with the policy verdict's sentence: never a finding's.
    pub denied_by_policy: Vec<(PodKey, String)>,
    /// The inventory's NetworkPolicies (or namespaces) left out, each with why: what the API
    /// server's validation would have refused.
    pub policy_errors: Vec<String>,
}

/// The findings for the current state, most severe first; empty when everything is healthy.
pub fn diagnose(
    matrix: &Matrix,
    inspections: &BTreeMap<Source, (NodeName, InspectionReport)>,
    inventory: &Inventory,
    now: UnixMillis,
) -> Vec<Finding> {
    localize(matrix, inspections, inventory, now, &Thresholds::default()).findings
}

/// [`diagnose`] with thresholds of one's own.
pub fn diagnose_with(
    matrix: &Matrix,
    inspections: &BTreeMap<Source, (NodeName, InspectionReport)>,
    inventory: &Inventory,
    now: UnixMillis,
    thresholds: &Thresholds,
) -> Vec<Finding> {
    localize(matrix, inspections, inventory, now, thresholds).findings
}

/// The findings and each bad cell's claim.
pub fn localize(
    matrix: &Matrix,
    inspections: &BTreeMap<Source, (NodeName, InspectionReport)>,
    inventory: &Inventory,
    now: UnixMillis,
    thresholds: &Thresholds,
) -> Localization {
    let ctx = context::Context::new(inventory, inspections);
    let mut analysis = evidence::Analysis::new(matrix, &ctx, thresholds, now);
    let mut drafts = rules::run(&mut analysis);
    let rejected = cover::run(&mut analysis, &mut drafts);
    residual::run(&mut analysis, &mut drafts, &rejected);
    let drafts = firewall::run(&mut analysis, drafts);
    let mut drafts = nat_rules::run(&mut analysis, drafts);
    policy::note_allowed(&analysis, &mut drafts);
    drafts.extend(policy::not_enforced(&analysis));
    let (findings, place) = report::finish(drafts, thresholds.max_affected);
    let owner = |c: Option<usize>| c.and_then(|d| place.get(d).copied().flatten());
    let a = &analysis;
    let mut claims: Vec<(PodKey, usize)> = (0..a.obs.len())
        .filter(|&i| a.obs[i].is_bad())
        .filter_map(|i| Some((a.obs[i].key(), owner(a.owner(i))?)))
        .chain(a.held.iter().filter_map(|(o, _, c)| {
            let d = match c {
                Claim::Draft(d) => Some(*d),
                Claim::Open | Claim::Pending => None,
            };
            Some((o.key(), owner(d)?))
        }))
        .collect();
    claims.sort_by(|x, y| x.0.cmp(&y.0));
    let mut denied_by_policy: Vec<(PodKey, String)> =
        a.expected.iter().map(|(o, e)| (o.key(), e.reason())).collect();
    denied_by_policy.sort_by(|x, y| x.0.cmp(&y.0));
    Localization { findings, claims, denied_by_policy, policy_errors: a.ctx.policy_errors.clone() }
}
