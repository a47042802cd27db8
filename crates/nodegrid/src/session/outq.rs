//! The outbound queue of one session (PROTOCOL.md §8), drained by the session's writer.
//!
//! Two lanes share one FIFO: callers' data messages wait while the queue holds `capacity`
//! entries (back-pressure, cancellable by dropping the future), while control messages the
//! reader produces (pongs, acks, errors, unblocks) never wait, so the reader never blocks on a
//! slow writer (§12.8). The queue belongs to one session: when it closes, its content is
//! dropped, so nothing queued for a dead session reaches the next one (§12.5).
//!
//! A third lane, for connection-level pings and pongs and WebSocket pongs, goes ahead of
//! everything else and is checked by the writer between frames: liveness must not wait
//! behind megabytes of stream data on a slow link (PROTOCOL.md §12 item 10).

use crate::wire::Message;
use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;

/// One item for the writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A grid message.
    Msg(Message),
    /// A WebSocket pong answering a WebSocket ping.
    WsPong(Bytes),
}

/// The session has ended; nothing more can be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

struct Inner {
    q: VecDeque<Outbound>,
    /// Liveness traffic, written before anything in `q`.
    urgent: VecDeque<Outbound>,
    closed: bool,
    /// The writer's waker while it waits for items (taken and woken by the next push).
    writer: Option<Waker>,
    producers_waiting: bool,
}

/// Releases the lock, then wakes the writer if it was waiting (it runs without the lock).
fn unlock_and_wake_writer(mut inner: MutexGuard<'_, Inner>) {
    let w = inner.writer.take();
    drop(inner);
    if let Some(w) = w {
        w.wake();
    }
}

/// Aligned to a cache line: its lock is the most contended word of a session.
#[repr(align(128))]
pub(crate) struct OutQueue {
    inner: Mutex<Inner>,
    /// Whether `urgent` may be non-empty (checked by the writer without the lock).
    has_urgent: AtomicBool,
    space: Notify,
    capacity: usize,
}

