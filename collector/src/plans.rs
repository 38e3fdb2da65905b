//! Probe plans computed by the collector (issue 6) for agents that announced
//! [`Capability::CollectorInventory`] (`--inventory kubernetes`: no inventory of their own, so the
//! API server sees one watcher, the collector's). On such an agent's hello it gets its node's
//! pods ([`NodePods`]) and plan; on every new inventory and every [`PlansConfig::refresh_every`] each connected one is
//! recomputed — the inventory may have changed, a node pair may have started or stopped failing
//! — and sent only when it differs from what that node last got. Plans come from
//! [`netdiag_model::plan::Sampler`]: the full plan below [`PlanPolicy::full_mesh_below`] nodes,
//! sampled above (thinned past [`PlanPolicy::max_pod_cells`]), failing node pairs (node-level
//! matrix cells failed or degraded) probed fully, paths NetworkPolicy keeps shut once every
//! few rounds ([`Pacer`]).
//!
//! Generations increase per node and start at the collector's start time in milliseconds, so a
//! restarted collector's plans still replace the ones its predecessor sent. What is remembered per
//! node is a digest of the last plan and pod list, not the plan itself (5 000 plans would be
//! hundreds of MB). Agents that read an inventory file derive their own plans and get none.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netdiag_diagnose::policy::pace::Pacer;
use netdiag_model::config::ConfigDuration;
use netdiag_model::inventory::Inventory;
use netdiag_model::matrix::{CellStatus, MatrixSnapshot};
use netdiag_model::plan::{
    HttpCheck, PlanOptions, PlanPolicy, ProbePlan, Sampler, SamplerIndex, Schedule, SourcePods,
};
use netdiag_model::session::{Capability, CollectorMessage, Hello, LocalPod, NodePods};
use netdiag_model::{DnsName, NodeName};
use tokio::sync::watch;
use tracing::{debug, info};

use crate::ingest::Ingest;
use crate::state::{CollectorState, now};

/// How the collector plans for agents without an inventory: [`PlanArgs`] on the command line,
/// [`Default`] (the model's shared defaults) in tests and the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlansConfig {
    pub policy: PlanPolicy,
    /// Timeout, concurrency and rate of every plan; its interval is replaced by the policy's.
    pub schedule: Schedule,
    /// HTTP checks every pod source runs against a service VIP.
    pub http_checks: Vec<HttpCheck>,
    /// How often plans are recomputed and changed ones sent.
    pub refresh_every: Duration,
}

impl Default for PlansConfig {
    fn default() -> Self {
        let policy = PlanPolicy::default();
        // The agent's own defaults, from the one place both read them.
        Self {
            policy,
            schedule: Schedule::default(),
            http_checks: Vec::new(),
            refresh_every: Duration::from_secs(10),
        }
    }
}

/// The plan flags of the collector's command line (for agents started with
/// `--inventory kubernetes`, which take their plans from it).
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Clusters with fewer nodes get the full mesh; larger ones a sampled plan.
    #[arg(long, env = "NETDIAG_FULL_MESH_BELOW", default_value_t = PlanPolicy::default().full_mesh_below)]
    pub full_mesh_below: usize,
    /// In a sampled plan: peer nodes each node probes (and is probed by).
    #[arg(long, env = "NETDIAG_PEERS_PER_NODE", default_value_t = PlanPolicy::default().peers_per_node)]
    pub peers_per_node: usize,
    /// In a sampled plan: pods of each peer node that a node's pods probe.
    #[arg(long, env = "NETDIAG_PODS_PER_PEER", default_value_t = PlanPolicy::default().pods_per_peer)]
    pub pods_per_peer: usize,
    /// Probe interval below the full-mesh threshold (e.g. 5s); larger clusters get a multiple.
    #[arg(long, env = "NETDIAG_PROBE_INTERVAL", default_value_t = ConfigDuration::new(PlanPolicy::default().base_interval))]
    pub probe_interval: ConfigDuration,
    /// The probe interval never grows past this (e.g. 60s).
    #[arg(long, env = "NETDIAG_MAX_PROBE_INTERVAL", default_value_t = ConfigDuration::new(PlanPolicy::default().max_interval))]
    pub max_probe_interval: ConfigDuration,
    /// Past this many pod-level matrix cells (estimated for the cluster), sampled plans are
    /// thinned: each pod probes one pod on its node, each peer pod and Service is probed from
    /// one pod per prober node.
    #[arg(long, env = "NETDIAG_MAX_POD_CELLS", default_value_t = PlanPolicy::default().max_pod_cells)]
    pub max_pod_cells: usize,
}

