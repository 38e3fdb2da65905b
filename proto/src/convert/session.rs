//! The session stream: `Hello`, `AgentMessage` (agent → collector) and `CollectorMessage`
//! (collector → agent), with the small messages only they carry (`Ack`, `CancelRun`,
//! `InspectRequest`, `NodePods`).

use std::collections::BTreeSet;

use netdiag_model::limits::{MAX_CAPABILITIES, MAX_IPS, MAX_LOCAL_PODS};
use netdiag_model::{
    AgentMessage, AgentVersion, Capability, CollectorMessage, DnsName, Hello, InstanceId, LocalPod, NodeName,
    NodePods, RunId, Seq,
};

use super::enums::{self, wire};
use super::error::{At, ConvertError};
use super::field::{Result, ip, list, required};
use super::target::{opt_source, pod_ref};
use crate::v1;

pub(crate) fn capabilities(raw: Vec<i32>) -> Result<BTreeSet<Capability>> {
    Ok(list(raw, MAX_CAPABILITIES, enums::capability)?.into_iter().collect())
}

pub(crate) fn capabilities_to_wire(caps: BTreeSet<Capability>) -> Vec<i32> {
    caps.into_iter().map(wire::<v1::Capability, _>).collect()
}

impl TryFrom<v1::LocalPod> for LocalPod {
    type Error = ConvertError;
    fn try_from(p: v1::LocalPod) -> Result<Self> {
        let pod = pod_ref(v1::PodName { namespace: p.namespace, name: p.name })?;
        Ok(LocalPod { pod, ips: list(p.ips, MAX_IPS, |s| ip(&s)).at("ips")?, host_network: p.host_network })
    }
}

impl From<LocalPod> for v1::LocalPod {
    fn from(p: LocalPod) -> Self {
        v1::LocalPod {
            namespace: p.pod.namespace.into(),
            name: p.pod.name.into(),
            ips: p.ips.iter().map(ToString::to_string).collect(),
            host_network: p.host_network,
        }
    }
}

impl TryFrom<v1::NodePods> for NodePods {
    type Error = ConvertError;
    fn try_from(p: v1::NodePods) -> Result<Self> {
        Ok(NodePods {
            pods: list(p.pods, MAX_LOCAL_PODS, LocalPod::try_from).at("pods")?,
            node_ips: list(p.node_ips, MAX_IPS, |s| ip(&s)).at("node_ips")?,
            dns_ips: list(p.dns_ips, MAX_IPS, |s| ip(&s)).at("dns_ips")?,
            cluster_domain: DnsName::new(p.cluster_domain).at("cluster_domain")?,
        })
    }
}

impl From<NodePods> for v1::NodePods {
    fn from(p: NodePods) -> Self {
        v1::NodePods {
            pods: p.pods.into_iter().map(Into::into).collect(),
            node_ips: p.node_ips.iter().map(ToString::to_string).collect(),
            dns_ips: p.dns_ips.iter().map(ToString::to_string).collect(),
            cluster_domain: p.cluster_domain.into(),
        }
    }
}

impl TryFrom<v1::Hello> for Hello {
    type Error = ConvertError;
    fn try_from(h: v1::Hello) -> Result<Self> {
        Ok(Hello {
            node: NodeName::new(h.node).at("node")?,
            agent_version: AgentVersion::new(h.agent_version).at("agent_version")?,
            capabilities: capabilities(h.capabilities).at("capabilities")?,
            pods: list(h.pods, MAX_LOCAL_PODS, LocalPod::try_from).at("pods")?,
            node_ips: list(h.node_ips, MAX_IPS, |s| ip(&s)).at("node_ips")?,
            first_unacked_seq: Seq::new(h.first_unacked_seq).at("first_unacked_seq")?,
            instance_id: InstanceId::new(h.instance_id).at("instance_id")?,
        })
    }
}

impl From<Hello> for v1::Hello {
    fn from(h: Hello) -> Self {
        v1::Hello {
            node: h.node.into(),
            agent_version: h.agent_version.into(),
            capabilities: capabilities_to_wire(h.capabilities),
            pods: h.pods.into_iter().map(Into::into).collect(),
            node_ips: h.node_ips.iter().map(ToString::to_string).collect(),
            first_unacked_seq: h.first_unacked_seq.get(),
            instance_id: h.instance_id.into(),
        }
    }
}

impl TryFrom<v1::AgentMessage> for AgentMessage {
    type Error = ConvertError;
    fn try_from(m: v1::AgentMessage) -> Result<Self> {
        use v1::agent_message::Body;
        Ok(match required(m.body).at("body")? {
            Body::Hello(h) => AgentMessage::Hello(h.try_into().at("hello")?),
            Body::Results(r) => AgentMessage::Results(r.try_into().at("results")?),
            Body::Inspection(i) => AgentMessage::Inspection(i.try_into().at("inspection")?),
            Body::RunProgress(p) => AgentMessage::RunProgress(p.try_into().at("run_progress")?),
        })
    }
}

impl From<AgentMessage> for v1::AgentMessage {
    fn from(m: AgentMessage) -> Self {
        use v1::agent_message::Body;
        let body = match m {
            AgentMessage::Hello(h) => Body::Hello(h.into()),
            AgentMessage::Results(r) => Body::Results(r.into()),
            AgentMessage::Inspection(i) => Body::Inspection(i.into()),
            AgentMessage::RunProgress(p) => Body::RunProgress(p.into()),
        };
        v1::AgentMessage { body: Some(body) }
    }
}

impl TryFrom<v1::CollectorMessage> for CollectorMessage {
    type Error = ConvertError;
    fn try_from(m: v1::CollectorMessage) -> Result<Self> {
        use v1::collector_message::Body;
        Ok(match required(m.body).at("body")? {
            Body::Ack(a) => CollectorMessage::Ack(Seq::new(a.seq).at("seq").at("ack")?),
            Body::Plan(p) => CollectorMessage::Plan(p.try_into().at("plan")?),
            Body::Run(r) => CollectorMessage::Run(r.try_into().at("run")?),
            Body::Cancel(c) => CollectorMessage::Cancel(RunId::new(c.run_id).at("run_id").at("cancel")?),
            Body::Inspect(i) => CollectorMessage::Inspect(opt_source(i.source).at("source").at("inspect")?),
            Body::Pods(p) => CollectorMessage::Pods(p.try_into().at("pods")?),
        })
    }
}

impl From<CollectorMessage> for v1::CollectorMessage {
    fn from(m: CollectorMessage) -> Self {
        use v1::collector_message::Body;
        let body = match m {
            CollectorMessage::Ack(seq) => Body::Ack(v1::Ack { seq: seq.get() }),
            CollectorMessage::Plan(p) => Body::Plan(p.into()),
            CollectorMessage::Run(r) => Body::Run(r.into()),
            CollectorMessage::Cancel(id) => Body::Cancel(v1::CancelRun { run_id: id.into() }),
            CollectorMessage::Inspect(s) => Body::Inspect(v1::InspectRequest { source: s.map(Into::into) }),
            CollectorMessage::Pods(p) => Body::Pods(p.into()),
        };
        v1::CollectorMessage { body: Some(body) }
    }
}
