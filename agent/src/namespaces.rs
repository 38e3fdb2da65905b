//! Finding the network namespaces on this node the way a real node has them — bind mounts
//! under `/var/run/netns/` (containerd, CRI-O) and `/proc/<pid>/ns/net` (with hostPID) —
//! deduplicated by inode, keeping those connected to the agent's own namespace, and mapping
//! each to its pod by the pod IPs found inside it.
//!
//! A namespace is this node's when one of the agent's links (a pod veth's host end, routed or
//! enslaved to a bridge; a netkit pair) has its other end there: the link's
//! `IFLA_LINK_NETNSID` is that namespace's nsid as the agent's namespace names it
//! (`RTM_GETNSID` with the namespace's fd). Other namespaces on the machine — another
//! cluster's, with the same pod IPs — are never entered.
//!
//! The parsers, the locality rule ([`connected`]) and the mapping are pure; reading addresses
//! happens on a short-lived thread inside each namespace (`netdiag_netns::run_in`), from
//! `/proc/thread-self/net/…`, which shows the reading thread's namespace; nsids are asked
//! over a blocking rtnetlink socket made by the calling thread, in the agent's namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netdiag_model::PodRef;
use netdiag_model::inventory::PodInfo;
use netdiag_netns::{NetnsId, netns_id};
use rtnetlink::packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::nsid::{NsidAttribute, NsidMessage};
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{Socket, SocketAddr};
use tracing::{debug, warn};

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

/// How the agent's namespace names another one (`ip netns list-id`): an id local to the
/// agent's namespace, never negative (the kernel's −1 is "not assigned").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nsid(u32);

impl Nsid {
    /// The kernel's signed id; −1 (`NETNSA_NSID_NOT_ASSIGNED`) and any other negative is none.
    pub fn from_kernel(id: i32) -> Option<Self> {
        u32::try_from(id).ok().map(Self)
    }
}

/// What the agent's namespace knows of the others: where its links' other ends live, and the
/// nsid of each candidate namespace that has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    /// `IFLA_LINK_NETNSID` of every link of the agent's namespace that has one.
    pub link_nsids: BTreeSet<Nsid>,
    /// Each candidate's nsid; a candidate without one is absent.
    pub nsids: BTreeMap<NetnsId, Nsid>,
}

/// The candidates connected to the agent's namespace: those holding the other end of one of
/// its links. A candidate with no nsid is not connected. When the agent's namespace has no
/// link into another namespace at all (a CNI without veth or netkit pairs: ipvlan, macvlan),
/// locality cannot be told and every candidate is kept.
pub fn connected(found: Vec<FoundNetns>, peers: &Peers) -> Vec<FoundNetns> {
    if peers.link_nsids.is_empty() {
        return found;
    }
    found
        .into_iter()
        .filter(|f| peers.nsids.get(&f.id).is_some_and(|n| peers.link_nsids.contains(n)))
        .collect()
}

