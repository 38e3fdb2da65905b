//! Conversion tests: per message family, a valid round trip (model → proto → bytes → proto →
//! model gives the original) and a table of hostile inputs, each rejected at the expected field
//! path; plus property tests that no input, however mangled, makes a conversion panic.

mod fixtures;
mod fuzz;
mod inspect;
mod plan;
mod query;
mod result;
mod run;
mod session;
mod target;
