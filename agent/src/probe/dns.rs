//! dns probe (being written)
