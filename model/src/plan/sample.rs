//! Sampled plans for large clusters (issue 6), pure. Below [`PlanPolicy::full_mesh_below`] nodes
//! every node gets the full plan ([`super::derive`]). From there on:
//!
//! * each node's pods probe every pod on their own node (ICMP, each TCP port), every service VIP
//!   (cluster-wide targets), every service's DNS name and each cluster nameserver, as in the
//!   full plan; service endpoints only where their pod is in reach;
//! * each node probes `k` = [`PlanPolicy::peers_per_node`] peer nodes (ICMP, their NodePorts,
//!   path MTU to one of their pods) and its pods probe `m` = [`PlanPolicy::pods_per_peer`] pods
//!   of each peer;
//! * a node pair in `failing` (either order) is probed fully: all of the peer's pods, both ways.
//!
//! Peers: nodes sit on a ring ordered by a stable 64-bit hash of their names, and each node's
//! peers are the `k` that follow it — kubenurse's neighbourhood. Every node is then probed by
//! exactly `k` others and probes exactly `k`, and a node joining moves `k` assignments (its `k`
//! predecessors each swap their farthest peer for it). Per-prober rendezvous (HRW: the top `k`
//! of `hash(prober, peer)`) moves as few, but leaves a node's in-degree Poisson(`k`)-distributed:
//! at `k` = 8 and 5 000 nodes about two nodes would have no prober at all, and bounding both
//! degrees with HRW costs O(N²) hashes. Pods per peer *are* chosen by rendezvous: the `m` with
//! the highest `hash(prober node, pod)`, so different probers cover different pods of a peer and
//! a pod coming or going changes only the choices it wins or loses.
//!
//! Interval: `base × ⌈N / full_mesh_below⌉`, at most `max_interval` (base below the threshold).
//! The collector's intake grows with N × fan-out / interval; with a bounded fan-out this keeps it
//! near what `full_mesh_below` nodes send at the base interval until the cap, and the step
//! function leaves the interval (and so every plan) alone as single nodes come and go.
//!
//! Fan-out: with `L` pods on the node, `L_max` the most on any peer, the plan reaches at most
//! `L + k·m` pods (`L + Σ pods of failing peers`) and `k` nodes (plus failing peers), whatever
//! the cluster size; services and DNS names are cluster-wide and count once per pod source.
//!
//! **Thinned plans.** Every pod source probing every reached pod, service and DNS name makes
//! `L·(2(L + k·m) + 2S)` pod-level matrix cells per node: at 5 000 nodes × 30 pods and one
//! Service per 20 pods, about 450 000 probes per plan (past the model's
//! [`MAX_PLANNED_PROBES`](crate::limits::MAX_PLANNED_PROBES)) and billions of cells. When that
//! estimate for the whole cluster passes [`PlanPolicy::max_pod_cells`], plans are thinned
//! ([`thin`]) so that what each node adds is bounded by its own pods, not by the cluster: each
//! pod probes the next pod on its node (a ring by `hash(node, pod)`) and the node pings each of
//! its pods; each chosen peer pod is probed from one local pod (rendezvous); each Service (VIP,
//! endpoints in reach, DNS name) is probed by the `k` nodes following its place on the node ring,
//! from one pod each; the nameservers from `m` pods per node. Node probes and failing pairs are
//! as above.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::num::NonZeroU64;
use std::time::Duration;

use crate::inventory::{Inventory, NodeInfo, PodInfo, ServiceInfo};
use crate::names::NodeName;
use crate::plan::derive::{EndpointReach, PlanOptions, Reach, mtu_target, plan_within};
use crate::plan::{ProbePlan, Schedule};

/// How the collector plans: full mesh below a threshold, sampled above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPolicy {
    /// Clusters with fewer nodes get the full plan.
    pub full_mesh_below: usize,
    /// `k`: peer nodes each node probes (and is probed by) in a sampled plan.
    pub peers_per_node: usize,
    /// `m`: pods of each peer node the node's pods probe.
    pub pods_per_peer: usize,
    /// The interval below the threshold, and the unit it grows by above.
    pub base_interval: Duration,
    /// The interval never grows past this.
    pub max_interval: Duration,
    /// Past this many pod-level matrix cells (estimated for the whole cluster), sampled plans
    /// are thinned (see the module doc).
    pub max_pod_cells: usize,
}

