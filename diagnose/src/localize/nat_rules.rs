//! NAT rules on record outside kube-proxy's chains (a DNAT or REDIRECT written by hand, an SNAT
//! to an address the namespace does not hold, a NETMAP), read from the inspections: a rule that
//! rewrites failing paths and no working one is a cause on record, not a guess. It runs after
//! the firewall layer and the same way ([`super::firewall::absorb`]): the findings whose every
//! path the rule rewrites — a port "dropped" on one pod from one node's pods, a source group,
//! the residue — become one `nat-rewrite` finding naming the node (or pod) and quoting the rule
//! as `iptables -t nat -S` shows it, where it sends the traffic and whether anyone holds that
//! address; a finding it explains in part gains it as evidence.
//!
//! A request is walked through the hooks the firewall layer walks ([`super::firewall::routes`],
//! one per backend for a VIP), and at each node (or pod) meets its NAT as the kernel runs it:
//! the hook before routing (`PREROUTING`, or `OUTPUT` for the namespace's own packets), then the
//! one after (`POSTROUTING`, or `INPUT` for what it delivers to itself), rules in order, the
//! first that matches deciding — a VIP's packet is still for the VIP before routing on the
//! client's node, so rules after kube-proxy's jump never meet it. Only requests: NAT meets the
//! first packet of a connection, and replies follow conntrack's entry.
//!
//! A rule counts as a rewrite when it changes the packet: a DNAT elsewhere, a REDIRECT, a
//! NETMAP, an SNAT to an address the namespace does not hold (replies go to whoever holds it).
//! A MASQUERADE, or an SNAT to the namespace's own address, sends replies back where conntrack
//! expects them: no cause. An *opaque* rule (a condition the agent does not evaluate) that may
//! be the first to meet a failing path makes that path's NAT unknown: the findings claiming
//! such paths say so, and no rule behind it is taken for their cause.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use netdiag_model::inspect::{FilterHook, NatAction, NatHook, NatRule};
use netdiag_model::{CellStatus, CulpritKind, NodeName, PodRef, Severity};

use super::evidence::Analysis;
use super::firewall::{
    Addresses, Cause, Owner, Packet, absorb, backend_pod_hops, client_pod_hop, pod_hops, pod_uplink, routes,
    uplink,
};
use super::report::{Draft, ids};
use crate::matrix::Destination;

/// The NAT hooks a packet meets where the firewall meets it at `hook`: before routing, then
/// after.
fn nat_hooks(hook: FilterHook) -> [NatHook; 2] {
    match hook {
        FilterHook::Forward => [NatHook::Prerouting, NatHook::Postrouting],
        FilterHook::Input => [NatHook::Prerouting, NatHook::Input],
        FilterHook::Output => [NatHook::Output, NatHook::Postrouting],
    }
}

/// What a namespace's NAT does to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Met {
    /// No rule, or one that leaves it as it is.
    Nothing,
    /// The rule at this index rewrites it.
    Rewrite(usize),
    /// An opaque rule at this index may be the first to meet it.
    Unknown(usize),
}

/// The first rule of `rules` at `hook` that meets `p` (`pre_dnat`: the packet is for a VIP or
/// node port kube-proxy translates in this hook), and whether it changes it; `own` is what the
/// namespace holds.
fn meet(rules: &[NatRule], hook: NatHook, p: &Packet, uplink: Option<&str>, own: &[IpAddr]) -> Met {
    let before = hook.before_routing();
    let (destination, port) = match p.pre_dnat {
        Some(pre) if before => pre,
        _ => (p.destination, p.port),
    };
    for (j, r) in rules.iter().enumerate().filter(|(_, r)| r.hook == hook) {
        if before && p.pre_dnat.is_some() && r.after_kube_proxy {
            // kube-proxy's chains came first and translated it.
            return Met::Nothing;
        }
        if !conditions_hold(r, p, destination, port, uplink) {
            continue;
        }
        if r.opaque {
            return Met::Unknown(j);
        }
        let changes = match r.action {
            NatAction::Keep | NatAction::Masquerade => false,
            NatAction::Dnat { address, port: to_port } => {
                address.is_some_and(|a| Some(a) != destination) || to_port.is_some_and(|q| Some(q) != port)
            }
            NatAction::Redirect { .. } => true,
            NatAction::Snat { address } => Some(address) != p.source && !own.contains(&address),
            NatAction::Netmap { to } => {
                let ip = if before { destination } else { p.source };
                ip.is_some_and(|ip| !to.contains(&ip))
            }
        };
        return if changes { Met::Rewrite(j) } else { Met::Nothing };
    }
    Met::Nothing
}

