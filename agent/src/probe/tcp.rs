//! tcp probe (being written)
