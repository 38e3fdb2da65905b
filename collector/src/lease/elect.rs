//! The Lease protocol's decisions, pure (the algorithm of client-go's `leaderelection`): read
//! the Lease, then create it, renew it, take it over, or wait. Expiry is judged by this
//! replica's own clock — how long the holder's record has gone unchanged since this replica
//! first saw it — never by comparing `renewTime` with local time, so clock skew between nodes
//! cannot make two replicas both believe they hold it.

use std::time::{Duration, Instant};

/// What the Lease says, as far as the decision goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `spec.holderIdentity`; None or empty: released.
    pub holder: Option<String>,
    /// `spec.leaseDurationSeconds`.
    pub duration: Duration,
    /// `spec.leaseTransitions`.
    pub transitions: i32,
    /// `spec.renewTime` as written: only whether it changed matters.
    pub renewed: Option<String>,
}

/// What to write next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// No Lease yet: create it, holding it.
    Create,
    /// This replica holds it: renew.
    Renew,
    /// Released, or its holder stopped renewing for a whole lease duration: take it, with
    /// `transitions` as the new count.
    TakeOver { transitions: i32 },
    /// Another replica holds it.
    Wait { holder: String },
}

/// One replica's view of the Lease over time.
#[derive(Debug, Clone)]
pub struct Elector {
    me: String,
    /// The other holder's record as last seen (holder, renewTime), and since when it is unchanged.
    seen: Option<((String, Option<String>), Instant)>,
}

/// A lease duration below this is taken as this: a record with `0` must not let every replica
/// take over at every read.
pub const MIN_DURATION: Duration = Duration::from_secs(1);

impl Elector {
    pub fn new(me: impl Into<String>) -> Self {
        Self { me: me.into(), seen: None }
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// The next step, given the Lease as read at `now` (None: there is none).
    pub fn decide(&mut self, lease: Option<&Record>, now: Instant) -> Action {
        let Some(record) = lease else {
            self.seen = None;
            return Action::Create;
        };
        let holder = record.holder.as_deref().filter(|h| !h.is_empty());
        match holder {
            Some(h) if h == self.me => {
                self.seen = None;
                Action::Renew
            }
            None => {
                self.seen = None;
                Action::TakeOver { transitions: record.transitions.saturating_add(1) }
            }
            Some(other) => {
                let key = (other.to_owned(), record.renewed.clone());
                let since = match &self.seen {
                    Some((seen, at)) if *seen == key => *at,
                    _ => {
                        self.seen = Some((key, now));
                        now
                    }
                };
                if now.saturating_duration_since(since) >= record.duration.max(MIN_DURATION) {
                    self.seen = None;
                    Action::TakeOver { transitions: record.transitions.saturating_add(1) }
                } else {
                    Action::Wait { holder: other.to_owned() }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(by: &str, renewed: &str) -> Record {
        Record {
            holder: Some(by.into()),
            duration: Duration::from_secs(15),
            transitions: 3,
            renewed: Some(renewed.into()),
        }
    }

    #[test]
    fn a_missing_lease_is_created_and_ones_own_is_renewed() {
        let mut e = Elector::new("c-0");
        let t = Instant::now();
        assert_eq!(e.decide(None, t), Action::Create);
        assert_eq!(e.decide(Some(&held("c-0", "t1")), t), Action::Renew);
    }

    /// A holder that keeps renewing is waited for however long it holds; one whose record stops
    /// changing is taken over a whole lease duration after this replica first saw it so.
    #[test]
    fn a_live_holder_is_waited_for_and_a_silent_one_taken_over_after_a_duration() {
        let mut e = Elector::new("c-1");
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(e.decide(Some(&held("c-0", "r1")), t0), Action::Wait { holder: "c-0".into() });
        assert_eq!(e.decide(Some(&held("c-0", "r2")), t0 + s(10)), Action::Wait { holder: "c-0".into() });
        assert_eq!(e.decide(Some(&held("c-0", "r3")), t0 + s(20)), Action::Wait { holder: "c-0".into() });
        // r3 unchanged: 14 s is not yet a lease duration (15 s) since it was first seen.
        assert_eq!(e.decide(Some(&held("c-0", "r3")), t0 + s(34)), Action::Wait { holder: "c-0".into() });
        assert_eq!(e.decide(Some(&held("c-0", "r3")), t0 + s(35)), Action::TakeOver { transitions: 4 });
    }

    /// Whatever the renewTime says against this replica's clock (skew), only change counts: a
    /// record first seen now is not expired even if its renewTime looks old.
    #[test]
    fn expiry_is_judged_by_the_local_clock_only() {
        let mut e = Elector::new("c-1");
        let t0 = Instant::now();
        let old = held("c-0", "2001-01-01T00:00:00.000000Z");
        assert_eq!(e.decide(Some(&old), t0), Action::Wait { holder: "c-0".into() });
        // Another holder with the same renewTime is a new record: the wait starts again.
        assert_eq!(
            e.decide(Some(&held("c-2", "2001-01-01T00:00:00.000000Z")), t0 + Duration::from_secs(16)),
            Action::Wait { holder: "c-2".into() }
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once_and_a_zero_duration_is_not_a_free_for_all() {
        let mut e = Elector::new("c-1");
        let t0 = Instant::now();
        let released = Record { holder: Some(String::new()), ..held("x", "r") };
        assert_eq!(e.decide(Some(&released), t0), Action::TakeOver { transitions: 4 });
        let zero = Record { duration: Duration::ZERO, ..held("c-0", "r9") };
        assert_eq!(e.decide(Some(&zero), t0), Action::Wait { holder: "c-0".into() });
        assert_eq!(e.decide(Some(&zero), t0 + MIN_DURATION), Action::TakeOver { transitions: 4 });
    }
}
