//! A pod's `resolv.conf`, read the way glibc's stub resolver reads it (`res_init.c`), so a
//! probe resolves names exactly as the pod's own processes do.
//!
//! [`parse`] is pure and never fails: what glibc would ignore is ignored and counted. [`read`]
//! adds the file I/O with a bounded size. [`candidates`] is the search-list expansion.
//!
//! glibc's rules we follow:
//!
//! * A keyword (`nameserver`, `search`, `domain`, `options`, `sortlist`) counts only at the very
//!   start of a line and followed by a space or a tab: an indented line is ignored, as glibc
//!   ignores it. Lines starting with `#` or `;` are comments.
//! * `nameserver`: the first word, IPv4 or IPv6, an IPv6 one with an optional `%scope`
//!   (interface name or index). glibc uses the first three ([`MAXNS`]); later ones are kept out
//!   of [`ResolvConf::nameservers`] and counted in [`ResolvConf::extra_nameservers`].
//! * `search` and `domain` set the search list; the last such line wins (`domain x` is
//!   `search x`). There is **no cap of 6 domains**: glibc dropped that limit (and the
//!   256-character one) in 2.26, and Kubernetes allows 32 since 1.28; we keep at most
//!   [`MAX_SEARCH_DOMAINS`] (the model's limit) and count the rest as dropped.
//! * `options`: `ndots:n` (default 1, at most 15), `timeout:n` (default 5, at most 30),
//!   `attempts:n` (default 2, at most 5), read like glibc's `atoi` (leading digits, no digits
//!   is 0); the flags `rotate`, `use-vc`, `edns0`, `single-request`, `single-request-reopen`,
//!   `no-tld-query` (or `no_tld_query`), `trust-ad`, `no-aaaa`, `no-reload`, `inet6`, `debug`.
//!   Unknown options are ignored and listed.
//! * **No search list means no search list.** Without `search` or `domain` glibc falls back to
//!   the domain part of `gethostname()`; for a probe that would be the *agent's* hostname, which
//!   says nothing about the pod (NOTES.md trap 2). We never consult the hostname.
//!
//! Where we differ, on purpose: a word starting with `#` or `;` ends a `search`, `domain` or
//! `options` line (glibc would take `#` as a domain name); a search domain that is not a valid
//! DNS name (including the root, `.`) is dropped and counted; a negative option value reads as
//! 0; the `RES_OPTIONS` and `LOCALDOMAIN` environment variables of the pod's processes are not
//! visible to us and are not applied.

mod search;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use netdiag_model::dns::DnsName;
use netdiag_model::inspect::ResolvConf as ModelResolvConf;
use netdiag_model::limits::MAX_SEARCH_DOMAINS;

pub use self::search::{Candidate, candidates, search_order};

/// glibc's `MAXNS`: only the first three nameservers are ever asked.
pub const MAXNS: usize = 3;
/// glibc's `RES_MAXNDOTS`.
pub const MAX_NDOTS: u8 = 15;
/// glibc's `RES_MAXRETRANS` (seconds).
pub const MAX_TIMEOUT_SECS: u8 = 30;
/// glibc's `RES_MAXRETRY`.
pub const MAX_ATTEMPTS: u8 = 5;
/// Unknown option words kept for reporting; more are counted, not kept.
const MAX_UNKNOWN_OPTIONS: usize = 16;
/// A resolv.conf larger than this is not a resolv.conf; [`read`] refuses it.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;

/// A nameserver line's address, with the IPv6 scope as written (`fe80::1%eth0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nameserver {
    pub ip: IpAddr,
    /// Only for IPv6: the interface (name or index) a link-local address is reached through.
    pub scope: Option<Scope>,
}

impl fmt::Display for Nameserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            None => write!(f, "{}", self.ip),
            Some(scope) => write!(f, "{}%{scope}", self.ip),
        }
    }
}

/// The zone of a scoped IPv6 nameserver.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `%2`: an interface index.
    Index(u32),
    /// `%eth0`: an interface name, resolved to an index inside the source's namespace.
    Interface(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Index(i) => write!(f, "{i}"),
            Scope::Interface(name) => f.write_str(name),
        }
    }
}

