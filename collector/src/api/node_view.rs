//! The node-level matrix as the API serves it: one snapshot of every node-level cell shared by
//! every reader, its JSON rendered once per `kind` asked. At 5 000 nodes the level holds about
//! 140 000 cells (tens of MB of JSON, a second or more to walk and render): walking it for
//! each request is what made the answer take seconds, and a UI polling it kept a core busy.
//!
//! A snapshot is served while it is younger than [`FRESH_FACTOR`] times what it took to make,
//! at most [`MAX_FRESH`] (so making them takes about a tenth of a core at most however often
//! the level is read, the rule the diagnosis follows too), with the answer for every kind
//! rendered before it is served. Past that, when it took more than [`SLOW`], readers get it
//! while one background thread makes the next (stale while revalidating, up to
//! [`SERVE_STALE_FOR`]); a cheap one is just made again. `generated_unix_ms` says when.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use netdiag_model::matrix::{MatrixLevel, MatrixQuery};
use netdiag_model::probe::ProbeKind;
use serde::Serialize;

use super::params::MatrixParams;
use super::v1::{KindFilter, Level, MatrixCell, MatrixResponse};
use crate::state::{CollectorState, now};

/// A snapshot is fresh for this many times as long as it took to make.
pub(super) const FRESH_FACTOR: u32 = 10;
/// A snapshot that took longer than this is served stale while the next one is made.
pub(super) const SLOW: Duration = Duration::from_millis(20);
/// A snapshot is fresh for at most this long, however long it took.
pub(super) const MAX_FRESH: Duration = Duration::from_secs(30);
/// Never served older than this: past it a reader makes a new one itself.
pub(super) const SERVE_STALE_FOR: Duration = Duration::from_secs(60);

/// One snapshot of the node level, and its JSON per kind asked.
#[derive(Debug)]
pub(super) struct NodeSnapshot {
    made: Instant,
    took: Duration,
    generated_unix_ms: i64,
    /// Every kind, in the matrix's order.
    cells: Vec<MatrixCell>,
    bodies: Mutex<HashMap<Option<ProbeKind>, Bytes>>,
}

/// [`MatrixResponse`]'s JSON over borrowed cells (the same fields; a test holds them equal).
#[derive(Serialize)]
struct Body<'a> {
    level: Level,
    kind: KindFilter,
    cells: Vec<&'a MatrixCell>,
    generated_unix_ms: i64,
}

fn wanted(kind: Option<ProbeKind>, c: &MatrixCell) -> bool {
    kind.is_none_or(|k| c.kind == k.into())
}

impl NodeSnapshot {
    fn make(state: &CollectorState) -> Self {
        let started = Instant::now();
        let query = MatrixQuery { level: MatrixLevel::Node, kind: None };
        let snapshot = state.matrix(&query, now());
        let generated_unix_ms = snapshot.generated_at.get();
        let cells = snapshot.cells.into_iter().map(MatrixCell::from).collect();
        NodeSnapshot {
            made: started,
            took: started.elapsed(),
            generated_unix_ms,
            cells,
            bodies: Mutex::default(),
        }
    }

    /// The whole level's answer for `kind`, rendered on first use.
    pub(super) fn body(&self, kind: Option<ProbeKind>) -> Bytes {
        if let Some(b) = self.bodies.lock().ok().and_then(|b| b.get(&kind).cloned()) {
            return b;
        }
        let body = Body {
            level: Level::Node,
            kind: kind.into(),
            cells: self.cells.iter().filter(|c| wanted(kind, c)).collect(),
            generated_unix_ms: self.generated_unix_ms,
        };
        // Plain data: serializing it cannot fail.
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        if let Ok(mut bodies) = self.bodies.lock() {
            bodies.insert(kind, bytes.clone());
        }
        bytes
    }

    /// The cells `params` keeps (its kind, node and status).
    pub(super) fn filtered(&self, params: &MatrixParams) -> MatrixResponse {
        let kind = params.query.kind;
        MatrixResponse {
            level: Level::Node,
            kind: kind.into(),
            cells: self.cells.iter().filter(|c| wanted(kind, c) && params.keeps(c)).cloned().collect(),
            generated_unix_ms: self.generated_unix_ms,
        }
    }

    fn fresh(&self) -> bool {
        self.made.elapsed() < self.took.saturating_mul(FRESH_FACTOR).min(MAX_FRESH)
    }
}

/// The latest node-level snapshot, shared by the API's readers.
#[derive(Debug, Default)]
pub(super) struct NodeView {
    latest: Mutex<Option<Arc<NodeSnapshot>>>,
    making: AtomicBool,
}

impl NodeView {
    /// The snapshot to answer from now (see the module's header).
    pub(super) fn get(self: &Arc<Self>, state: &Arc<CollectorState>) -> Arc<NodeSnapshot> {
        let latest = self.latest.lock().ok().and_then(|l| l.clone());
        match latest {
            Some(s) if s.fresh() => s,
            Some(s) if s.took > SLOW && s.made.elapsed() < SERVE_STALE_FOR => {
                self.make_in_background(state);
                s
            }
            _ => self.make(state),
        }
    }

    fn make(&self, state: &CollectorState) -> Arc<NodeSnapshot> {
        let made = Arc::new(NodeSnapshot::make(state));
        // The answer every kind asks for, rendered before readers see the snapshot.
        made.body(None);
        tracing::debug!(took_ms = made.took.as_millis() as u64, cells = made.cells.len(), "node view made");
        if let Ok(mut l) = self.latest.lock() {
            *l = Some(made.clone());
        }
        made
    }

    fn make_in_background(self: &Arc<Self>, state: &Arc<CollectorState>) {
        if self.making.swap(true, Ordering::AcqRel) {
            return;
        }
        let (view, state) = (self.clone(), state.clone());
        let spawned = std::thread::Builder::new().name("node-view".into()).spawn(move || {
            view.make(&state);
            view.making.store(false, Ordering::Release);
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a thread to refresh the node-level matrix; readers make it");
            self.making.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_body_is_the_responses_json() {
        let cell: MatrixCell = serde_json::from_value(serde_json::json!({
            "source": "node-1", "destination": "node-2", "kind": "icmp", "status": "ok",
            "loss_ratio": 0.0, "rtt_p50_ms": 1.0, "rtt_p99_ms": 2.0, "last_error": null,
            "samples": 3, "last_update_unix_ms": 5, "claimed_by": null,
        }))
        .unwrap();
        let snapshot = NodeSnapshot {
            made: Instant::now(),
            took: Duration::ZERO,
            generated_unix_ms: 7,
            cells: vec![cell.clone()],
            bodies: Mutex::default(),
        };
        let response = MatrixResponse {
            level: Level::Node,
            kind: KindFilter::All,
            cells: vec![cell],
            generated_unix_ms: 7,
        };
        let body: serde_json::Value = serde_json::from_slice(&snapshot.body(None)).unwrap();
        assert_eq!(body, serde_json::to_value(&response).unwrap());
        let tcp: serde_json::Value = serde_json::from_slice(&snapshot.body(Some(ProbeKind::Tcp))).unwrap();
        assert_eq!(tcp["cells"], serde_json::json!([]));
        assert_eq!(tcp["kind"], "tcp");
        assert!(!snapshot.fresh(), "a snapshot that took nothing is made again");
    }
}
