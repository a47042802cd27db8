//! What the reader does with messages for streams the peer opened (PROTOCOL.md §6, callee
//! side: ConnectMux, MuxClientMsg, UnblockSrvMux, DisconnectServerMux, stream pings), the
//! handler task of each stream, and the callee's liveness check (§6.8).

use crate::observe;
use crate::proto::muxtable::InsertError;
use crate::proto::stream::{disconnect_client, CalleeState};
use crate::session::handlers::{panic_text, StreamEntry};
use crate::session::state::{Session, HANDLER_GRACE};
use crate::session::stream::server::{
    poll_token, ServerStream, StreamContext, StreamInput, StreamOutput,
};
use crate::session::wake::{credit_wake_at, wake};
use crate::stats::ConnCounters;
use crate::wire::{invalid_handler_text, Flags, Message, Op, PongPayload};
use futures::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Removes a stream from the table (if still there), tells the caller, cancels the handler.
/// Whoever removes the stream sends the DisconnectClientMux, so it goes out once.
pub(crate) fn forget_incoming(sess: &Arc<Session>, mux: u64, error_text: Option<String>) {
    if let Some(s) = sess.incoming_streams.remove(mux) {
        if let Some(text) = error_text {
            let mut g = s.inner.lock();
            let m = g.st.error_msg(text);
            sess.send_control(m);
        }
        sess.send_control(disconnect_client(mux, sess.base_flags));
        s.abort();
    }
}

fn incoming(sess: &Session, mux: u64) -> Option<Arc<ServerStream>> {
    sess.incoming_streams.with(mux, |s| s.clone())
}

pub(crate) fn on_connect_mux(sess: &Arc<Session>, m: Message) {
    let link = &sess.link;
    ConnCounters::add(&link.counters.streams_in, 1);
    if m.flags.contains(Flags::STATELESS) {
        sess.reply_connect_error(&m, "Stateless streams not supported");
        return;
    }
    let entry: StreamEntry = match link.handlers.stream(m.handler, m.subroute.as_ref()) {
        Some(e) if m.handler != 0 => e,
        _ => {
            sess.reply_connect_error(&m, &invalid_handler_text(m.handler, m.subroute.as_ref()));
            return;
        }
    };
    if sess.incoming_streams.len() >= link.cfg.max_incoming_streams {
        ConnCounters::add(&link.counters.rejected_over_limit, 1);
        sess.reply_connect_error(&m, "server busy: too many concurrent streams");
        return;
    }
    if entry.running.fetch_add(1, Ordering::AcqRel) >= entry.max_running {
        entry.running.fetch_sub(1, Ordering::AcqRel);
        ConnCounters::add(&link.counters.rejected_over_limit, 1);
        sess.reply_connect_error(
            &m,
            "server busy: too many concurrent streams for this handler",
        );
        return;
    }
    // Released when the handler task ends (or right away if the stream is not created).
    let slot = RunningSlot(entry.running.clone());
    let now = Instant::now();
    let st = CalleeState::new(
        m.mux_id,
        sess.base_flags,
        m.seq,
        entry.in_capacity,
        entry.out_capacity as u32,
        m.flags.contains(Flags::EOF),
        now,
    );
    let cancel = sess.cancel.child_token();
    let watch_liveness = m.deadline_ms == 0 || m.deadline_ms > 60_000;
    let s = Arc::new(ServerStream::new(
        st,
        cancel.clone(),
        sess.out.clone(),
        watch_liveness,
    ));
    match sess.incoming_streams.insert(m.mux_id, s.clone()) {
        Ok(()) => {}
        Err(InsertError::Duplicate) => {
            // A second ConnectMux for a live stream is ignored (§6.2); count it.
            ConnCounters::add(&link.counters.protocol_errors, 1);
            return;
        }
        Err(InsertError::Closed) => return,
    }
    {
        // The Ack goes out before anything else of this stream (§6.2 step 5).
        let mut g = s.inner.lock();
        let ack = g.st.ack_msg();
        sess.send_control(ack);
    }
    let deadline = (m.deadline_ms > 0).then(|| now + Duration::from_millis(m.deadline_ms as u64));
    let ctx = StreamContext {
        payload: if entry.with_payload {
            m.payload_opt().cloned()
        } else {
            None
        },
        caller: link.remote.clone(),
        subroute: entry.subroute.clone(),
        deadline,
        cancel: cancel.clone(),
    };
    let input = StreamInput::new((entry.in_capacity > 0).then(|| s.clone()));
    let output = StreamOutput::new(s.clone());
    let sess = sess.clone();
    let mux = m.mux_id;
    let (handler_id, subroute, initial_len) =
        (m.handler, entry.subroute.clone(), m.payload.len() as u64);
    let name = entry.name.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let handler = entry.handler;
        let fut =
            AssertUnwindSafe(async move { handler.call(ctx, input, output).await }).catch_unwind();
        let sleep = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(fut);
        let mut finished = false;
        let res: Option<Result<(), String>> = tokio::select! {
            biased;
            r = &mut fut => {
                finished = true;
                Some(match r {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(e.0),
                    Err(p) => Err(format!("handler panic: {}", panic_text(p.as_ref()))),
                })
            }
            _ = cancel.cancelled() => None,
            _ = sleep => Some(Err("context deadline exceeded".to_string())),
        };
        if !finished {
            // Cancelled or past its deadline: let the handler see its token and finish, but
            // not forever. The deadline case still sends its error below.
            if res.is_some() {
                let mut g = s.inner.lock();
                if sess.incoming_streams.contains(mux) {
                    let m = g.st.error_msg("context deadline exceeded".to_string());
                    sess.send_control(m);
                }
            }
            s.abort();
            let _ = tokio::time::timeout(HANDLER_GRACE, &mut fut).await;
        }
        let outcome = res.clone();
        if let (true, Some(res)) = (finished, res) {
            // Wait for one more token before the final message, as the reference does. The
            // token is only ever cancelled through `ServerStream::abort` (also by the session's
            // end), which wakes this wait.
            let s2 = s.clone();
            let got = std::future::poll_fn(|cx| poll_token(&s2, cx)).await;
            if got && sess.incoming_streams.contains(mux) {
                let mut g = s.inner.lock();
                let fin = g.st.final_msg(res);
                sess.send_control(fin);
            }
        }
        if let Some(obs) = &sess.link.observer {
            let g = s.inner.lock();
            let d = now.elapsed();
            obs(&observe::CallRecord {
                kind: observe::CallKind::Stream,
                handler: handler_id,
                name: name.as_deref(),
                subroute: subroute.as_deref(),
                caller: &sess.link.remote,
                time_to_first_byte: g
                    .st
                    .first_output
                    .map(|t| t.duration_since(now))
                    .unwrap_or(d),
                duration: d,
                bytes_in: initial_len + g.st.bytes_in,
                bytes_out: g.st.bytes_out,
                outcome: match (&outcome, finished) {
                    (Some(Ok(())), true) => observe::CallOutcome::Ok,
                    (Some(Err(t)), _) => observe::CallOutcome::RemoteError(t.clone()),
                    _ => observe::CallOutcome::Cancelled,
                },
            });
        }
        forget_incoming(&sess, mux, None);
        s.abort();
    });
}

