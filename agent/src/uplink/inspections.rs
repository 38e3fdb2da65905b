//! The latest inspection report of every live source, and which of them the current session
//! has not carried yet. A new session carries them all: agents send a report only when it
//! changes, so a collector that restarted (or another replica) would otherwise never learn
//! the NAT rules and routes behind its verdicts until something changed on the node.

use std::collections::{BTreeMap, BTreeSet};

use netdiag_model::inspect::InspectionReport;
use netdiag_model::probe::Source;

/// Bounded by the node's sources: a gone source is forgotten ([`Inspections::forget`]).
#[derive(Debug, Default)]
pub(crate) struct Inspections {
    latest: BTreeMap<Source, InspectionReport>,
    unsent: BTreeSet<Source>,
}

impl Inspections {
    /// A newer report for its source, to be sent.
    pub(crate) fn update(&mut self, report: InspectionReport) {
        self.unsent.insert(report.source.clone());
        self.latest.insert(report.source.clone(), report);
    }

    /// Sources that are gone: nothing of theirs is sent again.
    pub(crate) fn forget(&mut self, gone: &[Source]) {
        for s in gone {
            self.latest.remove(s);
            self.unsent.remove(s);
        }
    }

    /// A new session: every latest report is to be sent on it.
    pub(crate) fn new_session(&mut self) {
        self.unsent = self.latest.keys().cloned().collect();
    }

    /// The reports still to send, oldest source first; each one is marked sent only through
    /// [`Inspections::sent`].
    pub(crate) fn pending(&self) -> impl Iterator<Item = &InspectionReport> + '_ {
        self.unsent.iter().filter_map(|s| self.latest.get(s))
    }

    pub(crate) fn sent(&mut self, source: &Source) {
        self.unsent.remove(source);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.latest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(source: &str, at: i64) -> InspectionReport {
        let source = if let Some(n) = source.strip_prefix("node/") {
            serde_json::json!({"node": n})
        } else {
            serde_json::json!({"pod": source})
        };
        serde_json::from_value(serde_json::json!({
            "source": source, "at": 1_700_000_000_000i64 + at, "links": [], "routes": [], "neighbours": [],
            "nat_services": [], "sysctls": [], "resolv_conf": null, "proxy_mode": null, "errors": [],
        }))
        .unwrap()
    }

    fn pending(i: &Inspections) -> Vec<String> {
        i.pending().map(|r| format!("{}@{}", r.source, r.at.get() - 1_700_000_000_000)).collect()
    }

    #[test]
    fn every_new_session_carries_the_latest_report_of_every_live_source() {
        let mut i = Inspections::default();
        i.update(report("node/node-1", 1));
        i.update(report("tidb/demo-pd-0", 1));
        i.update(report("tidb/demo-pd-0", 2));
        let mut now = pending(&i);
        now.sort();
        assert_eq!(now.len(), 2, "{now:?}");
        assert!(
            now.iter().any(|p| p.ends_with("demo-pd-0@2")),
            "the newer report replaces the older: {now:?}"
        );
        let sources: Vec<Source> = i.pending().map(|r| r.source.clone()).collect();
        for s in &sources {
            i.sent(s);
        }
        assert!(pending(&i).is_empty(), "sent once per session");
        i.new_session();
        assert_eq!(pending(&i).len(), 2, "a new session (a restarted collector) gets them all again");
        i.forget(&[sources[0].clone()]);
        i.new_session();
        assert_eq!(pending(&i).len(), 1, "a gone source is never sent again");
        assert_eq!(i.len(), 1);
    }
}
