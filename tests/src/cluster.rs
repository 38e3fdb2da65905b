//! A whole netdiag deployment on a lab, in this process: the lab and its servers
//! ([`crate::lab::TestLab`]), a collector (agents' listener inside the lab's underlay, its API
//! on the host's loopback) and one agent per node, each on its own thread whose runtime lives
//! inside the node's namespace — as a hostNetwork DaemonSet pod lives in its node's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netdiag_agent::buffer::BufferLimits;
use netdiag_agent::config::{AgentConfig, InventorySource, LogFormat};
use netdiag_collector::agents_tls::AgentsTransport;
use netdiag_collector::plans::PlansConfig;
use netdiag_collector::runs::config::RunsConfig;
use netdiag_collector::server::InventorySource as CollectorInventory;
use netdiag_collector::state::{CollectorState, now};
use netdiag_diagnose::matrix::{MatrixConfig, WindowSpec};
use netdiag_lab::plan::LabPlan;
use netdiag_model::finding::Diagnosis;
use netdiag_model::inventory::Inventory;
use netdiag_model::matrix::{CellStatus, MatrixLevel, MatrixQuery};
use netdiag_model::plan::{PlanPolicy, Schedule};
use netdiag_proto::tls::ClientTlsFiles;
use tokio::sync::watch;

use crate::kube::KubeApi;
use crate::lab::TestLab;

/// A lab with a collector and agents running.
#[derive(Debug)]
pub struct LabCluster {
    pub lab: TestLab,
    pub collector: Arc<CollectorState>,
    /// The collector's HTTP API and UI on the host's loopback.
    pub http: SocketAddr,
    pub interval: Duration,
    /// In kubernetes mode, the fake API server the collector watches.
    pub kube: Option<KubeApi>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

/// Findings on one line each: `id [culprit kind name]: verdict`, for assertion messages.
pub fn describe_findings(findings: &[netdiag_model::finding::Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            let c = f.culprit.as_ref().map(|c| format!("{} {}", c.kind, c.name)).unwrap_or_default();
            format!("{} [{c}]: {}", f.id, f.verdict)
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Matrix cells keyed `<level> <source> -> <destination> <kind>`, with their status.
pub type CellStatuses = BTreeMap<String, CellStatus>;

/// What `got` lacks, holds besides, or holds with another status than `want`: a line each.
pub fn cell_diff(want: &CellStatuses, got: &CellStatuses, got_label: &str) -> String {
    let mut lines = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => lines.push(format!("missing  {k} ({v})")),
            Some(g) if g != v => lines.push(format!("status   {k}: {v}, {got_label} {g}")),
            Some(_) => {}
        }
    }
    lines.extend(got.keys().filter(|k| !want.contains_key(*k)).map(|k| format!("extra    {k}")));
    lines.join("\n  ")
}

/// How a [`LabCluster`] runs.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub runs: RunsConfig,
    /// The collector takes its inventory from a fake Kubernetes API server.
    pub kubernetes: bool,
    /// The agents' session service; by default plain gRPC, explicitly allowed: the lab is sealed.
    pub agents_transport: AgentsTransport,
    /// TLS files the agents connect with (`https://`); None: plain gRPC.
    pub agent_tls: Option<ClientTlsFiles>,
    /// Per node: TLS files that replace `agent_tls` for that node's agent.
    pub agent_tls_per_node: std::collections::BTreeMap<String, ClientTlsFiles>,
    /// Agents run with `--inventory kubernetes`: no file, their pods and plans come from the
    /// collector (planning with the cluster's interval as its base).
    pub agents_without_inventory: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            runs: RunsConfig::default(),
            kubernetes: false,
            agents_transport: AgentsTransport::insecure(),
            agent_tls: None,
            agent_tls_per_node: std::collections::BTreeMap::new(),
            agents_without_inventory: false,
        }
    }
}

impl LabCluster {
    /// The default lab, probed every `interval`.
    pub fn up(interval: Duration) -> Self {
        Self::start(TestLab::up(), interval)
    }

    pub fn start(lab: TestLab, interval: Duration) -> Self {
        Self::start_with(lab, interval, RunsConfig::default())
    }

    /// [`Self::start`] with on-demand run settings of one's own (token, limits).
    pub fn start_with(lab: TestLab, interval: Duration, runs: RunsConfig) -> Self {
        Self::start_opts(lab, interval, ClusterOptions { runs, ..ClusterOptions::default() })
    }

    /// [`Self::start`] with the collector in `kubernetes` mode: its inventory comes from a fake
    /// API server seeded with the lab's inventory file (agents still read the file), and it
    /// writes node conditions and Events there.
    pub fn start_kubernetes(lab: TestLab, interval: Duration) -> Self {
        Self::start_opts(lab, interval, ClusterOptions { kubernetes: true, ..ClusterOptions::default() })
    }

