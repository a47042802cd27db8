//! Two-way streams (PROTOCOL.md §6): the caller's [`StreamCall`] and the callee's handler API
//! ([`StreamHandler`], [`StreamContext`], [`StreamInput`], [`StreamOutput`]).
//!
//! The protocol logic is in `proto::stream`; this module wraps each state machine in a lock,
//! queues the messages it produces (under the same lock, so per-stream order on the wire equals
//! sequence order) and wakes whoever waits for items, credits or tokens. Memory per stream is
//! bounded by its capacities: the callee holds at most `in_capacity` input items, the caller at
//! most `out_capacity` output items.

use crate::error::{Error, RemoteError};
use crate::handler::{invalid_handler_text, StreamEntry};
use crate::proto::muxtable::InsertError;
use crate::proto::stream::{
    disconnect_client, disconnect_server, CalleeState, CallerEnd, CallerState,
};
use crate::stats::ConnCounters;
use crate::transport::session::{catch_panic_text, Outgoing, Session};
use crate::wire::{Flags, Message, Op, PongPayload};
use crate::GridConfig;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::Mutex;
use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the session checks its streams for pings and liveness.
pub(crate) fn check_interval(cfg: &GridConfig) -> Duration {
    cfg.stream_ping_interval
}

/// Stores the task's waker in `slot`, without a clone when the same task is already there.
fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

thread_local! {
    /// `Some` while this thread's session reader handles one frame (see [`deferring_wakes`]):
    /// the wake-ups held until the frame is done. The vector keeps its capacity between
    /// frames, so holding wake-ups allocates nothing per frame.
    static DEFERRED: RefCell<Option<Vec<Waker>>> = const { RefCell::new(None) };
}

fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        let w = DEFERRED.with(|d| match d.borrow_mut().as_mut() {
            Some(held) => {
                held.push(w);
                None
            }
            None => Some(w),
        });
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// Runs `f` (the reader handling one frame) with stream wake-ups held until it returns.
///
/// A merged frame carries items for many streams. Woken at once, each consumer would run on
/// the other worker while the reader still fills its buffer, and the two would contend for
/// the stream's lock and the outbound queue item by item; woken at the end, each consumer
/// takes all of its items from the frame in one go.
pub(crate) fn deferring_wakes<R>(f: impl FnOnce() -> R) -> R {
    thread_local! {
        static SPARE: RefCell<Vec<Waker>> = const { RefCell::new(Vec::new()) };
    }
    struct Flush;
    impl Drop for Flush {
        fn drop(&mut self) {
            // Stop holding first: a waker that wakes another stream does so at once.
            let mut held = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
            for w in held.drain(..) {
                w.wake();
            }
            SPARE.with(|s| *s.borrow_mut() = held);
        }
    }
    let spare = SPARE.with(|s| std::mem::take(&mut *s.borrow_mut()));
    DEFERRED.with(|d| *d.borrow_mut() = Some(spare));
    let _flush = Flush;
    f()
}

/// How many credits a sender blocked on flow control waits for before it is woken: a
/// quarter of the capacity (at least 1). The sender then writes a burst instead of being
/// woken once per returned credit. It cannot stall: a receiver that wants more has consumed
/// everything, so every credit comes back.
fn credit_wake_at(capacity: u32) -> u32 {
    (capacity / 4).max(1)
}

// ---------------------------------------------------------------------------------------------
// Caller side

pub(crate) struct CallerInner {
    pub(crate) st: CallerState,
    item_waker: Option<Waker>,
    credit_waker: Option<Waker>,
    /// The consumer has seen the end (EOF or error); nothing more to deliver.
    finished: bool,
}

/// The caller's shared state of one stream, referenced by the session's table and the handle.
pub(crate) struct ClientStream {
    pub(crate) inner: Mutex<CallerInner>,
    sess: Arc<Session>,
    /// Whether the stream pings (no deadline, or one longer than the ping interval).
    pings: bool,
    /// Fires when the stream is over, to stop its deadline timer.
    done: CancellationToken,
}

impl ClientStream {
    fn queue(&self, m: Message) {
        self.sess.send_control(m);
    }

