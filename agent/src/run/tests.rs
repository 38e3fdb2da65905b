//! The executor's edges without a namespace: a run that cannot start ends with one
//! `RunDone::Failed` naming why, and the registry refuses over its limit.

use netdiag_model::RunTimeout;
use netdiag_model::run::RunTarget;

use super::*;

fn request(id: &str, source: &str, plan: RunPlan) -> RunRequest {
    RunRequest {
        run_id: RunId::new(id).unwrap(),
        source: source.parse().unwrap(),
        target: "svc/tidb/demo-pd:2379".parse::<RunTarget>().unwrap(),
        http_path: None,
        timeout: RunTimeout::from_millis(500).unwrap(),
        plan,
    }
}

fn empty_plan() -> RunPlan {
    RunPlan { steps: vec![], allowed: vec![] }
}

fn node() -> NodeName {
    "node-1".parse().unwrap()
}

async fn all(mut rx: mpsc::Receiver<RunProgress>) -> Vec<RunProgress> {
    let mut out = Vec::new();
    while let Some(p) = rx.recv().await {
        out.push(p);
    }
    out
}

async fn only_end(req: RunRequest) -> RunDone {
    let (tx, rx) = mpsc::channel(8);
    execute(req, Arc::default(), node(), tx).await;
    let got = all(rx).await;
    assert_eq!(got.len(), 1, "{got:?}");
    match &got[0].update {
        RunUpdate::Done(done) => done.clone(),
        RunUpdate::Step(s) => panic!("a step from a run that cannot start: {s:?}"),
    }
}

fn error_of(done: &RunDone) -> &str {
    match done {
        RunDone::Failed { error } => error.as_str(),
        other => panic!("not failed: {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_source_fails_the_run_with_no_steps() {
    let done = only_end(request("r1", "tidb/x", empty_plan())).await;
    assert_eq!(
        error_of(&done),
        "source tidb/x has no network namespace on node-1: the pod is gone or not started yet"
    );
    let done = only_end(request("r2", "node/node-2", empty_plan())).await;
    assert_eq!(
        error_of(&done),
        "source node/node-2 is another node: this agent runs on node-1; send the run to the agent on node-2"
    );
}

#[tokio::test]
async fn an_inconsistent_plan_fails_the_run_naming_the_step() {
    let plan = RunPlan {
        steps: vec![PlannedStep {
            name: "tcp".parse().unwrap(),
            description: Text::new("every answer").unwrap(),
            action: StepAction::ProbeAnswers {
                resolve_step: 0,
                kind: ProbeKind::Tcp,
                port: Some(Port::new(2379).unwrap()),
                http_path: None,
            },
        }],
        allowed: vec![],
    };
    let done = only_end(request("r1", "tidb/demo-pd-0", plan)).await;
    let error = error_of(&done);
    assert!(error.starts_with("the run's plan is invalid"), "{error}");
    assert!(error.contains("step 0 probes the answers of step 0"), "{error}");
}

#[tokio::test]
async fn the_registry_refuses_over_its_limit_and_cancels_only_what_runs() {
    let (tx, rx) = mpsc::channel(8);
    let full = Runs::with_limit(node(), 0);
    full.start(request("r1", "tidb/demo-pd-0", empty_plan()), Arc::default(), tx.clone());
    assert!(!full.cancel(&RunId::new("r1").unwrap(), tx.clone()), "a refused run is not in progress");
    drop(tx);
    let got = all(rx).await;
    assert_eq!(got.len(), 1);
    let RunUpdate::Done(done) = &got[0].update else { panic!("{got:?}") };
    assert_eq!(error_of(done), "agent on node-1 is busy: 0 runs in progress; try again");

    // A run that ends by itself leaves the registry and sends its one end.
    let (tx, rx) = mpsc::channel(8);
    let runs = Runs::new(node());
    runs.start(request("r2", "tidb/gone", empty_plan()), Arc::default(), tx.clone());
    drop(tx);
    let got = all(rx).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(runs.is_empty());
}
