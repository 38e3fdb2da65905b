//! Probes: each kind in its own module, each run from a [`crate::source::SourceNs`] and
//! classified by layer and outcome into a `netdiag_model::result::ProbeResult`. [`run`]
//! dispatches one planned probe to its kind.

mod common;
pub mod dns;
pub mod http;
pub mod icmp;
pub mod mtu;
mod sockopt;
pub mod tcp;

use std::time::Duration;

use netdiag_model::http::HttpPath;
use netdiag_model::outcome::Outcome;
use netdiag_model::plan::PlannedProbe;
use netdiag_model::probe::ProbeKind;
use netdiag_model::result::ProbeResult;
use tokio::sync::OnceCell;

use crate::source::SourceNs;

/// Echo requests per ICMP probe: enough for a loss ratio per round, few enough to be cheap.
pub const ICMP_BURST: u32 = 3;
/// Rounds the path-MTU search may take in the worst case (see `mtu.rs`).
const MTU_ROUNDS: u32 = 5;
/// Payload of ICMP probes (a classic 64-byte echo).
pub const ICMP_PAYLOAD: usize = 56;

/// Probe state that lives as long as its source: the ICMP client (a RAW socket pair in the
/// source's namespace with its own identifier), made on first use.
#[derive(Debug, Default)]
pub struct SourceState {
    pinger: OnceCell<Result<icmp::Pinger, String>>,
}

impl SourceState {
    async fn pinger(&self, src: &SourceNs) -> &Result<icmp::Pinger, String> {
        self.pinger
            .get_or_init(|| async { icmp::Pinger::new(src).await.map_err(|e| common::chain(&e)) })
            .await
    }
}

/// Runs one planned probe from `src` with `timeout`.
pub async fn run(
    src: &SourceNs,
    state: &SourceState,
    probe: &PlannedProbe,
    timeout: Duration,
) -> ProbeResult {
    let target = &probe.target;
    match probe.kind {
        ProbeKind::Icmp => match state.pinger(src).await {
            Ok(p) => p.ping(target, ICMP_BURST, ICMP_PAYLOAD, timeout).await,
            Err(e) => common::result(
                src.source(),
                target,
                ProbeKind::Icmp,
                Outcome::LocalError,
                &format!("cannot open an ICMP socket in the source's namespace: {e}"),
            ),
        },
        ProbeKind::Tcp => tcp::connect(src, target, timeout).await,
        ProbeKind::Http => {
            let path = probe.http_path.clone().unwrap_or_else(HttpPath::root);
            http::get(src, target, &path, timeout).await
        }
        // The MTU search waits up to one round timeout per round (at most MTU_ROUNDS rounds in a
        // black hole): give each round its share so the whole probe fits the plan's timeout.
        ProbeKind::Mtu => {
            let per_round = (timeout / MTU_ROUNDS).max(std::time::Duration::from_millis(50));
            mtu::path_mtu(src, target, &mtu::DEFAULT_LADDER, per_round).await
        }
        ProbeKind::Dns => dns::resolve(src, target, timeout).await,
    }
}
