//! The architecture's invariants as tests, in the manner of rust-analyzer's `tidy`: each reads
//! the source tree and fails naming the file that breaks a rule.
//!
//! - only `netns/` calls `setns` (ARCHITECTURE.md, "Architecture invariants");
//! - every Rust file opens with a `//!` header saying what it is for;
//! - `anyhow` is used only at binary edges (the `cli/` crate, `main.rs`/`cli.rs` of the daemons,
//!   benches, fuzz targets and the test crate), never in a library's logic;
//! - every repository path ARCHITECTURE.md names exists;
//! - a command-line flag holding a duration is a duration (`--interval 2s`, parsed by the
//!   model's `ConfigDuration`), not a number of units (`--interval-secs 2`).
//!
//! Code is read through [`code_only`], which blanks comments and literals, so a doc comment
//! saying "never calls `setns`" is not a call. No root, no network.

use std::path::{Path, PathBuf};

/// Where a rule is deliberately broken today, with the reason; each entry is a debt, checked
/// still to be needed (a stale entry fails too).
const ANYHOW_ALLOWED: &[(&str, &str)] = &[(
    "agent/src/agent.rs",
    "agent::run returns anyhow::Result to agent/src/cli.rs; an AgentError enum would end this",
)];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Every file under `root` with one of `exts`, as paths relative to `root` with `/`; skips build
/// output, VCS data and fuzz corpora.
fn files(root: &Path, exts: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !(name.starts_with('.') || name == "target" || name == "corpus" || name == "artifacts") {
                    stack.push(path);
                }
            } else if exts.iter().any(|e| name.ends_with(e))
                && let Ok(rel) = path.strip_prefix(root)
            {
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("tidy: cannot read {rel}: {e}"))
}

