//! The sliding window of one cell: a fixed ring of sub-window buckets, each holding counts and
//! an [`RttSketch`] for one bucket-long slice of time, so a cell's memory does not grow with
//! the number of samples. A sample at time `t` goes to bucket `⌊t / bucket⌋` (its *epoch*),
//! stored in slot `epoch mod buckets`; a slot holding an older epoch is reset first. At `now`
//! the window is the current bucket and the `buckets - 1` before it, so it spans between
//! `window - bucket` and `window` of the past.

use std::time::Duration;

use netdiag_model::UnixMillis;

use super::sketch::{RttSketch, RttSummary};

/// Most buckets a window may have.
pub const MAX_BUCKETS: u16 = 1024;
/// Longest window.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A window length that cannot be cut into buckets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowSpecError {
    #[error("a window needs 1 to {MAX_BUCKETS} buckets, not {0}")]
    Buckets(u16),
    #[error("a window of {window:?} is not a whole number of milliseconds per each of its {buckets} buckets")]
    Uneven { window: Duration, buckets: u16 },
    #[error("a window of {0:?} is longer than the {MAX_WINDOW:?} allowed")]
    TooLong(Duration),
}

/// How long a window is and how finely it slides: `buckets` buckets of `bucket` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    bucket_ms: i64,
    buckets: u16,
}

impl Default for WindowSpec {
    /// 60 s in 12 buckets of 5 s.
    fn default() -> Self {
        WindowSpec { bucket_ms: 5_000, buckets: 12 }
    }
}

impl WindowSpec {
    pub fn new(window: Duration, buckets: u16) -> Result<Self, WindowSpecError> {
        if !(1..=MAX_BUCKETS).contains(&buckets) {
            return Err(WindowSpecError::Buckets(buckets));
        }
        if window > MAX_WINDOW {
            return Err(WindowSpecError::TooLong(window));
        }
        let ms = window.as_millis();
        let n = u128::from(buckets);
        if !window.subsec_nanos().is_multiple_of(1_000_000) || ms == 0 || !ms.is_multiple_of(n) {
            return Err(WindowSpecError::Uneven { window, buckets });
        }
        // ms ≤ one day in milliseconds: fits an i64.
        let bucket_ms = i64::try_from(ms / n).map_err(|_| WindowSpecError::TooLong(window))?;
        Ok(WindowSpec { bucket_ms, buckets })
    }

    pub fn window(&self) -> Duration {
        self.bucket() * u32::from(self.buckets)
    }

    pub fn bucket(&self) -> Duration {
        Duration::from_millis(self.bucket_ms.unsigned_abs())
    }

    pub fn buckets(&self) -> u16 {
        self.buckets
    }

    pub(super) fn epoch(&self, t: UnixMillis) -> i64 {
        t.get().div_euclid(self.bucket_ms)
    }

    /// Whether a sample at `t` is inside the window at `now`.
    pub fn contains(&self, t: UnixMillis, now: UnixMillis) -> bool {
        let (e, now) = (self.epoch(t), self.epoch(now));
        e <= now && e > now - i64::from(self.buckets)
    }
}

/// How one result counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleClass {
    Success,
    /// A failure of the network (any layer).
    Failure,
    /// The agent could not run the probe: says nothing about the network.
    AgentError,
}

/// One result, reduced to what the window keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub class: SampleClass,
    pub packets_sent: u32,
    pub packets_received: u32,
    pub rtt_micros: Option<u64>,
}

/// Marks a slot that never held a bucket (epochs of real instants are ≥ 0).
const EMPTY: i64 = -1;

#[derive(Debug, Clone)]
struct Bucket {
    epoch: i64,
    successes: u32,
    failures: u32,
    agent_errors: u32,
    packets_sent: u64,
    packets_received: u64,
    /// Packets sent by failed attempts (whole bursts lost).
    failed_packets: u64,
    rtt: RttSketch,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            epoch: EMPTY,
            successes: 0,
            failures: 0,
            agent_errors: 0,
            packets_sent: 0,
            packets_received: 0,
            failed_packets: 0,
            rtt: RttSketch::default(),
        }
    }
}

impl Bucket {
    fn reset(&mut self, epoch: i64) {
        self.epoch = epoch;
        (self.successes, self.failures, self.agent_errors) = (0, 0, 0);
        (self.packets_sent, self.packets_received, self.failed_packets) = (0, 0, 0);
        self.rtt.clear();
    }
}

