//! The agent's configuration: flags, `NETDIAG_*` environment variables and an optional YAML
//! file, merged once (flag/env over file over defaults) into an immutable [`AgentConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use netdiag_model::NodeName;
use netdiag_model::config::{ConfigDuration, defaults};
use netdiag_model::plan::Schedule;
use netdiag_proto::tls::ClientTlsFiles;
use serde::Deserialize;

use crate::buffer::BufferLimits;
use crate::plan::HttpCheck;

/// Where the agent learns about pods and services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventorySource {
    /// A static inventory file (what `netdiag lab` writes).
    File(PathBuf),
    /// `kubernetes`: no file; the collector (which watches the API server) sends this node's
    /// pods and the probe plan.
    Kubernetes,
}

impl std::str::FromStr for InventorySource {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        if s == "kubernetes" {
            return Ok(InventorySource::Kubernetes);
        }
        match s.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(InventorySource::File(PathBuf::from(path))),
            _ => Err(ConfigError::Invalid {
                field: "inventory",
                message: format!("{s:?} is not an inventory source; use file:<path> or kubernetes"),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0} is required (flag --{0}, env NETDIAG_{1}, or `{0}:` in the config file)")]
    Missing(&'static str, &'static str),
}

/// `netdiag-agent` flags. Every flag also reads `NETDIAG_<NAME>`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "netdiag-agent",
    version,
    about = "netdiag node agent: probes from inside every pod's network namespace"
)]
pub struct AgentArgs {
    /// YAML config file; flags and environment override its values.
    #[arg(long, env = "NETDIAG_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's name (as in the inventory).
    #[arg(long, env = "NETDIAG_NODE")]
    pub node: Option<String>,
    /// Collector session address, e.g. http://172.29.0.1:7700. Several (repeated, or
    /// comma-separated) for replicated collectors: the agent streams everything to each.
    #[arg(long, env = "NETDIAG_COLLECTOR", value_delimiter = ',')]
    pub collector: Vec<String>,
    /// Inventory source: file:<path>, or kubernetes (pods and plans from the collector).
    #[arg(long, env = "NETDIAG_INVENTORY")]
    pub inventory: Option<String>,
    /// Where /metrics and /healthz listen.
    #[arg(long, env = "NETDIAG_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Probe interval of the derived plan (e.g. 2s; default 5s). With --inventory kubernetes
    /// the collector's plan sets it (and the three below): this is then ignored, with a warning.
    #[arg(long, env = "NETDIAG_INTERVAL")]
    pub interval: Option<ConfigDuration>,
    /// Per-probe timeout (e.g. 500ms; default 1s).
    #[arg(long, env = "NETDIAG_TIMEOUT")]
    pub timeout: Option<ConfigDuration>,
    /// Probes in flight at most (default 64).
    #[arg(long, env = "NETDIAG_MAX_CONCURRENCY")]
    pub max_concurrency: Option<u32>,
    /// Probes started per second at most (default 500).
    #[arg(long, env = "NETDIAG_MAX_RATE")]
    pub max_rate: Option<u32>,
    /// Log format: text or json.
    #[arg(long, env = "NETDIAG_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// CA certificate (PEM) that signed the collector's certificate; required for an https://
    /// collector.
    #[arg(long, env = "NETDIAG_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This agent's certificate (PEM), for a collector that requires client certificates (mTLS).
    #[arg(long, env = "NETDIAG_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "NETDIAG_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The name the collector's certificate must carry, when not the --collector URL's host.
    #[arg(long, env = "NETDIAG_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
    /// A projected ServiceAccount token (audience netdiag) sent to the collector as proof of
    /// this agent's node; re-read at every connection (the kubelet rotates it).
    #[arg(long, env = "NETDIAG_IDENTITY_TOKEN_FILE")]
    pub identity_token_file: Option<PathBuf>,
}