/// The `options` line's settings, with glibc's defaults and caps applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvOptions {
    /// Names with at least this many dots are tried as-is before the search list.
    pub ndots: u8,
    /// Seconds to wait for the first nameserver in the first round (glibc's `retrans`).
    pub timeout_secs: u8,
    /// Rounds over the nameservers (glibc's `retry`).
    pub attempts: u8,
    /// Start at a random nameserver instead of the first.
    pub rotate: bool,
    /// Query over TCP only.
    pub use_vc: bool,
    /// Send an EDNS0 OPT record.
    pub edns0: bool,
    pub single_request: bool,
    pub single_request_reopen: bool,
    /// Never try a single-label name as-is once the search list was tried.
    pub no_tld_query: bool,
    pub trust_ad: bool,
    /// getaddrinfo suppresses AAAA queries (glibc 2.36+).
    pub no_aaaa: bool,
    pub no_reload: bool,
    pub inet6: bool,
    pub debug: bool,
}

impl Default for ResolvOptions {
    fn default() -> Self {
        Self {
            ndots: 1,
            timeout_secs: 5,
            attempts: 2,
            rotate: false,
            use_vc: false,
            edns0: false,
            single_request: false,
            single_request_reopen: false,
            no_tld_query: false,
            trust_ad: false,
            no_aaaa: false,
            no_reload: false,
            inet6: false,
            debug: false,
        }
    }
}

/// A parsed resolv.conf: what glibc would use, and what it would ignore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// At most [`MAXNS`], in file order.
    pub nameservers: Vec<Nameserver>,
    /// From the last `search` or `domain` line, without trailing dots; at most
    /// [`MAX_SEARCH_DOMAINS`].
    pub search: Vec<DnsName>,
    pub options: ResolvOptions,
    /// Non-blank, non-comment lines glibc ignores: unknown keywords, indented keywords, and
    /// keyword lines without a usable value (`nameserver banana`).
    pub ignored_lines: usize,
    /// Valid nameserver lines after the first [`MAXNS`]: glibc never asks them.
    pub extra_nameservers: usize,
    /// Search domains dropped: not valid DNS names, or beyond [`MAX_SEARCH_DOMAINS`].
    pub dropped_search: usize,
    /// Option words glibc does not know (at most 16 kept).
    pub unknown_options: Vec<String>,
}

impl ResolvConf {
    /// The model's view: addresses without scopes, the search list, and the three numbers.
    pub fn to_model(&self) -> ModelResolvConf {
        ModelResolvConf {
            nameservers: self.nameservers.iter().map(|ns| ns.ip).collect(),
            search: self.search.clone(),
            ndots: self.options.ndots,
            timeout_secs: self.options.timeout_secs,
            attempts: self.options.attempts,
        }
    }
}

impl From<&ResolvConf> for ModelResolvConf {
    fn from(conf: &ResolvConf) -> Self {
        conf.to_model()
    }
}

/// Why a resolv.conf could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot open resolv.conf {path} (is the pod gone, or is its root not visible to the agent?)")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read resolv.conf {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("resolv.conf {path} is larger than {max} bytes: not a resolv.conf")]
    TooLarge { path: PathBuf, max: u64 },
}

/// Reads and parses the resolv.conf at `path` (bytes that are not UTF-8 become U+FFFD, which
/// only makes the words holding them invalid, as they are to glibc).
pub fn read(path: &Path) -> Result<ResolvConf, ReadError> {
    let file = std::fs::File::open(path).map_err(|source| ReadError::Open { path: path.into(), source })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Read { path: path.into(), source })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge { path: path.into(), max: MAX_FILE_BYTES });
    }
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

/// Parses resolv.conf text as glibc does (see the module docs). Never fails, never panics.
pub fn parse(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let usable = match keyword(line) {
            Some(("nameserver", rest)) => nameserver_line(&mut conf, rest),
            Some(("domain", rest)) => search_line(&mut conf, words(rest).take(1)),
            Some(("search", rest)) => search_line(&mut conf, words(rest)),
            Some(("options", rest)) => {
                for word in words(rest) {
                    if !apply_option(&mut conf.options, word)
                        && conf.unknown_options.len() < MAX_UNKNOWN_OPTIONS
                    {
                        conf.unknown_options.push(word.to_owned());
                    }
                }
                true
            }
            // Address sorting for gethostbyname; nothing a probe uses, but not garbage.
            Some(("sortlist", _)) => true,
            _ => false,
        };
        if !usable {
            conf.ignored_lines += 1;
        }
    }
    conf
}

/// `(keyword, rest)` when the line starts with a keyword glibc knows followed by a blank.
fn keyword(line: &str) -> Option<(&'static str, &str)> {
    ["nameserver", "domain", "search", "options", "sortlist"].into_iter().find_map(|kw| {
        let rest = line.strip_prefix(kw)?;
        rest.starts_with([' ', '\t']).then_some((kw, rest))
    })
}

