//! Wall-clock instants as Unix milliseconds, and serde helpers that write durations as plain
//! millisecond or microsecond numbers in JSON.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::limits::OutOfRange;

/// A wall-clock instant in milliseconds since the Unix epoch, after the epoch and before the
/// year 10000. Zero is not an instant: on the wire it means "unset".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct UnixMillis(i64);

impl UnixMillis {
    /// 9999-12-31T23:59:59.999Z
    pub const MAX: i64 = 253_402_300_799_999;
    const ALLOWED: &'static str = "milliseconds after 1970-01-01 and before the year 10000";

    pub fn new(ms: i64) -> Result<Self, OutOfRange> {
        if (1..=Self::MAX).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(OutOfRange::new("unix time", ms, Self::ALLOWED))
        }
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    pub fn from_system_time(t: SystemTime) -> Result<Self, OutOfRange> {
        let ms =
            t.duration_since(UNIX_EPOCH).ok().and_then(|d| i64::try_from(d.as_millis()).ok()).unwrap_or(-1);
        Self::new(ms)
    }

    /// `t` clamped into the representable range (before 1970 reads as the first millisecond):
    /// for clocks, which must always yield an instant.
    pub fn saturating_from_system_time(t: SystemTime) -> Self {
        let ms =
            t.duration_since(UNIX_EPOCH).map_or(1, |d| i64::try_from(d.as_millis()).unwrap_or(Self::MAX));
        Self(ms.clamp(1, Self::MAX))
    }

    pub fn to_system_time(self) -> SystemTime {
        // `self.0` is in 1..=MAX, so it is positive and the addition cannot overflow.
        UNIX_EPOCH + Duration::from_millis(self.0.unsigned_abs())
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: UnixMillis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0).max(0).unsigned_abs())
    }
}

impl TryFrom<i64> for UnixMillis {
    type Error = OutOfRange;
    fn try_from(ms: i64) -> Result<Self, OutOfRange> {
        Self::new(ms)
    }
}

impl From<UnixMillis> for i64 {
    fn from(t: UnixMillis) -> i64 {
        t.0
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// `#[serde(with = "netdiag_model::time::as_millis")]`: a `Duration` as whole milliseconds.
pub mod as_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// `#[serde(with = "netdiag_model::time::as_micros")]`: a `Duration` as whole microseconds.
pub mod as_micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_micros)
    }
}

/// Like [`as_millis`] for `Option<Duration>` (`null` for none).
pub mod as_millis_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_millis))
    }
}

/// Like [`as_micros`] for `Option<Duration>` (`null` for none).
pub mod as_micros_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|o| o.map(Duration::from_micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_millis_bounds() {
        for bad in [i64::MIN, -1, 0, UnixMillis::MAX + 1, i64::MAX] {
            assert!(UnixMillis::new(bad).is_err(), "{bad}");
        }
        let t = UnixMillis::new(1_700_000_000_123).unwrap();
        assert_eq!(UnixMillis::from_system_time(t.to_system_time()), Ok(t));
        assert!(UnixMillis::from_system_time(UNIX_EPOCH).is_err());
        assert_eq!(t.since(UnixMillis::new(1_700_000_000_000).unwrap()), Duration::from_millis(123));
        assert_eq!(UnixMillis::new(1).unwrap().since(t), Duration::ZERO);
    }

    #[test]
    fn durations_serialize_as_numbers() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct S {
            #[serde(with = "as_millis")]
            a: Duration,
            #[serde(with = "as_micros")]
            b: Duration,
            #[serde(with = "as_millis_opt")]
            c: Option<Duration>,
            #[serde(with = "as_micros_opt")]
            d: Option<Duration>,
        }
        let s = S {
            a: Duration::from_millis(1500),
            b: Duration::from_micros(7),
            c: None,
            d: Some(Duration::from_micros(9)),
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"a":1500,"b":7,"c":null,"d":9}"#);
        assert_eq!(serde_json::from_str::<S>(&json).unwrap(), s);
        assert!(serde_json::from_str::<UnixMillis>("0").is_err());
    }

    #[test]
    fn clocks_saturate_into_range() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(UnixMillis::saturating_from_system_time(UNIX_EPOCH).get(), 1);
        let late = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(UnixMillis::saturating_from_system_time(late).get(), UnixMillis::MAX);
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(UnixMillis::saturating_from_system_time(t).get(), 1_795_000_000_123);
    }
}
