//! Rule 10, keepalive against idle cuts (runbook 2.3): a long-lived connection idle for longer
//! than a middlebox's idle timeout is forgotten and later packets vanish, unless TCP keepalive
//! fires first. From inspections only: each pod's `net.ipv4.tcp_keepalive_time` against the
//! idle cut of the nodes its TCP paths cross, which is known only where a node reports
//! `net.netfilter.nf_conntrack_tcp_timeout_established`.
//!
//! - `keepalive-exceeds-idle-cut`: the keepalive is longer than the shortest known cut;
//! - `keepalive-unverified`: nodes were inspected but none on the pod's paths reports a cut,
//!   the pod serves TCP
//!   ports (long-lived connections) and its keepalive is above
//!   `keepalive_unverified_above_secs` (the seed sets 300 s): a risk, not a measured fault.

use std::collections::{BTreeMap, BTreeSet};

use netdiag_model::inventory::Protocol;
use netdiag_model::probe::ProbeKind;
use netdiag_model::{CulpritKind, NodeName, PodRef, Port, Severity};

use super::super::context::{Context, join};
use super::super::evidence::Analysis;
use super::super::report::{Draft, ids};

pub(crate) const KEEPALIVE_TIME: &str = "net.ipv4.tcp_keepalive_time";
pub(crate) const CONNTRACK_ESTABLISHED: &str = "net.netfilter.nf_conntrack_tcp_timeout_established";

/// The TCP ports a pod serves (its own containerPorts and the target ports of services it
/// backs), leaving out DNS.
fn served_ports(a: &Analysis<'_>, pod: &PodRef) -> BTreeSet<Port> {
    let mut ports: BTreeSet<Port> = a
        .ctx
        .inventory
        .pod(pod)
        .map(|p| p.ports.iter().filter(|c| c.protocol == Protocol::Tcp).map(|c| c.port).collect())
        .unwrap_or_default();
    for s in a.ctx.services.values().filter(|s| s.backends.iter().any(|b| b.pod.as_ref() == Some(pod))) {
        ports.extend(s.info.ports.iter().filter(|p| p.protocol == Protocol::Tcp).map(|p| p.target_port));
    }
    ports.retain(|p| p.get() != 53);
    ports
}

/// For every pod, the nodes at the other end of its TCP cells, either way.
fn peer_nodes<'n>(a: &'n Analysis<'_>) -> BTreeMap<&'n PodRef, BTreeSet<&'n NodeName>> {
    let mut out: BTreeMap<&PodRef, BTreeSet<&NodeName>> = BTreeMap::new();
    for o in a.obs.iter().filter(|o| o.kind == ProbeKind::Tcp) {
        if let (Some(p), Some(d)) = (o.src_pod(), &o.dst_node) {
            out.entry(p).or_default().insert(d);
        }
        if let Some(p) = &o.dst_pod {
            out.entry(p).or_default().insert(o.src_node());
        }
    }
    out
}

pub(super) fn idle_cut(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let cuts: BTreeMap<&NodeName, u64> = a
        .ctx
        .node_reports
        .iter()
        .filter_map(|(n, r)| Some((n, Context::sysctl(r, CONNTRACK_ESTABLISHED)?.parse::<u64>().ok()?)))
        .collect();
    let peers = peer_nodes(a);
    for (pod, (reported_by, report)) in &a.ctx.pod_reports {
        let Some(keepalive) = Context::sysctl(report, KEEPALIVE_TIME).and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let own = a.ctx.node_of_pod(pod).unwrap_or(reported_by);
        // The nodes its TCP paths cross: its own, and those at the other end.
        let mut nodes = BTreeSet::from([own]);
        nodes.extend(peers.get(pod).into_iter().flatten().copied());
        let shortest = nodes.iter().filter_map(|n| cuts.get(*n).map(|c| (*c, *n))).min();
        let ka_line = format!("{pod}: {KEEPALIVE_TIME} = {keepalive}");
        match shortest {
            Some((cut, at)) if keepalive > cut => {
                let verdict = format!(
                    "pod {pod} keepalive {keepalive} s, longer than the path's idle cut at {cut} s (connection \
                     tracking on {at} forgets idle connections after {cut} s): idle long-lived connections are cut \
                     silently"
                );
                let evidence = vec![
                    ka_line,
                    format!("{at}: {CONNTRACK_ESTABLISHED} = {cut}"),
                    format!("{pod}'s TCP paths cross {}", join(&nodes.iter().collect::<Vec<_>>())),
                ];
                out.push(
                    Draft::new(
                        ids::KEEPALIVE_EXCEEDS_IDLE_CUT,
                        Severity::Warning,
                        (CulpritKind::Pod, pod.to_string()),
                        "2.3",
                        verdict,
                    )
                    .evidence(evidence)
                    .suggestion(format!(
                        "set {KEEPALIVE_TIME} below {cut} in the pod (the runbook uses 300: \
                         securityContext.sysctls or an initContainer) and make sure the application enables TCP \
                         keepalive, or raise the idle timeout on {at}"
                    )),
                );
            }
            Some(_) => {}
            // Only once nodes have been inspected: before that, unknown is not missing.
            None if a.ctx.node_reports.is_empty() => {}
            None => {
                let ports = served_ports(a, pod);
                if keepalive <= a.th.keepalive_unverified_above_secs || ports.is_empty() {
                    continue;
                }
                let limit = a.th.keepalive_unverified_above_secs;
                let verdict = format!(
                    "pod {pod} keepalive {keepalive} s with long-lived connections (ports {}): above {limit} s, and \
                     no node on its paths reports an idle timeout to compare with; a load balancer, NAT or \
                     conntrack idle cut shorter than that drops idle connections silently",
                    join(&ports.iter().collect::<Vec<_>>())
                );
                out.push(
                    Draft::new(
                        ids::KEEPALIVE_UNVERIFIED,
                        Severity::Warning,
                        (CulpritKind::Pod, pod.to_string()),
                        "2.3",
                        verdict,
                    )
                    .evidence(vec![
                        ka_line,
                        format!(
                            "no inspection of {} reports {CONNTRACK_ESTABLISHED}",
                            join(&nodes.iter().collect::<Vec<_>>())
                        ),
                    ])
                    .suggestion(format!(
                        "find the idle timeout of every load balancer and NAT on the pod's connections and keep \
                         {KEEPALIVE_TIME} below it (the runbook sets 300)"
                    )),
                );
            }
        }
    }
}