/// The blank-separated words of a value, up to a word starting a comment.
fn words(rest: &str) -> impl Iterator<Item = &str> {
    rest.split([' ', '\t', '\r']).filter(|w| !w.is_empty()).take_while(|w| !w.starts_with(['#', ';']))
}

/// Adds a nameserver; false when the line has no address glibc accepts.
fn nameserver_line(conf: &mut ResolvConf, rest: &str) -> bool {
    // glibc ignores everything after the first word.
    let Some(word) = rest.split([' ', '\t', '\r']).find(|w| !w.is_empty()) else { return false };
    let Some(ns) = parse_nameserver(word) else { return false };
    if conf.nameservers.len() < MAXNS {
        conf.nameservers.push(ns);
    } else {
        conf.extra_nameservers += 1;
    }
    true
}

/// `1.2.3.4`, `fd00::10`, `fe80::1%eth0`, `fe80::1%2`. An IPv4 address cannot carry a scope.
fn parse_nameserver(word: &str) -> Option<Nameserver> {
    if let Ok(ip) = word.parse::<std::net::Ipv4Addr>() {
        return Some(Nameserver { ip: ip.into(), scope: None });
    }
    let (addr, scope) = match word.split_once('%') {
        Some((addr, scope)) => (addr, Some(scope)),
        None => (word, None),
    };
    let ip = addr.parse::<std::net::Ipv6Addr>().ok()?;
    // glibc ignores a scope it cannot use, for backwards compatibility; so do we.
    let scope = scope.and_then(parse_scope);
    Some(Nameserver { ip: ip.into(), scope })
}

fn parse_scope(s: &str) -> Option<Scope> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().map(Scope::Index);
    }
    // Linux interface names: 1 to 15 bytes, no '/', no blanks, not '.' or '..'.
    let valid = (1..=15).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
        && s != "."
        && s != "..";
    valid.then(|| Scope::Interface(s.to_owned()))
}

/// Replaces the search list; false when the line names no domain at all (glibc then keeps
/// the previous list).
fn search_line<'a>(conf: &mut ResolvConf, domains: impl Iterator<Item = &'a str>) -> bool {
    let mut list = Vec::new();
    let mut dropped = 0;
    let mut any = false;
    for word in domains {
        any = true;
        // Validate as written (one trailing dot allowed), then keep it without the dot.
        let name = DnsName::new(word).and_then(|n| match n.as_str().strip_suffix('.') {
            Some(body) => DnsName::new(body),
            None => Ok(n),
        });
        match name {
            Ok(name) if list.len() < MAX_SEARCH_DOMAINS => list.push(name),
            _ => dropped += 1,
        }
    }
    if !any {
        return false;
    }
    conf.search = list;
    conf.dropped_search = dropped;
    true
}

/// Applies one option word; false when glibc does not know it.
fn apply_option(o: &mut ResolvOptions, word: &str) -> bool {
    if let Some(v) = word.strip_prefix("ndots:") {
        o.ndots = atoi_capped(v, MAX_NDOTS);
    } else if let Some(v) = word.strip_prefix("timeout:") {
        o.timeout_secs = atoi_capped(v, MAX_TIMEOUT_SECS);
    } else if let Some(v) = word.strip_prefix("attempts:") {
        o.attempts = atoi_capped(v, MAX_ATTEMPTS);
    } else {
        let flag = match word {
            "rotate" => &mut o.rotate,
            "use-vc" => &mut o.use_vc,
            "edns0" => &mut o.edns0,
            "single-request" => &mut o.single_request,
            "single-request-reopen" => &mut o.single_request_reopen,
            "no-tld-query" | "no_tld_query" => &mut o.no_tld_query,
            "trust-ad" => &mut o.trust_ad,
            "no-aaaa" => &mut o.no_aaaa,
            "no-reload" => &mut o.no_reload,
            "inet6" => &mut o.inet6,
            "debug" => &mut o.debug,
            _ => return false,
        };
        *flag = true;
    }
    true
}

/// glibc's `atoi` then `min(value, max)`: leading digits (an optional `+`), no digits is 0;
/// a negative value reads as 0 (glibc would store it in an unsigned bit field).
fn atoi_capped(s: &str, max: u8) -> u8 {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return 0;
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit);
    let mut value: u32 = 0;
    for d in digits {
        value = value.saturating_mul(10).saturating_add(u32::from(d - b'0'));
    }
    u8::try_from(value.min(u32::from(max))).unwrap_or(max)
}
