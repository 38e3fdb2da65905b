//! Rule 5, name resolution (runbook 1.2, decision-tree step 1): can the source resolve? If not,
//! is its nameserver reachable, is the DNS service up anywhere, does the name exist?
//!
//! DNS cells are lookups through each pod's resolv.conf and straight to each cluster
//! nameserver. A failed lookup is *unreachable* (timeout, no nameserver answered), a *server
//! error* (SERVFAIL, REFUSED: the server is there) or a *missing name* (NXDOMAIN, NODATA).
//!
//! - `dns-down`: unreachable from every node that looks up (≥ `fail_share` of each node's
//!   lookups): "CoreDNS down everywhere";
//! - `dns-unreachable-from-node`: unreachable from the pods of one node while other nodes
//!   resolve and the DNS pods still answer ICMP from that node: "resolver 10.96.0.10
//!   unreachable from every pod on node A, reachable elsewhere";
//! - `dns-servfail`: server errors seen by at least two agents;
//! - `dns-name-missing`: one name missing for everyone who asks it, while it resolves nowhere;
//! - `dns-pod-resolver`: one pod's lookups through its resolv.conf all fail while the cluster
//!   nameservers answer it directly (or its node's other pods resolve) and it reaches other
//!   pods: its resolv.conf.
//!
//! TCP cells to the DNS service's VIP and its backends' port 53 are evidence of the same fault
//! and are claimed with it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use netdiag_model::probe::{ProbeKind, Source};
use netdiag_model::{CulpritKind, DnsFailure, NodeName, Outcome, PodRef, Severity};

use super::super::context::{NatLookup, join};
use super::super::evidence::{Analysis, Obs};
use super::super::report::{Draft, ids};
use crate::matrix::Destination;
use netdiag_model::inspect::NatProtocol;

/// What a failed lookup says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Unreachable,
    ServerError,
    NameMissing,
}

fn class(o: &Obs) -> Option<Class> {
    if o.kind != ProbeKind::Dns || !o.failed() {
        return None;
    }
    Some(match o.failure() {
        Some(Outcome::Dns(DnsFailure::ServFail | DnsFailure::Refused)) => Class::ServerError,
        Some(Outcome::Dns(DnsFailure::NxDomain | DnsFailure::NoRecords)) => Class::NameMissing,
        _ => Class::Unreachable,
    })
}

/// TCP cells to the cluster DNS: its VIP, or port 53 of one of its backends.
fn dns_tcp(a: &Analysis<'_>, o: &Obs) -> bool {
    if o.kind != ProbeKind::Tcp {
        return false;
    }
    if let Destination::Service { service, .. } = &o.dest {
        return a.ctx.dns_services.contains(service);
    }
    let Some(pod) = &o.dst_pod else { return false };
    a.ctx.dns_services.iter().filter_map(|s| a.ctx.services.get(s)).any(|s| {
        s.backends.iter().any(|b| b.pod.as_ref() == Some(pod))
            && o.dst_port.is_some_and(|p| s.info.ports.iter().any(|sp| sp.target_port == p))
    })
}

/// ICMP cells from the pods of `node` to the DNS service's pods: (steady, all).
fn icmp_to_dns_pods(a: &Analysis<'_>, node: &NodeName) -> (usize, usize) {
    let Some(svc) = a.ctx.dns_service() else { return (0, 0) };
    let pods: BTreeSet<&PodRef> = svc.backends.iter().filter_map(|b| b.pod.as_ref()).collect();
    let cells = a.obs.iter().filter(|o| {
        o.kind == ProbeKind::Icmp
            && o.src_pod().is_some()
            && o.src_node() == node
            && o.dst_pod.as_ref().is_some_and(|p| pods.contains(p))
    });
    cells.fold((0, 0), |(ok, all), o| (ok + usize::from(o.steady()), all + 1))
}

