//! The lab's named faults (the runbook's failure modes), parsed from `netdiag lab fault <name>
//! <args…>` and checked against the plan. Pure: what each fault does to the lab is expressed in
//! [`crate::desired`], as a function of the plan and the list of active faults, so `heal` is
//! just "reconcile with fewer faults".

use std::fmt;

use netdiag_model::{NodeName, PodRef, Port, ServiceRef};
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
    /// Delete the DNAT rule of a service's VIP (one port, or all ports) on one node.
    DnatMissing { node: NodeName, service: ServiceRef, port: Option<Port> },
    /// The cluster DNS server stops answering (every query times out, from everywhere).
    DnsDown,
    /// DNS traffic from one node's pods and the node itself is dropped.
    DnsBlock { node: NodeName },
    /// The cluster DNS server answers every query with SERVFAIL.
    DnsServfail,
    /// A node's uplink loses a share of its packets in each direction (`-m statistic`).
    Loss { node: NodeName, percent: u8 },
    /// Packets larger than `size` bytes through a node's uplink vanish, with no ICMP
    /// "fragmentation needed" (a path-MTU black hole).
    Mtu { node: NodeName, size: u16 },
    /// A node loses its route to a peer node's pod CIDR.
    RouteMissing { node: NodeName, peer: NodeName },
    /// Set a pod's `net.ipv4.tcp_keepalive_time`.
    Keepalive { pod: PodRef, seconds: u32 },
    /// A node's connection tracking forgets idle TCP connections after `seconds` and drops
    /// their later packets (a middlebox idle timeout).
    IdleCut { node: NodeName, seconds: u32 },
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
    ("dnat-missing", "<node> <ns>/<service>[:<port>]", "delete a service's DNAT rule on one node"),
    ("dns-down", "", "the cluster DNS stops answering"),
    ("dns-block", "<node>", "drop DNS from one node and its pods"),
    ("dns-servfail", "", "the cluster DNS answers SERVFAIL"),
    ("loss", "<node> <percent>", "lose a share of packets on a node's uplink"),
    ("mtu", "<node> <bytes>", "black-hole packets larger than <bytes> on a node's uplink"),
    ("route-missing", "<node> <peer-node>", "delete a node's route to a peer's pod CIDR"),
    ("keepalive", "<ns>/<pod> <seconds>", "set a pod's tcp_keepalive_time"),
    ("idle-cut", "<node> <seconds>", "a node forgets idle TCP connections after <seconds>"),
];

pub const FAULT_NAMES: [&str; 14] = [
    "node-pair",
    "node-isolate",
    "pod-down",
    "port-closed",
    "port-drop",
    "dnat-missing",
    "dns-down",
    "dns-block",
    "dns-servfail",
    "loss",
    "mtu",
    "route-missing",
    "keepalive",
    "idle-cut",
];

impl FaultSpec {
    pub fn name(&self) -> &'static str {
        match self {
            FaultSpec::NodePair { .. } => "node-pair",
            FaultSpec::NodeIsolate { .. } => "node-isolate",
            FaultSpec::PodDown { .. } => "pod-down",
            FaultSpec::PortClosed { .. } => "port-closed",
            FaultSpec::PortDrop { .. } => "port-drop",
            FaultSpec::DnatMissing { .. } => "dnat-missing",
            FaultSpec::DnsDown => "dns-down",
            FaultSpec::DnsBlock { .. } => "dns-block",
            FaultSpec::DnsServfail => "dns-servfail",
            FaultSpec::Loss { .. } => "loss",
            FaultSpec::Mtu { .. } => "mtu",
            FaultSpec::RouteMissing { .. } => "route-missing",
            FaultSpec::Keepalive { .. } => "keepalive",
            FaultSpec::IdleCut { .. } => "idle-cut",
        }
    }

    /// Parses `<name> <args…>` and checks every node, pod, service and port against the plan.
    pub fn parse(name: &str, args: &[String], plan: &LabPlan) -> Result<Self, FaultError> {
        let (fname, usage, _) = FAULTS
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| FaultError::UnknownFault { name: name.chars().take(64).collect() })?;
        let want = usage.split_whitespace().count();
        if args.len() != want {
            return Err(FaultError::Usage {
                name: fname,
                usage: if usage.is_empty() { "no arguments" } else { usage },
                got: if args.is_empty() { "none".into() } else { args.join(" ") },
            });
        }
        let invalid = |message: String| FaultError::Invalid { name: fname, message };
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
        let a = |i: usize| args[i].as_str();
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
            "loss" => FaultSpec::Loss { node: node(a(0))?, percent: number(a(1), "percent", 1..=100)? as u8 },
            "mtu" => FaultSpec::Mtu { node: node(a(0))?, size: number(a(1), "size", 576..=9000)? as u16 },
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
            _ => return Err(FaultError::UnknownFault { name: name.to_owned() }),
        };
        Ok(spec)
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultSpec::NodePair { a, b } => write!(f, "traffic between {a} and {b} is dropped"),
            FaultSpec::NodeIsolate { node } => write!(f, "{node} is cut off from the other nodes"),
            FaultSpec::PodDown { pod } => write!(f, "{pod}'s interface is down"),
            FaultSpec::PortClosed { pod, port } => write!(f, "{pod} refuses TCP port {port}"),
            FaultSpec::PortDrop { pod, port } => write!(f, "TCP to {pod} port {port} is dropped"),
            FaultSpec::DnatMissing { node, service, port: Some(p) } => {
                write!(f, "{node} has no DNAT rule for {service} port {p}")
            }
            FaultSpec::DnatMissing { node, service, port: None } => {
                write!(f, "{node} has no DNAT rule for {service}")
            }
            FaultSpec::DnsDown => f.write_str("cluster DNS does not answer"),
            FaultSpec::DnsBlock { node } => write!(f, "DNS from {node} and its pods is dropped"),
            FaultSpec::DnsServfail => f.write_str("cluster DNS answers SERVFAIL"),
            FaultSpec::Loss { node, percent } => {
                write!(f, "{node}'s uplink loses {percent}% of packets each way")
            }
            FaultSpec::Mtu { node, size } => {
                write!(f, "packets over {size} bytes through {node} vanish (MTU black hole)")
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Topology;

    fn plan() -> LabPlan {
        LabPlan::from_topology(&Topology::default_lab().unwrap()).unwrap()
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
            ("dnat-missing", "node-1 tidb/demo-pd:2379"),
            ("dns-down", ""),
            ("dns-block", "node-2"),
            ("dns-servfail", ""),
            ("loss", "node-3 30"),
            ("mtu", "node-2 1200"),
            ("route-missing", "node-1 node-3"),
            ("keepalive", "tidb/demo-tikv-0 7200"),
            ("idle-cut", "node-2 30"),
        ];
        assert_eq!(good.len(), FAULTS.len());
        for (name, a) in good {
            let spec = FaultSpec::parse(name, &args(a), &plan).unwrap_or_else(|e| panic!("{name}: {e}"));
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
        ];
        for (name, a, want) in cases {
            let err = FaultSpec::parse(name, &args(a), &plan).unwrap_err().to_string();
            assert!(err.contains(want), "{name} {a}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn active_faults_serialize_flat() {
        let f = ActiveFault {
            id: 3,
            spec: FaultSpec::Loss { node: "node-1".parse().unwrap(), percent: 30 },
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