/// The source with comments, string and char literals replaced by spaces (newlines kept), so
/// what remains is code. Handles nested block comments, escapes and raw strings; a lifetime
/// (`'a`) is code.
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied().unwrap_or('\0');
        if at(0) == '/' && at(1) == '/' {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if at(0) == '/' && at(1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if at(0) == 'r'
            && (at(1) == '"' || (at(1) == '#' && matches!(at(2), '#' | '"')))
            && !(i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_'))
        {
            // r"…", r#"…"#: ends at a quote followed by as many hashes.
            let mut hashes = 0;
            let mut j = i + 1;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            j += 1;
            while j < c.len() && !(c[j] == '"' && (1..=hashes).all(|h| c.get(j + h) == Some(&'#'))) {
                j += 1;
            }
            let end = (j + 1 + hashes).min(c.len());
            for &ch in &c[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if at(0) == '"' {
            blank(&mut out, '"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            if i < c.len() {
                blank(&mut out, '"');
                i += 1;
            }
        } else if at(0) == '\'' && (at(2) == '\'' || (at(1) == '\\' && at(1) != '\0')) {
            // A char literal ('x', '\n', '\u{1F600}'); `'a` without a closing quote is a lifetime.
            let mut j = i + 1;
            if c.get(j) == Some(&'\\') {
                j += 2;
            } else {
                j += 1;
            }
            while j < c.len() && c[j] != '\'' && c[j] != '\n' {
                j += 1;
            }
            let end = (j + 1).min(c.len());
            for &ch in &c[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Whether `word` occurs in `code` as a whole identifier.
fn has_ident(code: &str, word: &str) -> bool {
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// Whether `rel` (a Rust file) is a binary edge where `anyhow` belongs.
fn is_binary_edge(rel: &str) -> bool {
    rel.starts_with("cli/")
        || rel.starts_with("tests/")
        || rel.starts_with("fuzz/")
        || rel.contains("/benches/")
        || rel.contains("/tests/")
        || rel.ends_with("/src/main.rs")
        || rel.ends_with("/src/cli.rs")
}

#[test]
fn only_netns_calls_setns() {
    let root = repo_root();
    let offenders: Vec<String> = files(&root, &[".rs"])
        .into_iter()
        .filter(|rel| !rel.starts_with("netns/") && rel != "tests/tests/tidy.rs")
        .filter(|rel| has_ident(&code_only(&read(&root, rel)), "setns"))
        .collect();
    assert!(
        offenders.is_empty(),
        "setns is called outside netns/ in {offenders:?}: enter namespaces through netdiag_netns \
         (run_in, NetnsWorker, socket_in), which keeps it off tokio workers"
    );
}

#[test]
fn every_rust_file_opens_with_a_module_header() {
    let root = repo_root();
    let missing: Vec<String> = files(&root, &[".rs"])
        .into_iter()
        .filter(|rel| !read(&root, rel).trim_start().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` header saying what they are for: {missing:?}"
    );
}

#[test]
fn anyhow_only_at_binary_edges() {
    let root = repo_root();
    let mut offenders: Vec<String> = files(&root, &[".rs"])
        .into_iter()
        .filter(|rel| !is_binary_edge(rel))
        .filter(|rel| has_ident(&code_only(&read(&root, rel)), "anyhow"))
        .collect();
    // A library crate (no [[bin]], not the test crate) must not depend on it either.
    for manifest in files(&root, &["Cargo.toml"]) {
        let text = read(&root, &manifest);
        let deps = text.split("\n[").find(|s| s.starts_with("dependencies]")).unwrap_or("");
        let has_bin = text.contains("[[bin]]");
        let edge =
            manifest == "Cargo.toml" || manifest.starts_with("tests/") || manifest.starts_with("fuzz/");
        if !has_bin && !edge && deps.lines().any(|l| l.trim_start().starts_with("anyhow")) {
            offenders.push(manifest);
        }
    }
    let mut unexplained = Vec::new();
    for offender in &offenders {
        if !ANYHOW_ALLOWED.iter().any(|(path, _)| path == offender) {
            unexplained.push(offender.clone());
        }
    }
    let stale: Vec<&str> =
        ANYHOW_ALLOWED.iter().map(|(path, _)| *path).filter(|p| !offenders.iter().any(|o| o == p)).collect();
    assert!(
        unexplained.is_empty(),
        "anyhow outside a binary edge in {unexplained:?}: libraries return thiserror enums whose \
         variants name the failed step; anyhow belongs in cli/, main.rs and cli.rs"
    );
    assert!(stale.is_empty(), "ANYHOW_ALLOWED lists {stale:?}, which no longer use anyhow: remove them");
}

/// The clap fields (`#[arg(…)]`) of `code` whose names carry a time unit (`…_secs`, `…_ms`).
fn unit_suffixed_flags(code: &str) -> Vec<String> {
    const UNITS: &[&str] = &["_secs", "_seconds", "_ms", "_millis"];
    let mut pending = false;
    let mut out = Vec::new();
    for line in code.lines() {
        let t = line.trim();
        if t.starts_with("#[arg") {
            pending = true;
            continue;
        }
        if !pending || t.is_empty() || t.starts_with('#') || !t.contains(':') {
            continue;
        }
        let decl = t.trim_start_matches("pub(crate) ").trim_start_matches("pub ");
        let Some((name, _)) = decl.split_once(':') else { continue };
        let name = name.trim();
        if name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') && !name.is_empty()
        {
            if UNITS.iter().any(|u| name.ends_with(u)) {
                out.push(name.to_owned());
            }
            pending = false;
        }
    }
    out
}

#[test]
fn duration_flags_are_durations() {
    let root = repo_root();
    let offenders: Vec<String> = files(&root, &[".rs"])
        .into_iter()
        .filter(|rel| rel != "tests/tests/tidy.rs")
        .flat_map(|rel| {
            unit_suffixed_flags(&code_only(&read(&root, &rel)))
                .into_iter()
                .map(move |f| format!("{rel}: {f}"))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "flags named for a time unit: {offenders:?}; take a netdiag_model::config::ConfigDuration \
         (`--interval 2s`), the one duration dialect of every flag, env variable and file"
    );
}

/// The backticked tokens of ARCHITECTURE.md that name repository paths, with the crate whose
/// "Inside `x/`" section they appear in. A repository path is relative and ends with `/` or a
/// source extension; runtime paths are written absolute (`/run/netdiag/…`) and API paths
/// (`nodes/status`) have no extension, so neither is taken.
fn architecture_paths(doc: &str) -> Vec<(Option<String>, String)> {
    const EXTS: &[&str] = &[".rs", ".toml", ".yaml", ".yml", ".md", ".proto", ".json", ".py", ".txt", ".tpl"];
    let mut section: Option<String> = None;
    let mut out = Vec::new();
    for line in doc.lines() {
        if let Some(rest) = line.strip_prefix("#") {
            section = rest
                .split('`')
                .nth(1)
                .filter(|_| rest.trim_start_matches('#').trim_start().starts_with("Inside"))
                .map(str::to_owned);
        }
        for (k, token) in line.split('`').enumerate() {
            let chars_ok = token.chars().all(|c| c.is_alphanumeric() || "_-./*".contains(c));
            let relative = !token.starts_with('/') && !token.starts_with('.');
            let source = token.ends_with('/') || EXTS.iter().any(|e| token.ends_with(e));
            let is_path = token == ".ci/run"
                || (relative && chars_ok && source && token.contains(|c: char| c.is_alphanumeric()));
            if k % 2 == 1 && is_path {
                out.push((section.clone(), token.to_owned()));
            }
        }
    }
    out
}

/// Whether `pattern` (`*` matches within one path segment) matches the end of `path` at a
/// segment boundary.
fn suffix_matches(path: &str, pattern: &str) -> bool {
    fn glob(text: &str, pat: &str) -> bool {
        match pat.split_once('*') {
            None => text == pat,
            Some((head, tail)) => {
                text.starts_with(head)
                    && (head.len()..=text.len())
                        .any(|k| !text[head.len()..k].contains('/') && glob(&text[k..], tail))
            }
        }
    }
    let path = path.trim_end_matches('/');
    let pattern = pattern.trim_end_matches('/');
    path.match_indices('/').map(|(k, _)| k + 1).chain([0]).any(|start| glob(&path[start..], pattern))
}

fn path_exists(root: &Path, all: &[String], section: Option<&str>, token: &str) -> bool {
    if root.join(token.trim_end_matches('/')).exists() && !token.contains('*') {
        return true;
    }
    // A name inside a crate's section is relative to somewhere in that crate.
    let scope = section.unwrap_or("");
    all.iter()
        .filter(|p| p.starts_with(scope))
        .flat_map(|p| {
            // Each file and each of its parent directories.
            let mut v = vec![p.clone()];
            let mut s = p.as_str();
            while let Some((parent, _)) = s.rsplit_once('/') {
                v.push(format!("{parent}/"));
                s = parent;
            }
            v
        })
        .any(|p| suffix_matches(&p, token))
}

#[test]
fn every_path_architecture_names_exists() {
    let root = repo_root();
    let doc = read(&root, "ARCHITECTURE.md");
    let all = files(&root, &[""]);
    let paths = architecture_paths(&doc);
    assert!(paths.len() > 20, "ARCHITECTURE.md names only {} paths: is the parser still right?", paths.len());
    let missing: Vec<String> = paths
        .iter()
        .filter(|(section, token)| !path_exists(&root, &all, section.as_deref(), token))
        .map(|(section, token)| match section {
            Some(s) => format!("{token} (in the section on {s})"),
            None => token.clone(),
        })
        .collect();
    assert!(missing.is_empty(), "ARCHITECTURE.md names paths that do not exist: {missing:?}");
}

#[test]
fn architecture_stays_a_map() {
    let root = repo_root();
    let lines = read(&root, "ARCHITECTURE.md").lines().count();
    assert!(
        lines <= 250,
        "ARCHITECTURE.md has {lines} lines: keep it the map (≤ 250), move the manual into module docs"
    );
}

// The checks' own parts, so a check that could never fail is caught here.

#[test]
fn code_only_blanks_comments_and_literals_but_keeps_code() {
    let cases: &[(&str, bool)] = &[
        ("nix::sched::setns(fd, flags)", true),
        ("use nix::sched::{setns, CloneFlags};", true),
        ("// never calls setns here", false),
        ("//! enters with setns", false),
        ("/* setns /* nested */ setns */ let x = 1;", false),
        ("let s = \"setns\";", false),
        ("let s = r#\"a \"setns\" b\"#;", false),
        ("let c = '\"'; setns(1)", true),
        ("fn f<'a>(x: &'a str) { setns(x) }", true),
        ("let s = \"esc \\\" setns\";", false),
        ("let ns = setns_count;", false),
    ];
    for (src, code) in cases {
        assert_eq!(has_ident(&code_only(src), "setns"), *code, "{src}");
    }
    assert_eq!(code_only("a // b\nc").lines().count(), 2, "newlines are kept");
}

#[test]
fn binary_edges_are_where_the_style_says() {
    for edge in [
        "cli/src/probe_cmd.rs",
        "agent/src/cli.rs",
        "collector/src/main.rs",
        "tests/src/lab.rs",
        "collector/benches/ingest.rs",
    ] {
        assert!(is_binary_edge(edge), "{edge}");
    }
    for lib in ["collector/src/state.rs", "model/src/names.rs", "agent/src/agent.rs", "fakekube/src/lib.rs"] {
        assert!(!is_binary_edge(lib), "{lib}");
    }
}

#[test]
fn unit_suffixed_flags_are_found_in_clap_structs_only() {
    let code = "struct A {\n    /// Seconds.\n    #[arg(long, env = \"X\")]\n    pub keepalive_secs: u64,\n    \
                #[arg(\n        long,\n        default_value_t = 3\n    )]\n    timeout_ms: Option<u32>,\n    \
                #[arg(long)]\n    pub interval: ConfigDuration,\n    pub plain_secs: u64,\n}\n";
    assert_eq!(unit_suffixed_flags(&code_only(code)), ["keepalive_secs", "timeout_ms"]);
}

#[test]
fn architecture_paths_are_read_from_backticks_with_their_section() {
    let doc = "| `model/` | `netdiag-model` | see `names.rs` and `nodes/status`, `/run/netdiag/x.json` |\n\
               ### Inside `agent/`\n- `probe/` — `icmp.rs`, `servers/dns*.rs`; `ip rule`, `.ci/run`\n";
    let got = architecture_paths(doc);
    let want: Vec<(Option<String>, String)> = vec![
        (None, "model/".into()),
        (None, "names.rs".into()),
        (Some("agent/".into()), "agent/".into()),
        (Some("agent/".into()), "probe/".into()),
        (Some("agent/".into()), "icmp.rs".into()),
        (Some("agent/".into()), "servers/dns*.rs".into()),
        (Some("agent/".into()), ".ci/run".into()),
    ];
    assert_eq!(got, want);
    let all: Vec<String> =
        ["agent/src/probe/icmp.rs", "lab/src/servers/dns_udp.rs"].map(String::from).to_vec();
    let root = Path::new("/nonexistent");
    assert!(path_exists(root, &all, Some("agent/"), "icmp.rs"));
    assert!(path_exists(root, &all, Some("agent/"), "probe/"));
    assert!(!path_exists(root, &all, Some("agent/"), "tcp.rs"), "a file that is not there");
    assert!(!path_exists(root, &all, Some("agent/"), "servers/dns*.rs"), "another crate's file");
    assert!(path_exists(root, &all, None, "servers/dns*.rs"));
    assert!(!path_exists(root, &all, None, "cmp.rs"), "a suffix must start at a segment");
}
