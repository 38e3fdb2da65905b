//! Rule 7, one port of one pod (runbook 1.5, decision-tree step 3 at L4): TCP to `pod:port`
//! fails from every observer while the pod itself answers (ICMP, or its other ports). A port
//! that answers anyone is cleared, and the pod must answer steadily (ICMP or another port). RST means nothing listens there (`port-refused`: the
//! containerPort or the app's configuration); silence means something drops it
//! (`port-dropped`: a NetworkPolicy or a firewall). Service cells that fail because this
//! backend does are claimed with it.

use std::collections::{BTreeMap, BTreeSet};

use netdiag_model::probe::ProbeKind;
use netdiag_model::{CulpritKind, Outcome, PodRef, Port, Severity, TcpFailure};

use super::super::context::join;
use super::super::evidence::Analysis;
use super::super::report::{Draft, ids};

pub(super) fn refused_or_dropped(a: &mut Analysis<'_>, out: &mut Vec<Draft>) {
    let groups: BTreeMap<(PodRef, Port), Vec<usize>> = a.group(|o| {
        if o.kind != ProbeKind::Tcp {
            return None;
        }
        Some((o.dst_pod.clone()?, o.dst_port?))
    });
    for ((pod, port), ids) in groups {
        let t = a.tally(&ids);
        if !a.all_fail(&t) {
            continue;
        }
        // The pod itself must answer steadily (ICMP, or another of its ports): otherwise this
        // is the pod or its path, not the port.
        let answers_steadily = a.obs.iter().any(|o| {
            o.dst_pod.as_ref() == Some(&pod)
                && (o.kind == ProbeKind::Icmp || (o.kind == ProbeKind::Tcp && o.dst_port != Some(port)))
                && o.steady()
        });
        if !answers_steadily {
            continue;
        }
        let refused = t
            .failing
            .iter()
            .filter(|&&i| a.obs[i].failure() == Some(Outcome::Tcp(TcpFailure::Refused)))
            .count();
        let is_refused = 2 * refused > t.failing.len();
        // Does the pod answer at all? ICMP, or another of its ports.
        let icmp = a.obs.iter().filter(|o| o.kind == ProbeKind::Icmp && o.dst_pod.as_ref() == Some(&pod));
        let (icmp_ok, icmp_all) = icmp.fold((0, 0), |(ok, all), o| (ok + usize::from(o.works()), all + 1));
        let other_ports: BTreeSet<Port> = a
            .obs
            .iter()
            .filter(|o| {
                o.kind == ProbeKind::Tcp
                    && o.dst_pod.as_ref() == Some(&pod)
                    && o.dst_port != Some(port)
                    && o.works()
            })
            .filter_map(|o| o.dst_port)
            .collect();
        a.claim(&t.failing);
        let dependents = a.claim_dependents(|_, b, bp| b.pod.as_ref() == Some(&pod) && bp == Some(port));
        let observers = t.observers.len();
        let mut evidence = Vec::new();
        if icmp_all == 0 {
            evidence.push(format!("ICMP to {pod} is not probed"));
        } else {
            evidence.push(format!("ICMP to {pod} answers on {icmp_ok} of {icmp_all} paths"));
        }
        if !other_ports.is_empty() {
            evidence.push(format!(
                "other ports of {pod} answer: {}",
                join(&other_ports.iter().collect::<Vec<_>>())
            ));
        }
        let declared: Vec<Port> =
            a.ctx.inventory.pod(&pod).map(|p| p.ports.iter().map(|c| c.port).collect()).unwrap_or_default();
        if !declared.is_empty() && !declared.contains(&port) {
            evidence.push(format!("{pod} declares containerPorts {}, not {port}", join(&declared)));
        }
        let users: Vec<String> = a
            .ctx
            .services
            .values()
            .filter(|s| {
                s.backends.iter().any(|b| b.pod.as_ref() == Some(&pod))
                    && s.info.ports.iter().any(|p| p.target_port == port)
            })
            .map(|s| s.info.service_ref().to_string())
            .collect();
        if !users.is_empty() {
            evidence.push(format!("{pod}:{port} is an endpoint of {}", join(&users)));
        }
        if !dependents.is_empty() {
            evidence.push(format!("{} service paths fail with it", dependents.len()));
        }
        evidence.extend(a.cell_lines(&t.failing));
        let answers = if icmp_ok > 0 {
            "ICMP answers"
        } else if !other_ports.is_empty() {
            "its other ports answer"
        } else {
            "ICMP does not answer either"
        };
        let (ns, name) = (&pod.namespace, &pod.name);
        let draft = if is_refused {
            Draft::new(
                ids::PORT_REFUSED,
                Severity::Critical,
                (CulpritKind::Port, format!("{pod}:{port}")),
                "1.5",
                format!(
                    "port {port} refused on pod {pod}: nothing listens there (containerPort / app config \
                     mismatch); {answers} ({} paths from {observers} nodes refused)",
                    t.failing.len()
                ),
            )
            .suggestion(format!(
                "check what listens in the pod: `kubectl -n {ns} exec {name} -- ss -ltn` (or `nsenter -n` from \
                 its node), compare with its containerPort {port} and the app's listen address/port \
                 configuration; is the app still starting or crash-looping (`kubectl -n {ns} describe pod {name}`)?"
            ))
        } else {
            Draft::new(
                ids::PORT_DROPPED,
                Severity::Critical,
                (CulpritKind::Port, format!("{pod}:{port}")),
                "1.5",
                format!(
                    "TCP to {pod}:{port} times out while {answers}: dropped by a policy or firewall \
                     ({} paths from {observers} nodes)",
                    t.failing.len()
                ),
            )
            .suggestion(format!(
                "`kubectl get networkpolicy -n {ns}` (ingress rules selecting {name}), and firewall rules for port \
                 {port} in the pod's namespace and on its node: `iptables-save | grep {port}`"
            ))
        };
        let mut affected = a.paths(&t.failing);
        affected.extend(a.paths(&dependents));
        out.push(draft.affected(affected).evidence(evidence));
    }
}
