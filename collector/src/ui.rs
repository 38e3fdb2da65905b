//! The web UI: one page (`ui/index.html`, `ui/app.js`, `ui/style.css`) compiled into the binary
//! with `include_str!`, served at `/` and under `/ui/`. Vanilla JavaScript with no build step;
//! it fetches only the collector's own `/api/v1/matrix` and `/api/v1/diagnosis` every 2 s, and
//! the Content-Security-Policy sent with it forbids anything else (no CDN, no inline script).
//!
//! Stable hooks for browser tests: `#matrix` (with `data-loaded="true"` once the first answer
//! is drawn), cells `[data-testid=cell]` carrying `data-source`, `data-destination`,
//! `data-kind` and `data-status`, `#cell-detail` (the clicked cell's numbers, fields as
//! `[data-field=…]`), `#findings [data-testid=finding][data-id=…]`, and the controls
//! `#level`, `#kind`, `#namespace`, `#live`. The page also takes `?level=node&kind=tcp&ns=tidb`
//! so a test can open it in a given view.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The page.
pub const INDEX_HTML: &str = include_str!("ui/index.html");
/// Its script.
pub const APP_JS: &str = include_str!("ui/app.js");
/// Its style sheet.
pub const STYLE_CSS: &str = include_str!("ui/style.css");

/// Only the collector itself: the page cannot load or send anything elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The assets change only with the binary; revalidating is cheap and avoids a stale
            // script after an upgrade.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// The UI's routes, for any router state.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/index.html", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/style.css", get(style_css))
}
