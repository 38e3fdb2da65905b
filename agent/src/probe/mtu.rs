//! mtu probe (being written)