/// What a window holds at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowSummary {
    pub successes: u64,
    pub failures: u64,
    pub agent_errors: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
    /// Packets sent by failed attempts: the rest of the loss happened within answered bursts.
    pub failed_packets: u64,
    pub rtt: RttSummary,
}

impl WindowSummary {
    /// Results that tested the network: successes and failures.
    pub fn attempts(&self) -> u64 {
        self.successes + self.failures
    }

    /// Every result, agent errors included.
    pub fn results(&self) -> u64 {
        self.attempts() + self.agent_errors
    }

    /// Lost packets as a fraction of those sent; 0 when none were sent.
    pub fn loss_ratio(&self) -> f64 {
        if self.packets_sent == 0 {
            return 0.0;
        }
        let lost = self.packets_sent.saturating_sub(self.packets_received);
        lost as f64 / self.packets_sent as f64
    }

    /// Successes as a fraction of attempts; None without attempts.
    pub fn success_ratio(&self) -> Option<f64> {
        let attempts = self.attempts();
        (attempts > 0).then(|| self.successes as f64 / attempts as f64)
    }
}

/// A split must beat one rate by this log-likelihood ratio (about p < 0.01) to mark an onset.
const ONSET_MIN_LLR: f64 = 4.6;

/// One bucket's counts, as [`Window::history`] gives them (several cells' histories can be
/// summed bucket by bucket, by `start_ms`, before looking for an onset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketCounts {
    /// The bucket's start, in ms since the Unix epoch.
    pub start_ms: i64,
    pub successes: u64,
    pub failures: u64,
    pub packets_sent: u64,
    pub packets_received: u64,
}

impl BucketCounts {
    /// Adds `other`'s counts (same bucket, another cell).
    pub fn add(&mut self, other: &BucketCounts) {
        self.successes += other.successes;
        self.failures += other.failures;
        self.packets_sent += other.packets_sent;
        self.packets_received += other.packets_received;
    }

    /// Lost packets over packets sent; 0 when none were sent.
    pub fn loss(&self) -> f64 {
        if self.packets_sent == 0 {
            return 0.0;
        }
        self.packets_sent.saturating_sub(self.packets_received) as f64 / self.packets_sent as f64
    }

    /// The binomial log-likelihood of the losses at their own rate (the constant term dropped).
    fn log_likelihood(&self) -> f64 {
        binomial_log_likelihood(self.packets_sent, self.packets_sent.saturating_sub(self.packets_received))
    }
}

/// The log-likelihood of `lost` of `sent` at their own rate (the constant term dropped).
fn binomial_log_likelihood(sent: u64, lost: u64) -> f64 {
    let n = sent as f64;
    let lost = lost.min(sent) as f64;
    let term = |k: f64| if k > 0.0 { k * (k / n).ln() } else { 0.0 };
    term(lost) + term(n - lost)
}

/// The counts since the most likely onset of trouble in `history` (oldest first): the split
/// that best explains the lost packets as a cleaner stretch followed by a lossier one (two
/// binomial rates against one, by log-likelihood ratio); all of it when no split is
/// significant. A fault's magnitude is read here, so a loss that began 20 s ago is not
/// diluted by the healthy samples before it. The result's `start_ms` is the onset.
pub fn since_onset(history: &[BucketCounts]) -> BucketCounts {
    let total = |bs: &[BucketCounts]| {
        bs.iter().fold(
            BucketCounts { start_ms: bs.first().map_or(0, |b| b.start_ms), ..Default::default() },
            |mut o, b| {
                o.add(b);
                o
            },
        )
    };
    let whole = total(history);
    let mut best: Option<(f64, usize)> = None;
    for split in 1..history.len() {
        let (before, after) = (total(&history[..split]), total(&history[split..]));
        if after.loss() <= before.loss() {
            continue;
        }
        let llr = before.log_likelihood() + after.log_likelihood() - whole.log_likelihood();
        if llr >= ONSET_MIN_LLR && best.is_none_or(|(b, _)| llr > b) {
            best = Some((llr, split));
        }
    }
    match best {
        Some((_, split)) => total(&history[split..]),
        None => whole,
    }
}

