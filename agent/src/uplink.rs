//! The agent's long-lived session to one collector replica: results go through the
//! [`ResultBuffer`] (batched, numbered, kept until acknowledged, bounded while the collector is
//! away), inspection reports and run progress are sent as they come; the collector's plans,
//! runs, cancels and inspect requests come back out, tagged with the uplink they came from.
//! Reconnects with exponential backoff and full jitter, and resumes from the first
//! unacknowledged batch. Batches go in the tabled wire form when the collector's session
//! response announces it reads it, plain otherwise. Every new session first carries the latest
//! inspection of every live source ([`inspections`]), so a restarted collector has the node's
//! rules and routes back at once.
//!
//! With replicated collectors the agent runs one uplink per replica, each with its own buffer
//! ([`fanout`] copies what the agent produces to each), so a replica that is away (restarting,
//! rolled out) gets what it missed from its own buffer when it is back, and never slows the
//! others: an uplink takes what it is handed at every moment, even while connecting.

pub mod fanout;
pub mod follow;
mod inspections;

use std::sync::Arc;
use std::time::{Duration, Instant};

use netdiag_model::inspect::InspectionReport;
use netdiag_model::probe::Source;
use netdiag_model::result::{ProbeResult, ResultBatch, Seq};
use netdiag_model::run::RunProgress;
use netdiag_model::session::{AgentMessage, CollectorMessage, Hello};
use netdiag_proto::tls::{Refresh, Reloading};
use netdiag_proto::v1;
use netdiag_proto::v1::agent_session_client::AgentSessionClient;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

use self::inspections::Inspections;
use crate::buffer::{BufferLimits, ResultBuffer};
use crate::shutdown::stopped;

/// What the rest of the agent hands the uplink.
#[derive(Debug)]
pub enum Outbound {
    Result(Box<ProbeResult>),
    Inspection(Box<InspectionReport>),
    /// Sources that are gone (pod deleted): their reports are not sent again.
    SourcesGone(Vec<Source>),
    RunProgress(RunProgress),
}

/// Reconnect timing.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { min: Duration::from_millis(200), max: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// The wait before attempt `n` (0-based): exponential, capped, full jitter (a uniform
    /// draw below the cap) so a fleet of agents never reconnects in step.
    pub fn delay(&self, attempt: u32, unit_random: f64) -> Duration {
        let cap = self.min.saturating_mul(1u32 << attempt.min(16)).min(self.max);
        cap.mul_f64(unit_random.clamp(0.0, 1.0)).max(self.min / 2)
    }
}

/// What an uplink hands the agent: its sessions coming and going, and the collector's
/// messages. `uplink` is the collector's index in the agent's `--collector` list.
#[derive(Debug)]
pub struct FromCollector {
    pub uplink: usize,
    pub event: UplinkEvent,
}

#[derive(Debug)]
pub enum UplinkEvent {
    /// A session is up: what this collector sends from now on is current.
    Up,
    /// The session is lost: what this collector sent before may be stale.
    Down,
    Message(CollectorMessage),
}

#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// This uplink's index among the agent's collectors.
    pub id: usize,
    /// `http://host:port` of the collector's session service.
    pub collector: String,
    pub hello: Hello,
    pub limits: BufferLimits,
    pub backoff: Backoff,
    pub connect_timeout: Duration,
    /// The session's opening exchange (hello sent, the collector's response headers back) must
    /// end within this: a collector that takes the connection and never answers is given up on
    /// and retried, not waited for forever.
    pub open_timeout: Duration,
    /// TLS toward an `https://` collector (its CA, and this agent's certificate for mTLS),
    /// rebuilt from its files when they change: each connection attempt uses the current one.
    pub tls: Option<Arc<Reloading<tonic::transport::ClientTlsConfig>>>,
    /// A file holding a bearer token that proves this agent's node (a projected ServiceAccount
    /// token), read at every connection.
    pub identity_token: Option<std::path::PathBuf>,
}

/// The longest identity token sent (projected tokens are about 1 KiB).
const MAX_IDENTITY_TOKEN: u64 = 16 * 1024;

