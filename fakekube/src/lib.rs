//! A fake Kubernetes API server for tests, so the real kube-rs client code (and real kubectl,
//! `describe` included) runs without a cluster. It serves list, get and watch of Pods,
//! Services, Nodes, Namespaces, Events (`/api/v1/…`), EndpointSlices
//! (`/apis/discovery.k8s.io/v1/…`) and NetworkPolicies (`/apis/networking.k8s.io/v1/…`),
//! cluster-wide and namespaced, with `=`/`!=` label and field selectors; creates and patches
//! (merge or strategic merge, [`patch`]) core/v1 Events and patches `nodes/{name}/status`
//! (conditions merged by `type`); it answers with the API server's JSON shapes: lists with a
//! `resourceVersion`, newline-delimited watch events (`ADDED`, `MODIFIED`,
//! `DELETED`, `BOOKMARK` when asked for, and `ERROR` with a `410 Expired` `Status` when a watch
//! resumes from a compacted version), plus `/version` and discovery, and the service proxy
//! (`services/{name}/proxy`, [`proxy`]: real HTTP forwarding to an address a test registers with
//! [`FakeKube::proxy_service`]). Objects are k8s-openapi types serialized as the API server would
//! send them.
//!
//! Tests drive it through [`FakeKube`]: [`FakeKube::apply`] and [`FakeKube::delete`] change
//! objects (each change gets the next resource version and reaches open watches),
//! [`FakeKube::expire_history`] compacts the history and drops every watch so clients resume
//! into a 410, and [`FakeKube::seed`] loads a netdiag inventory's objects.

mod http;
mod patch;
mod proxy;
pub mod seed;
mod store;
mod tokens;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netdiag_model::inventory::Inventory;
use serde::Serialize;
use tokio::task::JoinHandle;

pub use store::{Kind, Stats};
pub use tokens::IssuedToken;

use crate::http::Shared;