/// The most common failure among `ids`, as the API words it.
fn usual_failure(a: &Analysis<'_>, ids: &[usize]) -> String {
    let mut counts: BTreeMap<Outcome, usize> = BTreeMap::new();
    for &i in ids {
        if let Some(f) = a.obs[i].failure() {
            *counts.entry(f).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(o, n)| (*n, std::cmp::Reverse(*o)))
        .map(|(o, _)| o.to_string())
        .unwrap_or_default()
}

/// How the DNS backends fare: ICMP answers but TCP 53 fails means the server is not serving.
fn backend_lines(a: &Analysis<'_>, from: Option<&NodeName>) -> Vec<String> {
    let mut out = Vec::new();
    let Some(svc) = a.ctx.dns_service() else { return out };
    for b in &svc.backends {
        let Some(pod) = &b.pod else { continue };
        let into = |kind: ProbeKind| {
            a.obs.iter().filter(move |o| {
                o.kind == kind && o.dst_pod.as_ref() == Some(pod) && from.is_none_or(|n| o.src_node() == n)
            })
        };
        let icmp_ok = into(ProbeKind::Icmp).filter(|o| o.works()).count();
        let icmp = into(ProbeKind::Icmp).count();
        let tcp_fail = into(ProbeKind::Tcp).filter(|o| o.failed() && dns_tcp(a, o)).count();
        let tcp = into(ProbeKind::Tcp).filter(|o| dns_tcp(a, o)).count();
        if icmp > 0 && tcp > 0 {
            let (whence, tail) = match from {
                Some(n) if icmp_ok > 0 && tcp_fail == tcp => {
                    (format!(" from {n}"), format!(": port 53 is filtered between {n} and the DNS pod"))
                }
                Some(n) => (format!(" from {n}"), String::new()),
                None if icmp_ok > 0 && tcp_fail == tcp => {
                    (String::new(), ": the pod is up but nothing answers on port 53 there".to_owned())
                }
                None => (String::new(), String::new()),
            };
            out.push(format!(
                "{pod}{whence}: ICMP answers on {icmp_ok} of {icmp} paths, TCP 53 fails on {tcp_fail} of {tcp}{tail}"
            ));
        }
    }
    out
}

fn dns_suggestion(a: &Analysis<'_>) -> String {
    match a.ctx.dns_services.first() {
        Some(svc) => format!(
            "`kubectl -n {ns} get pods -o wide` for the DNS pods behind {svc}, their logs \
             (`kubectl -n {ns} logs <pod>`), and `kubectl -n {ns} get endpoints {name}`",
            ns = svc.namespace,
            name = svc.name
        ),
        None => "check the cluster DNS pods, their logs and their endpoints".to_owned(),
    }
}

pub(super) fn everywhere(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let by_node = a.group(|o| (o.kind == ProbeKind::Dns).then(|| o.src_node().clone()));
    if by_node.is_empty() {
        return;
    }
    let mut failing = Vec::new();
    for ids in by_node.values() {
        let unreachable: Vec<usize> =
            ids.iter().copied().filter(|&i| class(&a.obs[i]) == Some(Class::Unreachable)).collect();
        if (unreachable.len() as f64) < a.th.fail_share * ids.len() as f64 {
            return;
        }
        failing.extend(unreachable);
    }
    if failing.len() < a.th.min_failing_cells || by_node.len() < a.need(a.agents.len()) {
        return;
    }
    let tcp: Vec<usize> = a.open().filter(|&i| a.obs[i].failed() && dns_tcp(a, &a.obs[i])).collect();
    a.claim(&failing);
    a.claim(&tcp);
    let resolvers = join(&a.ctx.inventory.cluster.dns_ips);
    let verdict = format!(
        "CoreDNS down everywhere: resolver {resolvers} ({}) answers no pod on any node ({} lookups fail from {} \
         nodes: {})",
        a.ctx.dns_name(),
        failing.len(),
        by_node.len(),
        usual_failure(a, &failing)
    );
    let mut evidence = backend_lines(a, None);
    evidence.extend(a.cell_lines(&failing));
    let mut all = failing.clone();
    all.extend(&tcp);
    out.push(
        Draft::new(
            ids::DNS_DOWN,
            Severity::Critical,
            (CulpritKind::Dns, a.ctx.dns_culprit()),
            "1.2",
            verdict,
        )
        .affected(a.paths(&all))
        .evidence(evidence)
        .suggestion(dns_suggestion(a)),
    );
}

pub(super) fn from_node(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let by_node = a.group(|o| (o.kind == ProbeKind::Dns).then(|| o.src_node().clone()));
    let mut convicted = Vec::new();
    for (node, ids) in &by_node {
        let unreachable: Vec<usize> =
            ids.iter().copied().filter(|&i| class(&a.obs[i]) == Some(Class::Unreachable)).collect();
        if unreachable.len() < a.th.min_failing_cells
            || (unreachable.len() as f64) < a.th.fail_share * ids.len() as f64
        {
            continue;
        }
        // Every pod on the node that looks up must fail most of its lookups.
        let mut per_pod: BTreeMap<&PodRef, (usize, usize)> = BTreeMap::new();
        for &i in ids {
            if let Some(p) = a.obs[i].src_pod() {
                let e = per_pod.entry(p).or_default();
                e.1 += 1;
                e.0 += usize::from(class(&a.obs[i]) == Some(Class::Unreachable));
            }
        }
        let failing_pods = per_pod.values().filter(|(f, n)| 2 * f >= *n && *f > 0).count();
        if failing_pods < per_pod.len() || failing_pods < a.need(per_pod.len()) {
            continue;
        }
        // DNS-specific only if the DNS pods answer ICMP steadily from this node (when probed):
        // a dead or recovering path at L3 is for the path rules.
        let (icmp_ok, icmp_all) = icmp_to_dns_pods(a, node);
        if icmp_all > 0 && icmp_ok == 0 {
            continue;
        }
        let elsewhere: Vec<usize> =
            by_node.iter().filter(|(n, _)| *n != node).flat_map(|(_, v)| v.iter().copied()).collect();
        let elsewhere_ok = elsewhere.iter().filter(|&&i| a.obs[i].works()).count();
        if elsewhere_ok == 0 {
            continue;
        }
        convicted.push((node.clone(), unreachable, per_pod.len(), elsewhere_ok, elsewhere.len()));
    }
    for (node, failing, pods, ok, total) in convicted {
        let tcp: Vec<usize> = a
            .open()
            .filter(|&i| a.obs[i].src_node() == &node && a.obs[i].failed() && dns_tcp(a, &a.obs[i]))
            .collect();
        a.claim(&failing);
        a.claim(&tcp);
        let mut resolvers: BTreeSet<IpAddr> = a.ctx.resolvers_on(&node).into_iter().collect();
        for &i in &failing {
            if let Destination::Dns { nameserver: Some(ip), .. } = &a.obs[i].dest {
                resolvers.insert(*ip);
            }
        }
        let resolvers: Vec<IpAddr> = resolvers.into_iter().collect();
        let shown = join(&resolvers);
        let verdict = format!(
            "resolver {shown} unreachable from every pod on {node} ({} lookups from {pods} pods fail: {}), \
             reachable elsewhere",
            failing.len(),
            usual_failure(a, &failing)
        );
        let mut evidence = vec![format!("from the other nodes {ok} of {total} lookups answer")];
        for ip in &resolvers {
            if a.ctx.service_with_vip(*ip).is_none() {
                continue;
            }
            let Ok(p53) = netdiag_model::Port::new(53) else { continue };
            for proto in [NatProtocol::Udp, NatProtocol::Tcp] {
                match a.ctx.nat_frontend(&node, *ip, p53, proto) {
                    NatLookup::Missing { .. } => evidence.push(format!(
                        "no DNAT rule for {ip}:53/{proto} in {node}'s rules: kube-proxy's rules for the DNS \
                         service are missing there"
                    )),
                    NatLookup::NoTargets => {
                        evidence.push(format!("{node}'s rules reject {ip}:53/{proto}: no DNS endpoint"))
                    }
                    NatLookup::Targets(s) => {
                        let to: Vec<String> = s
                            .targets
                            .iter()
                            .map(|t| std::net::SocketAddr::new(t.ip, t.port.get()).to_string())
                            .collect();
                        evidence.push(format!("{node}'s rules DNAT {ip}:53/{proto} to {}", to.join(", ")));
                    }
                    NatLookup::Unknown => {}
                }
            }
        }
        evidence.extend(backend_lines(a, Some(&node)));
        evidence.extend(a.cell_lines(&failing));
        let mut all = failing.clone();
        all.extend(&tcp);
        out.push(
            Draft::new(
                ids::DNS_UNREACHABLE_FROM_NODE,
                Severity::Critical,
                (CulpritKind::Dns, format!("{shown} from {node}")),
                "1.2",
                verdict,
            )
            .affected(a.paths(&all))
            .evidence(evidence)
            .suggestion(format!(
                "find what drops DNS from {node}: `iptables-save | grep -e 'dport 53' -e {first}` on {node}, \
                 egress NetworkPolicies of the pods there, and kube-proxy's rules for the DNS service on {node}",
                first = resolvers.first().map(ToString::to_string).unwrap_or_default()
            )),
        );
    }
}

pub(super) fn answers(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    servfail(a, out);
    name_missing(a, out);
}

fn servfail(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let failing: Vec<usize> = a.open().filter(|&i| class(&a.obs[i]) == Some(Class::ServerError)).collect();
    let observers: BTreeSet<&NodeName> = failing.iter().map(|&i| a.obs[i].src_node()).collect();
    let lookers: BTreeSet<&NodeName> =
        a.obs.iter().filter(|o| o.kind == ProbeKind::Dns).map(|o| o.src_node()).collect();
    if failing.len() < a.th.min_failing_cells || observers.len() < a.need(lookers.len()) {
        return;
    }
    let names: BTreeSet<String> = failing.iter().filter_map(|&i| dns_name(&a.obs[i])).collect();
    let asked: BTreeSet<String> = a.obs.iter().filter_map(dns_name).collect();
    let which = if names == asked {
        "every name it is asked".to_owned()
    } else {
        join(&names.iter().collect::<Vec<_>>())
    };
    let answer = usual_failure(a, &failing);
    let code = if answer.contains("REFUSED") { "REFUSED" } else { "SERVFAIL" };
    let n_observers = observers.len();
    a.claim(&failing);
    let verdict = format!(
        "resolver {} ({}) answers {code} for {which}: {} lookups from {n_observers} nodes",
        join(&a.ctx.inventory.cluster.dns_ips),
        a.ctx.dns_name(),
        failing.len()
    );
    out.push(
        Draft::new(
            ids::DNS_SERVFAIL,
            Severity::Critical,
            (CulpritKind::Dns, a.ctx.dns_culprit()),
            "1.2",
            verdict,
        )
        .affected(a.paths(&failing))
        .evidence(a.cell_lines(&failing))
        .suggestion(format!(
            "the DNS server is reachable but cannot answer: read its logs (upstream or forward errors, \
                 plugin errors, API access) and its configuration (Corefile); {}",
            dns_suggestion(a)
        )),
    );
}

/// The name a DNS cell asked, without a trailing dot.
fn dns_name(o: &Obs) -> Option<String> {
    match &o.dest {
        Destination::Dns { name, .. } => Some(name.as_str().trim_end_matches('.').to_owned()),
        _ => None,
    }
}

fn name_missing(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let by_name = a.group(|o| dns_name(o).filter(|_| o.kind == ProbeKind::Dns));
    for (name, ids) in by_name {
        let t = a.tally(&ids);
        let missing: Vec<usize> =
            t.failing.iter().copied().filter(|&i| class(&a.obs[i]) == Some(Class::NameMissing)).collect();
        if missing.len() != t.failing.len() || !a.all_fail(&t) {
            continue;
        }
        a.claim(&missing);
        let nodata = missing.iter().all(|&i| a.obs[i].failure() == Some(Outcome::Dns(DnsFailure::NoRecords)));
        let service = a.ctx.services.keys().find(|s| {
            netdiag_model::dns::DnsName::new(name.clone()).is_ok_and(|n| super::endpoints::asks_for(&n, s))
        });
        let what = if nodata {
            format!("no record of the asked type for {name}")
        } else {
            format!("NXDOMAIN for {name}")
        };
        let why = match service {
            Some(svc) => format!(
                ", though service {svc} exists: check the DNS server's view of the cluster \
                                 (CoreDNS kubernetes plugin, API access) and the name's namespace"
            ),
            None => {
                ": the name does not exist (a typo or the wrong namespace in the client's configuration?)"
                    .to_owned()
            }
        };
        let verdict = format!(
            "{what} from every pod that asks ({} lookups from {} nodes){why}",
            missing.len(),
            t.observers.len()
        );
        out.push(
            Draft::new(ids::DNS_NAME_MISSING, Severity::Critical, (CulpritKind::Dns, name.clone()), "1.2", verdict)
                .affected(a.paths(&missing))
                .evidence(a.cell_lines(&missing))
                .suggestion(format!(
                    "`nslookup {name}` from a pod, `kubectl get svc -A | grep {first}`; compare with the name the \
                     application is configured with",
                    first = name.split('.').next().unwrap_or_default()
                )),
        );
    }
}

pub(super) fn from_pod(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let by_pod = a.group(|o| {
        let through_conf = matches!(o.dest, Destination::Dns { nameserver: None, .. });
        (o.kind == ProbeKind::Dns && through_conf).then(|| o.src_pod().cloned()).flatten()
    });
    for (pod, ids) in by_pod {
        let t = a.tally(&ids);
        if t.working > 0 || t.failing.len() < a.th.min_failing_cells || t.share() < a.th.fail_share {
            continue;
        }
        // The pod's queries straight to a nameserver, by transport: one transport failing
        // while the other answers is a filter on that transport from this pod (its own
        // firewall, an egress policy), and those direct queries are part of the finding.
        let direct = |o: &Obs| {
            o.src_pod() == Some(&pod) && matches!(o.dest, Destination::Dns { nameserver: Some(_), .. })
        };
        let transport = |o: &Obs| match o.dest {
            Destination::Dns { transport, .. } => Some(transport),
            _ => None,
        };
        let direct_ok = a.obs.iter().any(|o| direct(o) && o.steady());
        let direct_failing: Vec<usize> =
            a.open().filter(|&i| direct(&a.obs[i]) && a.obs[i].failed()).collect();
        let failing_over: BTreeSet<String> =
            direct_failing.iter().filter_map(|&i| transport(&a.obs[i])).map(|t| t.to_string()).collect();
        let answering_over: BTreeSet<String> = a
            .obs
            .iter()
            .filter(|o| direct(o) && o.steady())
            .filter_map(transport)
            .map(|t| t.to_string())
            .filter(|t| !failing_over.contains(t))
            .collect();
        let node = a.ctx.node_of_pod(&pod);
        let neighbours_ok = a.obs.iter().any(|o| {
            o.kind == ProbeKind::Dns
                && matches!(&o.source, Source::Pod(p) if *p != pod)
                && node.is_some_and(|n| o.src_node() == n)
                && o.steady()
        });
        // A pod that reaches nothing has a network problem, not a resolver problem.
        let sends = a.obs.iter().any(|o| o.src_pod() == Some(&pod) && o.kind != ProbeKind::Dns && o.works());
        // And the DNS pods answer it steadily (when probed): a recovering path is not its
        // resolv.conf.
        let dns_pods: BTreeSet<&PodRef> = a
            .ctx
            .dns_service()
            .map(|s| s.backends.iter().filter_map(|b| b.pod.as_ref()).collect())
            .unwrap_or_default();
        let to_dns: Vec<&Obs> = a
            .obs
            .iter()
            .filter(|o| o.src_pod() == Some(&pod) && o.dst_pod.as_ref().is_some_and(|p| dns_pods.contains(p)))
            .collect();
        let dns_pods_steady =
            to_dns.is_empty() || to_dns.iter().any(|o| o.kind == ProbeKind::Icmp && o.steady());
        if (!direct_ok && !neighbours_ok) || !sends || !dns_pods_steady {
            continue;
        }
        a.claim(&t.failing);
        a.claim(&direct_failing);
        let conf = a.ctx.pod_reports.get(&pod).and_then(|(_, r)| r.resolv_conf.as_ref());
        let cluster = &a.ctx.inventory.cluster.dns_ips;
        let usual = usual_failure(a, &t.failing);
        let mut evidence = Vec::new();
        let join_set = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        let cause = match conf {
            _ if !failing_over.is_empty() && !answering_over.is_empty() => {
                evidence.push(format!(
                    "queries straight to the nameserver fail over {} and answer over {}",
                    join_set(&failing_over),
                    join_set(&answering_over)
                ));
                format!(
                    "its queries over {} fail, to the nameserver directly too, while {} answers: a filter on DNS over {} from this pod (its own firewall, an egress NetworkPolicy)",
                    join_set(&failing_over),
                    join_set(&answering_over),
                    join_set(&failing_over)
                )
            }
            Some(c) if !c.nameservers.iter().any(|ns| cluster.contains(ns)) => {
                evidence.push(format!(
                    "{pod}'s resolv.conf names nameserver {}, not the cluster DNS {}",
                    join(&c.nameservers),
                    join(cluster)
                ));
                format!("nameserver {} in its resolv.conf is not the cluster DNS", join(&c.nameservers))
            }
            Some(c) => {
                let search: Vec<String> = c.search.iter().map(ToString::to_string).collect();
                evidence.push(format!(
                    "{pod}'s resolv.conf: nameserver {}, search {}, ndots {}",
                    join(&c.nameservers),
                    if search.is_empty() { "(none)".to_owned() } else { search.join(" ") },
                    c.ndots
                ));
                format!("lookups through its resolv.conf fail ({usual})")
            }
            None => format!("lookups through its resolv.conf fail ({usual})"),
        };
        if direct_ok && failing_over.is_empty() {
            evidence.push("the cluster nameservers answer this pod when asked directly".to_owned());
        }
        if neighbours_ok && let Some(n) = node {
            evidence.push(format!("other pods on {n} resolve"));
        }
        let mut failing = t.failing.clone();
        failing.extend(&direct_failing);
        evidence.extend(a.cell_lines(&failing));
        let verdict = format!("DNS fails from pod {pod}: {cause}");
        out.push(
            Draft::new(
                ids::DNS_POD_RESOLVER,
                Severity::Critical,
                (CulpritKind::Pod, pod.to_string()),
                "1.2",
                verdict,
            )
            .affected(a.paths(&failing))
            .evidence(evidence)
            .suggestion(format!(
                "`kubectl -n {ns} exec {name} -- cat /etc/resolv.conf`; check the pod's dnsPolicy and \
                     dnsConfig, and the kubelet's --cluster-dns and --cluster-domain; when one transport \
                     fails, the egress NetworkPolicies selecting the pod (`kubectl get networkpolicy -n {ns}`) \
                     and the firewall inside its network namespace (`iptables-save` via `nsenter -n`)",
                ns = pod.namespace,
                name = pod.name
            )),
        );
    }
}
