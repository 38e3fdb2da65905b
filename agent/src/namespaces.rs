//! Finding the network namespaces on this node the way a real node has them — bind mounts
//! under `/var/run/netns/` (containerd, CRI-O) and `/proc/<pid>/ns/net` (with hostPID) —
//! deduplicated by inode, and mapping each to its pod by the pod IPs found inside it.
//!
//! The parsers and the mapping are pure; reading addresses happens on a short-lived thread
//! inside each namespace (`netdiag_netns::run_in`), from `/proc/thread-self/net/…`, which shows
//! the reading thread's namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use netdiag_model::PodRef;
use netdiag_model::inventory::PodInfo;
use netdiag_netns::{NetnsId, netns_id};

/// One namespace and every path that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundNetns {
    pub id: NetnsId,
    /// Bind mounts first (stable across process restarts), then `/proc/<pid>/ns/net`.
    pub paths: Vec<PathBuf>,
}

impl FoundNetns {
    /// The path to enter it by.
    pub fn path(&self) -> &Path {
        &self.paths[0]
    }
}

/// Lists the namespaces under `netns_dir` and, when `proc_dir` is given, those of every process,
/// deduplicated by inode. `skip` (the agent's own namespace) is left out. Entries that vanish
/// while being read are skipped.
pub fn discover(netns_dir: &Path, proc_dir: Option<&Path>, skip: Option<NetnsId>) -> Vec<FoundNetns> {
    let mut by_id: BTreeMap<NetnsId, Vec<PathBuf>> = BTreeMap::new();
    let mut add = |path: PathBuf| {
        if let Ok(id) = netns_id(&path)
            && Some(id) != skip
        {
            by_id.entry(id).or_default().push(path);
        }
    };
    if let Ok(dir) = std::fs::read_dir(netns_dir) {
        let mut names: Vec<PathBuf> = dir.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        names.into_iter().for_each(&mut add);
    }
    if let Some(proc_dir) = proc_dir
        && let Ok(dir) = std::fs::read_dir(proc_dir)
    {
        let mut pids: Vec<u32> =
            dir.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
        pids.sort_unstable();
        for pid in pids {
            add(proc_dir.join(pid.to_string()).join("ns/net"));
        }
    }
    by_id.into_iter().map(|(id, paths)| FoundNetns { id, paths }).collect()
}

/// Local addresses listed in `/proc/net/fib_trie` (the `/32 host LOCAL` leaves).
pub fn parse_fib_trie_locals(text: &str) -> Vec<Ipv4Addr> {
    let mut out = BTreeSet::new();
    let mut last_ip: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("|-- ").or_else(|| t.strip_prefix("+-- ")) {
            last_ip = rest.split(['/', ' ']).next().and_then(|s| s.parse().ok());
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last_ip
        {
            out.insert(ip);
        }
    }
    out.into_iter().collect()
}

/// Addresses listed in `/proc/net/if_inet6` (32 hex digits per address).
pub fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    text.lines()
        .filter_map(|l| {
            let hex = l.split_whitespace().next()?;
            (hex.len() == 32).then(|| u128::from_str_radix(hex, 16).ok().map(Ipv6Addr::from)).flatten()
        })
        .collect()
}

/// The unicast addresses configured inside the namespace at `path` (loopback and link-local
/// left out).
pub fn addresses_in(path: &Path) -> Result<Vec<IpAddr>, netdiag_netns::NetnsError> {
    netdiag_netns::run_in(path, || {
        let v4 = std::fs::read_to_string("/proc/thread-self/net/fib_trie").unwrap_or_default();
        let v6 = std::fs::read_to_string("/proc/thread-self/net/if_inet6").unwrap_or_default();
        let mut ips: Vec<IpAddr> = parse_fib_trie_locals(&v4).into_iter().map(IpAddr::V4).collect();
        ips.extend(parse_if_inet6(&v6).into_iter().map(IpAddr::V6));
        ips.retain(|ip| match ip {
            IpAddr::V4(a) => !a.is_loopback() && !a.is_link_local(),
            IpAddr::V6(a) => !a.is_loopback() && !a.is_unicast_link_local(),
        });
        ips
    })
}

