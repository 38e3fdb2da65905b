//! Reporting findings to Kubernetes (`--inventory kubernetes`, unless `--node-conditions=false`):
//! the `NetdiagNetwork` condition on each blamed Node and a core/v1 Event per finding
//! transition on the blamed Node, Pod or Service — what `kubectl describe` shows. What to write
//! is decided by [`plan`] (pure); this is the I/O: every round it reads the latest diagnosis and
//! the finding transitions since the last round ([`crate::history`]), patches node status with a
//! strategic merge patch (so other conditions stay), creates Events and bumps repeats. Only
//! changes are written. A failed write is logged once (saying which verb on which resource
//! and what to do) and planned again next round; the collector never stops over it.
//!
//! One writer among replicas: with `--leader-election` (the default) only the replica holding
//! the writer Lease ([`crate::lease`]) writes; one that takes over reads the conditions the
//! previous writer left and writes Events only for transitions from then on. RBAC: `patch` on
//! `nodes/status`, `create` and `patch` on `events`, and the `get`/`list` on nodes, pods and
//! services the inventory already has (the Events need the object's uid).

pub mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::lease::LeaseConfig;
use crate::state::{CollectorState, now};
use plan::{Condition, ConditionWrite, EventWrite, ObjectKind, ReportConfig, Reporter};

/// How often the writer looks at the diagnosis (the collector's housekeeping rhythm).
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// The collector's flag for it.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeReportArgs {
    /// In kubernetes mode, set the NetdiagNetwork condition on nodes netdiag blames and emit an
    /// Event per finding transition on the blamed Node, Pod or Service (needs patch on
    /// nodes/status, create and patch on events); false writes nothing to the API.
    #[arg(
        long = "node-conditions",
        env = "NETDIAG_NODE_CONDITIONS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub node_conditions: bool,
    #[command(flatten)]
    pub lease: crate::lease::LeaseArgs,
}

/// What the writer needs: where the API is, and its tunables.
#[derive(Debug, Clone)]
pub struct KubeReport {
    pub config: kube::Config,
    pub report: ReportConfig,
    pub every: Duration,
    /// The writer Lease, when replicas elect one writer; None: this one writes.
    pub lease: Option<LeaseConfig>,
}

impl KubeReport {
    pub fn new(config: kube::Config) -> Self {
        KubeReport { config, report: ReportConfig::default(), every: REPORT_EVERY, lease: None }
    }

    /// From the flags: the Lease in `--leader-election-namespace`, else the client's default
    /// namespace (the service account's, in a pod).
    pub fn from_args(config: kube::Config, args: &KubeReportArgs) -> Self {
        let lease = args.lease.enabled.then(|| {
            let namespace = args.lease.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
            LeaseConfig::new(args.lease.lease.clone(), namespace, crate::lease::identity())
        });
        KubeReport { lease, ..Self::new(config) }
    }
}

/// Why a write failed, in words an operator acts on.
fn explain(verb: &str, resource: &str, target: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "cannot {verb} {resource} ({target}): forbidden ({}); grant `{verb}` on `{resource}` to the collector's ServiceAccount (the chart's collector ClusterRole) or run with --node-conditions=false",
            s.message
        ),
        other => format!("cannot {verb} {resource} ({target}): {other}; retrying next round"),
    }
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

struct Writer {
    client: kube::Client,
    state: Arc<CollectorState>,
    reporter: Reporter,
    /// `reportingInstance`: the pod's name (HOSTNAME) when there is one.
    instance: Option<String>,
    /// Nodes' existing conditions read.
    seeded: bool,
    /// What is failing now, by what was being written: logged when it starts or changes.
    failing: HashMap<String, String>,
}

