//! Entry points for `fuzz/` (cargo-fuzz): the API's two parsers of untrusted input, reached the
//! way the router reaches them but without a server. Not part of the collector's API.

use axum::extract::Query;
use axum::http::Uri;
use netdiag_model::run::ProbeRunRequest;
use netdiag_model::text::excerpt;

use super::params::{self, ParamError};
use super::v1::ErrorResponse;

/// `POST /api/v1/probe`'s body parser; the error is the message the API would answer with.
pub fn probe_body(body: &[u8]) -> Result<ProbeRunRequest, String> {
    super::probe::parse(body).map_err(|e| e.message)
}

/// Decodes `query` as the query string of `/api/v1/matrix` the way the router does (axum's
/// `Query` over the request URI, then [`params`]), for the matrix and for an endpoint without
/// parameters. None when `query` cannot be part of a URI at all (hyper rejects such a request
/// before routing); otherwise each endpoint's error answer, if any.
pub fn query(query: &str) -> Option<[Option<ErrorResponse>; 2]> {
    let uri: Uri = format!("/api/v1/matrix?{query}").parse().ok()?;
    // As routes.rs's `pairs`: a string that does not decode is a `Malformed` answer.
    let pairs = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map(|Query(pairs)| pairs)
        .map_err(|e| ParamError::Malformed(excerpt(&e.body_text())));
    let answer = |r: Result<(), ParamError>| r.err().map(|e| e.to_response());
    let matrix = pairs.clone().and_then(|p| params::matrix_query(&p).map(drop));
    let none = pairs.and_then(|p| params::no_params(&p));
    Some([answer(matrix), answer(none)])
}
