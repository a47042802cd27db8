//! The options of calls, and the caller's handle to a stream ([`StreamCall`]) with its
//! `futures` `Stream` and `Sink` implementations.

use crate::error::{Error, UnknownHandlerKind};
use crate::registry::Registry;
use crate::session::stream::client::{close_send, poll_item, poll_send};
use crate::session::stream::open::CallHandle;
use crate::wire::HandlerId;
use bytes::Bytes;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Options of a single request.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    timeout: Option<Duration>,
}

impl CallOptions {
    /// Default options: the manager's default deadline (60 s).
    pub fn new() -> Self {
        Self::default()
    }

    /// The call's deadline, sent to the callee as DeadlineMS.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// The deadline set, or `default`.
    pub(crate) fn timeout_or(&self, default: Duration) -> Duration {
        self.timeout.unwrap_or(default)
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

/// A stream opened with [`crate::Connection::open_stream`].
///
/// Read the callee's output as a [`futures::Stream`] of `Result<Bytes, Error>`; it ends after
/// the callee's EOF, or yields one error. Send input with [`StreamCall::send`] (waits for a
/// credit) and end it with [`StreamCall::close_send`]. Dropping the stream (or both halves of
/// [`StreamCall::split`]) cancels the remote handler.
pub struct StreamCall {
    h: Arc<Handle>,
    input: Option<Bytes>,
}

/// What a stream was opened to, to name it when the callee does not have the handler.
pub(crate) struct StreamTarget {
    pub(crate) handler: HandlerId,
    /// The typed handle's name of the handler; without one, this node's registration (looked
    /// up only if the error happens) names it.
    pub(crate) name: Option<&'static str>,
    pub(crate) subroute: Option<Arc<str>>,
    pub(crate) remote: Arc<str>,
    pub(crate) registry: Arc<Registry>,
}

/// The stream and what it was opened to, shared by both halves of a split stream.
struct Handle {
    call: CallHandle,
    target: StreamTarget,
}

impl Handle {
    /// The callee's "no such handler" answer becomes [`Error::UnknownHandler`].
    fn map<T>(&self, r: Result<T, Error>) -> Result<T, Error> {
        match r {
            Err(e) if e.is_invalid_handler_answer() => {
                let t = &self.target;
                let registered = match t.name {
                    Some(_) => None,
                    None => t.registry.stream_name(t.handler, t.subroute.as_deref()),
                };
                Err(Error::unknown_handler(
                    t.handler,
                    t.name.or(registered.as_deref()),
                    t.subroute.as_deref(),
                    &t.remote,
                    UnknownHandlerKind::NotOnRemote,
                ))
            }
            r => r,
        }
    }

    fn poll_item(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Error>>> {
        poll_item(&self.call.s, cx).map(|o| o.map(|r| self.map(r)))
    }

    fn poll_send(&self, cx: &mut Context<'_>, item: &Bytes) -> Poll<Result<(), Error>> {
        poll_send(&self.call.s, cx, item).map(|r| self.map(r))
    }

    async fn send(&self, item: Bytes) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.poll_send(cx, &item)).await
    }

    fn close_send(&self) -> Result<(), Error> {
        self.map(close_send(&self.call.s))
    }

    async fn recv(&self) -> Option<Result<Bytes, Error>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }
}

impl std::fmt::Debug for StreamCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCall").finish_non_exhaustive()
    }
}

impl StreamCall {
    pub(crate) fn new(call: CallHandle, target: StreamTarget) -> StreamCall {
        StreamCall {
            h: Arc::new(Handle { call, target }),
            input: None,
        }
    }

    /// Sends one input item, waiting for a credit.
    pub async fn send(&self, item: Bytes) -> Result<(), Error> {
        self.h.send(item).await
    }

    /// Ends the input (EOF). Further sends fail.
    pub async fn close_send(&self) -> Result<(), Error> {
        self.h.close_send()
    }

    /// Cancels the stream: the remote handler's cancellation token fires, and this stream
    /// then yields [`Error::Cancelled`] (unless it had already ended).
    pub fn cancel(&self) {
        self.h.call.abort(Error::Cancelled);
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
        self.h.recv().await
    }

    /// The most output items this stream ever buffered (bounded by its output capacity).
    pub fn max_buffered(&self) -> usize {
        self.h.call.s.max_buffered()
    }
}

impl futures::Stream for StreamCall {
    type Item = Result<Bytes, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.h.poll_item(cx)
    }
}

impl futures::Sink<Bytes> for StreamCall {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        match this.input.take() {
            None => Poll::Ready(Ok(())),
            Some(item) => match this.h.poll_send(cx, &item) {
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
            Poll::Ready(Ok(())) => Poll::Ready(this.h.close_send()),
            other => other,
        }
    }
}

/// The input half of a split [`StreamCall`].
pub struct StreamSender {
    h: Arc<Handle>,
}

impl StreamSender {
    /// Sends one input item, waiting for a credit.
    pub async fn send(&self, item: Bytes) -> Result<(), Error> {
        self.h.send(item).await
    }

    /// Ends the input (EOF).
    pub async fn close_send(&self) -> Result<(), Error> {
        self.h.close_send()
    }
}

/// The output half of a split [`StreamCall`].
pub struct StreamReceiver {
    h: Arc<Handle>,
}

impl StreamReceiver {
    /// The next output item (`None` after a clean end).
    pub async fn recv(&mut self) -> Option<Result<Bytes, Error>> {
        self.h.recv().await
    }
}

impl futures::Stream for StreamReceiver {
    type Item = Result<Bytes, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.h.poll_item(cx)
    }
}
