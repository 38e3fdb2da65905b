//! HTTP vocabulary for HTTP probes: the request path and the answer's status code.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::OutOfRange;
use crate::text::{TextError, check_token, excerpt, token_type};

fn check_path(s: &str) -> Result<(), TextError> {
    const WHAT: &str = "HTTP path";
    check_token(WHAT, s, HttpPath::MAX_BYTES, |c| c.is_ascii_graphic())?;
    if !s.starts_with('/') {
        let ch = s.chars().next().unwrap_or(' ');
        return Err(TextError::BadChar { what: WHAT, value: excerpt(s), ch });
    }
    Ok(())
}

token_type!(
    /// The path (and query) an HTTP probe requests: starts with `/`, printable ASCII without
    /// spaces, at most 2048 bytes.
    HttpPath,
    check = check_path
);

impl HttpPath {
    pub const MAX_BYTES: usize = 2048;

    /// `/`, what an HTTP probe requests when the plan names no path.
    pub fn root() -> Self {
        Self("/".to_owned())
    }
}

/// An HTTP status code, 100 to 599.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct HttpStatus(u16);

impl HttpStatus {
    pub fn new(code: u32) -> Result<Self, OutOfRange> {
        match u16::try_from(code) {
            Ok(c @ 100..=599) => Ok(Self(c)),
            _ => Err(OutOfRange::new("HTTP status", code, "100 to 599")),
        }
    }

    pub const fn get(self) -> u16 {
        self.0
    }

    /// 2xx or 3xx: what an HTTP probe counts as a success.
    pub fn is_success(self) -> bool {
        (200..400).contains(&self.0)
    }
}

impl TryFrom<u16> for HttpStatus {
    type Error = OutOfRange;
    fn try_from(code: u16) -> Result<Self, OutOfRange> {
        Self::new(code.into())
    }
}

impl From<HttpStatus> for u16 {
    fn from(s: HttpStatus) -> u16 {
        s.0
    }
}

impl fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(HttpPath::new("/healthz?verbose=1").is_ok());
        assert_eq!(HttpPath::root().as_str(), "/");
        for bad in ["", "healthz", "/a b", "/\n", &format!("/{}", "a".repeat(2048))] {
            assert!(HttpPath::new(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<HttpPath>("\"healthz\"").is_err());
    }

    #[test]
    fn statuses() {
        assert!(HttpStatus::new(99).is_err());
        assert!(HttpStatus::new(600).is_err());
        assert!(HttpStatus::new(65_536 + 200).is_err());
        assert!(HttpStatus::new(204).unwrap().is_success());
        assert!(!HttpStatus::new(503).unwrap().is_success());
    }
}
