//! How agents may reach the session service: TLS (mTLS with a client CA), or plain gRPC. Plain
//! gRPC is taken only from loopback peers unless `--allow-insecure-agents` says otherwise: a
//! collector that accepted any plaintext agent would take results (and answer with run
//! requests) from anyone who can reach the port.
//!
//! TLS is done here rather than by tonic ([`serve`]): each connection's handshake uses the
//! configuration current when it was accepted, read again from `--tls-cert`, `--tls-key` and
//! `--tls-client-ca` when they change ([`netdiag_proto::tls::Reloading`], looked at every few
//! seconds), so a renewed certificate or a rotated client CA takes effect without a restart.
//! Sessions already up keep the configuration they were made with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use netdiag_proto::tls::{RELOAD_CHECK_EVERY, Refresh, Reloading, ServerTlsFiles, TlsError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::{Request, Status};
use tracing::{info, warn};

use crate::connections::{ConnLimits, Gate, H2_PREFACE_LEN, Limited};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The agents' transport flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentsTlsArgs {
    /// Certificate (PEM) the agents' session service presents; with --tls-key, agents connect
    /// over TLS (https://). Re-read when the file changes (renewals need no restart).
    #[arg(long, env = "NETDIAG_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "NETDIAG_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate (PEM) agents' client certificates must chain to (mTLS); agents without
    /// one are refused.
    #[arg(long, env = "NETDIAG_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Take agents over plain gRPC from any address (without TLS only loopback agents are
    /// taken). For sealed networks such as the lab.
    #[arg(long, env = "NETDIAG_ALLOW_INSECURE_AGENTS")]
    pub allow_insecure_agents: bool,
    /// Bind each agent to its node: its client certificate must be valid for the node name the
    /// agent says it is (a DNS subjectAltName, as a per-node certificate carries), so one node's
    /// certificate cannot send results or inspections as another node. Needs --tls-client-ca.
    #[arg(long, env = "NETDIAG_REQUIRE_NODE_IDENTITY")]
    pub require_node_identity: bool,
    /// Time between HTTP/2 pings on an agent's connection (1s to 1h); a connection whose agent
    /// does not answer one within the same time (at most 20 s) is closed.
    #[arg(long, env = "NETDIAG_AGENTS_KEEPALIVE", default_value = "30s", value_parser = parse_keepalive)]
    pub agents_keepalive: Duration,
}

/// `--agents-keepalive` in the model's duration dialect, from 1 s to 1 h.
fn parse_keepalive(s: &str) -> Result<Duration, String> {
    let d = Duration::from(s.parse::<netdiag_model::config::ConfigDuration>().map_err(|e| e.to_string())?);
    if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
        return Err(format!("{s:?} is outside 1s to 1h"));
    }
    Ok(d)
}

/// Why the agents' transport flags cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AgentsTlsError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "--require-node-identity reads the node name from each agent's client certificate, so it needs mTLS: \
         add --tls-cert, --tls-key and --tls-client-ca"
    )]
    IdentityWithoutClientCa,
}

/// The session service's transport, ready to serve.
#[derive(Debug, Clone, Default)]
pub struct AgentsTransport {
    /// The TLS configuration, rebuilt when its files change.
    pub tls: Option<Arc<Reloading<ServerConfig>>>,
    /// Whether client certificates are required (a client CA is configured).
    pub mutual: bool,
    pub allow_insecure: bool,
    /// Each agent's client certificate must name its node.
    pub node_identity: bool,
    /// HTTP/2 ping interval ([`H2_KEEPALIVE_INTERVAL`] when None).
    pub keepalive: Option<Duration>,
    /// Each agent's bearer token must prove its node (`--agent-identity token`).
    pub tokens: Option<crate::agent_token::TokenReviewer>,
}

impl AgentsTransport {
    /// Plain gRPC from any address: for a sealed network (the lab) only.
    pub fn insecure() -> Self {
        AgentsTransport {
            tls: None,
            mutual: false,
            allow_insecure: true,
            node_identity: false,
            keepalive: None,
            tokens: None,
        }
    }

