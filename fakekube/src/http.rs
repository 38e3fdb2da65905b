//! The fake's HTTP side: the paths kube-rs and kubectl (`describe` included) ask for
//! (`/version`, discovery, list, get and watch of every [`Kind`], cluster-wide and namespaced),
//! create and patch of Events, and patch of `nodes/{name}/status`, answered from the [`Store`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::store::{Filter, Kind, Store, status, watch_line};

/// What the handlers share with [`crate::FakeKube`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub bookmark_every: Mutex<Duration>,
    /// The service proxy's endpoints: (namespace, service, port name or number) → address.
    pub proxies: Mutex<HashMap<(String, String, String), SocketAddr>>,
    /// Requests the service proxy forwarded.
    pub proxied: AtomicU64,
    /// Tokens the TokenReview knows, by their text.
    pub tokens: Mutex<HashMap<String, crate::tokens::IssuedToken>>,
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn proxies(&self) -> MutexGuard<'_, HashMap<(String, String, String), SocketAddr>> {
        self.proxies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn proxied(&self) {
        self.proxied.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn tokens(&self) -> MutexGuard<'_, HashMap<String, crate::tokens::IssuedToken>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bookmark_every(&self) -> Duration {
        *self.bookmark_every.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

pub(crate) fn failure(code: StatusCode, reason: &str, message: &str) -> Response {
    json_response(code, &status(code.as_u16(), reason, message))
}

/// The request's path split into what it names.
enum Target {
    Version,
    Discovery(Value),
    Collection {
        kind: Kind,
        namespace: Option<String>,
    },
    Object {
        kind: Kind,
        namespace: Option<String>,
        name: String,
    },
    /// `nodes/{name}/status`
    Status {
        kind: Kind,
        name: String,
    },
}

fn route(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match parts.as_slice() {
        ["version"] => return Some(Target::Version),
        ["api"] => return Some(Target::Discovery(api_versions())),
        ["apis"] => return Some(Target::Discovery(api_groups())),
        ["api", "v1"] => return Some(Target::Discovery(resource_list("v1"))),
        ["apis", group @ ("discovery.k8s.io" | "networking.k8s.io" | "coordination.k8s.io"), "v1"] => {
            return Some(Target::Discovery(resource_list(&format!("{group}/v1"))));
        }
        ["api", "v1", rest @ ..] => ("v1", rest),
        ["apis", "discovery.k8s.io", "v1", rest @ ..] => ("discovery.k8s.io/v1", rest),
        ["apis", "networking.k8s.io", "v1", rest @ ..] => ("networking.k8s.io/v1", rest),
        ["apis", "coordination.k8s.io", "v1", rest @ ..] => ("coordination.k8s.io/v1", rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_string()), rest),
        _ => (None, rest),
    };
    let kind = Kind::from_path(api_version, rest.first()?)?;
    if namespace.is_some() && !kind.namespaced() {
        return None;
    }
    match rest {
        [_] => Some(Target::Collection { kind, namespace }),
        [_, name] => Some(Target::Object { kind, namespace, name: (*name).to_string() }),
        [_, name, "status"] if kind == Kind::Node => Some(Target::Status { kind, name: (*name).to_string() }),
        _ => None,
    }
}

/// `403 Forbidden` in the API server's words, when [`crate::FakeKube::forbid`] said so.
fn forbidden(shared: &Shared, verb: &str, resource: &str, name: &str) -> Option<Response> {
    forbidden_as(shared, verb, resource, name, "system:serviceaccount:netdiag:netdiag-collector", None)
}

/// [`forbidden`] for `user`, in `namespace` when the resource is namespaced.
pub(crate) fn forbidden_as(
    shared: &Shared,
    verb: &str,
    resource: &str,
    name: &str,
    user: &str,
    namespace: Option<&str>,
) -> Option<Response> {
    if !shared.store().forbidden.contains(&(verb.to_string(), resource.to_string())) {
        return None;
    }
    let what = resource.split('/').next().unwrap_or(resource);
    let (res, sub) = match resource.split_once('/') {
        Some((r, s)) => (r, format!("/{s}")),
        None => (resource, String::new()),
    };
    Some(failure(
        StatusCode::FORBIDDEN,
        "Forbidden",
        &format!(
            "{what} \"{name}\" is forbidden: User \"{user}\" cannot {verb} resource \"{res}{sub}\" in API group \"\"{}",
            namespace.map(|ns| format!(" in the namespace \"{ns}\"")).unwrap_or_default()
        ),
    ))
}

