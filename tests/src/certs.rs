//! Throwaway certificates for TLS tests: a CA, a server certificate for the given names and
//! addresses, and a client certificate, written as PEM files into a directory the caller owns.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// PEM files of one test PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A CA, a server certificate valid for `server_names` (DNS names or IP addresses) and a client
/// certificate, all under `dir` with file names prefixed by `prefix`.
pub fn generate(dir: &Path, prefix: &str, server_names: &[&str]) -> anyhow::Result<TestPki> {
    Ok(generate_for_nodes(dir, prefix, server_names, &[])?.0)
}

/// [`generate`], plus one client certificate per node of `nodes`, valid for the node's name (a
/// DNS subjectAltName, as per-node agent certificates carry): (certificate, key) files.
pub fn generate_for_nodes(
    dir: &Path,
    prefix: &str,
    server_names: &[&str],
    nodes: &[&str],
) -> anyhow::Result<(TestPki, Vec<(PathBuf, PathBuf)>)> {
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let sign = |names: Vec<String>| -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let cert = CertificateParams::new(names)?.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = sign(server_names.iter().map(|n| (*n).to_owned()).collect())?;
    let (client_cert, client_key) = sign(vec!["netdiag-agent".to_owned()])?;
    let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
        let path = dir.join(format!("{prefix}-{name}"));
        std::fs::write(&path, text)?;
        Ok(path)
    };
    let mut per_node = Vec::new();
    for node in nodes {
        let (cert, key) = sign(vec![(*node).to_owned()])?;
        per_node.push((write(&format!("{node}.crt"), &cert)?, write(&format!("{node}.key"), &key)?));
    }
    let pki = TestPki {
        ca: write("ca.crt", &ca_cert.pem())?,
        server_cert: write("server.crt", &server_cert)?,
        server_key: write("server.key", &server_key)?,
        client_cert: write("client.crt", &client_cert)?,
        client_key: write("client.key", &client_key)?,
    };
    Ok((pki, per_node))
}
