//! icmp probe (being written)
