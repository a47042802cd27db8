//! The outbound queue of one session (PROTOCOL.md §8), drained by the session's writer.
//!
//! Three lanes, each bounded:
//!
//! - **Data** (`push_wait`, `poll_space` + `push_data`): what local code sends and can wait
//!   for: callers' requests, stream opens and input items, handlers' output items, answers of
//!   handlers that ran in their own task. Senders wait while the queue holds `outbound_queue`
//!   entries or `outbound_data_bytes` bytes of data (back-pressure, cancellable by dropping
//!   the future).
//! - **Control** (`push`): what the reader produces while it handles the peer's messages
//!   (errors, answers of handlers that finish at once, acks, credits) and the small messages
//!   that end or cancel calls. It never waits, so the reader never blocks inside a frame
//!   (§12.8); instead the reader checks `control_full` after each message and, at the bound
//!   (`outbound_control_bytes`), stops reading from the peer until the writer has drained the
//!   lane below half of it (`poll_control_drained`). A peer that sends but does not read is
//!   so slowed to its own reading speed, and ended by the write timeout if it reads nothing.
//! - **Urgent**: liveness, written before everything else and checked by the writer between
//!   frames (PROTOCOL.md §12 item 10). It holds at most one WebSocket pong, one connection
//!   pong and one connection ping: a newer one replaces an unsent one (only the latest ping
//!   needs an answer), so it cannot grow whatever the peer sends.
//!
//! Control and data share one FIFO, so a stream's messages keep their order (sequence numbers
//! are assigned when a message is built). A message counts its payload plus [`ITEM_OVERHEAD`]
//! against its lane from when it is queued until the writer reports it written (`release`),
//! so what the writer has taken but not yet written counts too.
//!
//! The queue belongs to one session: when it closes, its content is dropped, so nothing
//! queued for a dead session reaches the next one (§12.5).

use crate::error::Error;
use crate::stats::{ConnCounters, Padded};
use crate::wire::{Limits, Message, Op};
use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// What a queued message costs its lane besides its payload: its slot in the queue and its
/// allocations (a `Message` is about 100 bytes; a small payload has an allocation of its own).
pub(crate) const ITEM_OVERHEAD: usize = 128;

/// What `m` counts against its lane's byte bound.
pub(crate) fn cost(m: &Message) -> usize {
    m.payload.len() + ITEM_OVERHEAD
}

/// One liveness item for the writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A grid message (connection ping or pong).
    Msg(Message),
    /// A WebSocket pong answering a WebSocket ping.
    WsPong(Bytes),
}

/// The lane a message was queued on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    Control,
    Data,
}

/// A queued grid message and its lane.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) msg: Message,
    pub(crate) lane: Lane,
}

/// The session has ended; nothing more can be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

/// The bounds of one queue (from `GridConfig`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// Entries before data senders wait.
    pub entries: usize,
    /// Bytes of data before data senders wait.
    pub data_bytes: usize,
    /// Bytes of control messages at which the reader stops reading.
    pub control_bytes: usize,
}

/// Bytes written by the writer and not yet reported with `release`, per lane.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    pub control: usize,
    pub data: usize,
}

impl Written {
    pub(crate) fn add(&mut self, q: &Queued) {
        match q.lane {
            Lane::Control => self.control += cost(&q.msg),
            Lane::Data => self.data += cost(&q.msg),
        }
    }

    pub(crate) fn total(&self) -> usize {
        self.control + self.data
    }
}

/// A snapshot of the queue's size.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueSize {
    /// Messages queued and not yet taken by the writer, liveness items included.
    pub entries: usize,
    /// Bytes counted on the control lane now, and at most so far.
    pub control: usize,
    pub control_peak: usize,
    /// Bytes counted on the data lane now, and at most so far.
    pub data: usize,
    pub data_peak: usize,
}