/// The YAML config file: the same settings as the flags, plus HTTP checks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node: Option<String>,
    collector: Option<Collectors>,
    inventory: Option<String>,
    listen: Option<SocketAddr>,
    interval: Option<ConfigDuration>,
    timeout: Option<ConfigDuration>,
    max_concurrency: Option<u32>,
    max_rate: Option<u32>,
    log_format: Option<String>,
    #[serde(default)]
    http_checks: Vec<HttpCheck>,
    buffer_capacity: Option<usize>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_server_name: Option<String>,
    identity_token_file: Option<PathBuf>,
}

/// `collector:` in the config file: one address, or a list for replicated collectors.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Collectors {
    One(String),
    Many(Vec<String>),
}

impl Collectors {
    fn into_vec(self) -> Vec<String> {
        match self {
            Collectors::One(one) => one.split(',').map(str::to_owned).collect(),
            Collectors::Many(many) => many,
        }
    }
}

/// Collector replicas an agent streams to at most: each costs a session and, while it is away,
/// a buffer of its own.
pub const MAX_COLLECTORS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the agent runs with, checked.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: NodeName,
    /// Every collector replica's session address (at least one, all the same scheme); results,
    /// inspections and run progress go to each, plans are taken from one.
    pub collectors: Vec<String>,
    pub inventory: InventorySource,
    pub listen: SocketAddr,
    pub schedule: Schedule,
    pub http_checks: Vec<HttpCheck>,
    pub buffer: BufferLimits,
    pub log_format: LogFormat,
    /// TLS files for an `https://` collector.
    pub tls: Option<ClientTlsFiles>,
    /// The projected ServiceAccount token sent as proof of this agent's node.
    pub identity_token_file: Option<PathBuf>,
    /// Schedule settings given (flag, env or file) that kubernetes mode ignores, as flag names.
    pub ignored_in_kubernetes_mode: Vec<&'static str>,
}

pub const DEFAULT_LISTEN: &str = defaults::AGENT_LISTEN;

impl AgentConfig {
    pub fn load(args: &AgentArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    fn merge(args: &AgentArgs, file: FileConfig) -> Result<Self, ConfigError> {
        let node_text = args.node.clone().or(file.node).ok_or(ConfigError::Missing("node", "NODE"))?;
        let node = NodeName::new(node_text)
            .map_err(|e| ConfigError::Invalid { field: "node", message: e.to_string() })?;
        let given = if args.collector.is_empty() {
            file.collector.map(Collectors::into_vec).unwrap_or_default()
        } else {
            args.collector.clone()
        };
        let collectors = collector_addresses(given)?;
        let tls = tls_files(
            &collectors[0],
            args.tls_ca.clone().or(file.tls_ca),
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
            args.tls_server_name.clone().or(file.tls_server_name),
        )?;
        let inventory: InventorySource = args
            .inventory
            .clone()
            .or(file.inventory)
            .ok_or(ConfigError::Missing("inventory", "INVENTORY"))?
            .parse()?;
        let listen = match args.listen.or(file.listen) {
            Some(l) => l,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError::Invalid { field: "listen", message: "bad default".into() })?,
        };
        let interval = args.interval.or(file.interval).map(Duration::from);
        let timeout = args.timeout.or(file.timeout).map(Duration::from);
        let max_concurrency = args.max_concurrency.or(file.max_concurrency);
        let max_rate = args.max_rate.or(file.max_rate);
        let ignored_in_kubernetes_mode = if inventory == InventorySource::Kubernetes {
            [
                ("--interval", interval.is_some()),
                ("--timeout", timeout.is_some()),
                ("--max-concurrency", max_concurrency.is_some()),
                ("--max-rate", max_rate.is_some()),
            ]
            .into_iter()
            .filter_map(|(flag, set)| set.then_some(flag))
            .collect()
        } else {
            Vec::new()
        };
        let schedule = Schedule::new(
            interval.unwrap_or(defaults::PROBE_INTERVAL),
            timeout.unwrap_or(defaults::PROBE_TIMEOUT),
            max_concurrency.unwrap_or(defaults::MAX_CONCURRENCY),
            max_rate.unwrap_or(defaults::MAX_PROBES_PER_SECOND),
        )
        .map_err(|e| ConfigError::Invalid { field: e.field(), message: e.to_string() })?;
        let log_format = match args.log_format.clone().or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    field: "log_format",
                    message: format!("{other:?}: use text or json"),
                });
            }
        };
        let mut buffer = BufferLimits::default();
        if let Some(cap) = file.buffer_capacity {
            buffer.capacity = cap.clamp(1_000, 10_000_000);
        }
        Ok(AgentConfig {
            node,
            collectors,
            inventory,
            listen,
            schedule,
            http_checks: file.http_checks,
            buffer,
            log_format,
            tls,
            identity_token_file: args.identity_token_file.clone().or(file.identity_token_file),
            ignored_in_kubernetes_mode,
        })
    }

    /// What to tell the operator (at start and on `/readyz`) about settings this mode ignores.
    pub fn ignored_warning(&self) -> Option<String> {
        if self.ignored_in_kubernetes_mode.is_empty() {
            return None;
        }
        Some(format!(
            "{} set but ignored with --inventory kubernetes: the collector's plan sets interval, timeout, \
             concurrency and rate (its --probe-interval and --max-probe-interval); remove them from the agent",
            self.ignored_in_kubernetes_mode.join(", ")
        ))
    }
}