    /// Ends the stream with a locally produced error (disconnect, deadline, protocol error).
    pub(crate) fn fail_local(&self, e: Error) {
        let mut g = self.inner.lock();
        if g.st.end.is_none() {
            g.st.end = Some(CallerEnd::Failed(e));
        }
        wake(&mut g.item_waker);
        wake(&mut g.credit_waker);
        drop(g);
        self.done.cancel();
    }

    /// Ends the stream because the callee said so (MuxConnectError, DisconnectClientMux).
    pub(crate) fn fail_remote(&self, e: Error) {
        self.fail_local(e)
    }
}

/// Removes a failed stream from the table and tells the callee (DisconnectServerMux).
fn abort_outgoing(sess: &Arc<Session>, s: &Arc<ClientStream>, e: Error) {
    let mux = s.inner.lock().st.mux_id;
    if sess.outgoing.remove(mux).is_some() {
        let mut g = s.inner.lock();
        let m = g.st.cancel_msg();
        s.queue(m);
    }
    s.fail_local(e);
}

fn outgoing_stream(sess: &Session, mux: u64) -> Option<Arc<ClientStream>> {
    sess.outgoing.with(mux, |o| match o {
        Outgoing::Stream(s) => Some(s.clone()),
        Outgoing::Single(..) => None,
    })?
}

/// Runs a caller-state transition; on a protocol error the stream is aborted.
fn caller_apply(
    sess: &Arc<Session>,
    m: &mut Message,
    f: impl FnOnce(&mut CallerState, &mut Message) -> Result<(), Error>,
) -> bool {
    let Some(s) = outgoing_stream(sess, m.mux_id) else {
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
            abort_outgoing(sess, &s, e);
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
    let Some(s) = outgoing_stream(sess, m.mux_id) else {
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

/// Options for opening a stream.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) capacities: Option<(u32, usize)>,
}

impl StreamOptions {
    /// No deadline, capacities from the local registration.
    pub fn new() -> Self {
        Self::default()
    }

    /// A deadline for the whole stream (none by default).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Input and output capacities to use instead of a local registration of the handler
    /// (the reference requires one, §6.1; both sides must agree).
    pub fn capacities(mut self, in_capacity: u32, out_capacity: usize) -> Self {
        self.capacities = Some((in_capacity, out_capacity));
        self
    }
}

pub(crate) async fn open(
    sess: Arc<Session>,
    mux_id: u64,
    entry_caps: (u32, usize),
    handler: u8,
    subroute: Option<crate::wire::SubrouteId>,
    payload: Option<Bytes>,
    timeout: Option<Duration>,
) -> Result<StreamCall, Error> {
    let cfg = &sess.conn.common.cfg;
    let (in_cap, out_cap) = entry_caps;
    let deadline_ms = match timeout {
        Some(t) if t < Duration::from_millis(1) => return Err(Error::DeadlineExceeded),
        Some(t) => t.as_millis().min(u32::MAX as u128) as u32,
        None => 0,
    };
    let pings = timeout.is_none_or(|t| t > cfg.stream_ping_interval);
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut st = CallerState::new(mux_id, sess.base_flags, in_cap, out_cap, Instant::now());
    let connect = st.connect_msg(handler, deadline_ms, payload, subroute);
    let s = Arc::new(ClientStream {
        inner: Mutex::new(CallerInner {
            st,
            item_waker: None,
            credit_waker: None,
            finished: false,
        }),
        sess: sess.clone(),
        pings,
        done: CancellationToken::new(),
    });
    sess.outgoing
        .insert(mux_id, Outgoing::Stream(s.clone()))
        .map_err(|_| Error::Disconnected)?;
    sess.in_flight.fetch_add(1, Ordering::Relaxed);
    ConnCounters::add(&sess.counters().streams_out, 1);
    let handle = Arc::new(CallHandle { s: s.clone() });
    // The deadline also bounds the wait for space in a full outbound queue, as for single
    // requests (§8: a caller gives up when its context ends).
    let queued = match deadline {
        Some(d) => tokio::time::timeout_at(d, sess.out.push_wait(connect))
            .await
            .ok(),
        None => Some(sess.out.push_wait(connect).await),
    };
    match queued {
        Some(Ok(())) => {}
        Some(Err(_)) => return Err(Error::Disconnected),
        None => {
            // Never queued, so the callee knows nothing to cancel: forget the entry silently.
            sess.outgoing.remove(mux_id);
            return Err(Error::DeadlineExceeded);
        }
    }
    if let Some(d) = deadline {
        let s2 = s.clone();
        let sess2 = sess.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep_until(d) => abort_outgoing(&sess2, &s2, Error::DeadlineExceeded),
                _ = s2.done.cancelled() => {}
            }
        });
    }
    Ok(StreamCall {
        h: handle,
        input: None,
    })
}

