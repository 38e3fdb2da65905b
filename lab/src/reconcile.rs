//! Makes a running lab match [`crate::desired`] for a list of active faults, touching only what
//! differs from the previous list (or everything when there is none, at bring-up).

use std::collections::BTreeMap;

use netdiag_model::inventory::ProxyMode;

use crate::desired::{self, FAULT_CHAIN};
use crate::faults::ActiveFault;
use crate::netcmd::{self, CommandError};
use crate::netpol::{Chains, Enforcement};
use crate::plan::{LabPlan, NodePlan, POD_GATEWAY_V4, POD_GATEWAY_V6, PodPlan, UPLINK_IF};
use crate::rules::Family;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("applying {what} in {netns} failed")]
    Command {
        what: &'static str,
        netns: String,
        #[source]
        source: CommandError,
    },
    #[error("cannot set {key} in {netns}: {message}")]
    Sysctl { netns: String, key: String, message: String },
}

fn families(plan: &LabPlan) -> Vec<Family> {
    if plan.ipv6 { vec![Family::V4, Family::V6] } else { vec![Family::V4] }
}

fn restore_program(family: Family) -> &'static str {
    match family {
        Family::V4 => "iptables-restore",
        Family::V6 => "ip6tables-restore",
    }
}

/// The routes a pod needs toward its node (re-added whenever its link comes back up).
pub fn pod_routes(pod: &PodPlan) -> Vec<String> {
    let mut r = vec![
        format!("route replace {POD_GATEWAY_V4} dev {UPLINK_IF} scope link"),
        format!("route replace default via {POD_GATEWAY_V4} dev {UPLINK_IF}"),
    ];
    if pod.ip_v6.is_some() {
        r.push(format!("route replace default via {POD_GATEWAY_V6} dev {UPLINK_IF}"));
    }
    r
}

/// The filter table of one namespace: the fault chain, jumped to first from INPUT, FORWARD and
/// OUTPUT, then the NetworkPolicy chains ([`crate::netpol`]), merged with whatever else the
/// namespace's filter table must hold (kube-proxy's filter rules on a node in iptables mode),
/// whose hooks come last, as a CNI's come before kube-proxy's.
fn filter_table(fault_rules: &[String], netpol: &Chains, extra: Option<&str>) -> String {
    let (mut decls, mut rules) = (Vec::new(), Vec::new());
    if let Some(extra) = extra {
        for line in extra.lines() {
            if line.starts_with(':') {
                decls.push(line.to_owned());
            } else if line.starts_with("-A ") || line.starts_with("-I ") {
                rules.push(line.to_owned());
            }
        }
    }
    let mut text = String::from("*filter\n");
    for builtin in ["INPUT", "FORWARD", "OUTPUT"] {
        if !decls.iter().any(|d| d.starts_with(&format!(":{builtin} "))) {
            text.push_str(&format!(":{builtin} ACCEPT [0:0]\n"));
        }
    }
    for d in &decls {
        text.push_str(d);
        text.push('\n');
    }
    text.push_str(&format!(":{FAULT_CHAIN} - [0:0]\n"));
    for (chain, _) in &netpol.chains {
        text.push_str(&format!(":{chain} - [0:0]\n"));
    }
    for builtin in ["INPUT", "FORWARD", "OUTPUT"] {
        text.push_str(&format!("-A {builtin} -j {FAULT_CHAIN}\n"));
    }
    for (builtin, chain) in &netpol.hooks {
        text.push_str(&format!("-A {builtin} -j {chain}\n"));
    }
    for r in &rules {
        text.push_str(r);
        text.push('\n');
    }
    for r in fault_rules {
        text.push_str(&format!("-A {FAULT_CHAIN} {r}\n"));
    }
    for (chain, chain_rules) in &netpol.chains {
        for r in chain_rules {
            text.push_str(&format!("-A {chain} {r}\n"));
        }
    }
    text.push_str("COMMIT\n");
    text
}