/// The collectors' addresses, checked: at least one, at most [`MAX_COLLECTORS`], each http:// or
/// https:// (all the same: one set of TLS files serves them all), none twice.
fn collector_addresses(given: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { field: "collector", message };
    let addresses: Vec<String> =
        given.into_iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect();
    let Some(first) = addresses.first() else {
        return Err(ConfigError::Missing("collector", "COLLECTOR"));
    };
    let scheme = |a: &str| ["http://", "https://"].into_iter().find(|s| a.starts_with(s));
    let first_scheme = scheme(first);
    for a in &addresses {
        match scheme(a) {
            None => return Err(invalid(format!("{a:?} must be an http:// or https:// address"))),
            s if s != first_scheme => {
                return Err(invalid(format!(
                    "{a:?} and {first:?} differ in scheme: replicas share one TLS setting, use the same \
                     scheme for all"
                )));
            }
            _ => {}
        }
    }
    if addresses.len() > MAX_COLLECTORS {
        return Err(invalid(format!(
            "{} collectors given, at most {MAX_COLLECTORS}: list each replica once",
            addresses.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = addresses.iter().find(|a| !seen.insert(a.as_str())) {
        return Err(invalid(format!("{twice:?} is given twice: each replica once")));
    }
    Ok(addresses)
}

/// TLS settings must fit the collector's scheme: https:// needs the CA to verify it by; http://
/// takes none (a stray file would suggest encryption that is not happening).
fn tls_files(
    collector: &str,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
) -> Result<Option<ClientTlsFiles>, ConfigError> {
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(ConfigError::Invalid {
                field: "tls_cert",
                message: "--tls-cert and --tls-key go together".into(),
            });
        }
    };
    if collector.starts_with("https://") {
        let ca = ca.ok_or_else(|| ConfigError::Invalid {
            field: "tls_ca",
            message: format!(
                "the collector {collector} is https://: give --tls-ca, the CA certificate that signed the \
                 collector's certificate"
            ),
        })?;
        return Ok(Some(ClientTlsFiles { ca, identity, server_name }));
    }
    if ca.is_some() || identity.is_some() || server_name.is_some() {
        return Err(ConfigError::Invalid {
            field: "collector",
            message: format!("TLS files are given but the collector {collector} is http://; use https://"),
        });
    }
    Ok(None)
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    serde_saphyr::from_str(&text)
        .map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> AgentArgs {
        AgentArgs::try_parse_from(std::iter::once("netdiag-agent").chain(list.iter().copied())).unwrap()
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let file: FileConfig = serde_saphyr::from_str(
            "node: node-9\ncollector: http://10.0.0.1:7700\ninventory: file:/x.yaml\ninterval: 10s\nhttp_checks:\n  - { service: tidb/demo-pd, port: 2379, path: /pd/api/v1/members }\n",
        )
        .unwrap();
        let cfg = AgentConfig::merge(&args(&["--node", "node-1", "--timeout", "500ms"]), file).unwrap();
        assert_eq!(cfg.node.as_str(), "node-1");
        assert_eq!(cfg.collectors, ["http://10.0.0.1:7700"]);
        assert_eq!(cfg.inventory, InventorySource::File("/x.yaml".into()));
        assert_eq!("kubernetes".parse::<InventorySource>().unwrap(), InventorySource::Kubernetes);
        assert_eq!(cfg.schedule.interval(), Duration::from_secs(10));
        assert_eq!(cfg.schedule.timeout(), Duration::from_millis(500));
        assert_eq!(cfg.http_checks.len(), 1);
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn replicated_collectors_are_listed_once_each_with_one_scheme() {
        let base = ["--node", "n", "--inventory", "file:/x"];
        let merge =
            |extra: &[&str], file: FileConfig| AgentConfig::merge(&args(&[&base[..], extra].concat()), file);
        let two = ["http://c-0:7700", "http://c-1:7700"];
        let repeated = merge(&["--collector", two[0], "--collector", two[1]], FileConfig::default()).unwrap();
        assert_eq!(repeated.collectors, two);
        let commas =
            merge(&["--collector", "http://c-0:7700, http://c-1:7700"], FileConfig::default()).unwrap();
        assert_eq!(commas.collectors, two);
        let list: FileConfig =
            serde_saphyr::from_str("collector: [http://c-0:7700, http://c-1:7700]\n").unwrap();
        assert_eq!(merge(&[], list).unwrap().collectors, two);
        let flag_wins: FileConfig = serde_saphyr::from_str("collector: http://file:7700\n").unwrap();
        assert_eq!(merge(&["--collector", two[0]], flag_wins).unwrap().collectors, [two[0]]);
        let nine: Vec<String> = (0..9).map(|i| format!("http://c-{i}:7700")).collect();
        let cases: [(String, &str); 4] = [
            (format!("{},{}", two[0], two[0]), "given twice"),
            ("http://c-0:7700,https://c-1:7700".into(), "same scheme"),
            ("http://c-0:7700,c-1:7700".into(), "http:// or https://"),
            (nine.join(","), "at most 8"),
        ];
        for (given, words) in cases {
            let e = merge(&["--collector", &given], FileConfig::default()).unwrap_err().to_string();
            assert!(e.contains(words), "{given}: {e}");
        }
        let e = merge(&["--collector", " , "], FileConfig::default()).unwrap_err().to_string();
        assert!(e.contains("collector is required"), "{e}");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let cases: &[(&[&str], &str)] = &[
            (&["--collector", "http://c:1", "--inventory", "file:/x"], "node is required"),
            (&["--node", "N_1", "--collector", "http://c:1", "--inventory", "file:/x"], "node:"),
            (&["--node", "n", "--collector", "c:1", "--inventory", "file:/x"], "http://"),
            (&["--node", "n", "--collector", "http://c:1", "--inventory", "k8s"], "file:<path>"),
            (
                &["--node", "n", "--collector", "http://c:1", "--inventory", "file:/x", "--timeout", "9s"],
                "timeout",
            ),
        ];
        for (a, want) in cases {
            let err = AgentConfig::merge(&args(a), FileConfig::default()).unwrap_err().to_string();
            assert!(err.contains(want), "{a:?}: {err}");
        }
        assert!(AgentArgs::try_parse_from(["x", "--interval", "5 parsecs"]).is_err());
        let bad: Result<FileConfig, _> = serde_saphyr::from_str("nodes: x\n");
        assert!(bad.is_err(), "unknown keys are refused");
    }

    #[test]
    fn durations_are_the_models_dialect() {
        let cfg = |flags: &[&str]| AgentConfig::merge(&args(flags), FileConfig::default());
        let base = ["--node", "n", "--collector", "http://c:7700", "--inventory", "file:/x"];
        let got = cfg(&[&base[..], &["--interval", "1.5s", "--timeout", "250ms"]].concat()).unwrap();
        assert_eq!(got.schedule.interval(), Duration::from_millis(1500));
        assert_eq!(got.schedule.timeout(), Duration::from_millis(250));
        let err = AgentArgs::try_parse_from(["x", "--interval", "2"]).unwrap_err().to_string();
        assert!(err.contains("write a number and a unit"), "{err}");
        let file: Result<FileConfig, _> = serde_saphyr::from_str("timeout: 2sec\n");
        assert!(file.unwrap_err().to_string().contains("use ms, s, m or h"));
    }

    /// In kubernetes mode the collector's plan sets the schedule: a schedule setting given to
    /// the agent is named in a warning (start-up log and /readyz), not silently dropped.
    #[test]
    fn schedule_settings_kubernetes_mode_ignores_are_named() {
        let kube = ["--node", "n", "--collector", "http://c:7700", "--inventory", "kubernetes"];
        let file: FileConfig = serde_saphyr::from_str("max_rate: 100\n").unwrap();
        let got = AgentConfig::merge(&args(&[&kube[..], &["--interval", "10s"]].concat()), file).unwrap();
        assert_eq!(got.ignored_in_kubernetes_mode, ["--interval", "--max-rate"]);
        let warning = got.ignored_warning().unwrap();
        assert!(
            warning.starts_with("--interval, --max-rate set but ignored with --inventory kubernetes"),
            "{warning}"
        );
        let quiet = AgentConfig::merge(&args(&kube), FileConfig::default()).unwrap();
        assert_eq!(quiet.ignored_warning(), None);
        let file_mode =
            ["--node", "n", "--collector", "http://c:7700", "--inventory", "file:/x", "--interval", "10s"];
        assert_eq!(
            AgentConfig::merge(&args(&file_mode), FileConfig::default()).unwrap().ignored_warning(),
            None
        );
    }

    #[test]
    fn tls_fits_the_collector_scheme() {
        let base = ["netdiag-agent", "--node", "n", "--inventory", "file:/x"];
        let load = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            AgentConfig::load(&AgentArgs::try_parse_from(args).unwrap())
        };
        let ok = load(&["--collector", "https://c:7700", "--tls-ca", "/ca.crt"]).unwrap();
        assert_eq!(ok.tls.unwrap().ca, PathBuf::from("/ca.crt"));
        let mtls = load(&[
            "--collector",
            "https://c:7700",
            "--tls-ca",
            "/ca",
            "--tls-cert",
            "/c",
            "--tls-key",
            "/k",
        ])
        .unwrap();
        assert!(mtls.tls.unwrap().identity.is_some());
        assert!(load(&["--collector", "http://c:7700"]).unwrap().tls.is_none());
        let cases: [(&[&str], &str); 3] = [
            (&["--collector", "https://c:7700"], "give --tls-ca"),
            (&["--collector", "http://c:7700", "--tls-ca", "/ca"], "use https://"),
            (&["--collector", "https://c:7700", "--tls-ca", "/ca", "--tls-cert", "/c"], "go together"),
        ];
        for (extra, words) in cases {
            let e = load(extra).unwrap_err().to_string();
            assert!(e.contains(words), "{extra:?}: {e}");
        }
    }
}
