//! One live WebSocket session with a peer: its reader task, its writer task, and the dispatch of
//! every received message to the mux tables and handlers.
//!
//! All per-call state lives in the session, not the connection: when a session ends, its
//! tables close, every call of either direction fails or is cancelled, and its outbound queue is
//! dropped, so nothing crosses into the next session (PROTOCOL.md §4.5, §12.5).

use super::outq::{OutQueue, Outbound};
use super::ws::{self, FrameDecoder, Need, Role, WsEvent};
use super::{BoxRead, BoxWrite, IoHalves};
use crate::connection::ConnShared;
use crate::error::{Error, RemoteError};
use crate::handler::{invalid_handler_text, Request};
use crate::proto::muxtable::MuxTable;
use crate::stats::{ConnCounters, Padded};
use crate::stream::{self, ClientStream, ServerStream};
use crate::wire::{
    split_frame, Flags, GridTime, Limits, MergedBuilder, Message, MuxConnectErrorPayload, MuxId,
    Op, PingPayload, PongPayload,
};
use bytes::{Bytes, BytesMut};
use futures::task::AtomicWaker;
use futures::FutureExt;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a cancelled handler may keep running to observe its cancellation token before
/// it is dropped.
pub(crate) const HANDLER_GRACE: Duration = Duration::from_secs(1);
/// How often a session expires single requests with long deadlines. Calls with a deadline of
/// at most [`EXACT_DEADLINE_LIMIT`] get an exact timer instead; the others (60 s by default)
/// end within this much of their deadline, without a timer per call.
pub(crate) const DEADLINE_SWEEP: Duration = Duration::from_millis(100);
/// Deadlines up to this use an exact per-call timer.
pub(crate) const EXACT_DEADLINE_LIMIT: Duration = Duration::from_secs(2);

/// Fails the single requests whose deadline passed (sweep for long deadlines).
fn expire_singles(sess: &Arc<Session>) {
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

/// Read buffer growth step.
const READ_CHUNK: usize = 32 * 1024;
/// A write buffer that grew beyond this is released after use (§8 "Buffers").
const MAX_KEPT_WRITE_BUF: usize = 256 * 1024;
/// An empty read buffer larger than this (grown for a large frame) is released.
const MAX_KEPT_READ_BUF: usize = 256 * 1024;

/// Makes room in the read buffer for at least `need` more bytes before a read.
///
/// Once everything read is handled and nobody holds a slice of the buffer any more, reading
/// starts at its beginning again instead of further on: only the first pages of a quiet
/// connection's buffer stay resident (at 32 in-process nodes, 992 connection ends, the peak RSS
/// fell from 90 to 51 MiB) and the next read lands on lines still in the cache. An empty
/// buffer that grew for a large frame is released rather than kept for the connection's life.
fn prepare_read_buf(buf: &mut BytesMut, need: usize) {
    if buf.is_empty() {
        // Succeeds only if this handle is the allocation's sole owner; otherwise a no-op.
        let _ = buf.try_reclaim(buf.capacity() + 1);
        if buf.capacity() > MAX_KEPT_READ_BUF {
            *buf = BytesMut::new();
        }
    }
    if buf.capacity() - buf.len() < need {
        buf.reserve(need.max(READ_CHUNK));
    }
}

/// What a caller waits on.
pub(crate) enum Outgoing {
    /// A single request: completed once with the response or an error. The instant, if
    /// any, is the call's deadline, enforced by the session's sweep (long deadlines only; short
    /// ones use an exact timer in the caller).
    Single(
        oneshot::Sender<Result<Option<Bytes>, Error>>,
        Option<Instant>,
    ),
    /// A stream opened by this node.
    Stream(Arc<ClientStream>),
}

pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) conn: Arc<ConnShared>,
    pub(crate) role: Role,
    pub(crate) out: OutQueue,
    pub(crate) outgoing: MuxTable<Outgoing>,
    pub(crate) incoming_singles: MuxTable<CancellationToken>,
    pub(crate) incoming_streams: MuxTable<Arc<ServerStream>>,
    pub(crate) cancel: CancellationToken,
    /// CRC on plaintext connections, nothing on TLS ones (§3.5).
    pub(crate) base_flags: Flags,
    pub(crate) started: Instant,
    /// Nanoseconds after `started` of the last connection-level pong.
    last_pong_ns: AtomicU64,
    ended: AtomicBool,
    /// The reader's waker while it waits for bytes, woken by `end` (cheaper to poll per read
    /// than the token, which takes two locks per poll).
    reader_waker: AtomicWaker,
    /// Single-request handlers running for the peer.
    pub(crate) running: Padded<AtomicUsize>,
    /// Our calls in flight (singles and streams), for adaptive write batching (updated by
    /// callers on every thread, so on a line of its own).
    pub(crate) in_flight: Padded<AtomicUsize>,
    pub(crate) peer_instance: [u8; 16],
}