/// Which namespace holds each pod: the one whose addresses include one of the pod's IPs.
/// Addresses seen in more than one namespace prove nothing and are ignored; a pod none of
/// whose IPs is found (hostNetwork pods: their IPs are the node's, which `skip` removed) is
/// left out.
pub fn map_pods(namespaces: &[(NetnsId, Vec<IpAddr>)], pods: &[&PodInfo]) -> BTreeMap<PodRef, NetnsId> {
    let mut owners: BTreeMap<IpAddr, BTreeSet<NetnsId>> = BTreeMap::new();
    for (id, ips) in namespaces {
        for ip in ips {
            owners.entry(*ip).or_default().insert(*id);
        }
    }
    let mut out = BTreeMap::new();
    for pod in pods {
        let found: BTreeSet<NetnsId> = pod
            .ips
            .iter()
            .filter_map(|ip| owners.get(ip))
            .filter(|ids| ids.len() == 1)
            .flatten()
            .copied()
            .collect();
        if found.len() == 1
            && let Some(id) = found.into_iter().next()
        {
            out.insert(pod.pod_ref(), id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIB_TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.244.1.0/24 2 0 2
        |-- 10.244.1.3
           /32 host LOCAL
        |-- 10.244.1.255
           /32 link BROADCAST
  +-- 127.0.0.0/8 2 0 2
     |-- 127.0.0.1
        /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
     |-- 10.244.1.3
        /32 host LOCAL
";

    #[test]
    fn fib_trie_locals() {
        assert_eq!(parse_fib_trie_locals(FIB_TRIE), vec![Ipv4Addr::new(10, 244, 1, 3), Ipv4Addr::LOCALHOST]);
        assert!(parse_fib_trie_locals("garbage\n/32 host LOCAL\n|-- x").is_empty());
    }

    #[test]
    fn if_inet6_addresses() {
        let text = "fd420244000000010000000000000003 02 80 00 80     eth0\n00000000000000000000000000000001 01 80 10 80       lo\nshort\n";
        let ips = parse_if_inet6(text);
        assert_eq!(ips, vec!["fd42:244:0:1::3".parse::<Ipv6Addr>().unwrap(), Ipv6Addr::LOCALHOST]);
    }

    fn pod(name: &str, ips: &[&str]) -> PodInfo {
        PodInfo {
            namespace: "tidb".parse().unwrap(),
            name: name.parse().unwrap(),
            node: "node-1".parse().unwrap(),
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            labels: Default::default(),
            ports: vec![],
            netns: None,
            resolv_conf: None,
        }
    }

    #[test]
    fn pods_map_to_the_namespace_holding_their_ip() {
        let a = NetnsId { dev: 4, ino: 100 };
        let b = NetnsId { dev: 4, ino: 200 };
        let c = NetnsId { dev: 4, ino: 300 };
        let ns = vec![
            (a, vec!["10.244.1.3".parse().unwrap()]),
            (b, vec!["10.244.1.4".parse().unwrap(), "10.9.9.9".parse().unwrap()]),
            (c, vec!["10.9.9.9".parse().unwrap()]),
        ];
        let (p1, p2, p3, p4) = (
            pod("pd-0", &["10.244.1.3"]),
            pod("tikv-0", &["10.244.1.4"]),
            pod("dup", &["10.9.9.9"]),
            pod("gone", &["10.244.1.99"]),
        );
        let map = map_pods(&ns, &[&p1, &p2, &p3, &p4]);
        assert_eq!(map.len(), 2, "{map:?}");
        assert_eq!(map[&p1.pod_ref()], a);
        assert_eq!(map[&p2.pod_ref()], b);
    }
}
