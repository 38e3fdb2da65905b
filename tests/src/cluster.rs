//! A whole netdiag deployment on a lab, in this process: the lab and its servers
//! ([`crate::lab::TestLab`]), a collector (agents' listener inside the lab's underlay, its API
//! on the host's loopback) and one agent per node, each on its own thread whose runtime lives
//! inside the node's namespace — as a hostNetwork DaemonSet pod lives in its node's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netdiag_agent::buffer::BufferLimits;
use netdiag_agent::config::{AgentConfig, InventorySource, LogFormat};
use netdiag_collector::matrix::{MatrixConfig, WindowSpec};
use netdiag_collector::metrics::CollectorMetrics;
use netdiag_collector::state::{CollectorState, now};
use netdiag_lab::plan::LabPlan;
use netdiag_model::finding::Diagnosis;
use netdiag_model::inventory::Inventory;
use netdiag_model::plan::Schedule;
use tokio::sync::watch;

use crate::lab::TestLab;

/// A lab with a collector and agents running.
#[derive(Debug)]
pub struct LabCluster {
    pub lab: TestLab,
    pub collector: Arc<CollectorState>,
    /// The collector's HTTP API and UI on the host's loopback.
    pub http: SocketAddr,
    pub interval: Duration,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl LabCluster {
    /// The default lab, probed every `interval`.
    pub fn up(interval: Duration) -> Self {
        Self::start(TestLab::up(), interval)
    }

    pub fn start(lab: TestLab, interval: Duration) -> Self {
        let inventory =
            Inventory::from_yaml(&std::fs::read_to_string(lab.state.inventory_path()).expect("inventory"))
                .expect("lab inventory parses");
        // A window of a few rounds: the matrix forgets a healed fault quickly.
        let window = WindowSpec::new(interval * 8, 8).expect("window");
        let config = MatrixConfig { window, agent_stale_after: interval * 5, ..MatrixConfig::default() };
        let collector = Arc::new(CollectorState::new(inventory, config));
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
            let inventory_path = lab.state.inventory_path();
            threads.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("rt");
                let metrics = Arc::new(CollectorMetrics::default());
                if let Err(e) = rt.block_on(netdiag_collector::server::serve(
                    state,
                    metrics,
                    agents_listener,
                    http_listener,
                    Some(inventory_path),
                    stop,
                )) {
                    eprintln!("collector failed: {:#}", anyhow::Error::from(e));
                }
            }));
        }
        for node in &lab.plan.nodes {
            let cfg = AgentConfig {
                node: node.name.clone(),
                collector: format!("http://{agents_addr}"),
                inventory: InventorySource::File(lab.state.inventory_path()),
                listen: "127.0.0.1:0".parse().expect("addr"),
                schedule: Schedule::new(interval, interval.min(Duration::from_millis(800)), 64, 2000)
                    .expect("schedule"),
                http_checks: vec![],
                buffer: BufferLimits::default(),
                log_format: LogFormat::Text,
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
        LabCluster { lab, collector, http, interval, stop, threads }
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
