//! One HTTP/1.1 `GET` over an already connected stream with hyper's client connection: the
//! status, the body's size and when the first byte came back, or why there is no complete
//! answer. Generic over the stream, so tests run it over in-memory pipes.

use std::error::Error as _;
use std::future::pending;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use netdiag_model::{HttpFailure, HttpPath, Outcome};
use tokio::io::{AsyncRead, AsyncWrite};

use super::first_byte::{FirstByte, Timeline};
use crate::probe::common;

/// Bytes of body read before the probe stops reading (the answer counts as complete).
pub(super) const MAX_BODY: usize = 1 << 20;

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    /// From sending the request to the first byte of the answer.
    pub(super) first_byte: Duration,
    /// Body bytes read, at most [`MAX_BODY`] (then `truncated`).
    pub(super) body_bytes: usize,
    pub(super) truncated: bool,
}

/// Why a connected exchange has no complete answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum ExchangeError {
    #[error("cannot build the request")]
    Request(#[source] hyper::http::Error),
    #[error("no complete HTTP answer within {} after connecting ({})",
        common::human(*.waited),
        if *.first_byte { "the answer started, then stalled" } else { "not a byte came back" })]
    Timeout { waited: Duration, first_byte: bool },
    #[error("the answer is not HTTP")]
    NotHttp(#[source] hyper::Error),
    #[error("the server spoke before the request, and not HTTP (SSH, SMTP and MySQL servers greet first)")]
    SpokeFirst(#[source] hyper::Error),
    #[error("the server closed the connection before a complete HTTP answer")]
    Closed(#[source] hyper::Error),
    #[error("the server reset the connection (RST) before a complete HTTP answer")]
    Reset(#[source] hyper::Error),
    #[error("the HTTP exchange failed after connecting")]
    Broken(#[source] hyper::Error),
}

impl ExchangeError {
    pub(super) fn outcome(&self) -> Outcome {
        match self {
            ExchangeError::Request(_) => Outcome::LocalError,
            ExchangeError::Timeout { .. } => Outcome::Http(HttpFailure::Timeout),
            ExchangeError::NotHttp(_)
            | ExchangeError::SpokeFirst(_)
            | ExchangeError::Closed(_)
            | ExchangeError::Reset(_)
            | ExchangeError::Broken(_) => Outcome::Http(HttpFailure::Protocol),
        }
    }

    /// Classifies what hyper reported. A request hyper cancels because the connection failed
    /// carries that failure as its source: classify by it.
    fn from_hyper(e: hyper::Error, timeline: &Timeline) -> Self {
        let cause = match e.source().and_then(|s| s.downcast_ref::<hyper::Error>()) {
            Some(inner) if e.is_canceled() => inner,
            _ => &e,
        };
        let io = io_kind(cause);
        if cause.is_parse() || cause.is_parse_status() || cause.is_parse_too_large() {
            ExchangeError::NotHttp(e)
        } else if timeline.peer_spoke_first() {
            // hyper fails a connection that receives bytes with no request in flight.
            ExchangeError::SpokeFirst(e)
        } else if io == Some(ErrorKind::ConnectionReset) {
            ExchangeError::Reset(e)
        } else if cause.is_incomplete_message()
            || cause.is_canceled()
            || cause.is_closed()
            || matches!(io, Some(ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe))
        {
            ExchangeError::Closed(e)
        } else {
            ExchangeError::Broken(e)
        }
    }
}

/// The kind of the first I/O error among `e`'s sources.
fn io_kind(e: &hyper::Error) -> Option<ErrorKind> {
    let mut next = e.source();
    while let Some(inner) = next {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = inner.source();
    }
    None
}

/// Sends `GET path` with `Host: host` over `io` and reads the whole answer (body up to
/// [`MAX_BODY`]) within `timeout`.
pub(super) async fn get<T>(
    io: T,
    host: &str,
    path: &HttpPath,
    timeout: Duration,
) -> Result<Answer, ExchangeError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = Request::get(path.as_str())
        .header(HOST, host)
        .header(USER_AGENT, concat!("netdiag-agent/", env!("CARGO_PKG_VERSION")))
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(ExchangeError::Request)?;
    let (io, timeline) = FirstByte::new(io);
    let started = Instant::now();
    let exchange = async move {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        // The connection task reads and writes; it ends after the answer (Connection: close)
        // or with the error the request also sees, so only its error matters here.
        let drive = async move {
            match conn.await {
                Err(e) => Err(e),
                Ok(()) => pending().await,
            }
        };
        let work = async move {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let mut body = response.into_body();
            let (mut body_bytes, mut truncated) = (0usize, false);
            while let Some(frame) = body.frame().await {
                body_bytes += frame?.data_ref().map_or(0, Bytes::len);
                if body_bytes > MAX_BODY {
                    truncated = true;
                    break;
                }
            }
            Ok((status, body_bytes.min(MAX_BODY), truncated))
        };
        tokio::select! {
            biased;
            done = work => done,
            failed = drive => failed,
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(ExchangeError::Timeout {
            waited: started.elapsed(),
            first_byte: timeline.first_read.get().is_some(),
        }),
        Ok(Err(e)) => Err(ExchangeError::from_hyper(e, &timeline)),
        Ok(Ok((status, body_bytes, truncated))) => {
            let first_byte = timeline
                .first_read
                .get()
                .map_or_else(|| started.elapsed(), |at| at.saturating_duration_since(started));
            Ok(Answer { status, first_byte, body_bytes, truncated })
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    const T: Duration = Duration::from_millis(300);

    /// Runs `get` against a fake server that reads the request head and answers `reply`
    /// (then closes, unless `hold` keeps the connection open and silent).
    async fn against(reply: &'static [u8], hold: bool) -> (Result<Answer, ExchangeError>, String) {
        let (client, mut server): (DuplexStream, DuplexStream) = tokio::io::duplex(1 << 16);
        let greets_first = reply.starts_with(b"SSH");
        if greets_first {
            // Servers that greet first do not wait for the request.
            server.write_all(reply).await.unwrap();
        }
        let server = tokio::spawn(async move {
            if greets_first {
                tokio::time::sleep(T * 3).await;
                return String::new();
            }
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = server.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            server.write_all(reply).await.unwrap();
            if hold {
                tokio::time::sleep(T * 3).await;
            }
            String::from_utf8(head).unwrap()
        });
        let path = HttpPath::new("/pd/api/v1/members").unwrap();
        let got = get(client, "10.96.0.20:2379", &path, T).await;
        (got, server.await.unwrap())
    }

    #[tokio::test]
    async fn a_complete_answer_has_status_body_and_first_byte() {
        let (got, head) = against(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false).await;
        let a = got.unwrap();
        assert_eq!((a.status, a.body_bytes, a.truncated), (StatusCode::OK, 5, false));
        assert!(a.first_byte < T);
        assert!(head.starts_with("GET /pd/api/v1/members HTTP/1.1\r\n"), "{head}");
        let head = head.to_ascii_lowercase();
        assert!(head.contains("host: 10.96.0.20:2379\r\n"), "{head}");
        assert!(head.contains("connection: close\r\n"), "{head}");
    }

    #[tokio::test]
    async fn error_statuses_are_answers_too() {
        let (got, _) = against(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false).await;
        assert_eq!(got.unwrap().status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn classifies_what_is_not_a_complete_answer() {
        let cases: [(&[u8], bool, Outcome, &str); 6] = [
            (
                b"SSH-2.0-OpenSSH_9.6\r\n",
                false,
                Outcome::Http(HttpFailure::Protocol),
                "spoke before the request",
            ),
            (b"SMTP ready\r\n", false, Outcome::Http(HttpFailure::Protocol), "not HTTP"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
                false,
                Outcome::Http(HttpFailure::Protocol),
                "closed",
            ),
            (b"", false, Outcome::Http(HttpFailure::Protocol), "closed"),
            (b"", true, Outcome::Http(HttpFailure::Timeout), "not a byte came back"),
            (b"HTTP/1.1 200 OK\r\nContent-Le", true, Outcome::Http(HttpFailure::Timeout), "then stalled"),
        ];
        for (reply, hold, want, words) in cases {
            let (got, _) = against(reply, hold).await;
            let e = got.unwrap_err();
            assert_eq!(e.outcome(), want, "{:?}: {e}", String::from_utf8_lossy(reply));
            let text = common::chain(&e);
            assert!(text.contains(words), "{:?}: {text}", String::from_utf8_lossy(reply));
        }
    }
}