/// The liveness lane: one slot per kind, a newer item replaces an unsent one.
#[derive(Default)]
struct Urgent {
    ws_pong: Option<Bytes>,
    pong: Option<Message>,
    ping: Option<Message>,
}

impl Urgent {
    fn len(&self) -> usize {
        self.ws_pong.is_some() as usize
            + self.pong.is_some() as usize
            + self.ping.is_some() as usize
    }
}

/// The fields every push and every writer wake-up touch come first and share the lock's
/// cache line; the liveness slots (about 220 bytes) and the rest follow.
#[repr(C)]
struct Inner {
    q: VecDeque<Queued>,
    /// The writer's waker while it waits for items (taken and woken by the next push).
    writer: Option<Waker>,
    control: usize,
    data: usize,
    closed: bool,
    /// What `Lookout` says (to store there only when it changes).
    control_flag: bool,
    data_flag: bool,
    // Cold.
    control_peak: usize,
    data_peak: usize,
    /// Data senders waiting for room.
    senders: Vec<Waker>,
    /// The reader while it waits for the control lane to drain.
    reader: Option<Waker>,
    urgent: Urgent,
}

impl Inner {
    fn data_has_room(&self, b: &Bounds) -> bool {
        self.q.len() < b.entries && self.data < b.data_bytes
    }
}

/// Releases the lock, then wakes the writer if it was waiting (it runs without the lock).
fn unlock_and_wake_writer(mut inner: MutexGuard<'_, Inner>) {
    let w = inner.writer.take();
    drop(inner);
    if let Some(w) = w {
        w.wake();
    }
}

/// Wakes what `release_locked` returned (after the lock is released).
fn wake_all((senders, reader): (Vec<Waker>, Option<Waker>)) {
    for s in senders {
        s.wake();
    }
    if let Some(r) = reader {
        r.wake();
    }
}

/// Stores `cx`'s waker in `slot` unless the same task is already there.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// What the hot paths check without the lock.
#[derive(Default)]
struct Lookout {
    /// Whether the control lane is at its bound (the reader stops reading).
    control_full: AtomicBool,
    /// Whether the data lane is at its byte bound (stream senders wait).
    data_full: AtomicBool,
    /// The peer's `max_message_size` once known, 0 while unknown.
    peer_max_message: AtomicUsize,
}

/// Aligned to a cache line: its lock is the most contended word of a session.
#[repr(align(128))]
pub(crate) struct OutQueue {
    inner: Mutex<Inner>,
    /// Whether `urgent` may be non-empty (checked by the writer without the lock).
    has_urgent: AtomicBool,
    /// Read on the hot paths without the lock, written only when a lane crosses its bound:
    /// on a line of its own, so that pushes (which write the lock's line) do not make every
    /// reader of these miss.
    lookout: Padded<Lookout>,
    bounds: Bounds,
    counters: Arc<dyn AsRef<ConnCounters> + Send + Sync>,
}

impl OutQueue {
    /// A queue with `bounds`, counting what happens at them in `counters`.
    pub(crate) fn new(
        bounds: Bounds,
        counters: Arc<dyn AsRef<ConnCounters> + Send + Sync>,
    ) -> Self {
        OutQueue {
            inner: Mutex::new(Inner {
                q: VecDeque::new(),
                urgent: Urgent::default(),
                closed: false,
                writer: None,
                senders: Vec::new(),
                reader: None,
                control: 0,
                control_peak: 0,
                data: 0,
                data_peak: 0,
                control_flag: false,
                data_flag: false,
            }),
            has_urgent: AtomicBool::new(false),
            lookout: Padded(Lookout::default()),
            bounds: Bounds {
                entries: bounds.entries.max(1),
                data_bytes: bounds.data_bytes.max(1),
                control_bytes: bounds.control_bytes.max(1),
            },
            counters,
        }
    }

    fn counters(&self) -> &ConnCounters {
        (*self.counters).as_ref()
    }

