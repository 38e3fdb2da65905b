//! Rule 3, a pod down (runbook 1.5, decision-tree step 3 at L3): ICMP and TCP to the pod fail
//! from every observer. A pod that answers anyone is not down. Its own probes failing too means
//! its interface is gone; its own probes working means something drops everything sent to it
//! (an ingress policy). The pod's inspection adds its links' state, and names the cause when
//! its routing table has no route out (a deleted default route): `route-missing` on the pod.

use std::collections::BTreeSet;

use netdiag_model::probe::ProbeKind;
use netdiag_model::{CulpritKind, IcmpFailure, Outcome, PodRef, Severity, TcpFailure};

use super::super::context::join;
use super::super::evidence::Analysis;
use super::super::report::{Draft, ids};

pub(super) fn down(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let groups = a.group(|o| {
        let probed = matches!(o.kind, ProbeKind::Icmp | ProbeKind::Tcp | ProbeKind::Mtu | ProbeKind::Http);
        o.dst_pod.clone().filter(|_| probed)
    });
    let mut order: Vec<(usize, PodRef)> =
        groups.iter().map(|(p, ids)| (a.tally(ids).failing.len(), p.clone())).collect();
    order.sort_by(|x, y| y.0.cmp(&x.0).then_with(|| x.1.cmp(&y.1)));
    for (_, pod) in order {
        let Some(ids) = groups.get(&pod) else { continue };
        let t = a.tally(ids);
        let icmp: Vec<usize> = t.ids.iter().copied().filter(|&i| a.obs[i].kind == ProbeKind::Icmp).collect();
        let icmp_t = a.tally(&icmp);
        if !a.all_fail(&t) || icmp_t.failing.is_empty() {
            continue;
        }
        let sending: Vec<usize> = a
            .open()
            .filter(|&i| {
                let o = &a.obs[i];
                o.src_pod() == Some(&pod) && o.kind != ProbeKind::Dns
            })
            .collect();
        let st = a.tally(&sending);
        let mute = st.working == 0 && !st.failing.is_empty();
        // Its own failures share the cause unless it still reaches others — or its routing
        // table, on record, has no route out (then its lookups fail for the same reason).
        let unrouted = a.ctx.pod_route_gap(&pod).is_some();
        let own: Vec<usize> = if st.working == 0 || unrouted {
            a.open().filter(|&i| a.obs[i].src_pod() == Some(&pod) && a.obs[i].failed()).collect()
        } else {
            Vec::new()
        };
        a.claim(&t.failing);
        a.claim(&own);
        let dependents = a.claim_dependents(|_, b, _| b.pod.as_ref() == Some(&pod));
        out.push(draft(a, &pod, &t.failing, &own, &dependents, mute, st.working > 0));
    }
}

