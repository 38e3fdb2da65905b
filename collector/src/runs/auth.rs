//! Who may start an on-demand run. With a token configured, the caller must present it as
//! `Authorization: Bearer <token>` (HTTP) or `authorization` metadata (gRPC), or in
//! [`TOKEN_HEADER`] (`X-Netdiag-Token: <token>`): through the Kubernetes API server's service
//! proxy (`kubectl netdiag`) `Authorization` carries the user's credentials to the API server,
//! which consumes it, so the collector's token travels in a header of its own. Without one, runs
//! are accepted only from loopback callers: a collector reachable from the network does not
//! take unauthenticated runs, and the refusal says how to configure a token.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// The collector's API token (never printed: `Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(…)")
    }
}

/// The environment variable holding the API token when no token file is given.
pub const TOKEN_ENV: &str = "NETDIAG_API_TOKEN";

/// A token that cannot be used, and where it came from (the flag or the environment variable).
#[derive(Debug, thiserror::Error)]
#[error("{origin}")]
pub struct TokenSourceError {
    pub origin: &'static str,
    #[source]
    pub source: TokenError,
}

/// A token that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the API token is empty: put a secret in it (e.g. `openssl rand -hex 32`)")]
    Empty,
    #[error("the API token contains whitespace or control characters: use a plain secret such as hex")]
    BadChar,
    #[error("cannot read the API token file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl ApiToken {
    /// A token from text; surrounding whitespace (a file's trailing newline) is ignored.
    pub fn new(text: &str) -> Result<Self, TokenError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(TokenError::Empty);
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenError::BadChar);
        }
        Ok(ApiToken(t.to_owned()))
    }

    /// Reads a token file.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenError::Read { path: path.display().to_string(), source })?;
        Self::new(&text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The token every binary reads the same way: the file `--api-token-file` names when given,
    /// else [`TOKEN_ENV`], else none.
    pub fn from_file_or_env(file: Option<&Path>) -> Result<Option<Self>, TokenSourceError> {
        Self::from_file_or(file, std::env::var(TOKEN_ENV).ok())
    }

    fn from_file_or(file: Option<&Path>, env: Option<String>) -> Result<Option<Self>, TokenSourceError> {
        match (file, env) {
            (Some(path), _) => Self::from_file(path)
                .map(Some)
                .map_err(|source| TokenSourceError { origin: "--api-token-file", source }),
            (None, Some(text)) => {
                Self::new(&text).map(Some).map_err(|source| TokenSourceError { origin: TOKEN_ENV, source })
            }
            (None, None) => Ok(None),
        }
    }

    /// Compares in time independent of where the first difference is.
    fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

/// What the caller presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    Bearer(String),
    /// An `Authorization` value that is not `Bearer <token>`.
    Malformed,
}

/// The header (HTTP) or metadata key (gRPC) that may carry the API token instead of
/// `Authorization: Bearer`.
pub const TOKEN_HEADER: &str = "x-netdiag-token";

impl Credentials {
    /// Reads the `Authorization` value and the [`TOKEN_HEADER`] value of a request: a bearer
    /// token in `Authorization` wins; otherwise the token header's value is the token;
    /// otherwise what `Authorization` holds (absent: `None`).
    pub fn from_headers(authorization: Option<&[u8]>, token_header: Option<&[u8]>) -> Self {
        let from_authorization = Self::from_header(authorization);
        if matches!(from_authorization, Credentials::Bearer(_)) {
            return from_authorization;
        }
        match token_header.map(std::str::from_utf8) {
            Some(Ok(t)) if !t.trim().is_empty() => Credentials::Bearer(t.trim().to_owned()),
            Some(_) => Credentials::Malformed,
            None => from_authorization,
        }
    }

    /// Reads an `Authorization` header value (absent: `None`).
    pub fn from_header(value: Option<&[u8]>) -> Self {
        let Some(value) = value else { return Credentials::None };
        let Ok(text) = std::str::from_utf8(value) else { return Credentials::Malformed };
        match text.trim().split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                Credentials::Bearer(token.trim().to_owned())
            }
            _ => Credentials::Malformed,
        }
    }
}

/// Why a caller may not start a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "on-demand runs need the collector's API token: send `Authorization: Bearer <token>` \
         or `X-Netdiag-Token: <token>` (netdiag probe reads it from --api-token-file or \
         NETDIAG_API_TOKEN; `netdiag demo` prints its token when it starts)"
    )]
    Missing,
    #[error("the Authorization header is not `Bearer <token>` (or X-Netdiag-Token is empty)")]
    Malformed,
    #[error("the API token does not match the collector's: check NETDIAG_API_TOKEN or --api-token-file")]
    Wrong,
    #[error(
        "this collector has no API token configured, so it takes on-demand runs only from loopback \
         callers, and {caller} is not one: set NETDIAG_API_TOKEN or --api-token-file on the \
         collector and pass the same token with the request"
    )]
    LoopbackOnly { caller: String },
}

impl AuthError {
    /// 401 (present the right token) rather than 403 (no token would help from here).
    pub fn is_unauthenticated(&self) -> bool {
        !matches!(self, AuthError::LoopbackOnly { .. })
    }
}

