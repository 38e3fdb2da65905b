//! The agent's main loop: load the inventory, keep the probe sources in line with it, run the
//! probe plan (derived locally until the collector sends one), inspect every source and send
//! reports that changed, and stream it all through the uplink. Ends cleanly on stop.
//!
//! With `--inventory kubernetes` there is no file: the hello announces
//! [`Capability::CollectorInventory`], the collector sends this node's pods (sources follow
//! them through namespace discovery) and the plan; nothing is probed before the first plan.

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use netdiag_model::inspect::InspectionReport;
use netdiag_model::inventory::{ClusterInfo, INVENTORY_VERSION, Inventory, NodeInfo, ProxyMode};
use netdiag_model::plan::{PlannedProbe, ProbePlan};
use netdiag_model::probe::Source;
use netdiag_model::result::Seq;
use netdiag_model::run::RunProgress;
use netdiag_model::session::{
    AgentVersion, Capability, CollectorMessage, Hello, InstanceId, LocalPod, NodePods,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::config::{AgentConfig, InventorySource};
use crate::inspect::{self, InspectScope};
use crate::metrics::AgentMetrics;
use crate::plan::{PlanOptions, SourcePods, own_plan};
use crate::run::Runs;
use crate::shutdown::stopped;
use crate::sources::{Discovery, Sources, inventory_from_collector};
use crate::uplink::fanout::{self, UplinkIntake};
use crate::uplink::follow::Follow;
use crate::uplink::{self, Backoff, FromCollector, Outbound, UplinkConfig, UplinkEvent, UplinkStats};

/// How often the inventory file is re-read and the sources refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How often every source is inspected (reports are sent only when they change). A node takes
/// ~10 ms and a pod ~1 ms to inspect, so evidence (a deleted route or DNAT rule) reaches the
/// collector within a few seconds at little cost.
const INSPECT_EVERY: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot read the inventory {path}")]
    ReadInventory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("inventory {path}")]
    Inventory {
        path: String,
        #[source]
        source: Box<netdiag_model::inventory::InventoryError>,
    },
    #[error("node {node} is not in the inventory {path}; check --node")]
    UnknownNode { node: String, path: String },
}

/// Before the collector's first pod list: this node and nothing else.
fn empty_inventory(node: &netdiag_model::NodeName) -> Inventory {
    Inventory {
        version: INVENTORY_VERSION,
        cluster: ClusterInfo {
            name: String::new(),
            domain: String::new(),
            pod_cidrs: vec![],
            service_cidrs: vec![],
            node_cidrs: vec![],
            dns_ips: vec![],
            proxy_mode: ProxyMode::Iptables,
        },
        nodes: vec![NodeInfo { name: node.clone(), ips: vec![], pod_cidrs: vec![], netns: None }],
        pods: vec![],
        services: vec![],
        namespaces: vec![],
        network_policies: vec![],
    }
}

