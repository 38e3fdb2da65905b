//! The query service's matrix and agent listing: `MatrixRequest`, `MatrixCell`,
//! `MatrixResponse`, `AgentInfo` and `ListAgentsResponse`.

use std::time::Duration;

use netdiag_model::limits::{MAX_AGENTS, MAX_LINE_BYTES, MAX_MATRIX_CELLS, MAX_RTT, OutOfRange};
use netdiag_model::{
    AgentInfo, AgentVersion, MatrixCell, MatrixQuery, MatrixSnapshot, NodeName, Ratio, Text,
};

use super::enums::{self, wire};
use super::error::{At, ConvertError, ErrorKind};
use super::field::{Result, list, non_empty, opt_unix_ms, opt_unix_ms_to_wire, unix_ms};
use super::session::{capabilities, capabilities_to_wire};
use crate::v1;

impl TryFrom<v1::MatrixRequest> for MatrixQuery {
    type Error = ConvertError;
    fn try_from(r: v1::MatrixRequest) -> Result<Self> {
        Ok(MatrixQuery {
            level: enums::matrix_level(r.level).at("level")?,
            kind: enums::opt_probe_kind(r.kind).at("kind")?,
        })
    }
}

impl From<MatrixQuery> for v1::MatrixRequest {
    fn from(q: MatrixQuery) -> Self {
        v1::MatrixRequest {
            level: wire::<v1::MatrixLevel, _>(q.level),
            kind: enums::opt_probe_kind_to_wire(q.kind),
        }
    }
}

/// Milliseconds as a float (0 = no samples) → a duration of 1µs to an hour, in whole µs.
fn rtt_ms(what: &'static str, ms: f64) -> Result<Option<Duration>> {
    if ms == 0.0 {
        return Ok(None);
    }
    let max_ms = MAX_RTT.as_secs_f64() * 1000.0;
    if !(ms > 0.0 && ms <= max_ms) {
        return Err(OutOfRange::new(what, ms, "0 (none) or above 0 up to one hour").into());
    }
    // In range, so the cast neither saturates nor meets NaN. Below 1µs counts as 1µs, so that
    // "some RTT" never turns into "no samples" (0) on the way back out.
    let micros = ((ms * 1000.0).round() as u64).max(1);
    Ok(Some(Duration::from_micros(micros)))
}

fn rtt_ms_to_wire(d: Option<Duration>) -> f64 {
    d.map_or(0.0, |d| d.as_micros() as f64 / 1000.0)
}

impl TryFrom<v1::MatrixCell> for MatrixCell {
    type Error = ConvertError;
    fn try_from(c: v1::MatrixCell) -> Result<Self> {
        let rtt_p50 = rtt_ms("rtt p50 (ms)", c.rtt_p50_ms).at("rtt_p50_ms")?;
        let rtt_p99 = rtt_ms("rtt p99 (ms)", c.rtt_p99_ms).at("rtt_p99_ms")?;
        if let (Some(p50), Some(p99)) = (rtt_p50, rtt_p99)
            && p99 < p50
        {
            return Err(ErrorKind::Conflict("the 99th percentile is below the median")).at("rtt_p99_ms");
        }
        Ok(MatrixCell {
            source: non_empty(c.source, Text::<MAX_LINE_BYTES>::new).at("source")?,
            destination: non_empty(c.destination, Text::<MAX_LINE_BYTES>::new).at("destination")?,
            kind: enums::probe_kind(c.kind).at("kind")?,
            status: enums::cell_status(c.status).at("status")?,
            loss_ratio: Ratio::new(c.loss_ratio).at("loss_ratio")?,
            rtt_p50,
            rtt_p99,
            last_error: Text::new(c.last_error).at("last_error")?,
            samples: c.samples,
            last_update: opt_unix_ms(c.last_update_unix_ms).at("last_update_unix_ms")?,
        })
    }
}

impl From<MatrixCell> for v1::MatrixCell {
    fn from(c: MatrixCell) -> Self {
        v1::MatrixCell {
            source: c.source.into(),
            destination: c.destination.into(),
            kind: wire::<v1::ProbeKind, _>(c.kind),
            status: wire::<v1::CellStatus, _>(c.status),
            loss_ratio: c.loss_ratio.get(),
            rtt_p50_ms: rtt_ms_to_wire(c.rtt_p50),
            rtt_p99_ms: rtt_ms_to_wire(c.rtt_p99),
            last_error: c.last_error.into(),
            samples: c.samples,
            last_update_unix_ms: opt_unix_ms_to_wire(c.last_update),
        }
    }
}

impl TryFrom<v1::MatrixResponse> for MatrixSnapshot {
    type Error = ConvertError;
    fn try_from(r: v1::MatrixResponse) -> Result<Self> {
        Ok(MatrixSnapshot {
            cells: list(r.cells, MAX_MATRIX_CELLS, MatrixCell::try_from).at("cells")?,
            generated_at: unix_ms(r.generated_unix_ms).at("generated_unix_ms")?,
        })
    }
}

impl From<MatrixSnapshot> for v1::MatrixResponse {
    fn from(m: MatrixSnapshot) -> Self {
        v1::MatrixResponse {
            cells: m.cells.into_iter().map(Into::into).collect(),
            generated_unix_ms: m.generated_at.get(),
        }
    }
}

impl TryFrom<v1::AgentInfo> for AgentInfo {
    type Error = ConvertError;
    fn try_from(a: v1::AgentInfo) -> Result<Self> {
        Ok(AgentInfo {
            node: NodeName::new(a.node).at("node")?,
            agent_version: AgentVersion::new(a.agent_version).at("agent_version")?,
            connected: a.connected,
            connected_since: opt_unix_ms(a.connected_since_unix_ms).at("connected_since_unix_ms")?,
            last_seen: opt_unix_ms(a.last_seen_unix_ms).at("last_seen_unix_ms")?,
            results_received: a.results_received,
            results_dropped: a.results_dropped,
            pods: a.pods,
            capabilities: capabilities(a.capabilities).at("capabilities")?,
        })
    }
}

impl From<AgentInfo> for v1::AgentInfo {
    fn from(a: AgentInfo) -> Self {
        v1::AgentInfo {
            node: a.node.into(),
            agent_version: a.agent_version.into(),
            connected: a.connected,
            connected_since_unix_ms: opt_unix_ms_to_wire(a.connected_since),
            last_seen_unix_ms: opt_unix_ms_to_wire(a.last_seen),
            results_received: a.results_received,
            results_dropped: a.results_dropped,
            pods: a.pods,
            capabilities: capabilities_to_wire(a.capabilities),
        }
    }
}

impl TryFrom<v1::ListAgentsResponse> for Vec<AgentInfo> {
    type Error = ConvertError;
    fn try_from(r: v1::ListAgentsResponse) -> Result<Self> {
        list(r.agents, MAX_AGENTS, AgentInfo::try_from).at("agents")
    }
}

impl From<Vec<AgentInfo>> for v1::ListAgentsResponse {
    fn from(agents: Vec<AgentInfo>) -> Self {
        v1::ListAgentsResponse { agents: agents.into_iter().map(Into::into).collect() }
    }
}
