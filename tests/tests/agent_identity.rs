//! Agents' identity bound by the platform (`--agent-identity token`), on loopback with the fake
//! API server's TokenReview and the real kube-rs client: an agent's projected ServiceAccount
//! token proves its node — named by the review, or through its pod's `spec.nodeName` — and a
//! hello for any other node is refused, as is a session with no token, a token for another
//! audience or another ServiceAccount, or one whose pod was replaced. The real agent uplink
//! reads its token file at each connection, so a rotated token is used from the next one.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use netdiag_agent::buffer::BufferLimits;
use netdiag_agent::uplink::{self, Backoff, UplinkConfig, UplinkStats};
use netdiag_collector::agent_token::TokenReviewer;
use netdiag_collector::agents_tls::{self, AgentsTransport};
use netdiag_collector::ingest::Ingest;
use netdiag_collector::sink::Recorder;
use netdiag_fakekube::{FakeKube, IssuedToken, Kind};
use netdiag_model::result::Seq;
use netdiag_model::session::{AgentVersion, Hello, InstanceId};
use netdiag_proto::v1::agent_session_client::AgentSessionClient;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

const NS: &str = "netdiag";
const AGENTS: &str = "netdiag-agent";

fn issued(
    service_account: &str,
    audience: &str,
    pod: Option<(&str, &str)>,
    node: Option<&str>,
) -> IssuedToken {
    IssuedToken {
        namespace: NS.into(),
        service_account: service_account.into(),
        audiences: vec![audience.into()],
        pod: pod.map(|(n, u)| (n.into(), u.into())),
        node: node.map(Into::into),
    }
}

/// An agent pod on `node`; its uid as the fake stored it.
fn agent_pod(fake: &FakeKube, name: &str, node: &str) -> String {
    let pod = Pod {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(NS.into()), ..ObjectMeta::default() },
        spec: Some(PodSpec { node_name: Some(node.into()), ..PodSpec::default() }),
        ..Pod::default()
    };
    fake.apply(&pod).unwrap();
    fake.object(Kind::Pod, NS, name).unwrap()["metadata"]["uid"].as_str().unwrap().to_owned()
}

