//! `POST /api/v1/probe`'s JSON body as the collector parses it: `from`, `to`, `http_path`,
//! `timeout_ms`. Properties: no panic, and every refusal is a short message naming what is
//! wrong (it quotes excerpts, not the caller's whole values).

#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_collector::api::fuzz;

const MAX_ERROR_LEN: usize = 1024;

fuzz_target!(|data: &[u8]| {
    match fuzz::probe_body(data) {
        Ok(request) => {
            // What the API echoes back in its answer.
            let _ = (request.from.to_string(), request.to.to_string());
        }
        Err(message) => {
            assert!(
                message.len() < MAX_ERROR_LEN,
                "{} byte error: {}",
                message.len(),
                netdiag_fuzz::head(&message)
            );
        }
    }
});