/// Splits iptables-restore text into (table name → block body without `*table` and `COMMIT`).
fn split_tables(text: &str) -> BTreeMap<String, String> {
    let mut tables = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('*') {
            current = Some((name.trim().to_owned(), String::new()));
        } else if line.trim() == "COMMIT" {
            if let Some((name, body)) = current.take() {
                tables.insert(name, body);
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    tables
}

/// Everything one node namespace's iptables must hold for a family: kube-proxy's nat (and
/// filter) tables in iptables mode, the fault chain and the pods' egress policy chains.
pub fn node_iptables(
    plan: &LabPlan,
    enforcement: &Enforcement,
    node: &NodePlan,
    faults: &[ActiveFault],
    family: Family,
) -> String {
    let rules = desired::fault_rules(plan, faults, &node.netns, family);
    let netpol = enforcement.node_chains(plan, faults, node, family);
    match plan.proxy_mode {
        ProxyMode::Iptables => {
            let kube = desired::nat_rules(plan, node, faults, family);
            let tables = split_tables(&kube);
            let mut text = String::new();
            for (name, body) in &tables {
                if name != "filter" {
                    text.push_str(&format!("*{name}\n{body}COMMIT\n"));
                }
            }
            text.push_str(&filter_table(&rules, &netpol, tables.get("filter").map(String::as_str)));
            text
        }
        ProxyMode::Nftables => filter_table(&rules, &netpol, None),
    }
}

/// A pod namespace's filter table (fault chain and policy chains); `None` while neither has a
/// rule there, so a pod no fault or policy touches keeps an untouched filter table.
pub fn pod_iptables(
    plan: &LabPlan,
    enforcement: &Enforcement,
    pod: &PodPlan,
    faults: &[ActiveFault],
    family: Family,
) -> Option<String> {
    let rules = desired::fault_rules(plan, faults, &pod.netns, family);
    let netpol = enforcement.pod_chains(plan, faults, pod, family);
    (!rules.is_empty() || !netpol.is_empty()).then(|| filter_table(&rules, &netpol, None))
}

fn nft_script(plan: &LabPlan, node: &NodePlan, faults: &[ActiveFault], family: Family) -> Option<String> {
    (plan.proxy_mode == ProxyMode::Nftables).then(|| desired::nat_rules(plan, node, faults, family))
}

fn apply(
    what: &'static str,
    netns: &str,
    program: &str,
    args: &[&str],
    stdin: &str,
) -> Result<(), ReconcileError> {
    netcmd::run(Some(netns), program, args, Some(stdin)).map(drop).map_err(|source| ReconcileError::Command {
        what,
        netns: netns.to_owned(),
        source,
    })
}

fn ip_lines(what: &'static str, netns: &str, lines: &[String]) -> Result<(), ReconcileError> {
    netcmd::ip_batch(Some(netns), lines).map_err(|source| ReconcileError::Command {
        what,
        netns: netns.to_owned(),
        source,
    })
}

/// The filter-table state one (plan, faults) pair asks for.
struct Desired<'a> {
    plan: &'a LabPlan,
    enforcement: &'a Enforcement,
    faults: &'a [ActiveFault],
}

/// Writes every node's and pod's filter table (nodes: with kube-proxy's iptables tables, or
/// the nftables script) that differs between `old` (None: unknown, write all) and `new`. Each
/// namespace is one `iptables-restore` transaction, which replaces its tables whole, so writing
/// one twice is harmless.
fn apply_filter_tables(old: Option<&Desired<'_>>, new: &Desired<'_>) -> Result<(), ReconcileError> {
    let plan = new.plan;
    for family in families(plan) {
        for node in &plan.nodes {
            let want = node_iptables(plan, new.enforcement, node, new.faults, family);
            if old.is_none_or(|o| node_iptables(o.plan, o.enforcement, node, o.faults, family) != want) {
                apply("iptables rules", &node.netns, restore_program(family), &[], &want)?;
            }
            if let Some(want) = nft_script(plan, node, new.faults, family)
                && old.is_none_or(|o| nft_script(o.plan, node, o.faults, family).as_ref() != Some(&want))
            {
                apply("nftables rules", &node.netns, "nft", &["-f", "-"], &want)?;
            }
        }
        for pod in &plan.pods {
            let want = pod_iptables(plan, new.enforcement, pod, new.faults, family);
            let before = old.map(|o| pod_iptables(o.plan, o.enforcement, pod, o.faults, family));
            // A pod gets a filter table only once a fault or a policy touches it; one that no
            // longer has any rule gets an empty fault chain.
            let text = match (&before, want) {
                (None, None) => continue,
                (Some(b), w) if *b == w => continue,
                (_, Some(w)) => w,
                (Some(_), None) => filter_table(&[], &Chains::default(), None),
            };
            apply("fault and policy rules", &pod.netns, restore_program(family), &[], &text)?;
        }
    }
    Ok(())
}

/// Re-applies the policy chains after a running lab's namespaces or NetworkPolicies changed
/// (`old` and `new` differ in nothing else): only the namespaces whose filter tables differ are
/// written.
pub fn reconcile_policies(
    old: &LabPlan,
    new: &LabPlan,
    faults: &[ActiveFault],
) -> Result<(), ReconcileError> {
    let (old_e, new_e) = (Enforcement::new(old), Enforcement::new(new));
    apply_filter_tables(
        Some(&Desired { plan: old, enforcement: &old_e, faults }),
        &Desired { plan: new, enforcement: &new_e, faults },
    )
}

/// Brings the lab from the state of `old` faults (None: unknown, apply everything) to `new`.
pub fn reconcile(
    plan: &LabPlan,
    old: Option<&[ActiveFault]>,
    new: &[ActiveFault],
) -> Result<(), ReconcileError> {
    let enforcement = Enforcement::new(plan);
    let old = old.map(|o| Desired { plan, enforcement: &enforcement, faults: o });
    apply_filter_tables(old.as_ref(), &Desired { plan, enforcement: &enforcement, faults: new })?;
    let old = old.map(|o| o.faults);

    for node in &plan.nodes {
        let mut lines = Vec::new();
        if old.is_none() {
            // The node's own traffic to a Service VIP needs a route before kube-proxy's OUTPUT
            // DNAT rewrites it (a real node's default route serves); the lab's nodes have none,
            // so the service CIDR points at the underlay, which stays sealed: a VIP whose DNAT
            // is missing times out there, as it would behind a real default gateway.
            lines.extend(desired::service_routes(plan));
        }
        for peer in plan.nodes.iter().filter(|p| p.name != node.name) {
            let missing = desired::route_missing(new, node, peer);
            let was_missing = old.map(|o| desired::route_missing(o, node, peer));
            if was_missing == Some(missing) {
                continue;
            }
            for route in desired::peer_routes(plan, peer) {
                if missing {
                    if was_missing.is_some() {
                        lines.push(format!("route del {route}"));
                    }
                } else {
                    lines.push(format!("route replace {route}"));
                }
            }
        }
        ip_lines("routes", &node.netns, &lines)?;
    }

    for pod in &plan.pods {
        let up = desired::pod_link_up(new, pod);
        if old.is_some_and(|o| desired::pod_link_up(o, pod) == up) || (old.is_none() && up) {
            continue;
        }
        let mut lines = vec![format!("link set {UPLINK_IF} {}", if up { "up" } else { "down" })];
        if up {
            lines.extend(pod_routes(pod));
        }
        ip_lines("pod link", &pod.netns, &lines)?;
    }

    let want = desired::fault_sysctls(plan, new);
    let before = old.map(|o| desired::fault_sysctls(plan, o));
    let mut by_ns: BTreeMap<String, Vec<(&str, String)>> = BTreeMap::new();
    for (i, (ns, key, value)) in want.iter().enumerate() {
        let unchanged = before.as_ref().is_some_and(|b| b.get(i) == Some(&(ns.clone(), *key, value.clone())));
        if !unchanged {
            by_ns.entry(ns.clone()).or_default().push((key, value.clone()));
        }
    }
    for (ns, keys) in by_ns {
        let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (*k, v.as_str())).collect();
        write_sysctls(&ns, &keys).map_err(|(key, message)| ReconcileError::Sysctl {
            netns: ns.clone(),
            key,
            message,
        })?;
    }
    Ok(())
}

