//! The agent's configuration: flags, `NETDIAG_*` environment variables and an optional YAML
//! file, merged once (flag/env over file over defaults) into an immutable [`AgentConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use netdiag_model::NodeName;
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) =
        s.trim().split_at(s.trim().find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len()));
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 500ms, 2s or 1m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
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
    /// Collector session address, e.g. http://172.29.0.1:7700.
    #[arg(long, env = "NETDIAG_COLLECTOR")]
    pub collector: Option<String>,
    /// Inventory source: file:<path>, or kubernetes (pods and plans from the collector).
    #[arg(long, env = "NETDIAG_INVENTORY")]
    pub inventory: Option<String>,
    /// Where /metrics and /healthz listen.
    #[arg(long, env = "NETDIAG_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Probe interval of the derived plan (e.g. 2s).
    #[arg(long, env = "NETDIAG_INTERVAL", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Per-probe timeout (e.g. 1s).
    #[arg(long, env = "NETDIAG_TIMEOUT", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Probes in flight at most.
    #[arg(long, env = "NETDIAG_MAX_CONCURRENCY")]
    pub max_concurrency: Option<u32>,
    /// Probes started per second at most.
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
}

/// The YAML config file: the same settings as the flags, plus HTTP checks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node: Option<String>,
    collector: Option<String>,
    inventory: Option<String>,
    listen: Option<SocketAddr>,
    interval: Option<String>,
    timeout: Option<String>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the agent runs with, checked.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: NodeName,
    pub collector: String,
    pub inventory: InventorySource,
    pub listen: SocketAddr,
    pub schedule: Schedule,
    pub http_checks: Vec<HttpCheck>,
    pub buffer: BufferLimits,
    pub log_format: LogFormat,
    /// TLS files for an `https://` collector.
    pub tls: Option<ClientTlsFiles>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// Probes in flight at most, unless configured.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 64;
/// Probe starts per second at most, unless configured: a safety limit against a runaway plan,
/// above what a full plan asks on a large node (110 pods × 180 targets, every 5 s: ~8 000/s),
/// so a plan keeps its interval rather than being stretched.
pub const DEFAULT_MAX_RATE: u32 = 10_000;

impl AgentConfig {
    pub fn load(args: &AgentArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge(args, file, args.config.as_deref())
    }

    fn merge(args: &AgentArgs, file: FileConfig, path: Option<&Path>) -> Result<Self, ConfigError> {
        let node_text = args.node.clone().or(file.node).ok_or(ConfigError::Missing("node", "NODE"))?;
        let node = NodeName::new(node_text)
            .map_err(|e| ConfigError::Invalid { field: "node", message: e.to_string() })?;
        let collector = args
            .collector
            .clone()
            .or(file.collector)
            .ok_or(ConfigError::Missing("collector", "COLLECTOR"))?;
        if !(collector.starts_with("http://") || collector.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                field: "collector",
                message: format!("{collector:?} must be an http:// or https:// address"),
            });
        }
        let tls = tls_files(
            &collector,
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
        let from_file = |v: Option<String>, field: &'static str| -> Result<Option<Duration>, ConfigError> {
            v.map(|s| {
                parse_duration(&s).map_err(|message| ConfigError::Parse {
                    path: path.map(Path::to_path_buf).unwrap_or_default(),
                    message: format!("{field}: {message}"),
                })
            })
            .transpose()
        };
        let interval =
            args.interval.or(from_file(file.interval, "interval")?).unwrap_or(Duration::from_secs(5));
        let timeout = args.timeout.or(from_file(file.timeout, "timeout")?).unwrap_or(Duration::from_secs(1));
        let schedule = Schedule::new(
            interval,
            timeout,
            args.max_concurrency.or(file.max_concurrency).unwrap_or(DEFAULT_MAX_CONCURRENCY),
            args.max_rate.or(file.max_rate).unwrap_or(DEFAULT_MAX_RATE),
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
            collector,
            inventory,
            listen,
            schedule,
            http_checks: file.http_checks,
            buffer,
            log_format,
            tls,
        })
    }
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
        let cfg = AgentConfig::merge(&args(&["--node", "node-1", "--timeout", "500ms"]), file, None).unwrap();
        assert_eq!(cfg.node.as_str(), "node-1");
        assert_eq!(cfg.collector, "http://10.0.0.1:7700");
        assert_eq!(cfg.inventory, InventorySource::File("/x.yaml".into()));
        assert_eq!("kubernetes".parse::<InventorySource>().unwrap(), InventorySource::Kubernetes);
        assert_eq!(cfg.schedule.interval(), Duration::from_secs(10));
        assert_eq!(cfg.schedule.timeout(), Duration::from_millis(500));
        assert_eq!(cfg.http_checks.len(), 1);
        assert_eq!(cfg.listen.to_string(), DEFAULT_LISTEN);
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
            let err = AgentConfig::merge(&args(a), FileConfig::default(), None).unwrap_err().to_string();
            assert!(err.contains(want), "{a:?}: {err}");
        }
        assert!(AgentArgs::try_parse_from(["x", "--interval", "5 parsecs"]).is_err());
        let bad: Result<FileConfig, _> = serde_saphyr::from_str("nodes: x\n");
        assert!(bad.is_err(), "unknown keys are refused");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(
            parse_duration("1h").is_err() && parse_duration("").is_err() && parse_duration("-1s").is_err()
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
