//! Inspections: the state of a node's or a pod's network namespace, read from inside it — links,
//! addresses, routes and neighbours over rtnetlink ([`netlink`]), network sysctls
//! ([`sysctls`]), the pod's resolv.conf and its own firewall's drops and NAT rules
//! ([`iptables_filter`], [`iptables_nat_rules`]: one `iptables-save` per inspection), and on
//! nodes kube-proxy's NAT rules in either proxy mode ([`nat`], parsed by [`iptables_nat`] and
//! [`nft_kube_proxy`], read from the iptables backend [`iptables_backend`] finds), the firewall's
//! drops and the other NAT rules ([`nft_filter`], [`nft_nat`] for the node's own nftables
//! tables) — gathered into one
//! [`InspectionReport`](netdiag_model::InspectionReport) by [`inspect`]. [`changed`] tells
//! whether a report is worth sending.
//!
//! The parsers are pure and tested on captured real output (`agent/tests/fixtures/`); the I/O
//! runs through [`SourceNs`]: commands are spawned and netlink sockets opened by the thread
//! parked in the namespace, never by calling `setns` here.

mod change;
mod command;
pub mod iptables_backend;
pub mod iptables_filter;
pub mod iptables_nat;
pub mod iptables_nat_rules;
pub mod nat;
pub mod netlink;
pub mod nft_filter;
pub mod nft_kube_proxy;
pub mod nft_nat;
pub mod sysctls;
#[cfg(test)]
mod testing;

use std::path::Path;
use std::time::SystemTime;

use netdiag_model::UnixMillis;
use netdiag_model::inspect::{InspectionReport, ResolvConf};
use netdiag_model::limits::{
    MAX_FILTER_DROPS, MAX_INSPECTION_ERRORS, MAX_LINE_BYTES, MAX_LINK_ADDRESSES, MAX_LINKS, MAX_NAT_RULES,
    MAX_NAT_SERVICES, MAX_NAT_TARGETS, MAX_NEIGHBOURS, MAX_ROUTE_RULES, MAX_ROUTES, MAX_SYSCTLS,
};
use netdiag_model::text::Text;

pub use self::change::changed;
pub use self::command::CommandError;
use crate::source::SourceNs;

/// What an inspection covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InspectScope {
    /// A node (or hostNetwork) namespace: everything, kube-proxy's NAT rules included.
    Node,
    /// A pod: links, addresses, routes, neighbours, sysctls, resolv.conf and its own firewall
    /// and NAT rules; not kube-proxy's.
    Pod,
}

/// Inspects `src`'s namespace. Never fails as a whole: each part that cannot be read leaves its
/// fields empty and adds a line to `errors` saying what failed and what to do. The report is
/// stamped with the time the inspection started.
pub async fn inspect(src: &SourceNs, scope: InspectScope) -> InspectionReport {
    inspect_at(src, scope, now()).await
}

/// [`inspect`] with the report's timestamp given.
pub async fn inspect_at(src: &SourceNs, scope: InspectScope, at: UnixMillis) -> InspectionReport {
    let nat = async {
        match scope {
            InspectScope::Node => Some(nat::inspect_nat(src).await),
            InspectScope::Pod => None,
        }
    };
    // A pod's own firewall and NAT (rules a sidecar, an init container, a service mesh or an
    // in-pod policy agent wrote): its filter, raw and mangle tables' drops and its nat table's
    // rules, IPv4 (one command per inspection).
    let pod_filter = async {
        match scope {
            InspectScope::Pod => {
                Some(command::output(src, "iptables-save", &[], command::COMMAND_TIMEOUT).await)
            }
            InspectScope::Node => None,
        }
    };
    let (netlink, (sysctls, sysctl_errors), nat, resolv_conf, pod_filter) = tokio::join!(
        netlink::inspect_netlink(src),
        sysctls::read_sysctls(src, sysctls::REQUIRED, sysctls::OPTIONAL),
        nat,
        resolv_conf(src.resolv_conf(), scope),
        pod_filter,
    );

    let mut errors: Vec<String> = Vec::new();
    errors.extend(netlink.errors.iter().map(|e| format!("netlink: {e}")));
    errors.extend(sysctl_errors.iter().map(|e| format!("sysctls: {e}")));
    let (nat_services, proxy_mode, filter_drops, nat_rules) = match nat {
        Some(nat) => {
            errors.extend(nat.errors.iter().map(|e| format!("nat: {e}")));
            (nat.services, nat.proxy_mode, nat.filter_drops, nat.nat_rules)
        }
        None => (Vec::new(), None, Vec::new(), Vec::new()),
    };
    let (filter_drops, nat_rules) = match pod_filter {
        Some(Ok(text)) => (iptables_filter::parse(&text), iptables_nat_rules::parse(&text)),
        Some(Err(e)) => {
            errors.push(format!("pod firewall: {e}"));
            (filter_drops, nat_rules)
        }
        None => (filter_drops, nat_rules),
    };
    let resolv_conf = match resolv_conf {
        Ok(conf) => conf,
        Err(e) => {
            errors.push(e);
            None
        }
    };

    let mut report = InspectionReport {
        source: src.source().clone(),
        at,
        links: netlink.links,
        routes: netlink.routes,
        rules: netlink.rules,
        neighbours: netlink.neighbours,
        nat_services,
        sysctls,
        resolv_conf,
        proxy_mode,
        errors: Vec::new(),
        filter_drops,
        nat_rules,
    };
    cap_to_limits(&mut report, &mut errors);
    report.errors =
        errors.iter().take(MAX_INSPECTION_ERRORS).map(|e| Text::<MAX_LINE_BYTES>::lossy(e)).collect();
    report
}