fn outcome(result: Result<Value, Value>, ok: StatusCode) -> Response {
    match result {
        Ok(o) => json_response(ok, &o),
        Err(s) => {
            let code = s["code"].as_u64().and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
            json_response(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &s)
        }
    }
}

/// POST to a collection: create (Events and Leases only).
fn create(shared: &Shared, kind: Kind, namespace: Option<String>, body: &[u8]) -> Response {
    if !matches!(kind, Kind::Event | Kind::Lease) {
        return failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the fake API server creates only Events and Leases",
        );
    }
    let object: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return failure(StatusCode::BAD_REQUEST, "BadRequest", &format!("the body is not JSON: {e}"));
        }
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if let Some(r) = forbidden(shared, "create", kind.plural(), name) {
        return r;
    }
    let Some(namespace) = namespace else {
        return failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("create {} in a namespace: POST …/namespaces/{{ns}}/{}", kind.plural(), kind.plural()),
        );
    };
    outcome(shared.store().create(kind, &namespace, object), StatusCode::CREATED)
}

/// PUT of an object: replace (Leases only), with resourceVersion preconditions.
fn replace(shared: &Shared, kind: Kind, namespace: Option<String>, name: String, body: &[u8]) -> Response {
    if kind != Kind::Lease {
        return failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("the fake API server replaces only leases, not {}", kind.plural()),
        );
    }
    let object: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return failure(StatusCode::BAD_REQUEST, "BadRequest", &format!("the body is not JSON: {e}"));
        }
    };
    if let Some(r) = forbidden(shared, "update", kind.plural(), &name) {
        return r;
    }
    let ns = namespace.unwrap_or_default();
    outcome(shared.store().replace(kind, &ns, &name, object), StatusCode::OK)
}

/// PATCH of an Event or a Node's status.
fn patch(
    shared: &Shared,
    target: (Kind, Option<String>, String, bool),
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let (kind, namespace, name, status_only) = target;
    let resource = if status_only { format!("{}/status", kind.plural()) } else { kind.plural().to_string() };
    if !(kind == Kind::Event || (kind == Kind::Node && status_only)) {
        return failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("the fake API server patches only events and nodes/status, not {resource}"),
        );
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let ty = match crate::patch::PatchType::from_content_type(ct) {
        Ok(t) => t,
        Err(e) => return failure(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", &e),
    };
    let patch: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return failure(StatusCode::BAD_REQUEST, "BadRequest", &format!("the patch is not JSON: {e}"));
        }
    };
    if let Some(r) = forbidden(shared, "patch", &resource, &name) {
        return r;
    }
    let ns = namespace.unwrap_or_default();
    outcome(shared.store().patch(kind, &ns, &name, status_only, ty, &patch), StatusCode::OK)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(proxy) = crate::proxy::parse(uri.path()) {
        return crate::proxy::serve(&shared, proxy, method, &uri, &headers, body).await;
    }
    if method == Method::POST
        && uri.path().trim_end_matches('/') == "/apis/authentication.k8s.io/v1/tokenreviews"
    {
        if let Some(r) = forbidden(&shared, "create", "tokenreviews", "") {
            return r;
        }
        let body: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return failure(StatusCode::BAD_REQUEST, "BadRequest", &format!("the body is not JSON: {e}"));
            }
        };
        let answer = crate::tokens::review(&shared.tokens(), &body);
        return json_response(StatusCode::CREATED, &answer);
    }
    let target = route(uri.path());
    match (&method, target) {
        (&Method::POST, Some(Target::Collection { kind, namespace })) => {
            create(&shared, kind, namespace, &body)
        }
        (&Method::PUT, Some(Target::Object { kind, namespace, name })) => {
            replace(&shared, kind, namespace, name, &body)
        }
        (&Method::PATCH, Some(Target::Object { kind, namespace, name })) => {
            patch(&shared, (kind, namespace, name, false), &headers, &body)
        }
        (&Method::PATCH, Some(Target::Status { kind, name })) => {
            patch(&shared, (kind, None, name, true), &headers, &body)
        }
        (&Method::GET, target) => get(shared, target, &query),
        _ => failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the fake API server reads, creates Events and Leases, replaces Leases and patches Events and nodes/status",
        ),
    }
}

