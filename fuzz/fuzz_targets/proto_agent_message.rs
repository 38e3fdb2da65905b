//! The agent session's client messages as the collector reads them: protobuf bytes decoded as
//! `AgentMessage` (what the session codec does with one contiguous gRPC message: Hello, result
//! batches plain and tabled, inspections, run progress), then converted to domain types.
//! Properties: no panic, no unbounded memory (the allocation cap), errors short enough to log,
//! and whatever converts survives model → wire → model unchanged, through either batch form.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netdiag_model::{AgentMessage, ResultBatch};
use netdiag_proto::convert::tabled_result_batch;
use netdiag_proto::v1;
use prost::Message;

/// Errors quote excerpts of hostile values, never the values themselves.
const MAX_ERROR_LEN: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let Ok(wire) = v1::AgentMessage::decode(data) else { return };
    let message = match AgentMessage::try_from(wire) {
        Ok(m) => m,
        Err(e) => {
            let text = e.to_string();
            assert!(text.len() < MAX_ERROR_LEN, "{} byte error: {}", text.len(), netdiag_fuzz::head(&text));
            return;
        }
    };
    let again = AgentMessage::try_from(v1::AgentMessage::from(message.clone()));
    assert_eq!(again.as_ref(), Ok(&message), "model → wire → model changed the message");
    if let AgentMessage::Results(batch) = &message {
        let tabled = ResultBatch::try_from(tabled_result_batch(batch));
        assert_eq!(tabled.as_ref(), Ok(batch), "the tabled form converts to another batch");
    }
});
