//! The network model: answers one probe at one sample the way a cluster with the scenario's
//! faults and noise would, echo by echo.
//!
//! A probe crosses one or two *hops* (source → destination; a NodePort: source → node, then
//! node → backend). Each hop is judged packet by packet: deterministic blocks (a dead pod, an
//! isolated node, a cut pair, a filter, a refused or dropped port, a one-way MTU black hole,
//! an ICMP filter) and, on cross-node hops, the survival of a packet each way (loss on the
//! nodes' uplinks). Then the probe: an ICMP or MTU burst is 3 echoes, each answered with the
//! round trip's survival less the background echo loss; a TCP connect or a DNS lookup gets 2
//! tries (a SYN or query retransmitted once within the timeout). Services and the DNS go
//! through DNAT to a random ready backend per probe, as kube-proxy's random choice does. A
//! stray timeout fails any probe now and then, whatever the path.
//!
//! Every effect a fault has on a probe sets that fault's bit in the probe's `touched` mask:
//! the benchmark's notion of "the fault's cells".

use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::result::{Burst, Detail, PathMtu, ProbeResult, Rtt};
use netdiag_model::{DnsFailure, IcmpFailure, MtuFailure, Outcome, TcpFailure, UnixMillis};

use super::cluster::{Cluster, Dst, End, Probe};
use super::fault::{Direction, Effect};
use super::rng::Rng;

/// Echoes per ICMP or MTU burst, and tries per TCP connect or DNS lookup.
const ECHOES: u32 = 3;
const TRIES: u32 = 2;
/// The path MTU a black hole leaves (VXLAN's overhead on a 1500-byte underlay).
const HOLE_MTU: u32 = 1400;

/// Background noise, present in every scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Noise {
    /// Each echo (round trip) is lost with this probability, anywhere.
    pub echo_loss: f64,
    /// Each probe times out with this probability, whatever the path.
    pub stray_timeouts: f64,
}

impl Noise {
    pub fn none() -> Self {
        Noise { echo_loss: 0.0, stray_timeouts: 0.0 }
    }
}

/// What stops a hop's packets for good, weakest first (the strongest block wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Block {
    Refused,
    MtuHole,
    Timeout,
    /// The source itself has no way out (its interface is down).
    Unreachable,
}

/// A hop's fate: a block, or each packet's survival one way and back.
#[derive(Debug, Clone, Copy)]
struct Hop {
    block: Option<Block>,
    there: f64,
    back: f64,
}

impl Hop {
    const CLEAR: Hop = Hop { block: None, there: 1.0, back: 1.0 };

    fn then(self, next: Hop) -> Hop {
        Hop { block: self.block.max(next.block), there: self.there * next.there, back: self.back * next.back }
    }

    fn block(&mut self, b: Block) {
        self.block = self.block.max(Some(b));
    }
}

/// One probe at one sample: what it is, when it ran, whether the faults were in place.
#[derive(Debug, Clone, Copy)]
struct Shot<'p> {
    probe: &'p Probe,
    at: UnixMillis,
    active: bool,
}

impl Shot<'_> {
    /// A result with the usual fields for its outcome; a success takes 200–500 µs.
    fn result(&self, outcome: Outcome, rng: &mut Rng) -> ProbeResult {
        let micros = 200 + rng.below(300) as u64;
        ProbeResult {
            source: self.probe.source.clone(),
            target: self.probe.target.clone(),
            kind: self.probe.kind,
            outcome,
            rtt: if outcome.is_ok() { Rtt::from_micros(micros, false).ok() } else { None },
            at: self.at,
            detail: Detail::default(),
            burst: None,
            http_status: None,
            path_mtu: None,
            answers: Vec::new(),
            nameserver: None,
        }
    }

    /// A stray timeout of the probe's kind.
    fn timeout(&self, rng: &mut Rng) -> ProbeResult {
        match self.probe.kind {
            ProbeKind::Icmp => ProbeResult {
                burst: Burst::new(ECHOES, 0).ok(),
                ..self.result(Outcome::Icmp(IcmpFailure::Timeout), rng)
            },
            ProbeKind::Mtu => self.result(Outcome::Icmp(IcmpFailure::Timeout), rng),
            ProbeKind::Tcp | ProbeKind::Http => self.result(Outcome::Tcp(TcpFailure::Timeout), rng),
            ProbeKind::Dns => self.result(Outcome::Dns(DnsFailure::Timeout), rng),
        }
    }
}

