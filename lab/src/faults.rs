//! The lab's named faults (the runbook's failure modes), parsed from `netdiag lab fault <name>
//! <args…>` and checked against the plan. Pure: what each fault does to the lab is expressed in
//! [`crate::desired`], as a function of the plan and the list of active faults, so `heal` is
//! just "reconcile with fewer faults".

use std::fmt;

use netdiag_model::{Namespace, NodeName, PodRef, Port, ServiceRef};
use serde::{Deserialize, Serialize};

use crate::plan::LabPlan;

/// One fault the lab can inject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum FaultSpec {
    /// Drop all traffic between two nodes (their IPs and pod CIDRs), both directions.
    NodePair { a: NodeName, b: NodeName },
    /// Drop everything entering or leaving a node's uplink.
    NodeIsolate { node: NodeName },
    /// Take a pod's interface down.
    PodDown { pod: PodRef },
    /// Answer TCP to a pod's port with RST (nothing listens: refused).
    PortClosed { pod: PodRef, port: Port },
    /// Silently drop TCP to a pod's port (a firewall: timeout while ICMP works).
    PortDrop { pod: PodRef, port: Port },
    /// A pod drops every packet (any protocol) coming from one set of sources, while every
    /// other source still reaches it (a NetworkPolicy or host firewall).
    PodFilter { pod: PodRef, from: FilterSource },
    /// Delete the DNAT rule of a service's VIP (one port, or all ports) on one node.
    DnatMissing { node: NodeName, service: ServiceRef, port: Option<Port> },
    /// The cluster DNS server stops answering (every query times out, from everywhere).
    DnsDown,
    /// DNS traffic from one node's pods and the node itself is dropped.
    DnsBlock { node: NodeName },
    /// The cluster DNS server answers every query with SERVFAIL.
    DnsServfail,
    /// The cluster DNS server drops a share of incoming queries (`-m statistic`), from
    /// everywhere: lookups need retries.
    DnsLoss { percent: u8 },
    /// A node's uplink loses a share of its packets in one or both directions (`-m statistic`).
    Loss {
        node: NodeName,
        percent: u8,
        #[serde(default)]
        direction: Direction,
    },
    /// Packets larger than `size` bytes through a node's uplink (one or both directions)
    /// vanish, with no ICMP "fragmentation needed" (a path-MTU black hole).
    Mtu {
        node: NodeName,
        size: u16,
        #[serde(default)]
        direction: Direction,
    },
    /// A node loses its route to a peer node's pod CIDR.
    RouteMissing { node: NodeName, peer: NodeName },
    /// Set a pod's `net.ipv4.tcp_keepalive_time`.
    Keepalive { pod: PodRef, seconds: u32 },
    /// A node's connection tracking forgets idle TCP connections after `seconds` and drops
    /// their later packets (a middlebox idle timeout).
    IdleCut { node: NodeName, seconds: u32 },
    /// A node stops forwarding (`net.ipv4.ip_forward = 0`): it still answers for itself, but
    /// passes nothing between its pods and the rest.
    ForwardingOff { node: NodeName },
    /// The CNI enforces no NetworkPolicy on one node: its pods get no policy rules.
    PolicyNotEnforced { node: NodeName },
    /// A pod drops new connections from a pod or a namespace's pods, which no NetworkPolicy
    /// asks for (a stale or foreign rule in the policy chain, stateful like a policy).
    ExtraDeny { pod: PodRef, from: DenySource },
}

/// The sources an `extra-deny` drops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenySource {
    Pod(PodRef),
    /// Every pod of the namespace (but the denying pod itself).
    Namespace(Namespace),
}

/// Which packets through a node's uplink a fault hits. Faults recorded before the option
/// existed have none: both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    #[default]
    Both,
    /// Packets entering the node through its uplink (traffic into the node and its pods).
    In,
    /// Packets leaving the node through its uplink.
    Out,
}

impl Direction {
    /// The iptables interface matches (`-i`, `-o`) the direction covers.
    pub fn iptables_flags(self) -> &'static [&'static str] {
        match self {
            Direction::Both => &["-i", "-o"],
            Direction::In => &["-i"],
            Direction::Out => &["-o"],
        }
    }
}

