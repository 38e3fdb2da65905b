//! Validated names: parsed once at the edge, trusted everywhere inside.

use std::fmt;
use std::num::NonZeroU16;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Why a name was rejected; the message names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {value:?} is longer than {max} characters")]
    TooLong { what: &'static str, value: String, max: usize },
    #[error(
        "{what} {value:?} is not a valid name: use lowercase letters, digits and '-' (and '.' between labels), starting and ending with a letter or digit"
    )]
    Invalid { what: &'static str, value: String },
    #[error("{what} {value:?} must look like <namespace>/<name>")]
    NotQualified { what: &'static str, value: String },
    #[error("port {value:?} is not a number from 1 to 65535")]
    BadPort { value: String },
}

pub(crate) fn shorten(s: &str) -> String {
    // Hostile input can be megabytes long; error messages quote only its start.
    const LIMIT: usize = 80;
    if s.len() <= LIMIT {
        return s.to_owned();
    }
    let mut end = LIMIT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn is_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Checks a Kubernetes DNS-1123 subdomain (pod, service and node names).
fn check_subdomain(what: &'static str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > 253 {
        return Err(NameError::TooLong { what, value: shorten(s), max: 253 });
    }
    if !s.split('.').all(is_label) {
        return Err(NameError::Invalid { what, value: shorten(s) });
    }
    Ok(())
}

/// Checks a Kubernetes DNS-1123 label (namespaces).
fn check_label(what: &'static str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > 63 {
        return Err(NameError::TooLong { what, value: shorten(s), max: 63 });
    }
    if !is_label(s) {
        return Err(NameError::Invalid { what, value: shorten(s) });
    }
    Ok(())
}

// Names are shared, immutable text (`Arc<str>`): cloning one — a result batch's table entry
// into each of its results, a cell's key — is a reference count, not an allocation.
macro_rules! validated_string {
    ($(#[$doc:meta])* $ty:ident, $what:literal, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(Arc<str>);

        impl $ty {
            pub fn new(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                $check($what, &s)?;
                Ok(Self(Arc::from(s)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl From<$ty> for String {
            fn from(n: $ty) -> String {
                String::from(&*n.0)
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $check($what, s)?;
                Ok(Self(Arc::from(s)))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

validated_string!(
    /// A pod or service name (DNS-1123 subdomain).
    Name,
    "name",
    check_subdomain
);
validated_string!(
    /// A Kubernetes namespace (DNS-1123 label).
    Namespace,
    "namespace",
    check_label
);
validated_string!(
    /// A node name (DNS-1123 subdomain).
    NodeName,
    "node name",
    check_subdomain
);

macro_rules! namespaced_ref {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty {
            pub namespace: Namespace,
            pub name: Name,
        }

        impl $ty {
            pub fn new(namespace: Namespace, name: Name) -> Self {
                Self { namespace, name }
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                let (ns, name) = s.split_once('/').ok_or_else(|| NameError::NotQualified {
                    what: $what,
                    value: shorten(s),
                })?;
                Ok(Self { namespace: ns.parse()?, name: name.parse()? })
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                s.parse()
            }
        }

        impl From<$ty> for String {
            fn from(r: $ty) -> String {
                r.to_string()
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}/{}", self.namespace, self.name)
            }
        }
    };
}

namespaced_ref!(
    /// A pod, written `<namespace>/<name>`.
    PodRef,
    "pod"
);
namespaced_ref!(
    /// A service, written `<namespace>/<name>`.
    ServiceRef,
    "service"
);

/// A TCP or UDP port; zero is not a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u16")]
pub struct Port(NonZeroU16);

impl Port {
    pub const fn get(self) -> u16 {
        self.0.get()
    }

    pub fn new(n: u32) -> Result<Self, NameError> {
        u16::try_from(n)
            .ok()
            .and_then(NonZeroU16::new)
            .map(Port)
            .ok_or_else(|| NameError::BadPort { value: n.to_string() })
    }
}

impl TryFrom<u32> for Port {
    type Error = NameError;
    fn try_from(n: u32) -> Result<Self, NameError> {
        Port::new(n)
    }
}

impl From<Port> for u16 {
    fn from(p: Port) -> u16 {
        p.get()
    }
}

impl FromStr for Port {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        s.parse::<u32>()
            .ok()
            .and_then(|n| Port::new(n).ok())
            .ok_or_else(|| NameError::BadPort { value: shorten(s) })
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kubernetes_names() {
        for ok in ["demo-pd-0", "a", "kube-dns", "demo.pd-1", "0abc"] {
            assert!(Name::new(ok).is_ok(), "{ok}");
        }
        assert!(NodeName::new("node-1.example").is_ok());
        assert!(Namespace::new("kube-system").is_ok());
    }

    #[test]
    fn rejects_bad_names_with_the_rule() {
        for bad in ["", "-a", "a-", "A", "a_b", "a..b", "a/b", "ä"] {
            assert!(Name::new(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Namespace::new("a.b").is_err(), "namespaces are labels, not subdomains");
        let long = "a".repeat(10_000);
        let err = Name::new(long).unwrap_err().to_string();
        assert!(err.len() < 200, "error quotes only the start of huge input: {err}");
    }

    #[test]
    fn pod_refs_round_trip() {
        let p: PodRef = "tidb/demo-pd-0".parse().unwrap();
        assert_eq!(p.namespace.as_str(), "tidb");
        assert_eq!(p.to_string(), "tidb/demo-pd-0");
        assert!(matches!("demo-pd-0".parse::<PodRef>(), Err(NameError::NotQualified { .. })));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "\"tidb/demo-pd-0\"");
        assert!(serde_json::from_str::<PodRef>("\"TIDB/x\"").is_err());
    }

    #[test]
    fn ports_are_nonzero_u16() {
        assert_eq!("2379".parse::<Port>().unwrap().get(), 2379);
        for bad in ["0", "65536", "-1", "x", ""] {
            assert!(bad.parse::<Port>().is_err(), "{bad}");
        }
        assert!(Port::new(70000).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in ".*") {
            let _ = Name::new(s.clone());
            let _ = s.parse::<PodRef>();
            let _ = s.parse::<Port>();
        }
    }
}