/// Cancels the stream when the last handle goes away.
struct CallHandle {
    s: Arc<ClientStream>,
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        let sess = &self.s.sess;
        sess.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mux = self.s.inner.lock().st.mux_id;
        if sess.outgoing.remove(mux).is_some() {
            let mut g = self.s.inner.lock();
            let m = g.st.cancel_msg();
            self.s.queue(m);
        }
        self.s.fail_local(Error::Cancelled);
    }
}

/// A stream opened with [`crate::Connection::open_stream`].
///
/// Read the callee's output as a [`futures::Stream`] of `Result<Bytes, Error>`; it ends after
/// the callee's EOF, or yields one error. Send input with [`StreamCall::send`] (waits for a
/// credit) and end it with [`StreamCall::close_send`]. Dropping the stream (or both halves of
/// [`StreamCall::split`]) cancels the remote handler.
pub struct StreamCall {
    h: Arc<CallHandle>,
    input: Option<Bytes>,
}

impl std::fmt::Debug for StreamCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCall").finish_non_exhaustive()
    }
}

fn poll_send(s: &ClientStream, cx: &mut Context<'_>, item: &Bytes) -> Poll<Result<(), Error>> {
    let mut g = s.inner.lock();
    if let Some(CallerEnd::Failed(e)) = &g.st.end {
        return Poll::Ready(Err(e.clone()));
    }
    if g.st.end.is_some() {
        // The callee ended the stream; input is no longer wanted.
        return Poll::Ready(Err(Error::InputClosed));
    }
    match g.st.input_msg(item) {
        Ok(Some(m)) => {
            s.queue(m);
            Poll::Ready(Ok(()))
        }
        Ok(None) => {
            park(&mut g.credit_waker, cx);
            Poll::Pending
        }
        Err(e) => Poll::Ready(Err(e)),
    }
}

fn poll_item(s: &ClientStream, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
    let mut g = s.inner.lock();
    if g.finished {
        return Poll::Ready(None);
    }
    if let Some(CallerEnd::Failed(e)) = &g.st.end {
        // Items buffered before a remote error are delivered first; a local failure
        // (disconnect, cancel, deadline) wins at once.
        let deliver_first =
            matches!(e, Error::Remote(_) | Error::DeadlineExceeded) && !g.st.buf.is_empty();
        if !deliver_first {
            let e = e.clone();
            g.finished = true;
            return Poll::Ready(Some(Err(e)));
        }
    }
    if let Some((item, unblock)) = g.st.pop_item() {
        if g.st.end.is_none() {
            s.queue(unblock);
        }
        return Poll::Ready(Some(Ok(item)));
    }
    if g.st.end.is_some() {
        g.finished = true;
        return Poll::Ready(None);
    }
    park(&mut g.item_waker, cx);
    Poll::Pending
}

impl StreamCall {
    /// Sends one input item, waiting for a credit.
    pub async fn send(&self, item: Bytes) -> Result<(), Error> {
        let s = &self.h.s;
        std::future::poll_fn(|cx| poll_send(s, cx, &item)).await
    }

    /// Ends the input (EOF). Further sends fail.
    pub async fn close_send(&self) -> Result<(), Error> {
        close_send(&self.h.s)
    }

    /// Cancels the stream: the remote handler's cancellation token fires, and this stream
    /// then yields [`Error::Cancelled`] (unless it had already ended).
    pub fn cancel(&self) {
        abort_outgoing(&self.h.s.sess, &self.h.s, Error::Cancelled);
    }

    /// Splits into an input half and an output half that can be used from different tasks.
    /// The stream is cancelled when both are dropped before it ends.
    pub fn split(self) -> (StreamSender, StreamReceiver) {
        (
            StreamSender { h: self.h.clone() },
            StreamReceiver { h: self.h },
        )
    }

    /// The next output item (`None` after a clean end).
    pub async fn recv(&mut self) -> Option<Result<Bytes, Error>> {
        let s = self.h.s.clone();
        std::future::poll_fn(|cx| poll_item(&s, cx)).await
    }

