//! The fake API server's state, with no I/O: the objects of each kind, one resource version
//! counter for all of them (as etcd's revision), the event history a watch resumes from, the
//! floor below which a resumed watch is told `410 Gone`, and the open watches, each fed through
//! its own channel so events and bookmarks reach it in resource-version order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

/// The resources the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    Service,
    EndpointSlice,
    Node,
    Namespace,
    NetworkPolicy,
    /// core/v1 Events: created and patched by clients (the collector's reports), listed by
    /// `kubectl describe`.
    Event,
    /// coordination.k8s.io/v1 Leases: created and replaced by clients (the collector replicas'
    /// writer election), with the API server's optimistic concurrency.
    Lease,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Node,
        Kind::Namespace,
        Kind::NetworkPolicy,
        Kind::Event,
        Kind::Lease,
    ];
    /// The kinds the collector's Kubernetes inventory lists and watches.
    pub const INVENTORY: [Kind; 6] =
        [Kind::Pod, Kind::Service, Kind::EndpointSlice, Kind::Node, Kind::Namespace, Kind::NetworkPolicy];

    pub fn kind(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Node => "Node",
            Kind::Event => "Event",
            Kind::Namespace => "Namespace",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::Lease => "Lease",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::NetworkPolicy => "networking.k8s.io/v1",
            Kind::Lease => "coordination.k8s.io/v1",
            _ => "v1",
        }
    }

    /// kubectl's short names (`kubectl get netpol`), from discovery.
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Pod => &["po"],
            Kind::Service => &["svc"],
            Kind::EndpointSlice => &[],
            Kind::Node => &["no"],
            Kind::Namespace => &["ns"],
            Kind::NetworkPolicy => &["netpol"],
            Kind::Event => &["ev"],
            Kind::Lease => &[],
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::Node => "nodes",
            Kind::Event => "events",
            Kind::Namespace => "namespaces",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::Lease => "leases",
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Kind::Node | Kind::Namespace)
    }

    /// The kind a `Kind` string names (`Pod`, `Service`, `EndpointSlice`, `Node`).
    pub fn from_kind(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.kind() == kind)
    }

    /// The kind served at `<api_version>/<plural>`.
    pub(crate) fn from_path(api_version: &str, plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.api_version() == api_version && k.plural() == plural)
    }
}

/// One selector term: `key=value`, `key==value` or `key!=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Term {
    pub key: String,
    pub value: String,
    /// `!=`: the key differs from (or, for labels, lacks) the value.
    pub negated: bool,
}

/// What a list or watch asked for: a namespace and equality/inequality selectors.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub namespace: Option<String>,
    /// Label requirements.
    pub labels: Vec<Term>,
    /// `a.b.c` field requirements.
    pub fields: Vec<Term>,
}

impl Filter {
    /// Parses `labelSelector`/`fieldSelector` terms (`a=b,c==d,e!=f`); anything else (set
    /// selectors, `exists`) is refused rather than ignored, so a test never sees a silently
    /// unfiltered answer.
    pub(crate) fn parse(
        namespace: Option<String>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Self, String> {
        fn terms(s: Option<&str>, what: &str) -> Result<Vec<Term>, String> {
            let Some(s) = s.filter(|s| !s.is_empty()) else { return Ok(Vec::new()) };
            s.split(',')
                .map(|t| {
                    let refuse = || format!("the fake API server supports only = and != {what}s, not {t:?}");
                    let (key, value, negated) = if let Some((k, v)) = t.split_once("!=") {
                        (k, v, true)
                    } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                        (k, v, false)
                    } else {
                        return Err(refuse());
                    };
                    let key = key.trim();
                    if key.is_empty() || key.contains([' ', '(', ')', '!']) {
                        return Err(refuse());
                    }
                    Ok(Term { key: key.to_string(), value: value.trim().to_string(), negated })
                })
                .collect()
        }
        Ok(Filter {
            namespace,
            labels: terms(labels, "label selector")?,
            fields: terms(fields, "field selector")?,
        })
    }

