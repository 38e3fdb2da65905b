//! The guard through the router with `oneshot` (every refusal and what stays allowed), and its
//! wiring in [`crate::server::serve`] over real sockets: the API and the gRPC queries on the
//! same port, and loopback callers still recognized through [`Connection`].

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::metrics::CollectorMetrics;
use crate::runs::auth::ApiToken;
use crate::runs::config::RunsConfig;
use crate::runs::testkit::Rig;

const BODY: &str = r#"{"from": "tidb/demo-pd-0", "to": "svc/tidb/demo-pd:2379"}"#;
/// What a run from an admitted caller answers here: the rig has no agent.
const NO_AGENT: StatusCode = StatusCode::SERVICE_UNAVAILABLE;

use crate::api::tests::oneshot;

fn app(rig: &Rig) -> Router {
    crate::api::router(rig.state.clone(), Arc::new(CollectorMetrics::new()), rig.dispatcher.clone())
}

fn connection(peer: &str, local: Option<&str>) -> Connection {
    Connection { peer: peer.parse().unwrap(), local: local.map(|l| l.parse().unwrap()) }
}

/// A loopback caller on a listener at 127.0.0.1:7600, as the server hands it to the router.
fn on_loopback() -> Connection {
    connection("127.0.0.1:40000", Some("127.0.0.1:7600"))
}

fn request(method: Method, uri: &str, headers: &[(&str, &str)], conn: Connection) -> Request<Body> {
    let mut b = Request::builder().method(method.clone()).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = if method == Method::POST { Body::from(BODY) } else { Body::empty() };
    let mut r = b.body(body).unwrap();
    r.extensions_mut().insert(ConnectInfo(conn));
    r
}

/// `POST /api/v1/probe` with a JSON body and `headers` besides.
fn probe(headers: &[(&str, &str)], conn: Connection) -> Request<Body> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request(Method::POST, "/api/v1/probe", &all, conn)
}

async fn call(app: Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = oneshot(app, request).await;
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn error(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("no error in {body}"))
}

// --- Content-Type ---

#[tokio::test]
async fn a_probe_not_declared_json_is_a_415_naming_what_to_send() {
    // One run a minute: the refusals must not spend it.
    let rig = Rig::new(RunsConfig { per_minute: 1, ..RunsConfig::default() }).await;
    let forms: [&[(&str, &str)]; 5] = [
        &[],
        &[("content-type", "text/plain")],
        &[("content-type", "application/x-www-form-urlencoded")],
        &[("content-type", "multipart/form-data; boundary=x")],
        &[("content-type", "application/jsonp")],
    ];
    for headers in forms {
        let r = request(Method::POST, "/api/v1/probe", headers, on_loopback());
        let (status, h, body) = call(app(&rig), r).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{headers:?}: {body}");
        assert_eq!(h[header::ACCEPT], "application/json");
        assert!(error(&body).contains("send `Content-Type: application/json`"), "{body}");
    }
    let r = request(
        Method::POST,
        "/api/v1/probe",
        &[("content-type", "Application/JSON; charset=utf-8")],
        on_loopback(),
    );
    let (status, _, body) = call(app(&rig), r).await;
    assert_eq!(status, NO_AGENT, "declared JSON, admitted, the rate limit untouched: {body}");
}

// --- Host ---

#[tokio::test]
async fn a_name_the_collector_does_not_answer_to_is_a_421_on_every_route() {
    let rig = Rig::new(RunsConfig::default()).await;
    for host in ["evil.example:7600", "localhost.evil.example", "127.0.0.1.nip.io:7600", "0x7f000001"] {
        for (method, uri) in [
            (Method::GET, "/api/v1/matrix"),
            (Method::GET, "/api/v1/agents"),
            (Method::GET, "/"),
            (Method::GET, "/metrics"),
            (Method::POST, "/api/v1/probe"),
        ] {
            let headers = [("host", host), ("content-type", "application/json")];
            let (status, _, body) =
                call(app(&rig), request(method.clone(), uri, &headers, on_loopback())).await;
            assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host} {method} {uri}: {body}");
            let text = error(&body);
            assert!(text.contains(host) && text.contains("--api-allowed-host"), "{text}");
            assert!(text.contains("DNS rebinding"), "{text}");
        }
    }
    // An absolute-form target names the host too.
    let r = request(
        Method::GET,
        "http://evil.example/api/v1/agents",
        &[("host", "127.0.0.1:7600")],
        on_loopback(),
    );
    assert_eq!(call(app(&rig), r).await.0, StatusCode::MISDIRECTED_REQUEST);
    // The same requests under the collector's own name pass.
    let (status, _, _) = call(app(&rig), probe(&[("host", "127.0.0.1:7600")], on_loopback())).await;
    assert_eq!(status, NO_AGENT);
}