impl Session {
    pub(crate) fn counters(&self) -> &ConnCounters {
        &self.conn.counters
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_message_size: self.conn.common.cfg.max_message_size,
        }
    }

    /// Starts a session on an established, handshaken stream.
    pub(crate) fn spawn(
        conn: &Arc<ConnShared>,
        io: IoHalves,
        leftover: BytesMut,
        role: Role,
        peer_instance: [u8; 16],
    ) -> Arc<Session> {
        let cfg = &conn.common.cfg;
        // CRC unless both host strings are https:// (§3.5).
        let tls = conn.target.tls && conn.common.local_tls;
        let sess = Arc::new(Session {
            id: conn.common.next_session_id(),
            conn: conn.clone(),
            role,
            out: OutQueue::new(cfg.outbound_queue),
            outgoing: MuxTable::default(),
            incoming_singles: MuxTable::default(),
            incoming_streams: MuxTable::default(),
            cancel: conn.common.shutdown.child_token(),
            base_flags: if tls { Flags::NONE } else { Flags::CRC },
            started: Instant::now(),
            last_pong_ns: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            reader_waker: AtomicWaker::new(),
            running: Padded(AtomicUsize::new(0)),
            in_flight: Padded(AtomicUsize::new(0)),
            peer_instance,
        });
        conn.install(&sess);
        tokio::spawn(writer_task(sess.clone(), io.write));
        tokio::spawn(housekeeping(sess.clone()));
        tokio::spawn(reader_task(sess.clone(), io.read, leftover));
        sess
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Ends the session: closes the queue and the tables, fails our calls with
    /// `remote disconnected`, cancels the peer's calls. Idempotent.
    pub(crate) fn end(self: &Arc<Self>, reason: &str) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::debug!(remote = %self.conn.remote, session = self.id, reason, "session ended");
        self.out.close();
        for o in self.outgoing.close_and_drain() {
            match o {
                Outgoing::Single(tx, _) => {
                    let _ = tx.send(Err(Error::Disconnected));
                }
                Outgoing::Stream(s) => s.fail_local(Error::Disconnected),
            }
        }
        for t in self.incoming_singles.close_and_drain() {
            t.cancel();
        }
        for s in self.incoming_streams.close_and_drain() {
            // Cancels and wakes whatever the handler task waits on (input, a credit).
            s.abort();
        }
        // The connection's state says why this session ended before the token wakes the dial
        // loop, so a quick redial failure is not overwritten by this older reason.
        self.conn.session_ended(self, reason);
        self.reader_waker.wake();
        self.cancel.cancel();
    }

    fn since_last_pong(&self) -> Duration {
        let last = Duration::from_nanos(self.last_pong_ns.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Queues a control message (never waits). Returns false if the session has ended.
    pub(crate) fn send_control(&self, m: Message) -> bool {
        self.out.push(Outbound::Msg(m)).is_ok()
    }

    /// A reply to `m` that copies its tuple fields, as MuxConnectError and Pong do.
    fn echo(&self, m: &Message, op: Op, payload: Bytes) -> Message {
        Message {
            mux_id: m.mux_id,
            seq: m.seq,
            deadline_ms: m.deadline_ms,
            handler: m.handler,
            op,
            flags: m.flags.without(Flags::SUBROUTE | Flags::ZERO | Flags::ERR) | self.base_flags,
            payload,
            subroute: None,
        }
    }

    /// Replies MuxConnectError with `text` to a Request or ConnectMux (§5.2).
    pub(crate) fn reply_connect_error(&self, m: &Message, text: &str) {
        let payload = MuxConnectErrorPayload {
            error: text.to_string(),
        }
        .encode();
        let mut r = self.echo(m, Op::MuxConnectError, payload);
        r.flags |= Flags::EOF;
        self.send_control(r);
    }

    /// Number of calls of ours and of the peer currently active (for write batching).
    fn activity(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed) + self.running.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// Reader

async fn reader_task(sess: Arc<Session>, mut r: BoxRead, buf: BytesMut) {
    let reason = match reader_loop(&sess, &mut r, buf).await {
        Ok(()) => "session closed".to_string(),
        Err(e) => e,
    };
    sess.end(&reason);
}

async fn reader_loop(
    sess: &Arc<Session>,
    r: &mut BoxRead,
    mut buf: BytesMut,
) -> Result<(), String> {
    let limits = sess.limits();
    let mut dec = FrameDecoder::new(sess.role, limits.max_frame_size());
    loop {
        match dec.decode(&mut buf) {
            Err(e) => {
                ConnCounters::add(&sess.counters().protocol_errors, 1);
                return Err(e.to_string());
            }
            Ok(Ok(WsEvent::Binary(b))) => {
                ConnCounters::add(&sess.counters().bytes_in, b.len() as u64);
                stream::deferring_wakes(|| handle_frame(sess, b, &limits))?;
            }
            Ok(Ok(WsEvent::Text(_))) | Ok(Ok(WsEvent::Pong)) => {}
            Ok(Ok(WsEvent::Ping(p))) => {
                let _ = sess.out.push_urgent(Outbound::WsPong(p));
            }
            Ok(Ok(WsEvent::Close)) => return Err("websocket close received".to_string()),
            Ok(Err(Need::More(n))) => {
                let read = std::future::poll_fn(|cx| {
                    // Registered before the check, so an `end` in between still wakes us.
                    sess.reader_waker.register(cx.waker());
                    if sess.is_ended() {
                        return Poll::Ready(None);
                    }
                    // At each read attempt, not once before the first: by then the slices
                    // handed out from the last frame have usually been dropped.
                    prepare_read_buf(&mut buf, n);
                    // `read_buf` is cancel-safe: a fresh one per poll loses nothing.
                    std::pin::pin!(r.read_buf(&mut buf)).poll(cx).map(Some)
                })
                .await;
                match read {
                    None => return Ok(()),
                    Some(Ok(0)) => return Err("connection closed by peer".to_string()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(format!("read: {e}")),
                }
            }
        }
    }
}

fn handle_frame(sess: &Arc<Session>, b: Bytes, limits: &Limits) -> Result<(), String> {
    let bad = |e: crate::wire::DecodeError| {
        ConnCounters::add(&sess.counters().protocol_errors, 1);
        format!("malformed message: {e}")
    };
    let msgs = split_frame(b, limits).map_err(bad)?;
    for m in msgs {
        let m = m.map_err(bad)?;
        ConnCounters::add(&sess.counters().msgs_in, 1);
        dispatch(sess, m);
    }
    Ok(())
}

fn dispatch(sess: &Arc<Session>, m: Message) {
    match m.op {
        Op::Request => callee_request(sess, m),
        Op::Response => caller_response(sess, m),
        Op::MuxConnectError | Op::DisconnectClientMux => caller_failed(sess, m),
        Op::Ping if m.mux_id == 0 => conn_ping(sess, m),
        Op::Pong if m.mux_id == 0 => conn_pong(sess, m),
        Op::Ping => stream::on_ping(sess, m),
        Op::Pong => stream::on_pong(sess, m),
        Op::DisconnectServerMux => {
            if let Some(t) = sess.incoming_singles.remove(m.mux_id) {
                // A nodegrid caller gave up on a single request (§12.2): stop the handler.
                t.cancel();
            } else {
                stream::on_server_disconnect(sess, m);
            }
        }
        Op::ConnectMux => stream::on_connect_mux(sess, m),
        Op::MuxClientMsg => stream::on_client_msg(sess, m),
        Op::UnblockSrvMux => stream::on_unblock_srv(sess, m),
        Op::MuxServerMsg => stream::on_server_msg(sess, m),
        Op::UnblockClMux => stream::on_unblock_cl(sess, m),
        Op::AckMux => stream::on_ack(sess, m),
        op => {
            tracing::debug!(remote = %sess.conn.remote, %op, "ignoring message with unhandled op");
        }
    }
}

fn conn_ping(sess: &Arc<Session>, m: Message) {
    // Pings without (or with an undecodable) payload are answered with the zero time (§4.3).
    let t = PingPayload::decode(&m.payload)
        .map(|p| p.t)
        .unwrap_or(GridTime::ZERO);
    let payload = PongPayload {
        not_found: false,
        err: None,
        t,
    }
    .encode();
    let pong = sess.echo(&m, Op::Pong, payload);
    // Ahead of queued data: the peer's liveness check waits for it (§12 item 10).
    let _ = sess.out.push_urgent(Outbound::Msg(pong));
}

fn conn_pong(sess: &Arc<Session>, m: Message) {
    sess.last_pong_ns
        .store(sess.started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    let c = sess.counters();
    c.last_pong_unix_ms.store(
        (GridTime::now().unix_nanos() / 1_000_000) as u64,
        Ordering::Relaxed,
    );
    if let Ok(p) = PongPayload::decode(&m.payload) {
        if !p.t.is_zero() {
            let rtt = GridTime::now().nanos_since(&p.t);
            if rtt >= 0 {
                c.record_rtt(rtt as u64);
            }
        }
    }
}

fn caller_response(sess: &Arc<Session>, m: Message) {
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

fn caller_failed(sess: &Arc<Session>, m: Message) {
    let err = if m.op == Op::MuxConnectError {
        let text = MuxConnectErrorPayload::decode(&m.payload)
            .map(|p| p.error)
            .unwrap_or_else(|e| format!("invalid mux connect error: {e}"));
        Error::Remote(RemoteError(text))
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

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

pub(crate) fn catch_panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    panic_text(p.as_ref())
}

fn callee_request(sess: &Arc<Session>, m: Message) {
    let conn = &sess.conn;
    ConnCounters::add(&conn.counters.requests_in, 1);
    let entry = match conn.common.registry.single(m.handler, m.subroute.as_ref()) {
        Some(e) if m.handler != 0 => e,
        _ => {
            sess.reply_connect_error(&m, &invalid_handler_text(m.handler, m.subroute.as_ref()));
            return;
        }
    };
    if sess.incoming_singles.contains(m.mux_id) {
        // The same caller reused a live mux ID: never run it twice (§12.17).
        ConnCounters::add(&conn.counters.protocol_errors, 1);
        tracing::debug!(remote = %conn.remote, mux = m.mux_id, "duplicate request mux id ignored");
        return;
    }
    if sess.running.load(Ordering::Relaxed) >= conn.common.cfg.max_running_handlers {
        ConnCounters::add(&conn.counters.rejected_over_limit, 1);
        sess.reply_connect_error(&m, "server busy: too many concurrent requests");
        return;
    }
    // Not a child of the session token: the session's end cancels every entry of
    // `incoming_singles` itself, and a child token would lock the parent per request.
    let token = CancellationToken::new();
    sess.running.fetch_add(1, Ordering::Relaxed);
    let received = conn.common.observer.as_ref().map(|_| Instant::now());
    let deadline =
        (m.deadline_ms > 0).then(|| Instant::now() + Duration::from_millis(m.deadline_ms as u64));
    let req = Request {
        payload: m.payload_opt().cloned(),
        caller: conn.remote.clone(),
        subroute: entry.subroute.clone(),
        deadline,
        cancel: token.clone(),
    };
    let mut info = SingleInfo {
        mux_id: m.mux_id,
        seq: m.seq,
        handler: m.handler,
        subroute: entry.subroute.clone(),
        received,
        bytes_in: m.payload.len() as u64,
        tracked: false,
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
            _ = sleep => Some(Err(RemoteError(crate::error::DEADLINE_TEXT.to_string()))),
        };
        token.cancel();
        if !finished {
            // Cancelled or past its deadline: let the handler see its token and finish, but
            // not forever.
            let _ = tokio::time::timeout(HANDLER_GRACE, &mut fut).await;
        }
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
    /// Set only when a call observer is installed.
    received: Option<Instant>,
    bytes_in: u64,
    /// Whether the call is in `incoming_singles` (it waited and can be cancelled).
    tracked: bool,
}

/// Sends a single handler's result, unless the call was cancelled meanwhile.
fn finish_single(sess: &Arc<Session>, info: &SingleInfo, res: Option<Result<Bytes, RemoteError>>) {
    sess.running.fetch_sub(1, Ordering::Relaxed);
    let still_wanted = !info.tracked || sess.incoming_singles.remove(info.mux_id).is_some();
    if let Some(obs) = &sess.conn.common.observer {
        let (outcome, bytes_out) = match (&res, still_wanted) {
            (Some(Ok(b)), true) => (crate::observe::CallOutcome::Ok, b.len() as u64),
            (Some(Err(e)), true) => (
                crate::observe::CallOutcome::RemoteError(e.0.clone()),
                e.0.len() as u64,
            ),
            _ => (crate::observe::CallOutcome::Cancelled, 0),
        };
        let d = info.received.map(|r| r.elapsed()).unwrap_or_default();
        obs(&crate::observe::CallRecord {
            kind: crate::observe::CallKind::Single,
            handler: info.handler,
            subroute: info.subroute.as_deref(),
            caller: &sess.conn.remote,
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
        sess.send_control(r);
    }
}

// ---------------------------------------------------------------------------------------------
// Writer

async fn writer_task(sess: Arc<Session>, mut w: BoxWrite) {
    let reason = match writer_loop(&sess, &mut w).await {
        Ok(()) => "session closed".to_string(),
        Err(e) => e,
    };
    sess.end(&reason);
    let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
}

/// Runs `f` for at most `limit`; `None` if it did not finish. A future that is ready at once
/// (a socket with room, the usual case) costs no timer.
async fn bounded<F: Future>(limit: Duration, f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    if let Some(r) = f.as_mut().now_or_never() {
        return Some(r);
    }
    tokio::time::timeout(limit, f).await.ok()
}

struct FrameWriter {
    role: Role,
    single: BytesMut,
    merged: MergedBuilder,
    write_timeout: Duration,
    mask_state: u64,
}

impl FrameWriter {
    fn mask(&mut self) -> Option<[u8; 4]> {
        if self.role != Role::Dialer {
            return None;
        }
        // xorshift64*: mask keys need to vary, not to be secret (RFC 6455 §10.3 protects
        // browsers from cache poisoning, which does not apply between servers).
        let mut x = self.mask_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.mask_state = x;
        Some(
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32).to_le_bytes()[..4]
                .try_into()
                .unwrap_or([1, 2, 3, 4]),
        )
    }

    /// Writes `bytes`; fails if the socket accepts nothing for `write_timeout` (progress
    /// resets the clock, so large frames on slow links are not cut off).
    async fn write(&self, w: &mut BoxWrite, bytes: &[u8]) -> Result<(), String> {
        let blocked = || format!("write blocked for more than {:?}", self.write_timeout);
        let mut off = 0;
        while off < bytes.len() {
            match bounded(self.write_timeout, w.write(&bytes[off..])).await {
                Some(Ok(0)) => return Err("write: connection closed".to_string()),
                Some(Ok(n)) => off += n,
                Some(Err(e)) => return Err(format!("write: {e}")),
                None => return Err(blocked()),
            }
        }
        match bounded(self.write_timeout, w.flush()).await {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(format!("write: {e}")),
            None => Err(blocked()),
        }
    }

    async fn write_single(
        &mut self,
        sess: &Session,
        w: &mut BoxWrite,
        m: &Message,
    ) -> Result<(), String> {
        let mut buf = std::mem::take(&mut self.single);
        buf.clear();
        buf.resize(ws::MAX_HEADER_LEN, 0);
        m.encode(&mut buf).map_err(|e| e.to_string())?;
        let mask = self.mask();
        let start = ws::frame_in_place(&mut buf, ws::MAX_HEADER_LEN, mask);
        let c = sess.counters();
        ConnCounters::add(&c.msgs_out, 1);
        ConnCounters::add(&c.bytes_out, (buf.len() - ws::MAX_HEADER_LEN) as u64);
        ConnCounters::add(&c.ws_messages_out, 1);
        let r = self.write(w, &buf[start..]).await;
        if buf.capacity() <= MAX_KEPT_WRITE_BUF {
            self.single = buf;
        }
        r
    }

    async fn write_merged(&mut self, sess: &Session, w: &mut BoxWrite) -> Result<(), String> {
        let n = self.merged.len() as u64;
        let body = self.merged.body_len() as u64;
        let (mut buf, start) = self.merged.finish_with_headroom();
        let mask = self.mask();
        let fs = ws::frame_in_place(&mut buf, start, mask);
        let c = sess.counters();
        ConnCounters::add(&c.msgs_out, n);
        ConnCounters::add(&c.bytes_out, body);
        ConnCounters::add(&c.ws_messages_out, 1);
        let r = self.write(w, &buf[fs..]).await;
        if buf.capacity() <= MAX_KEPT_WRITE_BUF {
            self.merged.recycle(buf);
        }
        r
    }
}

fn conn_ping_msg() -> Message {
    let mut p = Message::new(Op::Ping, 0);
    p.deadline_ms = 10_000;
    p.payload = PingPayload { t: GridTime::now() }.encode();
    p
}

/// The session's timers, off the write path: connection pings and the pong timeout (§4.3),
/// stream pings and liveness (§6.8), and the deadline sweep of single requests.
async fn housekeeping(sess: Arc<Session>) {
    let cfg = &sess.conn.common.cfg;
    let start = Instant::now();
    let mut next_ping = start + cfg.ping_interval;
    let check = stream::check_interval(cfg);
    let mut next_stream_check = start + check;
    let mut tick = tokio::time::interval_at(start + DEADLINE_SWEEP, DEADLINE_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            // The session ended, or the manager is shutting down (the token is a child of
            // the shutdown token): end it, which stops the reader and the writer.
            _ = sess.cancel.cancelled() => {
                sess.end("shutting down");
                return;
            }
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        expire_singles(&sess);
        if now >= next_ping {
            next_ping = now + cfg.ping_interval;
            let since = sess.since_last_pong();
            if since > cfg.pong_timeout {
                sess.end(&format!("no pong from peer for {since:?}"));
                return;
            }
            sess.out.push_urgent(Outbound::Msg(conn_ping_msg())).ok();
        }
        if now >= next_stream_check {
            next_stream_check = now + check;
            stream::tick(&sess);
        }
    }
}

async fn writer_loop(sess: &Arc<Session>, w: &mut BoxWrite) -> Result<(), String> {
    let cfg = &sess.conn.common.cfg;
    let mut fw = FrameWriter {
        role: sess.role,
        single: BytesMut::new(),
        merged: MergedBuilder::with_headroom(
            cfg.merge_max_messages,
            cfg.merge_max_bytes,
            ws::MAX_HEADER_LEN,
        ),
        write_timeout: cfg.write_timeout,
        mask_state: rand::random::<u64>() | 1,
    };
    let mut batch: VecDeque<Outbound> = VecDeque::new();
    let mut urgent: Vec<Outbound> = Vec::new();
    loop {
        // Timers live in the housekeeping task, so each wake-up of the writer polls no timer,
        // nor a token: the session's end closes the queue, which wakes the writer, and then
        // `drain_into` says so.
        sess.out.ready().await;
        // Let other ready tasks queue their messages first when many calls are active: more
        // messages per write at high concurrency, no added latency for a lone call.
        if sess.activity() > 1 {
            tokio::task::yield_now().await;
        }
        if !sess.out.drain_into(&mut batch) {
            return Ok(());
        }
        write_batch(sess, w, &mut fw, &mut batch, &mut urgent).await?;
    }
}

/// Writes one item in a frame of its own.
async fn write_one(
    sess: &Arc<Session>,
    w: &mut BoxWrite,
    fw: &mut FrameWriter,
    item: &Outbound,
) -> Result<(), String> {
    match item {
        Outbound::WsPong(p) => {
            let f = ws::pong_frame(p, fw.mask());
            fw.write(w, &f).await
        }
        Outbound::Msg(m) => fw.write_single(sess, w, m).await,
    }
}

async fn write_batch(
    sess: &Arc<Session>,
    w: &mut BoxWrite,
    fw: &mut FrameWriter,
    batch: &mut VecDeque<Outbound>,
    urgent: &mut Vec<Outbound>,
) -> Result<(), String> {
    loop {
        // Liveness items go first, before every frame of data (one atomic load when none).
        sess.out.take_urgent(urgent);
        for item in urgent.drain(..) {
            write_one(sess, w, fw, &item).await?;
        }
        let Some(item) = batch.pop_front() else {
            return Ok(());
        };
        let m = match item {
            Outbound::Msg(m) => m,
            pong => {
                write_one(sess, w, fw, &pong).await?;
                continue;
            }
        };
        let pair_fits = match batch.front() {
            Some(Outbound::Msg(n)) => {
                let (a, b) = (m.encoded_len(), n.encoded_len());
                fw.merged.is_empty() && a + b + 10 <= sess.conn.common.cfg.merge_max_bytes
            }
            _ => false,
        };
        if !pair_fits {
            fw.write_single(sess, w, &m).await?;
            continue;
        }
        fw.merged.try_push(&m).map_err(|e| e.to_string())?;
        while let Some(Outbound::Msg(n)) = batch.front() {
            if !fw.merged.fits(n) {
                break;
            }
            if let Some(Outbound::Msg(n)) = batch.pop_front() {
                fw.merged.try_push(&n).map_err(|e| e.to_string())?;
            }
        }
        fw.write_merged(sess, w).await?;
    }
}

/// Allocates the next mux ID for a call on this connection.
pub(crate) fn next_mux_id(counter: &AtomicU64) -> MuxId {
    loop {
        let id = counter.fetch_add(1, Ordering::Relaxed);
        if id != 0 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read buffer of `cap` bytes whose first `used` bytes were read and handed out as the
    /// returned frame.
    fn consumed(cap: usize, used: usize) -> (BytesMut, Bytes) {
        let mut buf = BytesMut::with_capacity(cap);
        buf.extend_from_slice(&vec![7u8; used]);
        let frame = buf.split_to(used).freeze();
        (buf, frame)
    }

    #[test]
    fn a_drained_read_buffer_is_read_into_from_its_start_again() {
        let (mut buf, frame) = consumed(READ_CHUNK, 1000);
        drop(frame);
        assert_eq!(buf.capacity(), READ_CHUNK - 1000);
        let before = buf.as_ptr();
        prepare_read_buf(&mut buf, 64);
        // The whole allocation again, from its start (1000 bytes before the old position).
        assert_eq!(buf.capacity(), READ_CHUNK);
        assert_eq!(before as usize - buf.as_ptr() as usize, 1000);
    }

    #[test]
    fn a_read_buffer_still_referenced_is_left_where_it_is() {
        let (mut buf, frame) = consumed(READ_CHUNK, 1000);
        let before = buf.as_ptr();
        prepare_read_buf(&mut buf, 64);
        assert_eq!(buf.as_ptr(), before);
        assert_eq!(buf.capacity(), READ_CHUNK - 1000);
        // The handed-out frame is intact.
        assert_eq!(&frame[..], &vec![7u8; 1000][..]);
    }

    #[test]
    fn unread_bytes_stay_in_place_and_room_is_made_for_the_rest_of_a_frame() {
        let mut buf = BytesMut::with_capacity(1024);
        buf.extend_from_slice(b"partial frame");
        prepare_read_buf(&mut buf, 4096);
        assert_eq!(&buf[..], b"partial frame");
        assert!(buf.capacity() - buf.len() >= 4096);
    }

    #[test]
    fn a_read_buffer_grown_for_a_large_frame_is_released_once_drained() {
        let (mut buf, frame) = consumed(4 << 20, 3 << 20);
        drop(frame);
        prepare_read_buf(&mut buf, 64);
        assert!(buf.capacity() <= MAX_KEPT_READ_BUF, "{}", buf.capacity());
        assert!(buf.capacity() >= 64);
        // While the large frame is still held, its rest is not kept for further reads either:
        // the frame alone keeps the allocation, which goes when the frame does.
        let (mut buf, frame) = consumed(4 << 20, 3 << 20);
        prepare_read_buf(&mut buf, 64);
        assert!(buf.capacity() <= MAX_KEPT_READ_BUF, "{}", buf.capacity());
        assert_eq!(frame.len(), 3 << 20);
        assert!(frame.iter().all(|&b| b == 7));
    }
}