fn get(shared: Arc<Shared>, target: Option<Target>, query: &HashMap<String, String>) -> Response {
    match target {
        None => {
            failure(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource")
        }
        Some(Target::Version) => json_response(StatusCode::OK, &version()),
        Some(Target::Discovery(body)) => json_response(StatusCode::OK, &body),
        Some(Target::Status { kind, name }) => {
            get(shared, Some(Target::Object { kind, namespace: None, name }), query)
        }
        Some(Target::Object { kind, namespace, name }) => {
            match shared.store().get(kind, namespace.as_deref().unwrap_or(""), &name) {
                Some(o) => json_response(StatusCode::OK, o),
                None => failure(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{} \"{name}\" not found", kind.plural()),
                ),
            }
        }
        Some(Target::Collection { kind, namespace }) => {
            let filter = match Filter::parse(
                namespace,
                query.get("labelSelector").map(String::as_str),
                query.get("fieldSelector").map(String::as_str),
            ) {
                Ok(f) => f,
                Err(e) => return failure(StatusCode::BAD_REQUEST, "BadRequest", &e),
            };
            if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                watch(shared, kind, filter, query)
            } else {
                let (items, rv) = shared.store().list(kind, &filter);
                json_response(
                    StatusCode::OK,
                    &json!({
                        "kind": format!("{}List", kind.kind()),
                        "apiVersion": kind.api_version(),
                        "metadata": { "resourceVersion": rv.to_string() },
                        "items": items,
                    }),
                )
            }
        }
    }
}

/// A watch: replayed or initial events, then live ones and bookmarks, newline-delimited, until
/// `timeoutSeconds`, the client leaving, or the fake closing its watches.
fn watch(shared: Arc<Shared>, kind: Kind, filter: Filter, query: &HashMap<String, String>) -> Response {
    let rv = query.get("resourceVersion").cloned().unwrap_or_default();
    let timeout = query.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).unwrap_or(1800).min(3600);
    let bookmarks = query.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let (out_tx, out_rx) = mpsc::channel::<Result<String, Infallible>>(64);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let opened = shared.store().open_watch(kind, filter, &rv, tx);
    let every = shared.bookmark_every();
    tokio::spawn(async move {
        let opened = match opened {
            Ok(o) => o,
            Err(status) => {
                let _ = out_tx.send(Ok(watch_line("ERROR", &status))).await;
                return;
            }
        };
        for line in opened.first {
            if out_tx.send(Ok(line)).await.is_err() {
                shared.store().close_watch(opened.id);
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(line) => if out_tx.send(Ok(line)).await.is_err() { break },
                    None => break,
                },
                _ = tick.tick(), if bookmarks => {
                    if !shared.store().bookmark(opened.id) { continue }
                }
                () = &mut deadline => break,
            }
        }
        shared.store().close_watch(opened.id);
    });
    let body = Body::from_stream(futures_util::stream::unfold(out_rx, |mut rx| async move {
        rx.recv().await.map(|line| (line, rx))
    }));
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-fakekube",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }],
    })
}

fn api_groups() -> Value {
    let groups: Vec<Value> = ["discovery.k8s.io", "networking.k8s.io", "coordination.k8s.io"]
        .into_iter()
        .map(|name| {
            let gv = format!("{name}/v1");
            json!({
                "name": name,
                "versions": [{ "groupVersion": gv, "version": "v1" }],
                "preferredVersion": { "groupVersion": gv, "version": "v1" },
            })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

fn resource_list(group_version: &str) -> Value {
    let mut resources: Vec<Value> = Vec::new();
    for k in Kind::ALL.into_iter().filter(|k| k.api_version() == group_version) {
        let verbs = match k {
            Kind::Event => json!(["create", "get", "list", "patch", "watch"]),
            Kind::Lease => json!(["create", "get", "list", "update", "watch"]),
            _ => json!(["get", "list", "watch"]),
        };
        resources.push(json!({
            "name": k.plural(),
            "singularName": k.kind().to_lowercase(),
            "namespaced": k.namespaced(),
            "kind": k.kind(),
            "verbs": verbs,
            "shortNames": k.short_names(),
        }));
        if k == Kind::Service {
            resources.push(json!({
                "name": "services/proxy",
                "singularName": "",
                "namespaced": true,
                "kind": "ServiceProxyOptions",
                "verbs": ["create", "delete", "get", "patch", "update"],
            }));
        }
        if k == Kind::Node {
            resources.push(json!({
                "name": "nodes/status",
                "singularName": "",
                "namespaced": false,
                "kind": "Node",
                "verbs": ["get", "patch"],
            }));
        }
    }
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources })
}