/// Whether every condition of `r` holds for `p` with `destination` and `port` (before or after
/// kube-proxy's DNAT).
fn conditions_hold(
    r: &NatRule,
    p: &Packet,
    destination: Option<IpAddr>,
    port: Option<netdiag_model::Port>,
    uplink: Option<&str>,
) -> bool {
    let iface = |pattern: &Option<netdiag_model::Text<64>>, on_uplink: bool| match pattern {
        None => true,
        Some(pat) => match uplink {
            Some(up) if on_uplink => netdiag_model::inspect::FilterDrop::interface_matches(pat.as_str(), up),
            Some(up) => !netdiag_model::inspect::FilterDrop::interface_matches(pat.as_str(), up),
            None => false,
        },
    };
    let addr = |m: &Option<netdiag_model::inspect::AddressMatch>, ip: Option<IpAddr>| match m {
        None => true,
        Some(m) => ip.is_some_and(|ip| m.matches(ip)),
    };
    // Before routing the interface it leaves by is not known yet.
    let out_known = !r.hook.before_routing() || r.out_interface.is_none();
    r.protocol.is_none_or(|pr| pr == p.protocol)
        && addr(&r.source, p.source)
        && addr(&r.destination, destination)
        && (r.destination_ports.is_empty()
            || port.is_some_and(|q| r.destination_ports.iter().any(|x| x.contains(q))))
        && iface(&r.in_interface, p.in_uplink)
        && iface(&r.out_interface, p.out_uplink)
        && out_known
}

/// The addresses a namespace holds: a node's (inventory and links), a pod's.
fn own_addresses(a: &Analysis<'_>, owner: &Owner) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = match owner {
        Owner::Node(n) => a.ctx.inventory.node(n).map(|i| i.ips.clone()).unwrap_or_default(),
        Owner::Pod(p) => a.ctx.pod_ips(p),
    };
    if let Some(r) = owner.report(a) {
        out.extend(r.links.iter().flat_map(|l| l.addresses.iter().map(|n| n.addr())));
    }
    out
}

/// What one rule met: bad cells, troubled ok cells, and whether a working cell.
#[derive(Default)]
struct Matched {
    bad: BTreeSet<usize>,
    soft: BTreeSet<usize>,
    working: bool,
}

/// The rewrites every route of each cell meets, and the opaque rules its failing cells may meet
/// first.
struct Found {
    rewrites: BTreeMap<(Owner, usize), Matched>,
    unknown: BTreeMap<(Owner, usize), BTreeSet<usize>>,
}

