//! A bounded-memory RTT quantile sketch in the manner of DDSketch: values (whole microseconds,
//! 1µs to [`MAX_RTT`]) fall into logarithmically spaced bins `(γ^(i-1), γ^i]` with
//! `γ = (1+α)/(1-α)`, and a bin reports `2γ^i/(γ+1)`, which is within [`RELATIVE_ERROR`] (α) of
//! every value in it. So a quantile read from the bins is within α of the exact quantile of
//! the same rank (`⌊q·(n-1)⌋`, 0-based, of the sorted samples).
//!
//! [`RttSketch`] is what a window bucket stores: only non-empty bins, sorted, at most
//! [`MAX_BINS`] of them (1 KiB), whatever the number of samples. Past that many distinct bins
//! (values spread over more than γ^128 ≈ 160×) the lowest bins are merged into the next one
//! up, as DDSketch's "collapsing lowest" store does: high quantiles keep their bound, the lowest
//! ones may read high. [`RttSummary`] merges the sketches of a window's buckets to answer
//! quantiles; it is built per query and not kept.

use std::time::Duration;

use netdiag_model::limits::MAX_RTT;

/// The bound on a quantile's relative error (α).
pub const RELATIVE_ERROR: f64 = 0.02;
/// Most bins one [`RttSketch`] keeps.
pub const MAX_BINS: usize = 128;

/// γ = (1+α)/(1-α).
const GAMMA: f64 = (1.0 + RELATIVE_ERROR) / (1.0 - RELATIVE_ERROR);
/// The largest value, in microseconds (also fits a `u32`).
const MAX_MICROS: u64 = MAX_RTT.as_micros() as u64;

/// The bin of a value in microseconds: `⌈log_γ v⌉`, 0 for 1µs; about 530 bins up to an hour.
fn bin_of(micros: u64) -> u16 {
    let v = micros.clamp(1, MAX_MICROS) as f64;
    // ln(3.6e9)/ln(γ) ≈ 525: the cast cannot overflow.
    (v.ln() / GAMMA.ln()).ceil().max(0.0) as u16
}

/// The value a bin reports, in microseconds.
fn value_of(bin: u16) -> f64 {
    2.0 * GAMMA.powi(i32::from(bin)) / (GAMMA + 1.0)
}

fn clamp_micros(micros: u64) -> u32 {
    u32::try_from(micros.clamp(1, MAX_MICROS)).unwrap_or(u32::MAX)
}

/// RTT samples of one window bucket: sparse bins, with the smallest and largest value seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RttSketch {
    /// (bin, count), sorted by bin, counts > 0.
    bins: Vec<(u16, u32)>,
    min: u32,
    max: u32,
}

impl RttSketch {
    pub fn insert(&mut self, micros: u64) {
        let v = clamp_micros(micros);
        if self.bins.is_empty() {
            (self.min, self.max) = (v, v);
        } else {
            (self.min, self.max) = (self.min.min(v), self.max.max(v));
        }
        let bin = bin_of(u64::from(v));
        match self.bins.binary_search_by_key(&bin, |&(b, _)| b) {
            Ok(i) => self.bins[i].1 = self.bins[i].1.saturating_add(1),
            Err(i) if self.bins.len() < MAX_BINS => self.bins.insert(i, (bin, 1)),
            // Full: the lowest bin is merged into the next one up. The new value is the lowest.
            Err(0) => self.bins[0].1 = self.bins[0].1.saturating_add(1),
            // The new bin is the next one up from the lowest: it takes the lowest's count.
            Err(1) => self.bins[0] = (bin, self.bins[0].1.saturating_add(1)),
            Err(i) => {
                let (_, lowest) = self.bins.remove(0);
                self.bins[0].1 = self.bins[0].1.saturating_add(lowest);
                self.bins.insert(i - 1, (bin, 1));
            }
        }
    }

    /// Forgets every sample, keeping the allocation.
    pub fn clear(&mut self) {
        self.bins.clear();
        (self.min, self.max) = (0, 0);
    }

    pub fn is_empty(&self) -> bool {
        self.bins.is_empty()
    }

    /// Samples held (saturating).
    pub fn count(&self) -> u64 {
        self.bins.iter().map(|&(_, c)| u64::from(c)).sum()
    }

    /// Distinct bins in use.
    pub fn bins(&self) -> usize {
        self.bins.len()
    }

    /// Heap bytes held; at most `MAX_BINS * 8`.
    pub fn heap_bytes(&self) -> usize {
        self.bins.capacity() * size_of::<(u16, u32)>()
    }

    /// The quantile `q` (0.0 to 1.0) of this sketch alone.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let mut summary = RttSummary::default();
        summary.add(self);
        summary.quantile(q)
    }
}

/// Several sketches merged (a window's buckets), for reading quantiles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RttSummary {
    /// (bin, count), sorted by bin once `add` is done.
    bins: Vec<(u16, u64)>,
    count: u64,
    min: u32,
    max: u32,
}

impl RttSummary {
    pub fn add(&mut self, sketch: &RttSketch) {
        if sketch.is_empty() {
            return;
        }
        if self.count == 0 {
            (self.min, self.max) = (sketch.min, sketch.max);
        } else {
            (self.min, self.max) = (self.min.min(sketch.min), self.max.max(sketch.max));
        }
        for &(bin, c) in &sketch.bins {
            let c = u64::from(c);
            self.count = self.count.saturating_add(c);
            match self.bins.binary_search_by_key(&bin, |&(b, _)| b) {
                Ok(i) => self.bins[i].1 = self.bins[i].1.saturating_add(c),
                Err(i) => self.bins.insert(i, (bin, c)),
            }
        }
    }

