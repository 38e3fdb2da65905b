//! `POST /api/v1/probe`: an on-demand run through [`crate::runs::dispatch`], answered once it
//! is done. The body must be declared `application/json` (no HTML form can send that, and a
//! cross-origin script only after a CORS preflight, which the collector never grants) and is
//! read by hand so every mistake names its field; the caller's address comes from the
//! connection (`ConnectInfo`), its token from `Authorization: Bearer` or `X-Netdiag-Token`.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use netdiag_model::http::HttpPath;
use netdiag_model::probe::Source;
use netdiag_model::run::{ProbeRunRequest, RunTarget, RunTimeout};
use netdiag_model::text::excerpt;
use serde_json::Value;
use tokio::time::Instant;

use super::Shared;
use super::routes::{ApiError, no_store};
use super::v1::{ErrorResponse, ProbeResponse};
use crate::runs::auth::{Credentials, TOKEN_HEADER};
use crate::runs::dispatch::{Caller, RefusalKind, Refused, RunRecord};

const FIELDS: &str = "from, to, http_path and timeout_ms";

/// A body that is not a run request; `field` names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BodyError {
    field: Option<String>,
    pub(super) message: String,
}

impl BodyError {
    fn field(field: &str, message: impl Into<String>) -> Self {
        BodyError { field: Some(field.to_owned()), message: format!("{field}: {}", message.into()) }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        let mut body = ErrorResponse::new(e.message);
        body.parameter = e.field;
        ApiError::new(StatusCode::BAD_REQUEST, body)
    }
}

fn string<'a>(
    obj: &'a serde_json::Map<String, Value>,
    field: &str,
    example: &str,
) -> Result<Option<&'a str>, BodyError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(BodyError::field(
            field,
            format!("must be a string like {example:?}, not {}", json_excerpt(other)),
        )),
    }
}

/// The start of a JSON value as the caller wrote it: a body can hold megabytes in one field,
/// and an error quotes only enough to recognise it.
fn json_excerpt(v: &Value) -> String {
    excerpt(&v.to_string())
}

fn required<'a>(
    obj: &'a serde_json::Map<String, Value>,
    field: &str,
    example: &str,
) -> Result<&'a str, BodyError> {
    string(obj, field, example)?
        .ok_or_else(|| BodyError::field(field, format!("is required, e.g. {example:?}")))
}

/// Reads `{"from", "to", "http_path"?, "timeout_ms"?}`.
pub(super) fn parse(body: &[u8]) -> Result<ProbeRunRequest, BodyError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| BodyError {
        field: None,
        message: format!(
            "the body is not JSON ({e}); send {{\"from\": \"<ns>/<pod>\", \"to\": \"svc/<ns>/<name>:<port>\"}}"
        ),
    })?;
    let Value::Object(obj) = value else {
        return Err(BodyError {
            field: None,
            message: format!("the body must be a JSON object with {FIELDS}"),
        });
    };
    if let Some(unknown) =
        obj.keys().find(|k| !["from", "to", "http_path", "timeout_ms"].contains(&k.as_str()))
    {
        let hint =
            if unknown == "port" { " (put the port in \"to\", e.g. \"tidb/demo-pd-0:2379\")" } else { "" };
        return Err(BodyError::field(
            &excerpt(unknown),
            format!("unknown field; the body has {FIELDS}{hint}"),
        ));
    }
    let from = required(&obj, "from", "tidb/demo-pd-0")?;
    let from: Source = from.parse().map_err(|e| BodyError::field("from", format!("{e}")))?;
    let to = required(&obj, "to", "svc/tidb/demo-pd:2379")?;
    let to: RunTarget = to.parse().map_err(|e| BodyError::field("to", format!("{e}")))?;
    let http_path = string(&obj, "http_path", "/pd/api/v1/members")?
        .map(HttpPath::new)
        .transpose()
        .map_err(|e| BodyError::field("http_path", format!("{e}")))?;
    let timeout = match obj.get("timeout_ms") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let ms = n
                .as_u64()
                .and_then(|ms| u32::try_from(ms).ok())
                .ok_or_else(|| BodyError::field("timeout_ms", format!("{n} is not 1 to 600000")))?;
            Some(RunTimeout::from_millis(ms).map_err(|e| BodyError::field("timeout_ms", format!("{e}")))?)
        }
        Some(other) => {
            return Err(BodyError::field(
                "timeout_ms",
                format!("must be a number of milliseconds, not {}", json_excerpt(other)),
            ));
        }
    };
    Ok(ProbeRunRequest { from, to, http_path, timeout })
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        let status = match r.kind {
            RefusalKind::BadRequest => StatusCode::BAD_REQUEST,
            RefusalKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            RefusalKind::Forbidden => StatusCode::FORBIDDEN,
            RefusalKind::NotFound => StatusCode::NOT_FOUND,
            RefusalKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            RefusalKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut e = ApiError::new(status, ErrorResponse::new(r.message.clone()));
        if let Some(secs) = r.retry_after_secs() {
            e.headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if r.kind == RefusalKind::Unauthenticated {
            e.headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        e
    }
}

/// The caller as the connection and headers describe it.
pub(super) fn caller(extensions: &Extensions, headers: &HeaderMap) -> Caller {
    Caller {
        addr: extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()),
        credentials: Credentials::from_headers(
            headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes),
            headers.get(TOKEN_HEADER).map(HeaderValue::as_bytes),
        ),
    }
}