/// The sources a `pod-filter` drops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterSource {
    /// Every pod on the node and the node's own addresses.
    Node(NodeName),
    /// Every pod of the namespace (but the filtered pod itself).
    Namespace(Namespace),
}

/// A fault as the lab records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveFault {
    pub id: u32,
    #[serde(flatten)]
    pub spec: FaultSpec,
    pub description: String,
    pub since_unix_ms: i64,
}

/// A fault command that cannot be carried out, with what to type instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("unknown fault {name:?}; the lab offers: {}", FAULT_NAMES.join(", "))]
    UnknownFault { name: String },
    #[error("fault {name} takes {usage}; got {got}")]
    Usage { name: &'static str, usage: &'static str, got: String },
    #[error("fault {name}: {message}")]
    Invalid { name: &'static str, message: String },
}

/// (name, arguments, what it does) for every fault, in the order `--help` lists them.
pub const FAULTS: &[(&str, &str, &str)] = &[
    ("node-pair", "<node-a> <node-b>", "drop all traffic between two nodes"),
    ("node-isolate", "<node>", "drop everything in and out of a node's uplink"),
    ("pod-down", "<ns>/<pod>", "take a pod's interface down"),
    ("port-closed", "<ns>/<pod> <port>", "refuse TCP to a pod's port (RST)"),
    ("port-drop", "<ns>/<pod> <port>", "silently drop TCP to a pod's port"),
    (
        "pod-filter",
        "<ns>/<pod> node/<node>|namespace/<ns>",
        "a pod drops all traffic from that node (and its pods) or namespace",
    ),
    ("dnat-missing", "<node> <ns>/<service>[:<port>]", "delete a service's DNAT rule on one node"),
    ("dns-down", "", "the cluster DNS stops answering"),
    ("dns-block", "<node>", "drop DNS from one node and its pods"),
    ("dns-servfail", "", "the cluster DNS answers SERVFAIL"),
    ("dns-loss", "<percent>", "the cluster DNS drops a share of queries"),
    ("loss", "<node> <percent> [--direction in|out]", "lose a share of packets on a node's uplink"),
    (
        "mtu",
        "<node> <bytes> [--direction in|out]",
        "black-hole packets larger than <bytes> on a node's uplink",
    ),
    ("route-missing", "<node> <peer-node>", "delete a node's route to a peer's pod CIDR"),
    ("keepalive", "<ns>/<pod> <seconds>", "set a pod's tcp_keepalive_time"),
    ("idle-cut", "<node> <seconds>", "a node forgets idle TCP connections after <seconds>"),
    ("forwarding-off", "<node>", "a node stops forwarding (net.ipv4.ip_forward = 0)"),
    (
        "policy-not-enforced",
        "<node>",
        "no NetworkPolicy rules on that node's pods (the CNI is not enforcing there)",
    ),
    (
        "extra-deny",
        "<ns>/<pod> <ns>/<pod>|namespace/<ns>",
        "a pod drops new connections from that pod or namespace, which no NetworkPolicy asks for",
    ),
];

pub const FAULT_NAMES: [&str; 19] = [
    "node-pair",
    "node-isolate",
    "pod-down",
    "port-closed",
    "port-drop",
    "pod-filter",
    "dnat-missing",
    "dns-down",
    "dns-block",
    "dns-servfail",
    "dns-loss",
    "loss",
    "mtu",
    "route-missing",
    "keepalive",
    "idle-cut",
    "forwarding-off",
    "policy-not-enforced",
    "extra-deny",
];

