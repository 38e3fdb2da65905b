//! The collector's HTTP API through the Kubernetes API server's service proxy:
//! `/api/v1/namespaces/<ns>/services/http:<service>:<port>/proxy/<path>`, sent with the user's
//! kubeconfig (kube-rs: its TLS, credentials, exec plugins and impersonation), so RBAC on
//! `services/proxy` decides who may read (`get`) and who may start runs (`create`).
//!
//! What the collector sees: the request as the API server forwards it, without `Authorization`
//! (the API server consumes the user's credentials), with the Host the user dialed (the API
//! server's name). So every request carries `Sec-Netdiag-Client`, which no web page can send and
//! which the collector's guard takes as "no browser drive-by" in place of a Host it knows, and a
//! run carries the collector's own API token, when one is given, in `X-Netdiag-Token`.
//!
//! Answers are told apart by their body: a `Status` object is the API server's (RBAC refusal,
//! no such Service, no ready endpoint), `{"error": …}` the collector's.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use http_body_util::BodyExt;
use netdiag_collector::api::guard::CLIENT_HEADER;
use netdiag_collector::runs::auth::{ApiToken, TOKEN_HEADER};
use netdiag_model::text::excerpt;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Where the collector's Service is and how to reach the API server.
#[derive(Debug, Clone)]
pub(crate) struct ProxyTarget {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: String,
    pub service: String,
    /// The Service port's name or number.
    pub port: String,
}

pub(crate) struct KubeProxy {
    client: kube::Client,
    target: ProxyTarget,
    /// The API server's URL, for messages.
    server: String,
    token: Option<ApiToken>,
}

impl std::fmt::Debug for KubeProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeProxy").field("target", &self.target).field("server", &self.server).finish()
    }
}

/// The RBAC verb the API server checks for `method` on `services/proxy`.
fn verb(method: &http::Method) -> &'static str {
    if method == http::Method::GET { "get" } else { "create" }
}