fn found(a: &Analysis<'_>) -> Found {
    let mut out = Found { rewrites: BTreeMap::new(), unknown: BTreeMap::new() };
    let with_rules: BTreeMap<&NodeName, Option<String>> = a
        .ctx
        .node_reports
        .iter()
        .filter(|(_, r)| !r.nat_rules.is_empty())
        .map(|(n, _)| (n, uplink(a, n)))
        .collect();
    let pods_with_rules: BTreeMap<&PodRef, Option<String>> = a
        .ctx
        .pod_reports
        .iter()
        .filter(|(_, (_, r))| !r.nat_rules.is_empty())
        .map(|(p, _)| (p, pod_uplink(a, p)))
        .collect();
    if with_rules.is_empty() && pods_with_rules.is_empty() {
        return out;
    }
    let owns: BTreeMap<Owner, Vec<IpAddr>> = with_rules
        .keys()
        .map(|n| Owner::Node((*n).clone()))
        .chain(pods_with_rules.keys().map(|p| Owner::Pod((*p).clone())))
        .map(|o| {
            let own = own_addresses(a, &o);
            (o, own)
        })
        .collect();
    let ips = Addresses::new(a.ctx.inventory);
    for (i, o) in a.obs.iter().enumerate() {
        let bad = o.is_bad();
        let working = o.stats.status == CellStatus::Ok
            && o.stats.since_repair.successes > 0
            && !o.stats.since_repair.troubled();
        let soft = o.stats.status == CellStatus::Ok && o.stats.since_repair.troubled();
        if !bad && !working && !soft {
            continue;
        }
        let routes = routes(a, &ips, o);
        let Some(protocol) = routes.iter().flatten().map(|(_, _, p)| p.protocol).next() else { continue };
        let partial = routes.len() > 1
            && !working
            && (soft || o.stats.status == CellStatus::Degraded || o.stats.since_repair.successes > 0);
        let behind_vip = matches!(o.dest, Destination::Service { .. } | Destination::Dns { .. });
        let mut shared_pods = Vec::new();
        if !pods_with_rules.is_empty() {
            shared_pods = pod_hops(&ips, o, protocol);
            if behind_vip {
                shared_pods.extend(client_pod_hop(a, o, protocol));
            }
        }
        let mut met: Option<BTreeSet<(Owner, usize)>> = None;
        for route in &routes {
            let mut here = BTreeSet::new();
            let mut record =
                |owner: Owner, rules: &[NatRule], hook: FilterHook, p: &Packet, up: Option<&str>| {
                    let own = owns.get(&owner).map(Vec::as_slice).unwrap_or_default();
                    for nat_hook in nat_hooks(hook) {
                        match meet(rules, nat_hook, p, up, own) {
                            Met::Nothing => continue,
                            Met::Rewrite(j) => {
                                here.insert((owner, j));
                            }
                            Met::Unknown(j) => {
                                if bad {
                                    out.unknown.entry((owner, j)).or_default().insert(i);
                                }
                            }
                        }
                        // The first NAT hook that acts on it decides where it goes.
                        break;
                    }
                };
            for (node, hook, packet) in route.iter().filter(|(_, _, p)| !p.reply) {
                let (Some(up), Some(report)) = (with_rules.get(node), a.ctx.node_reports.get(node)) else {
                    continue;
                };
                record(Owner::Node(node.clone()), &report.nat_rules, *hook, packet, up.as_deref());
            }
            let backend = if behind_vip && !pods_with_rules.is_empty() {
                backend_pod_hops(a, route)
            } else {
                Vec::new()
            };
            for (pod, hook, packet) in shared_pods.iter().chain(&backend).filter(|(_, _, p)| !p.reply) {
                let (Some(up), Some((_, report))) = (pods_with_rules.get(pod), a.ctx.pod_reports.get(pod))
                else {
                    continue;
                };
                record(Owner::Pod(pod.clone()), &report.nat_rules, *hook, packet, up.as_deref());
            }
            met = Some(match met {
                None => here,
                Some(m) if partial => m.union(&here).cloned().collect(),
                Some(m) => m.intersection(&here).cloned().collect(),
            });
        }
        for key in met.unwrap_or_default() {
            let e = out.rewrites.entry(key).or_default();
            if bad {
                e.bad.insert(i);
            } else if soft {
                e.soft.insert(i);
            } else {
                e.working = true;
            }
        }
    }
    out
}