impl FaultSpec {
    pub fn name(&self) -> &'static str {
        match self {
            FaultSpec::NodePair { .. } => "node-pair",
            FaultSpec::NodeIsolate { .. } => "node-isolate",
            FaultSpec::PodDown { .. } => "pod-down",
            FaultSpec::PortClosed { .. } => "port-closed",
            FaultSpec::PortDrop { .. } => "port-drop",
            FaultSpec::PodFilter { .. } => "pod-filter",
            FaultSpec::DnatMissing { .. } => "dnat-missing",
            FaultSpec::DnsDown => "dns-down",
            FaultSpec::DnsBlock { .. } => "dns-block",
            FaultSpec::DnsServfail => "dns-servfail",
            FaultSpec::DnsLoss { .. } => "dns-loss",
            FaultSpec::Loss { .. } => "loss",
            FaultSpec::Mtu { .. } => "mtu",
            FaultSpec::RouteMissing { .. } => "route-missing",
            FaultSpec::Keepalive { .. } => "keepalive",
            FaultSpec::IdleCut { .. } => "idle-cut",
            FaultSpec::ForwardingOff { .. } => "forwarding-off",
            FaultSpec::PolicyNotEnforced { .. } => "policy-not-enforced",
            FaultSpec::ExtraDeny { .. } => "extra-deny",
        }
    }

    /// Parses `<name> <args…>` and checks every node, pod, service and port against the plan.
    pub fn parse(name: &str, args: &[String], plan: &LabPlan) -> Result<Self, FaultError> {
        let (fname, usage, _) = FAULTS
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| FaultError::UnknownFault { name: name.chars().take(64).collect() })?;
        let invalid = |message: String| FaultError::Invalid { name: fname, message };
        // `[--direction in|out]` is the only optional part of a usage, and may come anywhere.
        let (args, direction, required) = match usage.strip_suffix(" [--direction in|out]") {
            Some(required) => {
                let (rest, direction) = take_direction(args).map_err(invalid)?;
                (rest, direction, required)
            }
            None => (args.iter().map(String::as_str).collect(), Direction::Both, *usage),
        };
        let want = required.split_whitespace().count();
        if args.len() != want {
            return Err(FaultError::Usage {
                name: fname,
                usage: if usage.is_empty() { "no arguments" } else { usage },
                got: if args.is_empty() { "none".into() } else { args.join(" ") },
            });
        }
        let node = |s: &str| -> Result<NodeName, FaultError> {
            let n: NodeName = s.parse().map_err(|e: netdiag_model::NameError| invalid(e.to_string()))?;
            if plan.node(&n).is_none() {
                let known: Vec<String> = plan.nodes.iter().map(|n| n.name.to_string()).collect();
                return Err(invalid(format!(
                    "no node {n} in lab {} (nodes: {})",
                    plan.name,
                    known.join(", ")
                )));
            }
            Ok(n)
        };
        let pod = |s: &str| -> Result<PodRef, FaultError> {
            let p: PodRef = s.parse().map_err(|e: netdiag_model::NameError| invalid(e.to_string()))?;
            if plan.pod(&p).is_none() {
                return Err(invalid(format!("no pod {p} in lab {} (see `netdiag lab status`)", plan.name)));
            }
            Ok(p)
        };
        let number = |s: &str, what: &str, range: std::ops::RangeInclusive<u32>| -> Result<u32, FaultError> {
            s.parse::<u32>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                invalid(format!(
                    "{what} must be a number from {} to {}, got {s:?}",
                    range.start(),
                    range.end()
                ))
            })
        };
        let port = |s: &str| -> Result<Port, FaultError> {
            s.parse().map_err(|e: netdiag_model::NameError| invalid(e.to_string()))
        };
        let a = |i: usize| args[i];
        let spec = match *fname {
            "node-pair" => {
                let (x, y) = (node(a(0))?, node(a(1))?);
                if x == y {
                    return Err(invalid("the two nodes must differ".into()));
                }
                FaultSpec::NodePair { a: x, b: y }
            }
            "node-isolate" => FaultSpec::NodeIsolate { node: node(a(0))? },
            "pod-down" => FaultSpec::PodDown { pod: pod(a(0))? },
            "port-closed" | "port-drop" => {
                let p = pod(a(0))?;
                let port = port(a(1))?;
                if *fname == "port-closed" {
                    FaultSpec::PortClosed { pod: p, port }
                } else {
                    FaultSpec::PortDrop { pod: p, port }
                }
            }
            "pod-filter" => {
                let p = pod(a(0))?;
                let from = match a(1).split_once('/') {
                    Some(("node", n)) => FilterSource::Node(node(n)?),
                    Some(("namespace", ns)) => {
                        let ns: Namespace =
                            ns.parse().map_err(|e: netdiag_model::NameError| invalid(e.to_string()))?;
                        let in_ns = || plan.pods.iter().filter(|q| q.pod.namespace == ns);
                        if in_ns().next().is_none() {
                            let known: std::collections::BTreeSet<&str> =
                                plan.pods.iter().map(|q| q.pod.namespace.as_str()).collect();
                            return Err(invalid(format!(
                                "no pod in namespace {ns} in lab {} (namespaces: {})",
                                plan.name,
                                known.into_iter().collect::<Vec<_>>().join(", ")
                            )));
                        }
                        if in_ns().all(|q| q.pod == p) {
                            return Err(invalid(format!(
                                "{p} is the only pod in namespace {ns}: there is nothing to filter; \
                                 pick another namespace or node/<node>"
                            )));
                        }
                        FilterSource::Namespace(ns)
                    }
                    _ => {
                        return Err(invalid(format!(
                            "the sources must be node/<node> or namespace/<namespace>, got {:?}",
                            a(1).chars().take(64).collect::<String>()
                        )));
                    }
                };
                FaultSpec::PodFilter { pod: p, from }
            }
            "dnat-missing" => {
                let n = node(a(0))?;
                let (svc_text, port_text) = match a(1).rsplit_once(':') {
                    Some((s, p)) => (s, Some(p)),
                    None => (a(1), None),
                };
                let service: ServiceRef =
                    svc_text.parse().map_err(|e: netdiag_model::NameError| invalid(e.to_string()))?;
                let svc = plan
                    .service(&service)
                    .ok_or_else(|| invalid(format!("no service {service} in lab {}", plan.name)))?;
                if svc.cluster_ip.is_none() && svc.cluster_ip_v6.is_none() {
                    return Err(invalid(format!("{service} is headless: it has no DNAT rule")));
                }
                let port = port_text.map(port).transpose()?;
                if let Some(p) = port
                    && !svc.ports.iter().any(|sp| sp.port == p)
                {
                    return Err(invalid(format!("service {service} has no port {p}")));
                }
                FaultSpec::DnatMissing { node: n, service, port }
            }
            "dns-down" => FaultSpec::DnsDown,
            "dns-block" => FaultSpec::DnsBlock { node: node(a(0))? },
            "dns-servfail" => FaultSpec::DnsServfail,
            "dns-loss" => FaultSpec::DnsLoss { percent: number(a(0), "percent", 1..=99)? as u8 },
            "loss" => FaultSpec::Loss {
                node: node(a(0))?,
                percent: number(a(1), "percent", 1..=100)? as u8,
                direction,
            },
            "mtu" => FaultSpec::Mtu {
                node: node(a(0))?,
                size: number(a(1), "size", 576..=9000)? as u16,
                direction,
            },
            "route-missing" => {
                let (x, y) = (node(a(0))?, node(a(1))?);
                if x == y {
                    return Err(invalid("a node has no route to itself to delete".into()));
                }
                FaultSpec::RouteMissing { node: x, peer: y }
            }
            "keepalive" => {
                FaultSpec::Keepalive { pod: pod(a(0))?, seconds: number(a(1), "seconds", 1..=32767)? }
            }
            "idle-cut" => {
                FaultSpec::IdleCut { node: node(a(0))?, seconds: number(a(1), "seconds", 5..=432_000)? }
            }
            "forwarding-off" => FaultSpec::ForwardingOff { node: node(a(0))? },
            "policy-not-enforced" => {
                let n = node(a(0))?;
                let enforcement = crate::netpol::Enforcement::new(plan);
                let isolated = plan
                    .pods
                    .iter()
                    .filter(|p| p.node == n)
                    .any(|p| enforcement.isolates_ingress(p) || enforcement.isolates_egress(p));
                if !isolated {
                    return Err(invalid(format!(
                        "no NetworkPolicy isolates a pod on {n} in lab {}: the fault would change nothing \
                         (bring the lab up with a topology that has network_policies, e.g. lab/topologies/default.yaml)",
                        plan.name
                    )));
                }
                FaultSpec::PolicyNotEnforced { node: n }
            }
            "extra-deny" => {
                let p = pod(a(0))?;
                let from = match a(1).strip_prefix("namespace/") {
                    Some(ns) => {
                        let ns: Namespace =
                            ns.parse().map_err(|e: netdiag_model::NameError| invalid(e.to_string()))?;
                        if !plan.pods.iter().any(|q| q.pod.namespace == ns && q.pod != p) {
                            return Err(invalid(format!(
                                "no pod other than {p} in namespace {ns} in lab {}: there is nothing to deny",
                                plan.name
                            )));
                        }
                        DenySource::Namespace(ns)
                    }
                    None => {
                        let src = pod(a(1))?;
                        if src == p {
                            return Err(invalid(
                                "a pod cannot block itself (NetworkPolicy exempts loopback); pick another source".into(),
                            ));
                        }
                        DenySource::Pod(src)
                    }
                };
                FaultSpec::ExtraDeny { pod: p, from }
            }
            _ => return Err(FaultError::UnknownFault { name: name.to_owned() }),
        };
        Ok(spec)
    }
}