impl PlanArgs {
    /// The plans configuration; an error names the flag out of range.
    pub fn config(&self) -> Result<PlansConfig, String> {
        if self.peers_per_node == 0 {
            return Err("--peers-per-node must be at least 1: every node needs probers".into());
        }
        if self.probe_interval.get().is_zero() || self.max_probe_interval < self.probe_interval {
            return Err(format!(
                "--probe-interval ({}) must be above 0 and at most --max-probe-interval ({})",
                self.probe_interval, self.max_probe_interval
            ));
        }
        let policy = PlanPolicy {
            full_mesh_below: self.full_mesh_below,
            peers_per_node: self.peers_per_node,
            pods_per_peer: self.pods_per_peer,
            base_interval: self.probe_interval.get(),
            max_interval: self.max_probe_interval.get(),
            max_pod_cells: self.max_pod_cells,
        };
        let base = PlansConfig::default();
        let schedule = Schedule::new(
            policy.base_interval,
            base.schedule.timeout(),
            base.schedule.max_concurrency().get(),
            base.schedule.max_probes_per_second().get(),
        )
        .map_err(|e| format!("--probe-interval: {e}"))?;
        Ok(PlansConfig { policy, schedule, ..base })
    }
}

/// What a node was last sent.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    generation: u64,
    plan: Option<u64>,
    pods: Option<u64>,
}

/// The inventory and failing pairs plans are computed from, refreshed every round, with the
/// sampler's index built once for them (not once per agent's hello).
#[derive(Debug)]
struct Basis {
    inventory: Arc<Inventory>,
    index: SamplerIndex,
    failing: BTreeSet<(NodeName, NodeName)>,
    /// Paces the paths NetworkPolicy keeps shut; None without policies.
    pacer: Option<Pacer>,
}

impl Basis {
    fn sampler<'a>(&'a self, policy: &PlanPolicy) -> Sampler<'a> {
        Sampler::with_index(&self.inventory, policy, &self.index, &self.failing)
    }
}

/// Computes and remembers plans; cheap to share.
#[derive(Debug)]
pub struct Planner {
    state: Arc<CollectorState>,
    config: PlansConfig,
    /// First generation handed out: the collector's start time in milliseconds.
    epoch: u64,
    basis: Mutex<Option<Arc<Basis>>>,
    /// Nodes whose agents take plans from us, and what they last got.
    sent: Mutex<HashMap<NodeName, Sent>>,
}