/// The `authorization` value for the token in `path`, read now (the kubelet rewrites it).
fn bearer(path: &std::path::Path) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_IDENTITY_TOKEN + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read the identity token {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() || token.len() as u64 > MAX_IDENTITY_TOKEN {
        return Err(format!(
            "the identity token {} is empty or longer than {MAX_IDENTITY_TOKEN} bytes",
            path.display()
        ));
    }
    format!("Bearer {token}")
        .parse()
        .map_err(|_| format!("the identity token {} is not header text", path.display()))
}

/// The default for [`UplinkConfig::open_timeout`].
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters the agent's metrics read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UplinkStats {
    pub connected: bool,
    pub connects: u64,
    pub batches_sent: u64,
    pub acked_results: u64,
    pub dropped_results: u64,
    pub held_results: usize,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Runs the uplink until `shutdown` turns true. Messages from the collector go to `inbound`.
pub async fn run(
    cfg: UplinkConfig,
    mut outbound: mpsc::Receiver<Outbound>,
    inbound: mpsc::Sender<FromCollector>,
    stats: watch::Sender<UplinkStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buffer = ResultBuffer::new(cfg.limits);
    let mut inspections = Inspections::default();
    let mut attempt = 0u32;
    loop {
        match session(&cfg, &mut buffer, &mut inspections, &mut outbound, &inbound, &stats, &mut shutdown)
            .await
        {
            SessionEnd::Shutdown => return,
            SessionEnd::Lost(why) => {
                let was_up = stats.borrow().connected;
                stats.send_modify(|s| s.connected = false);
                if was_up
                    && inbound.send(FromCollector { uplink: cfg.id, event: UplinkEvent::Down }).await.is_err()
                {
                    return;
                }
                let wait = cfg.backoff.delay(attempt, fastrand::f64());
                attempt = attempt.saturating_add(1);
                warn!(collector = %cfg.collector, reason = %why, retry_in_ms = wait.as_millis() as u64, "collector unreachable");
                // Keep taking results while waiting: they are buffered (bounded), not lost.
                let deadline = tokio::time::Instant::now() + wait;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        () = stopped(&mut shutdown) => return,
                        item = outbound.recv() => match item {
                            Some(item) => {
                                take(item, &mut buffer, &mut inspections);
                                publish(&stats, &buffer);
                            }
                            None => return,
                        },
                    }
                }
                buffer.cut(Instant::now());
                publish(&stats, &buffer);
            }
        }
        if stats.borrow().acked_results > 0 {
            attempt = 0;
        }
    }
}

fn take(item: Outbound, buffer: &mut ResultBuffer, inspections: &mut Inspections) {
    match item {
        Outbound::Result(r) => buffer.push(*r, Instant::now()),
        // Only the newest report per source matters; older ones are superseded.
        Outbound::Inspection(r) => inspections.update(*r),
        Outbound::SourcesGone(gone) => inspections.forget(&gone),
        // Run progress is interactive: a run whose collector is gone is over.
        Outbound::RunProgress(_) => {}
    }
}

/// Whether the collector's session response says it reads tabled result batches.
fn accepts_result_tables(headers: &tonic::metadata::MetadataMap) -> bool {
    headers
        .get(netdiag_proto::ACCEPTS_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| netdiag_proto::accepts(v, netdiag_proto::ACCEPTS_RESULT_TABLES))
}

/// A batch on the wire: tabled (each distinct source and target once) for a collector that
/// reads that form, plain otherwise.
fn encode_batch(batch: &ResultBatch, tabled: bool) -> v1::AgentMessage {
    if tabled {
        let body = v1::agent_message::Body::Results(netdiag_proto::convert::tabled_result_batch(batch));
        v1::AgentMessage { body: Some(body) }
    } else {
        AgentMessage::Results(batch.clone()).into()
    }
}

fn publish(stats: &watch::Sender<UplinkStats>, buffer: &ResultBuffer) {
    stats.send_modify(|s| {
        s.dropped_results = buffer.dropped_total();
        s.held_results = buffer.held();
    });
}

