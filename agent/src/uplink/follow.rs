//! Which collector replica's plan (or pod list) the agent follows, pure. Replicas compute the
//! same plan from the same inventory, but each numbers its own generations and may differ for
//! a moment (a failing pair one saw first): following whichever spoke last would restart the
//! scheduler back and forth. The agent follows the first replica in its `--collector` list
//! whose session is up and that has sent one since; when that session is lost, the next one's
//! latest takes over. A replica's value from before its session was lost is never used: it
//! may be stale, and the replica sends a fresh one on its new session anyway.

/// The latest value from each uplink, and which one is followed.
#[derive(Debug, Clone)]
pub struct Follow<T> {
    slots: Vec<Slot<T>>,
    followed: Option<usize>,
}

#[derive(Debug, Clone)]
struct Slot<T> {
    up: bool,
    latest: Option<T>,
}

impl<T: Clone> Follow<T> {
    /// For `uplinks` collectors, none up yet.
    pub fn new(uplinks: usize) -> Self {
        Self { slots: (0..uplinks).map(|_| Slot { up: false, latest: None }).collect(), followed: None }
    }

    /// The uplink whose values are applied, if any.
    pub fn followed(&self) -> Option<usize> {
        self.followed
    }

    /// Uplink `i`'s session is up (or lost). Returns the value to apply now, when the followed
    /// uplink changed to one that has a value.
    pub fn set_up(&mut self, i: usize, up: bool) -> Option<T> {
        let slot = self.slots.get_mut(i)?;
        slot.up = up;
        if !up {
            slot.latest = None;
        }
        self.choose()
    }

    /// Uplink `i` sent `value`. Returns it when it is to be applied: `i` is (or becomes) the
    /// followed uplink.
    pub fn offer(&mut self, i: usize, value: T) -> Option<T> {
        let slot = self.slots.get_mut(i)?;
        // A message can only come over a session that is up (its Up event came first).
        slot.up = true;
        slot.latest = Some(value);
        let switched = self.choose();
        if switched.is_some() || self.followed != Some(i) {
            return switched;
        }
        self.slots[i].latest.clone()
    }

    /// Follows the first uplink that is up and has a value; keeps the current one when none
    /// qualifies (the last plan keeps running while every collector is away). Returns the
    /// newly followed uplink's value when the choice changed.
    fn choose(&mut self) -> Option<T> {
        let best = self.slots.iter().position(|s| s.up && s.latest.is_some());
        match best {
            Some(b) if self.followed != Some(b) => {
                self.followed = Some(b);
                self.slots[b].latest.clone()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_replica_up_is_followed_and_the_next_takes_over_when_it_is_lost() {
        let mut f = Follow::new(2);
        f.set_up(1, true);
        // Only replica 1 has spoken: follow it.
        assert_eq!(f.offer(1, "b1"), Some("b1"));
        f.set_up(0, true);
        // Replica 0 comes first in the list: its plan takes over when it arrives.
        assert_eq!(f.offer(0, "a1"), Some("a1"));
        assert_eq!(f.followed(), Some(0));
        // Replica 1's later plans are kept, not applied.
        assert_eq!(f.offer(1, "b2"), None);
        assert_eq!(f.offer(0, "a2"), Some("a2"));
        // Replica 0 is lost: replica 1's latest applies at once.
        assert_eq!(f.set_up(0, false), Some("b2"));
        assert_eq!(f.followed(), Some(1));
        // Replica 0 is back: its value from before is forgotten; its next plan takes over.
        assert_eq!(f.set_up(0, true), None);
        assert_eq!(f.offer(0, "a3"), Some("a3"));
    }

    #[test]
    fn with_every_replica_away_the_last_value_stays_followed() {
        let mut f = Follow::new(2);
        assert_eq!(f.offer(0, 7), Some(7));
        assert_eq!(f.set_up(0, false), None);
        assert_eq!(f.followed(), Some(0), "nothing better: keep running the last plan");
        assert_eq!(f.set_up(1, true), None, "up but nothing sent yet");
        assert_eq!(f.offer(1, 8), Some(8));
        assert_eq!(
            f.offer(1, 8),
            Some(8),
            "the followed replica's repeats are applied (the caller skips equal ones)"
        );
    }

    #[test]
    fn a_single_collector_behaves_as_before() {
        let mut f = Follow::new(1);
        assert_eq!(f.offer(0, 1), Some(1));
        assert_eq!(f.offer(0, 2), Some(2));
        assert_eq!(f.set_up(0, false), None);
        assert_eq!(f.set_up(0, true), None);
        assert_eq!(f.offer(0, 3), Some(3));
        assert_eq!(f.offer(5, 9), None, "an uplink that does not exist is ignored");
    }
}
