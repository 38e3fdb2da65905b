//! What the collector should write to the Kubernetes API, pure: from the current findings, the
//! finding transitions ([`crate::history`]) and `now`, the `NetdiagNetwork` condition each node
//! should carry and the Events to create or bump. The writer ([`super`]) does the I/O and tells
//! the [`Reporter`] what was written, so a failed write is planned again next round.
//!
//! Who is blamed ([`objects`]): a `node` culprit is that Node; a `node_pair` (`a↔b`, `a→b`)
//! both Nodes; a `pod` (`ns/name`) and a `port` (`ns/name:port`) the Pod; a `service`
//! (`ns/name`) the Service. `dns` and `path` culprits name no single object (the cluster DNS as
//! a whole, a service seen from one node): no condition and no Event — they stay in netdiag's
//! own API, UI and metrics. Conditions are set on Nodes only.
//!
//! Conditions: a blamed node gets `status: True`, the reason of its most severe finding (the
//! diagnosis lists them most severe first) and that verdict (others named after it); a node
//! it no longer blames (or one found carrying the condition when the collector started, once
//! [`ReportConfig::inherited_grace`] has passed, so a restart does not flap it) gets `False`,
//! `NetworkOk`. Nodes never blamed are not touched. A write happens only when status, reason or
//! the other findings named change, or the verdict's words do and the last write is
//! [`ReportConfig::message_refresh`] old.
//!
//! Events (core/v1, what `kubectl describe` lists): one per transition per blamed object —
//! `Warning` when a finding appears, `Normal` when it clears, reason the finding id. A series
//! is keyed by (object, finding, transition): its repeats (the finding flapping) bump `count`
//! and `lastTimestamp` of the same Event, as client-go's correlator does. Each object has a
//! token bucket ([`ReportConfig::burst`], one token per [`ReportConfig::refill`], client-go's
//! spam filter defaults): events beyond it are dropped and counted.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, NodeCondition, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use netdiag_model::UnixMillis;
use netdiag_model::finding::{Culprit, CulpritKind, Finding};

use crate::history::{FindingEvent, Transition};

/// The node condition's type.
pub const CONDITION_TYPE: &str = "NetdiagNetwork";
/// The reason of a cleared condition (as Node Problem Detector's `…Ok` reasons).
pub const REASON_OK: &str = "NetworkOk";
/// The message of a cleared condition.
pub const MESSAGE_OK: &str = "no netdiag finding blames this node";
/// The Events' `source.component` and `reportingComponent`.
pub const COMPONENT: &str = "netdiag-collector";
/// Where Events about Nodes (cluster-scoped) live, as the kubelet's do.
pub const NODE_EVENTS_NAMESPACE: &str = "default";

/// The kinds of object a finding can blame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Node,
    Pod,
    Service,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Node => "Node",
            ObjectKind::Pod => "Pod",
            ObjectKind::Service => "Service",
        }
    }
}

/// An object a finding blames: a Node (no namespace), a Pod or a Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: ObjectKind,
    /// Empty for Nodes.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    fn node(name: &str) -> Self {
        ObjectKey { kind: ObjectKind::Node, namespace: String::new(), name: name.to_owned() }
    }

    /// The namespace its Events are created in.
    pub fn events_namespace(&self) -> &str {
        if self.kind == ObjectKind::Node { NODE_EVENTS_NAMESPACE } else { &self.namespace }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ObjectKind::Node => write!(f, "node/{}", self.name),
            k => write!(f, "{}/{}/{}", k.as_str().to_lowercase(), self.namespace, self.name),
        }
    }
}

fn namespaced(kind: ObjectKind, s: &str) -> Option<ObjectKey> {
    // A culprit may qualify its object (`ns/pod from namespace other`): the object is the first
    // word; with the rest its name is no valid object name, and no valid request path.
    let (ns, name) = s.split_whitespace().next()?.split_once('/')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains('/')).then(|| ObjectKey {
        kind,
        namespace: ns.to_owned(),
        name: name.to_owned(),
    })
}

/// The objects a culprit names (see the module's doc); none for `dns`, `path` and
/// `network_policy`.
pub fn objects(culprit: &Culprit) -> Vec<ObjectKey> {
    let name = culprit.name.as_str();
    match culprit.kind {
        CulpritKind::Node => vec![ObjectKey::node(name)],
        CulpritKind::NodePair => {
            name.split(['↔', '→']).filter(|n| !n.is_empty()).map(ObjectKey::node).collect()
        }
        CulpritKind::Pod => namespaced(ObjectKind::Pod, name).into_iter().collect(),
        CulpritKind::Port => {
            name.rsplit_once(':').and_then(|(pod, _)| namespaced(ObjectKind::Pod, pod)).into_iter().collect()
        }
        CulpritKind::Service => namespaced(ObjectKind::Service, name).into_iter().collect(),
        // A NetworkPolicy left unenforced is told on the node that ignores it (a `node`
        // culprit) or in netdiag's own API when no node is to blame.
        CulpritKind::Dns | CulpritKind::Path | CulpritKind::NetworkPolicy => vec![],
    }
}