impl Default for PlanPolicy {
    fn default() -> Self {
        Self {
            full_mesh_below: 50,
            peers_per_node: 8,
            pods_per_peer: 2,
            base_interval: crate::config::defaults::PROBE_INTERVAL,
            max_interval: Duration::from_secs(60),
            max_pod_cells: 400_000,
        }
    }
}

impl PlanPolicy {
    /// The probe interval for a cluster of `nodes` nodes (see the module doc).
    pub fn interval(&self, nodes: usize) -> Duration {
        if nodes < self.full_mesh_below {
            return self.base_interval;
        }
        let steps = nodes.div_ceil(self.full_mesh_below.max(1));
        let steps = u32::try_from(steps).unwrap_or(u32::MAX);
        self.base_interval.saturating_mul(steps).min(self.max_interval).max(self.base_interval)
    }

    /// `template` with the interval for `nodes` nodes; `template` itself if that would not
    /// make a valid schedule (a timeout above the interval, an interval past the model's limit).
    pub fn schedule(&self, nodes: usize, template: Schedule) -> Schedule {
        Schedule::new(
            self.interval(nodes),
            template.timeout(),
            template.max_concurrency().get(),
            template.max_probes_per_second().get(),
        )
        .unwrap_or(template)
    }
}

/// A stable 64-bit hash (FNV-1a, then splitmix64's finalizer): the same in every process and
/// release, so a collector restart moves nothing.
fn hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// What a [`Sampler`] computes once per inventory and policy: the ring, pods by node, and (for
/// thinned plans) the Services each node probes. It holds positions and names, not borrows, so
/// a caller keeps it beside its inventory and builds a `Sampler` per set of failing pairs
/// ([`Sampler::with_index`]) without redoing it: the collector answering 5 000 agents' hellos
/// spent minutes hashing 150 000 pods' node names once per hello.
#[derive(Debug, Clone)]
pub struct SamplerIndex {
    /// Indices into `inv.nodes`, in ring order.
    ring: Vec<usize>,
    /// Node name → position on the ring.
    position: HashMap<String, usize>,
    /// Node name → indices into `inv.pods`, in inventory order.
    pods: HashMap<String, Vec<usize>>,
    /// Thinned plans only: node name → indices into `inv.services` it probes.
    services: Option<HashMap<String, Vec<usize>>>,
}

impl SamplerIndex {
    pub fn new(inv: &Inventory, policy: &PlanPolicy) -> Self {
        let mut ring: Vec<(u64, usize)> =
            inv.nodes.iter().enumerate().map(|(i, n)| (hash(&[n.name.as_str()]), i)).collect();
        ring.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| inv.nodes[a.1].name.cmp(&inv.nodes[b.1].name))
        });
        let hashes: Vec<u64> = ring.iter().map(|(h, _)| *h).collect();
        let ring: Vec<usize> = ring.into_iter().map(|(_, i)| i).collect();
        let position =
            ring.iter().enumerate().map(|(pos, &i)| (inv.nodes[i].name.to_string(), pos)).collect();
        let mut pods: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, pod) in inv.pods.iter().enumerate() {
            match pods.get_mut(pod.node.as_str()) {
                Some(list) => list.push(i),
                None => {
                    pods.insert(pod.node.to_string(), vec![i]);
                }
            }
        }
        let mut index = SamplerIndex { ring, position, pods, services: None };
        let sampled = inv.nodes.len() >= policy.full_mesh_below;
        if sampled && index.dense_cells(inv, policy) > policy.max_pod_cells {
            index.services = Some(index.place_services(inv, policy, &hashes));
        }
        index
    }

    /// The pod-level cells unthinned sampled plans would make: per pod source, ICMP and a port
    /// to each pod it reaches, a VIP and a DNS name per Service, both nameserver transports.
    fn dense_cells(&self, inv: &Inventory, policy: &PlanPolicy) -> usize {
        let reached_per_peer = policy.peers_per_node.saturating_mul(policy.pods_per_peer);
        let per_service = 2 * inv.services.len() + 2 * inv.cluster.dns_ips.len();
        self.pods.values().fold(0usize, |sum, local| {
            let per_source = 2 * (local.len() + reached_per_peer) + per_service;
            sum.saturating_add(local.len().saturating_mul(per_source))
        })
    }

    /// Each Service goes to the `k` nodes following its place on the ring (consistent hashing:
    /// a node joining or leaving moves only the Services around it).
    fn place_services(
        &self,
        inv: &Inventory,
        policy: &PlanPolicy,
        hashes: &[u64],
    ) -> HashMap<String, Vec<usize>> {
        let n = self.ring.len();
        let k = policy.peers_per_node.clamp(1, n.max(1));
        let mut out: HashMap<String, Vec<usize>> = HashMap::new();
        for (s, svc) in inv.services.iter().enumerate() {
            let place = hash(&["service", svc.namespace.as_str(), svc.name.as_str()]);
            let at = hashes.partition_point(|&h| h < place);
            for step in 0..k {
                let node = &inv.nodes[self.ring[(at + step) % n]];
                out.entry(node.name.to_string()).or_default().push(s);
            }
        }
        out
    }
}

