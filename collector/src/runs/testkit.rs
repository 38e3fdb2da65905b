//! Test support for on-demand runs: the collector's real session service ([`Ingest`]) on a
//! loopback port, and a tiny agent ([`FakeAgent`]) that connects over gRPC, says hello, and
//! lets the test read what the collector sends it and answer with run progress. Nothing of the
//! collector's own code is replaced.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use netdiag_model::NodeName;
use netdiag_model::inventory::Inventory;
use netdiag_model::result::Seq;
use netdiag_model::run::{RunId, RunProgress, RunRequest};
use netdiag_model::session::{
    AgentMessage, AgentVersion, Capability, CollectorMessage, Hello, InstanceId, LocalPod,
};
use netdiag_proto::v1;
use netdiag_proto::v1::agent_session_client::AgentSessionClient;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::config::RunsConfig;
use super::dispatch::Dispatcher;
use crate::ingest::Ingest;
use crate::state::CollectorState;
use netdiag_diagnose::matrix::MatrixConfig;

/// The lab-shaped inventory the localization tables use.
pub(crate) use netdiag_diagnose::sim::INVENTORY;

/// How long a test waits for something that should happen at once.
pub(crate) const PROMPTLY: Duration = Duration::from_secs(5);

/// A collector's state and session service, serving agents on a loopback port.
pub(crate) struct Rig {
    pub(crate) state: Arc<CollectorState>,
    pub(crate) ingest: Ingest,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) agents: SocketAddr,
    _stop: watch::Sender<bool>,
}

impl Rig {
    pub(crate) async fn new(config: RunsConfig) -> Rig {
        let inventory = Inventory::from_yaml(INVENTORY).unwrap();
        let state = Arc::new(CollectorState::new(inventory, MatrixConfig::default()));
        let (stop, stop_rx) = watch::channel(false);
        let ingest = Ingest::new(state.clone(), stop_rx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let agents = listener.local_addr().unwrap();
        let service = ingest.clone().into_service();
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        let dispatcher = Dispatcher::new(state.clone(), ingest.clone(), config);
        Rig { state, ingest, dispatcher, agents, _stop: stop }
    }

    /// An agent for `node` that announces on-demand runs, connected once this returns.
    pub(crate) async fn agent(&self, node: &str) -> FakeAgent {
        self.agent_with(node, true).await
    }

    pub(crate) async fn agent_with(&self, node: &str, on_demand: bool) -> FakeAgent {
        let agent = FakeAgent::connect(self.agents, node, on_demand).await;
        let name = NodeName::new(node).unwrap();
        tokio::time::timeout(PROMPTLY, async {
            while !self.ingest.is_connected(&name) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the agent's session came up");
        agent
    }
}

/// An agent session driven by the test.
pub(crate) struct FakeAgent {
    up: mpsc::Sender<v1::AgentMessage>,
    down: tonic::Streaming<v1::CollectorMessage>,
}

fn hello(node: &str, on_demand: bool) -> Hello {
    let mut capabilities: std::collections::BTreeSet<Capability> = [Capability::Icmp, Capability::Tcp].into();
    if on_demand {
        capabilities.insert(Capability::OnDemand);
    }
    let pods = match node {
        "node-1" => vec![("tidb/demo-pd-0", "10.244.1.2")],
        _ => vec![("tidb/demo-pd-1", "10.244.2.2")],
    };
    Hello {
        node: NodeName::new(node).unwrap(),
        agent_version: AgentVersion::new("0.1.0").unwrap(),
        capabilities,
        pods: pods
            .into_iter()
            .map(|(pod, ip)| LocalPod {
                pod: pod.parse().unwrap(),
                ips: vec![ip.parse::<IpAddr>().unwrap()],
                host_network: false,
            })
            .collect(),
        node_ips: vec![],
        first_unacked_seq: Seq::FIRST,
        instance_id: InstanceId::new(format!("{node}-test")).unwrap(),
    }
}

impl FakeAgent {
    async fn connect(addr: SocketAddr, node: &str, on_demand: bool) -> FakeAgent {
        let mut client = AgentSessionClient::connect(format!("http://{addr}")).await.unwrap();
        let (up, rx) = mpsc::channel(64);
        up.send(AgentMessage::Hello(hello(node, on_demand)).into()).await.unwrap();
        let down = client.session(ReceiverStream::new(rx)).await.unwrap().into_inner();
        FakeAgent { up, down }
    }

    /// The next message from the collector.
    pub(crate) async fn next(&mut self) -> CollectorMessage {
        let msg = tokio::time::timeout(PROMPTLY, self.down.message())
            .await
            .expect("a message from the collector in time")
            .unwrap()
            .expect("the session is open");
        CollectorMessage::try_from(msg).unwrap()
    }

    /// The next message, which must be a run request.
    pub(crate) async fn run_request(&mut self) -> RunRequest {
        match self.next().await {
            CollectorMessage::Run(r) => r,
            other => panic!("expected a run request, got {other:?}"),
        }
    }

    /// The next message, which must cancel `run`.
    pub(crate) async fn expect_cancel(&mut self, run: &RunId) {
        match self.next().await {
            CollectorMessage::Cancel(id) => assert_eq!(&id, run),
            other => panic!("expected a cancel of {run}, got {other:?}"),
        }
    }

    pub(crate) async fn send(&self, progress: RunProgress) {
        self.up.send(AgentMessage::RunProgress(progress).into()).await.unwrap();
    }
}