/// A collector session service reviewing tokens with `fake`, on a loopback port.
async fn collector(fake: &FakeKube) -> (SocketAddr, watch::Sender<bool>) {
    let reviewer =
        TokenReviewer::from_config(fake.config(), format!("{NS}/{AGENTS}").parse().unwrap()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    let ingest = Ingest::new(Arc::new(Recorder::default()), stop_rx.clone()).with_tokens(Some(reviewer));
    // The collector's own listener code, plain gRPC as in the sealed lab.
    let mut signal = stop_rx;
    tokio::spawn(async move {
        let routes = tonic::service::Routes::new(ingest.into_service());
        agents_tls::serve(routes, listener, &AgentsTransport::insecure(), async move {
            let _ = signal.wait_for(|s| *s).await;
        })
        .await
        .unwrap();
    });
    (addr, stop)
}

fn hello(node: &str) -> Hello {
    Hello {
        node: node.parse().unwrap(),
        agent_version: AgentVersion::new("0.1.0").unwrap(),
        capabilities: Default::default(),
        pods: vec![],
        node_ips: vec![],
        first_unacked_seq: Seq::FIRST,
        instance_id: InstanceId::new(format!("identity-{node}")).unwrap(),
    }
}

/// Opens a session saying it is `node`'s agent, with `token` as bearer token; the refusal, if any.
async fn open(addr: SocketAddr, node: &str, token: Option<&str>) -> Result<(), tonic::Status> {
    let mut client = AgentSessionClient::connect(format!("http://{addr}")).await.unwrap();
    let (tx, rx) = mpsc::channel(4);
    tx.send(netdiag_model::session::AgentMessage::Hello(hello(node)).into()).await.unwrap();
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(t) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let opened = client.session(request).await.map(|_| ());
    drop(tx);
    opened
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_proves_one_node_and_nothing_else() {
    let fake = FakeKube::start().await.unwrap();
    let (addr, stop) = collector(&fake).await;
    let uid = agent_pod(&fake, "netdiag-agent-x1", "node-1");
    let by_pod = fake.issue_token(issued(AGENTS, "netdiag", Some(("netdiag-agent-x1", &uid)), None));
    let by_node =
        fake.issue_token(issued(AGENTS, "netdiag", Some(("netdiag-agent-y2", "u-y2")), Some("node-2")));

    // The token's node, whether the review names it or its pod's spec.nodeName does.
    assert!(open(addr, "node-1", Some(&by_pod)).await.is_ok());
    assert!(open(addr, "node-2", Some(&by_node)).await.is_ok());

    // Every other claim is refused, saying why.
    let cases: Vec<(String, Option<String>, tonic::Code, &str)> = vec![
        ("node-2".into(), Some(by_pod.clone()), tonic::Code::PermissionDenied, "\"node-1\"'s"),
        ("node-1".into(), Some(by_node.clone()), tonic::Code::PermissionDenied, "\"node-2\"'s"),
        ("node-1".into(), None, tonic::Code::Unauthenticated, "no bearer token"),
        ("node-1".into(), Some("forged".into()), tonic::Code::PermissionDenied, "token lookup failed"),
        (
            "node-1".into(),
            Some(fake.issue_token(issued(
                AGENTS,
                "https://kubernetes.default.svc",
                Some(("netdiag-agent-x1", &uid)),
                Some("node-1"),
            ))),
            tonic::Code::PermissionDenied,
            "invalid for the target audiences",
        ),
        (
            "node-1".into(),
            Some(fake.issue_token(issued("builder", "netdiag", Some(("builder-1", "u-b")), Some("node-1")))),
            tonic::Code::PermissionDenied,
            "system:serviceaccount:netdiag:builder",
        ),
        (
            "node-1".into(),
            Some(fake.issue_token(issued(
                AGENTS,
                "netdiag",
                Some(("netdiag-agent-x1", "an-older-pod")),
                None,
            ))),
            tonic::Code::PermissionDenied,
            "gone or was replaced",
        ),
    ];
    for (node, token, code, words) in cases {
        let refused = open(addr, &node, token.as_deref()).await.unwrap_err();
        assert_eq!(refused.code(), code, "{node} {token:?}: {refused}");
        assert!(refused.message().contains(words), "{node} {token:?}: {}", refused.message());
    }

    // The collector cannot review tokens (RBAC): agents are told, not taken.
    fake.forbid("create", "tokenreviews");
    let refused = open(addr, "node-1", Some(&by_pod)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");
    assert!(refused.message().contains("create on tokenreviews"), "{}", refused.message());
    stop.send(true).unwrap();
}

/// The real uplink sends the token file's current content at each connection: an agent whose
/// token is first another node's is refused, and gets in once the file holds its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_sends_its_token_file_as_it_is_at_each_connection() {
    let fake = FakeKube::start().await.unwrap();
    let (addr, stop) = collector(&fake).await;
    let other = fake.issue_token(issued(AGENTS, "netdiag", Some(("a", "u-a")), Some("node-2")));
    let own = fake.issue_token(issued(AGENTS, "netdiag", Some(("b", "u-b")), Some("node-1")));
    let dir = std::env::temp_dir().join(format!("netdiag-identity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, format!("{other}\n")).unwrap();
    let cfg = UplinkConfig {
        id: 0,
        collector: format!("http://{addr}"),
        hello: hello("node-1"),
        limits: BufferLimits::default(),
        backoff: Backoff { min: Duration::from_millis(20), max: Duration::from_millis(100) },
        connect_timeout: Duration::from_millis(500),
        open_timeout: Duration::from_secs(5),
        tls: None,
        identity_token: Some(file.clone()),
    };
    let (_out_tx, out_rx) = mpsc::channel(16);
    let (in_tx, _in_rx) = mpsc::channel(1024);
    let (stats_tx, mut stats) = watch::channel(UplinkStats::default());
    let (stop_agent, stop_rx) = watch::channel(false);
    let agent = tokio::spawn(uplink::run(cfg, out_rx, in_tx, stats_tx, stop_rx));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(stats.borrow().connects, 0, "another node's token got the session");
    std::fs::write(&file, own).unwrap();
    tokio::time::timeout(Duration::from_secs(5), stats.wait_for(|s| s.connected)).await.unwrap().unwrap();
    stop_agent.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), agent).await;
    stop.send(true).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
