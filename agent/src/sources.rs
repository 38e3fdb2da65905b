//! The set of places this agent probes from: the node itself and every local pod whose network
//! namespace it can enter. Refreshed from the inventory (and, for pods whose namespace the
//! inventory does not name, from namespace discovery mapped by pod IPs). A pod whose
//! namespace disappears (pod deleted) or is replaced (same path, new inode) has its source
//! dropped: its parked thread ends and its sockets close once in-flight probes finish.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netdiag_model::NodeName;
use netdiag_model::inventory::{Inventory, PodInfo};
use netdiag_model::probe::Source;
use netdiag_netns::{NetnsId, netns_id};
use tracing::{debug, info, warn};

use crate::namespaces;
use crate::source::SourceNs;

/// A source and what the agent keeps for it.
#[derive(Debug)]
pub struct SourceEntry {
    pub ns: SourceNs,
    /// The namespace's identity when entered (None: the agent's own namespace).
    pub id: Option<NetnsId>,
    /// Per-source probe state (ping clients …), created on first use.
    pub state: crate::probe::SourceState,
}

/// Where the agent looks for namespaces the inventory does not name.
#[derive(Debug, Clone)]
pub struct Discovery {
    pub netns_dir: PathBuf,
    pub proc_dir: Option<PathBuf>,
}

impl Default for Discovery {
    fn default() -> Self {
        Self { netns_dir: PathBuf::from("/var/run/netns"), proc_dir: Some(PathBuf::from("/proc")) }
    }
}

/// What one refresh changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshReport {
    pub added: Vec<Source>,
    pub removed: Vec<Source>,
    /// Pods on this node the agent cannot probe from (no namespace found), with why.
    pub unreachable: Vec<(Source, String)>,
}

#[derive(Debug, Default)]
pub struct Sources {
    entries: BTreeMap<Source, Arc<SourceEntry>>,
}

fn host_resolv_conf() -> Option<PathBuf> {
    let p = PathBuf::from("/etc/resolv.conf");
    p.exists().then_some(p)
}

impl Sources {
    pub fn get(&self, source: &Source) -> Option<Arc<SourceEntry>> {
        self.entries.get(source).cloned()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<SourceEntry>> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Brings the set in line with the inventory for `node`.
    pub fn refresh(&mut self, inv: &Inventory, node: &NodeName, discovery: &Discovery) -> RefreshReport {
        let mut report = RefreshReport::default();
        let node_source = Source::Node(node.clone());
        if !self.entries.contains_key(&node_source) {
            let entry = SourceEntry {
                ns: SourceNs::own(node_source.clone(), host_resolv_conf()),
                id: None,
                state: Default::default(),
            };
            self.entries.insert(node_source.clone(), Arc::new(entry));
            report.added.push(node_source.clone());
        }

        let local: Vec<&PodInfo> = inv.pods_on(node).collect();
        let wanted = self.locate(&local, discovery, &mut report);

        let stale: Vec<Source> = self
            .entries
            .iter()
            .filter(|(s, e)| match s {
                Source::Node(_) => **s != node_source,
                Source::Pod(_) => wanted.get(*s).is_none_or(|(_, _, id)| e.id != Some(*id)),
            })
            .map(|(s, _)| s.clone())
            .collect();
        for s in stale {
            self.entries.remove(&s);
            info!(source = %s, "probe source removed (its namespace is gone or was replaced)");
            report.removed.push(s);
        }
        for (source, (path, resolv_conf, id)) in wanted {
            if self.entries.contains_key(&source) {
                continue;
            }
            match SourceNs::enter(source.clone(), &path, resolv_conf) {
                Ok(ns) => {
                    debug!(%source, path = %path.display(), "probe source added");
                    self.entries.insert(
                        source.clone(),
                        Arc::new(SourceEntry { ns, id: Some(id), state: Default::default() }),
                    );
                    report.added.push(source);
                }
                Err(e) => {
                    warn!(%source, error = %e, "cannot enter the pod's namespace");
                    report.unreachable.push((source, e.to_string()));
                }
            }
        }
        report
    }

    /// Namespace path, resolv.conf and identity of every local pod that can be entered.
    fn locate(
        &self,
        local: &[&PodInfo],
        discovery: &Discovery,
        report: &mut RefreshReport,
    ) -> BTreeMap<Source, (PathBuf, Option<PathBuf>, NetnsId)> {
        let mut wanted = BTreeMap::new();
        let mut unnamed = Vec::new();
        for pod in local {
            let source = Source::Pod(pod.pod_ref());
            match &pod.netns {
                Some(path) => match netns_id(path) {
                    Ok(id) => {
                        wanted.insert(source, (path.clone(), pod.resolv_conf.clone(), id));
                    }
                    Err(e) => report.unreachable.push((source, format!("{}: {e}", path.display()))),
                },
                None => unnamed.push(*pod),
            }
        }
        if !unnamed.is_empty() {
            let own = netdiag_netns::current_netns_id().ok();
            let found = namespaces::discover(&discovery.netns_dir, discovery.proc_dir.as_deref(), own);
            let with_ips: Vec<(NetnsId, Vec<std::net::IpAddr>)> =
                found.iter().filter_map(|f| Some((f.id, namespaces::addresses_in(f.path()).ok()?))).collect();
            let mapped = namespaces::map_pods(&with_ips, &unnamed);
            for pod in unnamed {
                let source = Source::Pod(pod.pod_ref());
                let hit = mapped.get(&pod.pod_ref()).and_then(|id| found.iter().find(|f| f.id == *id));
                match hit {
                    Some(f) => {
                        let resolv =
                            pod.resolv_conf.clone().or_else(|| resolv_conf_via_proc(f.paths.as_slice()));
                        wanted.insert(source, (f.path().to_path_buf(), resolv, f.id));
                    }
                    None => {
                        report.unreachable.push((source, "no network namespace holds the pod's IPs".into()))
                    }
                }
            }
        }
        wanted
    }
}

/// A pod's own resolv.conf through one of its processes' root (`/proc/<pid>/root/etc/…`):
/// `setns` does not change the mount namespace (NOTES trap 2).
fn resolv_conf_via_proc(paths: &[PathBuf]) -> Option<PathBuf> {
    paths.iter().find_map(|p| {
        let proc_pid: &Path = p.parent()?.parent()?;
        let candidate = proc_pid.join("root/etc/resolv.conf");
        candidate.exists().then_some(candidate)
    })
}