fn load_inventory(
    source: &InventorySource,
    node: &netdiag_model::NodeName,
) -> Result<(Inventory, Option<SystemTime>), AgentError> {
    match source {
        InventorySource::Kubernetes => Ok((empty_inventory(node), None)),
        InventorySource::File(path) => {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|source| AgentError::ReadInventory { path: shown.clone(), source })?;
            let inv = Inventory::from_yaml(&text)
                .map_err(|source| AgentError::Inventory { path: shown, source: Box::new(source) })?;
            Ok((inv, modified(path)))
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn hello(cfg: &AgentConfig, inv: &Inventory) -> Hello {
    let version = AgentVersion::new(env!("CARGO_PKG_VERSION")).unwrap_or_else(|_| {
        // The crate version is always a valid token; this branch is unreachable in practice.
        AgentVersion::new("0.0.0").unwrap_or_else(|_| unreachable!("a constant token"))
    });
    let mut capabilities: std::collections::BTreeSet<Capability> = [
        Capability::Icmp,
        Capability::Tcp,
        Capability::Dns,
        Capability::Http,
        Capability::Mtu,
        Capability::InspectIptables,
        Capability::InspectNftables,
        Capability::OnDemand,
    ]
    .into();
    if cfg.inventory == InventorySource::Kubernetes {
        capabilities.insert(Capability::CollectorInventory);
    }
    Hello {
        node: cfg.node.clone(),
        agent_version: version,
        capabilities,
        pods: inv
            .pods_on(&cfg.node)
            .map(|p| LocalPod { pod: p.pod_ref(), ips: p.ips.clone(), host_network: false })
            .collect(),
        node_ips: inv.node(&cfg.node).map(|n| n.ips.clone()).unwrap_or_default(),
        first_unacked_seq: Seq::FIRST,
        instance_id: instance_id(&cfg.node, std::process::id(), fastrand::u64(..)),
    }
}

/// How much of the node name an instance id keeps: ids are at most 128 characters, and the pid
/// and nonce after it must always fit (node names reach 253).
const INSTANCE_NODE_PREFIX: usize = 80;

/// This process's instance id: the node name (cut to [`INSTANCE_NODE_PREFIX`]), the pid and a
/// random nonce. It must differ at every start, whatever the node name: the collector drops a
/// batch whose sequence an instance already delivered, so a restarted agent (numbering from 1
/// again) taken for the old instance would have its batches acknowledged and thrown away.
fn instance_id(node: &netdiag_model::NodeName, pid: u32, nonce: u64) -> InstanceId {
    let prefix: String = node.as_str().chars().take(INSTANCE_NODE_PREFIX).collect();
    InstanceId::new(format!("{prefix}-{pid}-{nonce:016x}")).unwrap_or_else(|_| {
        // Node names are DNS subdomains, all id characters; should that change, the pid and
        // nonce alone still make the id unique.
        InstanceId::new(format!("agent-{pid}-{nonce:016x}"))
            .unwrap_or_else(|_| unreachable!("ASCII digits and hex fit an instance id"))
    })
}

/// Whether two plans probe the same way: replicas number generations independently, so a plan
/// from another replica with the same probes and schedule is no reason to restart.
fn same_plan(a: &ProbePlan, b: &ProbePlan) -> bool {
    a.schedule == b.schedule && a.probes == b.probes
}

/// Waits for every uplink task to end.
async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// Starts the scheduler for `plan`; the returned sender stops it.
fn start_plan(
    plan: ProbePlan,
    sources: Arc<RwLock<Sources>>,
    metrics: Arc<AgentMetrics>,
    out: mpsc::Sender<Outbound>,
) -> watch::Sender<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (res_tx, mut res_rx) = mpsc::channel(1024);
    let run_one = move |probe: PlannedProbe, timeout: Duration| {
        let entry = sources.read().ok().and_then(|s| s.get(&probe.source));
        let metrics = metrics.clone();
        async move {
            // A source that is gone (pod deleted) simply stops producing results.
            let entry = entry?;
            let result = crate::probe::run(&entry.ns, &entry.state, &probe, timeout).await;
            metrics.observe(&result);
            Some(result)
        }
    };
    info!(
        generation = plan.generation.get(),
        probes = plan.probes.len(),
        interval_ms = plan.schedule.interval().as_millis() as u64,
        "running probe plan"
    );
    tokio::spawn(crate::scheduler::run(Arc::new(plan), run_one, res_tx, stop_rx, fastrand::f64()));
    tokio::spawn(async move {
        while let Some(r) = res_rx.recv().await {
            if out.send(Outbound::Result(Box::new(r))).await.is_err() {
                return;
            }
        }
    });
    stop_tx
}

/// Inspects every source; sends the reports that changed (or all, when `force`).
async fn inspect_all(
    sources: &Arc<RwLock<Sources>>,
    last: &mut BTreeMap<Source, InspectionReport>,
    out: &mpsc::Sender<Outbound>,
    only: Option<&Source>,
    force: bool,
) {
    let entries: Vec<_> = sources
        .read()
        .map(|s| s.all().filter(|e| only.is_none_or(|o| e.ns.source() == o)).cloned().collect())
        .unwrap_or_default();
    for entry in entries {
        let scope = match entry.ns.source() {
            Source::Node(_) => InspectScope::Node,
            Source::Pod(_) => InspectScope::Pod,
        };
        let report = inspect::inspect(&entry.ns, scope).await;
        let source = entry.ns.source().clone();
        let send = force || last.get(&source).is_none_or(|prev| inspect::changed(prev, &report));
        if send {
            // What could not be read (a missing capability, a missing tool) is said once, when
            // it first appears, not at every inspection.
            let before = last.get(&source).map(|prev| &prev.errors);
            for error in report.errors.iter().filter(|e| before.is_none_or(|b| !b.contains(e))) {
                warn!(%source, error = %error, "inspection incomplete");
            }
            last.insert(source, report.clone());
            if out.send(Outbound::Inspection(Box::new(report))).await.is_err() {
                return;
            }
        }
    }
    // Forget reports of sources that are gone, here and in the uplink.
    let gone: Vec<Source> = match sources.read() {
        Ok(s) => last.keys().filter(|src| s.get(src).is_none()).cloned().collect(),
        Err(_) => Vec::new(),
    };
    if !gone.is_empty() {
        for src in &gone {
            last.remove(src);
        }
        let _ = out.send(Outbound::SourcesGone(gone)).await;
    }
}

/// Runs the agent until `stop` turns true.
pub async fn run(cfg: AgentConfig, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let (mut inv, mut inv_mtime) = load_inventory(&cfg.inventory, &cfg.node)?;
    if let InventorySource::File(path) = &cfg.inventory
        && inv.node(&cfg.node).is_none()
    {
        return Err(
            AgentError::UnknownNode { node: cfg.node.to_string(), path: path.display().to_string() }.into()
        );
    }
    let from_collector = cfg.inventory == InventorySource::Kubernetes;
    let discovery = Discovery::default();
    let sources = Arc::new(RwLock::new(Sources::default()));
    let metrics = Arc::new(AgentMetrics::default());
    let refresh = |inv: &Inventory| {
        if let Ok(mut s) = sources.write() {
            let report = s.refresh(inv, &cfg.node, &discovery);
            for (src, why) in &report.unreachable {
                warn!(source = %src, reason = %why, "cannot probe from this pod");
            }
            metrics.set_sources(s.len());
        }
    };
    refresh(&inv);

    // What the agent produces goes through one channel, copied to every collector's uplink.
    let (out_tx, out_rx) = mpsc::channel(4096);
    let (in_tx, mut in_rx) = mpsc::channel(64);
    let (ready_tx, ready_rx) = watch::channel(true);
    // Read the TLS files now: a bad file is a start-up error, not a reconnect loop. Later
    // changes (renewals) are read at each connection attempt.
    let tls = match &cfg.tls {
        Some(files) => Some(Arc::new(files.reloading(Duration::ZERO)?)),
        None => None,
    };
    let mut intakes = Vec::new();
    let mut uplink_stats = Vec::new();
    let mut run_outs = Vec::new();
    let mut uplinks = Vec::new();
    for (id, collector) in cfg.collectors.iter().enumerate() {
        let (tx, rx) = mpsc::channel(4096);
        let (stats_tx, stats_rx) = watch::channel(UplinkStats::default());
        let uplink_cfg = UplinkConfig {
            id,
            collector: collector.clone(),
            hello: hello(&cfg, &inv),
            limits: cfg.buffer,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(3),
            open_timeout: uplink::OPEN_TIMEOUT,
            tls: tls.clone(),
            identity_token: cfg.identity_token_file.clone(),
        };
        uplinks.push(tokio::spawn(uplink::run(
            uplink_cfg,
            rx,
            in_tx.clone(),
            stats_tx.clone(),
            stop.clone(),
        )));
        run_outs.push(tx.clone());
        intakes.push(UplinkIntake { tx, stats: stats_tx });
        uplink_stats.push((collector.clone(), stats_rx));
    }
    drop(in_tx);
    tokio::spawn(fanout::run(out_rx, intakes));
    let warnings: Vec<String> = cfg.ignored_warning().into_iter().collect();
    for w in &warnings {
        warn!("{w}");
    }
    let app = crate::metrics::router(metrics.clone(), uplink_stats, ready_rx, warnings);
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for /metrics: {e}", cfg.listen))?;
    let http_stop = stop.clone();
    tokio::spawn(async move {
        let mut s = http_stop;
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { stopped(&mut s).await }).await;
    });
    info!(node = %cfg.node, listen = %cfg.listen, collectors = ?cfg.collectors, "agent started");

    let opts = PlanOptions {
        schedule: cfg.schedule,
        http_checks: cfg.http_checks.clone(),
        mtu: true,
        sources: SourcePods::KnownNetns,
    };
    let mut generation = NonZeroU64::MIN;
    let mut collector_plan = false;
    // Without an inventory nothing is probed until the collector's plan arrives.
    let mut plan_stop = if from_collector {
        watch::channel(false).0
    } else {
        start_plan(
            own_plan(&inv, &cfg.node, &opts, generation),
            sources.clone(),
            metrics.clone(),
            out_tx.clone(),
        )
    };
    // On-demand runs: each on its own task, their progress forwarded to the uplink of the
    // collector that asked (run ids are that collector's own).
    let runs: Vec<(Runs, mpsc::Sender<RunProgress>)> = run_outs
        .into_iter()
        .map(|uplink| {
            let (progress_tx, mut progress_rx) = mpsc::channel::<RunProgress>(256);
            tokio::spawn(async move {
                while let Some(p) = progress_rx.recv().await {
                    if uplink.send(Outbound::RunProgress(p)).await.is_err() {
                        return;
                    }
                }
            });
            (Runs::new(cfg.node.clone()), progress_tx)
        })
        .collect();
    // Plans and pod lists come from one collector at a time (see `Follow`).
    let mut plans: Follow<ProbePlan> = Follow::new(cfg.collectors.len());
    let mut pod_lists: Follow<NodePods> = Follow::new(cfg.collectors.len());
    let mut running_plan: Option<ProbePlan> = None;
    let mut last_reports = BTreeMap::new();
    inspect_all(&sources, &mut last_reports, &out_tx, None, true).await;

    let mut refresh_tick = tokio::time::interval(REFRESH_EVERY);
    let mut inspect_tick = tokio::time::interval(INSPECT_EVERY);
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            _ = refresh_tick.tick() => {
                if let InventorySource::File(path) = &cfg.inventory
                    && modified(path) != inv_mtime
                {
                    match load_inventory(&cfg.inventory, &cfg.node) {
                        Ok((new, mtime)) => {
                            inv = new;
                            inv_mtime = mtime;
                            if !collector_plan {
                                generation = generation.saturating_add(1);
                                let _ = plan_stop.send(true);
                                plan_stop = start_plan(own_plan(&inv, &cfg.node, &opts, generation), sources.clone(), metrics.clone(), out_tx.clone());
                            }
                        }
                        Err(e) => warn!(error = %anyhow::Error::from(e), "keeping the previous inventory"),
                    }
                }
                refresh(&inv);
            }
            _ = inspect_tick.tick() => inspect_all(&sources, &mut last_reports, &out_tx, None, false).await,
            msg = in_rx.recv() => {
                let Some(FromCollector { uplink, event }) = msg else { break };
                let (plan, pods) = match event {
                    UplinkEvent::Up => (plans.set_up(uplink, true), pod_lists.set_up(uplink, true)),
                    UplinkEvent::Down => (plans.set_up(uplink, false), pod_lists.set_up(uplink, false)),
                    UplinkEvent::Message(CollectorMessage::Plan(plan)) => (plans.offer(uplink, plan), None),
                    UplinkEvent::Message(CollectorMessage::Pods(p)) => (None, pod_lists.offer(uplink, p)),
                    UplinkEvent::Message(CollectorMessage::Inspect(only)) => {
                        inspect_all(&sources, &mut last_reports, &out_tx, only.as_ref(), true).await;
                        (None, None)
                    }
                    UplinkEvent::Message(CollectorMessage::Run(req)) => {
                        if let Some((runs, progress)) = runs.get(uplink) {
                            runs.start(req, sources.clone(), progress.clone());
                        }
                        (None, None)
                    }
                    UplinkEvent::Message(CollectorMessage::Cancel(run_id)) => {
                        if let Some((runs, progress)) = runs.get(uplink)
                            && !runs.cancel(&run_id, progress.clone())
                        {
                            debug!(run = %run_id, "cancel for a run not in progress (already ended)");
                        }
                        (None, None)
                    }
                    UplinkEvent::Message(CollectorMessage::Ack(_)) => (None, None),
                };
                if let Some(pods) = pods {
                    if from_collector {
                        inv = inventory_from_collector(&cfg.node, &pods);
                        info!(pods = inv.pods.len(), uplink, "pods from the collector");
                        refresh(&inv);
                    } else {
                        debug!("pods from the collector ignored: this agent reads an inventory file");
                    }
                }
                if let Some(plan) = plan
                    && running_plan.as_ref().is_none_or(|r| !same_plan(r, &plan))
                {
                    collector_plan = true;
                    running_plan = Some(plan.clone());
                    let _ = plan_stop.send(true);
                    plan_stop = start_plan(plan, sources.clone(), metrics.clone(), out_tx.clone());
                }
            }
        }
    }
    let _ = plan_stop.send(true);
    let _ = ready_tx.send(false);
    drop(runs);
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), join_all(uplinks)).await;
    info!("agent stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_differ_per_start_whatever_the_node_name() {
        let long: String = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        assert_eq!(long.len(), 253, "the longest node name");
        for name in ["node-1", long.as_str()] {
            let node = netdiag_model::NodeName::new(name).unwrap();
            let first = instance_id(&node, 4242, 1);
            let restarted = instance_id(&node, 4242, 2);
            let other_pid = instance_id(&node, 4243, 1);
            assert_ne!(first, restarted, "{name}: a restart is a new instance");
            assert_ne!(first, other_pid, "{name}");
            assert!(first.as_str().len() <= 128, "{name}: {first}");
            assert!(first.as_str().starts_with(&name[..name.len().min(INSTANCE_NODE_PREFIX)]), "{first}");
        }
        let short = instance_id(&netdiag_model::NodeName::new("node-1").unwrap(), 7, 0xab);
        assert_eq!(short.as_str(), "node-1-7-00000000000000ab");
    }
}