    /// The most output items this stream ever buffered (bounded by its output capacity).
    pub fn max_buffered(&self) -> usize {
        self.h.s.inner.lock().st.max_buffered
    }
}

fn close_send(s: &ClientStream) -> Result<(), Error> {
    let mut g = s.inner.lock();
    if let Some(CallerEnd::Failed(e)) = &g.st.end {
        return Err(e.clone());
    }
    if g.st.in_capacity == 0 {
        return Err(Error::NoInput);
    }
    if let Some(m) = g.st.eof_msg() {
        s.queue(m);
    }
    Ok(())
}

impl futures::Stream for StreamCall {
    type Item = Result<Bytes, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        poll_item(&self.h.s, cx)
    }
}

impl futures::Sink<Bytes> for StreamCall {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        match this.input.take() {
            None => Poll::Ready(Ok(())),
            Some(item) => match poll_send(&this.h.s, cx, &item) {
                Poll::Ready(r) => Poll::Ready(r),
                Poll::Pending => {
                    this.input = Some(item);
                    Poll::Pending
                }
            },
        }
    }
    fn start_send(self: Pin<&mut Self>, item: Bytes) -> Result<(), Error> {
        self.get_mut().input = Some(item);
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_ready(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        match Pin::new(&mut *this).poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(close_send(&this.h.s)),
            other => other,
        }
    }
}

/// The input half of a split [`StreamCall`].
pub struct StreamSender {
    h: Arc<CallHandle>,
}

impl StreamSender {
    /// Sends one input item, waiting for a credit.
    pub async fn send(&self, item: Bytes) -> Result<(), Error> {
        let s = &self.h.s;
        std::future::poll_fn(|cx| poll_send(s, cx, &item)).await
    }

    /// Ends the input (EOF).
    pub async fn close_send(&self) -> Result<(), Error> {
        close_send(&self.h.s)
    }
}

/// The output half of a split [`StreamCall`].
pub struct StreamReceiver {
    h: Arc<CallHandle>,
}

impl StreamReceiver {
    /// The next output item (`None` after a clean end).
    pub async fn recv(&mut self) -> Option<Result<Bytes, Error>> {
        let s = self.h.s.clone();
        std::future::poll_fn(|cx| poll_item(&s, cx)).await
    }
}

impl futures::Stream for StreamReceiver {
    type Item = Result<Bytes, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        poll_item(&self.h.s, cx)
    }
}

// ---------------------------------------------------------------------------------------------
// Callee side

/// What a streaming handler sees of its call.
#[derive(Debug, Clone)]
pub struct StreamContext {
    /// The initial payload (`None` if absent).
    pub payload: Option<Bytes>,
    /// The caller's host string as configured on this node.
    pub caller: Arc<str>,
    /// The subroute the handler was registered under, if any.
    pub subroute: Option<Arc<str>>,
    /// The deadline the caller sent, if any.
    pub deadline: Option<Instant>,
    /// Fires on caller cancel, deadline, disconnect or protocol error.
    pub cancel: CancellationToken,
}

/// A streaming handler: gets the call's context, its input and its output, and returns when
/// done. Returning an error ends the stream with that remote error on the caller's side.
///
/// Implemented for every matching async closure.
pub trait StreamHandler: Send + Sync + 'static {
    /// Runs one stream.
    fn call(
        &self,
        ctx: StreamContext,
        input: StreamInput,
        output: StreamOutput,
    ) -> BoxFuture<'static, Result<(), RemoteError>>;
}

impl<F, Fut> StreamHandler for F
where
    F: Fn(StreamContext, StreamInput, StreamOutput) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), RemoteError>> + Send + 'static,
{
    fn call(
        &self,
        ctx: StreamContext,
        input: StreamInput,
        output: StreamOutput,
    ) -> BoxFuture<'static, Result<(), RemoteError>> {
        Box::pin(self(ctx, input, output))
    }
}

pub(crate) struct CalleeInner {
    pub(crate) st: CalleeState,
    input_waker: Option<Waker>,
    token_waker: Option<Waker>,
}

