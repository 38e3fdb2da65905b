//! One writer among collector replicas: a `coordination.k8s.io/v1` Lease, the Kubernetes way
//! (client-go's leader election; kube-controller-manager and kube-scheduler use the same
//! object). Every replica ingests, diagnoses and serves the same matrix; only the replica
//! holding the Lease writes node conditions and Events, so they are not doubled. Decisions are
//! [`elect`] (pure); this is the I/O: read the Lease every `retry`, then create, renew or take
//! it over with the read's resourceVersion as the precondition (a `409` means another replica
//! wrote first). A holder that cannot renew for `renew_deadline` stops writing before any
//! other replica may take over (`duration` > `renew_deadline`); a stopping holder releases the
//! Lease so a standby takes over at its next read instead of a whole duration later.

pub mod elect;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

use self::elect::{Action, Elector, Record};

/// The collector's flags for it.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaseArgs {
    /// With several collector replicas, elect the one that writes node conditions and Events
    /// through a coordination.k8s.io Lease (needs get, create and update on leases in its
    /// namespace); false: this replica writes whatever the others do (one replica only).
    #[arg(
        long = "leader-election",
        env = "NETDIAG_LEADER_ELECTION",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub enabled: bool,
    /// The Lease's name.
    #[arg(long = "leader-election-lease", env = "NETDIAG_LEADER_ELECTION_LEASE", default_value = DEFAULT_LEASE)]
    pub lease: String,
    /// The Lease's namespace (default: the collector's own, from its service account or
    /// kubeconfig context).
    #[arg(long = "leader-election-namespace", env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
}

/// The Lease's default name.
pub const DEFAULT_LEASE: &str = "netdiag-collector-writer";

/// Where the Lease is and its timing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity: its pod name and a nonce (a restarted pod is a new holder).
    pub identity: String,
    /// How long a holder's silence lets another take over.
    pub duration: Duration,
    /// How long a holder keeps writing without a successful renewal.
    pub renew_deadline: Duration,
    /// How often the Lease is read.
    pub retry: Duration,
}

impl LeaseConfig {
    /// client-go's defaults (15 s, 10 s, 2 s).
    pub fn new(name: String, namespace: String, identity: String) -> Self {
        Self {
            name,
            namespace,
            identity,
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// This process's identity: the pod name (HOSTNAME), its pid and start time, so a restarted
/// container is a new holder.
pub fn identity() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "collector".into());
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{host}_{:x}{:08x}", std::process::id(), started.subsec_nanos())
}

fn record(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity,
        duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0).unsigned_abs().into()),
        transitions: spec.lease_transitions.unwrap_or(0),
        renewed: spec.renew_time.and_then(|t| serde_json::to_value(t).ok()).map(|v| v.to_string()),
    }
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Why a Lease call failed, in words an operator acts on.
fn explain(verb: &str, cfg: &LeaseConfig, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "cannot {verb} lease {}/{}: forbidden ({}); grant get, create and update on leases in {} to the \
             collector's ServiceAccount (the chart's collector Role), or run one replica with \
             --leader-election=false",
            cfg.namespace, cfg.name, s.message, cfg.namespace
        ),
        other => format!("cannot {verb} lease {}/{}: {other}; retrying", cfg.namespace, cfg.name),
    }
}

/// The outcome of one read-and-write.
enum Turn {
    /// This replica holds the Lease as of now.
    Holding,
    /// Another replica holds it (or won the race).
    Other(String),
    /// The API could not be read or written.
    Failed(String),
}

struct Candidate {
    api: Api<Lease>,
    cfg: LeaseConfig,
    elector: Elector,
}

