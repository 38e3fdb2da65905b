//! Table tests for the HTTP/1.x head parser and the response writer, and a property that no
//! input makes the parser panic.

use proptest::prelude::*;

use super::*;

fn head(method: &str, path: &str, minor: u8, headers: &[(&str, &str)]) -> RequestHead {
    RequestHead {
        method: method.to_owned(),
        path: path.to_owned(),
        minor_version: minor,
        headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
    }
}

#[test]
fn parses_complete_heads() {
    let cases: &[(&[u8], RequestHead)] = &[
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", head("GET", "/", 1, &[("host", "x")])),
        (b"GET /healthz HTTP/1.0\r\n\r\n", head("GET", "/healthz", 0, &[])),
        (b"GET /a?b=c#d HTTP/1.1\n\n", head("GET", "/a", 1, &[])),
        (b"\r\n\r\nHEAD / HTTP/1.1\r\n\r\n", head("HEAD", "/", 1, &[])),
        (
            b"GET http://demo-pd:2379/pd/api/v1/members HTTP/1.1\r\n\r\n",
            head("GET", "/pd/api/v1/members", 1, &[]),
        ),
        (b"GET http://demo-pd HTTP/1.1\r\n\r\n", head("GET", "/", 1, &[])),
        (b"OPTIONS * HTTP/1.1\r\n\r\n", head("OPTIONS", "*", 1, &[])),
        (
            b"GET / HTTP/1.1\r\nUser-Agent:  curl/8 \t\r\nX-Empty:\r\n\r\nbody ignored",
            head("GET", "/", 1, &[("user-agent", "curl/8"), ("x-empty", "")]),
        ),
    ];
    for (input, expected) in cases {
        let got = parse_head(input);
        assert_eq!(got, Ok(Some(expected.clone())), "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn waits_for_more_while_the_head_is_plausible() {
    for input in [
        &b""[..],
        b"G",
        b"GET",
        b"GET /pd/api",
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"\r\n",
    ] {
        assert_eq!(parse_head(input), Ok(None), "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn rejects_what_can_never_be_http_1() {
    let cases: &[(&[u8], HttpError)] = &[
        (b"\x16\x03\x01\x02\x00", HttpError::BadRequestLine), // a TLS ClientHello
        (b"\x00", HttpError::BadRequestLine),
        (b"GET\t/", HttpError::BadRequestLine),
        (b"hello\n", HttpError::BadRequestLine),
        (b"GET / HTTP/1.1 extra\r\n", HttpError::BadRequestLine),
        (b"GET  / HTTP/1.1\r\n", HttpError::BadRequestLine),
        (b"GET / FTP/1.1\r\n", HttpError::BadRequestLine),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", HttpError::UnsupportedVersion),
        (b"GET / HTTP/3\r\n", HttpError::UnsupportedVersion),
        (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", HttpError::BadHeader),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", HttpError::BadHeader),
        (b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", HttpError::BadHeader),
        (b"GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", HttpError::BadHeader),
        (b"GET /\xff HTTP/1.1\r\n\r\n", HttpError::BadRequestLine),
    ];
    for (input, expected) in cases {
        assert_eq!(parse_head(input), Err(expected.clone()), "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn enforces_size_and_header_caps() {
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
    assert_eq!(parse_head(&long), Err(HttpError::HeadTooLarge { limit: MAX_HEAD_BYTES }));

    let newlines = vec![b'\n'; MAX_HEAD_BYTES + 1];
    assert_eq!(parse_head(&newlines), Err(HttpError::HeadTooLarge { limit: MAX_HEAD_BYTES }));

    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend(format!("x-{i}: y\r\n").bytes());
    }
    many.extend(b"\r\n");
    assert_eq!(parse_head(&many), Err(HttpError::TooManyHeaders { limit: MAX_HEADERS }));
    assert_eq!(HttpError::TooManyHeaders { limit: 1 }.status().code(), 431);
}

#[test]
fn responses_close_the_connection_and_state_their_length() {
    let r = HttpResponse::json(Status::Ok, &serde_json::json!({"a": 1}));
    let text = String::from_utf8(r.to_bytes()).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    assert!(text.contains("\r\nContent-Length: 8\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n{\"a\":1}\n"), "{text}");

    let head_only = HttpResponse { head_only: true, ..r };
    let text = String::from_utf8(head_only.to_bytes()).unwrap();
    assert!(
        text.ends_with("Content-Length: 8\r\nConnection: close\r\nServer: netdiag-lab\r\n\r\n"),
        "{text}"
    );

    let text = String::from_utf8(HttpResponse::error(Status::MethodNotAllowed, "no").to_bytes()).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && text.contains("\r\nAllow: GET, HEAD\r\n"),
        "{text}"
    );
}

proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_head(&bytes);
    }

    #[test]
    fn every_prefix_of_a_valid_head_is_incomplete(
        path in "/[a-z0-9/._-]{0,40}",
        headers in proptest::collection::vec(("[a-z][a-z0-9-]{0,15}", "[ -~]{0,30}"), 0..5),
    ) {
        let mut text = format!("GET {path} HTTP/1.1\r\n");
        for (n, v) in &headers {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str("\r\n");
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            prop_assert_eq!(parse_head(&bytes[..cut]), Ok(None), "cut at {}", cut);
        }
        let parsed = parse_head(bytes);
        prop_assert!(matches!(&parsed, Ok(Some(h)) if h.path == path && h.headers.len() == headers.len()), "{:?}", parsed);
    }
}