/// The callee's shared state of one stream.
pub(crate) struct ServerStream {
    pub(crate) inner: Mutex<CalleeInner>,
    cancel: CancellationToken,
    /// Set by `abort` before the token fires: the per-item checks read this atomic instead of
    /// the token (whose check takes a lock).
    aborted: AtomicBool,
    sess: Arc<Session>,
    /// Whether the callee liveness check applies (DeadlineMS 0 or > 60 s, §6.8).
    watch_liveness: bool,
}

impl ServerStream {
    /// Cancels the handler and wakes anything it waits on.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        self.cancel.cancel();
        let mut g = self.inner.lock();
        wake(&mut g.input_waker);
        wake(&mut g.token_waker);
    }
}

/// Removes a stream from the table (if still there), tells the caller, cancels the handler.
/// Whoever removes the stream sends the DisconnectClientMux, so it goes out once.
fn forget_incoming(sess: &Arc<Session>, mux: u64, error_text: Option<String>) {
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

/// The handler's input: a stream of items from the caller, ending at the caller's EOF.
pub struct StreamInput {
    s: Option<Arc<ServerStream>>,
}

impl std::fmt::Debug for StreamInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamInput")
    }
}

fn poll_input(s: &ServerStream, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
    let mut g = s.inner.lock();
    if s.aborted.load(Ordering::Acquire) {
        return Poll::Ready(None);
    }
    if let Some((item, unblock)) = g.st.pop_input() {
        s.sess.send_control(unblock);
        return Poll::Ready(Some(item));
    }
    if g.st.input_closed {
        return Poll::Ready(None);
    }
    park(&mut g.input_waker, cx);
    Poll::Pending
}

impl StreamInput {
    /// The next input item; `None` at the caller's EOF, on cancellation, or if the stream
    /// takes no input.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let s = self.s.as_ref()?.clone();
        std::future::poll_fn(|cx| poll_input(&s, cx)).await
    }
}

impl futures::Stream for StreamInput {
    type Item = Bytes;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match &self.s {
            Some(s) => poll_input(s, cx),
            None => Poll::Ready(None),
        }
    }
}

/// The handler's output: `send` waits for a token (the caller's flow control).
#[derive(Clone)]
pub struct StreamOutput {
    s: Arc<ServerStream>,
}

impl std::fmt::Debug for StreamOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamOutput")
    }
}

fn poll_output(s: &ServerStream, cx: &mut Context<'_>, item: &Bytes) -> Poll<Result<(), Error>> {
    let mut g = s.inner.lock();
    if s.aborted.load(Ordering::Acquire) {
        return Poll::Ready(Err(Error::Cancelled));
    }
    match g.st.output_msg(item) {
        Some(m) => {
            s.sess.send_control(m);
            Poll::Ready(Ok(()))
        }
        None => {
            park(&mut g.token_waker, cx);
            Poll::Pending
        }
    }
}

fn poll_token(s: &ServerStream, cx: &mut Context<'_>) -> Poll<bool> {
    let mut g = s.inner.lock();
    if s.aborted.load(Ordering::Acquire) {
        return Poll::Ready(false);
    }
    if g.st.tokens > 0 {
        return Poll::Ready(true);
    }
    park(&mut g.token_waker, cx);
    Poll::Pending
}

impl StreamOutput {
    /// Sends one output item, waiting until the caller has room for it. Fails with
    /// [`Error::Cancelled`] once the stream is cancelled.
    pub async fn send(&self, item: Bytes) -> Result<(), Error> {
        std::future::poll_fn(|cx| poll_output(&self.s, cx, &item)).await
    }
}

