//! The HTTP listener's door against browsers. The collector's API takes no cookies, but a web
//! page the operator opens elsewhere can still make their browser talk to it: a cross-site
//! form post (CSRF) or, once the page's own name resolves to the collector's address, any
//! same-origin request (DNS rebinding). Loopback-only runs without a token would otherwise be
//! startable by any such page on the same machine. Every request (API, UI, metrics and the
//! gRPC queries, which share the port) passes [`check`]:
//!
//! - **Host**: the name the client used (`Host`, or the URI's authority: HTTP/2's `:authority`)
//!   must be `localhost`, a loopback address, the listener's own address as the client dialed
//!   it (a pod IP in a cluster), or a name given with `--api-allowed-host`. A rebinding page's
//!   requests carry the attacker's name, so they are refused (421). The port is not compared:
//!   a rebinding page reaches the collector's own port either way, and port-forwards change it.
//!   A request without any Host is let through: browsers always send one.
//! - **Origin**: a state-changing request (any method but GET, HEAD, OPTIONS, TRACE) that
//!   carries `Origin` must come from a page under an allowed host (same rule) on the port the
//!   request was sent to, so another local service's page (`http://localhost:3000`) is refused
//!   too (403). `Origin: null` (sandboxed frames, files) is refused.
//! - **Content-Type** is checked by the one JSON endpoint that changes something
//!   (`POST /api/v1/probe`, [`super::probe`]): `application/json`, which no form can send and a
//!   cross-origin script can send only after a CORS preflight the collector never answers.
//!
//! With an API token configured, a request that presents it (`Authorization: Bearer` or
//! `X-Netdiag-Token`) skips the Host check: browsers never attach a bearer token by themselves,
//! and a rebinding page does not know it, so such a client is no drive-by, whatever name it
//! reached the collector by (an Ingress, a Service name). So does a request carrying
//! [`CLIENT_HEADER`] (`Sec-Netdiag-Client`), which the CLI and `kubectl netdiag` send: no web
//! page can send a `Sec-` header (the Fetch standard forbids scripts to set any, and forms set
//! none), so it too marks a client that is no browser drive-by. That is what lets
//! `kubectl netdiag` read through the Kubernetes API server's service proxy, which forwards the
//! Host the user dialed (the API server's own name, which the collector cannot know) and every
//! other header as sent. Other requests (the UI, scrapes, curl) are Host-checked with or without
//! a configured token, since the read-only API shows the cluster's layout to whoever reads it.
//! The Host check is a defence against browsers only: a program can send any Host. The Origin
//! check applies regardless of the token or the client header.
//!
//! Refusals are JSON `{"error": …}`, or a gRPC status (PermissionDenied) for gRPC requests, so
//! the CLI prints the reason.

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use netdiag_model::text::excerpt;
use tokio::net::TcpListener;

use super::routes::ApiError;
use super::v1::ErrorResponse;
use crate::runs::auth::{ApiToken, Credentials, TOKEN_HEADER, authorize};
use crate::runs::config::RunsConfig;

/// Both ends of an HTTP connection. Serve the app with
/// `into_make_service_with_connect_info::<Connection>()`: [`check`] needs the local address
/// (the "own address" rule) and hands the handlers the peer as `ConnectInfo<SocketAddr>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub peer: SocketAddr,
    /// None when the socket could not say (only the "own address" rule is lost).
    pub local: Option<SocketAddr>,
}

impl Connected<IncomingStream<'_, TcpListener>> for Connection {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Connection { peer: *stream.remote_addr(), local: stream.io().local_addr().ok() }
    }
}

/// A host name or address the API answers to (`--api-allowed-host`), or the host part of a
/// request's `Host` or `Origin`: lower case, without a trailing dot, brackets or port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllowedHost {
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedHost::Name(n) => f.write_str(n),
            AllowedHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// An `--api-allowed-host` value that is not a bare host name or address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{value:?} is not a host name or address: {why}; give the name as clients use it, without \
     scheme, port or path (e.g. netdiag.example.com, 10.0.0.5 or ::1)"
)]
pub struct AllowedHostError {
    value: String,
    why: &'static str,
}

