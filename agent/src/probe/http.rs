//! HTTP probe: a TCP handshake from inside the source's namespace (classified exactly like
//! the TCP probe, see [`super::tcp`]), then one `GET` with hyper's HTTP/1.1 client connection
//! ([`exchange`]), timing the handshake and the first byte of the answer. The connection is
//! closed with RST like every TCP probe's.

mod exchange;
mod first_byte;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netdiag_model::probe::{ProbeKind, Target};
use netdiag_model::result::ProbeResult;
use netdiag_model::{HttpFailure, HttpPath, HttpStatus, Outcome};

use super::common;
use super::tcp;
use crate::source::SourceNs;

/// Requests `path` from `target`'s address and port, all within `timeout` (one deadline for
/// the handshake and the exchange).
///
/// RTT is connect time plus time to the first byte of the answer; both are in the detail.
/// `http_status` is set whenever a status line came back. `Ok` for 2xx/3xx, `Http(Status)`
/// otherwise; `Http(Timeout)` when, once connected, no complete answer came back before the
/// deadline; `Http(Protocol)` when what came back is not HTTP or the server closed early; a
/// failed handshake is a `Tcp(…)` outcome exactly as in [`tcp::connect`].
pub async fn get(src: &SourceNs, target: &Target, path: &HttpPath, timeout: Duration) -> ProbeResult {
    let r = |outcome, detail: &str| common::result(src.source(), target, ProbeKind::Http, outcome, detail);
    let Some(addr) = target.socket_addr() else {
        let detail = format!("an http probe needs an address and a port, and {target} has none");
        return common::finished(r(Outcome::LocalError, &detail));
    };
    let started = Instant::now();
    let connected = match tcp::open(src, addr, timeout).await {
        Ok(c) => c,
        Err(e) => return common::finished(r(e.outcome(), &common::chain(&e))),
    };
    let left = timeout.saturating_sub(started.elapsed());
    let connect = connected.took;
    let host = authority(addr);
    let answer = match exchange::get(connected.stream, &host, path, left).await {
        Ok(a) => a,
        Err(e) => {
            let detail =
                format!("GET {path} from {addr}: connected in {}, then {}", show(connect), common::chain(&e));
            return common::finished(r(e.outcome(), &detail));
        }
    };
    let code = answer.status.as_u16();
    let Ok(status) = HttpStatus::new(code.into()) else {
        let detail = format!("GET {path} from {addr}: status {code} is not an HTTP status (100 to 599)");
        return common::finished(r(Outcome::Http(HttpFailure::Protocol), &detail));
    };
    let outcome = if status.is_success() { Outcome::Ok } else { Outcome::Http(HttpFailure::Status) };
    let total = connect + answer.first_byte;
    let body = if answer.truncated {
        format!("body read up to {} bytes", exchange::MAX_BODY)
    } else {
        format!("{}-byte body", answer.body_bytes)
    };
    let detail = format!(
        "HTTP {code}{reason} for GET {path} from {addr}: connect {}, first byte {} after the request \
         ({} in all), {body}",
        show(connect),
        show(answer.first_byte),
        show(total),
        reason = answer.status.canonical_reason().map(|r| format!(" {r}")).unwrap_or_default(),
    );
    common::finished(ProbeResult {
        rtt: common::rtt(total),
        http_status: Some(status),
        ..r(outcome, &detail)
    })
}

/// `ip:port`, with IPv6 in brackets: the `Host` header when all we have is an address.
fn authority(addr: SocketAddr) -> String {
    addr.to_string()
}

fn show(d: Duration) -> String {
    common::rtt(d).map_or_else(|| format!("{d:?}"), |r| r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers_bracket_ipv6() {
        assert_eq!(authority("10.96.0.20:2379".parse().unwrap()), "10.96.0.20:2379");
        assert_eq!(authority("[fd00::20]:2379".parse().unwrap()), "[fd00::20]:2379");
    }
}
