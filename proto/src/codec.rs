//! The gRPC codec of every netdiag service: prost's encoder, and a decoder that reads a message
//! from the contiguous bytes tonic has already gathered rather than through its buffer type
//! (prost then advances a slice per field instead of a `BytesMut`: a third less decoding work
//! for a result batch). The wire format is protobuf as usual. (tonic offers no way to build its
//! buffers outside itself: every gRPC test, e.g. the agent's uplink tests, exercises this.)
//! Agent messages are [`crate::prescan`]ned first: their repeated fields are counted on the
//! wire, so a message built to decode into gigabytes is refused before it allocates.

use std::marker::PhantomData;

use prost::Message;
use prost::bytes::Buf;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// `tonic_prost::ProstCodec` with [`SliceDecoder`].
#[derive(Debug, Clone, Copy)]
pub struct SliceCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for SliceCodec<T, U> {
    fn default() -> Self {
        Self { _types: PhantomData }
    }
}

impl<T, U> Codec for SliceCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = SliceDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SliceDecoder { _type: PhantomData }
    }
}

/// Decodes one `U` per gRPC message, from a slice when the message is contiguous (always, with
/// tonic's buffer), through the buffer otherwise.
#[derive(Debug, Clone, Copy)]
pub struct SliceDecoder<U> {
    _type: PhantomData<U>,
}

impl<U: Message + Default + 'static> Decoder for SliceDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        let decoded = match buf.chunk().get(..len) {
            Some(bytes) => {
                if std::any::TypeId::of::<U>() == std::any::TypeId::of::<crate::v1::AgentMessage>() {
                    crate::prescan::agent_message(bytes).map_err(|e| {
                        Status::resource_exhausted(format!("agent message refused before decoding: {e}"))
                    })?;
                }
                let item = U::decode(bytes);
                buf.advance(len);
                item
            }
            None if std::any::TypeId::of::<U>() == std::any::TypeId::of::<crate::v1::AgentMessage>() => {
                let bytes = buf.copy_to_bytes(len);
                crate::prescan::agent_message(&bytes).map_err(|e| {
                    Status::resource_exhausted(format!("agent message refused before decoding: {e}"))
                })?;
                U::decode(bytes)
            }
            None => U::decode(buf),
        };
        // As tonic-prost: a message that does not parse is an internal error.
        decoded.map(Some).map_err(|e| Status::internal(e.to_string()))
    }
}
