//! Deterministic randomness for scenarios: splitmix64 (Vigna's generator, also `sim.rs`'s
//! finalizer). A scenario draws its faults and noise from one seed; the network's coin flips
//! are seeded per (scenario, probe, sample), so a probe's answers do not depend on the order
//! probes are simulated in.

/// A splitmix64 generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's output function: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(mix(seed.wrapping_add(GOLDEN)))
    }

    /// A generator for one coordinate of a seed (a probe and a sample): mixed in turn, so
    /// neighbouring coordinates give unrelated streams.
    pub fn at(seed: u64, a: u64, b: u64) -> Self {
        Rng(mix(mix(seed ^ mix(a.wrapping_add(GOLDEN))) ^ mix(b.wrapping_mul(GOLDEN))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Uniform in 0..n (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // The modulo bias is below 2^-50 for the sizes used here.
        (self.next_u64() % n as u64) as usize
    }

    /// One element, uniformly.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() { None } else { items.get(self.below(items.len())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_roughly_uniform() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let mean = (0..10_000).map(|_| a.f64()).sum::<f64>() / 10_000.0;
        assert!((0.48..0.52).contains(&mean), "{mean}");
        assert_ne!(Rng::at(1, 2, 3).next_u64(), Rng::at(1, 3, 2).next_u64());
        assert!((0..1000).all(|_| a.below(3) < 3));
    }
}
