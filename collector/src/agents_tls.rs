//! How agents may reach the session service: TLS (mTLS with a client CA), or plain gRPC. Plain
//! gRPC is taken only from loopback peers unless `--allow-insecure-agents` says otherwise: a
//! collector that accepted any plaintext agent would take results (and answer with run
//! requests) from anyone who can reach the port.

use std::net::SocketAddr;
use std::path::PathBuf;

use netdiag_proto::tls::{ServerTlsFiles, TlsError};
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Status};

/// The agents' transport flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentsTlsArgs {
    /// Certificate (PEM) the agents' session service presents; with --tls-key, agents connect
    /// over TLS (https://).
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
}

/// The session service's transport, ready to serve.
#[derive(Debug, Clone, Default)]
pub struct AgentsTransport {
    pub tls: Option<ServerTlsConfig>,
    /// Whether client certificates are required (a client CA is configured).
    pub mutual: bool,
    pub allow_insecure: bool,
}

impl AgentsTransport {
    /// Plain gRPC from any address: for a sealed network (the lab) only.
    pub fn insecure() -> Self {
        AgentsTransport { tls: None, mutual: false, allow_insecure: true }
    }

    /// What the collector says about its agents' transport when it starts.
    pub fn describe(&self) -> &'static str {
        match (&self.tls, self.mutual, self.allow_insecure) {
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
    pub fn load(&self) -> Result<AgentsTransport, TlsError> {
        let files = ServerTlsFiles::from_flags(
            self.tls_cert.clone(),
            self.tls_key.clone(),
            self.tls_client_ca.clone(),
        )?;
        let mutual = files.as_ref().is_some_and(|f| f.client_ca.is_some());
        let tls = files.map(|f| f.load()).transpose()?;
        Ok(AgentsTransport { tls, mutual, allow_insecure: self.allow_insecure_agents })
    }
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
}