/// How long the kernel may take to answer one netlink request.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the agent's namespace could not be asked about its peers.
#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    #[error("cannot open a netlink socket in the agent's namespace")]
    Socket(#[source] std::io::Error),
    #[error("cannot open network namespace {path} to ask for its nsid (is it gone?)")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot send {what} over netlink")]
    Send {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer to {what} over netlink (waited up to {}s)", NETLINK_TIMEOUT.as_secs())]
    Receive {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel refused {what}")]
    Refused {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot decode the kernel's answer to {what}")]
    Decode {
        what: &'static str,
        #[source]
        source: DecodeError,
    },
}

/// A blocking rtnetlink socket in the calling thread's namespace.
struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    fn open() -> Result<Self, PeersError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(PeersError::Socket)?;
        socket.bind_auto().map_err(PeersError::Socket)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(PeersError::Socket)?;
        socket2::SockRef::from(&socket)
            .set_read_timeout(Some(NETLINK_TIMEOUT))
            .map_err(PeersError::Socket)?;
        Ok(Self { socket, seq: 0 })
    }

    /// Sends `msg` and hands every answer to `each` until the dump's end or the ack.
    fn request(
        &mut self,
        what: &'static str,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> Result<(), PeersError> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut buf = vec![0; req.buffer_len()];
        req.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(|source| PeersError::Send { what, source })?;
        loop {
            let (data, _) =
                self.socket.recv_from_full().map_err(|source| PeersError::Receive { what, source })?;
            let mut offset = 0;
            while offset < data.len() {
                let bytes = &data[offset..];
                let len = NetlinkBuffer::new_checked(bytes)
                    .map_err(|source| PeersError::Decode { what, source })?
                    .length() as usize;
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                    .map_err(|source| PeersError::Decode { what, source })?;
                // Netlink messages are 4-byte aligned within a datagram.
                offset += len.max(1).next_multiple_of(4);
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(()),
                            Some(_) => Err(PeersError::Refused { what, source: e.to_io() }),
                        };
                    }
                    NetlinkPayload::InnerMessage(inner) => each(inner),
                    _ => {}
                }
            }
        }
    }

    /// `IFLA_LINK_NETNSID` of every link. Dumping links also makes the kernel assign an nsid
    /// to each namespace a link's other end lives in, so ask this before [`Self::nsid_of`].
    fn link_nsids(&mut self) -> Result<BTreeSet<Nsid>, PeersError> {
        let mut out = BTreeSet::new();
        let msg = RouteNetlinkMessage::GetLink(LinkMessage::default());
        self.request("a dump of the agent's links", msg, NLM_F_REQUEST | NLM_F_DUMP, |answer| {
            if let RouteNetlinkMessage::NewLink(link) = answer {
                out.extend(link.attributes.iter().filter_map(|a| match a {
                    LinkAttribute::LinkNetNsId(id) => Nsid::from_kernel(*id),
                    _ => None,
                }));
            }
        })?;
        Ok(out)
    }

    /// The nsid the agent's namespace has for the namespace at `path`, if any. Asking never
    /// assigns one (`RTM_GETNSID` answers −1 for a namespace it has no id for).
    fn nsid_of(&mut self, path: &Path) -> Result<Option<Nsid>, PeersError> {
        let file =
            std::fs::File::open(path).map_err(|source| PeersError::Open { path: path.into(), source })?;
        let fd = u32::try_from(file.as_raw_fd()).map_err(|_| PeersError::Open {
            path: path.into(),
            source: std::io::Error::other("negative fd"),
        })?;
        let mut msg = NsidMessage::default();
        msg.attributes.push(NsidAttribute::Fd(fd));
        let mut id = None;
        self.request(
            "an nsid request",
            RouteNetlinkMessage::GetNsId(msg),
            NLM_F_REQUEST | NLM_F_ACK,
            |answer| {
                if let RouteNetlinkMessage::NewNsId(m) = answer {
                    id = m.attributes.iter().find_map(|a| match a {
                        NsidAttribute::Id(id) => Nsid::from_kernel(*id),
                        _ => None,
                    });
                }
            },
        )?;
        drop(file);
        Ok(id)
    }
}

/// Asks the calling thread's namespace (the agent's) about its links and each candidate.
/// A candidate that vanished or that the kernel refuses to name has no nsid.
pub fn peers(candidates: &[FoundNetns]) -> Result<Peers, PeersError> {
    let mut rtnl = Rtnl::open()?;
    let link_nsids = rtnl.link_nsids()?;
    let mut nsids = BTreeMap::new();
    for f in candidates {
        match rtnl.nsid_of(f.path()) {
            Ok(Some(id)) => {
                nsids.insert(f.id, id);
            }
            Ok(None) => {}
            Err(e) => debug!(path = %f.path().display(), error = %e, "no nsid for a candidate namespace"),
        }
    }
    Ok(Peers { link_nsids, nsids })
}