    pub(crate) fn matches(&self, object: &Value) -> bool {
        let meta = &object["metadata"];
        if let Some(ns) = &self.namespace
            && meta["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        let labels_ok = self
            .labels
            .iter()
            .all(|t| (meta["labels"][&t.key].as_str() == Some(t.value.as_str())) != t.negated);
        let fields_ok = self.fields.iter().all(|t| {
            let field = t.key.split('.').fold(object, |o, key| &o[key]);
            let equal = match field {
                Value::String(s) => *s == t.value,
                Value::Null => t.value.is_empty(),
                other => t.value.as_str() == other.to_string().as_str(),
            };
            equal != t.negated
        });
        labels_ok && fields_ok
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
struct Event {
    kind: Kind,
    rv: u64,
    ty: EventType,
    object: Value,
}

/// One line of a watch stream: `{"type":…,"object":…}` and a newline.
pub(crate) fn watch_line(ty: &str, object: &Value) -> String {
    let mut line = json!({ "type": ty, "object": object }).to_string();
    line.push('\n');
    line
}

/// The `Status` a failed request or an `ERROR` watch event carries.
pub(crate) fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

#[derive(Debug)]
struct Watch {
    kind: Kind,
    filter: Filter,
    tx: UnboundedSender<String>,
}

/// Counters a test reads to see what the client did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lists served, per kind.
    pub lists: BTreeMap<Kind, u64>,
    /// Watches opened, per kind.
    pub watches: BTreeMap<Kind, u64>,
    /// Watches answered with `410 Gone` (`ERROR` … `Expired`).
    pub gone: u64,
    pub bookmarks: u64,
    /// Objects created by POST, per kind.
    pub creates: BTreeMap<Kind, u64>,
    /// PATCH requests answered (changing the object or not), per kind (`nodes/status` counts
    /// as Node).
    pub patches: BTreeMap<Kind, u64>,
    /// PUT requests answered (replaced, conflicting or not), per kind.
    pub replaces: BTreeMap<Kind, u64>,
}

/// A watch that may start: its id and the lines to send first.
#[derive(Debug)]
pub(crate) struct Opened {
    pub id: u64,
    pub first: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    rv: u64,
    /// Resource versions below this are compacted away: a watch from one gets `410 Gone`.
    floor: u64,
    objects: BTreeMap<Kind, BTreeMap<(String, String), Value>>,
    history: Vec<Event>,
    watches: HashMap<u64, Watch>,
    next_watch: u64,
    uids: u64,
    /// Names `generateName` completed so far.
    generated: u64,
    /// `(verb, resource)` pairs answered `403 Forbidden`, as RBAC would.
    pub forbidden: BTreeSet<(String, String)>,
    pub stats: Stats,
}

impl Store {
    pub(crate) fn new() -> Self {
        Store { rv: 1, floor: 1, ..Store::default() }
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Stores `object` (a full object with `kind`, `apiVersion` and `metadata`), as a create or
    /// an update; returns its new resource version.
    pub(crate) fn apply(&mut self, kind: Kind, mut object: Value) -> u64 {
        let namespace = if kind.namespaced() {
            let ns = object["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
            object["metadata"]["namespace"] = Value::String(ns.clone());
            ns
        } else {
            String::new()
        };
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let key = (namespace, name);
        let existing = self.objects.get(&kind).and_then(|m| m.get(&key));
        let uid = match existing.and_then(|o| o["metadata"]["uid"].as_str()) {
            Some(uid) => uid.to_string(),
            None => {
                self.uids += 1;
                format!("5f1c0c1e-0000-4000-8000-{:012x}", self.uids)
            }
        };
        let ty = if existing.is_some() { EventType::Modified } else { EventType::Added };
        self.rv += 1;
        let meta = &mut object["metadata"];
        meta["uid"] = Value::String(uid);
        meta["resourceVersion"] = Value::String(self.rv.to_string());
        if meta["creationTimestamp"].is_null() {
            meta["creationTimestamp"] = Value::String("2026-01-01T00:00:00Z".into());
        }
        self.objects.entry(kind).or_default().insert(key, object.clone());
        self.record(kind, ty, object);
        self.rv
    }

    /// Deletes an object; false if there was none.
    pub(crate) fn delete(&mut self, kind: Kind, namespace: &str, name: &str) -> bool {
        let ns = if kind.namespaced() { namespace } else { "" };
        let Some(mut object) =
            self.objects.get_mut(&kind).and_then(|m| m.remove(&(ns.to_string(), name.to_string())))
        else {
            return false;
        };
        self.rv += 1;
        object["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        self.record(kind, EventType::Deleted, object);
        true
    }

    fn record(&mut self, kind: Kind, ty: EventType, object: Value) {
        let rv = self.rv;
        self.watches.retain(|_, w| {
            w.kind != kind
                || !w.filter.matches(&object)
                || w.tx.send(watch_line(ty.as_str(), &object)).is_ok()
        });
        self.history.push(Event { kind, rv, ty, object });
    }

    pub(crate) fn all(&self, kind: Kind) -> Vec<Value> {
        self.objects.get(&kind).into_iter().flat_map(|m| m.values().cloned()).collect()
    }

    pub(crate) fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Value> {
        let ns = if kind.namespaced() { namespace } else { "" };
        self.objects.get(&kind)?.get(&(ns.to_string(), name.to_string()))
    }

    /// Creates `object` in `namespace` (`""` for cluster-scoped kinds), as a POST to the
    /// collection: `409 AlreadyExists` when the name is taken; `metadata.generateName` gets a
    /// suffix when no name is given. Returns the stored object or the failure `Status`.
    pub(crate) fn create(&mut self, kind: Kind, namespace: &str, mut object: Value) -> Result<Value, Value> {
        let invalid = |message: String| status(422, "Invalid", &message);
        if !object.is_object() || !object["metadata"].is_object() {
            return Err(status(400, "BadRequest", "the body is not an object with metadata"));
        }
        if kind.namespaced() {
            match object["metadata"]["namespace"].as_str() {
                Some(ns) if ns != namespace => {
                    return Err(status(
                        400,
                        "BadRequest",
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => object["metadata"]["namespace"] = Value::String(namespace.to_string()),
            }
        }
        if object["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            let Some(prefix) = object["metadata"]["generateName"].as_str().filter(|p| !p.is_empty()) else {
                return Err(invalid(format!("{} metadata.name: Required value", kind.kind())));
            };
            self.generated += 1;
            object["metadata"]["name"] = Value::String(format!("{prefix}{:05x}", self.generated));
        }
        if kind == Kind::Event {
            // The API server's rule for core/v1 Events: an event about a namespaced object lives
            // in that object's namespace; one about a cluster-scoped object in "" or "default".
            let involved = object["involvedObject"]["namespace"].as_str().unwrap_or_default();
            let ok = if involved.is_empty() {
                namespace.is_empty() || namespace == "default"
            } else {
                involved == namespace
            };
            if !ok {
                return Err(invalid(format!(
                    "Event involvedObject.namespace: Invalid value: {involved:?}: does not match event.namespace {namespace:?}"
                )));
            }
        }
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if self.get(kind, namespace, &name).is_some() {
            return Err(status(
                409,
                "AlreadyExists",
                &format!("{} \"{name}\" already exists", kind.plural()),
            ));
        }
        object["kind"] = Value::String(kind.kind().into());
        object["apiVersion"] = Value::String(kind.api_version().into());
        object["metadata"]["creationTimestamp"] = serde_json::to_value(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
        )
        .unwrap_or_default();
        *self.stats.creates.entry(kind).or_default() += 1;
        self.apply(kind, object);
        self.get(kind, namespace, &name)
            .cloned()
            .ok_or_else(|| status(500, "InternalError", "lost a created object"))
    }

    /// Replaces an object, as a PUT does: `404` when there is none; `409 Conflict` when the
    /// body carries a `metadata.resourceVersion` that is not the stored one (someone else wrote
    /// in between: the optimistic concurrency leader election relies on). Name, namespace and
    /// uid cannot change. Returns the stored object or the failure `Status`.
    pub(crate) fn replace(
        &mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
        mut object: Value,
    ) -> Result<Value, Value> {
        *self.stats.replaces.entry(kind).or_default() += 1;
        if !object.is_object() || !object["metadata"].is_object() {
            return Err(status(400, "BadRequest", "the body is not an object with metadata"));
        }
        if object["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(status(
                400,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            ));
        }
        let Some(current) = self.get(kind, namespace, name).cloned() else {
            return Err(status(404, "NotFound", &format!("{} \"{name}\" not found", kind.plural())));
        };
        let group = kind.api_version().split_once('/').map(|(g, _)| format!(".{g}")).unwrap_or_default();
        match object["metadata"]["resourceVersion"].as_str() {
            Some(rv) if Some(rv) != current["metadata"]["resourceVersion"].as_str() => {
                return Err(status(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {}{group} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        kind.plural()
                    ),
                ));
            }
            _ => {}
        }
        for key in ["name", "namespace", "uid", "creationTimestamp"] {
            object["metadata"][key] = current["metadata"][key].clone();
        }
        object["kind"] = Value::String(kind.kind().into());
        object["apiVersion"] = Value::String(kind.api_version().into());
        self.apply(kind, object);
        self.get(kind, namespace, name)
            .cloned()
            .ok_or_else(|| status(500, "InternalError", "lost a replaced object"))
    }

    /// Patches an object (only its `status` when `status_only`, as the `/status` subresource
    /// does): name, namespace and uid cannot change; a patch that changes nothing writes nothing
    /// (no new resource version, no watch event). Returns the object or the failure `Status`.
    pub(crate) fn patch(
        &mut self,
        kind: Kind,
        namespace: &str,
        name: &str,
        status_only: bool,
        ty: crate::patch::PatchType,
        patch: &Value,
    ) -> Result<Value, Value> {
        *self.stats.patches.entry(kind).or_default() += 1;
        let Some(current) = self.get(kind, namespace, name).cloned() else {
            return Err(status(404, "NotFound", &format!("{} \"{name}\" not found", kind.plural())));
        };
        if !patch.is_object() {
            return Err(status(400, "BadRequest", "the patch is not a JSON object"));
        }
        let mut patched = current.clone();
        match ty {
            crate::patch::PatchType::Merge => crate::patch::merge(&mut patched, patch),
            crate::patch::PatchType::Strategic => {
                crate::patch::strategic(&mut patched, patch).map_err(|e| status(400, "BadRequest", &e))?;
            }
        }
        let next = if status_only {
            let mut next = current.clone();
            next["status"] = patched["status"].take();
            next
        } else {
            for key in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
                patched["metadata"][key] = current["metadata"][key].clone();
            }
            patched["kind"] = current["kind"].clone();
            patched["apiVersion"] = current["apiVersion"].clone();
            patched
        };
        if next == current {
            return Ok(current);
        }
        self.apply(kind, next);
        self.get(kind, namespace, name)
            .cloned()
            .ok_or_else(|| status(500, "InternalError", "lost a patched object"))
    }

    /// The list's items (without `kind`/`apiVersion`, as the API server lists them) and its
    /// resource version.
    pub(crate) fn list(&mut self, kind: Kind, filter: &Filter) -> (Vec<Value>, u64) {
        *self.stats.lists.entry(kind).or_default() += 1;
        let items = self
            .objects
            .get(&kind)
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|o| filter.matches(o))
            .map(|o| {
                let mut item = o.clone();
                if let Some(map) = item.as_object_mut() {
                    map.remove("kind");
                    map.remove("apiVersion");
                }
                item
            })
            .collect();
        (items, self.rv)
    }

    /// Opens a watch from `resource_version`: "" or "0" starts with an `ADDED` for every current
    /// object; a version still in the history replays what came after it; an older one is
    /// `Err(status)`, the `410 Expired` the caller sends as an `ERROR` event.
    pub(crate) fn open_watch(
        &mut self,
        kind: Kind,
        filter: Filter,
        resource_version: &str,
        tx: UnboundedSender<String>,
    ) -> Result<Opened, Value> {
        *self.stats.watches.entry(kind).or_default() += 1;
        let first = match resource_version {
            "" | "0" => self
                .objects
                .get(&kind)
                .into_iter()
                .flat_map(|m| m.values())
                .filter(|o| filter.matches(o))
                .map(|o| watch_line("ADDED", o))
                .collect(),
            rv => {
                let from: u64 = rv.parse().map_err(|_| {
                    status(400, "BadRequest", &format!("invalid resourceVersion {rv:?}: not a number"))
                })?;
                if from < self.floor {
                    self.stats.gone += 1;
                    return Err(status(
                        410,
                        "Expired",
                        &format!("too old resource version: {from} ({})", self.floor),
                    ));
                }
                self.history
                    .iter()
                    .filter(|e| e.kind == kind && e.rv > from && filter.matches(&e.object))
                    .map(|e| watch_line(e.ty.as_str(), &e.object))
                    .collect()
            }
        };
        self.next_watch += 1;
        let id = self.next_watch;
        self.watches.insert(id, Watch { kind, filter, tx });
        Ok(Opened { id, first })
    }

    /// Queues a bookmark at the current resource version on watch `id`, behind every event
    /// already queued; false when the watch was closed.
    pub(crate) fn bookmark(&mut self, id: u64) -> bool {
        let Some(w) = self.watches.get(&id) else { return false };
        let object = json!({
            "kind": w.kind.kind(),
            "apiVersion": w.kind.api_version(),
            "metadata": { "resourceVersion": self.rv.to_string() },
        });
        if w.tx.send(watch_line("BOOKMARK", &object)).is_err() {
            self.watches.remove(&id);
            return false;
        }
        self.stats.bookmarks += 1;
        true
    }

    pub(crate) fn close_watch(&mut self, id: u64) {
        self.watches.remove(&id);
    }

    /// Ends every open watch stream (after what is already queued): clients reconnect.
    pub(crate) fn close_watches(&mut self) {
        self.watches.clear();
    }

    pub(crate) fn open_watches(&self) -> usize {
        self.watches.len()
    }

    /// Compacts the history, as etcd does: a watch resumed from any version seen so far gets
    /// `410 Gone`; then closes every watch so clients resume now.
    pub(crate) fn expire_history(&mut self) {
        self.rv += 1;
        self.floor = self.rv;
        self.history.clear();
        self.close_watches();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str) -> Value {
        json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name, "namespace": "ns", "labels": {"app": name}}, "spec": {"nodeName": node}})
    }

    #[test]
    fn versions_history_and_gone() {
        let mut s = Store::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let rv1 = s.apply(Kind::Pod, pod("a", "n1"));
        let rv2 = s.apply(Kind::Pod, pod("a", "n2"));
        assert!(rv2 > rv1);
        let (items, at) = s.list(Kind::Pod, &Filter::default());
        assert_eq!((items.len(), at), (1, rv2));
        assert!(items[0].get("kind").is_none(), "list items carry no kind");
        // Resuming from rv1 replays the modification only.
        let opened = s.open_watch(Kind::Pod, Filter::default(), &rv1.to_string(), tx.clone()).unwrap();
        assert_eq!(opened.first.len(), 1);
        assert!(opened.first[0].contains(r#""type":"MODIFIED""#), "{}", opened.first[0]);
        assert!(s.delete(Kind::Pod, "ns", "a"));
        assert!(!s.delete(Kind::Pod, "ns", "a"));
        assert!(rx.try_recv().unwrap().contains(r#""type":"DELETED""#));
        assert!(s.bookmark(opened.id));
        assert!(rx.try_recv().unwrap().contains(r#""type":"BOOKMARK""#));
        s.expire_history();
        assert_eq!(s.open_watches(), 0);
        assert!(!s.bookmark(opened.id));
        let gone = s.open_watch(Kind::Pod, Filter::default(), &rv2.to_string(), tx.clone()).unwrap_err();
        assert_eq!(gone["code"], 410);
        assert_eq!(gone["reason"], "Expired");
        let now = s.resource_version().to_string();
        assert!(s.open_watch(Kind::Pod, Filter::default(), &now, tx).is_ok());
    }

    #[test]
    fn filters_by_namespace_labels_and_fields() {
        let mut s = Store::new();
        s.apply(Kind::Pod, pod("a", "n1"));
        s.apply(Kind::Pod, pod("b", "n2"));
        let f = Filter::parse(None, None, Some("spec.nodeName=n2")).unwrap();
        assert_eq!(s.list(Kind::Pod, &f).0.len(), 1);
        let f = Filter::parse(Some("ns".into()), Some("app==a"), None).unwrap();
        assert_eq!(s.list(Kind::Pod, &f).0.len(), 1);
        let f = Filter::parse(Some("other".into()), None, None).unwrap();
        assert_eq!(s.list(Kind::Pod, &f).0.len(), 0);
        let f = Filter::parse(None, Some("app!=a"), Some("spec.nodeName!=n9")).unwrap();
        assert_eq!(s.list(Kind::Pod, &f).0.len(), 1, "b only");
        let f = Filter::parse(None, None, Some("spec.nodeName=n2,status.phase!=Failed")).unwrap();
        assert_eq!(s.list(Kind::Pod, &f).0.len(), 1, "no phase is not Failed");
        let f = Filter::parse(None, Some("missing!=x"), None).unwrap();
        assert_eq!(s.list(Kind::Pod, &f).0.len(), 2, "a label not there differs");
        assert!(Filter::parse(None, Some("app in (a)"), None).is_err());
        assert!(Filter::parse(None, Some("!app"), None).is_err());
    }

    /// A replace carrying a stale resourceVersion is refused with 409, as the API server's
    /// optimistic concurrency does; one without a version, or with the current one, goes in.
    #[test]
    fn replace_checks_the_resource_version() {
        let mut s = Store::new();
        let lease = |holder: &str, rv: Option<&str>| {
            let mut o = json!({ "metadata": { "name": "w", "namespace": "netdiag" }, "spec": { "holderIdentity": holder } });
            if let Some(rv) = rv {
                o["metadata"]["resourceVersion"] = json!(rv);
            }
            o
        };
        assert_eq!(s.replace(Kind::Lease, "netdiag", "w", lease("a", None)).unwrap_err()["code"], 404);
        let created = s.create(Kind::Lease, "netdiag", lease("a", None)).unwrap();
        let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
        let b = s.replace(Kind::Lease, "netdiag", "w", lease("b", Some(&rv))).unwrap();
        assert_eq!(b["spec"]["holderIdentity"], "b");
        assert_eq!(b["metadata"]["uid"], created["metadata"]["uid"]);
        assert_eq!(b["apiVersion"], "coordination.k8s.io/v1");
        let stale = s.replace(Kind::Lease, "netdiag", "w", lease("c", Some(&rv))).unwrap_err();
        assert_eq!(stale["code"], 409);
        assert!(stale["message"].as_str().unwrap().contains("leases.coordination.k8s.io \"w\""), "{stale}");
        assert_eq!(s.get(Kind::Lease, "netdiag", "w").unwrap()["spec"]["holderIdentity"], "b");
        assert_eq!(s.replace(Kind::Lease, "netdiag", "x", lease("c", None)).unwrap_err()["code"], 400);
    }
}
