//! resolv.conf parsing (being written)