fn digest(v: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Node pairs whose node-level cells (any kind) are failed or degraded.
pub fn failing_pairs(snapshot: &MatrixSnapshot) -> BTreeSet<(NodeName, NodeName)> {
    snapshot
        .cells
        .iter()
        .filter(|c| matches!(c.status, CellStatus::Failed | CellStatus::Degraded))
        .filter_map(|c| {
            Some((NodeName::new(c.source.as_str()).ok()?, NodeName::new(c.destination.as_str()).ok()?))
        })
        .collect()
}

/// The nodes whose pod list or plan going from `old` to `new` can change at once: those whose
/// pods changed, and those probing them (their ring predecessors). None when the nodes,
/// Services, namespaces, policies or cluster settings changed: then any plan may.
fn touched(old: &Basis, new: &Basis, policy: &PlanPolicy) -> Option<BTreeSet<NodeName>> {
    let (o, n) = (&*old.inventory, &*new.inventory);
    if o.nodes != n.nodes
        || o.services != n.services
        || o.cluster != n.cluster
        || o.namespaces != n.namespaces
        || o.network_policies != n.network_policies
    {
        return None;
    }
    let (before, after) = (old.sampler(policy), new.sampler(policy));
    // Below the sampling threshold every node probes every other: any plan may change.
    if !after.is_sampled() {
        return None;
    }
    let names = || n.nodes.iter().map(|node| &node.name);
    let changed: BTreeSet<&NodeName> =
        names().filter(|&node| before.pods_on(node) != after.pods_on(node)).collect();
    if changed.is_empty() {
        return Some(BTreeSet::new());
    }
    let probers = names().filter(|&node| after.ring_peers(node).iter().any(|peer| changed.contains(peer)));
    Some(changed.iter().copied().chain(probers).cloned().collect())
}

/// `node`'s pods as the inventory has them, with the cluster DNS.
pub fn node_pods(sampler: &Sampler<'_>, inv: &Inventory, node: &NodeName) -> NodePods {
    NodePods {
        pods: sampler
            .pods_on(node)
            .iter()
            .map(|p| LocalPod { pod: p.pod_ref(), ips: p.ips.clone(), host_network: false })
            .collect(),
        node_ips: inv.node(node).map(|n| n.ips.clone()).unwrap_or_default(),
        dns_ips: inv.cluster.dns_ips.clone(),
        cluster_domain: DnsName::new(inv.cluster.domain.trim_end_matches('.'))
            .or_else(|_| DnsName::new("cluster.local"))
            .unwrap_or_else(|_| unreachable!("a constant name")),
    }
}

impl Planner {
    pub fn new(state: Arc<CollectorState>, config: PlansConfig) -> Arc<Self> {
        Arc::new(Self {
            state,
            config,
            epoch: u64::try_from(now().get()).unwrap_or(1).max(1),
            basis: Mutex::default(),
            sent: Mutex::default(),
        })
    }

    fn options(&self) -> PlanOptions {
        PlanOptions {
            schedule: self.config.schedule,
            http_checks: self.config.http_checks.clone(),
            mtu: true,
            sources: SourcePods::All,
        }
    }

    /// Re-reads the inventory and, for a sampled cluster, the failing node pairs.
    fn reload(&self) -> Arc<Basis> {
        let inventory = self.state.shared_inventory();
        let failing = if inventory.nodes.len() >= self.config.policy.full_mesh_below {
            // From the latest diagnosis, which walked the node level anyway: a snapshot of its
            // own took seconds at 5 000 nodes, in every round.
            self.state.latest_diagnosis().map(|d| d.failing_node_pairs.clone()).unwrap_or_default()
        } else {
            BTreeSet::new()
        };
        let index = SamplerIndex::new(&inventory, &self.config.policy);
        let pacer = Pacer::new(&inventory);
        let basis = Arc::new(Basis { inventory, index, failing, pacer });
        if let Ok(mut b) = self.basis.lock() {
            *b = Some(basis.clone());
        }
        basis
    }

    fn basis(&self) -> Arc<Basis> {
        let cached = self.basis.lock().ok().and_then(|b| b.clone());
        cached.unwrap_or_else(|| self.reload())
    }

    /// The messages `node` should get now: pods and plan when they differ from what it last
    /// got (everything when `fresh`).
    fn messages_for(
        &self,
        sampler: &Sampler<'_>,
        basis: &Basis,
        node: &NodeName,
        fresh: bool,
    ) -> Vec<CollectorMessage> {
        let inv = &basis.inventory;
        let pods = node_pods(sampler, inv, node);
        let mut plan: ProbePlan = sampler.plan(node, &self.options(), NonZeroU64::MIN);
        if let Some(pacer) = &basis.pacer {
            pacer.pace(inv, &mut plan.probes);
        }
        let (pods_digest, plan_digest) = (digest(&pods_key(&pods)), digest(&(plan.schedule, &plan.probes)));
        let Ok(mut sent) = self.sent.lock() else { return Vec::new() };
        let entry = sent.entry(node.clone()).or_default();
        let mut out = Vec::new();
        if fresh || entry.pods != Some(pods_digest) {
            entry.pods = Some(pods_digest);
            out.push(CollectorMessage::Pods(pods));
        }
        if fresh || entry.plan != Some(plan_digest) {
            entry.plan = Some(plan_digest);
            entry.generation = entry.generation.saturating_add(1).max(self.epoch);
            plan.generation = NonZeroU64::new(entry.generation).unwrap_or(NonZeroU64::MIN);
            debug!(%node, generation = entry.generation, probes = plan.probes.len(), "plan computed");
            out.push(CollectorMessage::Plan(plan));
        }
        out
    }

    /// What to send an agent that just said hello: its pods and plan when it takes them from
    /// the collector, nothing otherwise.
    pub fn on_hello(&self, hello: &Hello) -> Vec<CollectorMessage> {
        if !hello.capabilities.contains(&Capability::CollectorInventory) {
            return Vec::new();
        }
        let basis = self.basis();
        let sampler = basis.sampler(&self.config.policy);
        if basis.inventory.node(&hello.node).is_none() {
            info!(node = %hello.node, "an agent without an inventory connected from a node the inventory does not list; it gets an empty plan until the node appears");
        }
        self.messages_for(&sampler, &basis, &hello.node, true)
    }

    /// Recomputes every plan-taking node in `connected`; returns what changed.
    pub fn refresh(&self, connected: impl Fn(&NodeName) -> bool) -> Vec<(NodeName, CollectorMessage)> {
        let nodes: Vec<NodeName> = match self.sent.lock() {
            Ok(mut sent) => {
                sent.retain(|node, _| connected(node));
                sent.keys().cloned().collect()
            }
            Err(_) => return Vec::new(),
        };
        // The round's time includes re-reading the inventory and failing pairs, and the index.
        let started = std::time::Instant::now();
        let basis = self.reload();
        if nodes.is_empty() {
            return Vec::new();
        }
        let sampler = basis.sampler(&self.config.policy);
        let planned = nodes.len();
        let changes = nodes
            .into_iter()
            .flat_map(|node| {
                let msgs = self.messages_for(&sampler, &basis, &node, false);
                msgs.into_iter().map(move |m| (node.clone(), m))
            })
            .collect();
        let took = started.elapsed();
        debug!(took_ms = took.as_millis() as u64, plans = planned, "plan round computed");
        self.state.plan_round(planned, took);
        changes
    }

    /// Recomputes, after a new inventory, only the connected plan-taking nodes it can touch
    /// ([`touched`]) — a churned pod's node and the nodes probing it — so they are sent their
    /// new pods and plan at once, whatever the rationing of full rounds. Returns what changed,
    /// or None when the change may touch any plan (the caller runs a full round).
    pub fn refresh_touched(
        &self,
        connected: impl Fn(&NodeName) -> bool,
    ) -> Option<Vec<(NodeName, CollectorMessage)>> {
        let old = self.basis.lock().ok().and_then(|b| b.clone())?;
        let started = std::time::Instant::now();
        let basis = self.reload();
        let touched = touched(&old, &basis, &self.config.policy)?;
        let nodes: Vec<NodeName> = match self.sent.lock() {
            Ok(sent) => touched.into_iter().filter(|n| sent.contains_key(n) && connected(n)).collect(),
            Err(_) => return Some(Vec::new()),
        };
        let sampler = basis.sampler(&self.config.policy);
        let planned = nodes.len();
        let changes = nodes
            .into_iter()
            .flat_map(|node| {
                let msgs = self.messages_for(&sampler, &basis, &node, false);
                msgs.into_iter().map(move |m| (node.clone(), m))
            })
            .collect();
        debug!(took_ms = started.elapsed().as_millis() as u64, plans = planned, "touched plans computed");
        Some(changes)
    }

    /// Refreshes when the inventory changes and every [`PlansConfig::refresh_every`] (failing
    /// pairs come and go), sends what changed, until `stop`. After a round taking `t` the next
    /// waits `t × ROUND_IDLE_FACTOR`, so churn never keeps the planner busy.
    pub async fn run(self: Arc<Self>, ingest: Ingest, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.config.refresh_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopped(&mut stop) => return,
                _ = tick.tick() => {}
                () = self.state.inventory_changed() => tick.reset(),
            }
            let started = std::time::Instant::now();
            // Seconds of work at 5 000 nodes: on a blocking thread, not a runtime worker.
            let (me, connected) = (self.clone(), ingest.clone());
            let round = tokio::task::spawn_blocking(move || me.refresh(|node| connected.is_connected(node)));
            let changes = round.await.unwrap_or_default();
            self.send(&ingest, changes).await;
            // While resting, a new inventory still reaches the nodes it touches at once; one
            // that may touch any plan ends the rest.
            let rest = tokio::time::sleep(started.elapsed() * ROUND_IDLE_FACTOR);
            tokio::pin!(rest);
            loop {
                tokio::select! {
                    () = stopped(&mut stop) => return,
                    () = &mut rest => break,
                    () = self.state.inventory_changed() => {
                        let (me, connected) = (self.clone(), ingest.clone());
                        let touched = tokio::task::spawn_blocking(move || {
                            me.refresh_touched(|node| connected.is_connected(node))
                        });
                        match touched.await.unwrap_or_default() {
                            Some(changes) => self.send(&ingest, changes).await,
                            None => {
                                // Taken by the wait above again for the full round.
                                self.state.notify_inventory_changed();
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sends `changes`; a node that is gone gets everything afresh on its next hello.
    async fn send(&self, ingest: &Ingest, changes: Vec<(NodeName, CollectorMessage)>) {
        if !changes.is_empty() {
            debug!(messages = changes.len(), "sending changed plans and pod lists");
        }
        for (node, msg) in changes {
            if !ingest.send_to(&node, msg).await
                && let Ok(mut sent) = self.sent.lock()
            {
                sent.remove(&node);
            }
        }
    }
}

/// After a plan round, the planner rests this many times as long as the round took.
const ROUND_IDLE_FACTOR: u32 = 4;

/// The parts of a pod list that matter, hashable.
fn pods_key(p: &NodePods) -> impl Hash + '_ {
    let pods: Vec<_> = p.pods.iter().map(|lp| (&lp.pod, &lp.ips, lp.host_network)).collect();
    (pods, &p.node_ips, &p.dns_ips, p.cluster_domain.as_str())
}

/// Resolves once `stop` turns true (without holding the non-`Send` guard).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests;
