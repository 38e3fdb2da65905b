//! The Kubernetes inventory (`--inventory kubernetes`): kube-rs reflectors over Pods, Services,
//! EndpointSlices (discovery/v1) and Nodes, each a `watcher` with bookmarks that re-lists by
//! itself after `410 Gone` (kube-runtime's watcher goes back to its initial list on an `ERROR`
//! event with code 410) and backs off on errors. Changes are debounced into a fresh
//! [`Inventory`] ([`convert::inventory`], pure) sent on a `watch` channel; [`start`] returns
//! once all four kinds have been listed in full.

pub mod convert;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use netdiag_model::inventory::{Inventory, ProxyMode};
use netdiag_model::names::ServiceRef;
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

pub use convert::{ClusterSettings, Converted, Skipped};

/// How long changes gather before one new inventory is built.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// How long the collector waits for the first full list of every kind.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// The collector's flags for `--inventory kubernetes`: how to reach the API, and the cluster
/// facts the API does not publish. Ignored with `--inventory file:…` (the file has them).
#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// kubeconfig file for --inventory kubernetes; without it KUBECONFIG, ~/.kube/config, then
    /// the in-cluster service account.
    #[arg(long, env = "NETDIAG_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The cluster's name in the inventory.
    #[arg(long, env = "NETDIAG_CLUSTER_NAME", default_value = "kubernetes")]
    pub cluster_name: String,
    /// The cluster DNS suffix.
    #[arg(long, env = "NETDIAG_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The Service CIDR (repeat for dual-stack). The API does not publish it: the default is
    /// kubeadm's 10.96.0.0/12; set it if your cluster differs.
    #[arg(
        long = "service-cidr",
        env = "NETDIAG_SERVICE_CIDR",
        value_delimiter = ',',
        value_name = "CIDR",
        default_value = "10.96.0.0/12"
    )]
    pub service_cidrs: Vec<IpNet>,
    /// The node network (repeat); default: each node's InternalIP as a host prefix.
    #[arg(long = "node-cidr", env = "NETDIAG_NODE_CIDR", value_delimiter = ',', value_name = "CIDR")]
    pub node_cidrs: Vec<IpNet>,
    /// The cluster DNS Service (namespace/name); its cluster IPs are the pods' nameservers.
    #[arg(long, env = "NETDIAG_DNS_SERVICE", default_value = "kube-system/kube-dns")]
    pub dns_service: ServiceRef,
    /// kube-proxy's mode on the nodes: iptables or nftables.
    #[arg(long, env = "NETDIAG_PROXY_MODE", default_value = "iptables", value_parser = parse_proxy_mode)]
    pub proxy_mode: ProxyMode,
}

fn parse_proxy_mode(s: &str) -> Result<ProxyMode, String> {
    match s {
        "iptables" => Ok(ProxyMode::Iptables),
        "nftables" => Ok(ProxyMode::Nftables),
        _ => Err(format!("{s:?} is not a proxy mode (iptables or nftables)")),
    }
}

