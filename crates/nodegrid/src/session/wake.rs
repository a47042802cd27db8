//! Waking the tasks that wait on a stream (consumers, senders waiting for credit, handlers
//! waiting for input or tokens), with the reader's wake-ups held until it has handled a whole
//! frame.

use std::cell::RefCell;
use std::task::{Context, Waker};

/// Stores the task's waker in `slot`, without a clone when the same task is already there.
pub(crate) fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
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

/// Wakes the task parked in `w`, or holds the wake-up while this thread's reader handles a
/// frame.
pub(crate) fn wake(w: &mut Option<Waker>) {
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
pub(crate) fn credit_wake_at(capacity: u32) -> u32 {
    (capacity / 4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::AssertUnwindSafe;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

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
