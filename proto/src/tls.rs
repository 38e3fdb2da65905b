//! Transport security for the agent session: PEM files read into TLS configs (rustls with
//! ring), with errors that name the file and the flag. The collector serves TLS and, given a
//! client CA, requires agents to present a certificate it signed (mTLS); agents verify the
//! collector against a CA file (no system roots: the cluster's own CA is the one to trust).
//!
//! Certificates are renewed while the processes run (cert-manager, a rotated Secret), so both
//! sides keep their configuration in a [`Reloading`]: the files are read again when asked (at
//! most every [`RELOAD_CHECK_EVERY`] on the collector, at every connection attempt on the
//! agent) and the configuration rebuilt when their contents changed. New connections use the
//! new one; established sessions keep theirs. A rebuild that fails (a half-written file, a
//! key that does not match its certificate) keeps the previous configuration and is reported
//! once per change of the files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// How often the collector looks at its TLS files for a renewal.
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(5);

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
    #[error("{what} {path} ({flag}) cannot be used: {reason}")]
    Invalid { what: &'static str, flag: &'static str, path: PathBuf, reason: String },
    #[error(
        "the certificate {cert} (--tls-cert) and key {key} (--tls-key) do not make a TLS identity: \
         {reason}; check that the key is the certificate's"
    )]
    Identity { cert: PathBuf, key: PathBuf, reason: String },
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