impl OutQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        OutQueue {
            inner: Mutex::new(Inner {
                q: VecDeque::new(),
                urgent: VecDeque::new(),
                closed: false,
                writer: None,
                producers_waiting: false,
            }),
            has_urgent: AtomicBool::new(false),
            space: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues a liveness item (connection ping or pong, WebSocket pong) ahead of all data.
    pub(crate) fn push_urgent(&self, item: Outbound) -> Result<(), Closed> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(Closed);
        }
        inner.urgent.push_back(item);
        self.has_urgent.store(true, Ordering::Release);
        unlock_and_wake_writer(inner);
        Ok(())
    }

    /// Moves the urgent items into `out` (cheap when there are none: one atomic load).
    pub(crate) fn take_urgent(&self, out: &mut Vec<Outbound>) {
        if !self.has_urgent.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.inner.lock();
        self.has_urgent.store(false, Ordering::Relaxed);
        out.extend(inner.urgent.drain(..));
    }

    /// Queues a control item without waiting for space.
    pub(crate) fn push(&self, item: Outbound) -> Result<(), Closed> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(Closed);
        }
        inner.q.push_back(item);
        unlock_and_wake_writer(inner);
        Ok(())
    }

    /// Queues a caller's message, waiting while the queue is full.
    pub(crate) async fn push_wait(&self, msg: Message) -> Result<(), Closed> {
        let mut item = Some(Outbound::Msg(msg));
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            {
                let mut inner = self.inner.lock();
                if inner.closed {
                    return Err(Closed);
                }
                if inner.q.len() < self.capacity {
                    if let Some(it) = item.take() {
                        inner.q.push_back(it);
                    }
                    unlock_and_wake_writer(inner);
                    return Ok(());
                }
                inner.producers_waiting = true;
                notified.as_mut().enable();
            }
            notified.await;
        }
    }

    /// Ready when the queue is non-empty or closed; otherwise registers the (single) writer's
    /// waker, which the next push or `close` wakes. One lock, no allocation per wait.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.lock();
        if !inner.q.is_empty() || !inner.urgent.is_empty() || inner.closed {
            return Poll::Ready(());
        }
        match &mut inner.writer {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waits until the queue is non-empty or closed.
    pub(crate) async fn ready(&self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// Moves everything queued into `out`. Returns false once the queue is closed.
    pub(crate) fn drain_into(&self, out: &mut VecDeque<Outbound>) -> bool {
        let mut inner = self.inner.lock();
        if inner.closed {
            return false;
        }
        if out.is_empty() {
            std::mem::swap(out, &mut inner.q);
        } else {
            out.extend(inner.q.drain(..));
        }
        if inner.producers_waiting {
            inner.producers_waiting = false;
            self.space.notify_waiters();
        }
        true
    }

    /// Closes the queue, drops its content and releases every waiter.
    pub(crate) fn close(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        inner.q.clear();
        inner.urgent.clear();
        unlock_and_wake_writer(inner);
        self.space.notify_waiters();
    }

    pub(crate) fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.q.len() + inner.urgent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Op;
    use std::time::Duration;

    fn msg(i: u64) -> Message {
        Message::new(Op::Request, i)
    }

    #[tokio::test]
    async fn producers_block_when_full_and_are_released_by_drain_or_close() {
        let q = std::sync::Arc::new(OutQueue::new(2));
        q.push_wait(msg(1)).await.unwrap();
        q.push_wait(msg(2)).await.unwrap();
        let q2 = q.clone();
        let blocked = tokio::spawn(async move { q2.push_wait(msg(3)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!blocked.is_finished(), "third push must wait for space");
        // Control items never wait.
        q.push(Outbound::WsPong(Bytes::new())).unwrap();
        let mut out = VecDeque::new();
        assert!(q.drain_into(&mut out));
        assert_eq!(out.len(), 3);
        tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(q.len(), 1);
        // Fill again and close: the waiter fails with Closed and the content is dropped.
        q.push_wait(msg(4)).await.unwrap();
        let q3 = q.clone();
        let blocked = tokio::spawn(async move { q3.push_wait(msg(5)).await });
        tokio::task::yield_now().await;
        q.close();
        let r = tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r, Err(Closed));
        assert_eq!(q.len(), 0);
        assert_eq!(q.push(Outbound::WsPong(Bytes::new())), Err(Closed));
        assert!(!q.drain_into(&mut out));
    }

    #[tokio::test]
    async fn urgent_items_bypass_a_full_queue_and_wake_the_writer() {
        let q = std::sync::Arc::new(OutQueue::new(1));
        q.push_wait(msg(1)).await.unwrap();
        let q2 = q.clone();
        let w = tokio::spawn(async move { q2.ready().await });
        q.push_urgent(Outbound::WsPong(Bytes::from_static(b"p")))
            .unwrap();
        q.push_urgent(Outbound::Msg(msg(0))).unwrap();
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(q.len(), 3);
        let mut urgent = Vec::new();
        q.take_urgent(&mut urgent);
        assert_eq!(urgent.len(), 2);
        assert!(matches!(&urgent[0], Outbound::WsPong(p) if &p[..] == b"p"));
        assert!(matches!(&urgent[1], Outbound::Msg(m) if m.mux_id == 0));
        q.take_urgent(&mut urgent);
        assert_eq!(urgent.len(), 2, "nothing more");
        let mut out = VecDeque::new();
        assert!(q.drain_into(&mut out));
        assert_eq!(out.len(), 1, "the data item stays in the normal lane");
        q.close();
        assert_eq!(q.push_urgent(Outbound::WsPong(Bytes::new())), Err(Closed));
    }

    /// A waker that counts its wake-ups.
    struct Count(std::sync::atomic::AtomicUsize);
    impl futures::task::ArcWake for Count {
        fn wake_by_ref(me: &std::sync::Arc<Self>) {
            me.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_waiting_writer_is_woken_exactly_once_by_push_urgent_push_and_close() {
        let q = OutQueue::new(8);
        let count = std::sync::Arc::new(Count(0.into()));
        let waker = futures::task::waker(count.clone());
        let mut cx = Context::from_waker(&waker);
        let woken = || count.0.load(Ordering::SeqCst);
        // Waiting twice with the same task registers it once; one push wakes it once.
        assert!(q.poll_ready(&mut cx).is_pending());
        assert!(q.poll_ready(&mut cx).is_pending());
        q.push(Outbound::Msg(msg(1))).unwrap();
        assert_eq!(woken(), 1);
        // Not waiting: a second push wakes nobody.
        q.push(Outbound::Msg(msg(2))).unwrap();
        assert_eq!(woken(), 1);
        assert!(q.poll_ready(&mut cx).is_ready());
        let mut out = VecDeque::new();
        assert!(q.drain_into(&mut out));
        assert_eq!(out.len(), 2);
        assert!(q.poll_ready(&mut cx).is_pending());
        q.push_urgent(Outbound::WsPong(Bytes::new())).unwrap();
        assert_eq!(woken(), 2);
        let mut urgent = Vec::new();
        q.take_urgent(&mut urgent);
        assert_eq!(urgent.len(), 1);
        assert!(q.poll_ready(&mut cx).is_pending());
        q.close();
        assert_eq!(woken(), 3);
        assert!(q.poll_ready(&mut cx).is_ready());
        assert!(!q.drain_into(&mut out));
    }

    #[tokio::test]
    async fn ready_wakes_on_push_and_close() {
        let q = std::sync::Arc::new(OutQueue::new(8));
        let q2 = q.clone();
        let w = tokio::spawn(async move { q2.ready().await });
        tokio::task::yield_now().await;
        q.push(Outbound::Msg(msg(1))).unwrap();
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .unwrap()
            .unwrap();
        let mut out = VecDeque::new();
        q.drain_into(&mut out);
        let q2 = q.clone();
        let w = tokio::spawn(async move { q2.ready().await });
        tokio::task::yield_now().await;
        q.close();
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .unwrap()
            .unwrap();
    }
}
