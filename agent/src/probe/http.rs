//! http probe (being written)
