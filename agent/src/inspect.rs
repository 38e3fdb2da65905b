//! Inspections (being written)