    /// [`Self::start`] with every option spelled out.
    pub fn start_opts(lab: TestLab, interval: Duration, opts: ClusterOptions) -> Self {
        let ClusterOptions {
            runs,
            kubernetes,
            agents_transport,
            agent_tls,
            agent_tls_per_node,
            agents_without_inventory,
        } = opts;
        let inventory =
            Inventory::from_yaml(&std::fs::read_to_string(lab.state.inventory_path()).expect("inventory"))
                .expect("lab inventory parses");
        let (inventory, source, kube) = if kubernetes {
            let (kube, first, updates) = KubeApi::start(&inventory);
            (first, CollectorInventory::Watch(updates), Some(kube))
        } else {
            (inventory, CollectorInventory::File(lab.state.inventory_path()), None)
        };
        // A window of a few rounds: the matrix forgets a healed fault quickly.
        let window = WindowSpec::new(interval * 8, 8).expect("window");
        let config = MatrixConfig { window, agent_stale_after: interval * 5, ..MatrixConfig::default() };
        let collector = Arc::new(CollectorState::new(inventory, config));
        let schedule =
            Schedule::new(interval, interval.min(Duration::from_millis(800)), 64, 2000).expect("schedule");
        let plans = if agents_without_inventory {
            let policy = PlanPolicy { base_interval: interval, ..PlanPolicy::default() };
            PlansConfig { policy, schedule, refresh_every: interval * 2, ..PlansConfig::default() }
        } else {
            PlansConfig::default()
        };
        // In kubernetes mode the collector reports to the fake API server, as it would by default,
        // looking at the diagnosis every interval.
        let kube_report = kube.as_ref().map(|k| netdiag_collector::kube_report::KubeReport {
            every: interval,
            ..netdiag_collector::kube_report::KubeReport::new(k.fake.config())
        });
        let (stop, stop_rx) = watch::channel(false);
        let agents_listener = netdiag_collector::cli::bind(
            SocketAddr::new(lab.plan.control_ip.into(), 0),
            Some(&LabPlan::netns_path(&lab.plan.underlay_netns)),
        )
        .expect("agents listener in the lab");
        let agents_addr = agents_listener.local_addr().expect("addr");
        let http_listener =
            netdiag_collector::cli::bind("127.0.0.1:0".parse().expect("addr"), None).expect("http");
        let http = http_listener.local_addr().expect("addr");
        let mut threads = Vec::new();
        {
            let state = collector.clone();
            let stop = stop_rx.clone();
            threads.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("rt");
                if let Err(e) = rt.block_on(netdiag_collector::server::serve(
                    state,
                    netdiag_collector::server::ServeConfig {
                        agents: agents_listener,
                        agents_transport,
                        http: http_listener,
                        inventory: source,
                        runs,
                        plans,
                        kube_report,
                    },
                    stop,
                )) {
                    eprintln!("collector failed: {:#}", anyhow::Error::from(e));
                }
            }));
        }
        for node in &lab.plan.nodes {
            let cfg = AgentConfig {
                node: node.name.clone(),
                collectors: vec![match &agent_tls {
                    Some(_) => format!("https://{agents_addr}"),
                    None => format!("http://{agents_addr}"),
                }],
                inventory: if agents_without_inventory {
                    InventorySource::Kubernetes
                } else {
                    InventorySource::File(lab.state.inventory_path())
                },
                listen: "127.0.0.1:0".parse().expect("addr"),
                schedule,
                http_checks: vec![],
                identity_token_file: None,
                buffer: BufferLimits::default(),
                log_format: LogFormat::Text,
                tls: agent_tls_per_node.get(node.name.as_str()).cloned().or_else(|| agent_tls.clone()),
                ignored_in_kubernetes_mode: vec![],
            };
            let path = LabPlan::netns_path(&node.netns);
            let stop = stop_rx.clone();
            threads.push(std::thread::spawn(move || {
                // This thread and every thread its runtime starts live in the node's namespace.
                netdiag_netns::enter_current_thread(&path).expect("enter the node namespace");
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("rt");
                if let Err(e) = rt.block_on(netdiag_agent::agent::run(cfg, stop)) {
                    eprintln!("agent failed: {e:#}");
                }
            }));
        }
        LabCluster { lab, collector, http, interval, kube, stop, threads }
    }

    /// Waits until every node's agent is connected and has delivered a first round (more than
    /// 100 results), then two more intervals so every cell has samples.
    pub fn warm_up(&self) {
        let nodes = self.lab.plan.nodes.len();
        let ready = self.wait_for(Duration::from_secs(30), |c| {
            let agents = c.collector.agents(now());
            (agents.len() == nodes && agents.iter().all(|a| a.connected && a.results_received > 100))
                .then_some(())
        });
        assert!(ready.is_some(), "agents never delivered a first round: {:#?}", self.collector.agents(now()));
        std::thread::sleep(self.interval * 2);
    }

    /// Every pod- and node-level cell of the matrix, with its status.
    pub fn cell_statuses(&self) -> CellStatuses {
        let mut out = CellStatuses::new();
        for level in [MatrixLevel::Pod, MatrixLevel::Node] {
            for cell in self.collector.matrix(&MatrixQuery { level, kind: None }, now()).cells {
                out.insert(
                    format!("{level:?} {} -> {} {:?}", cell.source, cell.destination, cell.kind),
                    cell.status,
                );
            }
        }
        out
    }

    pub fn diagnosis(&self) -> Diagnosis {
        self.collector.diagnosis(now())
    }

    /// Polls `check` until it returns `Some` or `limit` passes; returns the value and how long
    /// it took.
    pub fn wait_for<T>(
        &self,
        limit: Duration,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> Option<(T, Duration)> {
        let started = Instant::now();
        loop {
            if let Some(v) = check(self) {
                return Some((v, started.elapsed()));
            }
            if started.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for LabCluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
