//! Console-log streaming (LOGGING.md §2.2): a ring of recent entries and up to
//! [`MAX_CONSOLE_SUBSCRIBERS`] live subscribers. Publishing never blocks; a subscriber that
//! does not keep up misses entries, and the misses are counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::entry::{Kind, LogEntry};

/// Entries kept for new console-log subscribers (LOGGING.md §2.2).
pub const CONSOLE_RING_SIZE: usize = 10_000;
/// Most console-log subscribers at once.
pub const MAX_CONSOLE_SUBSCRIBERS: usize = 8;
/// Channel capacity of one subscriber; a slower subscriber misses entries (counted).
pub const SUBSCRIBER_CHANNEL: usize = 10_000;

/// Ring buffer of recent entries plus live subscribers ("console log" streaming).
#[derive(Default)]
pub(crate) struct Feed {
    state: Mutex<FeedState>,
    /// Entries missed by all subscribers so far.
    missed_total: AtomicU64,
}

#[derive(Default)]
struct FeedState {
    ring: std::collections::VecDeque<Arc<LogEntry>>,
    subs: Vec<Sub>,
    next_id: u64,
}

struct Sub {
    id: u64,
    kinds: KindMask,
    tx: tokio::sync::mpsc::Sender<Arc<LogEntry>>,
    missed: Arc<AtomicU64>,
}

/// A set of kinds, one bit per [`Kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindMask(u8);

impl KindMask {
    /// Every kind.
    pub const ALL: KindMask = KindMask(0x1f);

    fn bit(k: Kind) -> u8 {
        match k {
            Kind::Fatal => 1,
            Kind::Warning => 2,
            Kind::Error => 4,
            Kind::Event => 8,
            Kind::Info => 16,
        }
    }

    /// The mask holding exactly `kinds`.
    pub fn of(kinds: &[Kind]) -> KindMask {
        KindMask(kinds.iter().fold(0, |m, k| m | Self::bit(*k)))
    }

    /// Whether `k` is in the mask.
    pub fn contains(self, k: Kind) -> bool {
        self.0 & Self::bit(k) != 0
    }
}

/// Refused subscription.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("too many console log subscribers (at most {MAX_CONSOLE_SUBSCRIBERS})")]
pub struct TooManySubscribers;

/// A live console-log subscription; dropping it unsubscribes.
pub struct ConsoleSubscription {
    /// Recent entries (up to `last`), then live ones.
    pub entries: tokio::sync::mpsc::Receiver<Arc<LogEntry>>,
    missed: Arc<AtomicU64>,
    id: u64,
    feed: Arc<Feed>,
}

impl ConsoleSubscription {
    /// Entries this subscriber missed because it did not keep up (S6: counted).
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl Drop for ConsoleSubscription {
    fn drop(&mut self) {
        let mut st = self.feed.state.lock().unwrap_or_else(|p| p.into_inner());
        st.subs.retain(|s| s.id != self.id);
    }
}

impl Feed {
    /// Registers a subscriber (see [`ConsoleTarget::subscribe`](super::ConsoleTarget::subscribe)).
    pub(crate) fn subscribe(
        feed: &Arc<Feed>,
        kinds: KindMask,
        last: usize,
    ) -> Result<ConsoleSubscription, TooManySubscribers> {
        let mut st = feed.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.subs.len() >= MAX_CONSOLE_SUBSCRIBERS {
            return Err(TooManySubscribers);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(SUBSCRIBER_CHANNEL);
        let recent: Vec<Arc<LogEntry>> = st
            .ring
            .iter()
            .filter(|e| kinds.contains(e.level))
            .cloned()
            .collect();
        let skip = recent.len().saturating_sub(last.min(SUBSCRIBER_CHANNEL));
        for e in recent.into_iter().skip(skip) {
            let _ = tx.try_send(e);
        }
        let missed = Arc::new(AtomicU64::new(0));
        st.next_id += 1;
        let id = st.next_id;
        st.subs.push(Sub {
            id,
            kinds,
            tx,
            missed: missed.clone(),
        });
        Ok(ConsoleSubscription {
            entries: rx,
            missed,
            id,
            feed: feed.clone(),
        })
    }

    /// Hands `e` to the ring and to every subscriber that wants its kind. Returns the ids of
    /// subscribers that missed an entry for the first time (to be reported once each, after
    /// the feed's lock is released); usually empty, which allocates nothing.
    pub(crate) fn publish(&self, e: &Arc<LogEntry>) -> Vec<u64> {
        let mut first_misses = Vec::new();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.ring.len() == CONSOLE_RING_SIZE {
            st.ring.pop_front();
        }
        st.ring.push_back(e.clone());
        for s in &st.subs {
            if s.kinds.contains(e.level) && s.tx.try_send(e.clone()).is_err() {
                self.missed_total.fetch_add(1, Ordering::Relaxed);
                if s.missed.fetch_add(1, Ordering::Relaxed) == 0 {
                    first_misses.push(s.id);
                }
            }
        }
        first_misses
    }

    /// Entries missed by all subscribers so far.
    pub(crate) fn missed_total(&self) -> u64 {
        self.missed_total.load(Ordering::Relaxed)
    }
}