/// Builds every node's plan over one inventory: the ring, pods by node and the failing pairs,
/// computed once (O(N log N)), then one plan per node in time independent of N.
#[derive(Debug)]
pub struct Sampler<'a> {
    inv: &'a Inventory,
    policy: PlanPolicy,
    index: std::borrow::Cow<'a, SamplerIndex>,
    failing: HashMap<&'a str, BTreeSet<&'a str>>,
}

impl<'a> Sampler<'a> {
    /// `failing`: node pairs (either order) whose traffic fails now; they are probed fully.
    pub fn new(inv: &'a Inventory, policy: &PlanPolicy, failing: &BTreeSet<(NodeName, NodeName)>) -> Self {
        let index = SamplerIndex::new(inv, policy);
        Self::build(inv, policy, std::borrow::Cow::Owned(index), failing)
    }

    /// [`Sampler::new`] with the index already built for `inv` and `policy`.
    pub fn with_index(
        inv: &'a Inventory,
        policy: &PlanPolicy,
        index: &'a SamplerIndex,
        failing: &BTreeSet<(NodeName, NodeName)>,
    ) -> Self {
        Self::build(inv, policy, std::borrow::Cow::Borrowed(index), failing)
    }

    fn build(
        inv: &'a Inventory,
        policy: &PlanPolicy,
        index: std::borrow::Cow<'a, SamplerIndex>,
        failing: &BTreeSet<(NodeName, NodeName)>,
    ) -> Self {
        let mut fail: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for (a, b) in failing {
            // Names borrowed from the inventory; a pair naming an unknown node means nothing.
            let node =
                |name: &NodeName| index.position.get(name.as_str()).map(|&pos| &inv.nodes[index.ring[pos]]);
            let (Some(a), Some(b)) = (node(a), node(b)) else { continue };
            if a.name != b.name {
                fail.entry(a.name.as_str()).or_default().insert(b.name.as_str());
                fail.entry(b.name.as_str()).or_default().insert(a.name.as_str());
            }
        }
        Self { inv, policy: policy.clone(), index, failing: fail }
    }

    #[cfg(test)]
    fn dense_cells(&self) -> usize {
        self.index.dense_cells(self.inv, &self.policy)
    }

    /// Whether plans are thinned (see the module doc).
    pub fn is_thinned(&self) -> bool {
        self.index.services.is_some()
    }

