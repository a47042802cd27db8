//! The session runtime: one live WebSocket session with a peer, after the handshake.
//!
//! | file | what it holds |
//! |---|---|
//! | `state.rs` | the session's state: call tables of both directions, outbound queue, its end |
//! | `reader.rs`, `writer.rs`, `timers.rs` | the three tasks that drive a session |
//! | `dispatch.rs` | every received message to its handler, by op and mux ID |
//! | `single.rs` | single requests, both roles |
//! | `stream/` | streams, both roles |
//! | `keepalive.rs` | connection pings and pongs |
//! | `outq.rs` | the outbound queue and its lanes |
//! | `oversized.rs` | messages over `max_message_size`: the call fails, the session stays |
//! | `handlers.rs` | the handler API the session runs, and the lookup trait it calls |
//! | `wake.rs` | waking waiting tasks, held while a frame is handled |
//!
//! The session knows nothing of the connection or manager above it: it reads the connection's
//! [`Link`] (data it owns) and reports its start and end through [`SessionOwner`].

pub(crate) mod dispatch;
pub(crate) mod handlers;
pub(crate) mod keepalive;
pub(crate) mod outq;
pub(crate) mod oversized;
pub(crate) mod reader;
pub(crate) mod single;
pub(crate) mod state;
pub(crate) mod stream;
pub(crate) mod timers;
pub(crate) mod wake;
pub(crate) mod writer;

pub use self::handlers::{Request, SingleHandler};
pub(crate) use self::state::{Link, Session, SessionOwner};
pub use self::stream::server::{StreamContext, StreamHandler, StreamInput, StreamOutput};

use crate::transport::IoHalves;
use bytes::BytesMut;
use std::sync::Arc;

/// Starts a handshaken session: installs it as its connection's live session, then spawns
/// its writer, timers and reader. `leftover` holds bytes already read past the handshake.
pub(crate) fn start(sess: &Arc<Session>, io: IoHalves, leftover: BytesMut) {
    sess.install();
    tokio::spawn(writer::writer_task(sess.clone(), io.write));
    tokio::spawn(timers::housekeeping(sess.clone()));
    tokio::spawn(reader::reader_task(sess.clone(), io.read, leftover));
}
