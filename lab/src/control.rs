//! The lab's life cycle as the CLI and tests drive it: up (after cleaning up a crashed
//! predecessor), down, fault, heal. Every step holds the state directory's lock.

use crate::bringup::{self, BuildError, BuildTimings};
use crate::faults::{ActiveFault, FaultError, FaultSpec};
use crate::plan::{LabPlan, PlanError};
use crate::preflight::{self, PreflightError};
use crate::reconcile::{self, ReconcileError};
use crate::state::{LabState, StateError};
use crate::teardown::{self, TeardownError, TeardownReport};
use crate::topology::Topology;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(
        "lab {name} is already up (server pid {pid}); `netdiag lab down --name {name}` first, or pick another name"
    )]
    AlreadyUp { name: String, pid: i32 },
    #[error("lab {name} is not up; start it with `netdiag lab up` (or `netdiag demo`)")]
    NotUp { name: String },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cleaning up lab {name}")]
    Teardown {
        name: String,
        #[source]
        source: TeardownError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Fault(#[from] FaultError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error("lab {name} has no active fault {id}; `netdiag lab status` lists them")]
    NoSuchFault { name: String, id: u32 },
    #[error(
        "lab {name}: the topology differs from the running lab in more than namespaces and network_policies \
         ({what}); only those change on a running lab: `netdiag lab down --name {name}`, then `up` with the new file"
    )]
    NotOnlyPolicies { name: String, what: String },
}

/// What `up` did.
#[derive(Debug)]
pub struct UpReport {
    pub plan: LabPlan,
    /// A lab of the same name left behind by a crash, removed first.
    pub cleaned_up: Option<TeardownReport>,
    pub timings: BuildTimings,
}

/// Builds the lab described by `topology`. A leftover lab of the same name whose server is
/// gone (a crash) is torn down first; one whose server still runs is refused.
pub fn up(topology: &Topology) -> Result<(LabState, UpReport), LabError> {
    let plan = LabPlan::from_topology(topology)?;
    let state = LabState::new(&plan.name);
    preflight::check_root_and_tools(&plan)?;
    let _lock = state.lock()?;
    let mut cleaned_up = None;
    if state.exists() || any_namespace_exists(&plan) {
        if let Some(pid) = state.server_pid()
            && state.read_plan().is_ok()
        {
            return Err(LabError::AlreadyUp { name: plan.name.clone(), pid });
        }
        let report = teardown::teardown(&state)
            .map_err(|source| LabError::Teardown { name: plan.name.clone(), source })?;
        cleaned_up = Some(report);
        state.create_dir()?;
    }
    // Checked after the cleanup: the leftover lab's own addresses are not the host's.
    preflight::check_host_overlap(&plan)?;
    state.write_plan(&plan)?;
    state.write_faults(&[])?;
    let timings = match bringup::build(&plan, &state) {
        Ok(t) => t,
        Err(e) => {
            // Leave nothing half-built behind.
            let _ = teardown::teardown(&state);
            return Err(e.into());
        }
    };
    Ok((state, UpReport { plan, cleaned_up, timings }))
}

fn any_leftover_namespace(name: &str) -> bool {
    let prefix = format!("{name}-");
    std::fs::read_dir(crate::plan::NETNS_DIR)
        .map(|d| d.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with(&prefix)))
        .unwrap_or(false)
}

fn any_namespace_exists(plan: &LabPlan) -> bool {
    plan.namespaces().iter().any(|n| LabPlan::netns_path(n).exists())
}

/// Tears the lab down (idempotent).
pub fn down(name: &str) -> Result<TeardownReport, LabError> {
    let state = LabState::new(name);
    if !state.dir.exists() && !any_leftover_namespace(name) {
        return Ok(TeardownReport::default());
    }
    let _lock = state.lock()?;
    teardown::teardown(&state).map_err(|source| LabError::Teardown { name: name.to_owned(), source })
}