/// Where the latest repair is in `series` (packets sent and lost per bucket, oldest first):
/// the first bucket after the split that best explains the lost packets as a lossier stretch
/// followed by a cleaner one (two binomial rates against one, by log-likelihood ratio); 0 when
/// no split is significant.
pub fn repair_index(series: &[(u64, u64)]) -> usize {
    let (sent, lost) = series.iter().fold((0u64, 0u64), |(s, l), &(bs, bl)| (s + bs, l + bl.min(bs)));
    let whole = binomial_log_likelihood(sent, lost);
    let mut best: Option<(f64, usize)> = None;
    let (mut before_sent, mut before_lost) = (0u64, 0u64);
    for split in 1..series.len() {
        let (prev_sent, prev_lost) = series[split - 1];
        before_sent += prev_sent;
        before_lost += prev_lost.min(prev_sent);
        let (after_sent, after_lost) = (sent - before_sent, lost - before_lost);
        if before_sent == 0 || after_sent == 0 {
            continue;
        }
        // Cleaner afterwards, compared without division: after/after_sent < before/before_sent.
        if u128::from(after_lost) * u128::from(before_sent)
            >= u128::from(before_lost) * u128::from(after_sent)
        {
            continue;
        }
        let llr = binomial_log_likelihood(before_sent, before_lost)
            + binomial_log_likelihood(after_sent, after_lost)
            - whole;
        if llr >= ONSET_MIN_LLR && best.is_none_or(|(b, _)| llr > b) {
            best = Some((llr, split));
        }
    }
    let Some((_, split)) = best else { return 0 };
    // The repair happened inside the split's first bucket or at its start: when that bucket
    // loses more than the rest, it holds the outage's last failures.
    let (rest_sent, rest_lost) =
        series.iter().skip(split + 1).fold((0u64, 0u64), |(s, l), &(bs, bl)| (s + bs, l + bl.min(bs)));
    match series.get(split) {
        Some(&(edge_sent, edge_lost))
            if rest_sent > 0
                && u128::from(edge_lost.min(edge_sent)) * u128::from(rest_sent)
                    > u128::from(rest_lost) * u128::from(edge_sent) =>
        {
            split + 1
        }
        _ => split,
    }
}

/// The ring of buckets; allocated whole when the cell is created.
#[derive(Debug, Clone)]
pub struct Window {
    buckets: Box<[Bucket]>,
}

impl Window {
    pub fn new(spec: &WindowSpec) -> Self {
        Window { buckets: vec![Bucket::default(); usize::from(spec.buckets)].into_boxed_slice() }
    }

    /// Adds a sample taken at `at`; false (and nothing kept) when `at` is outside the window at
    /// `now`, or older than what its slot already holds (`now` went backwards).
    pub fn add(&mut self, spec: &WindowSpec, at: UnixMillis, now: UnixMillis, sample: &Sample) -> bool {
        if !spec.contains(at, now) {
            return false;
        }
        let epoch = spec.epoch(at);
        let slot = usize::try_from(epoch.rem_euclid(i64::from(spec.buckets))).unwrap_or(0);
        let Some(bucket) = self.buckets.get_mut(slot) else { return false };
        if bucket.epoch > epoch {
            return false;
        }
        if bucket.epoch < epoch {
            bucket.reset(epoch);
        }
        match sample.class {
            SampleClass::Success => bucket.successes = bucket.successes.saturating_add(1),
            SampleClass::Failure => bucket.failures = bucket.failures.saturating_add(1),
            SampleClass::AgentError => bucket.agent_errors = bucket.agent_errors.saturating_add(1),
        }
        bucket.packets_sent = bucket.packets_sent.saturating_add(u64::from(sample.packets_sent));
        bucket.packets_received = bucket.packets_received.saturating_add(u64::from(sample.packets_received));
        if sample.class == SampleClass::Failure {
            bucket.failed_packets = bucket.failed_packets.saturating_add(u64::from(sample.packets_sent));
        }
        if let Some(rtt) = sample.rtt_micros {
            bucket.rtt.insert(rtt);
        }
        true
    }

    /// The buckets inside the window at `now`, summed.
    pub fn summary(&self, spec: &WindowSpec, now: UnixMillis) -> WindowSummary {
        let now = spec.epoch(now);
        Self::sum(self.buckets.iter().filter(|b| b.epoch > now - i64::from(spec.buckets) && b.epoch <= now))
    }

