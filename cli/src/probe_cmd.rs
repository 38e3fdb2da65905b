//! `netdiag probe --from <ns>/<pod>|node/<name> --to <target>`: an on-demand run through the
//! collector's gRPC `RunProbe`, each step printed as it finishes, then the verdict. `-o json`
//! prints one document at the end, the shape of `POST /api/v1/probe`'s answer. Exit status: 0
//! the run completed and found no problem, 1 it found one (the verdict), 2 the run could not be
//! done (refused, failed, cancelled, collector unreachable).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use netdiag_collector::api::v1 as v1json;
use netdiag_collector::query::RUN_ID_METADATA;
use netdiag_collector::runs::auth::ApiToken;
use netdiag_collector::runs::dispatch::RunRecord;
use netdiag_model::finding::Finding;
use netdiag_model::run::{
    ProbeRunEvent, ProbeRunRequest, RunDone, RunId, RunStep, RunTarget, RunTimeout, StepStatus,
};
use netdiag_model::{HttpPath, Port, Source};
use netdiag_proto::v1;
use netdiag_proto::v1::query_client::QueryClient;
use tonic::metadata::MetadataValue;

use crate::output::Format;
use crate::query_cmd::CollectorArg;

/// The run found a problem.
const EXIT_VERDICT: u8 = 1;
/// The run could not be done.
const EXIT_NOT_DONE: u8 = 2;

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    #[command(flatten)]
    collector: CollectorArg,
    /// Where to probe from: `<ns>/<pod>` or `node/<name>`.
    #[arg(long)]
    from: String,
    /// What to reach: `<ns>/<pod>`, `svc/<ns>/<name>:<port>`, `node/<name>`, `<ip>[:<port>]` or
    /// `<dns name>[:<port>]`.
    #[arg(long)]
    to: String,
    /// The port to reach, when `--to` does not give one.
    #[arg(long)]
    port: Option<u16>,
    /// Also check HTTP: GET this path (e.g. /pd/api/v1/members).
    #[arg(long = "http", value_name = "PATH")]
    http_path: Option<String>,
    /// Each probe step's timeout in milliseconds (default: the collector's).
    #[arg(long)]
    timeout_ms: Option<u32>,
    /// A file holding the collector's API token; without it, NETDIAG_API_TOKEN is used.
    #[arg(long, env = "NETDIAG_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// `--to` with `--port` folded in.
pub(crate) fn target(to: &str, port: Option<u16>) -> Result<RunTarget> {
    let target: RunTarget = to.parse().with_context(|| format!("--to {to:?}"))?;
    let Some(port) = port else { return Ok(target) };
    let port = Port::new(port.into()).context("--port")?;
    let set = |current: Option<Port>| -> Result<Option<Port>> {
        match current {
            Some(p) if p != port => {
                bail!("--port {port} conflicts with the port {p} in --to {to:?}: give one")
            }
            _ => Ok(Some(port)),
        }
    };
    Ok(match target {
        RunTarget::Pod { pod, port } => RunTarget::Pod { pod, port: set(port)? },
        RunTarget::Dns { name, port } => RunTarget::Dns { name, port: set(port)? },
        RunTarget::Address { ip, port } => RunTarget::Address { ip, port: set(port)? },
        RunTarget::Node { node, port } => RunTarget::Node { node, port: set(port)? },
        RunTarget::Service { service, port } => {
            RunTarget::Service { service, port: set(Some(port))?.unwrap_or(port) }
        }
    })
}

fn request(args: &ProbeArgs) -> Result<ProbeRunRequest> {
    let from: Source = args.from.parse().with_context(|| format!("--from {:?}", args.from))?;
    let http_path = args.http_path.as_deref().map(HttpPath::new).transpose().context("--http")?;
    let timeout = args.timeout_ms.map(RunTimeout::from_millis).transpose().context("--timeout-ms")?;
    Ok(ProbeRunRequest { from, to: target(&args.to, args.port)?, http_path, timeout })
}

fn token(file: Option<&std::path::Path>) -> Result<Option<ApiToken>> {
    if let Some(path) = file {
        return Ok(Some(ApiToken::from_file(path).context("--api-token-file")?));
    }
    match std::env::var("NETDIAG_API_TOKEN") {
        Ok(t) => Ok(Some(ApiToken::new(&t).context("NETDIAG_API_TOKEN")?)),
        Err(_) => Ok(None),
    }
}

fn millis(d: std::time::Duration) -> String {
    if d.as_micros() < 10_000 {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    }
}

