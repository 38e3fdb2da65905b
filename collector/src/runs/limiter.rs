//! The per-caller rate limit on on-demand runs: one token bucket per caller IP, refilled
//! continuously at `per_minute / 60` tokens a second up to a burst of `per_minute`. Pure: the
//! clock is a parameter, so tests drive it without sleeping. Memory is bounded: when the table
//! is full, buckets that have refilled completely (indistinguishable from new ones) are dropped,
//! and if none has, the oldest-touched one is.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Callers tracked at once before idle buckets are forgotten.
const MAX_CALLERS: usize = 4096;

/// Who is being limited: an IP, or every caller whose address is unknown, together.
pub type CallerKey = Option<IpAddr>;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by caller.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    buckets: HashMap<CallerKey, Bucket>,
}

impl RateLimiter {
    /// `per_minute` runs a minute per caller, at most `per_minute` at once (0 is taken as 1).
    pub fn new(per_minute: u32) -> Self {
        let burst = f64::from(per_minute.max(1));
        RateLimiter { burst, per_second: burst / 60.0, buckets: HashMap::new() }
    }

    fn refilled(&self, b: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        (b.tokens + elapsed * self.per_second).min(self.burst)
    }

    /// Takes one token for `caller` at `now`; when there is none, how long until there is one.
    pub fn take(&mut self, caller: CallerKey, now: Instant) -> Result<(), Duration> {
        if !self.buckets.contains_key(&caller) && self.buckets.len() >= MAX_CALLERS {
            self.evict(now);
        }
        let current = match self.buckets.get(&caller) {
            Some(b) => self.refilled(*b, now),
            None => self.burst,
        };
        if current >= 1.0 {
            self.buckets.insert(caller, Bucket { tokens: current - 1.0, at: now });
            Ok(())
        } else {
            self.buckets.insert(caller, Bucket { tokens: current, at: now });
            Err(Duration::from_secs_f64((1.0 - current) / self.per_second))
        }
    }

    fn evict(&mut self, now: Instant) {
        let burst = self.burst;
        let per_second = self.per_second;
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.tokens + elapsed * per_second < burst
        });
        if self.buckets.len() >= MAX_CALLERS
            && let Some(oldest) = self.buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k)
        {
            self.buckets.remove(&oldest);
        }
    }

    /// Callers currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> CallerKey {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_call_after_the_burst_waits_for_one_token() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(3);
        for _ in 0..3 {
            assert_eq!(l.take(ip("10.0.0.1"), t0), Ok(()));
        }
        let wait = l.take(ip("10.0.0.1"), t0).unwrap_err();
        // 3 a minute: one token every 20 s.
        assert_eq!(wait.as_secs(), 20, "{wait:?}");
        // Another caller has its own bucket.
        assert_eq!(l.take(ip("10.0.0.2"), t0), Ok(()));
        // Half way, still refused, with half the wait.
        let wait = l.take(ip("10.0.0.1"), t0 + Duration::from_secs(10)).unwrap_err();
        assert!((9..=10).contains(&wait.as_secs()), "{wait:?}");
        assert_eq!(l.take(ip("10.0.0.1"), t0 + Duration::from_secs(20)), Ok(()));
        assert!(l.take(ip("10.0.0.1"), t0 + Duration::from_secs(20)).is_err());
    }

    #[test]
    fn a_full_minute_refills_the_burst_and_no_more() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(2);
        assert!(l.take(None, t0).is_ok());
        assert!(l.take(None, t0).is_ok());
        assert!(l.take(None, t0).is_err());
        let later = t0 + Duration::from_secs(600);
        assert!(l.take(None, later).is_ok());
        assert!(l.take(None, later).is_ok());
        assert!(l.take(None, later).is_err(), "the burst is capped at per_minute");
    }

    #[test]
    fn zero_per_minute_still_allows_one() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(0);
        assert!(l.take(None, t0).is_ok());
        assert_eq!(l.take(None, t0).unwrap_err().as_secs(), 60);
    }

    #[test]
    fn the_table_stays_bounded() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(1);
        for i in 0..(MAX_CALLERS as u32 + 100) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            // Every caller exhausts its bucket, so none can be dropped as refilled.
            assert!(l.take(Some(ip.into()), t0).is_ok());
        }
        assert!(l.tracked() <= MAX_CALLERS, "{}", l.tracked());
        // After a minute every bucket is full again and the table empties on the next eviction.
        assert!(l.take(ip("192.0.2.1"), t0 + Duration::from_secs(61)).is_ok());
        assert_eq!(l.tracked(), 1);
    }
}
