//! Query parameters, parsed once at the edge into domain types. Strict on purpose: an unknown
//! parameter (`?levle=node`), a repeated one, an empty value or a value outside the allowed
//! set is a 400 whose message names the parameter and lists what it accepts, rather than a
//! silently different answer.

use netdiag_model::NodeName;
use netdiag_model::matrix::{CellStatus, MatrixLevel, MatrixQuery};
use netdiag_model::probe::ProbeKind;
use netdiag_model::text::excerpt;

use super::v1::ErrorResponse;

/// `level` values.
pub(super) const LEVELS: [&str; 2] = ["pod", "node"];
/// `kind` values.
pub(super) const KINDS: [&str; 6] = ["icmp", "tcp", "dns", "http", "mtu", "all"];
/// `status` values.
pub(super) const STATUSES: [&str; 4] = ["ok", "degraded", "failed", "unknown"];
/// What `node` accepts, for the error message.
const NODE_NAMES: [&str; 1] = ["a node's name (with level=node)"];
/// Parameters `/api/v1/matrix` takes.
pub(super) const MATRIX_PARAMS: [&str; 4] = ["level", "kind", "node", "status"];

/// A query string that does not fit the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ParamError {
    #[error("unknown query parameter {name:?}: {}", expected(allowed))]
    Unknown { name: String, allowed: &'static [&'static str] },
    #[error("query parameter {name:?} is given more than once: give it once")]
    Repeated { name: &'static str },
    #[error("query parameter {name:?} has the value {value:?}: use one of {}", allowed.join(", "))]
    BadValue { name: &'static str, value: String, allowed: &'static [&'static str] },
    #[error("the query string cannot be decoded: {0}")]
    Malformed(String),
}

fn expected(allowed: &[&str]) -> String {
    if allowed.is_empty() {
        "this endpoint takes no parameters".to_owned()
    } else {
        format!("use {}", allowed.join(", "))
    }
}

impl ParamError {
    /// The error as the API answers it.
    pub(super) fn to_response(&self) -> ErrorResponse {
        let (parameter, allowed): (Option<String>, &[&str]) = match self {
            ParamError::Unknown { name, allowed } => (Some(name.clone()), allowed),
            ParamError::Repeated { name } => (Some((*name).to_owned()), &[]),
            ParamError::BadValue { name, allowed, .. } => (Some((*name).to_owned()), allowed),
            ParamError::Malformed(_) => (None, &[]),
        };
        ErrorResponse {
            error: self.to_string(),
            parameter,
            allowed: allowed.iter().map(|a| (*a).to_owned()).collect(),
        }
    }
}

fn one_of<T>(
    name: &'static str,
    value: &str,
    allowed: &'static [&'static str],
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, ParamError> {
    parse(value).ok_or_else(|| ParamError::BadValue { name, value: excerpt(value), allowed })
}

fn level(value: &str) -> Result<MatrixLevel, ParamError> {
    one_of("level", value, &LEVELS, |v| match v {
        "pod" => Some(MatrixLevel::Pod),
        "node" => Some(MatrixLevel::Node),
        _ => None,
    })
}

/// `None` for `all`.
fn kind(value: &str) -> Result<Option<ProbeKind>, ParamError> {
    one_of("kind", value, &KINDS, |v| match v {
        "all" => Some(None),
        v => ProbeKind::ALL.into_iter().find(|k| k.as_str() == v).map(Some),
    })
}

/// What `/api/v1/matrix` was asked: the level and kind, and the filters on its cells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct MatrixParams {
    pub(super) query: MatrixQuery,
    /// Only the node-level cells from or to this node.
    pub(super) node: Option<NodeName>,
    /// Only the cells with this status.
    pub(super) status: Option<CellStatus>,
}

impl MatrixParams {
    /// Whether `c` passes the filters (the level and kind are the snapshot's).
    pub(super) fn keeps(&self, c: &super::v1::MatrixCell) -> bool {
        self.status.is_none_or(|s| c.status == s.into())
            && self.node.as_ref().is_none_or(|n| c.source == n.as_str() || c.destination == n.as_str())
    }
}

fn status(value: &str) -> Result<CellStatus, ParamError> {
    one_of("status", value, &STATUSES, |v| match v {
        "ok" => Some(CellStatus::Ok),
        "degraded" => Some(CellStatus::Degraded),
        "failed" => Some(CellStatus::Failed),
        "unknown" => Some(CellStatus::Unknown),
        _ => None,
    })
}

/// `/api/v1/matrix`'s `level=pod|node` (default `pod`), `kind=icmp|tcp|dns|http|mtu|all`
/// (default `all`), `status=ok|degraded|failed|unknown` and, with `level=node`, `node=<name>`
/// (the cells from or to it), from the decoded query pairs in their order.
pub(super) fn matrix_query(pairs: &[(String, String)]) -> Result<MatrixParams, ParamError> {
    let mut params = MatrixParams::default();
    let (mut seen_level, mut seen_kind) = (false, false);
    for (name, value) in pairs {
        match name.as_str() {
            "level" if seen_level => return Err(ParamError::Repeated { name: "level" }),
            "kind" if seen_kind => return Err(ParamError::Repeated { name: "kind" }),
            "node" if params.node.is_some() => return Err(ParamError::Repeated { name: "node" }),
            "status" if params.status.is_some() => return Err(ParamError::Repeated { name: "status" }),
            "level" => {
                seen_level = true;
                params.query.level = level(value)?;
            }
            "kind" => {
                seen_kind = true;
                params.query.kind = kind(value)?;
            }
            "node" => params.node = Some(one_of("node", value, &NODE_NAMES, |v| NodeName::new(v).ok())?),
            "status" => params.status = Some(status(value)?),
            other => return Err(ParamError::Unknown { name: excerpt(other), allowed: &MATRIX_PARAMS }),
        }
    }
    if params.node.is_some() && params.query.level != MatrixLevel::Node {
        return Err(ParamError::BadValue {
            name: "node",
            value: params.node.as_ref().map(|n| excerpt(n.as_str())).unwrap_or_default(),
            allowed: &NODE_NAMES,
        });
    }
    Ok(params)
}

/// Parameters `/api/v1/events` takes.
pub(super) const EVENTS_PARAMS: [&str; 1] = ["limit"];
/// What `limit` accepts, for the error message.
const LIMITS: [&str; 1] = ["a whole number from 1 to 1000"];

/// `/api/v1/events`'s `limit=N` (1 to [`crate::history::MAX_EVENTS`], default 100).
pub(super) fn events_limit(pairs: &[(String, String)]) -> Result<usize, ParamError> {
    let mut limit = None;
    for (name, value) in pairs {
        match name.as_str() {
            "limit" if limit.is_some() => return Err(ParamError::Repeated { name: "limit" }),
            "limit" => {
                limit = Some(one_of("limit", value, &LIMITS, |v| {
                    v.parse::<usize>().ok().filter(|n| (1..=crate::history::MAX_EVENTS).contains(n))
                })?);
            }
            other => return Err(ParamError::Unknown { name: excerpt(other), allowed: &EVENTS_PARAMS }),
        }
    }
    Ok(limit.unwrap_or(100))
}

/// For endpoints without parameters: any parameter is an error.
pub(super) fn no_params(pairs: &[(String, String)]) -> Result<(), ParamError> {
    match pairs.first() {
        Some((name, _)) => Err(ParamError::Unknown { name: excerpt(name), allowed: &[] }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query as written in a test table.
    type Q = &'static [(&'static str, &'static str)];

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn matrix_queries() {
        use MatrixLevel::*;
        let ok: Vec<(Q, MatrixLevel, Option<ProbeKind>)> = vec![
            (&[], Pod, None),
            (&[("level", "node")], Node, None),
            (&[("kind", "all"), ("level", "pod")], Pod, None),
            (&[("kind", "icmp")], Pod, Some(ProbeKind::Icmp)),
            (&[("level", "node"), ("kind", "mtu")], Node, Some(ProbeKind::Mtu)),
        ];
        for (q, level, kind) in ok {
            assert_eq!(matrix_query(&pairs(q)).map(|p| p.query), Ok(MatrixQuery { level, kind }), "{q:?}");
        }
        let filtered = matrix_query(&pairs(&[("level", "node"), ("node", "node-2"), ("status", "failed")]));
        let filtered = filtered.unwrap();
        assert_eq!(filtered.node.as_ref().map(|n| n.as_str()), Some("node-2"));
        assert_eq!(filtered.status, Some(CellStatus::Failed));
        assert_eq!(matrix_query(&pairs(&[("status", "ok")])).unwrap().status, Some(CellStatus::Ok));
    }

    #[test]
    fn every_kind_and_level_listed_parses() {
        for k in KINDS {
            assert!(kind(k).is_ok(), "{k}");
        }
        for l in LEVELS {
            assert!(level(l).is_ok(), "{l}");
        }
        for k in ProbeKind::ALL {
            assert!(KINDS.contains(&k.as_str()), "{k} is missing from KINDS");
        }
    }

    #[test]
    fn bad_queries_name_the_parameter_and_the_allowed_values() {
        let cases: Vec<(Q, &str, &str)> = vec![
            (&[("level", "cluster")], "level", "use one of pod, node"),
            (&[("level", "")], "level", "\"\""),
            (&[("level", "Pod")], "level", "use one of pod, node"),
            (&[("kind", "udp")], "kind", "use one of icmp, tcp, dns, http, mtu, all"),
            (&[("levle", "node")], "levle", "use level, kind, node, status"),
            (&[("status", "broken")], "status", "use one of ok, degraded, failed, unknown"),
            (&[("level", "node"), ("node", "Node 1")], "node", "a node's name"),
            (&[("node", "node-1")], "node", "with level=node"),
            (&[("level", "node"), ("node", "a"), ("node", "b")], "node", "more than once"),
            (&[("level", "pod"), ("level", "node")], "level", "more than once"),
            (&[("kind", "tcp"), ("kind", "tcp")], "kind", "more than once"),
        ];
        for (q, param, text) in cases {
            let err = matrix_query(&pairs(q)).unwrap_err();
            let response = err.to_response();
            assert_eq!(response.parameter.as_deref(), Some(param), "{q:?}");
            assert!(response.error.contains(text), "{q:?}: {}", response.error);
            assert!(response.error.contains(param), "{q:?}: {}", response.error);
        }
        let long = "x".repeat(10_000);
        let err = matrix_query(&pairs(&[("kind", &long)])).unwrap_err().to_string();
        assert!(err.len() < 300, "bad values are quoted as an excerpt: {}", err.len());
    }

    #[test]
    fn endpoints_without_parameters_reject_any() {
        assert_eq!(no_params(&[]), Ok(()));
        let err = no_params(&pairs(&[("verbose", "1")])).unwrap_err();
        assert_eq!(err.to_response().parameter.as_deref(), Some("verbose"));
        assert!(err.to_string().ends_with("this endpoint takes no parameters"), "{err}");
    }
}
