//! The MTU probe's search, pure: the first round tries every ladder size up to the route's MTU
//! at once; each later round tries up to [`POINTS`] sizes spread evenly in the gap between
//! the largest size that passed and the smallest larger one that failed, until the gap closes.
//! A black-holed size costs a whole timeout, so sizes of one round go out together.

use std::collections::BTreeSet;

/// Sizes tried per refining round: a 700-byte gap closes in three rounds.
pub(super) const POINTS: u16 = 15;
/// Refining rounds after the ladder: enough to close a gap of 16⁴ bytes.
pub(super) const MAX_REFINE_ROUNDS: usize = 4;

/// The first round: the ladder's sizes from `min` up to below `route_mtu`, sorted and without
/// repeats, then `route_mtu` itself (sizes above it cannot leave with don't-fragment set).
pub(super) fn first_round(ladder: &[u16], min: u16, route_mtu: u16) -> Vec<u16> {
    let mut sizes: BTreeSet<u16> = ladder.iter().copied().filter(|s| (min..route_mtu).contains(s)).collect();
    sizes.insert(route_mtu.max(min));
    sizes.into_iter().collect()
}

/// What the search knows so far.
#[derive(Debug, Default, Clone)]
pub(super) struct Search {
    passed: BTreeSet<u16>,
    failed: BTreeSet<u16>,
    /// Next-hop MTUs routers reported ("fragmentation needed" / "packet too big").
    hints: BTreeSet<u16>,
}

impl Search {
    pub(super) fn record(&mut self, size: u16, passed: bool) {
        if passed {
            self.passed.insert(size);
        } else {
            self.failed.insert(size);
        }
    }

    pub(super) fn hint(&mut self, mtu: u16) {
        self.hints.insert(mtu);
    }

    /// The largest size that came back.
    pub(super) fn best(&self) -> Option<u16> {
        self.passed.last().copied()
    }

    /// The smallest size above the best that did not come back.
    pub(super) fn smallest_failed_above_best(&self) -> Option<u16> {
        let best = self.best()?;
        self.failed.range(best.saturating_add(1)..).next().copied()
    }

    /// The sizes to try next: up to [`POINTS`] spread evenly strictly inside the gap above the
    /// best size (plus any router hint inside it); empty when there is nothing left to learn.
    pub(super) fn next_round(&self) -> Vec<u16> {
        let (Some(lo), Some(hi)) = (self.best(), self.smallest_failed_above_best()) else {
            return vec![];
        };
        let inside = hi - lo - 1;
        let k = inside.min(POINTS);
        let mut sizes: BTreeSet<u16> = (1..=u32::from(k))
            .filter_map(|j| u16::try_from(u32::from(lo) + u32::from(hi - lo) * j / (u32::from(k) + 1)).ok())
            .filter(|s| *s > lo && *s < hi)
            .collect();
        sizes.extend(self.hints.iter().copied().filter(|h| *h > lo && *h < hi));
        sizes.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a path that passes sizes up to `limit`.
    fn run(ladder: &[u16], route_mtu: u16, limit: u16) -> (Option<u16>, usize) {
        let mut search = Search::default();
        let mut round = first_round(ladder, 68, route_mtu);
        let mut rounds = 0;
        while !round.is_empty() && rounds <= MAX_REFINE_ROUNDS {
            for s in &round {
                search.record(*s, *s <= limit);
            }
            rounds += 1;
            if search.best().is_none() {
                break;
            }
            round = search.next_round();
        }
        (search.best(), rounds)
    }

    #[test]
    fn first_round_caps_the_ladder_at_the_route_mtu() {
        let ladder = [9000, 576, 1280, 1400, 1450, 1480, 1500, 1280, 20];
        assert_eq!(first_round(&ladder, 68, 1500), vec![576, 1280, 1400, 1450, 1480, 1500]);
        assert_eq!(first_round(&ladder, 68, 1450), vec![576, 1280, 1400, 1450]);
        assert_eq!(first_round(&[], 68, 1500), vec![1500]);
        assert_eq!(first_round(&ladder, 68, 65_535), vec![576, 1280, 1400, 1450, 1480, 1500, 9000, 65_535]);
    }

    #[test]
    fn finds_the_exact_limit_in_few_rounds() {
        let ladder = [576, 1280, 1400, 1450, 1480, 1500, 9000];
        let cases = [
            (1500, 1500, Some(1500), 1),
            (1500, 1200, Some(1200), 4),
            (1500, 1499, Some(1499), 3),
            (1500, 1450, Some(1450), 3),
            (1450, 1450, Some(1450), 1),
            (9000, 1500, Some(1500), 5),
            (1500, 600, Some(600), 4),
            (1500, 500, None, 1),
        ];
        for (route_mtu, limit, want, max_rounds) in cases {
            let (best, rounds) = run(&ladder, route_mtu, limit);
            assert_eq!(best, want, "route {route_mtu}, path {limit}");
            assert!(rounds <= max_rounds, "route {route_mtu}, path {limit}: {rounds} rounds");
        }
    }

    #[test]
    fn router_hints_are_tried_first_inside_the_gap() {
        let mut s = Search::default();
        s.record(1280, true);
        s.record(1400, false);
        s.hint(1372);
        s.hint(1500);
        let next = s.next_round();
        assert!(next.contains(&1372), "{next:?}");
        assert!(next.iter().all(|x| (1281..1400).contains(x)), "{next:?}");
        assert!(next.len() <= usize::from(POINTS) + 1);
    }

    #[test]
    fn nothing_to_refine_when_the_best_is_on_top_or_nothing_passed() {
        let mut s = Search::default();
        s.record(1500, false);
        assert_eq!(s.next_round(), Vec::<u16>::new());
        s.record(1499, true);
        assert_eq!(s.next_round(), Vec::<u16>::new(), "adjacent sizes: the gap is closed");
        let mut lossy = Search::default();
        lossy.record(1400, false);
        lossy.record(1450, true);
        assert_eq!(lossy.best(), Some(1450), "a lost small echo does not hide a larger pass");
    }
}
