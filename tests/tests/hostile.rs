//! The real collector binary under hostile load, on loopback only: many honest simulated agent
//! sessions (the real gRPC session protocol, [`netdiag_tests::load`]) beside hostile ones —
//! maximum-size garbage, results for another node's pods, a session that hangs (reads and
//! writes nothing more), connections that never speak, and a flood of unauthenticated API reads, half
//! headers and idle connections. The collector's memory stays bounded, the honest sessions lose
//! no result, and every hostile session is cut with a log line naming why.
//!
//! `HOSTILE_SESSIONS` (honest sessions, default 100), `HOSTILE_SECS` (default 30), `HOSTILE_BATCH`
//! (results per batch, default 50) and `HOSTILE_KEEPALIVE_SECS` (default 5) make the
//! long version: `HOSTILE_SESSIONS=1000 HOSTILE_SECS=600 HOSTILE_KEEPALIVE_SECS=30 cargo test -p netdiag-tests --test
//! hostile -- --nocapture`. Needs the collector binary (`--workspace` builds it); no root.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use netdiag_tests::http::get_json;
use netdiag_tests::load;
use netdiag_tests::processes::{binary, free_loopback_port};

/// How often each honest agent sends a batch (of `HOSTILE_BATCH` results, default 50).
const EVERY: Duration = Duration::from_secs(1);
/// Extra nodes in the inventory for the hostile sessions to claim.
const HOSTILE_NODES: usize = 10;
/// The collector's keepalive for this test (`HOSTILE_KEEPALIVE_SECS`): a peer that hangs is
/// found in seconds. A load generator short of CPU answers pings late, so the long run keeps
/// the production default (30).
const KEEPALIVE_SECS: usize = 5;
/// The collector's deadlines (PREFACE_WITHIN, FIRST_REQUEST_WITHIN) with slack.
const SPEAK_WITHIN: Duration = Duration::from_secs(10);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The collector's resident set in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A child process killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long until the server closes `stream` (it sends nothing); None if not within `limit`.
fn closed_within(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).ok()?;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => return Some(started.elapsed()),
        }
    }
}

fn tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Whether node `n`'s agent is listed as connected.
fn connected(api: SocketAddr, n: usize) -> Option<bool> {
    let (_, v) = get_json(api, "/api/v1/agents", Duration::from_secs(10)).ok()?;
    let node = format!("node-{n}");
    v["agents"].as_array()?.iter().find(|a| a["node"] == node.as_str()).map(|a| a["connected"] == true)
}

