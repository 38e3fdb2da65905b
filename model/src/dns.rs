//! DNS vocabulary: names as queried (`DnsName`), the record types and transports we probe with.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::text::excerpt;

/// Why a DNS name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsNameError {
    #[error("DNS name is empty")]
    Empty,
    #[error("DNS name {value:?} is {len} characters long, more than the 253 allowed")]
    TooLong { value: String, len: usize },
    #[error("DNS name {value:?} has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel { value: String },
    #[error("DNS name {value:?} has a label longer than 63 characters")]
    LongLabel { value: String },
    #[error("DNS name {value:?} contains {ch:?}: use ASCII letters, digits, '-', '_' and '.' between labels")]
    BadChar { value: String, ch: char },
}

/// A DNS name as a probe queries it (before search-list expansion): at most 253 characters
/// (plus an optional trailing dot for a fully qualified name), labels of 1 to 63 ASCII letters,
/// digits, `-` or `_`. Case is kept as given.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DnsName(String);

impl DnsName {
    pub const MAX_LEN: usize = 253;

    pub fn new(s: impl Into<String>) -> Result<Self, DnsNameError> {
        let s = s.into();
        let body = s.strip_suffix('.').unwrap_or(&s);
        if body.is_empty() {
            return Err(DnsNameError::Empty);
        }
        if body.len() > Self::MAX_LEN {
            return Err(DnsNameError::TooLong { value: excerpt(&s), len: body.len() });
        }
        if let Some(ch) = body.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(DnsNameError::BadChar { value: excerpt(&s), ch });
        }
        for label in body.split('.') {
            if label.is_empty() {
                return Err(DnsNameError::EmptyLabel { value: excerpt(&s) });
            }
            if label.len() > 63 {
                return Err(DnsNameError::LongLabel { value: excerpt(&s) });
            }
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Ends with a dot: the resolver will not append search domains.
    pub fn is_fully_qualified(&self) -> bool {
        self.0.ends_with('.')
    }

    /// Number of dots inside the name (what `ndots` is compared against).
    pub fn dots(&self) -> usize {
        self.0.trim_end_matches('.').matches('.').count()
    }
}

impl TryFrom<String> for DnsName {
    type Error = DnsNameError;
    fn try_from(s: String) -> Result<Self, DnsNameError> {
        Self::new(s)
    }
}

impl From<DnsName> for String {
    fn from(n: DnsName) -> String {
        n.0
    }
}

impl FromStr for DnsName {
    type Err = DnsNameError;
    fn from_str(s: &str) -> Result<Self, DnsNameError> {
        Self::new(s)
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The record type a DNS probe asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    Aaaa,
}

impl RecordType {
    /// Whether `ip` can be an answer to a query of this type.
    pub fn matches(self, ip: &IpAddr) -> bool {
        match self {
            RecordType::A => ip.is_ipv4(),
            RecordType::Aaaa => ip.is_ipv6(),
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
        })
    }
}

/// How a DNS query travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsTransport {
    Udp,
    Tcp,
}

impl fmt::Display for DnsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DnsTransport::Udp => "udp",
            DnsTransport::Tcp => "tcp",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_names() {
        for ok in [
            "kubernetes.default",
            "demo-pd.tidb.svc.cluster.local.",
            "_etcd-server._tcp.example.com",
            "Example.COM",
            "a",
            &format!("{}.{}", "a".repeat(63), "b".repeat(63)),
        ] {
            assert!(DnsName::new(ok).is_ok(), "{ok}");
        }
        let max = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        assert_eq!(max.len(), 253);
        assert!(DnsName::new(max.clone()).is_ok());
        assert!(DnsName::new(format!("{max}.")).is_ok(), "a trailing dot does not count");
    }

    #[test]
    fn rejects_with_the_rule() {
        type Check = fn(&DnsNameError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, DnsNameError::Empty)),
            (".", |e| matches!(e, DnsNameError::Empty)),
            ("a..b", |e| matches!(e, DnsNameError::EmptyLabel { .. })),
            (".a", |e| matches!(e, DnsNameError::EmptyLabel { .. })),
            ("a.b..", |e| matches!(e, DnsNameError::EmptyLabel { .. })),
            ("a b", |e| matches!(e, DnsNameError::BadChar { ch: ' ', .. })),
            ("ä.com", |e| matches!(e, DnsNameError::BadChar { .. })),
            ("a/b", |e| matches!(e, DnsNameError::BadChar { ch: '/', .. })),
        ];
        for (input, check) in cases {
            let err = DnsName::new(*input).unwrap_err();
            assert!(check(&err), "{input:?}: {err}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(matches!(DnsName::new(long_label), Err(DnsNameError::LongLabel { .. })));
        let err = DnsName::new("a.".repeat(5000)).unwrap_err();
        assert!(matches!(err, DnsNameError::TooLong { .. }));
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn helpers() {
        let n = DnsName::new("kubernetes.default.").unwrap();
        assert!(n.is_fully_qualified());
        assert_eq!(n.dots(), 1);
        assert!(RecordType::A.matches(&"10.0.0.1".parse().unwrap()));
        assert!(!RecordType::Aaaa.matches(&"10.0.0.1".parse().unwrap()));
        assert_eq!(serde_json::to_string(&RecordType::Aaaa).unwrap(), "\"AAAA\"");
    }
}
