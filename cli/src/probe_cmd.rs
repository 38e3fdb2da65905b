//! `netdiag probe --from <ns>/<pod>|node/<name> --to <target>`: an on-demand run through the
//! collector's gRPC `RunProbe`, each step printed as it finishes, then the verdict
//! (`kubectl netdiag probe`: `POST /api/v1/probe` through the API server, the steps printed when
//! the run is done). `-o json` prints one document at the end, the shape of `POST
//! /api/v1/probe`'s answer; `--junit FILE` writes a JUnit report. Exit status: 0 the run
//! completed and found no problem, 1 it found one (the verdict), 2 the run could not be done
//! (refused, failed, cancelled, collector unreachable).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use netdiag_collector::api::v1::{self as v1json, RunEnd};
use netdiag_collector::query::RUN_ID_METADATA;
use netdiag_collector::runs::auth::ApiToken;
use netdiag_collector::runs::dispatch::RunRecord;
use netdiag_model::config::ConfigDuration;
use netdiag_model::run::{ProbeRunEvent, ProbeRunRequest, RunId, RunTarget, RunTimeout};
use netdiag_model::{HttpPath, Port, Source};
use netdiag_proto::v1;
use tonic::metadata::MetadataValue;

use crate::collector_api::{Collector, grpc_client};
use crate::kube_proxy::KubeProxy;
use crate::output::Format;
use crate::query_cmd::{name, runtime};

/// The run found a problem.
const EXIT_VERDICT: u8 = 1;
/// The run could not be done.
const EXIT_NOT_DONE: u8 = 2;

