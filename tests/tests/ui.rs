//! The web UI in headless Chromium against a lab with a fault: the page shows the failing cells
//! and the finding. The rendered page and a screenshot are kept under
//! `tests/output/ui/` (Chromium from Debian's `chromium` package; `scripts/deps test` installs
//! it). Chromium only ever loads the collector on the host's loopback, with its background
//! networking off.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use netdiag_tests::cluster::LabCluster;

fn output_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("output/ui");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url` with `extra` flags; returns stdout.
fn chromium(url: &str, extra: &[&str], profile: &Path) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            // Let the page's scripts fetch and draw before the DOM is taken.
            "--virtual-time-budget=8000",
            "--window-size=1600,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run chromium ({e}); install it with `apt-get install -y chromium` (scripts/deps test)"
            )
        });
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ui_shows_failing_cells_and_the_finding() {
    let c = LabCluster::up(Duration::from_secs(2));
    let ready = c.wait_for(Duration::from_secs(30), |c| {
        let agents = c.collector.agents(netdiag_collector::state::now());
        (agents.len() == 3 && agents.iter().all(|a| a.results_received > 100)).then_some(())
    });
    assert!(ready.is_some(), "agents never delivered");
    c.lab.fault("port-closed tidb/demo-pd-2 2379");
    let finding = c.wait_for(Duration::from_secs(20), |c| {
        c.diagnosis().findings.into_iter().find(|f| f.id.as_str() == "port-refused")
    });
    let (finding, _) = finding.expect("the collector found the closed port");

    let dir = output_dir();
    let profile = tempdir(&dir);
    let url = format!("http://{}/?level=pod&kind=tcp", c.http);
    let dom = chromium(&url, &["--dump-dom"], &profile);
    std::fs::write(dir.join("page.html"), &dom).unwrap();
    chromium(&url, &[&format!("--screenshot={}", dir.join("screenshot.png").display())], &profile);
    let _ = std::fs::remove_dir_all(&profile);

    assert!(dom.contains(r#"id="matrix""#) && dom.contains(r#"data-loaded="true""#), "the matrix never drew");
    let failed_to_pd2 = dom
        .split("<")
        .filter(|tag| tag.contains(r#"data-testid="cell""#) && tag.contains(r#"data-status="failed""#))
        .filter(|tag| tag.contains("demo-pd-2"))
        .count();
    assert!(
        failed_to_pd2 > 0,
        "no failed cell toward demo-pd-2 in the page (see {})",
        dir.join("page.html").display()
    );
    assert!(
        dom.contains(r#"data-testid="finding""#) && dom.contains(r#"data-id="port-refused""#),
        "the finding is not shown (see {})",
        dir.join("page.html").display()
    );
    let verdict_words: String = finding.verdict.as_str().chars().take(20).collect();
    assert!(dom.contains(&html_escape(&verdict_words)), "verdict text {verdict_words:?} missing");
    assert!(
        dir.join("screenshot.png").metadata().unwrap().len() > 10_000,
        "screenshot too small to show anything"
    );
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn tempdir(base: &Path) -> PathBuf {
    let p = base.join(format!("profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}
