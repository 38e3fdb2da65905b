//! API query strings as the collector decodes them: axum's `Query` over the request URI, then
//! the strict parameter checks of `/api/v1/matrix` and of the endpoints without parameters.
//! Properties: no panic, and every refusal is a short JSON answer naming the parameter.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_collector::api::fuzz;

const MAX_ERROR_LEN: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let Some(answers) = fuzz::query(query) else { return };
    for answer in answers.into_iter().flatten() {
        let json = serde_json::to_string(&answer).unwrap_or_default();
        assert!(json.len() < MAX_ERROR_LEN, "{} byte answer: {}", json.len(), netdiag_fuzz::head(&json));
    }
});
