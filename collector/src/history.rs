//! What the diagnosis said over time: when each finding now listed was first and last seen,
//! and a bounded timeline of findings appearing and clearing, newest first — so "since when is
//! node-3 losing packets" has an answer without Prometheus (which stays the long-term store).
//! In memory: a restarted collector starts a new timeline.

use std::collections::{HashMap, VecDeque};

use netdiag_model::UnixMillis;
use netdiag_model::finding::{Culprit, Finding};

use crate::state::finding_key;

/// Transitions kept; older ones fall off.
pub const MAX_EVENTS: usize = 1_000;

/// When a finding was first and last seen by a diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub first: UnixMillis,
    pub last: UnixMillis,
}

/// A finding appearing or clearing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Appeared,
    Cleared,
}

/// One transition, with what the finding said (its last words, for a cleared one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingEvent {
    /// Numbers transitions from 1 in the order they happened ([`FindingHistory::since`]).
    pub seq: u64,
    pub at: UnixMillis,
    pub transition: Transition,
    /// [`finding_key`]: `<id> <culprit>`.
    pub key: String,
    pub id: String,
    pub verdict: String,
    /// What the finding blames.
    pub culprit: Option<Culprit>,
    /// When the finding appeared (the same as `at` for an appearance).
    pub first_seen: UnixMillis,
}

/// What the history keeps of a listed finding.
#[derive(Debug)]
struct Active {
    seen: Seen,
    id: String,
    verdict: String,
    culprit: Option<Culprit>,
}

/// The findings listed now with when they were first seen, and the timeline.
#[derive(Debug, Default)]
pub struct FindingHistory {
    /// Per listed finding: when seen, and its latest verdict (for the clearing event).
    active: HashMap<String, Active>,
    events: VecDeque<FindingEvent>,
    /// The latest transition's `seq`.
    seq: u64,
    /// The time of the latest diagnosis recorded.
    latest: Option<UnixMillis>,
}

impl FindingHistory {
    /// Records the findings of a diagnosis made at `at`: new ones appear, missing ones clear.
    /// A diagnosis older than the latest one recorded changes nothing.
    pub fn observe(&mut self, findings: &[Finding], at: UnixMillis) {
        if self.latest.is_some_and(|l| l > at) {
            return;
        }
        self.latest = Some(at);
        let mut listed: HashMap<String, &Finding> = HashMap::with_capacity(findings.len());
        for f in findings {
            listed.insert(finding_key(f), f);
        }
        // Sorted, so transitions of one diagnosis are numbered in a stable order.
        let mut gone: Vec<String> =
            self.active.keys().filter(|k| !listed.contains_key(*k)).cloned().collect();
        gone.sort();
        for key in gone {
            if let Some(a) = self.active.remove(&key) {
                self.push(FindingEvent {
                    seq: 0,
                    at,
                    transition: Transition::Cleared,
                    key,
                    id: a.id,
                    verdict: a.verdict,
                    culprit: a.culprit,
                    first_seen: a.seen.first,
                });
            }
        }
        let mut listed: Vec<(String, &Finding)> = listed.into_iter().collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, f) in listed {
            let verdict = f.verdict.as_str().to_owned();
            match self.active.get_mut(&key) {
                Some(a) => {
                    a.seen.last = at;
                    a.verdict = verdict;
                }
                None => {
                    let id = f.id.as_str().to_owned();
                    self.push(FindingEvent {
                        seq: 0,
                        at,
                        transition: Transition::Appeared,
                        key: key.clone(),
                        id: id.clone(),
                        verdict: verdict.clone(),
                        culprit: f.culprit.clone(),
                        first_seen: at,
                    });
                    let seen = Seen { first: at, last: at };
                    self.active.insert(key, Active { seen, id, verdict, culprit: f.culprit.clone() });
                }
            }
        }
    }

    fn push(&mut self, mut event: FindingEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_back();
        }
        self.seq += 1;
        event.seq = self.seq;
        self.events.push_front(event);
    }

    /// When the finding with `key` was first and last seen, while it is listed.
    pub fn seen(&self, key: &str) -> Option<Seen> {
        self.active.get(key).map(|a| a.seen)
    }

    /// The transitions after `seq`, oldest first (those still kept: at most [`MAX_EVENTS`]).
    pub fn since(&self, seq: u64) -> Vec<FindingEvent> {
        let mut out: Vec<FindingEvent> = self.events.iter().take_while(|e| e.seq > seq).cloned().collect();
        out.reverse();
        out
    }

    /// Up to `limit` transitions, newest first.
    pub fn events(&self, limit: usize) -> Vec<FindingEvent> {
        self.events.iter().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use netdiag_model::finding::{Culprit, CulpritKind, FindingId, Severity};
    use netdiag_model::text::Text;

    use super::*;

    fn at(s: i64) -> UnixMillis {
        UnixMillis::new(1_700_000_000_000 + s * 1000).unwrap()
    }

    fn finding(id: &str, culprit: &str, verdict: &str) -> Finding {
        Finding {
            id: FindingId::new(id).unwrap(),
            severity: Severity::Critical,
            verdict: Text::lossy(verdict),
            culprit: Some(Culprit { kind: CulpritKind::Node, name: Text::lossy(culprit) }),
            affected: vec![],
            evidence: vec![],
            runbook: None,
            suggestion: Text::default(),
        }
    }

    #[test]
    fn findings_appear_stay_and_clear_newest_first() {
        let mut h = FindingHistory::default();
        let loss = finding("node-packet-loss", "node-3", "30% lost");
        let cut = finding("node-isolated", "node-2", "cut off");
        h.observe(std::slice::from_ref(&loss), at(0));
        h.observe(&[finding("node-packet-loss", "node-3", "31% lost"), cut.clone()], at(5));
        let key = finding_key(&loss);
        assert_eq!(
            h.seen(&key),
            Some(Seen { first: at(0), last: at(5) }),
            "the same finding, its words updated"
        );
        h.observe(std::slice::from_ref(&cut), at(10));
        assert_eq!(h.seen(&key), None);
        let events = h.events(10);
        let summary: Vec<(Transition, &str, i64)> =
            events.iter().map(|e| (e.transition, e.id.as_str(), (e.at.get() - at(0).get()) / 1000)).collect();
        assert_eq!(
            summary,
            vec![
                (Transition::Cleared, "node-packet-loss", 10),
                (Transition::Appeared, "node-isolated", 5),
                (Transition::Appeared, "node-packet-loss", 0),
            ]
        );
        assert_eq!(events[0].first_seen, at(0));
        assert_eq!(events[0].verdict, "31% lost", "a cleared finding's last words");
        assert_eq!(events[0].culprit, loss.culprit, "and its culprit");
        let seqs: Vec<u64> = h.since(1).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3], "after the first, oldest first");
        assert!(h.since(3).is_empty());
        // A diagnosis older than the latest one changes nothing.
        h.observe(&[], at(7));
        assert!(h.seen(&finding_key(&cut)).is_some());
        assert_eq!(h.events(1).len(), 1);
    }

    #[test]
    fn the_timeline_is_bounded() {
        let mut h = FindingHistory::default();
        let f = finding("pod-down", "tidb/demo-pd-0", "down");
        for i in 0..(MAX_EVENTS as i64) {
            h.observe(std::slice::from_ref(&f), at(2 * i));
            h.observe(&[], at(2 * i + 1));
        }
        let events = h.events(usize::MAX);
        assert_eq!(events.len(), MAX_EVENTS);
        assert_eq!(events[0].transition, Transition::Cleared);
        assert_eq!(events[0].at, at(2 * MAX_EVENTS as i64 - 1));
    }
}