pub(crate) fn on_connect_mux(sess: &Arc<Session>, m: Message) {
    let conn = &sess.conn;
    ConnCounters::add(&conn.counters.streams_in, 1);
    if m.flags.contains(Flags::STATELESS) {
        sess.reply_connect_error(&m, "Stateless streams not supported");
        return;
    }
    let entry: StreamEntry = match conn.common.registry.stream(m.handler, m.subroute.as_ref()) {
        Some(e) if m.handler != 0 => e,
        _ => {
            sess.reply_connect_error(&m, &invalid_handler_text(m.handler, m.subroute.as_ref()));
            return;
        }
    };
    if sess.incoming_streams.len() >= conn.common.cfg.max_incoming_streams {
        ConnCounters::add(&conn.counters.rejected_over_limit, 1);
        sess.reply_connect_error(&m, "server busy: too many concurrent streams");
        return;
    }
    if entry.running.fetch_add(1, Ordering::AcqRel) >= entry.max_running {
        entry.running.fetch_sub(1, Ordering::AcqRel);
        ConnCounters::add(&conn.counters.rejected_over_limit, 1);
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
    let s = Arc::new(ServerStream {
        inner: Mutex::new(CalleeInner {
            st,
            input_waker: None,
            token_waker: None,
        }),
        cancel: cancel.clone(),
        aborted: AtomicBool::new(false),
        sess: sess.clone(),
        watch_liveness: m.deadline_ms == 0 || m.deadline_ms > 60_000,
    });
    match sess.incoming_streams.insert(m.mux_id, s.clone()) {
        Ok(()) => {}
        Err(InsertError::Duplicate) => {
            // A second ConnectMux for a live stream is ignored (§6.2); count it.
            ConnCounters::add(&conn.counters.protocol_errors, 1);
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
        caller: conn.remote.clone(),
        subroute: entry.subroute.clone(),
        deadline,
        cancel: cancel.clone(),
    };
    let input = StreamInput {
        s: (entry.in_capacity > 0).then(|| s.clone()),
    };
    let output = StreamOutput { s: s.clone() };
    let sess = sess.clone();
    let mux = m.mux_id;
    let (handler_id, subroute, initial_len) =
        (m.handler, entry.subroute.clone(), m.payload.len() as u64);
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
                    Err(p) => Err(format!("handler panic: {}", catch_panic_text(p))),
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
            let _ = tokio::time::timeout(crate::transport::session::HANDLER_GRACE, &mut fut).await;
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
        if let Some(obs) = &sess.conn.common.observer {
            let g = s.inner.lock();
            let d = now.elapsed();
            obs(&crate::observe::CallRecord {
                kind: crate::observe::CallKind::Stream,
                handler: handler_id,
                subroute: subroute.as_deref(),
                caller: &sess.conn.remote,
                time_to_first_byte: g
                    .st
                    .first_output
                    .map(|t| t.duration_since(now))
                    .unwrap_or(d),
                duration: d,
                bytes_in: initial_len + g.st.bytes_in,
                bytes_out: g.st.bytes_out,
                outcome: match (&outcome, finished) {
                    (Some(Ok(())), true) => crate::observe::CallOutcome::Ok,
                    (Some(Err(t)), _) => crate::observe::CallOutcome::RemoteError(t.clone()),
                    _ => crate::observe::CallOutcome::Cancelled,
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

/// Periodic work: caller pings and liveness, callee liveness (§6.8).
pub(crate) fn tick(sess: &Arc<Session>) {
    let cfg = &sess.conn.common.cfg;
    let now = Instant::now();
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
        if g.st.is_idle(now, cfg.stream_idle_timeout) {
            drop(g);
            abort_outgoing(sess, &s, Error::Disconnected);
            continue;
        }
        let p = g.st.ping_msg();
        s.queue(p);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);
    impl futures::task::ArcWake for Count {
        fn wake_by_ref(me: &Arc<Self>) {
            me.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let w = futures::task::waker(c.clone());
        (c, w)
    }

    #[test]
    fn wake_ups_during_a_frame_are_held_until_it_is_done() {
        let (a, wa) = counting();
        let (b, wb) = counting();
        let woken = |c: &Count| c.0.load(Ordering::SeqCst);
        // Outside a frame: at once.
        wake(&mut Some(wa.clone()));
        assert_eq!(woken(&a), 1);
        let r = deferring_wakes(|| {
            wake(&mut Some(wa.clone()));
            wake(&mut Some(wb.clone()));
            // Held while the frame is handled.
            (woken(&a), woken(&b))
        });
        assert_eq!(r, (1, 0));
        assert_eq!((woken(&a), woken(&b)), (2, 1));
        // Not holding any more once the frame is done.
        wake(&mut Some(wb.clone()));
        assert_eq!(woken(&b), 2);
        // A frame whose handling panics still releases what it held.
        let p = std::panic::catch_unwind(AssertUnwindSafe(|| {
            deferring_wakes(|| {
                wake(&mut Some(wa.clone()));
                panic!("frame handling failed")
            })
        }));
        assert!(p.is_err());
        assert_eq!(woken(&a), 3);
        wake(&mut Some(wa));
        assert_eq!(woken(&a), 4);
    }
}