/// Every certificate in a PEM file, at least one.
fn certificates(
    path: &Path,
    what: &'static str,
    flag: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path, what, flag, "CERTIFICATE")?;
    let invalid = |reason: String| TlsError::Invalid { what, flag, path: path.to_owned(), reason };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::NotPem { what, flag, path: path.to_owned(), expected: "CERTIFICATE" });
    }
    Ok(certs)
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

    /// The files, read now: a rustls server configuration offering HTTP/2 (gRPC), asking for a
    /// client certificate signed by the client CA when one is given.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = certificates(&self.cert, "certificate", "--tls-cert")?;
        let key_pem = read_pem(&self.key, "private key", "--tls-key", "PRIVATE KEY")?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Invalid {
            what: "private key",
            flag: "--tls-key",
            path: self.key.clone(),
            reason: format!("no usable PKCS#8, PKCS#1 or SEC1 key: {e}"),
        })?;
        let identity_error =
            |reason: String| TlsError::Identity { cert: self.cert.clone(), key: self.key.clone(), reason };
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| identity_error(e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let invalid = |reason: String| TlsError::Invalid {
                    what: "client CA",
                    flag: "--tls-client-ca",
                    path: ca.clone(),
                    reason,
                };
                let mut roots = rustls::RootCertStore::empty();
                for cert in certificates(ca, "client CA", "--tls-client-ca")? {
                    roots.add(cert).map_err(|e| invalid(e.to_string()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| identity_error(e.to_string()))?;
        // gRPC is HTTP/2; tonic's clients refuse a server that does not offer it.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    /// [`Self::server_config`] now, and again whenever the files change (looked at most every
    /// `every`).
    pub fn reloading(&self, every: Duration) -> Result<Reloading<rustls::ServerConfig>, TlsError> {
        let files = self.clone();
        let paths = [Some(self.cert.clone()), Some(self.key.clone()), self.client_ca.clone()];
        Reloading::new(paths.into_iter().flatten().collect(), every, move || files.server_config())
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

    /// [`Self::load`] now, and again whenever the files change (looked at most every `every`).
    pub fn reloading(&self, every: Duration) -> Result<Reloading<ClientTlsConfig>, TlsError> {
        let files = self.clone();
        let mut paths = vec![self.ca.clone()];
        if let Some((cert, key)) = &self.identity {
            paths.extend([cert.clone(), key.clone()]);
        }
        Reloading::new(paths, every, move || files.load())
    }
}

/// What [`Reloading::get`] found.
#[derive(Debug)]
pub enum Refresh {
    /// Not looked at, or the files are as they were.
    Unchanged,
    /// The files changed and the value was rebuilt from them.
    Reloaded,
    /// The files changed but cannot be used: the previous value is kept. Reported once per
    /// change of the files.
    Failed(TlsError),
}

type Build<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

/// A value built from files, rebuilt when their contents change. Contents, not modification
/// times: a Secret volume swaps a symlink, an editor may keep the time, and the files are a
/// few kilobytes read at most every few seconds.
pub struct Reloading<T> {
    paths: Vec<PathBuf>,
    every: Duration,
    build: Build<T>,
    state: Mutex<ReloadState<T>>,
}

struct ReloadState<T> {
    current: Arc<T>,
    /// The files' contents at the last look (None: unreadable).
    seen: Vec<Option<Vec<u8>>>,
    looked: Instant,
}

impl<T> fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading").field("paths", &self.paths).field("every", &self.every).finish()
    }
}

impl<T> Reloading<T> {
    /// Builds the first value now; its error is the caller's (a start-up error, not a retry).
    pub fn new(
        paths: Vec<PathBuf>,
        every: Duration,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let seen = contents(&paths);
        let current = Arc::new(build()?);
        let state = Mutex::new(ReloadState { current, seen, looked: Instant::now() });
        Ok(Reloading { paths, every, build: Box::new(build), state })
    }

    /// The files this value is built from.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The current value, rebuilt first if the files changed since the last look (looked at
    /// only when `every` has passed since then).
    pub fn get(&self) -> (Arc<T>, Refresh) {
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.looked.elapsed() < self.every {
            return (state.current.clone(), Refresh::Unchanged);
        }
        state.looked = Instant::now();
        let now = contents(&self.paths);
        if now == state.seen {
            return (state.current.clone(), Refresh::Unchanged);
        }
        state.seen = now;
        match (self.build)() {
            Ok(value) => {
                state.current = Arc::new(value);
                (state.current.clone(), Refresh::Reloaded)
            }
            Err(e) => (state.current.clone(), Refresh::Failed(e)),
        }
    }
}

fn contents(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    paths.iter().map(|p| std::fs::read(p).ok()).collect()
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
        let e = files.server_config().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/tls.crt") && e.contains("--tls-cert"), "{e}");
        let junk = temp("junk.crt", "not a certificate");
        let files = ClientTlsFiles { ca: junk.clone(), identity: None, server_name: None };
        let e = files.load().unwrap_err().to_string();
        assert!(e.contains("holds no PEM CERTIFICATE") && e.contains("--tls-ca"), "{e}");
    }

    /// A self-signed certificate for `name` and its key, as PEM.
    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Replaces `path` the way a Secret volume or cert-manager does: a new file renamed over it.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn server_configs_offer_h2_and_refuse_a_key_that_is_not_the_certificates() {
        let (cert, key) = self_signed("collector");
        let (_, other_key) = self_signed("other");
        let files = ServerTlsFiles {
            cert: temp("srv.crt", &cert),
            key: temp("srv.key", &key),
            client_ca: Some(temp("srv-ca.crt", &cert)),
        };
        let config = files.server_config().unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
        let mismatched = ServerTlsFiles { key: temp("other.key", &other_key), ..files.clone() };
        let e = mismatched.server_config().unwrap_err().to_string();
        assert!(
            e.contains("srv.crt") && e.contains("other.key") && e.contains("is the certificate's"),
            "{e}"
        );
        let bad_ca = ServerTlsFiles {
            client_ca: Some(temp(
                "bad-ca.crt",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            )),
            ..files
        };
        let e = bad_ca.server_config().unwrap_err().to_string();
        assert!(e.contains("bad-ca.crt") && e.contains("--tls-client-ca"), "{e}");
    }

    #[test]
    fn a_reloading_value_follows_its_files_and_keeps_the_last_good_one() {
        let path = temp("reload.txt", "one");
        let read = {
            let path = path.clone();
            move || -> Result<String, TlsError> {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if text == "broken" {
                    return Err(TlsError::NotPem {
                        what: "test file",
                        flag: "--test",
                        path: path.clone(),
                        expected: "TEXT",
                    });
                }
                Ok(text)
            }
        };
        let value = Reloading::new(vec![path.clone()], Duration::ZERO, read).unwrap();
        let (v, r) = value.get();
        assert_eq!((v.as_str(), matches!(r, Refresh::Unchanged)), ("one", true));
        replace(&path, "two");
        let (v, r) = value.get();
        assert_eq!((v.as_str(), matches!(r, Refresh::Reloaded)), ("two", true));
        replace(&path, "broken");
        let (v, r) = value.get();
        assert!(matches!(r, Refresh::Failed(_)), "{r:?}");
        assert_eq!(v.as_str(), "two", "the last good value stays");
        let (_, r) = value.get();
        assert!(matches!(r, Refresh::Unchanged), "a failure is reported once per change: {r:?}");
        replace(&path, "three");
        assert_eq!(value.get().0.as_str(), "three");

        // Looked at no more often than asked.
        let slow = Reloading::new(vec![path.clone()], Duration::from_secs(3600), {
            let path = path.clone();
            move || Ok(std::fs::read_to_string(&path).unwrap_or_default())
        })
        .unwrap();
        replace(&path, "four");
        assert_eq!(slow.get().0.as_str(), "three");
    }

    /// Two certificates for "collector" signed by one CA: (CA, [(cert, key); 2]) as PEM.
    fn ca_and_two_leaves() -> (String, [(String, String); 2]) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(params, ca_key);
        let leaf = || {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec!["collector".to_owned()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        (ca.pem(), [leaf(), leaf()])
    }

    /// An in-memory handshake against `server`; the certificate the server presented.
    fn presented(server: Arc<rustls::ServerConfig>, ca: &str) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
        let client =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("collector").unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut server = rustls::ServerConnection::new(server).unwrap();
        fn pass(
            from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
            to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
        ) {
            let mut bytes = Vec::new();
            while from.wants_write() {
                from.write_tls(&mut bytes).unwrap();
            }
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                to.read_tls(&mut rest).unwrap();
                to.process_new_packets().unwrap();
            }
        }
        for _ in 0..10 {
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
            pass(&mut client, &mut server);
            pass(&mut server, &mut client);
        }
        assert!(!client.is_handshaking(), "the handshake completes");
        client.peer_certificates().unwrap()[0].to_vec()
    }

    #[test]
    fn a_renewed_server_certificate_is_what_new_handshakes_see() {
        let (ca, [(a, a_key), (b, b_key)]) = ca_and_two_leaves();
        let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec();
        let files =
            ServerTlsFiles { cert: temp("renew.crt", &a), key: temp("renew.key", &a_key), client_ca: None };
        let reloading = files.reloading(Duration::ZERO).unwrap();
        let before = reloading.get().0;
        assert_eq!(presented(before.clone(), &ca), der(&a));
        replace(&files.key, &b_key);
        replace(&files.cert, &b);
        let (after, r) = reloading.get();
        assert!(matches!(r, Refresh::Reloaded), "{r:?}");
        assert_eq!(presented(after, &ca), der(&b));
        assert_eq!(presented(before, &ca), der(&a), "a config already handed out keeps its certificate");
    }
}
