//! The agent session: what an agent says when it connects (`Hello`), and the two message
//! streams of a session (`AgentMessage` up, `CollectorMessage` down).

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::dns::DnsName;
use crate::inspect::InspectionReport;
use crate::names::{NodeName, PodRef};
use crate::plan::ProbePlan;
use crate::probe::Source;
use crate::result::{ResultBatch, Seq};
use crate::run::{RunId, RunProgress, RunRequest};
use crate::text::{TextError, check_token, is_id_char, token_type};

fn check_version(s: &str) -> Result<(), TextError> {
    check_token("agent version", s, 64, |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
}

token_type!(
    /// The agent binary's version (semver: letters, digits, `.`, `-`, `+`; at most 64 bytes).
    AgentVersion,
    check = check_version
);

fn check_instance_id(s: &str) -> Result<(), TextError> {
    check_token("instance id", s, 128, is_id_char)
}

token_type!(
    /// Identifies one run of an agent process: a restart gets a new one, a reconnect keeps it.
    InstanceId,
    check = check_instance_id
);

/// What an agent can do (what its kernel and privileges allow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Icmp,
    Tcp,
    Dns,
    Http,
    Mtu,
    InspectIptables,
    InspectNftables,
    OnDemand,
    /// No inventory of its own: the collector sends its node's pods ([`NodePods`]) and plans.
    CollectorInventory,
}

impl Capability {
    pub const fn as_str(self) -> &'static str {
        match self {
            Capability::Icmp => "icmp",
            Capability::Tcp => "tcp",
            Capability::Dns => "dns",
            Capability::Http => "http",
            Capability::Mtu => "mtu",
            Capability::InspectIptables => "inspect_iptables",
            Capability::InspectNftables => "inspect_nftables",
            Capability::OnDemand => "on_demand",
            Capability::CollectorInventory => "collector_inventory",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pod an agent can probe from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPod {
    pub pod: PodRef,
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
}

/// The pods on an agent's node as the collector's inventory has them (sent to agents with
/// [`Capability::CollectorInventory`]; each replaces the previous one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePods {
    pub pods: Vec<LocalPod>,
    pub node_ips: Vec<IpAddr>,
    /// The cluster DNS service IPs and domain: a ClusterFirst pod's resolv.conf as kubelet
    /// writes it, for a pod whose own resolv.conf cannot be read.
    pub dns_ips: Vec<IpAddr>,
    pub cluster_domain: DnsName,
}

/// The first message of every session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub node: NodeName,
    pub agent_version: AgentVersion,
    pub capabilities: BTreeSet<Capability>,
    pub pods: Vec<LocalPod>,
    pub node_ips: Vec<IpAddr>,
    /// First batch sequence the agent still holds unacknowledged (the resume point).
    pub first_unacked_seq: Seq,
    pub instance_id: InstanceId,
}

/// What an agent sends up its session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentMessage {
    Hello(Hello),
    Results(ResultBatch),
    Inspection(InspectionReport),
    RunProgress(RunProgress),
}

/// What the collector sends down a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CollectorMessage {
    /// Every batch with a sequence up to this one is stored.
    Ack(Seq),
    Plan(ProbePlan),
    Run(RunRequest),
    Cancel(RunId),
    /// Inspect this source now; None: everything the agent inspects.
    Inspect(Option<Source>),
    /// The pods on the agent's node (agents with [`Capability::CollectorInventory`]).
    Pods(NodePods),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_instance_ids() {
        for ok in ["0.1.0", "1.2.3-rc.1+build.5"] {
            assert!(AgentVersion::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1.0 beta", "v1/2", &"1".repeat(65)] {
            assert!(AgentVersion::new(bad).is_err(), "{bad}");
        }
        assert!(InstanceId::new("5f0c7e4e-8a43-4c1b-9d7c-3d1b2f6a9e10").is_ok());
        assert!(InstanceId::new("a\u{1b}").is_err());
    }

    #[test]
    fn capabilities_serialize_snake_case() {
        let caps: BTreeSet<_> = [Capability::OnDemand, Capability::Icmp].into();
        assert_eq!(serde_json::to_string(&caps).unwrap(), r#"["icmp","on_demand"]"#);
        assert_eq!(Capability::InspectNftables.to_string(), "inspect_nftables");
    }
}