/// Where `action` sends what `rule` meets, in the runbook's words: the new address and who
/// holds it (nobody, a pod, a node, a Service), and whether it serves the paths' service.
fn target_words(a: &Analysis<'_>, owner: &Owner, rule: &NatRule, cells: &[usize]) -> String {
    let action = rule.action;
    let address = match action {
        NatAction::Dnat { address: Some(ip), .. } => ip,
        NatAction::Dnat { address: None, .. } => return format!("{action} on the same address"),
        NatAction::Redirect { .. } => return format!("{action}: to {owner} rather than where the paths go"),
        NatAction::Snat { address } => {
            return format!(
                "{action}, an address {owner} does not hold: the replies go to {}",
                holder(a, address).unwrap_or_else(|| "no one (no pod or node holds it)".to_owned())
            );
        }
        NatAction::Netmap { .. } => return format!("{action}, another range"),
        NatAction::Masquerade | NatAction::Keep => return action.to_string(),
    };
    let services: BTreeSet<&netdiag_model::ServiceRef> = cells
        .iter()
        .filter_map(|&i| a.obs.get(i))
        .filter_map(|o| match &o.dest {
            Destination::Service { service, .. } | Destination::Endpoint { service, .. } => Some(service),
            _ => None,
        })
        .collect();
    let (endpoint_of, not_of): (Vec<String>, Vec<String>) =
        services.into_iter().fold((Vec::new(), Vec::new()), |(mut yes, mut no), s| {
            let endpoint = a.ctx.services.get(s).is_some_and(|v| v.backends.iter().any(|b| b.ip == address));
            if endpoint {
                yes.push(s.to_string())
            } else {
                no.push(s.to_string())
            }
            (yes, no)
        });
    let mut words = match holder(a, address) {
        None => format!("{action}, an address no pod or node holds"),
        Some(who) => format!("{action}, which is {who}"),
    };
    if !not_of.is_empty() {
        words.push_str(&format!(" and no endpoint of {}", not_of.join(" or ")));
    }
    if !endpoint_of.is_empty() {
        words.push_str(&format!(", an endpoint of {}", endpoint_of.join(" and ")));
    }
    words
}

/// Who holds `ip`: a pod, a node, a Service's cluster IP; None when no one does.
fn holder(a: &Analysis<'_>, ip: IpAddr) -> Option<String> {
    if let Some(s) = a.ctx.service_with_vip(ip) {
        return Some(format!("the cluster IP of {}", s.info.service_ref()));
    }
    if let Some(n) = a.ctx.inventory.nodes.iter().find(|n| n.ips.contains(&ip)) {
        return Some(format!("node {}'s address", n.name));
    }
    match a.ctx.owner_of_ip(ip) {
        Some((Some(p), n)) => Some(format!("pod {p} on {n}")),
        // Inside a node's pod range, but no pod holds it.
        _ => None,
    }
}

/// How to see the rule in context and take it out: `iptables -t nat -S <chain>` and
/// `iptables -t nat -D …`, or `nft -a list chain …` and `nft delete rule … handle N`.
fn commands(owner: &Owner, rule: &NatRule) -> String {
    let text = rule.rule.as_str();
    let (list, delete) = if let Some(chain) = rule.iptables_chain() {
        let delete = text.strip_prefix("-A ").map(|rest| format!("iptables -t nat -D {rest}"));
        (format!("iptables -t nat -S {chain}"), delete)
    } else {
        // `nft <family> <table> <base> (<hook>)[ → <chain>…]: … # handle N`
        let head =
            text.strip_prefix(NatRule::NFT_RULE_PREFIX).and_then(|t| t.split_once(':')).map(|(h, _)| h);
        let mut words = head.map(|h| h.split_whitespace().collect::<Vec<_>>()).unwrap_or_default();
        let chain = words
            .last()
            .copied()
            .filter(|_| words.len() > 4)
            .unwrap_or_else(|| words.get(2).copied().unwrap_or("?"));
        words.truncate(2);
        let table = words.join(" ");
        let handle = text.rsplit_once("# handle ").map(|(_, h)| h.trim());
        (
            format!("nft -a list chain {table} {chain}"),
            handle.map(|h| format!("nft delete rule {table} {chain} handle {h}")),
        )
    };
    let within = match owner {
        Owner::Node(n) => format!("on {n}"),
        Owner::Pod(p) => format!("in {p}'s own network namespace (`nsenter -n -t <its pid> …`)"),
    };
    let delete = delete.map_or_else(|| "delete it".to_owned(), |d| format!("delete it: `{d}`"));
    format!(
        "read the rule in context {within}: `{list}`; it is no kube-proxy rule (kube-proxy writes only its \
         KUBE-* chains): find who wrote it (a person, a CNI plugin, a sidecar's init container) and {delete}"
    )
}