    /// What the collector says about its agents' transport when it starts.
    pub fn describe(&self) -> &'static str {
        match (&self.tls, self.mutual, self.allow_insecure) {
            (Some(_), true, _) if self.node_identity => {
                "mTLS: agents must present a certificate signed by the client CA and valid for their node's name"
            }
            (Some(_), true, _) => "mTLS: agents must present a certificate signed by the client CA",
            (Some(_), false, _) => {
                "TLS (agents are not asked for a certificate; add --tls-client-ca for mTLS)"
            }
            (None, _, true) => "plain gRPC from any address (--allow-insecure-agents)",
            (None, _, false) => {
                "plain gRPC from loopback only; configure --tls-cert/--tls-key for agents on other hosts"
            }
        }
    }
}

impl AgentsTlsArgs {
    pub fn load(&self) -> Result<AgentsTransport, AgentsTlsError> {
        let files = ServerTlsFiles::from_flags(
            self.tls_cert.clone(),
            self.tls_key.clone(),
            self.tls_client_ca.clone(),
        )?;
        let mutual = files.as_ref().is_some_and(|f| f.client_ca.is_some());
        if self.require_node_identity && !mutual {
            return Err(AgentsTlsError::IdentityWithoutClientCa);
        }
        let tls = files.map(|f| f.reloading(RELOAD_CHECK_EVERY)).transpose()?.map(Arc::new);
        Ok(AgentsTransport {
            tls,
            mutual,
            allow_insecure: self.allow_insecure_agents,
            node_identity: self.require_node_identity,
            keepalive: (!self.agents_keepalive.is_zero()).then_some(self.agents_keepalive),
            tokens: None,
        })
    }
}

/// Connections the agents' listener holds at once: a session each, with room for reconnects.
pub const AGENT_CONNECTIONS: ConnLimits =
    ConnLimits { max: crate::ingest::DEFAULT_MAX_SESSIONS + 1024, tcp_keepalive: Duration::from_secs(60) };
/// How soon after accept (after the TLS handshake, with TLS) a connection must have sent the
/// HTTP/2 preface.
pub const PREFACE_WITHIN: Duration = Duration::from_secs(10);
/// HTTP/2 pings on an agent's connection: one this long after the last frame, and a connection
/// whose peer does not answer within [`H2_KEEPALIVE_TIMEOUT`] is closed (a half-dead peer, or a
/// client that never reads, is found without waiting for TCP's retransmission timeout).
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams one agent connection may have open: an agent uses one session.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 4;
/// What an agent may send before the collector reads it (HTTP/2 flow control windows, the
/// protocol's default): the memory an agent connection holds when the collector reads it
/// slowly — a session over its batch rate, or a collector behind — is bounded by this, not by
/// hyper's 1 MiB default (a thousand agents would hold a gigabyte).
pub const RECEIVE_WINDOW: u32 = 64 * 1024;

/// Serves `routes` (the session service behind [`gate`]) on `listener` until `shutdown`
/// resolves: over TLS when the transport has it, plain gRPC otherwise; connections capped,
/// kept alive and given [`PREFACE_WITHIN`] to start speaking HTTP/2.
pub async fn serve(
    routes: Routes,
    listener: TcpListener,
    transport: &AgentsTransport,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let gate = Gate::new("agent", AGENT_CONNECTIONS);
    let keepalive = transport.keepalive.unwrap_or(H2_KEEPALIVE_INTERVAL);
    let mut server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive.min(H2_KEEPALIVE_TIMEOUT)))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .initial_stream_window_size(Some(RECEIVE_WINDOW))
        .initial_connection_window_size(Some(RECEIVE_WINDOW));
    let router = server.add_routes(routes);
    let gate = gate.with_silence(keepalive + keepalive.min(H2_KEEPALIVE_TIMEOUT));
    match &transport.tls {
        Some(tls) => {
            router.serve_with_incoming_shutdown(tls_incoming(listener, tls.clone(), gate), shutdown).await
        }
        None => router.serve_with_incoming_shutdown(plain_incoming(listener, gate), shutdown).await,
    }
}

