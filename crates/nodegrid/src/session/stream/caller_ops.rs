//! What the reader does with messages for streams this node opened (PROTOCOL.md §6, caller
//! side: Ack, UnblockClMux, MuxServerMsg, stream pongs), and the caller's stream pings and
//! idle check (§6.8).

use crate::error::{Error, RemoteError};
use crate::proto::stream::{disconnect_server, CallerState};
use crate::session::state::{Outgoing, Session};
use crate::session::wake::{credit_wake_at, wake};
use crate::stats::ConnCounters;
use crate::wire::{Flags, Message, PongPayload};
use std::sync::Arc;
use tokio::time::Instant;

/// Runs a caller-state transition; on a protocol error the stream is aborted.
fn caller_apply(
    sess: &Arc<Session>,
    m: &mut Message,
    f: impl FnOnce(&mut CallerState, &mut Message) -> Result<(), Error>,
) -> bool {
    let Some(s) = sess.outgoing_stream(m.mux_id) else {
        return false;
    };
    let res = {
        let mut g = s.inner.lock();
        let r = f(&mut g.st, m);
        if r.is_ok() {
            let ended = g.st.end.is_some();
            if ended || !g.st.buf.is_empty() {
                wake(&mut g.item_waker);
            }
            if ended || g.st.credits >= credit_wake_at(g.st.in_capacity) {
                wake(&mut g.credit_waker);
            }
        }
        r.map(|_| g.st.end.is_some())
    };
    match res {
        Ok(true) => {
            // EOF or remote error: the callee has forgotten the stream; so do we.
            sess.outgoing.remove(m.mux_id);
            s.done.cancel();
        }
        Ok(false) => {}
        Err(e) => {
            ConnCounters::add(&sess.counters().protocol_errors, 1);
            sess.abort_stream(&s, e);
        }
    }
    true
}

pub(crate) fn on_ack(sess: &Arc<Session>, mut m: Message) {
    if !caller_apply(sess, &mut m, |st, m| st.on_ack(m)) && !m.flags.contains(Flags::EOF) {
        // Unknown stream of ours: tell the callee to drop it. The reference answers with
        // DisconnectClientMux here, which names the wrong table (§6.10, §11 item 31).
        sess.send_control(disconnect_server(m.mux_id, sess.base_flags));
    }
}

pub(crate) fn on_unblock_cl(sess: &Arc<Session>, mut m: Message) {
    caller_apply(sess, &mut m, |st, m| st.on_unblock(m));
}

pub(crate) fn on_server_msg(sess: &Arc<Session>, mut m: Message) {
    if !caller_apply(sess, &mut m, CallerState::on_server_msg) && !m.flags.contains(Flags::EOF) {
        sess.send_control(disconnect_server(m.mux_id, sess.base_flags));
    }
}

pub(crate) fn on_pong(sess: &Arc<Session>, m: Message) {
    // Unknown mux: dropped (never a wrong-direction disconnect, §11 item 31).
    let Some(s) = sess.outgoing_stream(m.mux_id) else {
        return;
    };
    let p = PongPayload::decode(&m.payload).unwrap_or_default();
    if p.not_found {
        sess.outgoing.remove(m.mux_id);
        s.fail_local(Error::RemoteTerminated);
    } else if let Some(e) = p.err {
        sess.outgoing.remove(m.mux_id);
        s.fail_local(Error::Remote(RemoteError(e)));
    } else {
        s.inner.lock().st.recv_count += 1;
    }
}

/// Periodic work for our streams: a ping for each live one, and the end of those that have
/// received nothing for `stream_idle_timeout` (§6.8).
pub(crate) fn tick(sess: &Arc<Session>, now: Instant) {
    let mut outs = Vec::new();
    sess.outgoing.for_each(|o| {
        if let Outgoing::Stream(s) = o {
            outs.push(s.clone());
        }
    });
    for s in outs {
        if !s.pings {
            continue;
        }
        let mut g = s.inner.lock();
        if g.st.end.is_some() {
            continue;
        }
        if g.st.is_idle(now, sess.cfg().stream_idle_timeout) {
            drop(g);
            sess.abort_stream(&s, Error::Disconnected);
            continue;
        }
        let p = g.st.ping_msg();
        s.queue(p);
    }
}