impl Candidate {
    fn spec(&self, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.cfg.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: acquired,
            renew_time: Some(now_micro()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn turn(&mut self) -> Turn {
        let current = match self.api.get_opt(&self.cfg.name).await {
            Ok(c) => c,
            Err(e) => return Turn::Failed(explain("get", &self.cfg, &e)),
        };
        let action = self.elector.decide(current.as_ref().map(record).as_ref(), Instant::now());
        let written = match (action, current) {
            (Action::Wait { holder }, _) => return Turn::Other(holder),
            (Action::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(Some(now_micro()), 0)),
                };
                self.api.create(&PostParams::default(), &lease).await.map_err(|e| ("create", e))
            }
            (Action::Renew, Some(mut lease)) => {
                let spec = lease.spec.take().unwrap_or_default();
                let renewed = self.spec(spec.acquire_time, spec.lease_transitions.unwrap_or(0));
                lease.spec = Some(renewed);
                self.api
                    .replace(&self.cfg.name, &PostParams::default(), &lease)
                    .await
                    .map_err(|e| ("update", e))
            }
            (Action::TakeOver { transitions }, Some(mut lease)) => {
                lease.spec = Some(self.spec(Some(now_micro()), transitions));
                self.api
                    .replace(&self.cfg.name, &PostParams::default(), &lease)
                    .await
                    .map_err(|e| ("update", e))
            }
            // Renew and take over follow a read that found the Lease.
            (Action::Renew | Action::TakeOver { .. }, None) => return Turn::Other(String::new()),
        };
        match written {
            Ok(_) => Turn::Holding,
            // Someone wrote between our read and write (409), or created it first.
            Err((_, kube::Error::Api(s))) if s.code == 409 => Turn::Other(String::new()),
            Err((verb, e)) => Turn::Failed(explain(verb, &self.cfg, &e)),
        }
    }

    /// Gives the Lease up: no holder, so a standby takes it at its next read.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now_micro());
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => info!(lease = self.cfg.name, "released the writer lease"),
            Err(e) => warn!("{}", explain("update", &self.cfg, &e)),
        }
    }
}

/// Campaigns for the Lease until `stop`, publishing whether this replica holds it on `holding`.
pub async fn run(
    client: kube::Client,
    cfg: LeaseConfig,
    holding: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut candidate = Candidate { api, elector: Elector::new(cfg.identity.clone()), cfg };
    let mut last_held: Option<Instant> = None;
    let mut failing: Option<String> = None;
    let mut other: Option<String> = None;
    let mut tick = tokio::time::interval(candidate.cfg.retry);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let turn =
            tokio::time::timeout(candidate.cfg.renew_deadline, candidate.turn()).await.unwrap_or_else(|_| {
                Turn::Failed("the API server did not answer within the renew deadline".into())
            });
        let now = Instant::now();
        let held = match turn {
            Turn::Holding => {
                last_held = Some(now);
                if failing.take().is_some() {
                    info!(lease = candidate.cfg.name, "the writer lease is reachable again");
                }
                true
            }
            Turn::Other(holder) => {
                last_held = None;
                if !holder.is_empty() && other.as_deref() != Some(holder.as_str()) {
                    info!(lease = candidate.cfg.name, holder, "another replica writes to the Kubernetes API");
                    other = Some(holder);
                }
                false
            }
            Turn::Failed(why) => {
                if failing.as_deref() != Some(why.as_str()) {
                    warn!("{why}");
                    failing = Some(why);
                }
                // Keep writing only while the last renewal is recent enough that nobody else
                // may have taken over.
                last_held.is_some_and(|t| now.duration_since(t) < candidate.cfg.renew_deadline)
            }
        };
        if held != *holding.borrow() {
            if held {
                info!(
                    lease = candidate.cfg.name,
                    identity = candidate.cfg.identity,
                    "holding the writer lease: this replica writes node conditions and events"
                );
                other = None;
            } else {
                info!(lease = candidate.cfg.name, "lost the writer lease: this replica stops writing");
            }
            holding.send_replace(held);
        }
    }
    if *holding.borrow() {
        holding.send_replace(false);
        let _ = tokio::time::timeout(Duration::from_secs(2), candidate.release()).await;
    }
}