/// Tunables; [`Default`] is what the collector runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportConfig {
    /// Events an object may get at once.
    pub burst: u32,
    /// One more event allowed per this long.
    pub refill: Duration,
    /// A condition whose status and reason are unchanged is rewritten for a new message at most
    /// this often.
    pub message_refresh: Duration,
    /// How long after start conditions found on nodes are left alone before being cleared.
    pub inherited_grace: Duration,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            burst: 25,
            refill: Duration::from_secs(300),
            message_refresh: Duration::from_secs(60),
            inherited_grace: Duration::from_secs(60),
        }
    }
}

/// A condition as the collector wants it (or knows it written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub status: bool,
    pub reason: String,
    pub message: String,
    pub last_transition: UnixMillis,
    /// When it was written (the heartbeat).
    pub written: UnixMillis,
}

impl Condition {
    /// The API object.
    pub fn to_api(&self) -> NodeCondition {
        NodeCondition {
            type_: CONDITION_TYPE.to_owned(),
            status: if self.status { "True" } else { "False" }.to_owned(),
            reason: Some(self.reason.clone()),
            message: Some(self.message.clone()),
            last_transition_time: Some(time(self.last_transition)),
            last_heartbeat_time: Some(time(self.written)),
        }
    }

    /// What a condition read from a Node says, if it is netdiag's.
    pub fn from_api(c: &NodeCondition, now: UnixMillis) -> Option<Condition> {
        (c.type_ == CONDITION_TYPE).then(|| Condition {
            status: c.status == "True",
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
            last_transition: c.last_transition_time.as_ref().map_or(now, |t| millis(t, now)),
            written: c.last_heartbeat_time.as_ref().map_or(now, |t| millis(t, now)),
        })
    }
}

/// The findings a condition's message names besides its reason: `(also: a, b)`.
fn also(message: &str) -> Option<&str> {
    message.rsplit_once(" (also: ").map(|(_, rest)| rest)
}

/// A Kubernetes time from milliseconds.
pub fn time(t: UnixMillis) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_millisecond(t.get())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

fn millis(t: &Time, otherwise: UnixMillis) -> UnixMillis {
    UnixMillis::new(t.0.as_millisecond()).unwrap_or(otherwise)
}

/// A condition to write on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionWrite {
    pub node: String,
    pub condition: Condition,
}

/// Which Event series an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub object: ObjectKey,
    /// The finding's key (`<id> <culprit>`).
    pub finding: String,
    pub cleared: bool,
}

/// An Event to create, or (a repeat) to bump.
#[derive(Debug, Clone, PartialEq)]
pub struct EventWrite {
    pub series: SeriesKey,
    /// The whole Event as it should stand after the write; `involved_object.uid` is left for
    /// the writer, who reads it from the API.
    pub event: Event,
    /// A repeat: PATCH `count`, `lastTimestamp` and `message` of the existing Event.
    pub repeat: bool,
}

impl EventWrite {
    /// The merge patch a repeat sends.
    pub fn bump(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.event.count,
            "lastTimestamp": self.event.last_timestamp,
            "message": self.event.message,
        })
    }
}

/// One round's writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub conditions: Vec<ConditionWrite>,
    pub events: Vec<EventWrite>,
    /// Events dropped by the rate limit this round.
    pub suppressed: Vec<SeriesKey>,
}

#[derive(Debug, Clone)]
struct Series {
    name: String,
    count: i32,
    first: UnixMillis,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: UnixMillis,
}

/// What has been written, and the event series and rate limits: the state between rounds.
#[derive(Debug)]
pub struct Reporter {
    config: ReportConfig,
    started: UnixMillis,
    /// Per node: the condition known to be on it.
    written: BTreeMap<String, Condition>,
    series: HashMap<SeriesKey, Series>,
    buckets: HashMap<ObjectKey, Bucket>,
    names: u64,
    /// The last finding transition handled.
    pub seq: u64,
}

impl Reporter {
    pub fn new(config: ReportConfig, started: UnixMillis) -> Self {
        Reporter {
            config,
            started,
            written: BTreeMap::new(),
            series: HashMap::new(),
            buckets: HashMap::new(),
            names: 0,
            seq: 0,
        }
    }

    /// A condition found on `node` (read at start, or after a write that was refused).
    pub fn known(&mut self, node: &str, condition: Condition) {
        self.written.insert(node.to_owned(), condition);
    }

    /// `write` reached the API.
    pub fn condition_written(&mut self, write: &ConditionWrite) {
        self.written.insert(write.node.clone(), write.condition.clone());
    }

    /// The node is gone: nothing more to write there.
    pub fn forget_node(&mut self, node: &str) {
        self.written.remove(node);
    }

    /// The event could not be written: its series starts afresh next time.
    pub fn event_failed(&mut self, series: &SeriesKey) {
        self.series.remove(series);
    }

    /// The condition known on `node`.
    pub fn condition(&self, node: &str) -> Option<&Condition> {
        self.written.get(node)
    }

