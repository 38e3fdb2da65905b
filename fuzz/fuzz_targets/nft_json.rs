//! nftables rules as the agent reads them from `nft -j` JSON: the families holding a
//! `kube-proxy` table, every frontend and its DNAT targets; the tables the firewall reader
//! reads and their drop rules. Properties: no panic, no hang (verdicts and jumps are followed to
//! a bounded depth), no unbounded memory; input that is not nft's JSON is an error to every
//! reader, and every frontend and drop rule found passes the collector's validation.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_agent::inspect::{nft_filter, nft_kube_proxy, nft_nat};

fuzz_target!(|data: &[u8]| {
    let json = netdiag_fuzz::text(data);
    let tables = nft_kube_proxy::kube_proxy_tables(&json);
    match nft_kube_proxy::parse(&json) {
        Ok(services) => {
            assert!(tables.is_ok(), "parsed, yet not nft JSON to kube_proxy_tables");
            netdiag_fuzz::nat_reaches_the_collector(&services);
        }
        Err(e) => {
            assert!(tables.is_err(), "not nft JSON to parse, yet it is to kube_proxy_tables");
            let _ = e.to_string();
        }
    }
    match nft_filter::parse(&json) {
        Ok(drops) => {
            assert!(tables.is_ok(), "drops parsed, yet not nft JSON to kube_proxy_tables");
            netdiag_fuzz::filter_reaches_the_collector(&drops);
        }
        Err(_) => assert!(tables.is_err(), "not nft JSON to the filter reader, yet it is to kube_proxy_tables"),
    }
    let _ = nft_filter::tables_to_read(&json);
    match nft_nat::parse(&json) {
        Ok(rules) => netdiag_fuzz::nat_rules_reach_the_collector(&rules),
        Err(_) => assert!(tables.is_err(), "not nft JSON to the NAT reader, yet it is to kube_proxy_tables"),
    }
});