    /// Samples summarized.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at rank `⌊q·(n-1)⌋` (0-based) within [`RELATIVE_ERROR`] (clamped to the
    /// smallest and largest value seen); None without samples.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        // count ≤ u64::MAX and q ≤ 1: the product fits; `as` saturates anyway.
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        let bin = self.bins.iter().find_map(|&(bin, c)| {
            seen = seen.saturating_add(c);
            (seen > rank).then_some(bin)
        })?;
        let micros = value_of(bin).clamp(f64::from(self.min), f64::from(self.max));
        Some(Duration::from_nanos((micros * 1000.0).round() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact quantile at the sketch's rank.
    fn exact(sorted: &[u64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize] as f64
    }

    fn check(name: &str, values: &[u64]) {
        let mut sketch = RttSketch::default();
        for &v in values {
            sketch.insert(v);
        }
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        for q in [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0] {
            let got = sketch.quantile(q).unwrap().as_nanos() as f64 / 1000.0;
            let want = exact(&sorted, q);
            let err = (got - want).abs() / want;
            assert!(err <= RELATIVE_ERROR + 1e-9, "{name} q{q}: got {got}µs, exact {want}µs, error {err}");
        }
        assert!(sketch.bins() <= MAX_BINS);
    }

    /// A deterministic generator (xorshift), so failures reproduce.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn quantiles_are_within_the_error_bound() {
        let mut r = rng(0x9e37_79b9_7f4a_7c15);
        let uniform: Vec<u64> = (0..20_000).map(|_| 1_000 + r() % 99_000).collect();
        let bimodal: Vec<u64> =
            (0..20_000).map(|i| if i % 10 == 0 { 40_000 + r() % 20_000 } else { 200 + r() % 100 }).collect();
        let tiny: Vec<u64> = (0..1_000).map(|_| 1 + r() % 40).collect();
        let huge: Vec<u64> = (0..1_000).map(|_| MAX_MICROS - r() % 1_000_000).collect();
        check("uniform 1-100ms", &uniform);
        check("bimodal 0.2ms/50ms", &bimodal);
        check("constant", &[1_234; 5_000]);
        check("one sample", &[777]);
        check("tiny", &tiny);
        check("huge", &huge);
    }

    #[test]
    fn a_constant_distribution_reads_exactly() {
        let mut s = RttSketch::default();
        for _ in 0..100 {
            s.insert(1_234);
        }
        assert_eq!(s.quantile(0.5), Some(Duration::from_micros(1_234)));
        assert_eq!(s.quantile(0.99), Some(Duration::from_micros(1_234)));
        assert_eq!(s.count(), 100);
        assert_eq!(RttSketch::default().quantile(0.5), None);
    }

    #[test]
    fn bins_stay_bounded_and_high_quantiles_keep_their_bound() {
        // Every bin from 1µs to an hour: far more than MAX_BINS distinct bins.
        let mut s = RttSketch::default();
        let mut values = vec![];
        let mut v = 1.0f64;
        while v < MAX_MICROS as f64 {
            values.push(v as u64);
            v *= 1.01;
        }
        for &x in &values {
            s.insert(x);
        }
        for &x in values.iter().rev() {
            s.insert(x);
        }
        assert_eq!(s.bins(), MAX_BINS);
        assert!(s.heap_bytes() <= MAX_BINS * 8, "{}", s.heap_bytes());
        assert_eq!(s.count(), 2 * values.len() as u64);
        let mut sorted = [values.clone(), values].concat();
        sorted.sort_unstable();
        let got = s.quantile(0.99).unwrap().as_nanos() as f64 / 1000.0;
        let want = exact(&sorted, 0.99);
        assert!((got - want).abs() / want <= RELATIVE_ERROR + 1e-9, "p99 {got} vs {want}");
        s.clear();
        assert!(s.is_empty());
        assert!(s.heap_bytes() > 0, "clear keeps the allocation");
    }

    #[test]
    fn out_of_range_values_are_clamped_not_panicking() {
        let mut s = RttSketch::default();
        for v in [0, u64::MAX, MAX_MICROS + 1] {
            s.insert(v);
        }
        assert_eq!(s.quantile(0.0), Some(Duration::from_micros(1)));
        assert_eq!(s.quantile(1.0), Some(MAX_RTT));
        assert_eq!(s.quantile(f64::NAN), s.quantile(0.5));
    }

    #[test]
    fn summaries_merge_bins_across_sketches() {
        let (mut a, mut b) = (RttSketch::default(), RttSketch::default());
        for _ in 0..99 {
            a.insert(100);
        }
        b.insert(50_000);
        let mut sum = RttSummary::default();
        sum.add(&a);
        sum.add(&b);
        sum.add(&RttSketch::default());
        assert_eq!(sum.count(), 100);
        let p50 = sum.quantile(0.5).unwrap().as_nanos() as f64 / 1000.0;
        assert!((p50 - 100.0).abs() <= 100.0 * RELATIVE_ERROR, "{p50}");
        assert_eq!(sum.quantile(1.0), Some(Duration::from_micros(50_000)));
    }
}