/// The source's resolv.conf in the model's terms. A pod without a known resolv.conf is an
/// error; a node without one is not (its resolver is not what pods use).
async fn resolv_conf(path: Option<&Path>, scope: InspectScope) -> Result<Option<ResolvConf>, String> {
    let Some(path) = path.map(Path::to_path_buf) else {
        return match scope {
            InspectScope::Pod => Err("resolv.conf: the agent knows no resolv.conf for this pod \
                 (its /proc/<pid>/root/etc/resolv.conf was not found): DNS settings are not reported"
                .to_owned()),
            InspectScope::Node => Ok(None),
        };
    };
    let read = tokio::task::spawn_blocking(move || crate::resolv_conf::read(&path)).await;
    match read {
        Ok(Ok(conf)) => Ok(Some(conf.to_model())),
        Ok(Err(e)) => Err(format!("resolv.conf: {}", error_chain(&e))),
        Err(e) => Err(format!("resolv.conf: reading it was cancelled: {e}")),
    }
}

/// Trims every list to the model's bounds, saying so in `errors`, so that a report always
/// passes the wire conversion.
fn cap_to_limits(report: &mut InspectionReport, errors: &mut Vec<String>) {
    fn cap<T>(what: &str, list: &mut Vec<T>, max: usize, errors: &mut Vec<String>) {
        if list.len() > max {
            errors.push(format!("{what}: {} found, only the first {max} are reported", list.len()));
            list.truncate(max);
        }
    }
    cap("links", &mut report.links, MAX_LINKS, errors);
    for link in &mut report.links {
        cap("addresses of a link", &mut link.addresses, MAX_LINK_ADDRESSES, errors);
    }
    cap("routes", &mut report.routes, MAX_ROUTES, errors);
    cap("routing rules", &mut report.rules, MAX_ROUTE_RULES, errors);
    cap("neighbours", &mut report.neighbours, MAX_NEIGHBOURS, errors);
    cap("NAT frontends", &mut report.nat_services, MAX_NAT_SERVICES, errors);
    cap("firewall drop rules", &mut report.filter_drops, MAX_FILTER_DROPS, errors);
    cap("NAT rules", &mut report.nat_rules, MAX_NAT_RULES, errors);
    for svc in &mut report.nat_services {
        cap("NAT targets of a frontend", &mut svc.targets, MAX_NAT_TARGETS, errors);
    }
    cap("sysctls", &mut report.sysctls, MAX_SYSCTLS, errors);
    if errors.len() > MAX_INSPECTION_ERRORS {
        let more = errors.len() - (MAX_INSPECTION_ERRORS - 1);
        errors.truncate(MAX_INSPECTION_ERRORS - 1);
        errors.push(format!("{more} more errors were left out"));
    }
}

fn now() -> UnixMillis {
    UnixMillis::saturating_from_system_time(SystemTime::now())
}

pub(crate) use netdiag_model::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_over_the_limits_are_cut_and_said_so() {
        let mut report = InspectionReport {
            source: "node/node-1".parse().unwrap(),
            at: UnixMillis::new(1).unwrap(),
            links: vec![],
            routes: vec![],
            rules: vec![],
            neighbours: vec![],
            nat_services: vec![],
            sysctls: vec![],
            filter_drops: vec![],
            nat_rules: vec![],
            resolv_conf: None,
            proxy_mode: None,
            errors: vec![],
        };
        let mut errors: Vec<String> = (0..300).map(|i| format!("error {i}")).collect();
        cap_to_limits(&mut report, &mut errors);
        assert_eq!(errors.len(), MAX_INSPECTION_ERRORS);
        assert_eq!(errors.last().unwrap(), "45 more errors were left out");
    }

    #[tokio::test]
    async fn a_pod_without_a_resolv_conf_is_an_error_a_node_is_not() {
        assert!(resolv_conf(None, InspectScope::Pod).await.unwrap_err().contains("resolv.conf"));
        assert_eq!(resolv_conf(None, InspectScope::Node).await, Ok(None));
        let err =
            resolv_conf(Some(Path::new("/nonexistent/resolv.conf")), InspectScope::Pod).await.unwrap_err();
        assert!(err.starts_with("resolv.conf: cannot open"), "{err}");
    }
}
