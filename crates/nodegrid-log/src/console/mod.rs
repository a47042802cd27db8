//! The console target (LOGGING.md §2.2): always first in the system list and the only place
//! failure reports about targets go (S3). Its own write errors are counted and go nowhere.

use std::any::Any;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod feed;
mod render;

use crate::entry::{Api, ErrorInfo, Kind, LogEntry, Record};
use crate::logonce::LogOnce;
use crate::target::{
    BoxFuture, Failure, SendError, ShutdownReport, Target, TargetKind, TargetStats,
};
use feed::Feed;
pub use feed::{
    ConsoleSubscription, KindMask, TooManySubscribers, CONSOLE_RING_SIZE, MAX_CONSOLE_SUBSCRIBERS,
    SUBSCRIBER_CHANNEL,
};
use render::render;
pub use render::ConsoleMode;

/// An in-memory sink for console output, for tests and for callers that want to inspect it.
#[derive(Clone, Debug, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// A new, empty capture buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, as text.
    pub fn contents(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The console target.
pub struct ConsoleTarget {
    mode: ConsoleMode,
    out: Mutex<Box<dyn Write + Send>>,
    total: AtomicU64,
    failed: AtomicU64,
    reports: AtomicU64,
    once: LogOnce,
    feed: Arc<Feed>,
}

impl std::fmt::Debug for ConsoleTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleTarget")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl ConsoleTarget {
    /// A console writing to stderr.
    pub fn stderr(mode: ConsoleMode) -> Self {
        Self::with_writer(mode, Box::new(std::io::stderr()))
    }

    /// A console writing to `out`.
    pub fn with_writer(mode: ConsoleMode, out: Box<dyn Write + Send>) -> Self {
        ConsoleTarget {
            mode,
            out: Mutex::new(out),
            total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            reports: AtomicU64::new(0),
            once: LogOnce::default(),
            feed: Arc::default(),
        }
    }

    /// A console writing into a [`Capture`] (returned alongside).
    pub fn capture(mode: ConsoleMode) -> (Self, Capture) {
        let c = Capture::new();
        (Self::with_writer(mode, Box::new(c.clone())), c)
    }

    /// The presentation mode.
    pub fn mode(&self) -> ConsoleMode {
        self.mode
    }

    /// Failure reports printed so far (after de-duplication).
    pub fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }

    /// Reports a failure about a target: de-duplicated by `id` (log-once), written to this
    /// console only, never to any other target (S3). Returns whether it was printed.
    pub fn report_once(&self, id: &str, text: &str) -> bool {
        let verdict = self.once.check(id, text);
        for (_, etext, n) in &verdict.expired {
            self.report_now(&format!("{etext} (repeated {n} times in the last hour)"));
        }
        if verdict.log {
            self.report_now(text);
        }
        verdict.log
    }

    /// Reports a failure of class `class` about `target`, once per target and class per
    /// log-once window (LOGGING.md §1.8). `text` must not carry changing counts.
    pub(crate) fn report(&self, target: &str, class: Failure, text: &str) -> bool {
        self.report_once(&format!("{target}/{}", class.as_str()), text)
    }

    /// Writes a failure report now, without de-duplication (used for periodic summaries).
    pub(crate) fn report_now(&self, text: &str) {
        self.reports.fetch_add(1, Ordering::Relaxed);
        let mut e = LogEntry::new(Kind::Error);
        e.api = Some(Api {
            name: "SYSTEM.logging".into(),
            ..Default::default()
        });
        e.error = Some(ErrorInfo {
            message: text.to_string(),
            ..Default::default()
        });
        self.publish_and_write(&Arc::new(e));
    }

    /// The fatal path (LOGGING.md §1.7): renders a FATAL entry with `message` and `err` to
    /// this console only (never to any other target) and exits the process with status 1.
    pub fn fatal(&self, message: &str, err: &dyn std::error::Error) -> ! {
        let mut e = LogEntry::new(Kind::Fatal);
        e.message = message.to_string();
        e.error = Some(ErrorInfo {
            message: format!("{message}: {err}"),
            ..Default::default()
        });
        self.write_entry(&e);
        std::process::exit(1)
    }

    /// Subscribes to the console log: first the last `last` entries of the kinds in
    /// `kinds` (from a ring of [`CONSOLE_RING_SIZE`]), then live ones. Publishing never
    /// blocks; a subscriber that does not keep up misses entries, counted in
    /// [`ConsoleSubscription::missed`]. Subscribing never re-registers the console target.
    pub fn subscribe(
        &self,
        kinds: KindMask,
        last: usize,
    ) -> Result<ConsoleSubscription, TooManySubscribers> {
        Feed::subscribe(&self.feed, kinds, last)
    }

    /// Writes one entry now (the console target's `send`).
    pub fn write_entry(&self, e: &LogEntry) {
        self.publish_and_write(&Arc::new(e.clone()));
    }

    fn publish_and_write(&self, e: &Arc<LogEntry>) {
        let first_misses = self.feed.publish(e);
        self.write_only(e);
        // LOGGING.md §4.3: a subscriber that misses entries is reported, once per subscriber
        // (the count is in `ConsoleSubscription::missed` and in the periodic summary). The
        // report is published too; the subscriber misses it as well, which is counted but
        // reported no more, so this ends here.
        for id in first_misses {
            self.report(
                &format!("console-subscriber-{id}"),
                Failure::Missed,
                &format!(
                    "console log subscriber {id} does not keep up: entries are missed \
                     (counted per subscriber, summarised periodically)"
                ),
            );
        }
    }

    /// Entries that console-log subscribers missed because they did not keep up, all
    /// subscribers together, since start.
    pub fn subscriber_misses(&self) -> u64 {
        self.feed.missed_total()
    }

    fn write_only(&self, e: &LogEntry) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let text = match render(self.mode, e) {
            Some(t) => t,
            None => return,
        };
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Target for ConsoleTarget {
    fn name(&self) -> &str {
        "console"
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Console
    }

    fn send(&self, record: Record) -> Result<(), SendError> {
        // The console is never an audit target; an audit record handed here is ignored.
        if let Record::Log(e) = record {
            self.publish_and_write(&e);
        }
        Ok(())
    }

    fn stats(&self) -> TargetStats {
        let failed = self.failed.load(Ordering::Relaxed);
        let total = self.total.load(Ordering::Relaxed);
        TargetStats {
            name: "console".into(),
            total: total.max(failed),
            sent: total.saturating_sub(failed),
            failed,
            online: true,
            ..Default::default()
        }
    }

    fn cancel(&self) -> BoxFuture<()> {
        Box::pin(async {})
    }

    fn shutdown(&self, _deadline: Instant) -> BoxFuture<ShutdownReport> {
        Box::pin(async { ShutdownReport::default() })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_once_deduplicates() {
        let (c, cap) = ConsoleTarget::capture(ConsoleMode::Json);
        assert!(c.report_once("logger-a", "connection refused"));
        assert!(!c.report_once("logger-a", "connection refused"));
        assert!(c.report_once("logger-b", "connection refused"));
        assert_eq!(c.reports(), 2);
        assert_eq!(cap.contents().lines().count(), 2);
    }
}

#[cfg(test)]
mod feed_tests {
    // The subscriber feed, tested through the console target that owns it.
    use super::feed::*;
    use super::*;
    use crate::entry::{Kind, LogEntry};

    fn entry(k: Kind, m: &str) -> LogEntry {
        let mut e = LogEntry::new(k);
        e.message = m.into();
        e
    }

    #[test]
    fn subscribers_get_recent_then_live_entries_filtered_by_kind() {
        let (c, _cap) = ConsoleTarget::capture(ConsoleMode::Json);
        for i in 0..5 {
            c.write_entry(&entry(Kind::Info, &format!("i{i}")));
        }
        c.write_entry(&entry(Kind::Error, "e0"));
        let mut s = c
            .subscribe(KindMask::of(&[Kind::Info]), 2)
            .expect("subscribe");
        let mut all = c.subscribe(KindMask::ALL, 100).expect("subscribe");
        c.write_entry(&entry(Kind::Info, "live"));
        c.write_entry(&entry(Kind::Error, "e1"));
        let mut got = Vec::new();
        while let Ok(e) = s.entries.try_recv() {
            got.push(e.message.clone());
        }
        assert_eq!(got, vec!["i3", "i4", "live"]);
        let mut n = 0;
        while all.entries.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 8);
        assert_eq!(s.missed(), 0);
    }

    #[test]
    fn at_most_eight_subscribers_and_drop_unsubscribes() {
        let (c, _cap) = ConsoleTarget::capture(ConsoleMode::Json);
        let subs: Vec<_> = (0..MAX_CONSOLE_SUBSCRIBERS)
            .map(|_| c.subscribe(KindMask::ALL, 0).expect("subscribe"))
            .collect();
        assert_eq!(
            c.subscribe(KindMask::ALL, 0).err(),
            Some(TooManySubscribers)
        );
        drop(subs);
        assert!(c.subscribe(KindMask::ALL, 0).is_ok());
    }

    #[test]
    fn slow_subscriber_misses_are_counted_and_reported_once() {
        let (c, cap) = ConsoleTarget::capture(ConsoleMode::Quiet);
        let s = c.subscribe(KindMask::ALL, 0).expect("subscribe");
        let errors_only = c
            .subscribe(KindMask::of(&[Kind::Error]), 0)
            .expect("subscribe");
        for _ in 0..(SUBSCRIBER_CHANNEL + 7) {
            c.write_entry(&entry(Kind::Info, "x"));
        }
        // 7 entries, and the report about them, which it missed too. Before: the 7 misses
        // were counted and never reported.
        assert_eq!(s.missed(), 8);
        assert_eq!(errors_only.missed(), 0, "the report fits its channel");
        assert_eq!(c.subscriber_misses(), 8);
        for _ in 0..100 {
            c.write_entry(&entry(Kind::Info, "x"));
        }
        assert_eq!(s.missed(), 108);
        let text = cap.contents();
        assert_eq!(
            text.matches("console log subscriber 1 does not keep up")
                .count(),
            1,
            "{text}"
        );
        assert_eq!(text.matches("does not keep up").count(), 1, "{text}");
    }
}
