//! Probe kinds, targets and results.
