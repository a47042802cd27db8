//! The callee's side of one stream and the API its handler sees: [`StreamContext`],
//! [`StreamInput`] (items from the caller) and [`StreamOutput`] (items to the caller, waiting
//! for the caller's flow-control tokens), and the [`StreamHandler`] trait.
//!
//! The state machine is `proto::stream::CalleeState`; this file wraps it in a lock and wakes
//! the handler's task. Memory is bounded by the stream's input capacity.

use crate::error::{Error, RemoteError};
use crate::proto::stream::CalleeState;
use crate::session::outq::OutQueue;
use crate::session::wake::{park, wake};
use crate::wire::Message;
use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
    pub(crate) input_waker: Option<Waker>,
    pub(crate) token_waker: Option<Waker>,
}

/// The callee's shared state of one stream.
pub(crate) struct ServerStream {
    pub(crate) inner: Mutex<CalleeInner>,
    pub(crate) cancel: CancellationToken,
    /// Set by `abort` before the token fires: the per-item checks read this atomic instead of
    /// the token (whose check takes a lock).
    pub(crate) aborted: AtomicBool,
    /// The session's outbound queue.
    out: Arc<OutQueue>,
    /// Whether the callee liveness check applies (DeadlineMS 0 or > 60 s, §6.8).
    pub(crate) watch_liveness: bool,
}

impl ServerStream {
    pub(crate) fn new(
        st: CalleeState,
        cancel: CancellationToken,
        out: Arc<OutQueue>,
        watch_liveness: bool,
    ) -> ServerStream {
        ServerStream {
            inner: Mutex::new(CalleeInner {
                st,
                input_waker: None,
                token_waker: None,
            }),
            cancel,
            aborted: AtomicBool::new(false),
            out,
            watch_liveness,
        }
    }

    /// Queues a control message of this stream (never waits; dropped if the session has
    /// ended).
    pub(crate) fn queue(&self, m: Message) {
        let _ = self.out.push(m);
    }

    /// Cancels the handler and wakes anything it waits on.
    pub(crate) fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        self.cancel.cancel();
        let mut g = self.inner.lock();
        wake(&mut g.input_waker);
        wake(&mut g.token_waker);
    }
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
        s.queue(unblock);
        return Poll::Ready(Some(item));
    }
    if g.st.input_closed {
        return Poll::Ready(None);
    }
    park(&mut g.input_waker, cx);
    Poll::Pending
}

impl StreamInput {
    /// The input of stream `s`; `None` for a stream that takes no input.
    pub(crate) fn new(s: Option<Arc<ServerStream>>) -> StreamInput {
        StreamInput { s }
    }

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
    if s.aborted.load(Ordering::Acquire) {
        return Poll::Ready(Err(Error::Cancelled));
    }
    s.out.check_peer_size(item.len())?;
    // Room in the outbound queue first: a caller that stops reading makes handlers wait
    // instead of growing the queue.
    if s.out.poll_space(cx).is_pending() {
        return Poll::Pending;
    }
    let mut g = s.inner.lock();
    if s.aborted.load(Ordering::Acquire) {
        return Poll::Ready(Err(Error::Cancelled));
    }
    match g.st.output_msg(item) {
        Some(m) => {
            let _ = s.out.push_data(m);
            Poll::Ready(Ok(()))
        }
        None => {
            park(&mut g.token_waker, cx);
            Poll::Pending
        }
    }
}

/// Ready with `true` once the caller has a token for one more message, `false` once the
/// stream is aborted.
pub(crate) fn poll_token(s: &ServerStream, cx: &mut Context<'_>) -> Poll<bool> {
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
    /// The output of stream `s`.
    pub(crate) fn new(s: Arc<ServerStream>) -> StreamOutput {
        StreamOutput { s }
    }

    /// Sends one output item, waiting until the caller has room for it. Fails with
    /// [`Error::Cancelled`] once the stream is cancelled.
    pub async fn send(&self, item: Bytes) -> Result<(), Error> {
        std::future::poll_fn(|cx| poll_output(&self.s, cx, &item)).await
    }
}