/// Accepts on `listener` under `gate` until the returned stream is dropped, handing each
/// admitted connection to `handshake` on its own task (a slow or silent client holds up
/// nobody); what `handshake` returns is served.
fn incoming<IO, F, Fut>(
    listener: TcpListener,
    gate: Gate,
    handshake: F,
) -> ReceiverStream<Result<Limited<IO>, std::io::Error>>
where
    IO: Send + 'static,
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = Option<IO>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: wait rather than spin or stop serving.
                        warn!(error = %e, "cannot accept an agent connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Some(permit) = gate.admit(&tcp, peer) else { continue };
            let silence = gate.silence();
            let shaken = handshake(tcp, peer);
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(io) = shaken.await {
                    let mut io = Limited::new(io, permit).first_bytes_within(
                        H2_PREFACE_LEN,
                        PREFACE_WITHIN,
                        peer,
                        "agent",
                    );
                    if let Some(after) = silence {
                        io = io.log_silent_close(after, peer, "agent");
                    }
                    let _ = tx.send(Ok(io)).await;
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Plain TCP connections accepted on `listener` under `gate`.
pub fn plain_incoming(
    listener: TcpListener,
    gate: Gate,
) -> ReceiverStream<Result<Limited<TcpStream>, std::io::Error>> {
    incoming(listener, gate, |tcp, _| std::future::ready(Some(tcp)))
}

/// The TLS configuration for the next connection, reporting a reload once.
fn current(tls: &Reloading<ServerConfig>) -> Arc<ServerConfig> {
    let (config, refresh) = tls.get();
    match refresh {
        Refresh::Unchanged => {}
        Refresh::Reloaded => info!(files = ?tls.paths(), "agents' TLS files changed: new sessions use them"),
        Refresh::Failed(e) => warn!(
            error = %e,
            "agents' TLS files changed but cannot be used: new sessions keep the previous certificate"
        ),
    }
    config
}

/// Connections accepted on `listener` under `gate` that completed a TLS handshake within
/// [`HANDSHAKE_TIMEOUT`], each with the configuration current when it was accepted.
pub fn tls_incoming(
    listener: TcpListener,
    tls: Arc<Reloading<ServerConfig>>,
    gate: Gate,
) -> ReceiverStream<Result<Limited<TlsStream<TcpStream>>, std::io::Error>> {
    incoming(listener, gate, move |tcp, peer| {
        let acceptor = tokio_rustls::TlsAcceptor::from(current(&tls));
        async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(e)) => {
                    warn!(%peer, error = %e, "agent refused: TLS handshake failed");
                    None
                }
                Err(_) => {
                    warn!(%peer, "agent refused: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
                    None
                }
            }
        }
    })
}

/// Whether a session from `peer` may start. TLS sessions passed the handshake already (and
/// the client-certificate check when one is required).
pub fn admit(peer: Option<SocketAddr>, tls: bool, allow_insecure: bool) -> Result<(), Status> {
    if tls || allow_insecure || peer.is_some_and(|p| p.ip().is_loopback()) {
        return Ok(());
    }
    let who = peer.map_or_else(|| "an unknown address".to_owned(), |p| p.ip().to_string());
    Err(Status::permission_denied(format!(
        "this collector takes agents over plain gRPC only from loopback, and this one connects from {who}: \
         configure TLS (collector --tls-cert/--tls-key[/--tls-client-ca], agent https:// with --tls-ca) or \
         start the collector with --allow-insecure-agents on a network you trust"
    )))
}

