//! The service proxy through the real kube-rs client: GET and POST forwarded with path, query,
//! body and content type to the registered endpoint, its status and body passed back; the
//! user's `Authorization` not forwarded; 404 for a Service that does not exist, 503 for a port it
//! does not have or an endpoint nobody registered; RBAC refusals per verb.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Request, StatusCode, Uri};
use axum::response::IntoResponse;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Service;
use netdiag_fakekube::FakeKube;
use serde_json::{Value, json};

/// A backend that answers every request with what it received, as JSON, with status 201 for
/// POST and 200 otherwise, and a header of its own.
async fn echo_backend() -> SocketAddr {
    async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let status = if method == Method::POST { StatusCode::CREATED } else { StatusCode::OK };
        let seen = json!({
            "method": method.as_str(),
            "path": uri.path(),
            "query": uri.query(),
            "content_type": h("content-type"),
            "authorization": h("authorization"),
            "host": h("host"),
            "x_forwarded_uri": h("x-forwarded-uri"),
            "token": h("x-netdiag-token"),
            "body": String::from_utf8_lossy(&body),
        });
        (status, [("x-backend", "echo")], seen.to_string())
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(echo)).await.unwrap();
    });
    addr
}

fn service() -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "netdiag-collector", "namespace": "netdiag"},
        "spec": {"ports": [
            {"name": "http", "port": 7600, "targetPort": "http"},
            {"name": "agents", "port": 7700, "targetPort": "agents"},
        ]},
    }))
    .unwrap()
}

/// Sends `method path` with `body` (JSON) through `client`; returns status, headers and body.
async fn send(
    client: &kube::Client,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder().method(method).uri(path).header("x-netdiag-token", "s3cret");
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(kube::client::Body::from(body.unwrap_or("").as_bytes().to_vec())).unwrap();
    let response = client.send(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    (status, headers, value)
}

/// A client that reports a 503 at once: kube-rs would retry it with backoff by default.
fn client(mut config: kube::Config) -> kube::Client {
    config.default_retry = false;
    kube::Client::try_from(config).unwrap()
}

const BASE: &str = "/api/v1/namespaces/netdiag/services/http:netdiag-collector:http/proxy";

#[tokio::test]
async fn requests_are_forwarded_to_the_registered_endpoint_and_answered_with_its_response() {
    let fake = FakeKube::start().await.unwrap();
    fake.apply(&service()).unwrap();
    let backend = echo_backend().await;
    fake.proxy_service("netdiag", "netdiag-collector", "http", backend);
    // A bearer token, as a kubeconfig user would send: the API server consumes it.
    let mut config = fake.config();
    config.auth_info.token = Some("user-credential".to_owned().into());
    let client = client(config);

    let (status, headers, seen) =
        send(&client, Method::GET, &format!("{BASE}/api/v1/matrix?level=node"), None).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(headers.get("x-backend").unwrap(), "echo");
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/api/v1/matrix");
    assert_eq!(seen["query"], "level=node");
    assert_eq!(seen["authorization"], Value::Null, "the user's credentials stay with the API server");
    assert_eq!(seen["token"], "s3cret", "other headers are forwarded");
    assert_eq!(seen["host"], fake.addr().to_string(), "the Host the client sent, as the API server keeps it");
    assert_eq!(seen["x_forwarded_uri"], format!("{BASE}/api/v1/matrix"));

    let body = r#"{"from":"tidb/demo-tidb-0","to":"svc/tidb/demo-pd:2379"}"#;
    let (status, _, seen) = send(&client, Method::POST, &format!("{BASE}/api/v1/probe"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "the backend's status: {seen}");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/api/v1/probe");
    assert_eq!(seen["content_type"], "application/json");
    assert_eq!(seen["body"], body);

    // The port by number, and without a scheme, reach the same endpoint.
    let by_number = "/api/v1/namespaces/netdiag/services/netdiag-collector:7600/proxy/healthz";
    let (status, _, seen) = send(&client, Method::GET, by_number, None).await;
    assert_eq!((status, seen["path"].as_str()), (StatusCode::OK, Some("/healthz")));
    assert_eq!(fake.proxied_requests(), 3);
}

#[tokio::test]
async fn unknown_services_ports_and_endpoints_are_refused_as_the_api_server_does() {
    let fake = FakeKube::start().await.unwrap();
    let client = client(fake.config());
    let (status, _, body) = send(&client, Method::GET, &format!("{BASE}/api/v1/diagnosis"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!((body["kind"].as_str(), body["reason"].as_str()), (Some("Status"), Some("NotFound")));
    assert!(body["message"].as_str().unwrap().contains("services \"netdiag-collector\" not found"), "{body}");

    fake.apply(&service()).unwrap();
    let (status, _, body) = send(&client, Method::GET, &format!("{BASE}/api/v1/diagnosis"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no endpoints available"), "{body}");

    let backend = echo_backend().await;
    fake.proxy_service("netdiag", "netdiag-collector", "http", backend);
    let wrong_port = "/api/v1/namespaces/netdiag/services/netdiag-collector:9999/proxy/";
    let (status, _, body) = send(&client, Method::GET, wrong_port, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no service port \"9999\""), "{body}");

    // A registered endpoint nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    fake.proxy_service("netdiag", "netdiag-collector", "agents", closed);
    let agents = "/api/v1/namespaces/netdiag/services/netdiag-collector:agents/proxy/";
    let (status, _, body) = send(&client, Method::GET, agents, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["message"].as_str().unwrap().contains("error trying to reach service"), "{body}");
    assert_eq!(fake.proxied_requests(), 1, "only the reachable-port attempt was forwarded");
}

#[tokio::test]
async fn rbac_decides_per_verb_who_may_use_the_proxy() {
    let fake = FakeKube::start().await.unwrap();
    fake.apply(&service()).unwrap();
    let backend = echo_backend().await;
    fake.proxy_service("netdiag", "netdiag-collector", "http", backend);
    let client = client(fake.config());
    fake.forbid("create", "services/proxy");

    let (status, _, _) = send(&client, Method::GET, &format!("{BASE}/api/v1/diagnosis"), None).await;
    assert_eq!(status, StatusCode::OK, "reading needs get, which is allowed");
    let (status, _, body) = send(&client, Method::POST, &format!("{BASE}/api/v1/probe"), Some("{}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["reason"], "Forbidden");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("cannot create resource \"services/proxy\"")
            && message.contains("in the namespace \"netdiag\""),
        "{message}"
    );
    assert_eq!(fake.proxied_requests(), 1, "the refused POST never reached the backend");

    fake.allow("create", "services/proxy");
    fake.forbid("get", "services/proxy");
    let (status, _, _) = send(&client, Method::POST, &format!("{BASE}/api/v1/probe"), Some("{}")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, _) = send(&client, Method::GET, &format!("{BASE}/api/v1/diagnosis"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