/// The namespaces of this node, as [`discover`] lists them (without the calling thread's own)
/// narrowed to those [`connected`] to it. If the agent's namespace cannot be asked, every
/// candidate is kept (the IP mapping alone decides) and a warning says why.
pub fn discover_local(netns_dir: &Path, proc_dir: Option<&Path>) -> Vec<FoundNetns> {
    let own = netdiag_netns::current_netns_id().ok();
    let found = discover(netns_dir, proc_dir, own);
    match peers(&found) {
        Ok(p) => connected(found, &p),
        Err(e) => {
            warn!(error = %netdiag_model::error_chain(&e), "cannot tell this node's pod namespaces from others on the machine; mapping pods by IP among all of them");
            found
        }
    }
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

    fn found(ino: u64) -> FoundNetns {
        FoundNetns {
            id: NetnsId { dev: 4, ino },
            paths: vec![PathBuf::from(format!("/var/run/netns/ns{ino}"))],
        }
    }

    fn peers(links: &[u32], nsids: &[(u64, u32)]) -> Peers {
        Peers {
            link_nsids: links.iter().map(|n| Nsid(*n)).collect(),
            nsids: nsids.iter().map(|(ino, n)| (NetnsId { dev: 4, ino: *ino }, Nsid(*n))).collect(),
        }
    }

    #[test]
    fn kernel_nsids_below_zero_are_none() {
        assert_eq!(Nsid::from_kernel(-1), None, "NETNSA_NSID_NOT_ASSIGNED");
        assert_eq!(Nsid::from_kernel(i32::MIN), None);
        assert_eq!(Nsid::from_kernel(0), Some(Nsid(0)));
        assert_eq!(Nsid::from_kernel(7), Some(Nsid(7)));
    }

    #[test]
    fn only_namespaces_at_the_other_end_of_a_link_are_local() {
        /// The agent's link nsids, the candidates' (inode, nsid), the inodes kept.
        type Case = (&'static [u32], &'static [(u64, u32)], &'static [u64]);
        let cases: &[Case] = &[
            // Two pods behind veths (nsids 0, 1); another cluster's pod has an nsid (2, e.g. from
            // an `ip netns set`) but no link of ours ends there; 400 has no nsid at all.
            (&[0, 1], &[(100, 0), (200, 1), (300, 2)], &[100, 200]),
            // The underlay behind the node's uplink is connected too (it holds no pod IP).
            (&[0, 5], &[(100, 0), (300, 5)], &[100, 300]),
            // No candidate has an nsid: nothing is local.
            (&[0, 1], &[], &[]),
            // A link into a namespace that is not a candidate changes nothing.
            (&[9], &[(100, 0)], &[]),
            // No link into any other namespace (ipvlan/macvlan CNI): locality cannot be told.
            (&[], &[(100, 0)], &[100, 200, 300, 400]),
        ];
        for (links, nsids, kept) in cases {
            let all = vec![found(100), found(200), found(300), found(400)];
            let got: Vec<u64> = connected(all, &peers(links, nsids)).iter().map(|f| f.id.ino).collect();
            assert_eq!(&got, kept, "links {links:?}, nsids {nsids:?}");
        }
    }

    #[test]
    fn a_remote_duplicate_of_a_pod_ip_no_longer_hides_the_pod() {
        // Two clusters on one machine: the same pod IP in our pod's namespace (100) and in
        // another cluster's (300). Unfiltered, the address is ambiguous; connected, it maps.
        let all = vec![found(100), found(300)];
        let ip: IpAddr = "10.244.1.3".parse().unwrap();
        let with_ips = |fs: &[FoundNetns]| fs.iter().map(|f| (f.id, vec![ip])).collect::<Vec<_>>();
        let p = pod("pd-0", &["10.244.1.3"]);
        assert!(map_pods(&with_ips(&all), &[&p]).is_empty(), "ambiguous among all");
        let local = connected(all, &peers(&[0], &[(100, 0), (300, 3)]));
        let map = map_pods(&with_ips(&local), &[&p]);
        assert_eq!(map.get(&p.pod_ref()).map(|id| id.ino), Some(100));
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
