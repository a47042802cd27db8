//! Built-in methods that every node serves, used to measure the REST path:
//!
//! * [`SINK_METHOD`] reads the whole request body, chunk by chunk, and answers its length in
//!   decimal;
//! * [`SOURCE_METHOD`] with `?size=N` streams `N` bytes back.
//!
//! Neither holds more than one chunk at a time: `source` hands out slices of one shared 1 MiB
//! buffer, so a multi-GiB answer allocates nothing per chunk.

use crate::handler::{HandlerError, RestReply, RestRequest};
use bytes::Bytes;
use std::convert::Infallible;
use std::sync::OnceLock;

/// Name of the built-in method that consumes a body and answers its length.
pub const SINK_METHOD: &str = "sink";
/// Name of the built-in method that streams `size` bytes.
pub const SOURCE_METHOD: &str = "source";
/// Query parameter of [`SOURCE_METHOD`]: how many bytes to send.
pub const SOURCE_SIZE_PARAM: &str = "size";
/// Size of the chunks `source` sends: 1 MiB, large enough that per-chunk costs vanish next to
/// copying the bytes, small enough to keep buffering low.
pub const SOURCE_CHUNK: usize = 1 << 20;

fn source_chunk() -> Bytes {
    static CHUNK: OnceLock<Bytes> = OnceLock::new();
    CHUNK
        .get_or_init(|| {
            Bytes::from(
                (0..SOURCE_CHUNK)
                    .map(|i| (i % 251) as u8)
                    .collect::<Vec<u8>>(),
            )
        })
        .clone()
}

/// The `sink` handler: reads the request body to its end and answers its length in bytes as
/// decimal text.
pub async fn sink(mut req: RestRequest) -> Result<RestReply, HandlerError> {
    let mut total: u64 = 0;
    while let Some(chunk) = req.body_mut().chunk().await {
        let chunk = chunk.map_err(|e| HandlerError::bad_request(e.to_string()))?;
        total += chunk.len() as u64;
    }
    Ok(RestReply::bytes(total.to_string()))
}

/// The `source` handler: streams `size` bytes (query parameter, decimal) in chunks of
/// [`SOURCE_CHUNK`]. 400 if `size` is missing or not a number.
pub async fn source(req: RestRequest) -> Result<RestReply, HandlerError> {
    let size: u64 = req
        .query(SOURCE_SIZE_PARAM)
        .ok_or_else(|| HandlerError::bad_request("missing query parameter \"size\""))?
        .parse()
        .map_err(|_| {
            HandlerError::bad_request("query parameter \"size\" must be a decimal byte count")
        })?;
    Ok(RestReply::stream(repeat_bytes(size)))
}

/// A stream of `size` bytes in chunks of at most [`SOURCE_CHUNK`], sliced from one shared
/// buffer.
pub fn repeat_bytes(
    size: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures_util::stream::unfold(size, |left| async move {
        if left == 0 {
            return None;
        }
        let n = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(SOURCE_CHUNK);
        Some((Ok(source_chunk().slice(..n)), left - n as u64))
    })
}