impl KubeArgs {
    pub fn settings(&self) -> ClusterSettings {
        ClusterSettings {
            name: self.cluster_name.clone(),
            domain: self.cluster_domain.clone(),
            service_cidrs: self.service_cidrs.clone(),
            node_cidrs: self.node_cidrs.clone(),
            dns_service: self.dns_service.clone(),
            proxy_mode: self.proxy_mode,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeInventoryError {
    #[error("cannot read the kubeconfig {path}; check --kubeconfig")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "cannot find a Kubernetes client configuration (KUBECONFIG, ~/.kube/config, in-cluster service account); set --kubeconfig or run in-cluster"
    )]
    Infer(#[source] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client for {url}")]
    Client {
        url: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "cannot reach the Kubernetes API at {url}: no full list of {missing} within {waited:?} (last error: {last}); set --kubeconfig or run in-cluster"
    )]
    NotReady { url: String, missing: String, waited: Duration, last: String },
}

/// The client configuration: `kubeconfig` when given, else inferred (KUBECONFIG,
/// ~/.kube/config, in-cluster).
pub async fn client_config(kubeconfig: Option<&Path>) -> Result<kube::Config, KubeInventoryError> {
    match kubeconfig {
        Some(path) => {
            let err = |source| KubeInventoryError::Kubeconfig { path: path.to_path_buf(), source };
            let file = kube::config::Kubeconfig::read_from(path).map_err(err)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(err)
        }
        None => kube::Config::infer().await.map_err(KubeInventoryError::Infer),
    }
}

/// The reflectors' stores: the four kinds the inventory needs, and the two NetworkPolicy-aware
/// diagnosis reads when it may (empty while they cannot be listed).
#[derive(Clone)]
struct Stores {
    nodes: Store<Node>,
    pods: Store<Pod>,
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    namespaces: Store<Namespace>,
    network_policies: Store<NetworkPolicy>,
}

impl Stores {
    fn convert(&self, settings: &ClusterSettings) -> Converted {
        let mut converted = convert::inventory(
            settings,
            convert::Objects {
                nodes: &self.nodes.state(),
                pods: &self.pods.state(),
                services: &self.services.state(),
                endpoint_slices: &self.endpoint_slices.state(),
            },
        );
        let (namespaces, policies) = convert::policies(
            &self.namespaces.state(),
            &self.network_policies.state(),
            &mut converted.skipped,
        );
        converted.inventory.namespaces = namespaces;
        converted.inventory.network_policies = policies;
        converted
    }
}

/// How long the start waits for the optional kinds (Namespaces, NetworkPolicies) to list: a
/// collector whose RBAC lacks them starts without policy awareness rather than late.
const OPTIONAL_READY: Duration = Duration::from_secs(5);

/// Aborts the reflector tasks when the inventory's last receiver is gone.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}

/// The last watcher error, for the "cannot reach" message.
type LastError = Arc<Mutex<Option<String>>>;

fn reflect<K>(client: kube::Client, changed: Arc<Notify>, last_error: LastError) -> (Store<K>, JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let api: kube::Api<K> = kube::Api::all(client);
    let kind = K::kind(&()).to_string();
    let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer);
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                // The store swaps in a new list only at InitDone.
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => changed.notify_one(),
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    info!(kind, "watch expired (410 Gone): listing again");
                }
                Err(e) => {
                    warn!(kind, error = %e, "Kubernetes watch failed; retrying with backoff");
                    *last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
                }
            }
        }
    });
    (reader, task)
}