    /// The buckets since the window's latest repair, summed: the later of the split
    /// [`Self::repair`] finds and `repaired_from`, the first bucket after an outage the cell
    /// saw end. A path that was down and came back is judged on what it does now: one stray
    /// timeout after a repair is noise, not the old outage's failures again (which the window
    /// still holds).
    pub fn since_repair(
        &self,
        spec: &WindowSpec,
        now: UnixMillis,
        repaired_from: Option<i64>,
    ) -> WindowSummary {
        let live = self.live(spec, now);
        let from = Self::start(&live, repaired_from);
        Self::sum(live.into_iter().skip(from))
    }

    fn start(live: &[&Bucket], repaired_from: Option<i64>) -> usize {
        let seen = repaired_from.map_or(0, |e| live.iter().take_while(|b| b.epoch < e).count());
        Self::repair(live).max(seen)
    }

    /// The buckets inside the window at `now`, oldest first.
    fn live(&self, spec: &WindowSpec, now: UnixMillis) -> Vec<&Bucket> {
        let now = spec.epoch(now);
        let mut live: Vec<&Bucket> = self
            .buckets
            .iter()
            .filter(|b| b.epoch > now - i64::from(spec.buckets) && b.epoch <= now)
            .collect();
        live.sort_by_key(|b| b.epoch);
        live
    }

    fn repair(live: &[&Bucket]) -> usize {
        let series: Vec<(u64, u64)> = live
            .iter()
            .map(|b| (b.packets_sent, b.packets_sent.saturating_sub(b.packets_received)))
            .collect();
        repair_index(&series)
    }

