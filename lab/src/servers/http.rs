//! A deliberately small HTTP/1.x server side, pure: parse one request head (request line and
//! headers, at most [`MAX_HEAD_BYTES`]) and render one response with `Connection: close`.
//! Bodies are never read; the lab's apps only answer `GET` and `HEAD`.
//!
//! The parser sees the bytes received so far and says "need more", "here is the head" or why
//! the bytes can never become a valid head. It rejects non-HTTP input as early as it can (a TLS
//! handshake or binary protocol fails on its first byte), so such clients get a 400 at once.

use serde::Serialize;

/// The request line and headers together may not exceed this many bytes.
pub(crate) const MAX_HEAD_BYTES: usize = 8 * 1024;
/// At most this many header lines.
const MAX_HEADERS: usize = 64;

/// A parsed request line and its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    /// The target's path: without query or fragment, and without scheme and authority when
    /// the target was absolute (`http://host/x` → `/x`).
    pub(crate) path: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor_version: u8,
    /// Names lowercased, values trimmed.
    pub(crate) headers: Vec<(String, String)>,
}

/// Why received bytes can never be a valid HTTP/1.x request head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("request head is longer than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("request line is not `<method> <target> HTTP/1.x`")]
    BadRequestLine,
    #[error("header line is not `<name>: <value>`")]
    BadHeader,
    #[error("more than {limit} header lines")]
    TooManyHeaders { limit: usize },
    #[error("HTTP version is not 1.0 or 1.1")]
    UnsupportedVersion,
}

impl HttpError {
    pub(crate) fn status(&self) -> Status {
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => Status::HeadersTooLarge,
            HttpError::BadRequestLine | HttpError::BadHeader => Status::BadRequest,
            HttpError::UnsupportedVersion => Status::VersionNotSupported,
        }
    }
}

/// Parses the head of the request in `buf` (all bytes received so far). `Ok(None)`: the head
/// is incomplete but still plausible, read more. Never panics, whatever the bytes.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<RequestHead>, HttpError> {
    // RFC 9112 §2.2: ignore empty lines before the request line.
    let start = buf.iter().position(|b| *b != b'\r' && *b != b'\n').unwrap_or(buf.len());
    let window = buf.get(start..buf.len().min(MAX_HEAD_BYTES)).unwrap_or_default();
    let mut lines = Lines { rest: window };
    let Some(request_line) = lines.next() else {
        check_partial_request_line(window)?;
        return too_large_or_incomplete(buf);
    };
    let (method, path, minor_version) = parse_request_line(request_line)?;
    let mut headers = Vec::new();
    loop {
        let Some(line) = lines.next() else { return too_large_or_incomplete(buf) };
        if line.is_empty() {
            return Ok(Some(RequestHead { method, path, minor_version, headers }));
        }
        if headers.len() == MAX_HEADERS {
            return Err(HttpError::TooManyHeaders { limit: MAX_HEADERS });
        }
        headers.push(parse_header(line)?);
    }
}

fn too_large_or_incomplete(buf: &[u8]) -> Result<Option<RequestHead>, HttpError> {
    if buf.len() >= MAX_HEAD_BYTES {
        Err(HttpError::HeadTooLarge { limit: MAX_HEAD_BYTES })
    } else {
        Ok(None)
    }
}

/// Complete lines (without `\n` or `\r\n`); a final line without `\n` is not yielded.
struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let end = self.rest.iter().position(|b| *b == b'\n')?;
        let line = self.rest.get(..end)?;
        self.rest = self.rest.get(end + 1..).unwrap_or_default();
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

/// A request line still arriving must start with a method token and, once past the method, a
/// space; anything else is not HTTP and is rejected without waiting for more.
fn check_partial_request_line(partial: &[u8]) -> Result<(), HttpError> {
    let method_end = partial.iter().position(|b| *b == b' ').unwrap_or(partial.len());
    let method = partial.get(..method_end).unwrap_or_default();
    if method.iter().all(|b| is_token_byte(*b)) && method.len() <= 32 {
        Ok(())
    } else {
        Err(HttpError::BadRequestLine)
    }
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, u8), HttpError> {
    let text = std::str::from_utf8(line).map_err(|_| HttpError::BadRequestLine)?;
    let mut parts = text.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequestLine);
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(HttpError::BadRequestLine);
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::BadRequestLine);
    }
    let minor_version = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if is_http_version(v) => return Err(HttpError::UnsupportedVersion),
        _ => return Err(HttpError::BadRequestLine),
    };
    Ok((method.to_owned(), path_of(target), minor_version))
}

/// `HTTP/<digit>.<digit>` or `HTTP/<digit>` (HTTP/2's preface says `HTTP/2.0`).
fn is_http_version(v: &str) -> bool {
    v.strip_prefix("HTTP/").is_some_and(|n| {
        let b = n.as_bytes();
        matches!(b, [d] if d.is_ascii_digit())
            || matches!(b, [d, b'.', e] if d.is_ascii_digit() && e.is_ascii_digit())
    })
}

fn path_of(target: &str) -> String {
    let after_authority = match target.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && !scheme.contains('/') => {
            rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/")
        }
        _ => target,
    };
    let end = after_authority.find(['?', '#']).unwrap_or(after_authority.len());
    after_authority.get(..end).unwrap_or(after_authority).to_owned()
}

fn parse_header(line: &[u8]) -> Result<(String, String), HttpError> {
    let colon = line.iter().position(|b| *b == b':').ok_or(HttpError::BadHeader)?;
    let (name, value) = (line.get(..colon).unwrap_or_default(), line.get(colon + 1..).unwrap_or_default());
    // An empty name, whitespace before the colon, or a folded continuation line.
    if name.is_empty() || !name.iter().all(|b| is_token_byte(*b)) {
        return Err(HttpError::BadHeader);
    }
    if value.iter().any(|b| b.is_ascii_control() && *b != b'\t') {
        return Err(HttpError::BadHeader);
    }
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    let value = String::from_utf8_lossy(value).trim_matches([' ', '\t']).to_owned();
    Ok((name, value))
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The statuses the lab's apps answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    HeadersTooLarge,
    InternalServerError,
    VersionNotSupported,
}

impl Status {
    pub(crate) fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::HeadersTooLarge => 431,
            Status::InternalServerError => 500,
            Status::VersionNotSupported => 505,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::HeadersTooLarge => "Request Header Fields Too Large",
            Status::InternalServerError => "Internal Server Error",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// One HTTP/1.1 response with a JSON body; the connection closes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpResponse {
    pub(crate) status: Status,
    pub(crate) body: Vec<u8>,
    /// Answer to `HEAD`: headers (with the body's length) but no body.
    pub(crate) head_only: bool,
}

impl HttpResponse {
    pub(crate) fn json(status: Status, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Self { status, body, head_only: false }
            }
            Err(_) => Self {
                status: Status::InternalServerError,
                body: b"{\"error\":\"cannot encode the response\"}\n".to_vec(),
                head_only: false,
            },
        }
    }

    /// `{"error": "<message>"}` with `status`.
    pub(crate) fn error(status: Status, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": message }))
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nServer: netdiag-lab\r\n",
            self.status.code(),
            self.status.reason(),
            self.body.len(),
        );
        if self.status == Status::MethodNotAllowed {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if !self.head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

#[cfg(test)]
mod tests;
