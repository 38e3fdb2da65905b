//! `RunProbe` over real gRPC on loopback: the token in metadata, refusals as status codes,
//! steps streamed as they happen, and dropping the stream cancelling the run on the agent.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netdiag_model::run::{ProbeRunEvent, RunDone, RunProgress, RunStep, RunUpdate, StepName, StepStatus};
use netdiag_model::text::Text;
use netdiag_proto::v1;
use netdiag_proto::v1::query_client::QueryClient;
use tonic::Code;
use tonic::transport::Channel;

use super::*;
use crate::runs::auth::ApiToken;
use crate::runs::config::RunsConfig;
use crate::runs::testkit::{PROMPTLY, Rig};

async fn client(rig: &Rig) -> QueryClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = QueryService::new(rig.state.clone(), rig.dispatcher.clone()).into_service();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    QueryClient::connect(format!("http://{addr}")).await.unwrap()
}

fn request(token: Option<&str>) -> Request<v1::ProbeRunRequest> {
    let mut r = Request::new(v1::ProbeRunRequest {
        from: "tidb/demo-pd-0".into(),
        to: "tidb/demo-pd-1:2379".into(),
        http_path: String::new(),
        timeout_ms: 0,
    });
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

#[tokio::test]
async fn refusals_are_status_codes_with_the_same_messages() {
    let rig = Rig::new(RunsConfig {
        token: Some(ApiToken::new("s3cret").unwrap()),
        per_minute: 2,
        ..RunsConfig::default()
    })
    .await;
    let mut c = client(&rig).await;
    let e = c.run_probe(request(None)).await.map(|_| ()).unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = c.run_probe(request(Some("s3cret"))).await.map(|_| ()).unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert_eq!(e.message(), "the agent on node-1 is not connected; check `netdiag agents`");
    let mut bad = request(Some("s3cret"));
    bad.get_mut().to = "svc/tidb/demo-pd".into();
    let e = c.run_probe(bad).await.map(|_| ()).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("to") && e.message().contains("needs a port"), "{}", e.message());
    let e = c.run_probe(request(Some("s3cret"))).await.map(|_| ()).unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.metadata().get("retry-after").is_some());
}

fn step(index: u32) -> RunStep {
    RunStep {
        index,
        name: StepName::new("icmp").unwrap(),
        description: Text::new("ping 10.244.2.2").unwrap(),
        status: StepStatus::Ok,
        result: None,
        evidence: vec![],
        elapsed: Duration::from_millis(1),
    }
}

#[tokio::test]
async fn steps_stream_as_they_finish() {
    let rig = Rig::new(RunsConfig::default()).await;
    let mut agent = rig.agent("node-1").await;
    let mut c = client(&rig).await;
    let response = c.run_probe(request(None)).await.unwrap();
    let run_id = response.metadata().get(RUN_ID_METADATA).unwrap().to_str().unwrap().to_owned();
    let mut events = response.into_inner();
    let run = agent.run_request().await;
    assert_eq!(run.run_id.as_str(), run_id);
    agent.send(RunProgress { run_id: run.run_id.clone(), update: RunUpdate::Step(step(0)) }).await;
    // The step arrives before the run is done.
    let first = tokio::time::timeout(PROMPTLY, events.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(ProbeRunEvent::try_from(first).unwrap(), ProbeRunEvent::Step(step(0)));
    agent.send(RunProgress { run_id: run.run_id.clone(), update: RunUpdate::Done(RunDone::Completed) }).await;
    let mut last = None;
    while let Some(e) = tokio::time::timeout(PROMPTLY, events.message()).await.unwrap().unwrap() {
        last = Some(ProbeRunEvent::try_from(e).unwrap());
    }
    assert_eq!(last, Some(ProbeRunEvent::Done(RunDone::Completed)));
}

#[tokio::test]
async fn dropping_the_stream_cancels_the_run() {
    let rig = Rig::new(RunsConfig::default()).await;
    let mut agent = rig.agent("node-1").await;
    let mut c = client(&rig).await;
    let events = c.run_probe(request(None)).await.unwrap().into_inner();
    let run = agent.run_request().await;
    drop(events);
    drop(c);
    agent.expect_cancel(&run.run_id).await;
}