/// One running stream of a handler; frees its place in the handler's limit when dropped.
struct RunningSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for RunningSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs a callee-state transition; on error the stream ends with that remote error.
fn callee_apply(
    sess: &Arc<Session>,
    m: &mut Message,
    f: impl FnOnce(&mut CalleeState, &mut Message) -> Result<(), String>,
) -> bool {
    let Some(s) = incoming(sess, m.mux_id) else {
        return false;
    };
    let r = {
        let mut g = s.inner.lock();
        let r = f(&mut g.st, m);
        if r.is_err() || g.st.input_closed || !g.st.inbox.is_empty() {
            wake(&mut g.input_waker);
        }
        if r.is_err() || g.st.tokens >= credit_wake_at(g.st.out_capacity) {
            wake(&mut g.token_waker);
        }
        r
    };
    if let Err(text) = r {
        ConnCounters::add(&sess.counters().protocol_errors, 1);
        forget_incoming(sess, m.mux_id, Some(text));
    }
    true
}

pub(crate) fn on_client_msg(sess: &Arc<Session>, mut m: Message) {
    if !callee_apply(sess, &mut m, CalleeState::on_client_msg) {
        // Correct direction: the caller's stream is unknown here.
        sess.send_control(disconnect_client(m.mux_id, sess.base_flags));
    }
}

pub(crate) fn on_unblock_srv(sess: &Arc<Session>, mut m: Message) {
    callee_apply(sess, &mut m, |st, m| st.on_unblock(m));
}

pub(crate) fn on_server_disconnect(sess: &Arc<Session>, m: Message) {
    forget_incoming(sess, m.mux_id, None);
}

pub(crate) fn on_ping(sess: &Arc<Session>, m: Message) {
    let mut pong = PongPayload::default();
    let mut failed = None;
    match incoming(sess, m.mux_id) {
        None => pong.not_found = true,
        Some(s) => {
            let mut g = s.inner.lock();
            if let Err(text) = g.st.on_ping(&m, Instant::now()) {
                pong.err = Some(text.clone());
                failed = Some(text);
            } else if s.aborted.load(Ordering::Acquire) {
                pong.err = Some("context canceled".to_string());
            }
        }
    }
    let mut reply = Message::new(Op::Pong, m.mux_id);
    reply.seq = m.seq;
    reply.deadline_ms = m.deadline_ms;
    reply.handler = m.handler;
    reply.flags = m
        .flags
        .without(Flags::SUBROUTE | Flags::ZERO | Flags::ERR | Flags::EOF)
        | sess.base_flags;
    reply.payload = pong.encode();
    sess.send_control(reply);
    if let Some(text) = failed {
        forget_incoming(sess, m.mux_id, Some(text));
    }
}

/// Periodic work for the peer's streams: those watched for liveness that have had no ping for
/// `stream_callee_idle_timeout` are cancelled (§6.8).
pub(crate) fn tick(sess: &Arc<Session>, now: Instant) {
    let cfg = sess.cfg();
    let mut ins = Vec::new();
    sess.incoming_streams.for_each(|s| ins.push(s.clone()));
    for s in ins {
        if !s.watch_liveness {
            continue;
        }
        let (stale, mux) = {
            let g = s.inner.lock();
            (
                now.duration_since(g.st.last_ping) > cfg.stream_callee_idle_timeout,
                g.st.mux_id,
            )
        };
        if stale {
            forget_incoming(sess, mux, None);
        }
    }
}