impl Writer {
    fn outcome<T>(&mut self, what: String, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => {
                if self.failing.remove(&what).is_some() {
                    info!(what, "writing to the Kubernetes API works again");
                }
                Some(v)
            }
            Err(message) => {
                if self.failing.get(&what) != Some(&message) {
                    warn!(what, "{message}");
                    self.failing.insert(what, message);
                }
                None
            }
        }
    }

    /// Reads the NetdiagNetwork conditions nodes carry (a previous collector's), once.
    async fn seed(&mut self) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let listed =
            nodes.list(&ListParams::default()).await.map_err(|e| explain("list", "nodes", "all", &e));
        let Some(list) = self.outcome("list nodes".into(), listed) else { return };
        let at = now();
        for n in list.items {
            let (Some(name), Some(status)) = (n.metadata.name, n.status) else { continue };
            for c in status.conditions.unwrap_or_default() {
                if let Some(c) = Condition::from_api(&c, at) {
                    self.reporter.known(&name, c);
                }
            }
        }
        self.seeded = true;
    }

    async fn round(&mut self) {
        if !self.seeded {
            self.seed().await;
            if !self.seeded {
                return;
            }
        }
        let state = self.state.clone();
        let Ok(snapshot) = tokio::task::spawn_blocking(move || state.diagnosis_snapshot(now())).await else {
            return;
        };
        let transitions = self.state.finding_events_since(self.reporter.seq);
        let plan = self.reporter.plan(&snapshot.diagnosis.findings, &transitions, now());
        for series in &plan.suppressed {
            debug!(object = %series.object, finding = series.finding, "event dropped by the rate limit");
        }
        for write in plan.conditions {
            self.condition(write).await;
        }
        for write in plan.events {
            self.event(write).await;
        }
    }

    async fn condition(&mut self, write: ConditionWrite) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = json!({ "status": { "conditions": [write.condition.to_api()] } });
        match nodes.patch_status(&write.node, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => {
                self.outcome::<()>(format!("patch nodes/status {}", write.node), Ok(()));
                debug!(
                    node = write.node,
                    status = write.condition.status,
                    reason = write.condition.reason,
                    "node condition written"
                );
                self.reporter.condition_written(&write);
            }
            Err(e) if code(&e) == Some(404) => {
                info!(node = write.node, "the node is gone: no condition to write");
                self.reporter.forget_node(&write.node);
            }
            Err(e) => {
                let message = explain("patch", "nodes/status", &write.node, &e);
                self.outcome::<()>(format!("patch nodes/status {}", write.node), Err(message));
            }
        }
    }

    /// The object's uid (Events name it); None when it is gone.
    async fn uid(&mut self, kind: ObjectKind, namespace: &str, name: &str) -> Result<Option<String>, String> {
        let uid = |m: kube::api::ObjectMeta| m.uid;
        let c = self.client.clone();
        let r = match kind {
            ObjectKind::Node => Api::<Node>::all(c).get_opt(name).await.map(|o| o.map(|o| uid(o.metadata))),
            ObjectKind::Pod => {
                Api::<Pod>::namespaced(c, namespace).get_opt(name).await.map(|o| o.map(|o| uid(o.metadata)))
            }
            ObjectKind::Service => Api::<Service>::namespaced(c, namespace)
                .get_opt(name)
                .await
                .map(|o| o.map(|o| uid(o.metadata))),
        };
        let resource = format!("{}s", kind.as_str().to_lowercase());
        r.map(Option::flatten).map_err(|e| explain("get", &resource, name, &e))
    }

    async fn event(&mut self, mut write: EventWrite) {
        let object = write.series.object.clone();
        let what = format!("event on {object}");
        let uid = self.uid(object.kind, &object.namespace, &object.name).await;
        let Some(uid) = self.outcome(what.clone(), uid) else {
            self.reporter.event_failed(&write.series);
            return;
        };
        let Some(uid) = uid else {
            debug!(%object, "the object is gone: no event");
            self.reporter.event_failed(&write.series);
            return;
        };
        write.event.involved_object.uid = Some(uid);
        write.event.reporting_instance.clone_from(&self.instance);
        let name = write.event.metadata.name.clone().unwrap_or_default();
        let events: Api<Event> = Api::namespaced(self.client.clone(), object.events_namespace());
        let bump =
            || async { events.patch(&name, &PatchParams::default(), &Patch::Merge(&write.bump())).await };
        let create = || async { events.create(&PostParams::default(), &write.event).await };
        let result = if write.repeat {
            match bump().await {
                // Gone (events expire, an hour by default): the series goes on in a new one.
                Err(e) if code(&e) == Some(404) => {
                    create().await.map_err(|e| explain("create", "events", &name, &e))
                }
                r => r.map_err(|e| explain("patch", "events", &name, &e)),
            }
        } else {
            match create().await {
                Err(e) if code(&e) == Some(409) => {
                    bump().await.map_err(|e| explain("patch", "events", &name, &e))
                }
                r => r.map_err(|e| explain("create", "events", &name, &e)),
            }
        };
        if self.outcome(what, result).is_none() {
            self.reporter.event_failed(&write.series);
        } else {
            debug!(%object, reason = write.event.reason, count = write.event.count, "event written");
        }
    }
}

/// Writes conditions and Events every `report.every` until `stop` turns true — only while
/// holding the writer Lease when there is one. A client that cannot be built is logged and
/// nothing is written. Returns after releasing the Lease.
pub async fn run(state: Arc<CollectorState>, report: KubeReport, stop: watch::Receiver<bool>) {
    let mut stop_report = stop.clone();
    let stopped = async move {
        let _ = stop_report.wait_for(|s| *s).await;
    };
    let mut stopped = std::pin::pin!(stopped);
    let url = report.config.cluster_url.to_string();
    let client = match kube::Client::try_from(report.config) {
        Ok(c) => c,
        Err(e) => {
            warn!(url, error = %e, "cannot build a Kubernetes client: no node conditions or events will be written");
            return;
        }
    };
    let (holding_tx, mut holding) = watch::channel(report.lease.is_none());
    let election = report.lease.map(|lease| {
        info!(
            lease = lease.name,
            namespace = lease.namespace,
            identity = lease.identity,
            "campaigning for the writer lease"
        );
        tokio::spawn(crate::lease::run(client.clone(), lease, holding_tx, stop))
    });
    let started = now();
    let config = report.report;
    let mut writer = Writer {
        client,
        state,
        reporter: Reporter::new(config, started),
        instance: std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()),
        seeded: false,
        failing: HashMap::new(),
    };
    info!(url, "writing the NetdiagNetwork node condition and finding events to the Kubernetes API");
    let mut tick = tokio::time::interval(report.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_holding = *holding.borrow();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let holds = *holding.borrow_and_update();
                if holds && !was_holding {
                    // Taking over: what the previous writer left is read again, and Events
                    // start from the transitions after now (it wrote the earlier ones).
                    let latest = writer.state.finding_events_since(0).last().map_or(0, |e| e.seq);
                    writer.reporter = Reporter::new(config, now());
                    writer.reporter.seq = latest;
                    writer.seeded = false;
                }
                was_holding = holds;
                if holds {
                    writer.round().await;
                }
            }
            () = &mut stopped => break,
        }
    }
    if let Some(election) = election {
        let _ = election.await;
    }
}