/// Starts the reflectors and returns once every kind has been listed: the receiver holds the
/// first inventory and gets each new one (debounced by [`DEBOUNCE`]; an unchanged one is not
/// sent). The reflectors run until every receiver is dropped.
pub async fn start(
    config: kube::Config,
    settings: ClusterSettings,
    ready_within: Duration,
) -> Result<watch::Receiver<Inventory>, KubeInventoryError> {
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|source| KubeInventoryError::Client { url: url.clone(), source })?;
    let changed = Arc::new(Notify::new());
    let last_error = LastError::default();
    let (nodes, t1) = reflect::<Node>(client.clone(), changed.clone(), last_error.clone());
    let (pods, t2) = reflect::<Pod>(client.clone(), changed.clone(), last_error.clone());
    let (services, t3) = reflect::<Service>(client.clone(), changed.clone(), last_error.clone());
    let (endpoint_slices, t4) = reflect::<EndpointSlice>(client.clone(), changed.clone(), last_error.clone());
    let optional_error = LastError::default();
    let (namespaces, t5) = reflect::<Namespace>(client.clone(), changed.clone(), optional_error.clone());
    let (network_policies, t6) = reflect::<NetworkPolicy>(client, changed.clone(), optional_error.clone());
    let tasks = Tasks(vec![t1, t2, t3, t4, t5, t6]);
    let stores = Stores { nodes, pods, services, endpoint_slices, namespaces, network_policies };

    let optional_within = ready_within.min(OPTIONAL_READY);
    let (ready, optional) = tokio::join!(
        async {
            tokio::join!(
                tokio::time::timeout(ready_within, stores.nodes.wait_until_ready()),
                tokio::time::timeout(ready_within, stores.pods.wait_until_ready()),
                tokio::time::timeout(ready_within, stores.services.wait_until_ready()),
                tokio::time::timeout(ready_within, stores.endpoint_slices.wait_until_ready()),
            )
        },
        async {
            tokio::join!(
                tokio::time::timeout(optional_within, stores.namespaces.wait_until_ready()),
                tokio::time::timeout(optional_within, stores.network_policies.wait_until_ready()),
            )
        },
    );
    if !matches!(optional, (Ok(Ok(())), Ok(Ok(())))) {
        let last = optional_error.lock().unwrap_or_else(PoisonError::into_inner).clone();
        warn!(
            waited = ?optional_within,
            last_error = last.as_deref().unwrap_or("none"),
            "Namespaces or NetworkPolicies not listed yet: the diagnosis treats every path as allowed until they are \
             (grant the collector list and watch on namespaces and networking.k8s.io networkpolicies)"
        );
    }
    let missing: Vec<&str> = [
        ("Nodes", matches!(ready.0, Ok(Ok(())))),
        ("Pods", matches!(ready.1, Ok(Ok(())))),
        ("Services", matches!(ready.2, Ok(Ok(())))),
        ("EndpointSlices", matches!(ready.3, Ok(Ok(())))),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(k, _)| k)
    .collect();
    if !missing.is_empty() {
        let last = last_error.lock().unwrap_or_else(PoisonError::into_inner).clone();
        return Err(KubeInventoryError::NotReady {
            url,
            missing: missing.join(", "),
            waited: ready_within,
            last: last.unwrap_or_else(|| "none".into()),
        });
    }

    let first = stores.convert(&settings);
    report_skipped(&BTreeSet::new(), &first.skipped);
    let reported: BTreeSet<Skipped> = first.skipped.into_iter().collect();
    if let Err(e) = first.inventory.validate() {
        // The conversion only builds valid inventories; say so loudly if it did not.
        error!(error = %e, "the Kubernetes inventory does not validate");
    }
    info!(
        nodes = first.inventory.nodes.len(),
        pods = first.inventory.pods.len(),
        services = first.inventory.services.len(),
        "Kubernetes inventory listed"
    );
    let (tx, rx) = watch::channel(first.inventory);
    tokio::spawn(async move {
        let _tasks = tasks;
        // Converting, validating and comparing 150 000 pods takes seconds: on a blocking thread,
        // never on a runtime worker that ingest and the API need. What it needs goes there and
        // comes back.
        let mut held = (stores, settings, reported, tx);
        loop {
            tokio::select! {
                () = held.3.closed() => break,
                () = changed.notified() => {}
            }
            tokio::select! {
                () = held.3.closed() => break,
                () = tokio::time::sleep(DEBOUNCE) => {}
            }
            let rebuilt = tokio::task::spawn_blocking(move || {
                let (stores, settings, reported, tx) = &mut held;
                rebuild(stores, settings, reported, tx);
                held
            });
            match rebuilt.await {
                Ok(back) => held = back,
                Err(e) => {
                    error!(error = %e, "the inventory rebuild failed: the inventory stops following the API");
                    break;
                }
            }
        }
    });
    Ok(rx)
}

/// One new inventory from the stores, sent when it validates and differs from the current one.
fn rebuild(
    stores: &Stores,
    settings: &ClusterSettings,
    reported: &mut BTreeSet<Skipped>,
    tx: &watch::Sender<Inventory>,
) {
    let next = stores.convert(settings);
    report_skipped(reported, &next.skipped);
    *reported = next.skipped.into_iter().collect();
    if let Err(e) = next.inventory.validate() {
        error!(error = %e, "keeping the previous inventory: the new one does not validate");
        return;
    }
    let inventory = next.inventory;
    tx.send_if_modified(|current| {
        if *current == inventory {
            return false;
        }
        debug!(pods = inventory.pods.len(), services = inventory.services.len(), "inventory changed");
        *current = inventory;
        true
    });
}

/// Logs each object newly left out once, not at every rebuild.
fn report_skipped(before: &BTreeSet<Skipped>, now: &[Skipped]) {
    for s in now.iter().filter(|s| !before.contains(*s)) {
        warn!(what = s.what, name = %s.name, reason = %s.reason, "left out of the inventory");
    }
}
