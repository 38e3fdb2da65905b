//! A node's iptables rules as the agent reads them from `iptables-save` text: kube-proxy's
//! frontends and the DNAT targets its jumps lead to, and the firewall's drop rules. Properties:
//! no panic, no hang (jumps are followed to a bounded depth, loops cut), no unbounded memory;
//! each frontend reported once, at most the bounds of drop rules and of hand-made NAT rules, and
//! every one passes the collector's validation.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_agent::inspect::{iptables_filter, iptables_nat, iptables_nat_rules};

fuzz_target!(|data: &[u8]| {
    let text = netdiag_fuzz::text(data);
    let services = iptables_nat::parse(&text);
    // Not `has_kube_proxy_rules` too: it is `Tables::parse`, which `parse` runs, plus a lookup,
    // and would halve the executions.
    for pair in services.windows(2) {
        let key = |s: &netdiag_model::inspect::NatService| (s.node_port, s.vip, s.port, s.protocol);
        assert!(key(&pair[0]) != key(&pair[1]), "frontend reported twice: {:?}", pair[0]);
    }
    netdiag_fuzz::nat_reaches_the_collector(&services);
    netdiag_fuzz::filter_reaches_the_collector(&iptables_filter::parse(&text));
    netdiag_fuzz::nat_rules_reach_the_collector(&iptables_nat_rules::parse(&text));
});