    /// The Services `node` probes in a thinned plan.
    pub(crate) fn services_of(&self, node: &str) -> Vec<&'a ServiceInfo> {
        let services = self.index.services.as_ref().and_then(|s| s.get(node));
        services.map_or_else(Vec::new, |list| list.iter().map(|&i| &self.inv.services[i]).collect())
    }

    /// Whether plans are sampled (the cluster is at or above the threshold).
    pub fn is_sampled(&self) -> bool {
        self.inv.nodes.len() >= self.policy.full_mesh_below
    }

    /// The `k` peers following `node` on the ring (every other node when there are fewer).
    pub fn ring_peers(&self, node: &NodeName) -> Vec<&'a NodeName> {
        let inv = self.inv;
        let Some(&pos) = self.index.position.get(node.as_str()) else { return Vec::new() };
        let n = self.index.ring.len();
        let k = self.policy.peers_per_node.min(n.saturating_sub(1));
        (1..=k).map(|step| &inv.nodes[self.index.ring[(pos + step) % n]].name).collect()
    }

    /// The pods on `node`, in inventory order.
    pub fn pods_on(&self, node: &NodeName) -> Vec<&'a PodInfo> {
        self.pods_of(node.as_str())
    }

    fn pods_of(&self, node: &str) -> Vec<&'a PodInfo> {
        let inv = self.inv;
        self.index.pods.get(node).map_or_else(Vec::new, |list| list.iter().map(|&i| &inv.pods[i]).collect())
    }

    /// The node named `name`, through the ring index.
    fn node_info(&self, name: &str) -> Option<&'a NodeInfo> {
        let inv = self.inv;
        self.index.position.get(name).map(|&pos| &inv.nodes[self.index.ring[pos]])
    }

    /// The `m` pods (with addresses) of `peer` that `prober`'s pods probe: highest
    /// `hash(prober, pod)` first.
    fn chosen_pods(&self, prober: &str, peer: &str) -> Vec<&'a PodInfo> {
        let mut scored: Vec<(u64, &PodInfo)> = self
            .pods_of(peer)
            .iter()
            .filter(|p| !p.ips.is_empty())
            .map(|p| (hash(&[prober, p.namespace.as_str(), p.name.as_str()]), *p))
            .collect();
        scored.sort_unstable_by_key(|(score, _)| std::cmp::Reverse(*score));
        scored.into_iter().take(self.policy.pods_per_peer).map(|(_, p)| p).collect()
    }

    /// `node`'s peers (ring peers, then failing ones), each with the pods probed there and
    /// whether the pair is failing (then every pod of the peer).
    pub(crate) fn peer_choices(&self, node: &NodeName) -> Vec<PeerChoice<'a>> {
        let me = node.as_str();
        let failing = self.failing.get(me);
        let mut peers: Vec<&'a NodeName> = self.ring_peers(node);
        if let Some(f) = failing {
            for name in f {
                if let Some(info) = self.node_info(name)
                    && !peers.iter().any(|p| p.as_str() == *name)
                {
                    peers.push(&info.name);
                }
            }
        }
        peers
            .into_iter()
            .filter_map(|peer| {
                let node = self.node_info(peer.as_str())?;
                let failing = failing.is_some_and(|f| f.contains(peer.as_str()));
                let pods =
                    if failing { self.pods_of(peer.as_str()) } else { self.chosen_pods(me, peer.as_str()) };
                Some(PeerChoice { node, pods, failing })
            })
            .collect()
    }

    /// What `node`'s sampled plan reaches.
    pub(crate) fn reach(&self, node: &NodeName) -> Reach<'a> {
        let me = node.as_str();
        let mut pods: Vec<&'a PodInfo> = self.pods_of(me);
        let choices = self.peer_choices(node);
        let mut reach_peers = Vec::with_capacity(choices.len());
        for choice in choices {
            let mtu = mtu_target(choice.pods.iter().copied());
            reach_peers.push((choice.node, mtu));
            pods.extend(choice.pods);
        }
        let mut node_ports_on: Vec<&NodeInfo> = self.node_info(me).into_iter().collect();
        node_ports_on.extend(reach_peers.iter().map(|(n, _)| *n));
        let endpoints = EndpointReach::Within {
            pods: pods.iter().map(|p| (p.namespace.as_str(), p.name.as_str())).collect(),
            nodes: node_ports_on.iter().map(|n| n.name.as_str()).collect::<HashSet<_>>(),
        };
        Reach { peers: reach_peers, node_ports_on, pods, endpoints }
    }

    /// `node`'s plan: the full plan below the threshold, sampled above; the interval from
    /// [`PlanPolicy::schedule`] with `opts.schedule` as the template.
    pub fn plan(&self, node: &NodeName, opts: &PlanOptions, generation: NonZeroU64) -> ProbePlan {
        let opts = PlanOptions {
            schedule: self.policy.schedule(self.inv.nodes.len(), opts.schedule),
            ..opts.clone()
        };
        if !self.is_sampled() {
            return super::derive::derive_plan(self.inv, node, &opts, generation);
        }
        if self.is_thinned() {
            return thin::plan(self, self.inv, node, &opts, generation);
        }
        let local = self.pods_of(node.as_str());
        plan_within(self.inv, node, &local, &self.reach(node), &opts, generation)
    }

    pub(crate) fn local_pods(&self, node: &str) -> Vec<&'a PodInfo> {
        self.pods_of(node)
    }

    pub(crate) fn policy(&self) -> &PlanPolicy {
        &self.policy
    }
}

/// A peer of a node and the pods of it the node's plan probes.
#[derive(Debug)]
pub(crate) struct PeerChoice<'a> {
    pub(crate) node: &'a NodeInfo,
    pub(crate) pods: Vec<&'a PodInfo>,
    /// A failing pair: every pod of the peer, from every local pod.
    pub(crate) failing: bool,
}

/// The stable hash, for the thinned plan's choices.
pub(crate) fn stable_hash(parts: &[&str]) -> u64 {
    hash(parts)
}

mod thin;

#[cfg(test)]
mod tests;
