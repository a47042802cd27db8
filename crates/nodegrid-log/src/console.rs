//! The console target (LOGGING.md §2.2): always first in the system list and the only place
//! failure reports about targets go (S3). Its own write errors are counted and go nowhere.

use std::any::Any;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use time::OffsetDateTime;

use crate::entry::{Api, ErrorInfo, Kind, LogEntry, Record};
use crate::logonce::LogOnce;
use crate::target::{BoxFuture, SendError, ShutdownReport, Target, TargetKind, TargetStats};

/// Console presentation mode (global, set at start-up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsoleMode {
    /// Human text; error entries as a multi-line block.
    #[default]
    Pretty,
    /// Like pretty, but INFO lines are hidden.
    Quiet,
    /// One JSON object per line (implies quiet, no colour).
    Json,
}

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

/// Entries kept for new console-log subscribers (LOGGING.md §2.2).
pub const CONSOLE_RING_SIZE: usize = 10_000;
/// Most console-log subscribers at once.
pub const MAX_CONSOLE_SUBSCRIBERS: usize = 8;
/// Channel capacity of one subscriber; a slower subscriber misses entries (counted).
pub const SUBSCRIBER_CHANNEL: usize = 10_000;

/// Ring buffer of recent entries plus live subscribers ("console log" streaming).
#[derive(Default)]
struct Feed {
    state: Mutex<FeedState>,
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
    fn publish(&self, e: &Arc<LogEntry>) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.ring.len() == CONSOLE_RING_SIZE {
            st.ring.pop_front();
        }
        st.ring.push_back(e.clone());
        for s in &st.subs {
            if s.kinds.contains(e.level) && s.tx.try_send(e.clone()).is_err() {
                s.missed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
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
        for (eid, etext, n) in &verdict.expired {
            self.report_now(&format!("{eid}: {etext} (repeated {n} times)"));
        }
        if verdict.log {
            self.report_now(text);
        }
        verdict.log
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
        let mut st = self.feed.state.lock().unwrap_or_else(|p| p.into_inner());
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
            feed: self.feed.clone(),
        })
    }

    /// Writes one entry now (the console target's `send`).
    pub fn write_entry(&self, e: &LogEntry) {
        self.publish_and_write(&Arc::new(e.clone()));
    }

    fn publish_and_write(&self, e: &Arc<LogEntry>) {
        self.feed.publish(e);
        self.write_only(e);
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

/// Console time layout `HH:MM:SS UTC MM/DD/YYYY` of the entry's own time (S5).
fn console_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:02}:{:02}:{:02} UTC {:02}/{:02}/{:04}",
        t.hour(),
        t.minute(),
        t.second(),
        u8::from(t.month()),
        t.day(),
        t.year()
    )
}

/// Strips ANSI escape sequences (JSON mode).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Renders an entry for the console, `None` when the mode hides it.
pub(crate) fn render(mode: ConsoleMode, e: &LogEntry) -> Option<String> {
    match mode {
        ConsoleMode::Json => {
            let mut e = e.clone();
            e.message = strip_ansi(&e.message);
            if let Some(err) = e.error.as_mut() {
                err.message = strip_ansi(&err.message);
            }
            let mut s = serde_json::to_string(&e).ok()?;
            s.push('\n');
            Some(s)
        }
        ConsoleMode::Quiet if e.level == Kind::Info => None,
        _ => Some(render_pretty(e)),
    }
}

fn render_pretty(e: &LogEntry) -> String {
    use std::fmt::Write as _;
    match (&e.error, e.level) {
        (None, Kind::Info) => format!("INFO: {}\n", e.message),
        (None, _) => format!("{}\n", e.message),
        (Some(err), _) => {
            let mut s = String::from("\n");
            let api = match &e.api {
                Some(api) if !api.name.starts_with("SYSTEM") && !api.name.is_empty() => {
                    let mut parts = Vec::new();
                    let a = &api.args;
                    if !a.bucket.is_empty() {
                        parts.push(format!("bucket={}", a.bucket));
                    }
                    if !a.object.is_empty() {
                        parts.push(format!("object={}", a.object));
                    }
                    if !a.version_id.is_empty() {
                        parts.push(format!("versionId={}", a.version_id));
                    }
                    if !a.objects.is_empty() {
                        parts.push(format!(
                            "multiObject=true, numberOfObjects={}",
                            a.objects.len()
                        ));
                    }
                    format!("{}({})", api.name, parts.join(", "))
                }
                _ => "INTERNAL".to_string(),
            };
            let _ = writeln!(s, "API: {api}");
            let _ = writeln!(s, "Time: {}", console_time(e.time));
            for (label, v) in [
                ("DeploymentID", &e.deployment_id),
                ("RequestID", &e.request_id),
                ("RemoteHost", &e.remote_host),
                ("Host", &e.host),
                ("UserAgent", &e.user_agent),
            ] {
                if !v.is_empty() {
                    let _ = writeln!(s, "{label}: {v}");
                }
            }
            let _ = write!(s, "Error: {} ({})", err.message, e.level);
            for (k, v) in &err.variables {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if !v.is_empty() {
                    let _ = write!(s, " {k}=\"{v}\"");
                }
            }
            s.push('\n');
            let n = err.source.len();
            for (i, frame) in err.source.iter().enumerate() {
                let _ = writeln!(s, "{:>8}: {frame}", n - i);
            }
            s
        }
    }
}

impl Target for ConsoleTarget {
    fn name(&self) -> &str {
        "console"
    }

    fn endpoint(&self) -> &str {
        ""
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

    fn is_online(&self) -> bool {
        true
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
    use time::macros::datetime;

    #[test]
    fn pretty_error_block_prints_entry_time() {
        let mut e = LogEntry::at(Kind::Error, datetime!(2024-05-01 10:02:03.5 UTC));
        e.error = Some(ErrorInfo {
            message: "disk gone".into(),
            source: vec!["a.rs:1:m".into()],
            variables: [("drive".to_string(), serde_json::json!("/d1"))].into(),
        });
        let s = render(ConsoleMode::Pretty, &e).unwrap_or_default();
        assert!(s.contains("API: INTERNAL\n"), "{s}");
        assert!(s.contains("Time: 10:02:03 UTC 05/01/2024\n"), "{s}");
        assert!(
            s.contains("Error: disk gone (ERROR) drive=\"/d1\"\n"),
            "{s}"
        );
        assert!(s.contains("       1: a.rs:1:m\n"), "{s}");
    }

    #[test]
    fn quiet_hides_info_and_json_strips_ansi() {
        let mut e = LogEntry::new(Kind::Info);
        e.message = "\u{1b}[1mhello\u{1b}[0m".into();
        assert_eq!(render(ConsoleMode::Quiet, &e), None);
        let j = render(ConsoleMode::Json, &e).unwrap_or_default();
        assert!(j.contains("\"message\":\"hello\""), "{j}");
    }

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
    use super::*;

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
    fn slow_subscriber_misses_are_counted() {
        let (c, _cap) = ConsoleTarget::capture(ConsoleMode::Quiet);
        let s = c.subscribe(KindMask::ALL, 0).expect("subscribe");
        for _ in 0..(SUBSCRIBER_CHANNEL + 7) {
            c.write_entry(&entry(Kind::Info, "x"));
        }
        assert_eq!(s.missed(), 7);
    }
}
