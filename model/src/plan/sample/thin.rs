//! The thinned sampled plan (see [`super`]'s module doc): what one node adds to the matrix is
//! bounded by its own pods, whatever the cluster's size.

use std::collections::HashSet;
use std::num::NonZeroU64;

use crate::inventory::{Inventory, PodInfo};
use crate::names::NodeName;
use crate::plan::derive::{
    EndpointReach, PlanOptions, Reach, http_checks, mtu_target, nameservers, node_peers, node_ports,
    pod_target, probe, service_targets,
};
use crate::plan::{PlannedProbe, ProbePlan};
use crate::probe::{ProbeKind, Source, Target};

use super::{Sampler, stable_hash};

/// The local pod (with an address) that probes `what`: the highest `hash(what, pod)`, so each
/// target has one prober and a pod coming or going moves only the targets it wins or loses.
fn prober<'a>(local: &[&'a PodInfo], what: &[&str]) -> Option<&'a PodInfo> {
    local.iter().copied().max_by_key(|p| {
        let mut parts = what.to_vec();
        parts.extend([p.namespace.as_str(), p.name.as_str()]);
        (stable_hash(&parts), std::cmp::Reverse((p.namespace.as_str(), p.name.as_str())))
    })
}

pub(super) fn plan(
    sampler: &Sampler<'_>,
    inv: &Inventory,
    node: &NodeName,
    opts: &PlanOptions,
    generation: NonZeroU64,
) -> ProbePlan {
    let me = node.as_str();
    let policy = sampler.policy();
    let mut local: Vec<&PodInfo> = sampler.local_pods(me);
    local.sort_by_cached_key(|p| stable_hash(&[me, p.namespace.as_str(), p.name.as_str()]));
    let choices = sampler.peer_choices(node);
    let node_source = Source::Node(node.clone());
    let mut probes: Vec<PlannedProbe> = Vec::new();

    // The node: its peers (ICMP, path MTU), each of its own pods (ICMP), the NodePorts of its
    // Services on itself and its peers.
    let peers: Vec<_> = choices.iter().map(|c| (c.node, mtu_target(c.pods.iter().copied()))).collect();
    let mut node_ports_on = inv.node(node).into_iter().collect::<Vec<_>>();
    node_ports_on.extend(choices.iter().map(|c| c.node));
    let reach = Reach {
        peers,
        node_ports_on,
        pods: Vec::new(),
        endpoints: EndpointReach::Within {
            pods: local
                .iter()
                .chain(choices.iter().flat_map(|c| c.pods.iter()))
                .map(|p| (p.namespace.as_str(), p.name.as_str()))
                .collect(),
            nodes: HashSet::from([me]),
        },
    };
    node_peers(&node_source, &reach, opts, &mut probes);
    for pod in &local {
        for &ip in &pod.ips {
            probes.push(probe(
                &node_source,
                Target::Pod { pod: pod.pod_ref(), ip, port: None },
                ProbeKind::Icmp,
            ));
        }
    }
    let services = sampler.services_of(me);
    node_ports(&node_source, services.iter().copied(), &reach.node_ports_on, &mut probes);

    let sources: Vec<&PodInfo> = local.iter().copied().filter(|p| !p.ips.is_empty()).collect();
    let source = |p: &PodInfo| Source::Pod(p.pod_ref());
    // Each pod probes the next one on the node's ring of pods.
    if sources.len() > 1 {
        for (i, pod) in sources.iter().enumerate() {
            pod_target(&source(pod), sources[(i + 1) % sources.len()], &mut probes);
        }
    }
    // Each chosen peer pod from one local pod; a failing peer's every pod from every local pod.
    for choice in &choices {
        for target in &choice.pods {
            if choice.failing {
                for pod in &sources {
                    pod_target(&source(pod), target, &mut probes);
                }
            } else if let Some(pod) = prober(&sources, &[target.namespace.as_str(), target.name.as_str()]) {
                pod_target(&source(pod), target, &mut probes);
            }
        }
    }
    // Each of the node's Services from one pod.
    for svc in &services {
        if let Some(pod) = prober(&sources, &["service", svc.namespace.as_str(), svc.name.as_str()]) {
            service_targets(&source(pod), svc, &reach.endpoints, &mut probes);
        }
    }
    // The nameservers from `m` pods; the HTTP checks (configured by the operator) from every pod.
    let mut dns: Vec<&PodInfo> = sources.clone();
    dns.sort_by_cached_key(|p| {
        std::cmp::Reverse(stable_hash(&["dns", p.namespace.as_str(), p.name.as_str()]))
    });
    for pod in dns.iter().take(policy.pods_per_peer.max(1)) {
        nameservers(inv, &source(pod), &mut probes);
    }
    for pod in &sources {
        http_checks(inv, &source(pod), opts, &mut probes);
    }
    probes.retain(|p| p.check().is_ok());
    ProbePlan { generation, schedule: opts.schedule, probes }
}