/// The `nat-rewrite` finding for `rule`.
fn finding(a: &Analysis<'_>, owner: &Owner, rule: &NatRule, cells: &[usize], was: &[String]) -> Draft {
    let target = target_words(a, owner, rule, cells);
    let hook = match rule.iptables_chain() {
        Some(chain) if chain != rule.hook.to_string() => format!("{}, reached from {}", chain, rule.hook),
        _ => rule.hook.to_string(),
    };
    let mut evidence = vec![format!("NAT rule on {owner} ({hook}): {}", rule.rule)];
    evidence.push(format!("it sends what it meets {target}"));
    evidence.push(format!(
        "every path it rewrites fails, none works; without it the paths read as: {}",
        was.join(", ")
    ));
    evidence.extend(a.cell_lines(cells));
    let culprit = match owner {
        Owner::Node(n) => (CulpritKind::Node, n.to_string()),
        Owner::Pod(p) => (CulpritKind::Pod, p.to_string()),
    };
    Draft::new(
        ids::NAT_REWRITE,
        Severity::Critical,
        culprit,
        "1.6",
        format!("{owner}'s NAT rule sends {} failing paths {target} ({hook}): {}", cells.len(), rule.rule),
    )
    .evidence(evidence)
    .suggestion(commands(owner, rule))
}

/// Applies the NAT rules on record to the drafts; returns the drafts with the claims moved.
pub(crate) fn run(a: &mut Analysis<'_>, drafts: Vec<Draft>) -> Vec<Draft> {
    let Found { rewrites, unknown } = found(a);
    let mut causes = Vec::new();
    for ((owner, j), m) in rewrites {
        if m.bad.is_empty() || m.working {
            continue;
        }
        let Some(rule) = owner.report(a).and_then(|r| r.nat_rules.get(j)) else { continue };
        let line = format!("{owner}'s NAT rule rewrites these paths ({}): {}", rule.hook, rule.rule);
        let who = owner.clone();
        causes.push(Cause {
            owner,
            bad: m.bad,
            soft: m.soft,
            line,
            finding: Box::new(move |a: &Analysis<'_>, cells: &[usize], was: &[String]| {
                finding(a, &who, rule, cells, was)
            }),
        });
    }
    let mut drafts = absorb(a, drafts, causes);
    // What may meet an opaque rule first is unknown: said where its cells are claimed.
    for ((owner, j), cells) in unknown {
        let Some(rule) = owner.report(a).and_then(|r| r.nat_rules.get(j)) else { continue };
        let line = format!(
            "{owner} holds a NAT rule ({}) with a condition netdiag does not evaluate, which {} of these paths \
             may meet first; its effect is unknown: {}",
            rule.hook,
            cells.len(),
            rule.rule
        );
        let owners: BTreeSet<usize> = cells.iter().filter_map(|&i| a.owner(i)).collect();
        for d in owners {
            if let Some(draft) = drafts.get_mut(d)
                && !draft.evidence.contains(&line)
            {
                draft.evidence.push(line.clone());
            }
        }
    }
    drafts
}

#[cfg(test)]
mod tests;