/// The network of one scenario.
#[derive(Debug)]
pub(crate) struct Network<'c> {
    pub(crate) cluster: &'c Cluster,
    pub(crate) effects: Vec<Effect>,
    pub(crate) noise: Noise,
    pub(crate) seed: u64,
    /// The first sample with the faults in place.
    pub(crate) onset: u32,
}

impl Network<'_> {
    /// The result of probe `i` at sample `k`, taken at `at`; sets in `touched` the bit of each
    /// fault that had a hand in it.
    pub(crate) fn answer(
        &self,
        i: usize,
        probe: &Probe,
        k: u32,
        at: UnixMillis,
        touched: &mut u64,
    ) -> ProbeResult {
        let mut rng = Rng::at(self.seed, i as u64, u64::from(k));
        let shot = Shot { probe, at, active: k >= self.onset };
        let stray = rng.chance(self.noise.stray_timeouts);
        let src = probe.src;
        let r = match (probe.kind, probe.dst) {
            (ProbeKind::Icmp, Dst::Pod { pod, .. }) => self.icmp(&shot, self.pod_end(pod), &mut rng, touched),
            (ProbeKind::Icmp, Dst::Node(n)) => {
                self.icmp(&shot, End { node: n, pod: None }, &mut rng, touched)
            }
            (ProbeKind::Mtu, Dst::Pod { pod, .. }) => self.mtu(&shot, self.pod_end(pod), &mut rng, touched),
            (ProbeKind::Tcp, Dst::Pod { pod, port }) => {
                let hop = self.hop(&shot, (src, self.pod_end(pod)), false, port, touched);
                self.connect(&shot, hop, &mut rng)
            }
            (ProbeKind::Tcp, Dst::Vip { service, port }) => {
                let hop = match self.backend(service, &mut rng) {
                    Some(b) => self.hop(&shot, (src, b), true, Some(port), touched),
                    None => Hop { block: Some(Block::Refused), ..Hop::CLEAR },
                };
                self.connect(&shot, hop, &mut rng)
            }
            (ProbeKind::Tcp, Dst::NodePort { node, service, port }) => {
                // To the node, then (SNATed to it) on to a backend.
                let via = End { node, pod: None };
                let first = self.hop(&shot, (src, via), false, None, touched);
                let hop = match self.backend(service, &mut rng) {
                    Some(b) => first.then(self.hop(&shot, (via, b), true, Some(port), touched)),
                    None => Hop { block: Some(Block::Timeout), ..first },
                };
                self.connect(&shot, hop, &mut rng)
            }
            (ProbeKind::Dns, Dst::Dns { answer }) => self.lookup(&shot, answer, &mut rng, touched),
            _ => shot.result(Outcome::Ok, &mut rng),
        };
        if stray && r.outcome.is_ok() { shot.timeout(&mut rng) } else { r }
    }

    fn pod_end(&self, pod: u32) -> End {
        End { node: self.cluster.pod(pod).node, pod: Some(pod) }
    }

    /// A random ready backend of the service, as kube-proxy picks one per connection.
    fn backend(&self, service: u32, rng: &mut Rng) -> Option<End> {
        let s = self.cluster.services.get(service as usize)?;
        rng.pick(&s.backends).map(|&b| self.pod_end(b))
    }

    /// One hop of the shot's probe under the faults, marking the faults that touch it.
    /// `dnat`: the hop starts at a DNAT on the source's node (a VIP, the DNS, a NodePort), so
    /// even a pod reaching itself goes out and back through its interface (hairpin).
    fn hop(
        &self,
        shot: &Shot<'_>,
        (src, dst): (End, End),
        dnat: bool,
        port: Option<u16>,
        touched: &mut u64,
    ) -> Hop {
        let mut hop = Hop::CLEAR;
        if !shot.active {
            return hop;
        }
        // A pod's own address never leaves its loopback: only what the app itself does (not
        // listening, dropping) touches it, as in `sim.rs`.
        let itself = !dnat && src.pod.is_some() && src.pod == dst.pod;
        let kind = shot.probe.kind;
        let cross = src.node != dst.node;
        let into = |p: u32| dst.pod == Some(p) && !itself;
        let app = |p: u32| dst.pod == Some(p);
        let between = |a: u32, b: u32| (src.node, dst.node) == (a, b) || (src.node, dst.node) == (b, a);
        let icmp = matches!(kind, ProbeKind::Icmp | ProbeKind::Mtu);
        let tcp_to = |p: u32, q: u16| kind == ProbeKind::Tcp && app(p) && port == Some(q);
        for (bit, e) in self.effects.iter().enumerate() {
            let before = (hop.block, hop.there, hop.back);
            match *e {
                Effect::PodDown(p) if src.pod == Some(p) && !itself => hop.block(Block::Unreachable),
                Effect::PodDown(p) if into(p) => hop.block(Block::Timeout),
                Effect::FilterFromNode(p, n) if into(p) && src.node == n => hop.block(Block::Timeout),
                Effect::FilterFromNamespace(p, ns) if into(p) && self.in_namespace(src, ns) => {
                    hop.block(Block::Timeout)
                }
                Effect::NodeIsolated(n) if cross && (src.node == n || dst.node == n) => {
                    hop.block(Block::Timeout)
                }
                Effect::PairCut(a, b) if cross && between(a, b) => hop.block(Block::Timeout),
                // Forwarded by the node: its pods' packets to anything but the node itself,
                // and anything but the node itself to its pods.
                Effect::ForwardingBroken(n)
                    if !itself
                        && ((src.pod.is_some() && src.node == n && (dst.pod.is_some() || dst.node != n))
                            || (dst.pod.is_some()
                                && dst.node == n
                                && (src.pod.is_some() || src.node != n))) =>
                {
                    hop.block(Block::Timeout)
                }
                Effect::IcmpFiltered(n) if cross && icmp && dst.node == n => hop.block(Block::Timeout),
                // The large request crosses one way; the small reply comes back.
                Effect::MtuOneWay(n, Direction::In) if cross && kind == ProbeKind::Mtu && dst.node == n => {
                    hop.block(Block::MtuHole)
                }
                Effect::MtuOneWay(n, Direction::Out) if cross && kind == ProbeKind::Mtu && src.node == n => {
                    hop.block(Block::MtuHole)
                }
                // Met before routing with the pod's address: from the node's pods (not through a
                // VIP, still the VIP there), or arriving from elsewhere when the pod is on it.
                Effect::NatRewrite(n, p, q)
                    if tcp_to(p, q)
                        && !itself
                        && ((src.pod.is_some() && src.node == n && !dnat) || (cross && dst.node == n)) =>
                {
                    hop.block(Block::Timeout)
                }
                Effect::PortRefused(p, q) if tcp_to(p, q) => hop.block(Block::Refused),
                Effect::PortDropped(p, q) if tcp_to(p, q) => hop.block(Block::Timeout),
                Effect::DnsDown
                    if kind == ProbeKind::Tcp
                        && port == Some(53)
                        && dst.pod.is_some_and(|d| self.cluster.pod(d).dns) =>
                {
                    hop.block(Block::Timeout)
                }
                Effect::Loss(n, share, d) if cross && (src.node == n || dst.node == n) => {
                    let leaves = |x: u32| x == n && d != Some(Direction::In);
                    let enters = |x: u32| x == n && d != Some(Direction::Out);
                    let kept = |hit: bool| if hit { 1.0 - share } else { 1.0 };
                    hop.there *= kept(leaves(src.node)) * kept(enters(dst.node));
                    hop.back *= kept(leaves(dst.node)) * kept(enters(src.node));
                }
                _ => {}
            }
            if (hop.block, hop.there, hop.back) != before {
                *touched |= 1 << bit;
            }
        }
        hop
    }

    fn in_namespace(&self, src: End, ns: u32) -> bool {
        src.pod.is_some_and(|p| self.cluster.pod(p).namespace == ns)
    }

    /// Each echo (or try) comes back with this probability.
    fn echo(&self, hop: Hop) -> f64 {
        hop.there * hop.back * (1.0 - self.noise.echo_loss)
    }

    fn icmp(&self, shot: &Shot<'_>, dst: End, rng: &mut Rng, touched: &mut u64) -> ProbeResult {
        let hop = self.hop(shot, (shot.probe.src, dst), false, None, touched);
        let received = match hop.block {
            Some(_) => 0,
            None => {
                let s = self.echo(hop);
                (0..ECHOES).filter(|_| rng.chance(s)).count() as u32
            }
        };
        let outcome = match (hop.block, received) {
            (Some(Block::Unreachable), _) => Outcome::Icmp(IcmpFailure::Unreachable),
            (_, 0) => Outcome::Icmp(IcmpFailure::Timeout),
            _ => Outcome::Ok,
        };
        ProbeResult { burst: Burst::new(ECHOES, received).ok(), ..shot.result(outcome, rng) }
    }

    fn mtu(&self, shot: &Shot<'_>, dst: End, rng: &mut Rng, touched: &mut u64) -> ProbeResult {
        let hop = self.hop(shot, (shot.probe.src, dst), false, None, touched);
        match hop.block {
            Some(Block::MtuHole) => ProbeResult {
                path_mtu: PathMtu::new(HOLE_MTU).ok(),
                detail: Detail::lossy(&format!(
                    "path MTU to {} is {HOLE_MTU} bytes, below the route MTU 1500: {}-byte echoes vanished \
                     without an ICMP error (a path-MTU black hole)",
                    ip_of(shot.probe),
                    HOLE_MTU + 1
                )),
                ..shot.result(Outcome::Mtu(MtuFailure::Reduced), rng)
            },
            Some(Block::Unreachable) => shot.result(Outcome::Icmp(IcmpFailure::Unreachable), rng),
            Some(_) => shot.result(Outcome::Icmp(IcmpFailure::Timeout), rng),
            None => {
                let s = self.echo(hop);
                if (0..ECHOES).any(|_| rng.chance(s)) {
                    ProbeResult { path_mtu: PathMtu::new(1500).ok(), ..shot.result(Outcome::Ok, rng) }
                } else {
                    shot.result(Outcome::Icmp(IcmpFailure::Timeout), rng)
                }
            }
        }
    }

    /// A TCP connect over `hop`.
    fn connect(&self, shot: &Shot<'_>, hop: Hop, rng: &mut Rng) -> ProbeResult {
        let outcome = match hop.block {
            Some(Block::Unreachable) => Outcome::Tcp(TcpFailure::Unreachable),
            Some(Block::Refused) => Outcome::Tcp(TcpFailure::Refused),
            Some(_) => Outcome::Tcp(TcpFailure::Timeout),
            None if self.tries(hop, rng) => Outcome::Ok,
            None => Outcome::Tcp(TcpFailure::Timeout),
        };
        shot.result(outcome, rng)
    }

    /// Whether one of the tries gets through.
    fn tries(&self, hop: Hop, rng: &mut Rng) -> bool {
        let s = self.echo(hop);
        (0..TRIES).any(|_| rng.chance(s))
    }

    /// A lookup through the DNS VIP: DNAT to a random CoreDNS pod, UDP or TCP port 53.
    fn lookup(&self, shot: &Shot<'_>, answer: Option<u32>, rng: &mut Rng, touched: &mut u64) -> ProbeResult {
        let fail = |f: DnsFailure, rng: &mut Rng| shot.result(Outcome::Dns(f), rng);
        let Some(server) = self.dns_backend(rng) else { return fail(DnsFailure::Timeout, rng) };
        let hop = self.hop(shot, (shot.probe.src, server), true, Some(53), touched);
        match hop.block {
            Some(Block::Unreachable) => return fail(DnsFailure::NoNameserver, rng),
            Some(_) => return fail(DnsFailure::Timeout, rng),
            None => {}
        }
        if shot.active {
            for (bit, e) in self.effects.iter().enumerate() {
                match *e {
                    Effect::DnsDown => {
                        *touched |= 1 << bit;
                        return fail(DnsFailure::Timeout, rng);
                    }
                    Effect::DnsLoss(share) => {
                        *touched |= 1 << bit;
                        if rng.chance(share) {
                            return fail(DnsFailure::Timeout, rng);
                        }
                    }
                    _ => {}
                }
            }
        }
        if !self.tries(hop, rng) {
            return fail(DnsFailure::Timeout, rng);
        }
        let answers = answer
            .and_then(|s| self.cluster.services.get(s as usize))
            .map(|s| s.cluster_ips.clone())
            .unwrap_or_default();
        if answers.is_empty() {
            return fail(DnsFailure::NxDomain, rng);
        }
        let nameserver = match &shot.probe.target {
            Target::Dns { nameserver: Some(ns), .. } => Some(*ns),
            _ => self.cluster.inventory.cluster.dns_ips.first().copied(),
        };
        ProbeResult { answers, nameserver, ..shot.result(Outcome::Ok, rng) }
    }

    fn dns_backend(&self, rng: &mut Rng) -> Option<End> {
        self.backend(self.cluster.dns_service?, rng)
    }
}

fn ip_of(p: &Probe) -> String {
    p.target.ip().map(|ip| ip.to_string()).unwrap_or_default()
}