/// One step as it finishes: `[2] failed  tcp  TCP connect … (1002 ms)`, then its result and
/// evidence indented.
pub(crate) fn render_step(s: &RunStep) -> String {
    let mut out = format!(
        "[{}] {:<7} {:<10} {} ({})\n",
        s.index,
        s.status.to_string(),
        s.name.as_str(),
        s.description,
        millis(s.elapsed)
    );
    // The agent's evidence starts with the outcome in one line, then the detail: a passing
    // probe needs the first line only; a failing one, rule and route lookups get them all.
    let brief = s.result.is_some() && s.status == StepStatus::Ok;
    let lines: Vec<&str> = s.evidence.iter().flat_map(|e| e.as_str().lines()).collect();
    match (&s.result, lines.is_empty()) {
        (Some(r), true) => out.push_str(&format!("      {}\n", v1json::StepResult::from(r.as_ref()).summary)),
        _ => {
            for line in lines.iter().take(if brief { 1 } else { usize::MAX }) {
                out.push_str(&format!("      {line}\n"));
            }
        }
    }
    out
}

/// The end of a run: the verdict, or that there was no problem, or why the run did not finish.
pub(crate) fn render_end(verdict: Option<&Finding>, done: &RunDone) -> String {
    let mut out = String::new();
    match (verdict, done) {
        (Some(f), _) => {
            out.push_str(&format!("\nverdict: [{}] {} ({})\n", f.severity, f.verdict, f.id));
            if let Some(c) = &f.culprit {
                out.push_str(&format!("  culprit:    {} {}\n", c.kind, c.name));
            }
            for e in &f.evidence {
                out.push_str(&format!("  evidence:   {e}\n"));
            }
            if let Some(r) = &f.runbook {
                out.push_str(&format!("  runbook:    §{r}\n"));
            }
            if !f.suggestion.is_empty() {
                out.push_str(&format!("  suggestion: {}\n", f.suggestion));
            }
        }
        (None, RunDone::Completed) => out.push_str("\nno problem found: every step passed\n"),
        (None, RunDone::Cancelled) => {
            out.push_str("\nthe run was cancelled by the agent before it finished\n")
        }
        (None, RunDone::Failed { error }) => out.push_str(&format!("\nthe run could not be done: {error}\n")),
    }
    out
}

/// The exit status for how the run ended.
pub(crate) fn exit_code(verdict: Option<&Finding>, done: &RunDone) -> u8 {
    match (done, verdict) {
        (RunDone::Completed, None) => 0,
        (RunDone::Completed, Some(_)) => EXIT_VERDICT,
        _ => EXIT_NOT_DONE,
    }
}

/// Why the collector refused, in words, from a gRPC status.
fn refusal(status: &tonic::Status) -> String {
    use tonic::Code;
    let retry = status
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(|s| format!(" (retry after {s} s)"))
        .unwrap_or_default();
    match status.code() {
        Code::Unauthenticated
        | Code::PermissionDenied
        | Code::NotFound
        | Code::ResourceExhausted
        | Code::Unavailable
        | Code::InvalidArgument => format!("the collector refused the run: {}{retry}", status.message()),
        Code::Unimplemented => "this collector does not take on-demand runs: upgrade it".to_owned(),
        _ => format!("the run failed: {} ({:?})", status.message(), status.code()),
    }
}

async fn run_async(args: &ProbeArgs, request: ProbeRunRequest, token: Option<ApiToken>) -> Result<ExitCode> {
    let started = Instant::now();
    let mut client = QueryClient::connect(args.collector.collector.clone()).await.with_context(|| {
        format!(
            "cannot reach the collector at {} (is `netdiag demo` or a collector running? set --collector)",
            args.collector.collector
        )
    })?;
    let mut call = tonic::Request::new(v1::ProbeRunRequest::from(request.clone()));
    if let Some(t) = &token {
        let value = MetadataValue::try_from(format!("Bearer {}", t.expose())).map_err(|_| {
            anyhow!("the API token cannot be sent as a header: use a plain secret such as hex")
        })?;
        call.metadata_mut().insert("authorization", value);
    }
    let response = match client.run_probe(call).await {
        Ok(r) => r,
        Err(status) => return Ok(refused(args.output, &refusal(&status))),
    };
    let run_id = response
        .metadata()
        .get(RUN_ID_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| RunId::new(s).ok());
    if args.output == Format::Table {
        let id = run_id.as_ref().map(|r| format!(" (run {r})")).unwrap_or_default();
        println!("probing {} → {}{id}", request.from, request.to);
    }
    let mut events = response.into_inner();
    let mut record = RunRecord::default();
    loop {
        let event = match events.message().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(status) => return Ok(refused(args.output, &refusal(&status))),
        };
        let event = ProbeRunEvent::try_from(event).context("the collector sent an invalid run event")?;
        match (args.output, &event) {
            (Format::Table, ProbeRunEvent::Step(step)) => print!("{}", render_step(step)),
            (Format::Table, ProbeRunEvent::Policy(p)) => println!("policy: {p} (probing anyway)"),
            _ => {}
        }
        record.apply(event);
    }
    let done = record.done_or_failed();
    match args.output {
        Format::Table => print!("{}", render_end(record.verdict.as_ref(), &done)),
        Format::Json => {
            let unknown = RunId::new("unknown").context("a run id")?;
            let response = v1json::ProbeResponse::new(
                run_id.as_ref().unwrap_or(&unknown),
                &request,
                &record.steps,
                record.verdict.clone(),
                &done,
                started.elapsed(),
            )
            .with_policy(record.policy.as_ref());
            println!("{}", serde_json::to_string_pretty(&response)?);
        }
    }
    Ok(ExitCode::from(exit_code(record.verdict.as_ref(), &done)))
}