/// Decides whether `caller` (its address when known) with `credentials` may start a run.
pub fn authorize(
    token: Option<&ApiToken>,
    caller: Option<IpAddr>,
    credentials: &Credentials,
) -> Result<(), AuthError> {
    match token {
        Some(token) => match credentials {
            Credentials::None => Err(AuthError::Missing),
            Credentials::Malformed => Err(AuthError::Malformed),
            Credentials::Bearer(t) if token.matches(t) => Ok(()),
            Credentials::Bearer(_) => Err(AuthError::Wrong),
        },
        None => match caller {
            Some(ip) if ip.to_canonical().is_loopback() => Ok(()),
            Some(ip) => Err(AuthError::LoopbackOnly { caller: ip.to_string() }),
            None => Err(AuthError::LoopbackOnly { caller: "a caller of unknown address".to_owned() }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_wins_over_the_environment_and_errors_say_which() {
        let dir = std::env::temp_dir().join(format!("netdiag-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let got = ApiToken::from_file_or(Some(&file), Some("from-env".into())).unwrap().unwrap();
        assert_eq!(got.expose(), "from-file");
        assert_eq!(
            ApiToken::from_file_or(None, Some("from-env".into())).unwrap().unwrap().expose(),
            "from-env"
        );
        assert!(ApiToken::from_file_or(None, None).unwrap().is_none());
        // `{origin}: {source}`, as the binaries print the chain.
        let chain = |e: TokenSourceError| format!("{e}: {}", e.source);
        let env_err = ApiToken::from_file_or(None, Some(" ".into())).unwrap_err();
        assert_eq!(
            chain(env_err),
            "NETDIAG_API_TOKEN: the API token is empty: put a secret in it (e.g. `openssl rand -hex 32`)"
        );
        let missing = ApiToken::from_file_or(Some(&dir.join("absent")), None).unwrap_err();
        assert!(chain(missing).starts_with("--api-token-file: cannot read the API token file "));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn bearer(s: &str) -> Credentials {
        Credentials::Bearer(s.into())
    }

    #[test]
    fn with_a_token_the_token_decides() {
        let token = ApiToken::new("s3cret\n").unwrap();
        let t = Some(&token);
        assert_eq!(authorize(t, ip("10.0.0.9"), &bearer("s3cret")), Ok(()));
        assert_eq!(authorize(t, ip("127.0.0.1"), &Credentials::None), Err(AuthError::Missing));
        assert_eq!(authorize(t, ip("127.0.0.1"), &bearer("s3cre")), Err(AuthError::Wrong));
        assert_eq!(authorize(t, ip("127.0.0.1"), &bearer("s3cret2")), Err(AuthError::Wrong));
        assert_eq!(authorize(t, None, &Credentials::Malformed), Err(AuthError::Malformed));
        assert!(AuthError::Wrong.is_unauthenticated());
    }

    #[test]
    fn without_a_token_only_loopback() {
        assert_eq!(authorize(None, ip("127.0.0.1"), &Credentials::None), Ok(()));
        assert_eq!(authorize(None, ip("::1"), &Credentials::None), Ok(()));
        assert_eq!(authorize(None, ip("::ffff:127.0.0.1"), &Credentials::None), Ok(()));
        let err = authorize(None, ip("10.0.0.9"), &bearer("anything")).unwrap_err();
        assert!(!err.is_unauthenticated());
        let text = err.to_string();
        assert!(text.contains("only from loopback") && text.contains("10.0.0.9"), "{text}");
        assert!(text.contains("NETDIAG_API_TOKEN"), "{text}");
        assert!(authorize(None, None, &Credentials::None).is_err(), "unknown callers are not loopback");
    }

    #[test]
    fn headers_parse() {
        assert_eq!(Credentials::from_header(None), Credentials::None);
        assert_eq!(Credentials::from_header(Some(b"Bearer abc")), bearer("abc"));
        assert_eq!(Credentials::from_header(Some(b"bearer  abc ")), bearer("abc"));
        assert_eq!(Credentials::from_header(Some(b"Basic abc")), Credentials::Malformed);
        assert_eq!(Credentials::from_header(Some(b"Bearer ")), Credentials::Malformed);
        assert_eq!(Credentials::from_header(Some(&[0xff, 0xfe])), Credentials::Malformed);
    }

    #[test]
    fn tokens_are_checked_and_never_printed() {
        assert!(matches!(ApiToken::new(" \n"), Err(TokenError::Empty)));
        assert!(matches!(ApiToken::new("a b"), Err(TokenError::BadChar)));
        let t = ApiToken::new("hunter2").unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
        let err = ApiToken::from_file(Path::new("/nonexistent/token")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/token"), "{err}");
    }

    #[test]
    fn the_token_header_carries_the_token_when_authorization_does_not() {
        let both = |a: Option<&str>, t: Option<&str>| {
            Credentials::from_headers(a.map(str::as_bytes), t.map(str::as_bytes))
        };
        assert_eq!(both(None, Some(" s3cret ")), bearer("s3cret"));
        assert_eq!(both(Some("Bearer a"), Some("b")), bearer("a"), "a bearer Authorization wins");
        assert_eq!(both(Some("Basic eDp5"), Some("b")), bearer("b"), "another scheme is the API server's");
        assert_eq!(both(None, Some(" ")), Credentials::Malformed);
        assert_eq!(both(Some("Basic eDp5"), None), Credentials::Malformed);
        assert_eq!(both(None, None), Credentials::None);
        let token = ApiToken::new("s3cret").unwrap();
        assert!(authorize(Some(&token), ip("10.0.0.1"), &both(None, Some("s3cret"))).is_ok());
        assert_eq!(authorize(Some(&token), None, &both(None, Some("nope"))), Err(AuthError::Wrong));
    }
}