/// Whether the session's client certificate (`certs`, leaf first) is valid for node name
/// `node`: the check `--require-node-identity` makes on each hello.
pub fn check_node_identity(
    certs: Option<&[tokio_rustls::rustls::pki_types::CertificateDer<'static>]>,
    node: &netdiag_model::NodeName,
) -> Result<(), Status> {
    let refuse = |why: String| {
        warn!(%node, "agent refused: {why}");
        Err(Status::permission_denied(why))
    };
    let Some(leaf) = certs.and_then(<[_]>::first) else {
        return refuse(format!(
            "this collector binds agents to their nodes (--require-node-identity), and the agent that says it is \
             {node} presented no client certificate"
        ));
    };
    let cert = match webpki::EndEntityCert::try_from(leaf) {
        Ok(c) => c,
        Err(e) => {
            return refuse(format!(
                "the client certificate of the agent that says it is {node} cannot be read: {e}"
            ));
        }
    };
    let Ok(name) = tokio_rustls::rustls::pki_types::ServerName::try_from(node.as_str()) else {
        return refuse(format!("node name {node} is not a DNS name a certificate can be valid for"));
    };
    if cert.verify_is_valid_for_subject_name(&name).is_err() {
        return refuse(format!(
            "the agent says it is {node}, but its client certificate is not valid for that name: a per-node \
             certificate with the DNS subjectAltName {node} is required, so one node cannot speak for another"
        ));
    }
    Ok(())
}

/// The interceptor the session service runs behind.
pub fn gate(
    transport: &AgentsTransport,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
    let (tls, allow_insecure) = (transport.tls.is_some(), transport.allow_insecure);
    move |req: Request<()>| {
        if let Err(status) = admit(req.remote_addr(), tls, allow_insecure) {
            tracing::warn!(peer = ?req.remote_addr(), "agent refused: plain gRPC from a non-loopback address");
            return Err(status);
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keepalive_is_a_duration_from_a_second_to_an_hour() {
        assert_eq!(parse_keepalive("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_keepalive("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_keepalive("500ms").unwrap_err().contains("outside 1s to 1h"));
        assert!(parse_keepalive("2h").unwrap_err().contains("outside 1s to 1h"));
        assert!(parse_keepalive("30").unwrap_err().contains("write a number and a unit"));
    }

    #[test]
    fn plain_grpc_is_for_loopback_unless_allowed() {
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let lo6: SocketAddr = "[::1]:5000".parse().unwrap();
        let far: SocketAddr = "172.29.0.11:5000".parse().unwrap();
        assert!(admit(Some(lo), false, false).is_ok());
        assert!(admit(Some(lo6), false, false).is_ok());
        let refused = admit(Some(far), false, false).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        assert!(
            refused.message().contains("172.29.0.11")
                && refused.message().contains("--allow-insecure-agents")
        );
        assert!(admit(None, false, false).is_err(), "an unknown peer is not loopback");
        assert!(admit(Some(far), true, false).is_ok(), "TLS sessions passed the handshake");
        assert!(admit(Some(far), false, true).is_ok(), "explicitly allowed");
    }

    #[test]
    fn flags_load_and_say_what_they_do() {
        let none = AgentsTlsArgs::default().load().unwrap();
        assert!(none.tls.is_none() && !none.allow_insecure);
        assert!(none.describe().contains("loopback only"));
        let e = AgentsTlsArgs { tls_cert: Some("/c".into()), ..Default::default() }.load().unwrap_err();
        assert!(e.to_string().contains("--tls-key"), "{e}");
        assert!(AgentsTransport::insecure().describe().contains("--allow-insecure-agents"));
    }

    /// A CA and two certificates it signed (`names` for the first, "agent" for the second), PEM.
    struct Pki {
        ca: String,
        server: (String, String),
        client: (String, String),
    }

    fn pki() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(params, ca_key);
        let leaf = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        Pki { ca: ca.pem(), server: leaf("collector"), client: leaf("agent") }
    }

    fn der(pem: &str) -> Vec<u8> {
        use tokio_rustls::rustls::pki_types::CertificateDer;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
    }

    /// Writes `text` to `path` as a Secret volume or cert-manager does: a new file renamed over.
    fn put(path: &std::path::Path, text: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    /// Connects as an agent trusting `ca` and presenting `client`; the server's certificate
    /// (None: the handshake failed on this side).
    async fn try_connect(addr: SocketAddr, ca: &str, client: &(String, String)) -> Option<Vec<u8>> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
        let chain = vec![CertificateDer::from_pem_slice(client.0.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(client.1.as_bytes()).unwrap();
        let config = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("collector").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.ok()?;
        Some(tls.get_ref().1.peer_certificates()?.first()?.to_vec())
    }

    async fn connect(addr: SocketAddr, ca: &str, client: &(String, String)) -> Vec<u8> {
        try_connect(addr, ca, client).await.expect("the handshake succeeds")
    }

    /// The client certificate of the next connection the server accepted, if one comes.
    async fn accepted(
        incoming: &mut ReceiverStream<Result<Limited<TlsStream<TcpStream>>, std::io::Error>>,
    ) -> Option<Vec<u8>> {
        use tokio_stream::StreamExt;
        let next = tokio::time::timeout(Duration::from_secs(1), incoming.next()).await.ok()??;
        Some(next.unwrap().get_ref().get_ref().1.peer_certificates().unwrap()[0].to_vec())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_connections_see_renewed_certificates_and_a_rotated_client_ca() {
        let dir = std::env::temp_dir().join(format!("netdiag-agents-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (one, two) = (pki(), pki());
        let files = ServerTlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: Some(dir.join("ca.crt")),
        };
        put(&files.cert, &one.server.0);
        put(&files.key, &one.server.1);
        put(files.client_ca.as_ref().unwrap(), &one.ca);
        let tls = Arc::new(files.reloading(Duration::ZERO).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = tls_incoming(listener, tls, Gate::new("agent", AGENT_CONNECTIONS));

        // Certificate A.
        assert_eq!(connect(addr, &one.ca, &one.client).await, der(&one.server.0));
        assert_eq!(accepted(&mut incoming).await, Some(der(&one.client.0)));

        // Renewed to B (another CA, as after a CA rotation): the next connection sees B.
        put(&files.key, &two.server.1);
        put(&files.cert, &two.server.0);
        assert_eq!(connect(addr, &two.ca, &one.client).await, der(&two.server.0));
        assert_eq!(accepted(&mut incoming).await, Some(der(&one.client.0)));

        // The client CA rotated: agents with the old CA's certificates are refused, new ones taken.
        put(files.client_ca.as_ref().unwrap(), &two.ca);
        // (TLS 1.3: the client may finish before the server refuses; the server is the judge.)
        let _ = try_connect(addr, &two.ca, &one.client).await;
        assert_eq!(accepted(&mut incoming).await, None, "a certificate the new client CA did not sign");
        assert_eq!(connect(addr, &two.ca, &two.client).await, der(&two.server.0));
        assert_eq!(accepted(&mut incoming).await, Some(der(&two.client.0)));

        // A broken renewal (a key that is not the certificate's) keeps serving the last good one.
        put(&files.key, &one.server.1);
        assert_eq!(connect(addr, &two.ca, &two.client).await, der(&two.server.0));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_agent_is_bound_to_the_node_its_certificate_names() {
        let cert = |names: &[&str]| {
            let key = rcgen::KeyPair::generate().unwrap();
            let params =
                rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                    .unwrap();
            params.self_signed(&key).unwrap().der().clone()
        };
        let node = |n: &str| n.parse::<netdiag_model::NodeName>().unwrap();
        let node1 = vec![cert(&["node-1"])];
        assert!(check_node_identity(Some(&node1), &node("node-1")).is_ok());
        let denied = check_node_identity(Some(&node1), &node("node-2")).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("not valid for that name"), "{}", denied.message());
        // A shared certificate for every agent names no node.
        let shared = vec![cert(&["netdiag-agent"])];
        assert!(check_node_identity(Some(&shared), &node("node-1")).is_err());
        let none = check_node_identity(None, &node("node-1")).unwrap_err();
        assert!(none.message().contains("no client certificate"), "{}", none.message());
        assert!(check_node_identity(Some(&[]), &node("node-1")).is_err());
        let garbage = vec![tokio_rustls::rustls::pki_types::CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])];
        assert!(check_node_identity(Some(&garbage), &node("node-1")).is_err());
    }

    #[test]
    fn node_identity_needs_mtls() {
        let args = AgentsTlsArgs { require_node_identity: true, ..AgentsTlsArgs::default() };
        let e = args.load().unwrap_err();
        assert!(e.to_string().contains("--tls-client-ca"), "{e}");
    }
}