    fn sum<'a>(buckets: impl Iterator<Item = &'a Bucket>) -> WindowSummary {
        let mut s = WindowSummary::default();
        for b in buckets {
            s.successes += u64::from(b.successes);
            s.failures += u64::from(b.failures);
            s.agent_errors += u64::from(b.agent_errors);
            s.packets_sent = s.packets_sent.saturating_add(b.packets_sent);
            s.packets_received = s.packets_received.saturating_add(b.packets_received);
            s.failed_packets = s.failed_packets.saturating_add(b.failed_packets);
            s.rtt.add(&b.rtt);
        }
        s
    }

    /// The buckets since the window's latest repair ([`Self::since_repair`]) that saw an
    /// attempt, oldest first: where a fault's onset is found ([`since_onset`]), and what a
    /// degradation's pooled evidence is made of — an outage that ended is not part of it.
    pub fn history_since_repair(
        &self,
        spec: &WindowSpec,
        now: UnixMillis,
        repaired_from: Option<i64>,
    ) -> Vec<BucketCounts> {
        let live = self.live(spec, now);
        let from = Self::start(&live, repaired_from);
        live.into_iter()
            .skip(from)
            .filter(|b| b.packets_sent > 0)
            .map(|b| BucketCounts {
                start_ms: b.epoch.saturating_mul(spec.bucket_ms),
                successes: u64::from(b.successes),
                failures: u64::from(b.failures),
                packets_sent: b.packets_sent,
                packets_received: b.packets_received.min(b.packets_sent),
            })
            .collect()
    }

    /// Bytes held: the ring and every bucket's sketch bins.
    pub fn retained_bytes(&self) -> usize {
        size_of_val(&*self.buckets) + self.buckets.iter().map(|b| b.rtt.heap_bytes()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> UnixMillis {
        UnixMillis::new(1_700_000_000_000 + ms).unwrap()
    }

    fn ok(rtt: u64) -> Sample {
        Sample { class: SampleClass::Success, packets_sent: 1, packets_received: 1, rtt_micros: Some(rtt) }
    }

    fn failed() -> Sample {
        Sample { class: SampleClass::Failure, packets_sent: 1, packets_received: 0, rtt_micros: None }
    }

    #[test]
    fn specs_cut_windows_evenly() {
        let s = WindowSpec::new(Duration::from_secs(60), 12).unwrap();
        assert_eq!(s, WindowSpec::default());
        assert_eq!(
            (s.window(), s.bucket(), s.buckets()),
            (Duration::from_secs(60), Duration::from_secs(5), 12)
        );
        let bad = [
            (Duration::from_secs(60), 0),
            (Duration::from_secs(60), MAX_BUCKETS + 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_micros(1500), 1),
            (Duration::ZERO, 1),
            (Duration::from_secs(2 * 24 * 3600), 12),
        ];
        for (window, buckets) in bad {
            assert!(WindowSpec::new(window, buckets).is_err(), "{window:?}/{buckets}");
        }
        assert!(WindowSpec::new(Duration::from_millis(3), 3).is_ok());
    }

    #[test]
    fn samples_age_out_bucket_by_bucket() {
        let spec = WindowSpec::default();
        let mut w = Window::new(&spec);
        // t0 is a bucket boundary: 1_700_000_000_000 is a multiple of 5000.
        assert!(w.add(&spec, at(0), at(0), &failed()));
        assert!(w.add(&spec, at(30_000), at(30_000), &ok(100)));
        let cases = [
            (0, 1, 0),
            (30_000, 1, 1),
            (59_999, 1, 1),
            // The failure's bucket (0..5 s) leaves once the current bucket is 60..65 s.
            (60_000, 0, 1),
            (89_999, 0, 1),
            (90_000, 0, 0),
        ];
        for (now, failures, successes) in cases {
            let s = w.summary(&spec, at(now));
            assert_eq!((s.failures, s.successes), (failures, successes), "now +{now}ms");
        }
    }

    #[test]
    fn stale_and_future_samples_are_refused() {
        let spec = WindowSpec::default();
        let mut w = Window::new(&spec);
        assert!(!w.add(&spec, at(0), at(60_000), &ok(1)), "older than the window");
        assert!(!w.add(&spec, at(10_000), at(0), &ok(1)), "after now");
        assert!(w.add(&spec, at(70_000), at(70_000), &ok(1)));
        // Same slot (epoch 2 vs 14), older epoch, while `now` went backwards.
        assert!(!w.add(&spec, at(10_000), at(10_000), &ok(1)));
        assert_eq!(w.summary(&spec, at(70_000)).successes, 1);
    }

    #[test]
    fn slots_are_reused_and_memory_stays_put() {
        let spec = WindowSpec::default();
        let mut w = Window::new(&spec);
        let before = w.retained_bytes();
        for i in 0..10_000 {
            let t = at(i * 1_000);
            assert!(w.add(&spec, t, t, &ok(100 + (i as u64 % 3))));
        }
        let s = w.summary(&spec, at(9_999_000));
        assert_eq!(s.successes, 60, "one sample per second over the last 60 s");
        assert_eq!(s.rtt.count(), 60);
        assert!(w.retained_bytes() <= before + 12 * 4 * 8, "{} vs {before}", w.retained_bytes());
    }

    #[test]
    fn a_repair_is_where_a_lossier_stretch_gives_way_to_a_cleaner_one() {
        let down = (10, 10);
        let up = (10, 0);
        // An outage, then clean: the repair is the first clean bucket.
        assert_eq!(repair_index(&[down, down, down, up, up, up]), 3);
        // The bucket where it came back, still losing more than what follows, goes before it.
        assert_eq!(repair_index(&[down, down, down, (10, 6), up, up, up]), 4);
        // Steady loss, a loss that only began, too few packets: no repair.
        assert_eq!(repair_index(&[(10, 3); 8]), 0);
        assert_eq!(repair_index(&[up, up, up, down, down]), 0);
        assert_eq!(repair_index(&[(1, 1), (1, 0)]), 0);
        assert_eq!(repair_index(&[]), 0);
    }

    #[test]
    fn loss_counts_packets() {
        let spec = WindowSpec::default();
        let mut w = Window::new(&spec);
        let burst = |sent, received| Sample {
            class: if received > 0 { SampleClass::Success } else { SampleClass::Failure },
            packets_sent: sent,
            packets_received: received,
            rtt_micros: (received > 0).then_some(300),
        };
        for s in [burst(10, 10), burst(10, 7), burst(10, 0)] {
            assert!(w.add(&spec, at(1), at(1), &s));
        }
        let s = w.summary(&spec, at(1));
        assert_eq!((s.attempts(), s.results(), s.packets_sent, s.packets_received), (3, 3, 30, 17));
        assert!((s.loss_ratio() - 13.0 / 30.0).abs() < 1e-12);
        assert_eq!(WindowSummary::default().loss_ratio(), 0.0);
        assert_eq!(WindowSummary::default().success_ratio(), None);
    }
}