/// Splits `--direction in|out` (or `--direction=in|out`) off a fault's arguments.
fn take_direction(args: &[String]) -> Result<(Vec<&str>, Direction), String> {
    let mut rest = Vec::new();
    let mut direction = None;
    let mut words = args.iter().map(String::as_str);
    while let Some(w) = words.next() {
        let value = match w.strip_prefix("--direction").map(|tail| (tail, tail.strip_prefix('='))) {
            Some(("", _)) => words.next().unwrap_or(""),
            Some((_, Some(v))) => v,
            _ => {
                rest.push(w);
                continue;
            }
        };
        let d = match value {
            "in" => Direction::In,
            "out" => Direction::Out,
            other => {
                return Err(format!(
                    "--direction takes in or out, got {:?}",
                    other.chars().take(64).collect::<String>()
                ));
            }
        };
        if direction.replace(d).is_some() {
            return Err("--direction is given twice; give it once (no flag: both directions)".into());
        }
    }
    Ok((rest, direction.unwrap_or_default()))
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultSpec::NodePair { a, b } => write!(f, "traffic between {a} and {b} is dropped"),
            FaultSpec::NodeIsolate { node } => write!(f, "{node} is cut off from the other nodes"),
            FaultSpec::PodDown { pod } => write!(f, "{pod}'s interface is down"),
            FaultSpec::PortClosed { pod, port } => write!(f, "{pod} refuses TCP port {port}"),
            FaultSpec::PortDrop { pod, port } => write!(f, "TCP to {pod} port {port} is dropped"),
            FaultSpec::PodFilter { pod, from: FilterSource::Node(n) } => {
                write!(f, "{pod} drops everything from {n} and its pods")
            }
            FaultSpec::PodFilter { pod, from: FilterSource::Namespace(ns) } => {
                write!(f, "{pod} drops everything from namespace {ns}'s pods")
            }
            FaultSpec::DnatMissing { node, service, port: Some(p) } => {
                write!(f, "{node} has no DNAT rule for {service} port {p}")
            }
            FaultSpec::DnatMissing { node, service, port: None } => {
                write!(f, "{node} has no DNAT rule for {service}")
            }
            FaultSpec::DnsDown => f.write_str("cluster DNS does not answer"),
            FaultSpec::DnsBlock { node } => write!(f, "DNS from {node} and its pods is dropped"),
            FaultSpec::DnsServfail => f.write_str("cluster DNS answers SERVFAIL"),
            FaultSpec::DnsLoss { percent } => write!(f, "cluster DNS drops {percent}% of queries"),
            FaultSpec::Loss { node, percent, direction: Direction::Both } => {
                write!(f, "{node}'s uplink loses {percent}% of packets each way")
            }
            FaultSpec::Loss { node, percent, direction: Direction::In } => {
                write!(f, "{node} drops {percent}% of packets coming in")
            }
            FaultSpec::Loss { node, percent, direction: Direction::Out } => {
                write!(f, "{node} drops {percent}% of packets going out")
            }
            FaultSpec::Mtu { node, size, direction: Direction::Both } => {
                write!(f, "packets over {size} bytes through {node} vanish (MTU black hole)")
            }
            FaultSpec::Mtu { node, size, direction: Direction::In } => {
                write!(f, "packets over {size} bytes coming into {node} vanish (MTU black hole)")
            }
            FaultSpec::Mtu { node, size, direction: Direction::Out } => {
                write!(f, "packets over {size} bytes leaving {node} vanish (MTU black hole)")
            }
            FaultSpec::RouteMissing { node, peer } => {
                write!(f, "{node} has no route to {peer}'s pod CIDR")
            }
            FaultSpec::Keepalive { pod, seconds } => {
                write!(f, "{pod} has tcp_keepalive_time {seconds}s")
            }
            FaultSpec::IdleCut { node, seconds } => {
                write!(f, "{node} cuts TCP connections idle for {seconds}s")
            }
            FaultSpec::ForwardingOff { node } => {
                write!(f, "{node} does not forward (net.ipv4.ip_forward = 0)")
            }
            FaultSpec::PolicyNotEnforced { node } => {
                write!(f, "NetworkPolicies are not enforced on {node}'s pods")
            }
            FaultSpec::ExtraDeny { pod, from: DenySource::Pod(src) } => {
                write!(f, "{pod} drops new connections from {src} (no policy asks for it)")
            }
            FaultSpec::ExtraDeny { pod, from: DenySource::Namespace(ns) } => {
                write!(f, "{pod} drops new connections from namespace {ns}'s pods (no policy asks for it)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Topology;

    fn plan() -> LabPlan {
        LabPlan::from_topology(&Topology::open_lab().unwrap()).unwrap()
    }

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn every_listed_fault_parses_with_good_arguments() {
        let plan = plan();
        let good = [
            ("node-pair", "node-1 node-2"),
            ("node-isolate", "node-3"),
            ("pod-down", "tidb/demo-pd-1"),
            ("port-closed", "tidb/demo-pd-1 2379"),
            ("port-drop", "tidb/demo-pd-1 2379"),
            ("pod-filter", "tidb/demo-pd-1 node/node-1"),
            ("dnat-missing", "node-1 tidb/demo-pd:2379"),
            ("dns-down", ""),
            ("dns-block", "node-2"),
            ("dns-servfail", ""),
            ("dns-loss", "30"),
            ("loss", "node-3 30"),
            ("mtu", "node-2 1200"),
            ("route-missing", "node-1 node-3"),
            ("keepalive", "tidb/demo-tikv-0 7200"),
            ("idle-cut", "node-2 30"),
            ("forwarding-off", "node-2"),
            ("policy-not-enforced", "node-1"),
            ("extra-deny", "tidb/demo-pd-1 namespace/monitoring"),
        ];
        assert_eq!(good.len(), FAULTS.len());
        let with_policies =
            LabPlan::from_topology(&Topology::parse(crate::topology::DEFAULT_TOPOLOGY).unwrap()).unwrap();
        for (name, a) in good {
            let plan =
                if name.starts_with("policy") || name == "extra-deny" { &with_policies } else { &plan };
            let spec = FaultSpec::parse(name, &args(a), plan).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(spec.name(), name);
            assert!(!spec.to_string().is_empty());
        }
        assert_eq!(FAULT_NAMES.to_vec(), FAULTS.iter().map(|f| f.0).collect::<Vec<_>>());
    }

    #[test]
    fn bad_fault_commands_say_what_is_wrong() {
        let plan = plan();
        let cases = [
            ("explode", "", "unknown fault \"explode\"; the lab offers: node-pair"),
            ("node-pair", "node-1", "takes <node-a> <node-b>; got node-1"),
            ("node-pair", "node-1 node-1", "must differ"),
            ("node-isolate", "node-9", "no node node-9"),
            ("pod-down", "tidb/nope", "no pod tidb/nope"),
            ("pod-down", "nope", "<namespace>/<name>"),
            ("port-closed", "tidb/demo-pd-1 0", "1 to 65535"),
            ("dnat-missing", "node-1 tidb/demo-pd-peer", "headless"),
            ("dnat-missing", "node-1 tidb/demo-pd:9999", "no port 9999"),
            ("loss", "node-1 0", "from 1 to 100"),
            ("dns-down", "x", "takes no arguments"),
            (
                "pod-filter",
                "tidb/demo-pd-1",
                "takes <ns>/<pod> node/<node>|namespace/<ns>; got tidb/demo-pd-1",
            ),
            ("pod-filter", "tidb/nope node/node-1", "no pod tidb/nope"),
            ("pod-filter", "tidb/demo-pd-1 node/node-9", "no node node-9 in lab lab (nodes: node-1, node-2"),
            (
                "pod-filter",
                "tidb/demo-pd-1 node-1",
                "the sources must be node/<node> or namespace/<namespace>",
            ),
            ("pod-filter", "tidb/demo-pd-1 pod/tidb", "got \"pod/tidb\""),
            ("pod-filter", "tidb/demo-pd-1 namespace/Bad", "namespace \"Bad\" is not a valid name"),
            (
                "pod-filter",
                "tidb/demo-pd-1 namespace/nope",
                "no pod in namespace nope in lab lab (namespaces: kube-system, tidb)",
            ),
            (
                "pod-filter",
                "kube-system/coredns-0 namespace/kube-system",
                "kube-system/coredns-0 is the only pod in namespace kube-system",
            ),
            ("dns-loss", "100", "percent must be a number from 1 to 99"),
            ("dns-loss", "0", "from 1 to 99"),
            ("dns-loss", "", "takes <percent>; got none"),
            ("loss", "node-1 30 --direction sideways", "--direction takes in or out, got \"sideways\""),
            ("loss", "node-1 30 --direction in --direction out", "--direction is given twice"),
            ("loss", "node-1 --direction in", "takes <node> <percent> [--direction in|out]; got node-1"),
            ("mtu", "node-1 1200 --direction", "--direction takes in or out, got \"\""),
            ("mtu", "node-1 100 --direction in", "size must be a number from 576 to 9000"),
            ("node-isolate", "node-1 --direction in", "takes <node>; got node-1 --direction in"),
        ];
        for (name, a, want) in cases {
            let err = FaultSpec::parse(name, &args(a), &plan).unwrap_err().to_string();
            assert!(err.contains(want), "{name} {a}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn loss_and_mtu_take_an_optional_direction_anywhere() {
        let plan = plan();
        let node3: NodeName = "node-3".parse().unwrap();
        let cases = [
            (
                "loss",
                "node-3 30",
                FaultSpec::Loss { node: node3.clone(), percent: 30, direction: Direction::Both },
            ),
            (
                "loss",
                "node-3 30 --direction in",
                FaultSpec::Loss { node: node3.clone(), percent: 30, direction: Direction::In },
            ),
            (
                "loss",
                "--direction out node-3 30",
                FaultSpec::Loss { node: node3.clone(), percent: 30, direction: Direction::Out },
            ),
            (
                "mtu",
                "node-3 --direction=in 1200",
                FaultSpec::Mtu { node: node3.clone(), size: 1200, direction: Direction::In },
            ),
            (
                "mtu",
                "node-3 1200",
                FaultSpec::Mtu { node: node3.clone(), size: 1200, direction: Direction::Both },
            ),
        ];
        for (name, a, want) in cases {
            assert_eq!(FaultSpec::parse(name, &args(a), &plan).unwrap(), want, "{name} {a}");
        }
        let described = |name: &str, a: &str| FaultSpec::parse(name, &args(a), &plan).unwrap().to_string();
        assert_eq!(described("loss", "node-2 30 --direction in"), "node-2 drops 30% of packets coming in");
        assert_eq!(described("loss", "node-2 30 --direction out"), "node-2 drops 30% of packets going out");
        assert_eq!(described("loss", "node-2 30"), "node-2's uplink loses 30% of packets each way");
        assert_eq!(
            described("mtu", "node-2 1200 --direction in"),
            "packets over 1200 bytes coming into node-2 vanish (MTU black hole)"
        );
        assert_eq!(
            described("mtu", "node-2 1200 --direction out"),
            "packets over 1200 bytes leaving node-2 vanish (MTU black hole)"
        );
    }

    #[test]
    fn pod_filter_and_dns_loss_parse_their_arguments() {
        let plan = plan();
        let parse = |name: &str, a: &str| FaultSpec::parse(name, &args(a), &plan).unwrap();
        assert_eq!(
            parse("pod-filter", "tidb/demo-pd-1 namespace/tidb"),
            FaultSpec::PodFilter {
                pod: "tidb/demo-pd-1".parse().unwrap(),
                from: FilterSource::Namespace("tidb".parse().unwrap()),
            }
        );
        // A namespace holding the target and others is fine; so is the target's own node.
        assert_eq!(
            parse("pod-filter", "tidb/demo-pd-1 node/node-2").to_string(),
            "tidb/demo-pd-1 drops everything from node-2 and its pods"
        );
        assert_eq!(
            parse("pod-filter", "kube-system/coredns-0 namespace/tidb").to_string(),
            "kube-system/coredns-0 drops everything from namespace tidb's pods"
        );
        assert_eq!(parse("dns-loss", "99"), FaultSpec::DnsLoss { percent: 99 });
        assert_eq!(parse("dns-loss", "25").to_string(), "cluster DNS drops 25% of queries");
    }

    #[test]
    fn faults_recorded_before_direction_existed_still_load() {
        for (json, want) in [
            (
                r#"{"id":1,"fault":"loss","node":"node-1","percent":30,"description":"x","since_unix_ms":1}"#,
                FaultSpec::Loss { node: "node-1".parse().unwrap(), percent: 30, direction: Direction::Both },
            ),
            (
                r#"{"id":1,"fault":"mtu","node":"node-1","size":1200,"description":"x","since_unix_ms":1}"#,
                FaultSpec::Mtu { node: "node-1".parse().unwrap(), size: 1200, direction: Direction::Both },
            ),
        ] {
            let f: ActiveFault = serde_json::from_str(json).unwrap();
            assert_eq!(f.spec, want);
        }
    }

    #[test]
    fn new_faults_serialize_flat_and_back() {
        let plan = plan();
        for (name, a, key, value) in [
            ("pod-filter", "tidb/demo-pd-1 node/node-1", "from", serde_json::json!({"node": "node-1"})),
            ("pod-filter", "tidb/demo-pd-1 namespace/tidb", "from", serde_json::json!({"namespace": "tidb"})),
            ("loss", "node-1 30 --direction in", "direction", serde_json::json!("in")),
            ("mtu", "node-1 1200 --direction out", "direction", serde_json::json!("out")),
            ("dns-loss", "40", "percent", serde_json::json!(40)),
        ] {
            let spec = FaultSpec::parse(name, &args(a), &plan).unwrap();
            let f = ActiveFault { id: 1, description: spec.to_string(), spec, since_unix_ms: 1 };
            let json = serde_json::to_value(&f).unwrap();
            assert_eq!(json["fault"], name);
            assert_eq!(json[key], value, "{name} {a}: {json}");
            let back: ActiveFault = serde_json::from_value(json).unwrap();
            assert_eq!(back, f);
        }
    }

    #[test]
    fn active_faults_serialize_flat() {
        let f = ActiveFault {
            id: 3,
            spec: FaultSpec::Loss {
                node: "node-1".parse().unwrap(),
                percent: 30,
                direction: Direction::Both,
            },
            description: "x".into(),
            since_unix_ms: 1,
        };
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["fault"], "loss");
        assert_eq!(json["node"], "node-1");
        let back: ActiveFault = serde_json::from_value(json).unwrap();
        assert_eq!(back, f);
    }
}