impl FromStr for AllowedHost {
    type Err = AllowedHostError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| AllowedHostError { value: excerpt(s), why };
        let t = s.trim();
        let unbracketed = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(t);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(AllowedHost::Ip(ip.to_canonical()));
        }
        let name = t.strip_suffix('.').unwrap_or(t).to_ascii_lowercase();
        if name.is_empty() {
            return Err(err("it is empty"));
        }
        if name.contains("://") || name.contains('/') {
            return Err(err("it has a scheme or path"));
        }
        if name.contains(':') {
            return Err(err("it has a port (ports are not compared)"));
        }
        if name.contains('*') {
            return Err(err("wildcards are not supported: list each name"));
        }
        if name.len() > 253 {
            return Err(err("it is longer than 253 characters"));
        }
        let label_ok = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !name.split('.').all(label_ok) {
            return Err(err("it is not a DNS name (letters, digits and '-' in dot-separated labels)"));
        }
        Ok(AllowedHost::Name(name))
    }
}

/// The request header that marks a client which is not a web page (the CLI, `kubectl netdiag`):
/// browsers let no page set a `Sec-` header, so its presence skips the Host check (module docs).
pub const CLIENT_HEADER: &str = "sec-netdiag-client";

/// What the guard needs to know, taken from the run settings once.
#[derive(Debug, Clone, Default)]
pub(super) struct Guard {
    token: Option<ApiToken>,
    allowed: Arc<[AllowedHost]>,
}

impl Guard {
    pub(super) fn new(runs: &RunsConfig) -> Self {
        Guard { token: runs.token.clone(), allowed: runs.allowed_hosts.clone().into() }
    }
}

/// A request the guard turns away.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// 421: the client used a name this collector does not answer to.
    Host(String),
    /// 403: a page from another origin asked to change something.
    Origin(String),
}

/// The host and port of a `Host` value or URI authority.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPort {
    host: AllowedHost,
    port: Option<u16>,
}

/// None when `text` is no authority (or carries user info, which no browser sends).
fn split_authority(text: &str) -> Option<HostPort> {
    let authority = Authority::from_str(text.trim()).ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    Some(HostPort { host: authority.host().parse().ok()?, port: authority.port_u16() })
}

/// The rule: `localhost`, loopback addresses, the listener's own address, configured names.
fn host_allowed(host: &AllowedHost, local: Option<IpAddr>, allowed: &[AllowedHost]) -> bool {
    let own = match host {
        AllowedHost::Name(n) => n == "localhost",
        AllowedHost::Ip(ip) => ip.is_loopback() || local.is_some_and(|l| l.to_canonical() == *ip),
    };
    own || allowed.contains(host)
}

/// Whether a request with this method can change something.
fn state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// The port a page at `origin` was loaded from, when it says (explicit or the scheme's).
fn origin_port(uri: &Uri) -> Option<u16> {
    uri.port_u16().or_else(|| match uri.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    })
}

/// "localhost, loopback addresses, its own address 10.0.0.5 and --api-allowed-host a, b".
fn allowed_list(local: Option<IpAddr>, allowed: &[AllowedHost]) -> String {
    let mut parts = vec!["localhost".to_owned(), "loopback addresses".to_owned()];
    if let Some(ip) = local.filter(|ip| !ip.is_loopback() && !ip.is_unspecified()) {
        parts.push(format!("its own address {ip}"));
    }
    if allowed.is_empty() {
        return format!("{} (no --api-allowed-host names are set)", parts.join(", "));
    }
    let configured = allowed.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    format!("{} and --api-allowed-host {configured}", parts.join(", "))
}

