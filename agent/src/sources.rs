//! The set of places this agent probes from: the node itself and every local pod whose network
//! namespace it can enter. Refreshed from the inventory (and, for pods whose namespace the
//! inventory does not name, from namespace discovery mapped by pod IPs among the namespaces
//! connected to the agent's own: `namespaces::discover_local`). A pod whose namespace
//! disappears (pod deleted) or is replaced (same path, new inode) has its source dropped: its
//! parked thread ends and its sockets close once in-flight probes finish.
//!
//! With `--inventory kubernetes` the inventory is [`inventory_from_collector`]: the pods the
//! collector sent, all found by discovery. A pod's resolv.conf is, in order: the inventory's
//! path, `/proc/<pid>/root/etc/resolv.conf` of a process in its namespace, or — when neither
//! exists (no process found, or the lab, whose pods have no processes of their own) — the
//! ClusterFirst file kubelet would write from the cluster DNS, written under
//! [`Discovery::resolv_dir`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use netdiag_model::NodeName;
use netdiag_model::inventory::{ClusterInfo, INVENTORY_VERSION, Inventory, NodeInfo, PodInfo, ProxyMode};
use netdiag_model::probe::Source;
use netdiag_model::session::NodePods;
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
    /// Where ClusterFirst resolv.conf files are written for pods whose own cannot be read.
    pub resolv_dir: PathBuf,
}

impl Default for Discovery {
    fn default() -> Self {
        Self {
            netns_dir: PathBuf::from("/var/run/netns"),
            proc_dir: Some(PathBuf::from("/proc")),
            resolv_dir: std::env::temp_dir().join("netdiag-agent-resolv"),
        }
    }
}

/// The inventory of an agent without one: its node and the pods the collector sent (no
/// services: the collector's plans name every target themselves).
pub fn inventory_from_collector(node: &NodeName, pods: &NodePods) -> Inventory {
    Inventory {
        version: INVENTORY_VERSION,
        cluster: ClusterInfo {
            name: String::new(),
            domain: pods.cluster_domain.to_string(),
            pod_cidrs: vec![],
            service_cidrs: vec![],
            node_cidrs: vec![],
            dns_ips: pods.dns_ips.clone(),
            proxy_mode: ProxyMode::Iptables,
        },
        nodes: vec![NodeInfo {
            name: node.clone(),
            ips: pods.node_ips.clone(),
            pod_cidrs: vec![],
            netns: None,
        }],
        pods: pods
            .pods
            .iter()
            // A hostNetwork pod shares the node's namespace: the node source covers it.
            .filter(|p| !p.host_network)
            .map(|p| PodInfo {
                namespace: p.pod.namespace.clone(),
                name: p.pod.name.clone(),
                node: node.clone(),
                ips: p.ips.clone(),
                labels: Default::default(),
                ports: vec![],
                netns: None,
                resolv_conf: None,
            })
            .collect(),
        services: vec![],
        namespaces: vec![],
        network_policies: vec![],
    }
}

/// What kubelet writes into a ClusterFirst pod's resolv.conf.
pub fn cluster_first_resolv_conf(pod: &PodInfo, cluster: &ClusterInfo) -> String {
    let d = cluster.domain.trim_end_matches('.');
    let mut text = format!(
        "# netdiag-agent: kubelet's ClusterFirst resolv.conf for {} (its own could not be read)\n",
        pod.pod_ref()
    );
    for ip in cluster.dns_ips.iter().take(crate::resolv_conf::MAXNS) {
        text.push_str(&format!("nameserver {ip}\n"));
    }
    text.push_str(&format!("search {ns}.svc.{d} svc.{d} {d}\noptions ndots:5\n", ns = pod.namespace));
    text
}

/// Writes `pod`'s ClusterFirst resolv.conf under `dir` (when the cluster DNS is known).
fn write_cluster_first(dir: &Path, pod: &PodInfo, cluster: &ClusterInfo) -> Option<PathBuf> {
    if cluster.dns_ips.is_empty() {
        return None;
    }
    let path = dir.join(format!("{}_{}.conf", pod.namespace, pod.name));
    let text = cluster_first_resolv_conf(pod, cluster);
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Some(path);
    }
    let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, text));
    match written {
        Ok(()) => Some(path),
        Err(e) => {
            warn!(pod = %pod.pod_ref(), path = %path.display(), error = %e, "cannot write the pod's ClusterFirst resolv.conf; its DNS probes will fail locally");
            None
        }
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
        let wanted = self.locate(&local, &inv.cluster, discovery, &mut report);

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
        cluster: &ClusterInfo,
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
            let found = namespaces::discover_local(&discovery.netns_dir, discovery.proc_dir.as_deref());
            let with_ips: Vec<(NetnsId, Vec<std::net::IpAddr>)> =
                found.iter().filter_map(|f| Some((f.id, namespaces::addresses_in(f.path()).ok()?))).collect();
            let mapped = namespaces::map_pods(&with_ips, &unnamed);
            for pod in unnamed {
                let source = Source::Pod(pod.pod_ref());
                let hit = mapped.get(&pod.pod_ref()).and_then(|id| found.iter().find(|f| f.id == *id));
                match hit {
                    Some(f) => {
                        let resolv = pod
                            .resolv_conf
                            .clone()
                            .or_else(|| resolv_conf_via_proc(f.paths.as_slice()))
                            .or_else(|| write_cluster_first(&discovery.resolv_dir, pod, cluster));
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

#[cfg(test)]
mod tests {
    use netdiag_model::session::LocalPod;

    use super::*;

    fn pods() -> NodePods {
        let pod = |name: &str, ip: &str, host_network| LocalPod {
            pod: name.parse().unwrap(),
            ips: vec![ip.parse().unwrap()],
            host_network,
        };
        NodePods {
            pods: vec![
                pod("tidb/demo-pd-0", "10.244.1.5", false),
                pod("kube-system/proxy-x", "172.29.0.11", true),
            ],
            node_ips: vec!["172.29.0.11".parse().unwrap()],
            dns_ips: vec!["10.96.0.10".parse().unwrap()],
            cluster_domain: "cluster.local".parse().unwrap(),
        }
    }

    #[test]
    fn the_collectors_pods_become_an_inventory_of_this_node() {
        let node: NodeName = "node-1".parse().unwrap();
        let inv = inventory_from_collector(&node, &pods());
        inv.validate().unwrap();
        let local: Vec<String> = inv.pods_on(&node).map(|p| p.pod_ref().to_string()).collect();
        assert_eq!(local, ["tidb/demo-pd-0"], "hostNetwork pods are the node source");
        assert!(inv.pods.iter().all(|p| p.netns.is_none() && p.resolv_conf.is_none()), "found by discovery");
        assert_eq!(inv.node(&node).unwrap().ips, pods().node_ips);
        assert_eq!((inv.cluster.domain.as_str(), &inv.cluster.dns_ips), ("cluster.local", &pods().dns_ips));
    }

    #[test]
    fn cluster_first_is_what_kubelet_writes() {
        let node: NodeName = "node-1".parse().unwrap();
        let inv = inventory_from_collector(&node, &pods());
        let text = cluster_first_resolv_conf(&inv.pods[0], &inv.cluster);
        let conf = crate::resolv_conf::parse(&text);
        let search: Vec<String> = conf.search.iter().map(ToString::to_string).collect();
        assert_eq!(search, ["tidb.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
        assert_eq!(conf.nameservers.iter().map(|n| n.ip).collect::<Vec<_>>(), inv.cluster.dns_ips);
        assert_eq!(conf.options.ndots, 5);
    }
}
