//! The lifecycle against the collector's real session service and a tiny agent over loopback
//! gRPC ([`crate::runs::testkit`]): refusals, streaming, the hard limit, cancel on the caller
//! leaving, the agent leaving.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use netdiag_model::run::{
    ProbeRunEvent, ProbeRunRequest, RunDone, RunProgress, RunStep, RunTimeout, RunUpdate, StepName,
    StepStatus,
};
use netdiag_model::text::Text;

use super::*;
use crate::runs::auth::ApiToken;
use crate::runs::testkit::{PROMPTLY, Rig};

fn loopback() -> Caller {
    Caller { addr: Some("127.0.0.1".parse().unwrap()), credentials: Credentials::None }
}

fn request(from: &str, to: &str) -> ProbeRunRequest {
    ProbeRunRequest { from: from.parse().unwrap(), to: to.parse().unwrap(), http_path: None, timeout: None }
}

async fn start(rig: &Rig, from: &str, to: &str) -> Result<RunStream, Refused> {
    let admitted = rig.dispatcher.admit(&loopback())?;
    rig.dispatcher.start(admitted, request(from, to)).await
}

async fn refused(rig: &Rig, from: &str, to: &str) -> Refused {
    start(rig, from, to).await.map(|_| ()).unwrap_err()
}

fn step(index: u32, status: StepStatus) -> RunStep {
    RunStep {
        index,
        name: StepName::new("tcp").unwrap(),
        description: Text::new("TCP connect 10.96.0.20:2379").unwrap(),
        status,
        result: None,
        evidence: vec![],
        elapsed: Duration::from_millis(3),
    }
}

async fn next(stream: &mut RunStream) -> Option<ProbeRunEvent> {
    tokio::time::timeout(PROMPTLY, stream.next()).await.expect("an event in time")
}

fn config() -> RunsConfig {
    RunsConfig::default()
}

#[tokio::test]
async fn a_run_goes_to_the_source_agent_and_streams_back_until_done() {
    let rig = Rig::new(config()).await;
    let mut agent = rig.agent("node-1").await;
    let mut stream = start(&rig, "tidb/demo-pd-0", "svc/tidb/demo-pd:2379").await.unwrap();
    let run = agent.run_request().await;
    assert_eq!(&run.run_id, stream.run_id());
    assert_eq!(run.source.to_string(), "tidb/demo-pd-0");
    assert_eq!(run.timeout.as_millis(), 2000, "the default step timeout");
    assert!(!run.plan.steps.is_empty());
    let last = u32::try_from(run.plan.steps.len()).unwrap();

    let progress = |update| RunProgress { run_id: run.run_id.clone(), update };
    agent.send(progress(RunUpdate::Step(step(0, StepStatus::Ok)))).await;
    assert_eq!(next(&mut stream).await, Some(ProbeRunEvent::Step(step(0, StepStatus::Ok))));
    // A step the plan does not have, and a repeat, are dropped.
    agent.send(progress(RunUpdate::Step(step(last, StepStatus::Ok)))).await;
    agent.send(progress(RunUpdate::Step(step(0, StepStatus::Failed)))).await;
    agent.send(progress(RunUpdate::Done(RunDone::Completed))).await;
    let mut rest = Vec::new();
    while let Some(e) = next(&mut stream).await {
        rest.push(e);
    }
    assert!(rest.iter().all(|e| !matches!(e, ProbeRunEvent::Step(_))), "{rest:?}");
    assert_eq!(rest.last(), Some(&ProbeRunEvent::Done(RunDone::Completed)));
    assert!(rest.len() <= 2, "at most a verdict, then done: {rest:?}");
    assert_eq!(rig.state.run_registry().active(), 0, "the slot is free");
}

#[tokio::test]
async fn run_ids_are_unique() {
    let rig = Rig::new(config()).await;
    let mut agent = rig.agent("node-1").await;
    let a = start(&rig, "tidb/demo-pd-0", "tidb/demo-pd-1:2379").await.unwrap();
    let b = start(&rig, "tidb/demo-pd-0", "tidb/demo-pd-1:2379").await.unwrap();
    assert_ne!(a.run_id(), b.run_id());
    assert_eq!(&agent.run_request().await.run_id, a.run_id());
    assert_eq!(&agent.run_request().await.run_id, b.run_id());
}

