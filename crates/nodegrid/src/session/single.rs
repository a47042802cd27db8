//! Single requests (PROTOCOL.md §5), both roles: the caller's call (queue the Request, wait for
//! the Response, the deadline or the session's end; cancel on drop) and the callee's handling
//! (look up the handler, run it with its deadline and cancellation, answer once).

use crate::error::{Error, RemoteError, DEADLINE_TEXT};
use crate::observe;
use crate::session::handlers::{panic_text, Request};
use crate::session::state::{Outgoing, Session, HANDLER_GRACE};
use crate::stats::ConnCounters;
use crate::wire::{
    invalid_handler_text, too_large_text, Flags, HandlerId, Message, MuxId, Op, SubrouteId,
};
use bytes::Bytes;
use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Deadlines up to this use an exact per-call timer; longer ones (60 s by default) are
/// enforced by the session's sweep (`timers.rs`), within its period of the deadline, without
/// a timer per call.
pub(crate) const EXACT_DEADLINE_LIMIT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// Caller

struct SingleGuard<'a> {
    sess: &'a Arc<Session>,
    mux: u64,
    done: bool,
}

impl Drop for SingleGuard<'_> {
    fn drop(&mut self) {
        self.sess.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.done && self.sess.outgoing.remove(self.mux).is_some() {
            // We gave up (timeout or drop): tell a nodegrid callee to stop the handler. MinIO
            // ignores it (§12.2), so this is wire-safe.
            let mut m = Message::new(Op::DisconnectServerMux, self.mux);
            m.flags = self.sess.base_flags;
            self.sess.send_control(m);
        }
    }
}

/// Sends a single request on `sess` as mux `mux` and waits for its answer, the deadline
/// (`timeout` from now) or the session's end. Dropping the future cancels the call.
pub(crate) async fn call(
    sess: &Arc<Session>,
    mux: MuxId,
    handler: HandlerId,
    subroute: Option<SubrouteId>,
    payload: Option<Bytes>,
    timeout: Duration,
) -> Result<Option<Bytes>, Error> {
    if let Some(p) = &payload {
        // Larger than the peer accepts (when it told us its limit): never sent.
        sess.out.check_peer_size(p.len())?;
    }
    let deadline = Instant::now() + timeout;
    let (tx, mut rx) = oneshot::channel();
    // Long deadlines are enforced by the session's sweep, short ones by an exact timer:
    // no timer registration per call for the common 60 s default.
    let exact = timeout <= EXACT_DEADLINE_LIMIT;
    sess.outgoing
        .insert(mux, Outgoing::Single(tx, (!exact).then_some(deadline)))
        .map_err(|_| Error::Disconnected)?;
    sess.in_flight.fetch_add(1, Ordering::Relaxed);
    let mut guard = SingleGuard {
        sess,
        mux,
        done: false,
    };
    ConnCounters::add(&sess.counters().requests_out, 1);
    let mut m = Message::new(Op::Request, mux);
    m.deadline_ms = timeout.as_millis().min(u32::MAX as u128) as u32;
    m.handler = handler;
    m.flags = sess.base_flags | Flags::EOF;
    // An empty request is sent as "no payload" (ZERO never set by the caller, §3.7).
    m.payload = payload.unwrap_or_default();
    m.subroute = subroute;
    let wait = async {
        {
            // Queueing may wait for space; the sweep or a disconnect can end the call
            // meanwhile.
            let queued = sess.out.push_wait(m);
            tokio::pin!(queued);
            tokio::select! {
                biased;
                r = &mut rx => return r.map_err(|_| Error::Disconnected)?,
                q = &mut queued => q.map_err(|_| Error::Disconnected)?,
            }
        }
        rx.await.map_err(|_| Error::Disconnected)?
    };
    let res = if exact {
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(r) => r,
            Err(_) => return Err(Error::DeadlineExceeded),
        }
    } else {
        wait.await
    };
    // Answered, failed or expired by the session: the entry is gone, nothing to cancel.
    guard.done = true;
    res
}

