//! [`ConfigDuration`]: a duration as people write it in flags and files — `500ms`, `2s`, `1.5s`,
//! `1m`, `1h` — parsed once, printed back in the same form.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration written with its unit (`ms`, `s`, `m`, `h`); a fraction is allowed (`1.5s`), a
/// bare number is not (is `2` seconds or milliseconds?), except `0`. Whole milliseconds: finer
/// values are refused rather than rounded, as every consumer works in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConfigDuration(Duration);

/// Text that is not a [`ConfigDuration`]; the message quotes it and shows the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{text:?} is not a duration: write a number and a unit, like 500ms, 2s, 1.5s, 1m or 1h")]
    Malformed { text: String },
    #[error("{text:?} has unit {unit:?}: use ms, s, m or h")]
    Unit { text: String, unit: String },
    #[error("{text:?} is not a whole number of milliseconds: netdiag times in milliseconds")]
    SubMillisecond { text: String },
    #[error("{text:?} is too long a duration")]
    TooLong { text: String },
}

impl ConfigDuration {
    pub const fn new(d: Duration) -> Self {
        Self(d)
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<ConfigDuration> for Duration {
    fn from(d: ConfigDuration) -> Self {
        d.0
    }
}

impl FromStr for ConfigDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, DurationError> {
        let t = text.trim();
        let malformed = || DurationError::Malformed { text: text.to_owned() };
        if t == "0" {
            return Ok(Self(Duration::ZERO));
        }
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(malformed)?;
        let (number, unit) = t.split_at(split);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() || fraction.contains('.') || (number.contains('.') && fraction.is_empty()) {
            return Err(malformed());
        }
        let per_unit_ms: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(DurationError::Unit { text: text.to_owned(), unit: unit.to_owned() }),
        };
        // Exact decimal arithmetic: `whole.fraction × unit` in units of 10^-digits ms.
        let digits = u32::try_from(fraction.len()).map_err(|_| malformed())?;
        let scale = 10u128.checked_pow(digits).ok_or_else(malformed)?;
        let too_long = || DurationError::TooLong { text: text.to_owned() };
        let whole: u128 = whole.parse().map_err(|_| too_long())?;
        let fraction: u128 =
            if fraction.is_empty() { 0 } else { fraction.parse().map_err(|_| too_long())? };
        let scaled = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(fraction))
            .and_then(|v| v.checked_mul(per_unit_ms))
            .ok_or_else(too_long)?;
        if scaled % scale != 0 {
            return Err(DurationError::SubMillisecond { text: text.to_owned() });
        }
        let ms = u64::try_from(scaled / scale).map_err(|_| too_long())?;
        Ok(Self(Duration::from_millis(ms)))
    }
}

impl TryFrom<String> for ConfigDuration {
    type Error = DurationError;
    fn try_from(s: String) -> Result<Self, DurationError> {
        s.parse()
    }
}

impl From<ConfigDuration> for String {
    fn from(d: ConfigDuration) -> Self {
        d.to_string()
    }
}

/// The largest unit that writes it exactly: `500ms`, `2s`, `90s`, `2m`, `1h`.
impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            0 => f.write_str("0"),
            ms if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000),
            ms if ms % 60_000 == 0 => write!(f, "{}m", ms / 60_000),
            ms if ms % 1_000 == 0 => write!(f, "{}s", ms / 1_000),
            ms => write!(f, "{ms}ms"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_write() {
        for (text, ms) in [
            ("500ms", 500),
            ("2s", 2_000),
            ("1.5s", 1_500),
            ("0.25s", 250),
            (" 30s ", 30_000),
            ("1m", 60_000),
            ("1.5m", 90_000),
            ("1h", 3_600_000),
            ("0", 0),
            ("0ms", 0),
        ] {
            assert_eq!(text.parse::<ConfigDuration>(), Ok(ConfigDuration::from_millis(ms)), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_ambiguous_or_wrong_and_says_why() {
        for (text, says) in [
            ("2", "write a number and a unit"),
            ("", "write a number and a unit"),
            ("s", "write a number and a unit"),
            (".5s", "write a number and a unit"),
            ("1.s", "write a number and a unit"),
            ("-1s", "write a number and a unit"),
            ("1.2.3s", "write a number and a unit"),
            ("2sec", "unit \"sec\""),
            ("10us", "unit \"us\""),
            ("1.5ms", "whole number of milliseconds"),
            ("0.0001s", "whole number of milliseconds"),
            ("99999999999999999999999h", "too long"),
            ("18446744073709551616ms", "too long"),
        ] {
            let err = text.parse::<ConfigDuration>().unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn prints_back_what_parses_to_the_same() {
        for (ms, text) in [
            (0, "0"),
            (500, "500ms"),
            (1_500, "1500ms"),
            (2_000, "2s"),
            (90_000, "90s"),
            (120_000, "2m"),
            (7_200_000, "2h"),
        ] {
            let d = ConfigDuration::from_millis(ms);
            assert_eq!(d.to_string(), text);
            assert_eq!(text.parse::<ConfigDuration>(), Ok(d));
        }
    }

    #[test]
    fn reads_from_yaml_as_text() {
        #[derive(Deserialize)]
        struct File {
            interval: ConfigDuration,
        }
        let f: File = serde_saphyr::from_str("interval: 10s\n").unwrap();
        assert_eq!(f.interval, ConfigDuration::from_secs(10));
        assert!(serde_saphyr::from_str::<File>("interval: 10\n").is_err());
    }
}
