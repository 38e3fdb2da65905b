//! What the collector knows about each agent, for `netdiag agents`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::names::NodeName;
use crate::session::{AgentVersion, Capability};
use crate::time::UnixMillis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub node: NodeName,
    pub agent_version: AgentVersion,
    pub connected: bool,
    /// When the current (or last) session started; None if the agent never connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_since: Option<UnixMillis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<UnixMillis>,
    pub results_received: u64,
    pub results_dropped: u64,
    /// Pods the agent probes from.
    pub pods: u32,
    pub capabilities: BTreeSet<Capability>,
}