/// The checks of the module docs, as a pure function of the request's parts.
fn verdict(
    guard: &Guard,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    local: Option<IpAddr>,
) -> Result<(), Refusal> {
    // The name the client used: `Host` (HTTP/1.1) and the URI's authority (HTTP/2's
    // `:authority`, or an absolute-form target); every one given must pass.
    let parsed: Vec<(String, Option<HostPort>)> = headers
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .into_iter()
        .chain(uri.authority().map(|a| a.as_str().to_owned()))
        .map(|text| {
            let host = split_authority(&text);
            (text, host)
        })
        .collect();

    let token_presented = guard.token.as_ref().is_some_and(|token| {
        let credentials = Credentials::from_headers(
            headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes),
            headers.get(TOKEN_HEADER).map(HeaderValue::as_bytes),
        );
        authorize(Some(token), None, &credentials).is_ok()
    });
    let not_a_page = headers.contains_key(CLIENT_HEADER);
    if !token_presented && !not_a_page {
        for (text, host) in &parsed {
            let ok = host.as_ref().is_some_and(|h| host_allowed(&h.host, local, &guard.allowed));
            if !ok {
                return Err(Refusal::Host(format!(
                    "this collector does not answer to the name {:?} (the request's Host): it answers to {}. \
                     If you reach it by that name, add it with --api-allowed-host (NETDIAG_API_ALLOWED_HOSTS), \
                     or send the API token (`Authorization: Bearer …`) or `Sec-Netdiag-Client: <your tool>`, \
                     which no web page can send; other names are refused so that a web page cannot reach \
                     the API through DNS rebinding",
                    excerpt(text),
                    allowed_list(local, &guard.allowed)
                )));
            }
        }
    }

    if !state_changing(method) {
        return Ok(());
    }
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let text = String::from_utf8_lossy(origin.as_bytes()).into_owned();
    let refuse = |why: &str| {
        Refusal::Origin(format!(
            "a web page at {:?} (the request's Origin) may not {method} here: {why}. Only pages the \
             collector itself serves under an allowed name ({}) may; scripts and the CLI send no Origin",
            excerpt(&text),
            allowed_list(local, &guard.allowed)
        ))
    };
    let uri: Uri = text.trim().parse().map_err(|_| refuse("it is not an origin"))?;
    let host = uri
        .host()
        .and_then(|h| h.parse::<AllowedHost>().ok())
        .ok_or_else(|| refuse("it is not an origin"))?;
    if !host_allowed(&host, local, &guard.allowed) {
        return Err(refuse("that host is not one this collector answers to"));
    }
    // Same host, other port: another local service's page, not the collector's.
    let request_port = parsed.first().and_then(|(_, h)| h.as_ref()).map(|h| h.port);
    let page_port = origin_port(&uri);
    let same_port = match request_port {
        Some(Some(port)) => page_port == Some(port),
        // No port in Host: the request went to the scheme's default port.
        Some(None) => matches!(page_port, Some(80 | 443)),
        None => true,
    };
    if !same_port {
        return Err(refuse("the page was served on another port, so by another service"));
    }
    Ok(())
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/grpc"))
}

/// The middleware: refuses what [`verdict`] refuses, and gives the handlers the peer address
/// as `ConnectInfo<SocketAddr>` (what the run admission and the gRPC queries read).
pub(super) async fn check(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    let connection = request.extensions().get::<ConnectInfo<Connection>>().map(|c| c.0);
    if let Some(c) = connection {
        request.extensions_mut().insert(ConnectInfo(c.peer));
    }
    let local = connection.and_then(|c| c.local).map(|a| a.ip());
    let refusal = match verdict(&guard, request.method(), request.uri(), request.headers(), local) {
        Ok(()) => return next.run(request).await,
        Err(r) => r,
    };
    let (status, message) = match refusal {
        Refusal::Host(m) => (StatusCode::MISDIRECTED_REQUEST, m),
        Refusal::Origin(m) => (StatusCode::FORBIDDEN, m),
    };
    tracing::debug!(peer = ?connection.map(|c| c.peer), %status, "request refused: {message}");
    if is_grpc(request.headers()) {
        return tonic::Status::permission_denied(message).into_http::<axum::body::Body>();
    }
    ApiError::new(status, ErrorResponse::new(message)).into_response()
}