#[derive(Debug, thiserror::Error)]
pub enum FakeKubeError {
    #[error("cannot listen on 127.0.0.1")]
    Listen(#[source] std::io::Error),
    #[error("the fake API server does not serve {0} objects")]
    UnsupportedKind(String),
    #[error("cannot serialize a {0} object")]
    Serialize(String, #[source] serde_json::Error),
    #[error("cannot write the kubeconfig {0}")]
    Kubeconfig(String, #[source] std::io::Error),
}

/// A running fake API server on `127.0.0.1:<port>`, plain HTTP, no authentication. Stops when
/// dropped.
#[derive(Debug)]
pub struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FakeKube {
    /// Starts the server on the current tokio runtime, with no objects and bookmarks every
    /// second on watches that allow them.
    pub async fn start() -> Result<Self, FakeKubeError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(FakeKubeError::Listen)?;
        let addr = listener.local_addr().map_err(FakeKubeError::Listen)?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new()),
            bookmark_every: Mutex::new(Duration::from_secs(1)),
            proxies: Mutex::new(std::collections::HashMap::new()),
            proxied: std::sync::atomic::AtomicU64::new(0),
            tokens: Mutex::new(std::collections::HashMap::new()),
        });
        let app = http::router(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "the fake API server stopped");
            }
        });
        Ok(FakeKube { addr, shared, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client configuration pointing at this server.
    pub fn config(&self) -> kube::Config {
        // A socket address always makes a valid URI.
        let uri = self.url().parse().unwrap_or_default();
        kube::Config::new(uri)
    }

    /// A kubeconfig file's text with one context pointing at this server.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fakekube\n  cluster:\n    server: {}\n\
             contexts:\n- name: fakekube\n  context:\n    cluster: fakekube\n    user: fakekube\n\
             current-context: fakekube\nusers:\n- name: fakekube\n  user: {{}}\n",
            self.url()
        )
    }

    /// Writes [`Self::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), FakeKubeError> {
        std::fs::write(path, self.kubeconfig_yaml())
            .map_err(|e| FakeKubeError::Kubeconfig(path.display().to_string(), e))
    }

    /// How often watches that allow bookmarks get one.
    pub fn set_bookmark_interval(&self, every: Duration) {
        *self.shared.bookmark_every.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            every.max(Duration::from_millis(10));
    }

    /// Creates or replaces an object (any served [`Kind`]); returns its
    /// resource version. Open watches get `ADDED` or `MODIFIED`.
    pub fn apply<K>(&self, object: &K) -> Result<u64, FakeKubeError>
    where
        K: k8s_openapi::Resource + Serialize,
    {
        let kind = Kind::from_kind(K::KIND).ok_or_else(|| FakeKubeError::UnsupportedKind(K::KIND.into()))?;
        let value = serde_json::to_value(object).map_err(|e| FakeKubeError::Serialize(K::KIND.into(), e))?;
        Ok(self.shared.store().apply(kind, value))
    }

    /// Deletes an object (`namespace` is ignored for Nodes); false if there was none. Open
    /// watches get `DELETED`.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> bool {
        self.shared.store().delete(kind, namespace, name)
    }

    /// Compacts the history at a new resource version and ends every open watch: a client
    /// resuming from any version it has seen gets `410 Gone` and must list again.
    pub fn expire_history(&self) {
        self.shared.store().expire_history();
    }

    /// Ends every open watch stream (clients reconnect and resume).
    pub fn close_watches(&self) {
        self.shared.store().close_watches();
    }

    pub fn open_watches(&self) -> usize {
        self.shared.store().open_watches()
    }

    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    /// The stored object, as a GET would return it (`namespace` is ignored for Nodes).
    pub fn object(&self, kind: Kind, namespace: &str, name: &str) -> Option<serde_json::Value> {
        self.shared.store().get(kind, namespace, name).cloned()
    }

    /// Every stored object of `kind`, ordered by namespace and name.
    pub fn objects(&self, kind: Kind) -> Vec<serde_json::Value> {
        self.shared.store().all(kind)
    }

    /// Answers `verb` (`create`, `patch`, `get`) on `resource` (`events`, `nodes/status`,
    /// `services/proxy`) with `403 Forbidden`, as a ClusterRole without it would; `allow` undoes
    /// it. For `services/proxy` the verb is the request's (GET `get`, POST `create`).
    /// A bearer token the fake's TokenReview takes as `token`'s ServiceAccount, bound to its pod
    /// (and naming its node when given); returns the token text.
    pub fn issue_token(&self, token: IssuedToken) -> String {
        let mut tokens = self.shared.tokens();
        let text = format!("fake-sa-token.{}.{}", token.service_account, tokens.len() + 1);
        tokens.insert(text.clone(), token);
        text
    }

    pub fn forbid(&self, verb: &str, resource: &str) {
        self.shared.store().forbidden.insert((verb.to_string(), resource.to_string()));
    }

    pub fn allow(&self, verb: &str, resource: &str) {
        self.shared.store().forbidden.remove(&(verb.to_string(), resource.to_string()));
    }

    /// The test stand-in for a Service's endpoint: the service proxy
    /// (`/api/v1/namespaces/{namespace}/services/[http:]{name}:{port}/proxy/…`) forwards requests
    /// for this Service port (`port`: its name or number) to `backend`, typically a server the
    /// test runs on 127.0.0.1. The Service itself must be stored ([`Self::apply`]) for the proxy
    /// to find it. Without a registration the proxy answers 503, as for a Service with no ready
    /// endpoints.
    pub fn proxy_service(&self, namespace: &str, name: &str, port: &str, backend: SocketAddr) {
        self.shared.proxies().insert((namespace.to_string(), name.to_string(), port.to_string()), backend);
    }

    /// Requests the service proxy forwarded to a backend so far.
    pub fn proxied_requests(&self) -> u64 {
        self.shared.proxied.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn stats(&self) -> Stats {
        self.shared.store().stats.clone()
    }

    /// Loads an inventory's Namespaces, Nodes, Pods, Services, EndpointSlices and
    /// NetworkPolicies ([`seed::objects`]).
    pub fn seed(&self, inventory: &Inventory) -> Result<(), FakeKubeError> {
        let o = seed::objects(inventory);
        o.namespaces.iter().try_for_each(|x| self.apply(x).map(drop))?;
        o.network_policies.iter().try_for_each(|x| self.apply(x).map(drop))?;
        o.nodes.iter().try_for_each(|x| self.apply(x).map(drop))?;
        o.pods.iter().try_for_each(|x| self.apply(x).map(drop))?;
        o.services.iter().try_for_each(|x| self.apply(x).map(drop))?;
        o.endpoint_slices.iter().try_for_each(|x| self.apply(x).map(drop))
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
    }
}
