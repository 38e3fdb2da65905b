//! A lab owned by one test: a unique name, its servers running in this process, and a teardown
//! when the test ends, pass or fail.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use netdiag_lab::control;
use netdiag_lab::faults::ActiveFault;
use netdiag_lab::plan::{LabPlan, NodePlan, PodPlan, ServicePlan};
use netdiag_lab::state::LabState;
use netdiag_lab::topology::{OPEN_TOPOLOGY, Topology};

static NEXT: AtomicU32 = AtomicU32::new(1);

/// A unique lab name for this process and call (at most 12 characters).
pub fn unique_name() -> String {
    format!("t{}n{}", std::process::id() % 1_000_000, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A running lab; dropping it stops its servers and tears it down.
#[derive(Debug)]
pub struct TestLab {
    pub state: LabState,
    pub plan: LabPlan,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl TestLab {
    /// The default topology.
    pub fn up() -> Self {
        Self::from_yaml(OPEN_TOPOLOGY)
    }

    /// The default topology with `edit` applied to its text (e.g. switch proxy mode).
    pub fn with(edit: impl FnOnce(String) -> String) -> Self {
        Self::from_yaml(&edit(OPEN_TOPOLOGY.to_owned()))
    }

    pub fn from_yaml(text: &str) -> Self {
        let name = unique_name();
        let topo = Topology::parse(text)
            .expect("test topology parses")
            .with_overrides(&netdiag_lab::topology::Overrides { name: Some(name), ..Default::default() })
            .expect("overrides apply");
        let (state, report) =
            control::up(&topo).unwrap_or_else(|e| panic!("lab up: {:#}", anyhow::Error::from(e)));
        let mut lab = TestLab { state, plan: report.plan, stop: None, server: None };
        lab.start_servers();
        lab
    }

    fn start_servers(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let plan = self.plan.clone();
        let state = self.state.clone();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Err(e) = netdiag_lab::serve::serve(&plan, &state, async {
                    let _ = rx.await;
                })
                .await
                {
                    eprintln!("lab servers failed: {:#}", anyhow::Error::from(e));
                }
            });
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.state.pid_path().exists() {
            assert!(Instant::now() < deadline, "lab servers did not start");
            assert!(!handle.is_finished(), "lab servers exited at start");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop = Some(tx);
        self.server = Some(handle);
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn pod(&self, name: &str) -> &PodPlan {
        let r = name.parse().expect("pod ref");
        self.plan.pod(&r).unwrap_or_else(|| panic!("no pod {name}"))
    }

    pub fn node(&self, name: &str) -> &NodePlan {
        let n = name.parse().expect("node name");
        self.plan.node(&n).unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn service(&self, name: &str) -> &ServicePlan {
        let r = name.parse().expect("service ref");
        self.plan.service(&r).unwrap_or_else(|| panic!("no service {name}"))
    }

    /// Injects `"<fault> <args…>"`.
    pub fn fault(&self, command: &str) -> ActiveFault {
        let mut words = command.split_whitespace();
        let name = words.next().expect("fault name");
        let args: Vec<String> = words.map(str::to_owned).collect();
        control::fault(self.name(), name, &args)
            .unwrap_or_else(|e| panic!("fault {command}: {:#}", anyhow::Error::from(e)))
    }

    pub fn heal(&self) {
        control::heal(self.name(), None).unwrap_or_else(|e| panic!("heal: {:#}", anyhow::Error::from(e)));
    }

    /// Stops the servers and tears the lab down now, reporting failures.
    pub fn down(mut self) -> netdiag_lab::teardown::TeardownReport {
        self.stop_servers();
        control::down(self.name()).expect("lab down")
    }

    /// Stops the servers and walks away without tearing down, as a crash would.
    pub fn crash(mut self) -> LabPlan {
        self.stop_servers();
        let plan = self.plan.clone();
        std::mem::forget(self);
        plan
    }

    fn stop_servers(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        self.stop_servers();
        if self.state.exists()
            && let Err(e) = control::down(self.name())
        {
            eprintln!("tearing down test lab {}: {:#}", self.name(), anyhow::Error::from(e));
        }
    }
}
