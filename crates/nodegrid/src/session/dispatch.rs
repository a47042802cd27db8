//! Dispatch of every received message by op and mux ID to the code that handles it, for both
//! roles (PROTOCOL.md §3.3).

use crate::error::{Error, RemoteError};
use crate::session::keepalive;
use crate::session::single;
use crate::session::state::{Outgoing, Session};
use crate::session::stream::{callee_ops, caller_ops};
use crate::wire::{Flags, Message, MuxConnectErrorPayload, Op};
use std::sync::Arc;

/// Hands one received message to its handler.
pub(crate) fn dispatch(sess: &Arc<Session>, m: Message) {
    match m.op {
        Op::Request => single::callee_request(sess, m),
        Op::Response => single::caller_response(sess, m),
        Op::MuxConnectError | Op::DisconnectClientMux => caller_failed(sess, m),
        Op::Ping if m.mux_id == 0 => keepalive::conn_ping(sess, m),
        Op::Pong if m.mux_id == 0 => keepalive::conn_pong(sess, m),
        Op::Ping => callee_ops::on_ping(sess, m),
        Op::Pong => caller_ops::on_pong(sess, m),
        Op::DisconnectServerMux => {
            if let Some(t) = sess.incoming_singles.remove(m.mux_id) {
                // A nodegrid caller gave up on a single request (§12.2): stop the handler.
                t.cancel();
            } else {
                callee_ops::on_server_disconnect(sess, m);
            }
        }
        Op::ConnectMux => callee_ops::on_connect_mux(sess, m),
        Op::MuxClientMsg => callee_ops::on_client_msg(sess, m),
        Op::UnblockSrvMux => callee_ops::on_unblock_srv(sess, m),
        Op::MuxServerMsg => caller_ops::on_server_msg(sess, m),
        Op::UnblockClMux => caller_ops::on_unblock_cl(sess, m),
        Op::AckMux => caller_ops::on_ack(sess, m),
        op => {
            tracing::debug!(remote = %sess.link.remote, %op, "ignoring message with unhandled op");
        }
    }
}

/// A call of ours failed on the callee's side (MuxConnectError, or DisconnectClientMux with
/// or without an error).
fn caller_failed(sess: &Arc<Session>, m: Message) {
    let err = if m.op == Op::MuxConnectError {
        let text = MuxConnectErrorPayload::decode(&m.payload)
            .map(|p| p.error)
            .unwrap_or_else(|e| format!("invalid mux connect error: {e}"));
        Error::from_remote_text(text)
    } else if m.flags.contains(Flags::ERR) {
        Error::Remote(RemoteError(
            String::from_utf8_lossy(&m.payload).into_owned(),
        ))
    } else {
        Error::Disconnected
    };
    match sess.outgoing.remove(m.mux_id) {
        Some(Outgoing::Single(tx, _)) => {
            let _ = tx.send(Err(err));
        }
        Some(Outgoing::Stream(s)) => {
            // DisconnectClientMux after a clean EOF is normal cleanup; the stream has ended.
            s.fail_remote(err);
        }
        None => {}
    }
}