fn refused(output: Format, message: &str) -> ExitCode {
    if output == Format::Json {
        let body = v1json::ErrorResponse::new(message);
        if let Ok(text) = serde_json::to_string_pretty(&body) {
            println!("{text}");
        }
    }
    eprintln!("netdiag: {message}");
    ExitCode::from(EXIT_NOT_DONE)
}

pub(crate) fn run(args: ProbeArgs) -> Result<ExitCode> {
    let attempt = || -> Result<ExitCode> {
        let request = request(&args)?;
        let token = token(args.api_token_file.as_deref())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(run_async(&args, request, token))
    };
    match attempt() {
        Ok(code) => Ok(code),
        Err(e) => Ok(refused(args.output, &format!("{e:#}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use netdiag_model::finding::{Culprit, CulpritKind, FindingId, Severity};
    use netdiag_model::run::StepName;
    use netdiag_model::text::Text;

    use super::*;

    #[test]
    fn the_port_folds_into_the_target() {
        let t = |to: &str, port| target(to, port).map(|t| t.to_string()).map_err(|e| format!("{e:#}"));
        assert_eq!(t("tidb/demo-pd-0", Some(2379)).unwrap(), "tidb/demo-pd-0:2379");
        assert_eq!(t("10.96.0.20", Some(80)).unwrap(), "10.96.0.20:80");
        assert_eq!(t("fd00::1", Some(80)).unwrap(), "[fd00::1]:80");
        assert_eq!(t("demo-pd.tidb", Some(2379)).unwrap(), "demo-pd.tidb:2379");
        assert_eq!(t("svc/tidb/demo-pd:2379", Some(2379)).unwrap(), "svc/tidb/demo-pd:2379");
        assert_eq!(t("node/node-1", None).unwrap(), "node/node-1");
        let e = t("svc/tidb/demo-pd:2379", Some(80)).unwrap_err();
        assert!(e.contains("conflicts"), "{e}");
        let e = t("svc/tidb/demo-pd", None).unwrap_err();
        assert!(e.contains("--to") && e.contains("needs a port"), "{e}");
        assert!(t("tidb/demo-pd-0", Some(0)).unwrap_err().contains("--port"));
    }

    fn step(index: u32, status: StepStatus) -> RunStep {
        RunStep {
            index,
            name: StepName::new("tcp").unwrap(),
            description: Text::new("TCP connect 10.96.0.20:2379 (service tidb/demo-pd)").unwrap(),
            status,
            result: None,
            evidence: vec![Text::new("no SYN-ACK\nafter 1000 ms").unwrap()],
            elapsed: Duration::from_millis(1002),
        }
    }

    fn finding() -> Finding {
        Finding {
            id: FindingId::new("service-no-endpoints").unwrap(),
            severity: Severity::Critical,
            verdict: Text::new("service tidb/demo-pd has no working endpoint").unwrap(),
            culprit: Some(Culprit { kind: CulpritKind::Service, name: Text::new("tidb/demo-pd").unwrap() }),
            affected: vec![],
            evidence: vec![],
            runbook: Some(Text::new("1.6").unwrap()),
            suggestion: Text::new("check the endpoints").unwrap(),
        }
    }

    #[test]
    fn steps_print_with_their_evidence_indented() {
        let out = render_step(&step(2, StepStatus::Failed));
        assert_eq!(
            out,
            "[2] failed  tcp        TCP connect 10.96.0.20:2379 (service tidb/demo-pd) (1002 ms)\n      no SYN-ACK\n      after 1000 ms\n"
        );
    }

    #[test]
    fn the_end_says_the_verdict_or_why_not_and_picks_the_exit_code() {
        let f = finding();
        let out = render_end(Some(&f), &RunDone::Completed);
        for want in [
            "verdict: [critical] service tidb/demo-pd",
            "culprit:    service tidb/demo-pd",
            "§1.6",
            "check the endpoints",
        ] {
            assert!(out.contains(want), "{want}: {out}");
        }
        assert!(render_end(None, &RunDone::Completed).contains("no problem found"));
        let failed = RunDone::Failed { error: Text::new("run exceeded the 30 s limit").unwrap() };
        assert!(render_end(None, &failed).contains("could not be done: run exceeded the 30 s limit"));
        assert_eq!(exit_code(None, &RunDone::Completed), 0);
        assert_eq!(exit_code(Some(&f), &RunDone::Completed), 1);
        assert_eq!(exit_code(None, &failed), 2);
        assert_eq!(exit_code(None, &RunDone::Cancelled), 2);
    }
}