fn draft(
    a: &Analysis<'_>,
    pod: &PodRef,
    into: &[usize],
    own: &[usize],
    dependents: &[usize],
    mute: bool,
    sends: bool,
) -> Draft {
    let ips = a.ctx.pod_ips(pod);
    let shown = if ips.is_empty() { pod.to_string() } else { format!("{pod} ({})", join(&ips)) };
    let unreachable = into.iter().filter(|&&i| {
        matches!(
            a.obs[i].failure(),
            Some(Outcome::Icmp(IcmpFailure::Unreachable) | Outcome::Tcp(TcpFailure::Unreachable))
        )
    });
    let how = if unreachable.count() * 2 > into.len() { "are unreachable" } else { "time out" };
    let has_tcp = into.iter().any(|&i| a.obs[i].kind == ProbeKind::Tcp);
    let what = if has_tcp { "ICMP and TCP to it" } else { "ICMP to it" };
    let observers: BTreeSet<_> = into.iter().map(|&i| a.obs[i].src_node()).collect();
    // Its own interfaces and routing table, as inspected, may say why it is mute: the cause
    // on record. An address taken off its interface takes the routes through it along.
    let unheld = a.ctx.pod_addresses_unheld(pod);
    let gap = if unheld.is_empty() { a.ctx.pod_route_gap(pod) } else { None };
    let tail = if !unheld.is_empty() {
        &*format!(
            ", and its own probes fail too: its address {} is not on any of its interfaces (last inspection), so \
             nothing is delivered to it and nothing it sends gets an answer",
            join(&unheld)
        )
    } else if let Some((missing, _)) = &gap {
        &*format!(
            ", and its own probes fail too: its routing table has no route to {} (no default route), so nothing \
             leaves it and no reply gets back",
            join(missing)
        )
    } else if mute {
        ", and its own probes fail too: its network interface is gone"
    } else if sends {
        ", yet it still reaches others: something drops everything sent to it (an ingress policy or firewall)"
    } else {
        ""
    };
    let verdict = format!(
        "pod {shown} does not answer: {what} {how} from every observer ({} paths from {} nodes){tail}",
        into.len(),
        observers.len()
    );
    let mut evidence = Vec::new();
    let node = a.ctx.node_of_pod(pod);
    if let Some((_, table)) = &gap {
        evidence.push(format!("{pod}'s routing table (last inspection): {}", table.join("; ")));
    }
    if let Some((_, report)) = a.ctx.pod_reports.get(pod)
        && !unheld.is_empty()
    {
        let held: Vec<String> = report
            .links
            .iter()
            .map(|l| {
                format!(
                    "{}: {}",
                    l.name,
                    if l.addresses.is_empty() { "no address".to_owned() } else { join(&l.addresses) }
                )
            })
            .collect();
        evidence.push(format!("{pod}'s interfaces (last inspection): {}", held.join("; ")));
    }
    if let Some((_, report)) = a.ctx.pod_reports.get(pod) {
        for link in report.links.iter().filter(|l| !l.up && l.name.as_str() != "lo") {
            evidence.push(format!(
                "{pod}: {} is DOWN in the pod's network namespace (last inspection)",
                link.name
            ));
        }
    }
    if let Some(node) = node {
        let peers_answer = a.obs.iter().any(|o| {
            o.dst_pod.as_ref().is_some_and(|p| p != pod && a.ctx.node_of_pod(p) == Some(node)) && o.works()
        });
        if peers_answer {
            evidence.push(format!("other pods on {node} answer: the node itself is fine"));
        }
    }
    if !own.is_empty() {
        evidence.push(format!("{} of its own probes fail as well", own.len()));
    }
    if !dependents.is_empty() {
        evidence.push(format!(
            "{} service or DNS paths fail because it is their only (or a failing) backend",
            dependents.len()
        ));
    }
    evidence.extend(a.cell_lines(into));
    let mut affected = a.paths(into);
    affected.extend(a.paths(dependents));
    let from = node.map_or_else(|| "its node".to_owned(), ToString::to_string);
    if gap.is_some() {
        let suggestion = format!(
            "`ip -n <pod netns> route` for {pod}: the network plugin sets its default route when the pod starts \
             (`default via 169.254.1.1 dev eth0` for Calico, the bridge's address for bridge plugins); something \
             removed it — restore it, or restart the pod so the plugin sets it up again"
        );
        return Draft::new(
            ids::ROUTE_MISSING,
            Severity::Critical,
            (CulpritKind::Pod, pod.to_string()),
            "1.6",
            verdict,
        )
        .affected(affected)
        .evidence(evidence)
        .suggestion(suggestion);
    }
    if !unheld.is_empty() {
        let suggestion = format!(
            "the network plugin assigns the pod's address when it starts, and something removed it (`ip -n <pod \
             netns> addr` for {pod}): restart the pod so the plugin sets it up again, or add it back with its \
             routes"
        );
        return Draft::new(
            ids::POD_DOWN,
            Severity::Critical,
            (CulpritKind::Pod, pod.to_string()),
            "1.5",
            verdict,
        )
        .affected(affected)
        .evidence(evidence)
        .suggestion(suggestion);
    }
    let suggestion = format!(
        "`kubectl -n {ns} get pod {name} -o wide` and `kubectl -n {ns} describe pod {name}` (Running? \
         Ready? being deleted?); from {from}, look at its interface (`ip -n <pod netns> link`) and \
         its veth on the node; `kubectl get networkpolicy -n {ns}` if it still sends",
        ns = pod.namespace,
        name = pod.name
    );
    Draft::new(ids::POD_DOWN, Severity::Critical, (CulpritKind::Pod, pod.to_string()), "1.5", verdict)
        .affected(affected)
        .evidence(evidence)
        .suggestion(suggestion)
}