#[tokio::test]
async fn a_run_past_the_limit_fails_and_the_agent_is_told_to_cancel() {
    let rig = Rig::new(RunsConfig { run_limit: Duration::from_millis(300), ..config() }).await;
    let mut agent = rig.agent("node-1").await;
    let admitted = rig.dispatcher.admit(&loopback()).unwrap();
    let req = ProbeRunRequest {
        timeout: Some(RunTimeout::from_millis(100).unwrap()),
        ..request("tidb/demo-pd-0", "tidb/demo-pd-1:2379")
    };
    let mut stream = rig.dispatcher.start(admitted, req).await.unwrap();
    let run = agent.run_request().await;
    let started = Instant::now();
    // The agent never answers.
    let Some(ProbeRunEvent::Done(RunDone::Failed { error })) = next(&mut stream).await else {
        panic!("the run should fail at its limit")
    };
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    assert!(error.as_str().contains("run exceeded the 300 ms limit"), "{error}");
    agent.expect_cancel(&run.run_id).await;
    assert_eq!(next(&mut stream).await, None);
}

#[tokio::test]
async fn the_caller_going_away_cancels_the_run_on_the_agent() {
    let rig = Rig::new(config()).await;
    let mut agent = rig.agent("node-1").await;
    let stream = start(&rig, "tidb/demo-pd-0", "tidb/demo-pd-1:2379").await.unwrap();
    let run = agent.run_request().await;
    drop(stream);
    agent.expect_cancel(&run.run_id).await;
    tokio::time::timeout(PROMPTLY, async {
        while rig.state.run_registry().active() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the slot is freed");
}

#[tokio::test]
async fn the_agent_leaving_mid_run_fails_the_run_saying_so() {
    let rig = Rig::new(config()).await;
    let mut agent = rig.agent("node-1").await;
    let mut stream = start(&rig, "tidb/demo-pd-0", "tidb/demo-pd-1:2379").await.unwrap();
    let _ = agent.run_request().await;
    drop(agent);
    let Some(ProbeRunEvent::Done(RunDone::Failed { error })) = next(&mut stream).await else {
        panic!("the run should fail when its agent leaves")
    };
    assert!(error.as_str().contains("the agent on node-1 disconnected during the run"), "{error}");
}

#[tokio::test]
async fn refusals_say_why() {
    let rig = Rig::new(RunsConfig { run_limit: Duration::from_secs(5), ..config() }).await;
    let _old = rig.agent_with("node-2", false).await;

    let r = refused(&rig, "tidb/demo-pd-0", "tidb/demo-pd-1:2379").await;
    assert_eq!(r.kind, RefusalKind::Unavailable);
    assert_eq!(r.message, "the agent on node-1 is not connected; check `netdiag agents`");

    let r = refused(&rig, "tidb/demo-pd-1", "tidb/demo-pd-0:2379").await;
    assert_eq!(r.kind, RefusalKind::Unavailable);
    assert!(r.message.contains("does not take on-demand runs"), "{}", r.message);

    let r = refused(&rig, "tidb/nope", "tidb/demo-pd-0:2379").await;
    assert_eq!(r.kind, RefusalKind::NotFound);
    assert!(r.message.contains("tidb/nope"), "{}", r.message);
    let r = refused(&rig, "tidb/demo-pd-0", "svc/tidb/ghost:80").await;
    assert_eq!(r.kind, RefusalKind::NotFound);
    assert!(r.message.contains("tidb/ghost"), "{}", r.message);

    let r = refused(&rig, "tidb/demo-pd-0", "192.0.2.7:53").await;
    assert_eq!(r.kind, RefusalKind::Forbidden);
    assert!(r.message.contains("outside cluster ranges"), "{}", r.message);

    let admitted = rig.dispatcher.admit(&loopback()).unwrap();
    let long = ProbeRunRequest {
        timeout: Some(RunTimeout::from_millis(6000).unwrap()),
        ..request("tidb/demo-pd-0", "tidb/demo-pd-1:2379")
    };
    let r = rig.dispatcher.start(admitted, long).await.map(|_| ()).unwrap_err();
    assert_eq!(r.kind, RefusalKind::BadRequest);
    assert!(r.message.contains("longer than this collector's 5 s limit"), "{}", r.message);
}

#[tokio::test]
async fn the_allow_list_opens_a_range() {
    let rig = Rig::new(RunsConfig { allow: vec!["192.0.2.0/24".parse().unwrap()], ..config() }).await;
    let mut agent = rig.agent("node-1").await;
    let _stream = start(&rig, "tidb/demo-pd-0", "192.0.2.7:53").await.unwrap();
    let run = agent.run_request().await;
    assert!(run.plan.allowed.iter().any(|n| n.to_string() == "192.0.2.0/24"), "{:?}", run.plan.allowed);
}

#[tokio::test]
async fn the_concurrency_cap_refuses_with_when_to_retry() {
    let rig = Rig::new(RunsConfig { max_concurrent: 1, ..config() }).await;
    let _agent = rig.agent("node-1").await;
    let first = start(&rig, "tidb/demo-pd-0", "tidb/demo-pd-1:2379").await.unwrap();
    let r = refused(&rig, "tidb/demo-pd-0", "tidb/demo-pd-1:2379").await;
    assert_eq!(r.kind, RefusalKind::TooManyRequests);
    assert!(r.message.contains("1 on-demand runs are already in flight"), "{}", r.message);
    let secs = r.retry_after_secs().unwrap();
    assert!((1..=30).contains(&secs), "{secs}");
    drop(first);
    tokio::time::timeout(PROMPTLY, async {
        while start(&rig, "tidb/demo-pd-0", "tidb/demo-pd-1:2379").await.is_err() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a slot frees once the first caller left");
}

#[tokio::test]
async fn the_rate_limit_is_per_caller() {
    let rig = Rig::new(RunsConfig { per_minute: 2, ..config() }).await;
    let a = loopback();
    let b = Caller { addr: Some("::1".parse().unwrap()), ..loopback() };
    assert!(rig.dispatcher.admit(&a).is_ok());
    assert!(rig.dispatcher.admit(&a).is_ok());
    let r = rig.dispatcher.admit(&a).unwrap_err();
    assert_eq!(r.kind, RefusalKind::TooManyRequests);
    assert_eq!(r.retry_after_secs(), Some(30));
    assert!(
        r.message.contains("too many on-demand runs from 127.0.0.1: at most 2 a minute"),
        "{}",
        r.message
    );
    assert!(rig.dispatcher.admit(&b).is_ok(), "another caller has its own budget");
}

#[tokio::test]
async fn authentication_comes_first() {
    let token = ApiToken::new("s3cret").unwrap();
    let rig = Rig::new(RunsConfig { token: Some(token), per_minute: 1, ..config() }).await;
    let remote = |credentials| Caller { addr: Some("10.0.0.5".parse().unwrap()), credentials };
    let r = rig.dispatcher.admit(&remote(Credentials::None)).unwrap_err();
    assert_eq!(r.kind, RefusalKind::Unauthenticated);
    let r = rig.dispatcher.admit(&remote(Credentials::Bearer("nope".into()))).unwrap_err();
    assert_eq!(r.kind, RefusalKind::Unauthenticated);
    // Failed attempts do not use up the caller's runs.
    assert!(rig.dispatcher.admit(&remote(Credentials::Bearer("s3cret".into()))).is_ok());

    let open = Rig::new(config()).await;
    let r = open.dispatcher.admit(&remote(Credentials::None)).unwrap_err();
    assert_eq!(r.kind, RefusalKind::Forbidden);
    assert!(r.message.contains("only from loopback"), "{}", r.message);
    let unknown = Caller { addr: None, credentials: Credentials::None };
    assert_eq!(open.dispatcher.admit(&unknown).unwrap_err().kind, RefusalKind::Forbidden);
}