/// Writes `/proc/sys/<key with dots as slashes>` from a thread inside the namespace (network
/// sysctls belong to the writer's namespace). Returns the failing key and why.
pub fn write_sysctls(netns: &str, keys: &[(&str, &str)]) -> Result<(), (String, String)> {
    let owned: Vec<(String, String)> = keys.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let path = LabPlan::netns_path(netns);
    let result = netdiag_netns::run_in(&path, move || {
        for (key, value) in &owned {
            let file = format!("/proc/sys/{}", key.replace('.', "/"));
            if let Err(e) = std::fs::write(&file, value) {
                return Err((key.clone(), e.to_string()));
            }
        }
        Ok(())
    });
    match result {
        Ok(inner) => inner,
        Err(e) => Err(("(entering the namespace)".to_owned(), netcmd::error_chain(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_table_hooks_fault_chain_before_kube_rules() {
        let kube = ":KUBE-SERVICES - [0:0]\n-A FORWARD -m conntrack --ctstate NEW -j KUBE-SERVICES\n";
        let text = filter_table(&["-p tcp -j DROP".into()], &Chains::default(), Some(kube));
        let hook = text.find("-A FORWARD -j NETDIAG-FAULTS").unwrap();
        let kube_hook = text.find("-A FORWARD -m conntrack").unwrap();
        assert!(hook < kube_hook, "{text}");
        assert!(text.contains(":KUBE-SERVICES - [0:0]\n"));
        assert!(text.contains("-A NETDIAG-FAULTS -p tcp -j DROP\n"));
        assert!(text.ends_with("COMMIT\n"));
    }

    #[test]
    fn split_tables_finds_each_block() {
        let t = split_tables("*nat\n:A - [0:0]\n-A A -j B\nCOMMIT\n*filter\n:X - [0:0]\nCOMMIT\n");
        assert_eq!(t.len(), 2);
        assert_eq!(t["nat"], ":A - [0:0]\n-A A -j B\n");
        assert_eq!(t["filter"], ":X - [0:0]\n");
    }
}
