//! Agent ↔ collector transport in the lab, where agents connect from other addresses (the node
//! namespaces) than the collector's: mTLS works end to end; an agent whose certificate another
//! CA signed is refused; plain gRPC from a non-loopback agent is refused unless the collector is
//! told to allow it (every other lab test runs with that explicit allowance).
//!
//! Needs root (the lab).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use netdiag_collector::agents_tls::{AgentsTlsArgs, AgentsTransport};
use netdiag_proto::tls::ClientTlsFiles;
use netdiag_tests::certs::{TestPki, generate, generate_for_nodes};
use netdiag_tests::cluster::{ClusterOptions, LabCluster};
use netdiag_tests::lab::TestLab;

const INTERVAL: Duration = Duration::from_secs(1);

fn pki_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("netdiag-tls-{}-{name}", std::process::id()))
}

fn mtls(pki: &TestPki) -> AgentsTransport {
    AgentsTlsArgs {
        tls_cert: Some(pki.server_cert.clone()),
        tls_key: Some(pki.server_key.clone()),
        tls_client_ca: Some(pki.ca.clone()),
        allow_insecure_agents: false,
        require_node_identity: false,
        ..AgentsTlsArgs::default()
    }
    .load()
    .unwrap()
}

fn agent_files(ca: &TestPki, client: &TestPki) -> ClientTlsFiles {
    ClientTlsFiles {
        ca: ca.ca.clone(),
        identity: Some((client.client_cert.clone(), client.client_key.clone())),
        server_name: None,
    }
}

fn connected(c: &LabCluster) -> usize {
    c.collector
        .agents(netdiag_collector::state::now())
        .iter()
        .filter(|a| a.connected && a.results_received > 0)
        .count()
}

#[test]
fn agents_reach_the_collector_over_mtls() {
    let dir = pki_dir("ok");
    // The collector's agents' listener is the lab's control address on its underlay.
    let pki = generate(&dir, "lab", &["172.29.0.1"]).unwrap();
    let opts = ClusterOptions {
        agents_transport: mtls(&pki),
        agent_tls: Some(agent_files(&pki, &pki)),
        ..ClusterOptions::default()
    };
    let c = LabCluster::start_opts(TestLab::up(), INTERVAL, opts);
    let all = c.wait_for(Duration::from_secs(20), |c| (connected(c) == 3).then_some(()));
    assert!(all.is_some(), "agents over mTLS: {} of 3 connected and streaming", connected(&c));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_agent_certificate_from_another_ca_is_refused() {
    let dir = pki_dir("other-ca");
    let pki = generate(&dir, "lab", &["172.29.0.1"]).unwrap();
    let stranger = generate(&dir, "stranger", &["unused"]).unwrap();
    let opts = ClusterOptions {
        agents_transport: mtls(&pki),
        // Trusts the collector, but presents a certificate the collector's client CA did not sign.
        agent_tls: Some(agent_files(&pki, &stranger)),
        ..ClusterOptions::default()
    };
    let c = LabCluster::start_opts(TestLab::up(), INTERVAL, opts);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(connected(&c), 0, "no agent may stream with a certificate from another CA");
    assert!(c.collector.agents(netdiag_collector::state::now()).is_empty(), "no session was even opened");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn plain_agents_from_other_addresses_need_an_explicit_allowance() {
    let opts = ClusterOptions { agents_transport: AgentsTransport::default(), ..ClusterOptions::default() };
    let c = LabCluster::start_opts(TestLab::up(), INTERVAL, opts);
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        c.collector.agents(netdiag_collector::state::now()).is_empty(),
        "plain gRPC from the node namespaces must be refused without --allow-insecure-agents"
    );
    drop(c);
    // The same lab shape with the allowance streams (what every other lab test relies on).
    let c = LabCluster::start_opts(TestLab::up(), INTERVAL, ClusterOptions::default());
    assert!(c.wait_for(Duration::from_secs(20), |c| (connected(c) == 3).then_some(())).is_some());
}

/// With `--require-node-identity`, an agent's certificate must be valid for its node's name:
/// node-1 and node-2 stream with their own certificates; node-3's agent, holding node-1's
/// certificate, is refused (it cannot send results or inspections as node-3).
#[test]
fn an_agent_cannot_speak_for_a_node_its_certificate_does_not_name() {
    let dir = pki_dir("identity");
    let (pki, per_node) = generate_for_nodes(&dir, "lab", &["172.29.0.1"], &["node-1", "node-2"]).unwrap();
    let mut transport = mtls(&pki);
    transport.node_identity = true;
    let files = |(cert, key): &(PathBuf, PathBuf)| ClientTlsFiles {
        ca: pki.ca.clone(),
        identity: Some((cert.clone(), key.clone())),
        server_name: None,
    };
    let opts = ClusterOptions {
        agents_transport: transport,
        agent_tls: Some(agent_files(&pki, &pki)),
        agent_tls_per_node: [
            ("node-1".to_owned(), files(&per_node[0])),
            ("node-2".to_owned(), files(&per_node[1])),
            ("node-3".to_owned(), files(&per_node[0])),
        ]
        .into_iter()
        .collect(),
        ..ClusterOptions::default()
    };
    let c = LabCluster::start_opts(TestLab::up(), INTERVAL, opts);
    let two = c.wait_for(Duration::from_secs(20), |c| (connected(c) == 2).then_some(()));
    assert!(two.is_some(), "node-1 and node-2 with their own certificates: {} connected", connected(&c));
    std::thread::sleep(Duration::from_secs(3));
    let agents = c.collector.agents(netdiag_collector::state::now());
    let names: Vec<&str> = agents.iter().map(|a| a.node.as_str()).collect();
    assert!(!names.contains(&"node-3"), "node-3's agent holds node-1's certificate: {names:?}");
    assert_eq!(connected(&c), 2);
    let _ = std::fs::remove_dir_all(dir);
}
