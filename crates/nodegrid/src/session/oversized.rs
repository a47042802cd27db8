//! Messages from the peer larger than this node's `max_message_size`: the reader skips them
//! without reading them whole (`transport::ws` keeps only their header), and the call each
//! belongs to fails instead of the session. A request or stream open is answered with a
//! MuxConnectError naming the size and the limit, a stream's input item ends that stream with
//! the same text, and an answer to a call of ours (a response or a stream's output) fails that
//! call locally with `Error::TooLarge`. The session goes on.

use crate::error::Error;
use crate::session::state::{Outgoing, Session};
use crate::session::stream::callee_ops;
use crate::stats::ConnCounters;
use crate::wire::{too_large_text, MessageHeader, Op};
use std::sync::Arc;
use std::time::Duration;

/// At most one WARN per peer per this interval.
pub(crate) const WARN_INTERVAL: Duration = Duration::from_secs(30);

/// Handles a message of `size` bytes over the limit, of which only the header was read.
pub(crate) fn received(sess: &Arc<Session>, h: MessageHeader, size: u64) {
    let limit = sess.limits().max_message_size;
    let c = sess.counters();
    ConnCounters::add(&c.oversized_in, 1);
    if c.oversize_warn_due(WARN_INTERVAL) {
        tracing::warn!(
            remote = %sess.link.remote,
            size,
            limit,
            op = %h.op,
            "skipped a grid message of {size} bytes from {}: over this node's max_message_size \
             of {limit} bytes, so its call failed (the connection stays up); raise \
             max_message_size on this node to at least {size} bytes, or send smaller payloads",
            sess.link.remote
        );
    }
    let text = too_large_text(size, limit);
    match h.op {
        Op::Request | Op::ConnectMux => sess.reply_connect_error(&h.to_message(), &text),
        Op::MuxClientMsg => callee_ops::forget_incoming(sess, h.mux_id, Some(text)),
        Op::Response | Op::MuxServerMsg | Op::MuxConnectError | Op::DisconnectClientMux => {
            let e = Error::TooLarge {
                size: size as usize,
                limit,
            };
            if let Some(s) = sess.outgoing_stream(h.mux_id) {
                // Tells the callee to stop sending.
                sess.abort_stream(&s, e);
            } else if let Some(Outgoing::Single(tx, _)) = sess.outgoing.remove(h.mux_id) {
                let _ = tx.send(Err(e));
            }
        }
        op => {
            // No call to fail: an oversized control message is only counted.
            ConnCounters::add(&c.protocol_errors, 1);
            tracing::debug!(remote = %sess.link.remote, %op, size, "oversized message ignored");
        }
    }
}