#[test]
fn hostile_sessions_are_cut_and_honest_ones_lose_nothing() {
    let honest_n = env("HOSTILE_SESSIONS", 100);
    let secs = env("HOSTILE_SECS", 30) as u64;
    let batch = env("HOSTILE_BATCH", 50);
    let keepalive = env("HOSTILE_KEEPALIVE_SECS", KEEPALIVE_SECS) as u64;
    let nodes = honest_n + HOSTILE_NODES;
    let dir = std::env::temp_dir().join(format!("netdiag-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inventory = dir.join("inventory.yaml");
    std::fs::write(&inventory, load::inventory_yaml(nodes)).unwrap();
    let (agents_port, http_port) = (free_loopback_port(), free_loopback_port());
    let agents = SocketAddr::from(([127, 0, 0, 1], agents_port));
    let api = SocketAddr::from(([127, 0, 0, 1], http_port));
    let log = dir.join("collector.log");
    let file = std::fs::File::create(&log).unwrap();
    let collector = Child(
        Command::new(binary("netdiag-collector"))
            .arg("--inventory")
            .arg(format!("file:{}", inventory.display()))
            .args(["--agents-listen", &agents.to_string(), "--http", &api.to_string()])
            .args(["--agents-keepalive", &format!("{keepalive}s"), "--log", "info"])
            .env("NO_COLOR", "1")
            // The images are musl builds, whose allocator has no per-thread arenas; glibc's
            // (this debug build) keep freed memory per arena, up to 8 per core, which under
            // concurrent API readers held RSS at twice the live memory. Two arenas measure
            // what the collector holds, not what glibc caches.
            .env("MALLOC_ARENA_MAX", "2")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap(),
    );
    let pid = collector.0.id();
    let up = Instant::now();
    while get_json(api, "/healthz", Duration::from_secs(1)).is_err() {
        assert!(up.elapsed() < Duration::from_secs(20), "the collector did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Memory, sampled throughout.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    samples.push(kib);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        })
    };
    let rss_start = rss_kib(pid).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let until = Instant::now() + Duration::from_secs(secs);
    let honest: Vec<_> =
        (1..=honest_n).map(|n| rt.spawn(load::honest(agents, n, nodes, batch, EVERY, until))).collect();
    let hostile = move |k: usize| honest_n + k;

    // Maximum-size garbage after a hello, again and again; garbage instead of a hello; one
    // byte past the size limit.
    let garbage_rounds = Arc::new(AtomicU64::new(0));
    let garbage_loop = {
        let rounds = garbage_rounds.clone();
        rt.spawn(async move {
            let mut statuses = Vec::new();
            let garbage = load::garbage(16 * 1024 * 1024 - 16);
            while Instant::now() < until {
                let msgs = vec![load::hello_bytes(hostile(1)), garbage.clone()];
                statuses.push(load::raw_session(agents, msgs, Duration::from_secs(30)).await);
                rounds.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            statuses
        })
    };
    let no_hello = rt.spawn(load::raw_session(agents, vec![load::garbage(1 << 20)], Duration::from_secs(10)));
    let oversize = rt.spawn(load::raw_session(
        agents,
        vec![load::hello_bytes(hostile(2)), load::garbage(16 * 1024 * 1024 + 1)],
        Duration::from_secs(10),
    ));
    // Results for node-1's pods from another node's session, ten a second.
    let foreign = rt.spawn(async move {
        let msgs = (1..=50).map(|seq| {
            use prost::Message;
            load::batch(1, nodes, seq, 5).encode_to_vec()
        });
        let msgs = std::iter::once(load::hello_bytes(hostile(3))).chain(msgs).collect();
        load::raw_session(agents, msgs, Duration::from_secs(10)).await
    });
    // A session that hangs: reads and writes nothing more.
    let stuck = rt.spawn(load::hangs(agents, hostile(4), nodes, Duration::from_secs(4 * keepalive + 10)));

    // Silent connections to both listeners, half headers, and more connections than the API takes.
    let silent_agents: Vec<_> = (0..50)
        .map(|_| {
            std::thread::spawn(move || {
                closed_within(TcpStream::connect(agents).unwrap(), Duration::from_secs(30))
            })
        })
        .collect();
    let half_headers: Vec<_> = (0..50)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(api).unwrap();
                let half: &[u8] =
                    if i % 2 == 0 { b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n" } else { b"" };
                s.write_all(half).unwrap();
                closed_within(s, Duration::from_secs(30))
            })
        })
        .collect();
    // A flood of unauthenticated reads, each on a new connection.
    let flood_ok = Arc::new(AtomicU64::new(0));
    let flood: Vec<_> = (0..8)
        .map(|i| {
            let ok = flood_ok.clone();
            std::thread::spawn(move || {
                let paths = ["/api/v1/diagnosis", "/metrics", "/api/v1/matrix?level=pod", "/api/v1/agents"];
                let mut k = i;
                while Instant::now() < until {
                    if let Ok((200, _)) = get_json(api, paths[k % paths.len()], Duration::from_secs(5)) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    k += 1;
                }
            })
        })
        .collect();

    // The stuck session: connected, then cut by the keepalive.
    let stuck_node = hostile(4);
    let seen = Instant::now();
    while connected(api, stuck_node) != Some(true) {
        assert!(
            seen.elapsed() < Duration::from_secs(60),
            "the hanging session never came up (its task ended: {})\n{}",
            stuck.is_finished(),
            tail(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stalled_at = Instant::now();
    while connected(api, stuck_node) != Some(false) {
        assert!(
            stalled_at.elapsed() < Duration::from_secs(4 * keepalive + 5),
            "the hung session is still up\n{}",
            tail(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stuck_cut = stalled_at.elapsed();

    // More connections than the API takes (it holds 512): the rest are closed at once.
    let past_cap: Vec<TcpStream> = (0..600).filter_map(|_| TcpStream::connect(api).ok()).collect();
    std::thread::sleep(Duration::from_secs(1));
    drop(past_cap);

    let silent_cuts: Vec<Option<Duration>> = silent_agents.into_iter().map(|t| t.join().unwrap()).collect();
    let half_cuts: Vec<Option<Duration>> = half_headers.into_iter().map(|t| t.join().unwrap()).collect();
    let reports: Vec<load::HonestReport> = honest.into_iter().map(|t| rt.block_on(t).unwrap()).collect();
    for t in flood {
        t.join().unwrap();
    }
    let garbage_statuses = rt.block_on(garbage_loop).unwrap();
    let no_hello = rt.block_on(no_hello).unwrap();
    let oversize = rt.block_on(oversize).unwrap();
    let foreign = rt.block_on(foreign).unwrap();
    stuck.abort();
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.join().unwrap();
    let rss_end = rss_kib(pid).unwrap();
    let (_, agents_json) = get_json(api, "/api/v1/agents", Duration::from_secs(10)).unwrap();
    let (_, metrics) = {
        let mut s = TcpStream::connect(api).unwrap();
        s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n").as_bytes())
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        ((), text)
    };
    let text = std::fs::read_to_string(&log).unwrap();
    let peak = samples.iter().copied().max().unwrap_or(rss_end);

    // The figures, whatever happens next.
    let sent: u64 = reports.iter().map(|r| r.sent_results).sum();
    let lost: Vec<&load::HonestReport> = reports.iter().filter(|r| r.lost.is_some()).collect();
    let max_silent = silent_cuts.iter().flatten().max().copied();
    let max_half = half_cuts.iter().flatten().max().copied();
    println!("hostile load: {honest_n} honest sessions × {secs} s, batches of {batch} every {EVERY:?}");
    println!("  honest results sent / sessions that lost any   {sent} / {}", lost.len());
    println!("  collector RSS start / peak / end               {rss_start} / {peak} / {rss_end} KiB");
    let quarter = |q: usize| samples.get(samples.len() * q / 4).copied().unwrap_or(0);
    println!(
        "  collector RSS at 1/4, 1/2, 3/4 of the run      {} / {} / {} KiB",
        quarter(1),
        quarter(2),
        quarter(3)
    );
    println!("  max-size garbage sessions                      {}", garbage_rounds.load(Ordering::Relaxed));
    println!("  unauthenticated reads answered 200             {}", flood_ok.load(Ordering::Relaxed));
    println!("  hung session cut after                         {stuck_cut:?}");
    println!("  silent agent connections cut after (max)       {max_silent:?}");
    println!("  half-header API connections cut after (max)    {max_half:?}");
    let hung_node = format!("node={}", format_args!("node-{stuck_node}"));
    let hung =
        |l: &&str| l.contains(&hung_node) && !l.contains("agent connected") || l.contains("keepalive ping");
    for line in text.lines().filter(hung) {
        println!("  hung session: {line}");
    }

    let context = || {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        format!("collector log (last lines, newest first):\n{}", tail.join("\n"))
    };
    assert!(lost.is_empty(), "honest sessions lost results: {:?}\n{}", &lost[..lost.len().min(5)], context());
    for (i, r) in reports.iter().enumerate() {
        let node = format!("node-{}", i + 1);
        let entry = agents_json["agents"].as_array().unwrap().iter().find(|a| a["node"] == node.as_str());
        let received = entry.and_then(|a| a["results_received"].as_u64()).unwrap_or(0);
        assert_eq!(received, r.sent_results, "{node}: every result sent was received");
    }

    // Every hostile session cut, with a line naming why.
    for status in &garbage_statuses {
        let status = status.as_ref().expect("the garbage session is ended by the collector");
        assert_ne!(status.code(), tonic::Code::Ok, "{status:?}");
    }
    assert!(no_hello.is_some_and(|s| s.code() != tonic::Code::Ok), "garbage instead of a hello is refused");
    assert!(
        oversize.is_some_and(|s| s.code() != tonic::Code::Ok),
        "a message past the size limit ends the session"
    );
    let foreign = foreign.expect("the session speaking for node-1 is cut");
    assert!(foreign.message().contains("sources on another node"), "{foreign:?}");
    assert!(silent_cuts.iter().all(Option::is_some), "silent agent connections are cut: {silent_cuts:?}");
    assert!(max_silent.unwrap() < SPEAK_WITHIN + Duration::from_secs(3), "{max_silent:?}");
    assert!(half_cuts.iter().all(Option::is_some), "half headers are cut: {half_cuts:?}");
    assert!(max_half.unwrap() < SPEAK_WITHIN + Duration::from_secs(3), "{max_half:?}");
    assert!(stuck_cut < Duration::from_secs(4 * keepalive + 3), "{stuck_cut:?}");
    for line in [
        "agent cut off",                                      // garbage, size, foreign, hung
        "its stream failed",                                  // garbage after a hello
        "its first message cannot be read",                   // garbage instead of a hello
        "sources on another node",                            // speaking for node-1
        "agent connection cut: its first bytes did not come", // silent agent connections
        "API connection cut",                                 // half headers, idle connections
        "API connection refused",                             // past the API's cap
        "not even an answer to the HTTP/2 keepalive ping",    // the hung session
    ] {
        assert!(text.contains(line), "no log line says {line:?}\n{}", context());
    }
    assert!(
        metrics.contains(r#"netdiag_agent_quota_exceeded_total{reason="foreign_source"}"#),
        "the quota metric is served"
    );

    // Memory: bounded, and not growing with time.
    let peak_mib = peak / 1024;
    assert!(peak_mib < 400, "collector RSS peaked at {peak_mib} MiB");
    let half = samples.get(samples.len() / 2).copied().unwrap_or(rss_end);
    assert!(rss_end <= half * 3 / 2, "collector RSS grew from {half} KiB mid-run to {rss_end} KiB");
    let _ = std::fs::remove_dir_all(&dir);
}