    /// Queues a liveness item (connection ping or pong, WebSocket pong) ahead of all data,
    /// replacing an unsent one of the same kind (counted in `pongs_replaced` for pongs).
    pub(crate) fn push_urgent(&self, item: Outbound) -> Result<(), Closed> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(Closed);
        }
        let replaced = match item {
            Outbound::WsPong(p) => inner.urgent.ws_pong.replace(p).is_some(),
            Outbound::Msg(m) if m.op == Op::Pong => inner.urgent.pong.replace(m).is_some(),
            Outbound::Msg(m) => {
                inner.urgent.ping = Some(m);
                false
            }
        };
        self.has_urgent.store(true, Ordering::Release);
        unlock_and_wake_writer(inner);
        if replaced {
            ConnCounters::add(&self.counters().pongs_replaced, 1);
        }
        Ok(())
    }

    /// Moves the urgent items into `out` (cheap when there are none: one atomic load).
    pub(crate) fn take_urgent(&self, out: &mut Vec<Outbound>) {
        if !self.has_urgent.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.inner.lock();
        self.has_urgent.store(false, Ordering::Relaxed);
        let u = &mut inner.urgent;
        out.extend(u.ws_pong.take().map(Outbound::WsPong));
        out.extend(u.pong.take().map(Outbound::Msg));
        out.extend(u.ping.take().map(Outbound::Msg));
    }

    fn enqueue(&self, inner: &mut Inner, msg: Message, lane: Lane) {
        let c = cost(&msg);
        match lane {
            Lane::Control => {
                inner.control += c;
                inner.control_peak = inner.control_peak.max(inner.control);
            }
            Lane::Data => {
                inner.data += c;
                inner.data_peak = inner.data_peak.max(inner.data);
            }
        }
        inner.q.push_back(Queued { msg, lane });
        self.update_lookout(inner);
    }

    /// Sets the lock-free flags after the lanes changed (a store only when one flips).
    fn update_lookout(&self, inner: &mut Inner) {
        let control_full = inner.control >= self.bounds.control_bytes;
        if control_full != inner.control_flag {
            inner.control_flag = control_full;
            self.lookout
                .control_full
                .store(control_full, Ordering::Relaxed);
        }
        let data_full = inner.data >= self.bounds.data_bytes;
        if data_full != inner.data_flag {
            inner.data_flag = data_full;
            self.lookout.data_full.store(data_full, Ordering::Relaxed);
        }
    }

    /// Subtracts what the writer has written from the lanes (under the lock); returns who to
    /// wake once the lock is released: the data senders if there is room, the reader if the
    /// control lane is below half its bound.
    fn release_locked(&self, inner: &mut Inner, w: &mut Written) -> (Vec<Waker>, Option<Waker>) {
        if w.total() == 0 {
            return (Vec::new(), None);
        }
        inner.control = inner.control.saturating_sub(w.control);
        inner.data = inner.data.saturating_sub(w.data);
        *w = Written::default();
        self.update_lookout(inner);
        let senders = if !inner.senders.is_empty() && inner.data_has_room(&self.bounds) {
            std::mem::take(&mut inner.senders)
        } else {
            Vec::new()
        };
        let reader = if inner.control <= self.bounds.control_bytes / 2 {
            inner.reader.take()
        } else {
            None
        };
        (senders, reader)
    }

    /// Records the peer's `max_message_size` (`None`: unknown).
    pub(crate) fn set_peer_max_message(&self, limit: Option<usize>) {
        self.lookout
            .peer_max_message
            .store(limit.unwrap_or(0), Ordering::Relaxed);
    }

    /// The peer's `max_message_size`, if known.
    pub(crate) fn peer_max_message(&self) -> Option<usize> {
        match self.lookout.peer_max_message.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// `Err(TooLarge)` if a payload of `len` bytes does not fit in a message the peer accepts
    /// (when its limit is known): such a message is never sent.
    pub(crate) fn check_peer_size(&self, len: usize) -> Result<(), Error> {
        match self.peer_max_message() {
            Some(limit)
                if len
                    > (Limits {
                        max_message_size: limit,
                    })
                    .max_payload() =>
            {
                Err(Error::TooLarge { size: len, limit })
            }
            _ => Ok(()),
        }
    }

    /// Queues a control message without waiting (see `control_full`).
    pub(crate) fn push(&self, msg: Message) -> Result<(), Closed> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(Closed);
        }
        self.enqueue(&mut inner, msg, Lane::Control);
        unlock_and_wake_writer(inner);
        Ok(())
    }

    /// Queues a data message without waiting, after `poll_space` said there is room.
    pub(crate) fn push_data(&self, msg: Message) -> Result<(), Closed> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(Closed);
        }
        self.enqueue(&mut inner, msg, Lane::Data);
        unlock_and_wake_writer(inner);
        Ok(())
    }

    /// Ready when the data lane is below its byte bound (stream items, which are bounded in
    /// number by their credits, do not count entries); otherwise registers the task, which the
    /// writer wakes once it has drained below the bound. A closed queue is ready too (the push
    /// that follows fails). One atomic load when there is room.
    pub(crate) fn poll_space(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.lookout.data_full.load(Ordering::Relaxed) {
            return Poll::Ready(());
        }
        let mut inner = self.inner.lock();
        if inner.closed || inner.data < self.bounds.data_bytes {
            return Poll::Ready(());
        }
        if !inner.senders.iter().any(|w| w.will_wake(cx.waker())) {
            inner.senders.push(cx.waker().clone());
            drop(inner);
            ConnCounters::add(&self.counters().data_waits, 1);
        }
        Poll::Pending
    }

    /// Queues a caller's message, waiting while the data lane is full.
    pub(crate) async fn push_wait(&self, msg: Message) -> Result<(), Closed> {
        let mut item = Some(msg);
        std::future::poll_fn(|cx| {
            let mut inner = self.inner.lock();
            if inner.closed {
                return Poll::Ready(Err(Closed));
            }
            if inner.data_has_room(&self.bounds) {
                if let Some(m) = item.take() {
                    self.enqueue(&mut inner, m, Lane::Data);
                }
                unlock_and_wake_writer(inner);
                return Poll::Ready(Ok(()));
            }
            if !inner.senders.iter().any(|w| w.will_wake(cx.waker())) {
                inner.senders.push(cx.waker().clone());
                drop(inner);
                ConnCounters::add(&self.counters().data_waits, 1);
            }
            Poll::Pending
        })
        .await
    }

    /// Whether the control lane is at its bound: the reader stops reading (and waits with
    /// `poll_control_drained`). One atomic load.
    pub(crate) fn control_full(&self) -> bool {
        self.lookout.control_full.load(Ordering::Relaxed)
    }

    /// Ready once the control lane has drained to half its bound or the queue is closed.
    pub(crate) fn poll_control_drained(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.inner.lock();
        if inner.closed || inner.control <= self.bounds.control_bytes / 2 {
            return Poll::Ready(());
        }
        register(&mut inner.reader, cx);
        Poll::Pending
    }

    /// Ready when the queue is non-empty or closed; otherwise registers the (single) writer's
    /// waker, which the next push or `close` wakes. Releases `written` first (see `release`),
    /// under the same lock. One lock, no allocation per wait.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, written: &mut Written) -> Poll<()> {
        let mut inner = self.inner.lock();
        let wake = self.release_locked(&mut inner, written);
        // `has_urgent` is exact under the lock (set by `push_urgent`, cleared by `take_urgent`)
        // and, unlike the slots, on no line a push touches.
        let urgent = self.has_urgent.load(Ordering::Relaxed);
        let r = if !inner.q.is_empty() || urgent || inner.closed {
            Poll::Ready(())
        } else {
            register(&mut inner.writer, cx);
            Poll::Pending
        };
        drop(inner);
        wake_all(wake);
        r
    }

    /// Waits until the queue is non-empty or closed, releasing `written` first.
    pub(crate) async fn ready(&self, written: &mut Written) {
        std::future::poll_fn(|cx| self.poll_ready(cx, written)).await
    }

    /// Releases `written`, then moves everything queued into `out`. Returns false once the
    /// queue is closed. What is moved still counts against the lanes until the writer
    /// releases it (here, in `ready` or in `release`).
    pub(crate) fn drain_into(&self, out: &mut VecDeque<Queued>, written: &mut Written) -> bool {
        let mut inner = self.inner.lock();
        if inner.closed {
            return false;
        }
        let (mut senders, reader) = self.release_locked(&mut inner, written);
        if out.is_empty() {
            std::mem::swap(out, &mut inner.q);
        } else {
            out.extend(inner.q.drain(..));
        }
        // Room by entries again: senders that waited for it may go (unless bytes hold them).
        if !inner.senders.is_empty() && inner.data_has_room(&self.bounds) {
            senders.append(&mut inner.senders);
        }
        drop(inner);
        wake_all((senders, reader));
        true
    }

    /// The writer has written `w`: it no longer counts against the lanes. Wakes the data
    /// senders once there is room, and the reader once the control lane is below half. (The
    /// writer calls this in the middle of a large batch; otherwise `ready` and `drain_into`
    /// release under the lock they take anyway.)
    pub(crate) fn release(&self, w: &mut Written) {
        if w.total() == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        let wake = self.release_locked(&mut inner, w);
        drop(inner);
        wake_all(wake);
    }

    /// Closes the queue, drops its content and releases every waiter.
    pub(crate) fn close(&self) {
        let mut inner = self.inner.lock();
        inner.closed = true;
        for q in inner.q.drain(..).collect::<Vec<_>>() {
            match q.lane {
                Lane::Control => inner.control -= cost(&q.msg),
                Lane::Data => inner.data -= cost(&q.msg),
            }
        }
        self.update_lookout(&mut inner);
        inner.urgent = Urgent::default();
        let senders = std::mem::take(&mut inner.senders);
        let reader = inner.reader.take();
        unlock_and_wake_writer(inner);
        for s in senders {
            s.wake();
        }
        if let Some(r) = reader {
            r.wake();
        }
    }

    /// Messages queued and not yet taken by the writer, liveness items included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.q.len() + inner.urgent.len()
    }

    /// The queue's size now and its peaks.
    pub(crate) fn size(&self) -> QueueSize {
        let inner = self.inner.lock();
        QueueSize {
            entries: inner.q.len() + inner.urgent.len(),
            control: inner.control,
            control_peak: inner.control_peak,
            data: inner.data,
            data_peak: inner.data_peak,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn msg(i: u64) -> Message {
        Message::new(Op::Request, i)
    }

    fn sized(i: u64, payload: usize) -> Message {
        let mut m = Message::new(Op::Response, i);
        m.payload = Bytes::from(vec![0u8; payload]);
        m
    }

    fn queue(
        entries: usize,
        data_bytes: usize,
        control_bytes: usize,
    ) -> (Arc<OutQueue>, Arc<ConnCounters>) {
        let c = Arc::new(ConnCounters::default());
        let q = OutQueue::new(
            Bounds {
                entries,
                data_bytes,
                control_bytes,
            },
            c.clone(),
        );
        (Arc::new(q), c)
    }

    fn release_all(q: &OutQueue, batch: &mut VecDeque<Queued>) {
        let mut w = Written::default();
        for it in batch.drain(..) {
            w.add(&it);
        }
        q.release(&mut w);
    }

    #[tokio::test]
    async fn producers_block_when_full_and_are_released_by_drain_or_close() {
        let (q, c) = queue(2, usize::MAX, usize::MAX);
        q.push_wait(msg(1)).await.unwrap();
        q.push_wait(msg(2)).await.unwrap();
        let q2 = q.clone();
        let blocked = tokio::spawn(async move { q2.push_wait(msg(3)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!blocked.is_finished(), "third push must wait for space");
        assert_eq!(c.data_waits.load(Ordering::Relaxed), 1);
        // Control items never wait.
        q.push(msg(9)).unwrap();
        let mut out = VecDeque::new();
        assert!(q.drain_into(&mut out, &mut Written::default()));
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
        assert_eq!(q.push(msg(6)), Err(Closed));
        assert!(!q.drain_into(&mut out, &mut Written::default()));
    }

    #[tokio::test]
    async fn data_senders_wait_for_bytes_until_the_writer_releases_what_it_wrote() {
        // Two 1000-byte messages fill a 2000-byte data lane (each counts 1128).
        let (q, c) = queue(1000, 2000, usize::MAX);
        q.push_wait(sized(1, 1000)).await.unwrap();
        q.push_wait(sized(2, 1000)).await.unwrap();
        assert_eq!(q.size().data, 2 * 1128);
        let q2 = q.clone();
        let blocked = tokio::spawn(async move { q2.push_wait(sized(3, 10)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Taken by the writer but not written: still counted, the sender still waits.
        let mut batch = VecDeque::new();
        assert!(q.drain_into(&mut batch, &mut Written::default()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!blocked.is_finished());
        assert_eq!(q.size().data, 2 * 1128);
        // Written: released, the sender goes.
        release_all(&q, &mut batch);
        tokio::time::timeout(Duration::from_secs(5), blocked)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let s = q.size();
        assert_eq!((s.data, s.data_peak, s.control), (138, 2256, 0));
        assert_eq!(c.data_waits.load(Ordering::Relaxed), 1);
        // A message larger than the whole bound still goes when the lane is below it.
        q.push_wait(sized(4, 5000)).await.unwrap();
        assert_eq!(q.size().data, 138 + 5128);
    }

    #[test]
    fn the_control_lane_never_waits_and_tells_the_reader_to_pause_until_half_drained() {
        let (q, _) = queue(1, 1, 1000);
        let count = Arc::new(Count(0.into()));
        let waker = futures::task::waker(count.clone());
        let mut cx = Context::from_waker(&waker);
        // Far beyond the entry bound and the data bound: control never waits.
        for i in 0..3 {
            q.push(sized(i, 200)).unwrap();
        }
        assert!(!q.control_full(), "984 bytes");
        q.push(sized(3, 200)).unwrap();
        assert!(q.control_full(), "1312 bytes");
        assert!(q.poll_control_drained(&mut cx).is_pending());
        let mut batch = VecDeque::new();
        q.drain_into(&mut batch, &mut Written::default());
        // Written one by one: 984 and 656 are above half the bound, 328 is not.
        let mut w = Written::default();
        for expect_woken in [0, 0, 1, 1] {
            w.add(&batch.pop_front().unwrap());
            q.release(&mut w);
            assert_eq!(count.0.load(Ordering::SeqCst), expect_woken);
        }
        assert!(q.poll_control_drained(&mut cx).is_ready());
        assert!(!q.control_full());
        assert_eq!(q.size().control_peak, 1312);
        // Closing releases a waiting reader too.
        for i in 0..4 {
            q.push(sized(i, 200)).unwrap();
        }
        assert!(q.poll_control_drained(&mut cx).is_pending());
        q.close();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(q.poll_control_drained(&mut cx).is_ready());
        assert_eq!(q.size().control, 0);
    }

    #[tokio::test]
    async fn urgent_items_bypass_a_full_queue_and_a_newer_pong_replaces_an_unsent_one() {
        let (q, c) = queue(1, usize::MAX, usize::MAX);
        q.push_wait(msg(1)).await.unwrap();
        let q2 = q.clone();
        let w = tokio::spawn(async move { q2.ready(&mut Written::default()).await });
        for i in 0..1000u32 {
            q.push_urgent(Outbound::WsPong(Bytes::from(i.to_be_bytes().to_vec())))
                .unwrap();
        }
        for seq in 0..1000 {
            let mut pong = Message::new(Op::Pong, 0);
            pong.seq = seq;
            q.push_urgent(Outbound::Msg(pong)).unwrap();
        }
        q.push_urgent(Outbound::Msg(Message::new(Op::Ping, 0)))
            .unwrap();
        q.push_urgent(Outbound::Msg(Message::new(Op::Ping, 0)))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(q.len(), 4, "one data item, one of each liveness kind");
        assert_eq!(c.pongs_replaced.load(Ordering::Relaxed), 1998);
        let mut urgent = Vec::new();
        q.take_urgent(&mut urgent);
        assert_eq!(urgent.len(), 3);
        assert!(matches!(&urgent[0], Outbound::WsPong(p) if p[..] == 999u32.to_be_bytes()));
        assert!(matches!(&urgent[1], Outbound::Msg(m) if m.op == Op::Pong && m.seq == 999));
        assert!(matches!(&urgent[2], Outbound::Msg(m) if m.op == Op::Ping));
        q.take_urgent(&mut urgent);
        assert_eq!(urgent.len(), 3, "nothing more");
        let mut out = VecDeque::new();
        assert!(q.drain_into(&mut out, &mut Written::default()));
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
        let (q, _) = queue(8, usize::MAX, usize::MAX);
        let count = std::sync::Arc::new(Count(0.into()));
        let waker = futures::task::waker(count.clone());
        let mut cx = Context::from_waker(&waker);
        let woken = || count.0.load(Ordering::SeqCst);
        // Waiting twice with the same task registers it once; one push wakes it once.
        assert!(q.poll_ready(&mut cx, &mut Written::default()).is_pending());
        assert!(q.poll_ready(&mut cx, &mut Written::default()).is_pending());
        q.push(msg(1)).unwrap();
        assert_eq!(woken(), 1);
        // Not waiting: a second push wakes nobody.
        q.push(msg(2)).unwrap();
        assert_eq!(woken(), 1);
        assert!(q.poll_ready(&mut cx, &mut Written::default()).is_ready());
        let mut out = VecDeque::new();
        assert!(q.drain_into(&mut out, &mut Written::default()));
        assert_eq!(out.len(), 2);
        assert!(q.poll_ready(&mut cx, &mut Written::default()).is_pending());
        q.push_urgent(Outbound::WsPong(Bytes::new())).unwrap();
        assert_eq!(woken(), 2);
        let mut urgent = Vec::new();
        q.take_urgent(&mut urgent);
        assert_eq!(urgent.len(), 1);
        assert!(q.poll_ready(&mut cx, &mut Written::default()).is_pending());
        q.close();
        assert_eq!(woken(), 3);
        assert!(q.poll_ready(&mut cx, &mut Written::default()).is_ready());
        assert!(!q.drain_into(&mut out, &mut Written::default()));
    }

    #[tokio::test]
    async fn ready_wakes_on_push_and_close() {
        let (q, _) = queue(8, usize::MAX, usize::MAX);
        let q2 = q.clone();
        let w = tokio::spawn(async move { q2.ready(&mut Written::default()).await });
        tokio::task::yield_now().await;
        q.push(msg(1)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .unwrap()
            .unwrap();
        let mut out = VecDeque::new();
        q.drain_into(&mut out, &mut Written::default());
        let q2 = q.clone();
        let w = tokio::spawn(async move { q2.ready(&mut Written::default()).await });
        tokio::task::yield_now().await;
        q.close();
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .unwrap()
            .unwrap();
    }
}
