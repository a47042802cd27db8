//! The grid v1 wire format (PROTOCOL.md §3): plain data and pure encode/decode functions, no
//! I/O and no async. Everything a peer sends passes through here first; every malformed input
//! is a [`DecodeError`], never a panic.
//!
//! ```
//! use bytes::Bytes;
//! use nodegrid::wire::{Flags, Message, Op};
//!
//! let mut m = Message::new(Op::Request, 1);
//! m.deadline_ms = 60_000;
//! m.handler = 78;
//! m.flags = Flags::CRC | Flags::EOF;
//! m.payload = Bytes::from_static(b"hello");
//! let wire = m.to_bytes().unwrap();
//! assert_eq!(hex::encode(&wire), "970100cdea604e0e03c40568656c6c6f81f402a0");
//! assert_eq!(Message::decode(&wire).unwrap(), m);
//! ```

mod crc;
mod dial;
mod error;
mod flags;
mod handler_names;
mod ids;
mod merged;
mod message;
pub(crate) mod msgpack;
mod op;
mod payload;
mod subroute;
mod time;

pub use crc::{crc32_of, CRC_LEN};
pub use dial::should_dial;
pub use error::{DecodeError, EncodeError};
pub use flags::Flags;
pub use handler_names::handler_name;
pub(crate) use handler_names::{invalid_handler_text, is_invalid_handler_text};
pub use ids::{HandlerId, MuxId};
pub use merged::{
    encode_merged, split_frame, FrameMessages, MergedBuilder, MERGED_HEADER_MAX_LEN,
    MERGE_MAX_BYTES, MERGE_MAX_MESSAGES,
};
pub use message::{
    parse_too_large_text, too_large_text, Limits, Message, MessageHeader, DEFAULT_MAX_MESSAGE_SIZE,
    FRAME_SLACK, MAX_MESSAGE_OVERHEAD, MESSAGE_HEADER_MAX_LEN,
};
pub use op::Op;
pub use payload::{
    ConnectRequest, ConnectResponse, InstanceId, MuxConnectErrorPayload, NodegridExt, PingPayload,
    PongPayload, MAX_EXT_HOSTS, NODEGRID_EXT_VERSION,
};
pub use subroute::{join_subroute, SubrouteId, SUBROUTE_LEN};
pub use time::{go_duration_string, GridTime};