/// The TLS configuration for the next connection: a renewed certificate or CA is used from the
/// next attempt on; files that changed but cannot be used keep the previous configuration.
fn current_tls(tls: &Reloading<tonic::transport::ClientTlsConfig>) -> tonic::transport::ClientTlsConfig {
    let (config, refresh) = tls.get();
    match refresh {
        Refresh::Unchanged => {}
        Refresh::Reloaded => info!(files = ?tls.paths(), "TLS files changed: connecting with them"),
        Refresh::Failed(e) => {
            warn!(error = %e, "TLS files changed but cannot be used: connecting with the previous ones")
        }
    }
    (*config).clone()
}

/// Awaits `step` (a connect, a handshake) while still taking what the agent hands over into the
/// buffer, so a slow collector never backs the agent up. None: the agent is stopping.
async fn while_taking<F: std::future::Future>(
    step: F,
    outbound: &mut mpsc::Receiver<Outbound>,
    buffer: &mut ResultBuffer,
    inspections: &mut Inspections,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<F::Output> {
    tokio::pin!(step);
    loop {
        tokio::select! {
            out = &mut step => return Some(out),
            () = stopped(shutdown) => return None,
            item = outbound.recv() => take(item?, buffer, inspections),
        }
    }
}

async fn session(
    cfg: &UplinkConfig,
    buffer: &mut ResultBuffer,
    inspections: &mut Inspections,
    outbound: &mut mpsc::Receiver<Outbound>,
    inbound: &mpsc::Sender<FromCollector>,
    stats: &watch::Sender<UplinkStats>,
    shutdown: &mut watch::Receiver<bool>,
) -> SessionEnd {
    let endpoint = match tonic::transport::Endpoint::from_shared(cfg.collector.clone()) {
        Ok(e) => e.connect_timeout(cfg.connect_timeout).tcp_nodelay(true),
        Err(e) => return SessionEnd::Lost(format!("bad collector address {:?}: {e}", cfg.collector)),
    };
    let endpoint = match &cfg.tls {
        Some(tls) => match endpoint.tls_config(current_tls(tls)) {
            Ok(e) => e,
            Err(e) => {
                return SessionEnd::Lost(format!(
                    "TLS toward {}: {}",
                    cfg.collector,
                    netdiag_model::error_chain(&e)
                ));
            }
        },
        None => endpoint,
    };
    let channel = match while_taking(endpoint.connect(), outbound, buffer, inspections, shutdown).await {
        None => return SessionEnd::Shutdown,
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            return SessionEnd::Lost(format!("cannot connect: {}", netdiag_model::error_chain(&e)));
        }
    };
    let mut client = AgentSessionClient::new(channel)
        .max_decoding_message_size(16 * 1024 * 1024)
        .max_encoding_message_size(16 * 1024 * 1024);
    let (tx, rx) = mpsc::channel::<v1::AgentMessage>(64);
    let mut hello = cfg.hello.clone();
    hello.first_unacked_seq = buffer.first_unacked();
    if tx.send(AgentMessage::Hello(hello).into()).await.is_err() {
        return SessionEnd::Lost("session closed before hello".into());
    }
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(path) = &cfg.identity_token {
        match bearer(path) {
            Ok(value) => {
                request.metadata_mut().insert("authorization", value);
            }
            Err(why) => return SessionEnd::Lost(why),
        }
    }
    let open = tokio::time::timeout(cfg.open_timeout, client.session(request));
    let (tabled, mut replies) = match while_taking(open, outbound, buffer, inspections, shutdown).await {
        None => return SessionEnd::Shutdown,
        Some(Ok(Ok(r))) => (accepts_result_tables(r.metadata()), r.into_inner()),
        Some(Ok(Err(status))) => return SessionEnd::Lost(format!("collector refused the session: {status}")),
        Some(Err(_)) => {
            return SessionEnd::Lost(format!(
                "the collector did not answer the hello within {:?}",
                cfg.open_timeout
            ));
        }
    };
    info!(collector = %cfg.collector, resume_from = %buffer.first_unacked(), "connected to the collector");
    stats.send_modify(|s| {
        s.connected = true;
        s.connects += 1;
    });
    if inbound.send(FromCollector { uplink: cfg.id, event: UplinkEvent::Up }).await.is_err() {
        return SessionEnd::Shutdown;
    }
    // Everything unacknowledged goes again; the collector drops what it already has.
    let mut sent_upto: Option<Seq> = None;
    inspections.new_session();
    loop {
        // Inspections first (a restarted collector needs them for its verdicts); what does not
        // fit in the stream now goes on a later turn.
        let mut carried = Vec::new();
        for report in inspections.pending() {
            match tx.try_send(AgentMessage::Inspection(report.clone()).into()) {
                Ok(()) => carried.push(report.source.clone()),
                Err(mpsc::error::TrySendError::Full(_)) => break,
                Err(mpsc::error::TrySendError::Closed(_)) => return SessionEnd::Lost("stream closed".into()),
            }
        }
        for source in &carried {
            inspections.sent(source);
        }
        buffer.cut(Instant::now());
        for batch in buffer.batches_after(sent_upto) {
            match tx.try_send(encode_batch(batch, tabled)) {
                Ok(()) => {
                    sent_upto = Some(batch.seq);
                    stats.send_modify(|s| s.batches_sent += 1);
                }
                // The stream is backed up: the rest goes on a later turn.
                Err(mpsc::error::TrySendError::Full(_)) => break,
                Err(mpsc::error::TrySendError::Closed(_)) => return SessionEnd::Lost("stream closed".into()),
            }
        }
        publish(stats, buffer);
        let deadline = buffer
            .next_deadline()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            () = stopped(shutdown) => {
                // Last chance for what is buffered: cut and send, without waiting for acks.
                buffer.cut(Instant::now() + Duration::from_secs(3600));
                for batch in buffer.batches_after(sent_upto) {
                    let _ = tx.try_send(encode_batch(batch, tabled));
                }
                return SessionEnd::Shutdown;
            }
            _ = tokio::time::sleep_until(deadline) => {}
            item = outbound.recv() => match item {
                None => return SessionEnd::Shutdown,
                Some(Outbound::Result(r)) => buffer.push(*r, Instant::now()),
                Some(Outbound::Inspection(r)) => inspections.update(*r),
                Some(Outbound::SourcesGone(gone)) => inspections.forget(&gone),
                Some(Outbound::RunProgress(p)) => {
                    // Never wait on one run's progress: a backed-up stream would stall results
                    // too. A collector that stopped reading loses the run, which it would anyway.
                    if tx.try_send(AgentMessage::RunProgress(p).into()).is_err() {
                        warn!(collector = %cfg.collector, "run progress dropped: the session's stream is backed up");
                    }
                }
            },
            reply = replies.next() => match reply {
                None => return SessionEnd::Lost("the collector ended the session".into()),
                Some(Err(status)) => return SessionEnd::Lost(format!("session failed: {status}")),
                Some(Ok(msg)) => match CollectorMessage::try_from(msg) {
                    Ok(CollectorMessage::Ack(seq)) => {
                        let freed = buffer.ack(seq);
                        stats.send_modify(|s| s.acked_results += freed as u64);
                        debug!(%seq, freed, "acknowledged");
                    }
                    Ok(other) => {
                        let from = FromCollector { uplink: cfg.id, event: UplinkEvent::Message(other) };
                        if inbound.send(from).await.is_err() {
                            return SessionEnd::Shutdown;
                        }
                    }
                    Err(e) => warn!(error = %e, "ignoring an invalid message from the collector"),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = Backoff { min: Duration::from_millis(100), max: Duration::from_secs(5) };
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(b.delay(20, 1.0), Duration::from_secs(5));
        assert_eq!(b.delay(20, 0.5), Duration::from_millis(2500));
        assert_eq!(b.delay(20, 0.0), Duration::from_millis(50), "never a busy loop");
    }
}

#[cfg(test)]
mod tls_reload;