#[derive(Debug, Args)]
pub(crate) struct ProbeOpts {
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
    /// Each probe step's timeout, e.g. 1500ms or 2s (default: the collector's).
    #[arg(long)]
    timeout: Option<ConfigDuration>,
    /// A file holding the collector's API token; without it, NETDIAG_API_TOKEN is used.
    #[arg(long, env = "NETDIAG_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,
    /// Also write the run as a JUnit XML report to this file, for CI: one test case per step (a
    /// failure per failed step) and a "verdict" case (a failure with the verdict, an error when
    /// the run could not be done).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
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

fn request(args: &ProbeOpts) -> Result<ProbeRunRequest> {
    let from: Source = args.from.parse().with_context(|| format!("--from {:?}", args.from))?;
    let http_path = args.http_path.as_deref().map(HttpPath::new).transpose().context("--http")?;
    let timeout = args
        .timeout
        .map(|d| RunTimeout::from_millis(u32::try_from(d.get().as_millis()).unwrap_or(u32::MAX)))
        .transpose()
        .context("--timeout")?;
    Ok(ProbeRunRequest { from, to: target(&args.to, args.port)?, http_path, timeout })
}

fn token(file: Option<&std::path::Path>) -> Result<Option<ApiToken>> {
    Ok(ApiToken::from_file_or_env(file)?)
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
pub(crate) fn render_step(s: &v1json::ProbeStep) -> String {
    let mut out = format!(
        "[{}] {:<7} {:<10} {} ({})\n",
        s.index,
        name(&s.status),
        s.name,
        s.description,
        millis(Duration::from_secs_f64(s.elapsed_ms.max(0.0) / 1000.0))
    );
    // The agent's evidence starts with the outcome in one line, then the detail: a passing
    // probe needs the first line only; a failing one, rule and route lookups get them all.
    let brief = s.result.is_some() && s.status == v1json::StepStatus::Ok;
    let lines: Vec<&str> = s.evidence.iter().flat_map(|e| e.lines()).collect();
    match (&s.result, lines.is_empty()) {
        (Some(r), true) => out.push_str(&format!("      {}\n", r.summary)),
        _ => {
            for line in lines.iter().take(if brief { 1 } else { usize::MAX }) {
                out.push_str(&format!("      {line}\n"));
            }
        }
    }
    out
}

/// The end of a run: the verdict, or that there was no problem, or why the run did not finish.
pub(crate) fn render_end(verdict: Option<&v1json::Finding>, done: &v1json::RunDoneJson) -> String {
    let mut out = String::new();
    match (verdict, done.end) {
        (Some(f), _) => {
            out.push_str(&format!("\nverdict: [{}] {} ({})\n", name(&f.severity), f.verdict, f.id));
            if let Some(c) = &f.culprit {
                out.push_str(&format!("  culprit:    {} {}\n", name(&c.kind), c.name));
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
        (None, RunEnd::Completed) => out.push_str("\nno problem found: every step passed\n"),
        (None, RunEnd::Cancelled) => {
            out.push_str("\nthe run was cancelled by the agent before it finished\n")
        }
        (None, RunEnd::Failed) => out.push_str(&format!(
            "\nthe run could not be done: {}\n",
            done.error.as_deref().unwrap_or("no reason given")
        )),
    }
    out
}

/// The exit status for how the run ended.
/// The run's verdict says NetworkPolicy denies its path and the dataplane agrees: expected.
pub(crate) fn denied_as_intended(verdict: Option<&v1json::Finding>) -> bool {
    verdict.is_some_and(|f| f.id == "denied-by-policy")
}

pub(crate) fn exit_code(verdict: Option<&v1json::Finding>, done: &v1json::RunDoneJson) -> u8 {
    match (done.end, verdict) {
        (RunEnd::Completed, None) => 0,
        (RunEnd::Completed, v) if denied_as_intended(v) => 0,
        (RunEnd::Completed, Some(_)) => EXIT_VERDICT,
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

/// A run over gRPC `RunProbe`, each step printed as it arrives.
async fn run_grpc(
    url: &str,
    opts: &ProbeOpts,
    request: ProbeRunRequest,
    token: Option<ApiToken>,
) -> Result<ExitCode> {
    let started = Instant::now();
    let mut client = grpc_client(url).await?;
    let mut call = tonic::Request::new(v1::ProbeRunRequest::from(request.clone()));
    if let Some(t) = &token {
        let value = MetadataValue::try_from(format!("Bearer {}", t.expose())).map_err(|_| {
            anyhow!("the API token cannot be sent as a header: use a plain secret such as hex")
        })?;
        call.metadata_mut().insert("authorization", value);
    }
    let response = match client.run_probe(call).await {
        Ok(r) => r,
        Err(status) => return Ok(refused(opts, &refusal(&status))),
    };
    let run_id = response
        .metadata()
        .get(RUN_ID_METADATA)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| RunId::new(s).ok());
    if opts.output == Format::Table {
        let id = run_id.as_ref().map(|r| format!(" (run {r})")).unwrap_or_default();
        println!("probing {} → {}{id}", request.from, request.to);
    }
    let mut events = response.into_inner();
    let mut record = RunRecord::default();
    loop {
        let event = match events.message().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(status) => return Ok(refused(opts, &refusal(&status))),
        };
        let event = ProbeRunEvent::try_from(event).context("the collector sent an invalid run event")?;
        match (opts.output, &event) {
            (Format::Table, ProbeRunEvent::Step(step)) => {
                print!("{}", render_step(&v1json::ProbeStep::from(step)))
            }
            (Format::Table, ProbeRunEvent::Policy(p)) => println!("policy: {p} (probing anyway)"),
            _ => {}
        }
        record.apply(event);
    }
    let unknown = RunId::new("unknown").context("a run id")?;
    let response = v1json::ProbeResponse::of_record(
        run_id.as_ref().unwrap_or(&unknown),
        &request,
        &record,
        started.elapsed(),
    );
    finish(opts, &response)
}

/// A run through the API server's service proxy: `POST /api/v1/probe`, answered when done.
async fn run_proxy(proxy: &KubeProxy, opts: &ProbeOpts, request: ProbeRunRequest) -> Result<ExitCode> {
    let body = serde_json::to_value(v1json::ProbeRequest {
        from: request.from.to_string(),
        to: request.to.to_string(),
        http_path: request.http_path.as_ref().map(|p| p.as_str().to_owned()),
        timeout_ms: request.timeout.map(RunTimeout::as_millis),
    })?;
    if opts.output == Format::Table {
        println!(
            "probing {} → {} (through the API server; steps follow when the run is done)",
            request.from, request.to
        );
    }
    let response: v1json::ProbeResponse = match proxy.post("/api/v1/probe", &body).await {
        Ok(r) => r,
        Err(e) => return Ok(refused(opts, &format!("{e:#}"))),
    };
    if opts.output == Format::Table {
        println!("run {}", response.run_id);
        if let Some(p) = &response.policy {
            println!("policy: {p} (probed anyway)");
        }
        for step in &response.steps {
            print!("{}", render_step(step));
        }
    }
    finish(opts, &response)
}

/// The end of a run: the verdict or the JSON document, the JUnit report, the exit status.
fn finish(opts: &ProbeOpts, response: &v1json::ProbeResponse) -> Result<ExitCode> {
    match opts.output {
        Format::Table => print!("{}", render_end(response.verdict.as_ref(), &response.done)),
        Format::Json => println!("{}", serde_json::to_string_pretty(response)?),
    }
    if let Some(path) = &opts.junit {
        crate::junit::write(path, &crate::junit::probe(response))?;
    }
    Ok(ExitCode::from(exit_code(response.verdict.as_ref(), &response.done)))
}

fn refused(opts: &ProbeOpts, message: &str) -> ExitCode {
    if opts.output == Format::Json {
        let body = v1json::ErrorResponse::new(message);
        if let Ok(text) = serde_json::to_string_pretty(&body) {
            println!("{text}");
        }
    }
    eprintln!("netdiag: {message}");
    if let Some(path) = &opts.junit {
        let report = crate::junit::not_done("netdiag probe", "verdict", message);
        if let Err(e) = crate::junit::write(path, &report) {
            eprintln!("netdiag: {e:#}");
        }
    }
    ExitCode::from(EXIT_NOT_DONE)
}

/// Runs `netdiag probe` / `kubectl netdiag probe` against the collector `connect` gives (it
/// gets the API token, for a client that carries it from the start).
pub(crate) fn run_blocking<F, Fut>(connect: F, opts: ProbeOpts) -> ExitCode
where
    F: FnOnce(Option<ApiToken>) -> Fut,
    Fut: std::future::Future<Output = Result<Collector>>,
{
    let attempt = || -> Result<ExitCode> {
        let request = request(&opts)?;
        let token = token(opts.api_token_file.as_deref())?;
        runtime()?.block_on(async {
            match connect(token.clone()).await? {
                Collector::Grpc(url) => run_grpc(&url, &opts, request, token).await,
                Collector::Proxy(proxy) => run_proxy(&proxy, &opts, request).await,
            }
        })
    };
    match attempt() {
        Ok(code) => code,
        Err(e) => refused(&opts, &format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use netdiag_model::finding::{Culprit, CulpritKind, Finding, FindingId, Severity};
    use netdiag_model::run::{RunDone, RunStep, StepName, StepStatus};
    use netdiag_model::text::Text;

    use super::*;

    #[test]
    fn the_timeout_is_a_duration() {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            probe: ProbeOpts,
        }
        let parse = |extra: &[&str]| {
            let base = ["x", "--from", "tidb/demo-pd-0", "--to", "svc/tidb/demo-pd:2379"];
            <Cli as clap::Parser>::try_parse_from([&base[..], extra].concat()).map(|c| c.probe)
        };
        let req = request(&parse(&["--timeout", "1.5s"]).unwrap()).unwrap();
        assert_eq!(req.timeout.map(RunTimeout::as_millis), Some(1500));
        let too_long = request(&parse(&["--timeout", "11m"]).unwrap()).unwrap_err();
        assert!(format!("{too_long:#}").starts_with("--timeout: "), "{too_long:#}");
        assert!(parse(&["--timeout", "1500"]).is_err(), "a bare number is refused");
    }

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
        let out = render_step(&v1json::ProbeStep::from(&step(2, StepStatus::Failed)));
        assert_eq!(
            out,
            "[2] failed  tcp        TCP connect 10.96.0.20:2379 (service tidb/demo-pd) (1002 ms)\n      no SYN-ACK\n      after 1000 ms\n"
        );
    }

    #[test]
    fn the_end_says_the_verdict_or_why_not_and_picks_the_exit_code() {
        let f = v1json::Finding::from(finding());
        let done = |d: &RunDone| v1json::RunDoneJson::from(d);
        let completed = done(&RunDone::Completed);
        let out = render_end(Some(&f), &completed);
        for want in [
            "verdict: [critical] service tidb/demo-pd",
            "culprit:    service tidb/demo-pd",
            "§1.6",
            "check the endpoints",
        ] {
            assert!(out.contains(want), "{want}: {out}");
        }
        assert!(render_end(None, &completed).contains("no problem found"));
        let failed = done(&RunDone::Failed { error: Text::new("run exceeded the 30 s limit").unwrap() });
        assert!(render_end(None, &failed).contains("could not be done: run exceeded the 30 s limit"));
        assert_eq!(exit_code(None, &completed), 0);
        assert_eq!(exit_code(Some(&f), &completed), 1);
        assert_eq!(exit_code(None, &failed), 2);
        assert_eq!(exit_code(None, &done(&RunDone::Cancelled)), 2);
    }
}