fn require_up(state: &LabState) -> Result<LabPlan, LabError> {
    if !state.exists() {
        return Err(LabError::NotUp { name: state.name.clone() });
    }
    Ok(state.read_plan()?)
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Injects a named fault; returns it with its id (for `heal <id>`).
pub fn fault(name: &str, fault: &str, args: &[String]) -> Result<ActiveFault, LabError> {
    let state = LabState::new(name);
    require_up(&state)?;
    let _lock = state.lock()?;
    let plan = require_up(&state)?;
    let spec = FaultSpec::parse(fault, args, &plan)?;
    let old = state.read_faults()?;
    let id = old.iter().map(|f| f.id).max().unwrap_or(0) + 1;
    let active = ActiveFault { id, description: spec.to_string(), spec, since_unix_ms: now_unix_ms() };
    let mut new = old.clone();
    new.push(active.clone());
    // Record first: if applying fails half-way, `heal` still knows what to undo.
    state.write_faults(&new)?;
    reconcile::reconcile(&plan, Some(&old), &new)?;
    await_server(&plan, &old, &new);
    Ok(active)
}

/// Heals one fault (by id) or all of them; returns what was healed.
pub fn heal(name: &str, id: Option<u32>) -> Result<Vec<ActiveFault>, LabError> {
    let state = LabState::new(name);
    require_up(&state)?;
    let _lock = state.lock()?;
    let plan = require_up(&state)?;
    let old = state.read_faults()?;
    let (healed, kept): (Vec<ActiveFault>, Vec<ActiveFault>) =
        old.iter().cloned().partition(|f| id.is_none_or(|want| f.id == want));
    if let Some(want) = id
        && healed.is_empty()
    {
        return Err(LabError::NoSuchFault { name: name.to_owned(), id: want });
    }
    reconcile::reconcile(&plan, Some(&old), &kept)?;
    state.write_faults(&kept)?;
    await_server(&plan, &old, &kept);
    Ok(healed)
}

/// How long `fault` and `heal` wait for the lab's server to apply what lives in it.
const SERVER_APPLIES_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Waits until the lab's server has closed the ports `new` closes and opened again those only
/// `old` closed (it reads the fault list a few times a second), so a caller probing right
/// after `fault` or `heal` sees the fault in place. A server that does not follow in time is
/// logged, not an error: the fault list is written either way.
fn await_server(plan: &LabPlan, old: &[ActiveFault], new: &[ActiveFault]) {
    let (before, after) = (crate::desired::closed_ports(old), crate::desired::closed_ports(new));
    let changes = after.symmetric_difference(&before).map(|key| (key.clone(), after.contains(key)));
    for ((pod, port), closed) in changes {
        let Some(p) = plan.pod(&pod) else { continue };
        let addr = std::net::SocketAddr::new(p.ip.into(), port);
        let path = LabPlan::netns_path(&p.netns);
        let deadline = std::time::Instant::now() + SERVER_APPLIES_WITHIN;
        loop {
            if listening(&path, addr) == Some(!closed) {
                break;
            }
            if std::time::Instant::now() > deadline {
                tracing::warn!(%pod, port, closed, "the lab's server did not apply the port's state in time: is it running?");
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Whether something accepts on `addr` from inside the namespace at `path`: `Some(true)` when
/// a connection opens, `Some(false)` when refused, None when that cannot be told.
fn listening(path: &std::path::Path, addr: std::net::SocketAddr) -> Option<bool> {
    use socket2::{Domain, Protocol, Type};
    let socket = netdiag_netns::socket_in(path, Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).ok()?;
    match socket.connect_timeout(&addr.into(), std::time::Duration::from_millis(300)) {
        Ok(()) => Some(true),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(false),
        Err(_) => None,
    }
}

/// Replaces a running lab's namespaces and NetworkPolicies with `topology`'s (whose nodes,
/// pods, services and addressing must equal the lab's) and re-applies the policy chains where
/// they change. Returns the new plan.
pub fn set_policies(name: &str, topology: &Topology) -> Result<LabPlan, LabError> {
    let state = LabState::new(name);
    require_up(&state)?;
    let _lock = state.lock()?;
    let old = require_up(&state)?;
    let mut renamed = topology.clone();
    renamed.name = old.name.clone();
    let new = LabPlan::from_topology(&renamed)?;
    let mut comparable = new.clone();
    comparable.namespaces = old.namespaces.clone();
    comparable.network_policies = old.network_policies.clone();
    if comparable != old {
        let what = if comparable.pods != old.pods {
            "pods"
        } else if comparable.services != old.services {
            "services"
        } else if comparable.nodes != old.nodes {
            "nodes"
        } else {
            "settings"
        };
        return Err(LabError::NotOnlyPolicies { name: name.to_owned(), what: what.to_owned() });
    }
    let faults = state.read_faults()?;
    // Record first, as faults are: a failure half-way is repaired by applying again.
    state.write_plan(&new)?;
    state.write_file(&state.inventory_path(), &new.inventory(&state.dir).to_yaml())?;
    reconcile::reconcile_policies(&old, &new, &faults)?;
    Ok(new)
}
