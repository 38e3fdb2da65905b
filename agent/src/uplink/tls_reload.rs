//! The uplink reads its TLS files again at each connection attempt: an agent whose CA file or
//! certificate was wrong connects once the files are replaced, without a restart. Against the
//! collector's real session service over TLS on loopback.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use netdiag_collector::agents_tls::{self, AgentsTransport};
use netdiag_collector::ingest::Ingest;
use netdiag_collector::sink::Recorder;
use netdiag_model::result::Seq;
use netdiag_model::session::{AgentVersion, Hello, InstanceId};
use netdiag_proto::tls::{ClientTlsFiles, ServerTlsFiles};
use netdiag_tests::certs::generate;
use tokio::sync::{mpsc, watch};

use super::{Backoff, UplinkConfig, UplinkStats, run};
use crate::buffer::BufferLimits;

/// Replaces `to` with `from`'s contents the way a Secret volume does: a new file renamed over.
fn put(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn hello() -> Hello {
    Hello {
        node: "node-1".parse().unwrap(),
        agent_version: AgentVersion::new("0.1.0").unwrap(),
        capabilities: Default::default(),
        pods: vec![],
        node_ips: vec![],
        first_unacked_seq: Seq::FIRST,
        instance_id: InstanceId::new("tls-reload-1").unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_tls_files_are_used_from_the_next_connection_attempt() {
    let dir = std::env::temp_dir().join(format!("netdiag-uplink-tls-{}", std::process::id()));
    let ours = generate(&dir, "ours", &["127.0.0.1"]).unwrap();
    let stranger = generate(&dir, "stranger", &["127.0.0.1"]).unwrap();

    // The collector: our CA's server certificate, agents' certificates must be ours.
    let server = ServerTlsFiles {
        cert: ours.server_cert.clone(),
        key: ours.server_key.clone(),
        client_ca: Some(ours.ca.clone()),
    };
    let transport = AgentsTransport {
        tls: Some(Arc::new(server.reloading(Duration::ZERO).unwrap())),
        mutual: true,
        allow_insecure: false,
        node_identity: false,
        keepalive: None,
        tokens: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = Arc::new(Recorder::default());
    let (stop, stop_rx) = watch::channel(false);
    let ingest = Ingest::new(recorder.clone(), stop_rx.clone());
    let routes = tonic::service::Routes::new(ingest.into_service());
    let mut shutdown = stop_rx.clone();
    tokio::spawn(async move {
        let stopped = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        agents_tls::serve(routes, listener, &transport, stopped).await.unwrap();
    });

    // The agent starts with both files wrong: another CA, another CA's certificate.
    let agent_ca = dir.join("agent-ca.crt");
    let agent_cert = dir.join("agent.crt");
    let agent_key = dir.join("agent.key");
    put(&stranger.ca, &agent_ca);
    put(&stranger.client_cert, &agent_cert);
    put(&stranger.client_key, &agent_key);
    let files = ClientTlsFiles {
        ca: agent_ca.clone(),
        identity: Some((agent_cert.clone(), agent_key.clone())),
        server_name: None,
    };
    let cfg = UplinkConfig {
        id: 0,
        collector: format!("https://{addr}"),
        hello: hello(),
        limits: BufferLimits::default(),
        backoff: Backoff { min: Duration::from_millis(20), max: Duration::from_millis(100) },
        connect_timeout: Duration::from_millis(500),
        open_timeout: Duration::from_millis(500),
        tls: Some(Arc::new(files.reloading(Duration::ZERO).unwrap())),
        identity_token: None,
    };
    let (_out_tx, out_rx) = mpsc::channel(16);
    let (in_tx, _in_rx) = mpsc::channel(16);
    let (stats_tx, mut stats) = watch::channel(UplinkStats::default());
    let agent = tokio::spawn(run(cfg, out_rx, in_tx, stats_tx, stop_rx));

    let connects = |stats: &watch::Receiver<UplinkStats>| stats.borrow().connects;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(connects(&stats), 0, "the collector's certificate is not trusted");

    // The right CA, still the stranger's certificate: the collector refuses it.
    put(&ours.ca, &agent_ca);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(connects(&stats), 0, "a client certificate the collector's CA did not sign");
    assert!(recorder.snapshot().is_empty());

    // The renewed certificate and key: the next attempt gets in.
    put(&ours.client_key, &agent_key);
    put(&ours.client_cert, &agent_cert);
    tokio::time::timeout(Duration::from_secs(10), stats.wait_for(|s| s.connected)).await.unwrap().unwrap();
    assert!(!recorder.snapshot().is_empty(), "the session reached the collector");

    stop.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), agent).await;
    let _ = std::fs::remove_dir_all(dir);
}
