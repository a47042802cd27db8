//! The caller's side of one stream: its state machine behind a lock, the items received for
//! the consumer, and the waits of the consumer (for items) and of the sender (for credits).
//!
//! The state machine itself is `proto::stream::CallerState`; this file wraps it, queues the
//! messages it produces under the same lock (so per-stream order on the wire equals sequence
//! order) and wakes whoever waits. Memory is bounded by the stream's output capacity.

use crate::error::Error;
use crate::proto::stream::{CallerEnd, CallerState};
use crate::session::outq::OutQueue;
use crate::session::wake::{park, wake};
use crate::wire::Message;
use bytes::Bytes;
use parking_lot::Mutex;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio_util::sync::CancellationToken;

pub(crate) struct CallerInner {
    pub(crate) st: CallerState,
    pub(crate) item_waker: Option<Waker>,
    pub(crate) credit_waker: Option<Waker>,
    /// The consumer has seen the end (EOF or error); nothing more to deliver.
    finished: bool,
}

/// The caller's shared state of one stream, referenced by the session's table and the handle.
pub(crate) struct ClientStream {
    pub(crate) inner: Mutex<CallerInner>,
    /// The session's outbound queue.
    out: Arc<OutQueue>,
    /// Whether the stream pings (no deadline, or one longer than the ping interval).
    pub(crate) pings: bool,
    /// Fires when the stream is over, to stop its deadline timer.
    pub(crate) done: CancellationToken,
}

impl ClientStream {
    pub(crate) fn new(st: CallerState, out: Arc<OutQueue>, pings: bool) -> ClientStream {
        ClientStream {
            inner: Mutex::new(CallerInner {
                st,
                item_waker: None,
                credit_waker: None,
                finished: false,
            }),
            out,
            pings,
            done: CancellationToken::new(),
        }
    }

    /// Queues a control message of this stream (never waits; dropped if the session has
    /// ended).
    pub(crate) fn queue(&self, m: Message) {
        let _ = self.out.push(m);
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

    /// The most output items this stream ever buffered.
    pub(crate) fn max_buffered(&self) -> usize {
        self.inner.lock().st.max_buffered
    }
}

/// Sends one input item if there is a credit; otherwise parks the sender.
pub(crate) fn poll_send(
    s: &ClientStream,
    cx: &mut Context<'_>,
    item: &Bytes,
) -> Poll<Result<(), Error>> {
    s.out.check_peer_size(item.len())?;
    // Room in the outbound queue first: a peer that stops reading makes senders wait instead
    // of growing the queue.
    if s.out.poll_space(cx).is_pending() {
        return Poll::Pending;
    }
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
            let _ = s.out.push_data(m);
            Poll::Ready(Ok(()))
        }
        Ok(None) => {
            park(&mut g.credit_waker, cx);
            Poll::Pending
        }
        Err(e) => Poll::Ready(Err(e)),
    }
}

/// The next output item, the end (`None`), or the error that ended the stream.
pub(crate) fn poll_item(
    s: &ClientStream,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Bytes, Error>>> {
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

/// Ends the input (EOF).
pub(crate) fn close_send(s: &ClientStream) -> Result<(), Error> {
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
