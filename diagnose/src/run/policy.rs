//! What the cluster's NetworkPolicies say of an on-demand run's path, said before it probes
//! and held against what it finds: a run still probes a denied path, and its verdict says
//! whether the dataplane agrees ("denied by policy, as intended") or lets it through ("policy
//! not enforced").
//!
//! The run's path is its backend steps (a pod, a service's endpoints, a node or an address)
//! by TCP or HTTP, each judged as the continuous diagnosis judges a cell; ICMP and DNS steps
//! are not (policy leaves ICMP to the plugin, and the DNS steps reach the cluster DNS, not
//! the target).

use std::net::IpAddr;

use netdiag_model::inventory::Inventory;
use netdiag_model::probe::{ProbeKind, Source};
use netdiag_model::{NodeName, PodRef, Port};

use super::expand::StepRole;
use crate::policy::{Endpoint, HostKind, PodEndpoint, PolicySet, Traffic, Transport, Verdict, Via};

/// The policy verdict of a run's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPolicy {
    /// Every backend the run aims at is denied (a defined deny, not left to the plugin).
    pub denied: bool,
    /// One line for the user: what policy says and which policies decide it.
    pub summary: String,
    /// The deciding policies (`namespace/name`), sorted.
    pub policies: Vec<String>,
}

/// A backend step's pod, node, address and port.
type Backend<'r> = (&'r Option<PodRef>, &'r Option<NodeName>, IpAddr, Port);

/// What policy says of the backends among `roles`, from `source`; None when no policy
/// isolates either end (the common case: nothing to say) or the inventory has no policies.
pub fn judge(inventory: &Inventory, source: &Source, roles: &[StepRole]) -> Option<RunPolicy> {
    if inventory.network_policies.is_empty() {
        return None;
    }
    let (set, _) = PolicySet::from_inventory(inventory);
    let backends: Vec<Backend<'_>> = roles
        .iter()
        .filter_map(|r| match r {
            StepRole::Backend { pod, node, ip, port: Some(port), kind: ProbeKind::Tcp | ProbeKind::Http } => {
                Some((pod, node, *ip, *port))
            }
            _ => None,
        })
        .collect();
    let src = match source {
        Source::Pod(p) => Endpoint::Pod(PodEndpoint::of(inventory.pod(p)?)),
        Source::Node(n) => {
            let ip = *inventory.node(n)?.ips.first()?;
            Endpoint::Host { ip, node: n, kind: HostKind::Node }
        }
    };
    let mut lines = Vec::new();
    let mut deciding = std::collections::BTreeSet::new();
    let (mut denied, mut isolated) = (0, false);
    for (pod, node, ip, port) in &backends {
        let dest = match (pod, node) {
            (Some(p), _) => match inventory.pod(p) {
                Some(info) => Endpoint::Pod(PodEndpoint::of(info).at(*ip)),
                None => continue,
            },
            (None, Some(n)) => Endpoint::Host { ip: *ip, node: n, kind: HostKind::Node },
            (None, None) => Endpoint::External(*ip),
        };
        let v = set.evaluate(&Traffic {
            source: src,
            destination: dest,
            transport: Transport::Tcp(*port),
            via: Via::Direct,
        });
        isolated |= v.egress.is_isolated() || v.ingress.is_isolated();
        if v.verdict == Verdict::Deny {
            denied += 1;
        }
        deciding.extend(v.deciding_policies().into_iter().map(ToString::to_string));
        lines.push(format!("{dest}:{port}: {v}"));
    }
    if !isolated || lines.is_empty() {
        return None;
    }
    lines.dedup();
    let all_denied = denied == backends.len();
    let head = if all_denied {
        "NetworkPolicy denies this path".to_owned()
    } else if denied > 0 {
        format!("NetworkPolicy denies this path to {denied} of {} backends", backends.len())
    } else {
        "NetworkPolicy allows this path".to_owned()
    };
    Some(RunPolicy {
        denied: all_denied,
        summary: format!("{head} ({})", lines.join("; ")),
        policies: deciding.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::World;

    fn only_tidb() -> Inventory {
        World::tidb_isolated().inventory()
    }

    fn backend(inv: &Inventory, pod: &str, port: u32) -> StepRole {
        let p: PodRef = pod.parse().unwrap();
        let info = inv.pod(&p).unwrap();
        StepRole::Backend {
            pod: Some(p.clone()),
            node: Some(info.node.clone()),
            ip: info.ips[0],
            port: Some(Port::new(port).unwrap()),
            kind: ProbeKind::Tcp,
        }
    }

    #[test]
    fn a_denied_run_says_so_and_names_the_policy() {
        let inv = only_tidb();
        let from = Source::Pod("kube-system/coredns-0".parse().unwrap());
        let got = judge(&inv, &from, &[backend(&inv, "tidb/demo-pd-1", 2379)]).unwrap();
        assert!(got.denied);
        assert!(
            got.summary.starts_with("NetworkPolicy denies this path (pod tidb/demo-pd-1:2379: denied"),
            "{}",
            got.summary
        );
        assert!(got.summary.contains("tidb/only-tidb"), "{}", got.summary);
    }

    #[test]
    fn an_allowed_run_under_isolation_says_which_policy_allows_it() {
        let inv = only_tidb();
        let from = Source::Pod("tidb/demo-pd-0".parse().unwrap());
        let got = judge(&inv, &from, &[backend(&inv, "tidb/demo-pd-1", 2379)]).unwrap();
        assert!(!got.denied);
        assert!(got.summary.starts_with("NetworkPolicy allows this path"), "{}", got.summary);
        assert!(got.summary.contains("allowed by policy tidb/only-tidb"), "{}", got.summary);
    }

    #[test]
    fn nothing_is_said_without_isolation_or_policies() {
        let inv = only_tidb();
        let from = Source::Pod("tidb/demo-pd-0".parse().unwrap());
        let to_dns = StepRole::Backend {
            pod: Some("kube-system/coredns-0".parse().unwrap()),
            node: Some("node-1".parse().unwrap()),
            ip: inv.pod(&"kube-system/coredns-0".parse().unwrap()).unwrap().ips[0],
            port: Some(Port::new(53).unwrap()),
            kind: ProbeKind::Tcp,
        };
        assert_eq!(judge(&inv, &from, &[to_dns]), None, "kube-system is not isolated");
        let plain = World::healthy().inventory();
        assert_eq!(judge(&plain, &from, &[backend(&plain, "tidb/demo-pd-1", 2379)]), None);
    }
}
