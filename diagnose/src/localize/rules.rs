//! The runbook's decision tree as an ordered list of rules, one module per verdict family,
//! widest component first. A rule that blames a component claims the failing cells it
//! explains, so the rules after it judge only what is still unexplained: a dead node's pods
//! are not also reported down, a dead DNS server's port 53 is not also reported dropped.
//! Narrow verdicts also need a steady contrast (the pod answers ICMP, the backends answer,
//! the DNS pods answer) so that cells still recovering from a wider fault do not convict them.
//!
//! | order | rule | components | ids |
//! |---|---|---|---|
//! | 0 | [`forwarding`] | a node that does not forward (`ip_forward = 0` in its inspection) | `node-forwarding-disabled` |
//! | 1 | [`hop_tables`] | the tables of each hop a failing path crosses (inspections): an ARP/NDP entry holding a MAC no holder of the address has, a route that sends the address nowhere | `neighbour-mismatch`, `route-missing` |
//! | 1 | [`nodes`] | node (every path in and out) | `node-isolated` |
//! | 2 | [`pairs`] | node pair (pod traffic between two nodes), a node's route to a peer's pod CIDR | `route-missing`, `node-pair-broken` |
//! | 3 | [`pods`] | destination pod (and its own sending) | `pod-down` |
//! | 4 | [`endpoints`] | a service's endpoint list | `service-no-endpoints` |
//! | 5 | [`dns`] | the resolver everywhere, from one node, from one pod; its answers; a name | `dns-down`, `dns-unreachable-from-node`, `dns-servfail`, `dns-name-missing`, `dns-pod-resolver` |
//! | 6 | [`services`] | service path on one node (VIP through that node's NAT rules), NodePort on one node | `service-path-broken`, `nodeport-broken`, `nodeport-local-policy` |
//! | 7 | [`ports`] | pod:port | `port-refused`, `port-dropped` |
//! | 8 | [`mtu`] | path MTU through a node (or pair) | `mtu-blackhole`, `mtu-reduced` |
//! | 9 | [`loss`] | packet loss through a node | `node-packet-loss` |
//! | 10 | [`keepalive`] | a pod's keepalive against its paths' idle cut (inspections only) | `keepalive-exceeds-idle-cut`, `keepalive-unverified` |

mod dns;
mod endpoints;
mod forwarding;
mod hop_tables;
mod keepalive;
mod loss;
mod mtu;
mod nodes;
mod pairs;
mod pods;
mod ports;
mod services;

#[cfg(test)]
pub(crate) use self::mtu::parse_path_mtu;
use super::evidence::Analysis;
use super::report::Draft;

/// One rule: reads the open cells, claims what it explains, writes its drafts.
type Rule = fn(&mut Analysis<'_>, &mut Vec<Draft>);

/// The rules in the runbook's order, widest component first.
const RULES: [Rule; 16] = [
    forwarding::disabled,
    hop_tables::along_the_path,
    nodes::isolated,
    pairs::broken,
    pods::down,
    endpoints::missing,
    dns::everywhere,
    dns::from_node,
    dns::answers,
    dns::from_pod,
    services::vip_path,
    services::node_ports,
    ports::refused_or_dropped,
    mtu::reduced,
    loss::node_loss,
    keepalive::idle_cut,
];

/// Runs every rule in order; the cells each claims are settled to its drafts before the next.
pub(crate) fn run(a: &mut Analysis<'_>) -> Vec<Draft> {
    let mut out = Vec::new();
    for rule in RULES {
        let first = out.len();
        rule(a, &mut out);
        a.settle(&out[first..], first);
    }
    out
}
