//! Localization: walks the runbook's decision tree over the matrix and the inspections and
//! names the culprit of each failure, with evidence. Pure (being written).

use std::collections::BTreeMap;

use netdiag_model::NodeName;
use netdiag_model::finding::Finding;
use netdiag_model::inspect::InspectionReport;
use netdiag_model::inventory::Inventory;
use netdiag_model::probe::Source;
use netdiag_model::time::UnixMillis;

use crate::matrix::Matrix;

/// The findings for the current state, most severe first; empty when everything is healthy.
pub fn diagnose(
    _matrix: &Matrix,
    _inspections: &BTreeMap<Source, (NodeName, InspectionReport)>,
    _inventory: &Inventory,
    _now: UnixMillis,
) -> Vec<Finding> {
    Vec::new()
}