/// The refusal (415) of a body not declared as JSON, before anything else: a refused request takes
/// nothing from the caller's rate limit.
fn not_json(headers: &HeaderMap) -> Option<ApiError> {
    let given = headers.get(header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = given.as_deref().map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
    if essence.as_deref() == Some("application/json") {
        return None;
    }
    let got = match &given {
        Some(t) => format!("got Content-Type {:?}", excerpt(t)),
        None => "the request has no Content-Type".to_owned(),
    };
    let mut e = ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorResponse::new(format!(
            "POST /api/v1/probe takes a JSON body: send `Content-Type: application/json` ({got}); \
             with curl: -H 'Content-Type: application/json'"
        )),
    );
    e.headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    Some(e)
}

/// `POST /api/v1/probe`.
pub(super) async fn probe(
    State(s): State<Shared>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(refusal) = not_json(&headers) {
        return Err(refusal);
    }
    let admitted = s.runs.admit(&caller(&extensions, &headers))?;
    let request = parse(&body)?;
    let started = Instant::now();
    // Dropping this future (the caller hung up) drops the stream, which cancels the run.
    let mut stream = s.runs.start(admitted, request.clone()).await?;
    let record = RunRecord::collect(&mut stream).await;
    let response = ProbeResponse::of_record(stream.run_id(), &request, &record, started.elapsed());
    Ok((no_store(), Json(response)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> BodyError {
        parse(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_good_body_parses() {
        let r = parse(br#"{"from":"tidb/demo-pd-0","to":"svc/tidb/demo-pd:2379","http_path":"/pd/api/v1/members","timeout_ms":1500}"#)
            .unwrap();
        assert_eq!(r.from.to_string(), "tidb/demo-pd-0");
        assert_eq!(r.to.to_string(), "svc/tidb/demo-pd:2379");
        assert_eq!(r.http_path.unwrap().as_str(), "/pd/api/v1/members");
        assert_eq!(r.timeout.unwrap().as_millis(), 1500);
        let r = parse(br#"{"from":"node/node-1","to":"10.96.0.20:2379","http_path":null}"#).unwrap();
        assert!(r.http_path.is_none() && r.timeout.is_none());
    }

    #[test]
    fn every_mistake_names_its_field() {
        let cases = [
            (r#"{"to":"a/b"}"#, Some("from"), "is required"),
            (r#"{"from":"a/b"}"#, Some("to"), "is required"),
            (r#"{"from":5,"to":"a/b"}"#, Some("from"), "must be a string"),
            (r#"{"from":"Bad/Pod","to":"a/b"}"#, Some("from"), "from:"),
            (r#"{"from":"a/b","to":"svc/a/b"}"#, Some("to"), "needs a port"),
            (r#"{"from":"a/b","to":"a/c","timeout_ms":0}"#, Some("timeout_ms"), "timeout"),
            (r#"{"from":"a/b","to":"a/c","timeout_ms":-1}"#, Some("timeout_ms"), "not 1 to 600000"),
            (r#"{"from":"a/b","to":"a/c","timeout_ms":"5"}"#, Some("timeout_ms"), "must be a number"),
            (r#"{"from":"a/b","to":"a/c","http_path":"no-slash"}"#, Some("http_path"), "http_path:"),
            (r#"{"from":"a/b","to":"a/c","port":2379}"#, Some("port"), "put the port in \"to\""),
            (r#"["from"]"#, None, "JSON object"),
            (r#"{"from":"#, None, "not JSON"),
        ];
        for (body, field, text) in cases {
            let e = err(body);
            assert_eq!(e.field.as_deref(), field, "{body}: {e:?}");
            assert!(e.message.contains(text), "{body}: {}", e.message);
        }
    }

    /// Found by fuzzing (`fuzz/`'s `api_probe_body`): a field of the wrong type was quoted whole.
    #[test]
    fn values_of_the_wrong_type_are_quoted_as_an_excerpt() {
        let long = "ab~".repeat(5_000);
        for body in [
            format!(r#"{{"from":"a/b","to":"a/c","timeout_ms":"{long}"}}"#),
            format!(r#"{{"from":["{long}"],"to":"a/c"}}"#),
            format!(r#"{{"from":"a/b","to":{{"x":"{long}"}}}}"#),
        ] {
            let e = err(&body);
            assert!(e.message.len() < 300, "{} bytes: {}", e.message.len(), excerpt(&e.message));
            assert!(e.message.contains('…'), "{}", e.message);
        }
    }
}
