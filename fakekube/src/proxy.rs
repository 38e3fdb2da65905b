//! The service proxy subresource, `…/namespaces/{ns}/services/[scheme:]{name}[:port]/proxy/{path}`,
//! as the API server serves it: RBAC on `services/proxy` (the verb follows the method: GET is
//! `get`, POST `create`, …), the Service looked up (404 when absent), its port matched by name or
//! number (503 when none matches), then the request forwarded over HTTP to an endpoint and the
//! backend's status, headers and body passed back.
//!
//! The endpoint is what [`crate::FakeKube::proxy_service`] registered for that Service port: the
//! fake runs no pods, so a test names the loopback address that stands in for the endpoint (503
//! "no endpoints available" when none is registered, as for a Service without ready endpoints).
//! Forwarding is what the real API server does: method, path after `proxy`, query, body and
//! headers, minus hop-by-hop headers and `Authorization` (the API server's authentication
//! consumes it, so the user's credentials never reach the backend); `Host` stays the one the
//! client sent; `X-Forwarded-For` and `X-Forwarded-Uri` are added.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use axum::response::Response;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::http::{Shared, failure, forbidden_as};
use crate::store::Kind;

/// A parsed proxy path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProxyPath {
    pub namespace: String,
    /// The path segment as given (`http:netdiag-collector:http`): RBAC errors name it.
    pub spec: String,
    pub scheme: String,
    pub name: String,
    /// The port name or number; empty: the Service's only (first) port.
    pub port: String,
    /// The backend path, starting with `/`.
    pub path: String,
}

/// `Some` when `path` is a service proxy path.
pub(crate) fn parse(path: &str) -> Option<ProxyPath> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (namespace, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("services/")?;
    let (spec, rest) = rest.split_once('/')?;
    let backend = if rest == "proxy" { "/" } else { rest.strip_prefix("proxy")? };
    if !backend.starts_with('/') || namespace.is_empty() || spec.is_empty() {
        return None;
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    Some(ProxyPath {
        namespace: namespace.to_string(),
        spec: spec.to_string(),
        scheme: scheme.to_string(),
        name: name.to_string(),
        port: port.to_string(),
        path: backend.to_string(),
    })
}

/// The RBAC verb the API server checks for a proxy request with this method.
fn verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn copy_headers(from: &HeaderMap, drop_authorization: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in from {
        if HOP_BY_HOP.contains(&name.as_str()) || (drop_authorization && name == header::AUTHORIZATION) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Serves one proxy request.
pub(crate) async fn serve(
    shared: &Shared,
    target: ProxyPath,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = forbidden_as(
        shared,
        verb(&method),
        "services/proxy",
        &target.spec,
        "system:anonymous",
        Some(&target.namespace),
    ) {
        return refusal;
    }
    let backend = {
        let store = shared.store();
        let Some(service) = store.get(Kind::Service, &target.namespace, &target.name) else {
            return failure(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("services \"{}\" not found", target.name),
            );
        };
        let ports = service["spec"]["ports"].as_array().cloned().unwrap_or_default();
        let port = ports.iter().find(|p| {
            target.port.is_empty()
                || p["name"].as_str() == Some(target.port.as_str())
                || p["port"].as_u64().is_some_and(|n| n.to_string() == target.port)
        });
        let Some(port) = port else {
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &format!("no service port {:?} found for service {:?}", target.port, target.name),
            );
        };
        let keys = [port["name"].as_str().map(str::to_string), port["port"].as_u64().map(|n| n.to_string())];
        let found = keys.into_iter().flatten().find_map(|key| {
            shared.proxies().get(&(target.namespace.clone(), target.name.clone(), key)).copied()
        });
        match found {
            Some(addr) => addr,
            None => {
                return failure(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    &format!("no endpoints available for service {:?}", target.name),
                );
            }
        }
    };
    if !(target.scheme.is_empty() || target.scheme == "http") {
        return failure(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("the fake API server proxies plain http only, not {:?}", target.scheme),
        );
    }
    shared.proxied();
    match forward(backend, &target, method, uri, headers, body).await {
        Ok(r) => r,
        Err(e) => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            &format!("error trying to reach service: dial tcp {backend}: {e}"),
        ),
    }
}

async fn forward(
    backend: SocketAddr,
    target: &ProxyPath,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, String> {
    let stream = tokio::net::TcpStream::connect(backend).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let path_and_query = match uri.query() {
        Some(q) => format!("{}?{q}", target.path),
        None => target.path.clone(),
    };
    let mut request = Request::builder().method(method).uri(path_and_query);
    let mut forwarded = copy_headers(headers, true);
    if !forwarded.contains_key(header::HOST) {
        forwarded
            .insert(header::HOST, HeaderValue::from_str(&backend.to_string()).map_err(|e| e.to_string())?);
    }
    forwarded.insert(HeaderName::from_static("x-forwarded-for"), HeaderValue::from_static("127.0.0.1"));
    if let Ok(v) = HeaderValue::from_str(uri.path()) {
        forwarded.insert(HeaderName::from_static("x-forwarded-uri"), v);
    }
    if let Some(h) = request.headers_mut() {
        *h = forwarded;
    }
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = parts.status;
    *out.headers_mut() = copy_headers(&parts.headers, false);
    // The body was read whole: axum sets the length again.
    out.headers_mut().remove(header::CONTENT_LENGTH);
    Ok(out)
}
