//! The agent's own plan when the collector has not sent one: the model's pure derivation
//! ([`netdiag_model::plan::derive`]), shared with the collector, with the paths NetworkPolicy
//! keeps shut paced down as the collector's plans pace them.

use std::num::NonZeroU64;

use netdiag_diagnose::policy::pace::Pacer;
use netdiag_model::inventory::Inventory;
use netdiag_model::{NodeName, ProbePlan};

pub use netdiag_model::plan::derive::{HttpCheck, PlanOptions, SourcePods, derive_plan};

/// `node`'s plan from `inventory`, denied paths probed once every few rounds.
pub fn own_plan(
    inventory: &Inventory,
    node: &NodeName,
    opts: &PlanOptions,
    generation: NonZeroU64,
) -> ProbePlan {
    let mut plan = derive_plan(inventory, node, opts, generation);
    if let Some(pacer) = Pacer::new(inventory) {
        let paced = pacer.pace(inventory, &mut plan.probes);
        if paced > 0 {
            tracing::info!(
                paced,
                probes = plan.probes.len(),
                "paths NetworkPolicy keeps shut are probed once every few rounds"
            );
        }
    }
    plan
}
