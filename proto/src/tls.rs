//! Transport security for the agent session: PEM files read into tonic's TLS configs (rustls
//! with ring), with errors that name the file and the flag. The collector serves TLS and, given a
//! client CA, requires agents to present a certificate it signed (mTLS); agents verify the
//! collector against a CA file (no system roots: the cluster's own CA is the one to trust).

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path} ({flag}): {source}")]
    Read {
        what: &'static str,
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} ({flag}) holds no PEM {expected}")]
    NotPem { what: &'static str, flag: &'static str, path: PathBuf, expected: &'static str },
    #[error("{0} is given without {1}: a certificate and its key go together")]
    Unpaired(&'static str, &'static str),
}

fn read_pem(
    path: &Path,
    what: &'static str,
    flag: &'static str,
    expected: &'static str,
) -> Result<Vec<u8>, TlsError> {
    let bytes =
        std::fs::read(path).map_err(|source| TlsError::Read { what, flag, path: path.to_owned(), source })?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN ") || !text.contains(expected) {
        return Err(TlsError::NotPem { what, flag, path: path.to_owned(), expected });
    }
    Ok(bytes)
}

fn identity(
    cert: &Path,
    key: &Path,
    cert_flag: &'static str,
    key_flag: &'static str,
) -> Result<Identity, TlsError> {
    let cert = read_pem(cert, "certificate", cert_flag, "CERTIFICATE")?;
    let key = read_pem(key, "private key", key_flag, "PRIVATE KEY")?;
    Ok(Identity::from_pem(cert, key))
}

/// The collector's side: its certificate and key, and the CA agents' certificates must chain
/// to (None: any client, as with one-way TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsFiles {
    /// From the optional flags: None when no TLS is configured; an error when a certificate
    /// comes without its key (or the other way round) or a client CA without either.
    pub fn from_flags(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        client_ca: Option<PathBuf>,
    ) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(ServerTlsFiles { cert, key, client_ca })),
            (Some(_), None) => Err(TlsError::Unpaired("--tls-cert", "--tls-key")),
            (None, Some(_)) => Err(TlsError::Unpaired("--tls-key", "--tls-cert")),
            (None, None) if client_ca.is_some() => {
                Err(TlsError::Unpaired("--tls-client-ca", "--tls-cert and --tls-key"))
            }
            (None, None) => Ok(None),
        }
    }

    pub fn load(&self) -> Result<ServerTlsConfig, TlsError> {
        let mut cfg =
            ServerTlsConfig::new().identity(identity(&self.cert, &self.key, "--tls-cert", "--tls-key")?);
        if let Some(ca) = &self.client_ca {
            let ca = read_pem(ca, "client CA", "--tls-client-ca", "CERTIFICATE")?;
            cfg = cfg.client_ca_root(Certificate::from_pem(ca));
        }
        Ok(cfg)
    }
}

/// The agent's side: the CA that signed the collector's certificate, and the agent's own
/// certificate and key when the collector asks for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    pub ca: PathBuf,
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name to check the collector's certificate against; None: the URL's host.
    pub server_name: Option<String>,
}

impl ClientTlsFiles {
    pub fn load(&self) -> Result<ClientTlsConfig, TlsError> {
        let ca = read_pem(&self.ca, "CA certificate", "--tls-ca", "CERTIFICATE")?;
        let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = &self.identity {
            cfg = cfg.identity(identity(cert, key, "--tls-cert", "--tls-key")?);
        }
        if let Some(name) = &self.server_name {
            cfg = cfg.domain_name(name.clone());
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("netdiag-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn flags_pair_up() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(ServerTlsFiles::from_flags(None, None, None).unwrap(), None);
        assert!(ServerTlsFiles::from_flags(p("c"), p("k"), None).unwrap().is_some());
        let e = ServerTlsFiles::from_flags(p("c"), None, None).unwrap_err().to_string();
        assert!(e.contains("--tls-cert is given without --tls-key"), "{e}");
        let e = ServerTlsFiles::from_flags(None, None, p("ca")).unwrap_err().to_string();
        assert!(e.contains("--tls-client-ca"), "{e}");
    }

    #[test]
    fn bad_files_name_the_file_and_flag() {
        let files = ServerTlsFiles {
            cert: PathBuf::from("/nonexistent/tls.crt"),
            key: PathBuf::from("/x"),
            client_ca: None,
        };
        let e = files.load().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/tls.crt") && e.contains("--tls-cert"), "{e}");
        let junk = temp("junk.crt", "not a certificate");
        let files = ClientTlsFiles { ca: junk.clone(), identity: None, server_name: None };
        let e = files.load().unwrap_err().to_string();
        assert!(e.contains("holds no PEM CERTIFICATE") && e.contains("--tls-ca"), "{e}");
    }
}