#[tokio::test]
async fn localhost_loopback_addresses_and_the_own_address_are_answered() {
    let rig = Rig::new(RunsConfig::default()).await;
    let pod = || connection("10.0.0.9:40000", Some("10.0.0.5:7600"));
    let allowed = [
        ("localhost:7600", on_loopback()),
        ("LOCALHOST", on_loopback()),
        ("localhost.:8080", on_loopback()),
        ("127.0.0.1:7600", on_loopback()),
        ("127.5.5.5", on_loopback()),
        ("[::1]:7600", on_loopback()),
        // The address the client dialed (a pod IP: kubelet probes, Prometheus scrapes).
        ("10.0.0.5:7600", pod()),
        ("10.0.0.5", pod()),
    ];
    for (host, conn) in allowed {
        let r = request(Method::GET, "/api/v1/agents", &[("host", host)], conn);
        let (status, _, body) = call(app(&rig), r).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
    // Another address of the same network is not the collector's own; nor is any address when
    // the listener's is unknown.
    for (host, conn) in [("10.0.0.6:7600", pod()), ("10.0.0.5:7600", connection("10.0.0.9:40000", None))] {
        let r = request(Method::GET, "/api/v1/agents", &[("host", host)], conn);
        assert_eq!(call(app(&rig), r).await.0, StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
    // No Host at all (HTTP/1.0, a test client): browsers always send one.
    let r = request(Method::GET, "/api/v1/agents", &[], on_loopback());
    assert_eq!(call(app(&rig), r).await.0, StatusCode::OK);
}

#[tokio::test]
async fn names_given_with_the_flag_are_answered() {
    let allowed_hosts = vec!["netdiag.example.com".parse().unwrap(), "192.0.2.7".parse().unwrap()];
    let rig = Rig::new(RunsConfig { allowed_hosts, ..RunsConfig::default() }).await;
    for host in ["netdiag.example.com", "NETDIAG.example.com:443", "192.0.2.7:7600"] {
        let r = request(Method::GET, "/api/v1/agents", &[("host", host)], on_loopback());
        assert_eq!(call(app(&rig), r).await.0, StatusCode::OK, "{host}");
    }
    let r = request(Method::GET, "/api/v1/agents", &[("host", "other.example.com")], on_loopback());
    let (status, _, body) = call(app(&rig), r).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert!(error(&body).contains("--api-allowed-host netdiag.example.com, 192.0.2.7"), "{body}");
}

// --- Origin ---

#[tokio::test]
async fn a_page_from_another_origin_cannot_start_a_run() {
    let rig = Rig::new(RunsConfig::default()).await;
    for origin in [
        "http://evil.example",
        "null",
        // Another service on the same machine: same host, other port.
        "http://localhost:3000",
        "http://127.0.0.1:7601",
        "not an origin",
    ] {
        let r = probe(&[("host", "127.0.0.1:7600"), ("origin", origin)], on_loopback());
        let (status, _, body) = call(app(&rig), r).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
        assert!(error(&body).contains("(the request's Origin) may not POST"), "{body}");
    }
    // The collector's own pages, under any of its names on its port.
    for origin in ["http://127.0.0.1:7600", "http://localhost:7600"] {
        let r = probe(&[("host", "127.0.0.1:7600"), ("origin", origin)], on_loopback());
        assert_eq!(call(app(&rig), r).await.0, NO_AGENT, "{origin}");
    }
    // Behind a proxy on the default port (no port in Host).
    let rig = Rig::new(RunsConfig {
        allowed_hosts: vec!["netdiag.example.com".parse().unwrap()],
        ..RunsConfig::default()
    })
    .await;
    let r =
        probe(&[("host", "netdiag.example.com"), ("origin", "https://netdiag.example.com")], on_loopback());
    assert_eq!(call(app(&rig), r).await.0, NO_AGENT);
    let r = probe(
        &[("host", "netdiag.example.com"), ("origin", "https://netdiag.example.com:8443")],
        on_loopback(),
    );
    assert_eq!(call(app(&rig), r).await.0, StatusCode::FORBIDDEN);
    // Reading changes nothing: a foreign Origin on a GET is no refusal (the Host still is checked).
    let r = request(
        Method::GET,
        "/api/v1/agents",
        &[("host", "127.0.0.1:7600"), ("origin", "http://evil.example")],
        on_loopback(),
    );
    assert_eq!(call(app(&rig), r).await.0, StatusCode::OK);
}

// --- with a token ---

#[tokio::test]
async fn a_client_presenting_the_token_may_use_any_name_but_no_foreign_origin() {
    let token = ApiToken::new("s3cret").unwrap();
    let rig = Rig::new(RunsConfig { token: Some(token), ..RunsConfig::default() }).await;
    let far = || connection("10.1.2.3:40000", Some("10.0.0.5:7600"));
    let name = ("host", "netdiag-collector.netdiag.svc:7600");
    // The CLI in a pod, an Ingress: the token says it is no browser drive-by.
    let r = probe(&[name, ("authorization", "Bearer s3cret")], far());
    assert_eq!(call(app(&rig), r).await.0, NO_AGENT);
    let r = request(Method::GET, "/api/v1/agents", &[name, ("authorization", "Bearer s3cret")], far());
    assert_eq!(call(app(&rig), r).await.0, StatusCode::OK);
    // Without it, or with a wrong one, the name is checked as for anyone.
    for auth in [None, Some("Bearer wrong")] {
        let mut headers = vec![name];
        headers.extend(auth.map(|a| ("authorization", a)));
        let (status, _, body) = call(app(&rig), probe(&headers, far())).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{auth:?}: {body}");
        let r = request(Method::GET, "/api/v1/agents", &headers, far());
        assert_eq!(call(app(&rig), r).await.0, StatusCode::MISDIRECTED_REQUEST, "{auth:?}");
    }
    // The token does not make a foreign page's POST acceptable.
    let r = probe(&[name, ("authorization", "Bearer s3cret"), ("origin", "http://evil.example")], far());
    assert_eq!(call(app(&rig), r).await.0, StatusCode::FORBIDDEN);
}

// --- through the Kubernetes API server's service proxy ---

/// What `kubectl netdiag` sends through the API server: the Host is the API server's own name,
/// `Sec-Netdiag-Client` says it is no web page, the token (if any) is in `X-Netdiag-Token`.
#[tokio::test]
async fn a_client_no_page_can_be_is_answered_under_the_api_servers_name() {
    let token = ApiToken::new("s3cret").unwrap();
    let rig = Rig::new(RunsConfig { token: Some(token), ..RunsConfig::default() }).await;
    let apiserver = || connection("10.0.0.1:50000", Some("10.244.1.7:7600"));
    let host = ("host", "kube.example.com:6443");
    let client = ("sec-netdiag-client", "kubectl-netdiag");
    let r = request(Method::GET, "/api/v1/diagnosis", &[host, client], apiserver());
    assert_eq!(call(app(&rig), r).await.0, StatusCode::OK, "reads need no token");
    let r = request(Method::GET, "/api/v1/diagnosis", &[host], apiserver());
    assert_eq!(
        call(app(&rig), r).await.0,
        StatusCode::MISDIRECTED_REQUEST,
        "without it: a page may be asking"
    );
    // A run still needs the token: the client header admits no run, the token header does.
    let (status, _, body) = call(app(&rig), probe(&[host, client], apiserver())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(error(&body).contains("X-Netdiag-Token"), "the refusal names the header: {body}");
    let r = probe(&[host, client, ("x-netdiag-token", "s3cret")], apiserver());
    assert_eq!(call(app(&rig), r).await.0, NO_AGENT);
    let (status, _, _) = call(app(&rig), probe(&[host, ("x-netdiag-token", "wrong")], apiserver())).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "a wrong token is no token");
    // The header does not make a foreign page's POST acceptable.
    let r =
        probe(&[host, client, ("x-netdiag-token", "s3cret"), ("origin", "http://evil.example")], apiserver());
    assert_eq!(call(app(&rig), r).await.0, StatusCode::FORBIDDEN);
}

// --- the connection ---

#[tokio::test]
async fn the_peer_from_the_connection_still_decides_loopback_only_runs() {
    let rig = Rig::new(RunsConfig::default()).await;
    // Only the server's `Connection` is given: the guard must hand the handler the peer.
    let (status, _, body) = call(app(&rig), probe(&[], on_loopback())).await;
    assert_eq!(status, NO_AGENT, "a loopback caller: {body}");
    let far = connection("10.1.2.3:40000", Some("127.0.0.1:7600"));
    let (status, _, body) = call(app(&rig), probe(&[], far)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(error(&body).contains("10.1.2.3"), "{body}");
}

#[test]
fn allowed_hosts_normalize() {
    let cases = [
        ("Example.COM.", AllowedHost::Name("example.com".into())),
        ("[::1]", AllowedHost::Ip("::1".parse().unwrap())),
        ("::ffff:10.0.0.1", AllowedHost::Ip("10.0.0.1".parse().unwrap())),
        ("a-b.c1", AllowedHost::Name("a-b.c1".into())),
    ];
    for (text, want) in cases {
        assert_eq!(text.parse::<AllowedHost>().unwrap(), want, "{text}");
    }
    for bad in ["", "-a.com", "a..b", "a_b.com", "host:80", "https://x", "*.x", "a/b"] {
        assert!(bad.parse::<AllowedHost>().is_err(), "{bad:?}");
    }
}

// --- the server's wiring ---

async fn raw_get(addr: SocketAddr, host: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET /api/v1/agents HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_guards_the_api_and_the_grpc_queries_on_its_port() {
    use netdiag_proto::v1;
    use netdiag_proto::v1::query_client::QueryClient;

    let inventory = netdiag_model::inventory::Inventory::from_yaml(crate::runs::testkit::INVENTORY).unwrap();
    let state = Arc::new(crate::state::CollectorState::new(inventory, Default::default()));
    let agents = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = http.local_addr().unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let config = crate::server::ServeConfig {
        agents,
        agents_transport: Default::default(),
        http,
        inventory: crate::server::InventorySource::Fixed,
        runs: RunsConfig::default(),
        plans: Default::default(),
        kube_report: None,
    };
    let server = tokio::spawn(crate::server::serve(state, config, stop_rx));

    assert_eq!(raw_get(addr, "evil.example").await, 421);
    assert_eq!(raw_get(addr, &addr.to_string()).await, 200);

    // gRPC under a rebinding name: refused with a status the CLI prints.
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .origin(format!("http://evil.example:{}", addr.port()).parse().unwrap());
    let mut evil = QueryClient::new(endpoint.connect().await.unwrap());
    let e = evil.get_diagnosis(v1::DiagnosisRequest {}).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("DNS rebinding"), "{}", e.message());

    // Under its own name a loopback caller is known as one (no agent: Unavailable, not
    // PermissionDenied for an unknown address).
    let mut own = QueryClient::connect(format!("http://{addr}")).await.unwrap();
    own.get_diagnosis(v1::DiagnosisRequest {}).await.unwrap();
    let run = v1::ProbeRunRequest {
        from: "tidb/demo-pd-0".into(),
        to: "tidb/demo-pd-1:2379".into(),
        http_path: String::new(),
        timeout_ms: 0,
    };
    let e = own.run_probe(run).await.map(|_| ()).unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");

    stop.send(true).unwrap();
    let _ = server.await;
}