/// Fails the single requests whose deadline passed (sweep for long deadlines).
pub(crate) fn expire_singles(sess: &Arc<Session>) {
    if sess.in_flight.load(Ordering::Relaxed) == 0 {
        // Nothing of ours in flight: skip locking the 16 shards (idle connections stay cheap).
        return;
    }
    let now = Instant::now();
    let expired = sess
        .outgoing
        .take_if(|o| matches!(o, Outgoing::Single(_, Some(d)) if *d <= now));
    for (mux, o) in expired {
        if let Outgoing::Single(tx, _) = o {
            let _ = tx.send(Err(Error::DeadlineExceeded));
        }
        let mut m = Message::new(Op::DisconnectServerMux, mux);
        m.flags = sess.base_flags;
        sess.send_control(m);
    }
}

pub(crate) fn caller_response(sess: &Arc<Session>, m: Message) {
    match sess.outgoing.remove(m.mux_id) {
        Some(Outgoing::Single(tx, _)) => {
            let r = if m.seq != 0 {
                Err(Error::OutOfSequence)
            } else if m.flags.contains(Flags::ERR) {
                Err(Error::from_remote_text(
                    String::from_utf8_lossy(&m.payload).into_owned(),
                ))
            } else {
                Ok(m.payload_opt().cloned())
            };
            let _ = tx.send(r);
        }
        Some(Outgoing::Stream(s)) => {
            s.fail_local(Error::Protocol(
                "single response received for a stream".into(),
            ));
        }
        None => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Callee

pub(crate) fn callee_request(sess: &Arc<Session>, m: Message) {
    let link = &sess.link;
    ConnCounters::add(&link.counters.requests_in, 1);
    let entry = match link.handlers.single(m.handler, m.subroute.as_ref()) {
        Some(e) if m.handler != 0 => e,
        _ => {
            sess.reply_connect_error(&m, &invalid_handler_text(m.handler, m.subroute.as_ref()));
            return;
        }
    };
    if sess.incoming_singles.contains(m.mux_id) {
        // The same caller reused a live mux ID: never run it twice (§12.17).
        ConnCounters::add(&link.counters.protocol_errors, 1);
        tracing::debug!(remote = %link.remote, mux = m.mux_id, "duplicate request mux id ignored");
        return;
    }
    if sess.running.load(Ordering::Relaxed) >= link.cfg.max_running_handlers {
        ConnCounters::add(&link.counters.rejected_over_limit, 1);
        sess.reply_connect_error(&m, "server busy: too many concurrent requests");
        return;
    }
    // Not a child of the session token: the session's end cancels every entry of
    // `incoming_singles` itself, and a child token would lock the parent per request.
    let token = CancellationToken::new();
    sess.running.fetch_add(1, Ordering::Relaxed);
    let received = link.observer.as_ref().map(|_| Instant::now());
    let deadline =
        (m.deadline_ms > 0).then(|| Instant::now() + Duration::from_millis(m.deadline_ms as u64));
    let req = Request {
        payload: m.payload_opt().cloned(),
        caller: link.remote.clone(),
        subroute: entry.subroute.clone(),
        deadline,
        cancel: token.clone(),
    };
    let mut info = SingleInfo {
        mux_id: m.mux_id,
        seq: m.seq,
        handler: m.handler,
        subroute: entry.subroute.clone(),
        name: entry.name.clone(),
        received,
        bytes_in: m.payload.len() as u64,
        tracked: false,
        data_lane: false,
    };
    // The handler's future is already boxed (and so `Unpin`): wrapped as it is, with a panic
    // in `call` itself caught as well, there is no second allocation per request.
    let mut fut = match std::panic::catch_unwind(AssertUnwindSafe(|| entry.handler.call(req))) {
        Ok(f) => AssertUnwindSafe(f).catch_unwind(),
        Err(p) => {
            finish_single(sess, &info, Some(single_result(Err(p))));
            return;
        }
    };
    // Fast path: poll once on the reader. A handler that completes without waiting (an echo,
    // an in-memory lookup) is answered at once, with no task spawned, no table entry and no
    // cross-thread wake-up. A handler that waits is registered (so the caller can cancel it)
    // and continues in its own task, which polls it again first.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut fut).poll(&mut cx) {
        finish_single(sess, &info, Some(single_result(r)));
        return;
    }
    if sess
        .incoming_singles
        .insert(m.mux_id, token.clone())
        .is_err()
    {
        // Session closed meanwhile: nobody waits for the answer.
        token.cancel();
        info.tracked = false;
    } else {
        info.tracked = true;
    }
    let sess = sess.clone();
    tokio::spawn(async move {
        let sleep = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let mut finished = false;
        let res = tokio::select! {
            biased;
            r = &mut fut => {
                finished = true;
                Some(single_result(r))
            }
            _ = token.cancelled() => None,
            _ = sleep => Some(Err(RemoteError(DEADLINE_TEXT.to_string()))),
        };
        token.cancel();
        if !finished {
            // Cancelled or past its deadline: let the handler see its token and finish, but
            // not forever.
            let _ = tokio::time::timeout(HANDLER_GRACE, &mut fut).await;
        }
        if res.is_some() {
            // The answer is data of a task that can wait: a caller that does not read makes
            // it wait for room instead of growing the queue (ended by the session's end).
            std::future::poll_fn(|cx| sess.out.poll_space(cx)).await;
        }
        info.data_lane = true;
        finish_single(&sess, &info, res);
    });
}

fn single_result(
    r: Result<Result<Bytes, RemoteError>, Box<dyn std::any::Any + Send>>,
) -> Result<Bytes, RemoteError> {
    match r {
        Ok(r) => r,
        Err(p) => Err(RemoteError(format!(
            "handleMessages: panic recovered: {}",
            panic_text(p.as_ref())
        ))),
    }
}

/// What `finish_single` needs to know about a request.
struct SingleInfo {
    mux_id: MuxId,
    seq: u32,
    handler: u8,
    subroute: Option<Arc<str>>,
    name: Option<Arc<str>>,
    /// Set only when a call observer is installed.
    received: Option<Instant>,
    bytes_in: u64,
    /// Whether the call is in `incoming_singles` (it waited and can be cancelled).
    tracked: bool,
    /// Whether the answer goes on the data lane (from the handler's task) rather than the
    /// control lane (from the reader, which never waits).
    data_lane: bool,
}

/// Sends a single handler's result, unless the call was cancelled meanwhile.
fn finish_single(sess: &Arc<Session>, info: &SingleInfo, res: Option<Result<Bytes, RemoteError>>) {
    sess.running.fetch_sub(1, Ordering::Relaxed);
    // An answer larger than the caller accepts (when it told us its limit) is replaced by the
    // error it would have met, so the call fails with `TooLarge` instead of its session.
    let res = res.map(|r| match r {
        Ok(b) => match sess.out.check_peer_size(b.len()) {
            Ok(()) => Ok(b),
            Err(_) => Err(RemoteError(too_large_text(
                b.len() as u64,
                sess.out.peer_max_message().unwrap_or(0),
            ))),
        },
        e => e,
    });
    let still_wanted = !info.tracked || sess.incoming_singles.remove(info.mux_id).is_some();
    if let Some(obs) = &sess.link.observer {
        let (outcome, bytes_out) = match (&res, still_wanted) {
            (Some(Ok(b)), true) => (observe::CallOutcome::Ok, b.len() as u64),
            (Some(Err(e)), true) => (
                observe::CallOutcome::RemoteError(e.0.clone()),
                e.0.len() as u64,
            ),
            _ => (observe::CallOutcome::Cancelled, 0),
        };
        let d = info.received.map(|r| r.elapsed()).unwrap_or_default();
        obs(&observe::CallRecord {
            kind: observe::CallKind::Single,
            handler: info.handler,
            name: info.name.as_deref(),
            subroute: info.subroute.as_deref(),
            caller: &sess.link.remote,
            time_to_first_byte: d,
            duration: d,
            bytes_in: info.bytes_in,
            bytes_out,
            outcome,
        });
    }
    if let (Some(res), true) = (res, still_wanted) {
        let mut r = Message::new(Op::Response, info.mux_id);
        r.seq = info.seq;
        r.flags = sess.base_flags | Flags::EOF;
        match res {
            Ok(b) => r.set_payload(Some(b)),
            Err(e) => {
                r.flags |= Flags::ERR;
                r.payload = Bytes::from(e.0);
            }
        }
        if info.data_lane {
            let _ = sess.out.push_data(r);
        } else {
            sess.send_control(r);
        }
    }
}