    /// What to write now: the conditions `findings` call for, and an Event per transition in
    /// `transitions` (oldest first; those at or below [`Reporter::seq`] are skipped).
    pub fn plan(&mut self, findings: &[Finding], transitions: &[FindingEvent], now: UnixMillis) -> Plan {
        let mut plan = Plan { conditions: self.conditions(findings, now), ..Plan::default() };
        let handled = self.seq;
        for t in transitions.iter().filter(|t| t.seq > handled) {
            self.seq = t.seq;
            let Some(culprit) = &t.culprit else { continue };
            for object in objects(culprit) {
                let series = SeriesKey {
                    object: object.clone(),
                    finding: t.key.clone(),
                    cleared: t.transition == Transition::Cleared,
                };
                if !self.take_token(&object, now) {
                    plan.suppressed.push(series);
                    continue;
                }
                plan.events.push(self.event(series, t, now));
            }
        }
        plan
    }

    fn conditions(&self, findings: &[Finding], now: UnixMillis) -> Vec<ConditionWrite> {
        // Per blamed node, its findings' ids and verdicts, most severe first.
        let mut blamed: BTreeMap<String, Vec<(&str, &str)>> = BTreeMap::new();
        for f in findings {
            for o in f.culprit.iter().flat_map(objects).filter(|o| o.kind == ObjectKind::Node) {
                let list = blamed.entry(o.name).or_default();
                if !list.iter().any(|(id, _)| *id == f.id.as_str()) {
                    list.push((f.id.as_str(), f.verdict.as_str()));
                }
            }
        }
        let in_grace = now.since(self.started) < self.config.inherited_grace;
        let mut out = Vec::new();
        let nodes: std::collections::BTreeSet<&String> = blamed.keys().chain(self.written.keys()).collect();
        for node in nodes {
            let (status, reason, message) = match blamed.get(node) {
                Some(list) => {
                    let (id, verdict) = list[0];
                    let mut message = verdict.to_owned();
                    if list.len() > 1 {
                        let others: Vec<&str> = list[1..].iter().map(|(id, _)| *id).collect();
                        message.push_str(&format!(" (also: {})", others.join(", ")));
                    }
                    (true, id.to_owned(), message)
                }
                None => (false, REASON_OK.to_owned(), MESSAGE_OK.to_owned()),
            };
            let known = self.written.get(node);
            if let Some(k) = known {
                // The same findings (reason, and the others named) with new words wait; other
                // findings are written at once.
                let same_state =
                    k.status == status && k.reason == reason && also(&k.message) == also(&message);
                if same_state && (k.message == message || now.since(k.written) < self.config.message_refresh)
                {
                    continue;
                }
                // Found at start, blamed by nothing yet: the agents may not have reported.
                if !status && in_grace && k.written < self.started {
                    continue;
                }
            }
            let last_transition = match known {
                Some(k) if k.status == status => k.last_transition,
                _ => now,
            };
            out.push(ConditionWrite {
                node: node.clone(),
                condition: Condition { status, reason, message, last_transition, written: now },
            });
        }
        out
    }

    fn take_token(&mut self, object: &ObjectKey, now: UnixMillis) -> bool {
        let burst = f64::from(self.config.burst);
        let b = self.buckets.entry(object.clone()).or_insert(Bucket { tokens: burst, at: now });
        let refill = self.config.refill.as_secs_f64().max(f64::MIN_POSITIVE);
        b.tokens = (b.tokens + now.since(b.at).as_secs_f64() / refill).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn event(&mut self, key: SeriesKey, t: &FindingEvent, now: UnixMillis) -> EventWrite {
        let repeat = self.series.contains_key(&key);
        let series = self.series.entry(key.clone()).or_insert_with(|| {
            self.names += 1;
            // As client-go names them (`<object>.<time in hex>`), within a name's 253 bytes.
            let object: String = key.object.name.chars().take(230).collect();
            Series { name: format!("{object}.{:x}{:04x}", now.get(), self.names), count: 0, first: now }
        });
        series.count = series.count.saturating_add(1);
        let message = if key.cleared {
            let lasted = t.at.since(t.first_seen).as_secs();
            format!("cleared after {lasted}s: {}", t.verdict)
        } else {
            t.verdict.clone()
        };
        let object = &key.object;
        let event = Event {
            metadata: ObjectMeta {
                name: Some(series.name.clone()),
                namespace: Some(object.events_namespace().to_owned()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some(object.kind.as_str().to_owned()),
                name: Some(object.name.clone()),
                namespace: (object.kind != ObjectKind::Node).then(|| object.namespace.clone()),
                ..ObjectReference::default()
            },
            reason: Some(t.id.clone()),
            message: Some(message),
            type_: Some(if key.cleared { "Normal" } else { "Warning" }.to_owned()),
            count: Some(series.count),
            first_timestamp: Some(time(series.first)),
            last_timestamp: Some(time(now)),
            source: Some(EventSource { component: Some(COMPONENT.to_owned()), host: None }),
            reporting_component: Some(COMPONENT.to_owned()),
            ..Event::default()
        };
        EventWrite { series: key, event, repeat }
    }
}

#[cfg(test)]
mod tests;