impl KubeProxy {
    /// A client from `--kubeconfig` (else `KUBECONFIG`, else `~/.kube/config`) and `--context`.
    pub(crate) async fn connect(target: ProxyTarget, token: Option<ApiToken>) -> Result<Self> {
        let options = kube::config::KubeConfigOptions {
            context: target.context.clone(),
            ..kube::config::KubeConfigOptions::default()
        };
        let mut config = match &target.kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(file, &options).await.with_context(|| {
                    format!("the kubeconfig {} has no usable context (--context?)", path.display())
                })?
            }
            None => kube::Config::from_kubeconfig(&options).await.context(
                "cannot load a kubeconfig (KUBECONFIG or ~/.kube/config): give --kubeconfig, or --context",
            )?,
        };
        // A 503 or 429 is the collector's or the proxy's answer to report, and a run must never
        // be sent twice: no retries.
        config.default_retry = false;
        let server = config.cluster_url.to_string();
        let client =
            kube::Client::try_from(config).context("cannot build a Kubernetes client from the kubeconfig")?;
        Ok(KubeProxy { client, target, server, token })
    }

    /// The proxy path of the collector's `api_path` (which starts with `/`).
    pub(crate) fn path(&self, api_path: &str) -> String {
        proxy_path(&self.target, api_path)
    }

    /// `GET api_path`, decoded.
    pub(crate) async fn get<T: DeserializeOwned>(&self, api_path: &str) -> Result<T> {
        self.send(http::Method::GET, api_path, None).await
    }

    /// `POST api_path` with a JSON body, decoded.
    pub(crate) async fn post<T: DeserializeOwned>(&self, api_path: &str, body: &Value) -> Result<T> {
        self.send(http::Method::POST, api_path, Some(body)).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: http::Method,
        api_path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let path = self.path(api_path);
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(&path)
            .header(http::header::ACCEPT, "application/json")
            .header(CLIENT_HEADER, concat!("kubectl-netdiag/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
            if let Some(t) = &self.token {
                request = request.header(TOKEN_HEADER, t.expose());
            }
        }
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let request = request.body(kube::client::Body::from(bytes)).map_err(|_| {
            anyhow!("the API token cannot be sent as a header: use a plain secret such as hex")
        })?;
        let response = self.client.send(request).await.with_context(|| {
            format!(
                "cannot reach the Kubernetes API server at {} (check your kubeconfig and --context)",
                self.server
            )
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .with_context(|| format!("the answer to {method} {path} broke off"))?
            .to_bytes();
        if status.is_success() {
            return serde_json::from_slice(&body).with_context(|| {
                format!(
                    "the collector's answer to {method} {api_path} is not what this kubectl-netdiag expects \
                     (versions apart?): {}",
                    excerpt(&String::from_utf8_lossy(&body))
                )
            });
        }
        Err(anyhow!(refusal(&self.target, &method, status.as_u16(), &body, retry_after.as_deref())))
    }
}

/// `/api/v1/namespaces/<ns>/services/http:<svc>:<port>/proxy<api_path>`.
pub(crate) fn proxy_path(t: &ProxyTarget, api_path: &str) -> String {
    format!("/api/v1/namespaces/{}/services/http:{}:{}/proxy{api_path}", t.namespace, t.service, t.port)
}

/// A refusal in words: the API server's (a `Status`) or the collector's (`{"error": …}`).
pub(crate) fn refusal(
    t: &ProxyTarget,
    method: &http::Method,
    status: u16,
    body: &[u8],
    retry_after: Option<&str>,
) -> String {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let svc = format!("{}/{}", t.namespace, t.service);
    if value["kind"] == "Status" {
        let message = value["message"].as_str().unwrap_or_default();
        return match status {
            401 => format!(
                "the Kubernetes API server did not accept your credentials ({message}): check your \
                 kubeconfig (`kubectl auth whoami`)"
            ),
            403 => format!(
                "RBAC: you may not {} services/proxy in namespace {} ({message}). `kubectl netdiag` \
                 needs `get` on services/proxy for matrix, diagnose and agents and `create` for probe, \
                 on the Service {svc}: ask for a Role granting it (README, \"kubectl plugin\")",
                verb(method),
                t.namespace
            ),
            404 => format!(
                "the collector's Service {svc} is not there ({message}): is netdiag installed? give \
                 its namespace and Service with --namespace and --service"
            ),
            503 => format!(
                "the Kubernetes API server cannot reach the collector behind {svc} port {} ({message}): \
                 is the collector running and ready? (`kubectl -n {} get pods`)",
                t.port, t.namespace
            ),
            _ => format!("the Kubernetes API server answered {status}: {message}"),
        };
    }
    if let Some(error) = value["error"].as_str() {
        let retry = retry_after.map(|s| format!(" (retry after {s} s)")).unwrap_or_default();
        return format!("the collector refused: {error}{retry}");
    }
    format!(
        "unexpected answer {status} through the service proxy for {svc}: {}",
        excerpt(&String::from_utf8_lossy(body))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> ProxyTarget {
        ProxyTarget {
            kubeconfig: None,
            context: None,
            namespace: "netdiag".into(),
            service: "netdiag-collector".into(),
            port: "http".into(),
        }
    }

    #[test]
    fn the_path_names_service_port_and_api_path() {
        assert_eq!(
            proxy_path(&target(), "/api/v1/matrix?level=pod&kind=all"),
            "/api/v1/namespaces/netdiag/services/http:netdiag-collector:http/proxy/api/v1/matrix?level=pod&kind=all"
        );
    }

    #[test]
    fn refusals_say_who_refused_and_what_to_do() {
        let status = |code: u16, reason: &str| {
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                "reason": reason, "message": "services \"http:netdiag-collector:http\" is forbidden"})
            .to_string()
        };
        let r = refusal(&target(), &http::Method::POST, 403, status(403, "Forbidden").as_bytes(), None);
        assert!(r.starts_with("RBAC: you may not create services/proxy in namespace netdiag"), "{r}");
        assert!(r.contains("is forbidden"), "quotes the API server: {r}");
        let r = refusal(&target(), &http::Method::GET, 403, status(403, "Forbidden").as_bytes(), None);
        assert!(r.starts_with("RBAC: you may not get services/proxy"), "{r}");
        let r = refusal(&target(), &http::Method::GET, 404, status(404, "NotFound").as_bytes(), None);
        assert!(
            r.contains("Service netdiag/netdiag-collector is not there") && r.contains("--namespace"),
            "{r}"
        );
        let r =
            refusal(&target(), &http::Method::GET, 503, status(503, "ServiceUnavailable").as_bytes(), None);
        assert!(r.contains("cannot reach the collector"), "{r}");
        // The collector's own 403 is no RBAC refusal.
        let r = refusal(&target(), &http::Method::POST, 429, br#"{"error":"too many runs"}"#, Some("3"));
        assert_eq!(r, "the collector refused: too many runs (retry after 3 s)");
        let r = refusal(
            &target(),
            &http::Method::POST,
            403,
            br#"{"error":"10.0.0.1 is outside the scope"}"#,
            None,
        );
        assert_eq!(r, "the collector refused: 10.0.0.1 is outside the scope");
        let r = refusal(&target(), &http::Method::GET, 502, b"<html>bad gateway</html>", None);
        assert!(r.contains("unexpected answer 502") && r.contains("bad gateway"), "{r}");
    }
}
