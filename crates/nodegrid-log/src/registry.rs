//! The target registry (LOGGING.md §3, §8.4): two independent lists (system, audit), each an
//! immutable snapshot published with `arc-swap`. Readers `load()` without any lock; writers
//! serialize on a per-list mutex, build a new list, publish it, and cancel replaced targets
//! in the background after the mutex is released.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::anonymize::anonymize;
use crate::config::LoggingConfig;
use crate::console::ConsoleTarget;
use crate::entry::{Api, AuditEntry, ErrorInfo, Kind, LogEntry, Record};
use crate::error::{ConfigError, Error};
use crate::identity::Identity;
use crate::internal::internal;
use crate::layer::{EntrySink, LogLayer};
use crate::logonce::LogOnce;
use crate::target::{Failure, ShutdownReport, Stream, Target, TargetKind, TargetStats};
use crate::webhook::{WebhookConfig, WebhookTarget};

/// Interval of the periodic "entries lost" summary started by [`Registry::from_config`].
pub const DROP_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// A published, read-only target list.
#[cfg(any(test, feature = "test-support"))]
pub(crate) type Snapshot = Arc<Vec<Arc<dyn Target>>>;

/// The cell a list is published in.
type ListCell = ArcSwap<Vec<Arc<dyn Target>>>;

/// Both target lists plus the console.
pub struct Registry {
    console: Arc<ConsoleTarget>,
    identity: Identity,
    system: ListCell,
    audit: ListCell,
    system_lock: Mutex<()>,
    audit_lock: Mutex<()>,
    audit_once: LogOnce,
    summary_started: std::sync::atomic::AtomicBool,
    anonymous: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("system", &names(&self.system.load()))
            .field("audit", &names(&self.audit.load()))
            .finish()
    }
}

fn names(list: &[Arc<dyn Target>]) -> Vec<String> {
    list.iter().map(|t| t.name().to_string()).collect()
}

impl Registry {
    /// A registry whose system list holds just `console`, and an empty audit list.
    pub fn new(console: ConsoleTarget, identity: Identity) -> Arc<Registry> {
        let console = Arc::new(console);
        let system: Vec<Arc<dyn Target>> = vec![console.clone()];
        Arc::new(Registry {
            console,
            identity,
            system: ArcSwap::from_pointee(system),
            audit: ArcSwap::from_pointee(Vec::new()),
            system_lock: Mutex::new(()),
            audit_lock: Mutex::new(()),
            audit_once: LogOnce::default(),
            summary_started: std::sync::atomic::AtomicBool::new(false),
            anonymous: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Builds a registry from a configuration: console plus the configured logger and
    /// audit webhooks. Must run inside a tokio runtime. All or nothing: on error no target
    /// is left running.
    pub fn from_config(
        cfg: &LoggingConfig,
        console: ConsoleTarget,
    ) -> Result<Arc<Registry>, Error> {
        let r = Registry::new(console, cfg.identity.clone());
        r.start_drop_summary(DROP_SUMMARY_INTERVAL);
        r.update_webhooks(Stream::Logger, cfg.logger_webhooks.clone())?;
        if let Err(e) = r.update_webhooks(Stream::Audit, cfg.audit_webhooks.clone()) {
            // Undo the logger part so nothing is partially applied.
            let _ = r.update_webhooks(Stream::Logger, Vec::new());
            return Err(e);
        }
        Ok(r)
    }

    /// Builds a registry from the `NODEGRID_*` environment ([`LoggingConfig::from_env`]) with
    /// a stderr console. Must run inside a tokio runtime.
    pub fn from_env() -> Result<Arc<Registry>, Error> {
        let cfg = LoggingConfig::from_env()?;
        Registry::from_config(&cfg, ConsoleTarget::stderr(cfg.console_mode))
    }

    /// Starts (once) a background task that every `every` reports, per target, how many
    /// entries were lost (`dropped + failed`) since the previous report, if any, and how many
    /// entries console-log subscribers missed (LOGGING.md §4.1, §4.3: de-duplicated reports
    /// plus a periodic "N dropped" summary). System targets are
    /// reported to the console, audit targets to the system log. The task ends when the
    /// registry is dropped. [`Registry::from_config`] starts it with a 60 s interval.
    pub fn start_drop_summary(self: &Arc<Self>, every: Duration) {
        use std::sync::atomic::Ordering;
        if self.summary_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(self);
        handle.spawn(internal(async move {
            let mut last: BTreeMap<String, u64> = BTreeMap::new();
            let mut last_missed = 0u64;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(reg) = weak.upgrade() else {
                    return;
                };
                let missed = reg.console.subscriber_misses();
                if missed > last_missed {
                    reg.console.report_now(&format!(
                        "console: log subscribers missed {} entries in the last {every:?} ({missed} in total)",
                        missed - last_missed
                    ));
                    last_missed = missed;
                }
                for (stream, list) in [
                    (Stream::Logger, reg.system.load_full()),
                    (Stream::Audit, reg.audit.load_full()),
                ] {
                    for t in list.iter() {
                        let st = t.stats();
                        let lost = st.dropped + st.failed;
                        let key = format!("{:?}/{}", stream, t.name());
                        let prev = last.insert(key, lost).unwrap_or(0);
                        if lost > prev && t.kind() != TargetKind::Console {
                            let text = format!(
                                "{}: {} entries lost in the last {:?} (dropped or given up; {} in total)",
                                t.name(),
                                lost - prev,
                                every,
                                lost
                            );
                            match stream {
                                Stream::Logger => reg.console.report_now(&text),
                                Stream::Audit => {
                                    let mut le = LogEntry::new(Kind::Warning);
                                    le.api = Some(Api {
                                        name: "SYSTEM.audit".into(),
                                        ..Default::default()
                                    });
                                    le.error = Some(ErrorInfo {
                                        message: text,
                                        ..Default::default()
                                    });
                                    reg.log(le);
                                }
                            }
                        }
                    }
                }
            }
        }));
    }

    /// Anonymous mode (LOGGING.md §1.9, `--anonymous`): bucket, object and remote host of
    /// server-log entries are replaced by a stable keyed hash, error messages are reduced to
    /// the error's type name (or `error`), and error variables are emptied.
    pub fn set_anonymous(&self, on: bool) {
        self.anonymous
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The console target (the fallback sink for failure reports).
    pub fn console(&self) -> &Arc<ConsoleTarget> {
        &self.console
    }

    /// Process-wide identity sent with webhook requests.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The `tracing` layer feeding the system list.
    pub fn layer(self: &Arc<Self>) -> LogLayer {
        LogLayer::new(self.clone())
    }

    /// Handle to the audit API.
    pub fn audit(self: &Arc<Self>) -> AuditLog {
        AuditLog {
            registry: self.clone(),
        }
    }

    /// Current system list (console first).
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn system_targets(&self) -> Snapshot {
        self.system.load_full()
    }

    /// Current audit list.
    #[cfg(any(test, feature = "test-support"))]
    pub(crate) fn audit_targets(&self) -> Snapshot {
        self.audit.load_full()
    }

    fn list(&self, stream: Stream) -> (&ListCell, &Mutex<()>) {
        match stream {
            Stream::Logger => (&self.system, &self.system_lock),
            Stream::Audit => (&self.audit, &self.audit_lock),
        }
    }

    /// Sends a log entry to every system target. Failures are reported to the console
    /// only (de-duplicated per target), never to other targets.
    pub fn log(&self, mut entry: LogEntry) {
        if self.anonymous.load(std::sync::atomic::Ordering::Relaxed) {
            anonymize(&mut entry);
        }
        let list = self.system.load();
        let record = Record::Log(Arc::new(entry));
        for t in list.iter() {
            if let Err(e) = t.send(record.clone()) {
                self.console.report(t.name(), e.failure(), &e.to_string());
            }
        }
    }

    /// Sends an audit record to every audit target. A failure to enqueue is reported to
    /// the system log (console + logger webhooks), de-duplicated per audit target.
    pub fn audit_log(&self, entry: AuditEntry) {
        let list = self.audit.load();
        if list.is_empty() {
            return;
        }
        let record = Record::Audit(Arc::new(entry));
        for t in list.iter() {
            if let Err(e) = t.send(record.clone()) {
                let text = format!("could not queue audit entry: {e}");
                let key = format!("{}/{}", t.name(), e.failure().as_str());
                if self.audit_once.check(&key, &text).log {
                    let mut le = LogEntry::new(Kind::Error);
                    le.api = Some(Api {
                        name: "SYSTEM.audit".into(),
                        ..Default::default()
                    });
                    le.error = Some(ErrorInfo {
                        message: text,
                        ..Default::default()
                    });
                    self.log(le);
                }
            }
        }
    }

    /// Replaces the webhooks of one list with targets built from `configs`; other targets
    /// (the console, future Kafka targets) stay. A same-named old webhook hands its pending
    /// entries to its replacement. All or nothing: if any new target cannot start, the
    /// current list stays as it is. Must run inside a tokio runtime.
    pub fn update_webhooks(
        &self,
        stream: Stream,
        configs: Vec<WebhookConfig>,
    ) -> Result<(), Error> {
        let mut seen = HashSet::new();
        for c in &configs {
            if !seen.insert(c.key().to_string()) {
                return Err(ConfigError::new(
                    format!("{}:{}", stream.subsys(), c.key()),
                    "target configured twice",
                )
                .into());
            }
        }
        let (list, lock) = self.list(stream);
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh: Vec<WebhookTarget> = Vec::with_capacity(configs.len());
        for cfg in configs {
            match WebhookTarget::start(stream, cfg, &self.identity, self.console.clone()) {
                Ok(t) => fresh.push(t),
                Err(e) => {
                    drop(guard);
                    for t in fresh {
                        spawn_cancel(Arc::new(t));
                    }
                    return Err(e);
                }
            }
        }
        let current = list.load_full();
        let mut kept: Vec<Arc<dyn Target>> = Vec::new();
        let mut old: Vec<Arc<dyn Target>> = Vec::new();
        for t in current.iter() {
            if t.kind() == TargetKind::Http {
                old.push(t.clone());
            } else {
                kept.push(t.clone());
            }
        }
        for o in &old {
            if let Some(ow) = o.as_any().downcast_ref::<WebhookTarget>() {
                if let Some(nw) = fresh.iter().find(|n| n.name() == ow.name()) {
                    ow.set_replacement(nw);
                }
            }
        }
        let mut next = kept;
        next.extend(fresh.into_iter().map(|t| Arc::new(t) as Arc<dyn Target>));
        list.store(Arc::new(next));
        drop(guard);
        for o in old {
            spawn_cancel(o);
        }
        Ok(())
    }

    /// Reloads the client certificate of every webhook that has one (call it on SIGHUP).
    /// Targets that fail keep their previous certificate. Nothing is printed: the caller
    /// reports the outcome (each error names the target and the file).
    pub fn reload_client_certs(&self) -> CertReload {
        let mut out = CertReload::default();
        for list in [self.system.load_full(), self.audit.load_full()] {
            for t in list.iter() {
                if let Some(w) = t.as_any().downcast_ref::<WebhookTarget>() {
                    if w.config().has_client_cert() {
                        match w.reload_client_cert() {
                            Ok(()) => out.reloaded.push(t.name().to_string()),
                            Err(e) => out.failed.push(e),
                        }
                    }
                }
            }
        }
        out
    }

    /// Counters of every target, keyed `sys_<name>` / `audit_<name>` (stable names rather
    /// than positions, LOGGING.md §3.4 deviation).
    pub fn stats(&self) -> BTreeMap<String, TargetStats> {
        let mut out = BTreeMap::new();
        for t in self.system.load().iter() {
            out.insert(format!("sys_{}", t.name()), t.stats());
        }
        for t in self.audit.load().iter() {
            out.insert(format!("audit_{}", t.name()), t.stats());
        }
        out
    }

    /// Graceful shutdown: closes every webhook of both lists, delivers what can be delivered
    /// within `timeout`, persists the rest where a `queue_dir` is set, and counts the
    /// remainder as dropped. Prints a summary line to the console when anything was left.
    /// Afterwards the system list holds only the console and the audit list is empty.
    pub async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let deadline = Instant::now() + timeout;
        let mut targets: Vec<Arc<dyn Target>> = Vec::new();
        {
            let _g = self.system_lock.lock().unwrap_or_else(|p| p.into_inner());
            targets.extend(self.system.load().iter().cloned());
            let only_console: Vec<Arc<dyn Target>> = vec![self.console.clone()];
            self.system.store(Arc::new(only_console));
        }
        {
            let _g = self.audit_lock.lock().unwrap_or_else(|p| p.into_inner());
            targets.extend(self.audit.load().iter().cloned());
            self.audit.store(Arc::new(Vec::new()));
        }
        let mut set = tokio::task::JoinSet::new();
        for t in targets {
            set.spawn(internal(async move { t.shutdown(deadline).await }));
        }
        let mut report = ShutdownReport::default();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                report.add(&r);
            }
        }
        if report.dropped > 0 || report.persisted > 0 {
            self.console.report(
                "logging",
                Failure::Shutdown,
                &format!(
                    "logging shutdown: {} entries delivered during shutdown, {} undelivered entries persisted to the disk queue, {} undelivered entries dropped",
                    report.delivered, report.persisted, report.dropped
                ),
            );
        }
        report
    }
}

fn spawn_cancel(t: Arc<dyn Target>) {
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        h.spawn(internal(async move { t.cancel().await }));
    }
}

impl EntrySink for Registry {
    fn deployment_id(&self) -> &str {
        &self.identity.deployment_id
    }

    fn log(&self, entry: LogEntry) {
        Registry::log(self, entry);
    }
}

/// Outcome of [`Registry::reload_client_certs`].
#[derive(Debug, Default)]
pub struct CertReload {
    /// Webhooks whose client certificate was reloaded.
    pub reloaded: Vec<String>,
    /// Webhooks whose reload failed (they keep their previous certificate).
    pub failed: Vec<Error>,
}

/// The audit API handed to request handlers: `audit.log(entry)`.
#[derive(Clone, Debug)]
pub struct AuditLog {
    registry: Arc<Registry>,
}

impl AuditLog {
    /// Whether any audit target is configured; check it before building an entry.
    pub fn is_enabled(&self) -> bool {
        !self.registry.audit.load().is_empty()
    }

    /// Hands `entry` to every audit target. Never blocks; never depends on the caller's
    /// cancellation.
    pub fn log(&self, entry: AuditEntry) {
        self.registry.audit_log(entry);
    }
}

#[cfg(test)]
mod tests {
    use std::any::Any;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::console::{ConsoleMode, KindMask, SUBSCRIBER_CHANNEL};
    use crate::target::{BoxFuture, SendError};

    /// A webhook-like target whose losses the test sets. Counts `stats` calls (the summary
    /// reads each target once a tick) and keeps what it is sent.
    struct Fake {
        name: &'static str,
        /// (dropped, failed)
        lost: Mutex<(u64, u64)>,
        looks: AtomicU64,
        got: Mutex<Vec<Record>>,
    }

    impl Fake {
        fn new(name: &'static str, dropped: u64, failed: u64) -> Arc<Fake> {
            Arc::new(Fake {
                name,
                lost: Mutex::new((dropped, failed)),
                looks: AtomicU64::new(0),
                got: Mutex::new(Vec::new()),
            })
        }

        /// Waits (at most 5 s) until the summary has looked at this target `n` more times.
        async fn ticks(&self, n: u64) {
            let want = self.looks.load(Ordering::SeqCst) + n;
            let waited = tokio::time::timeout(Duration::from_secs(5), async {
                while self.looks.load(Ordering::SeqCst) < want {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await;
            assert!(waited.is_ok(), "{}: no summary tick", self.name);
        }
    }

    impl Target for Fake {
        fn name(&self) -> &str {
            self.name
        }
        fn kind(&self) -> TargetKind {
            TargetKind::Http
        }
        fn send(&self, record: Record) -> Result<(), SendError> {
            self.got.lock().expect("lock").push(record);
            Ok(())
        }
        fn stats(&self) -> TargetStats {
            self.looks.fetch_add(1, Ordering::SeqCst);
            let (dropped, failed) = *self.lost.lock().expect("lock");
            TargetStats {
                name: self.name.into(),
                total: dropped + failed,
                dropped,
                failed,
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

    fn count(text: &str, needle: &str) -> usize {
        text.lines().filter(|l| l.contains(needle)).count()
    }

    /// Asserts that exactly one line of `text` contains `needle`.
    fn assert_once(text: &str, needle: &str) {
        assert_eq!(count(text, needle), 1, "{needle} in:\n{text}");
    }

    /// The periodic summary reports exact deltas (dropped + failed) once per change: nothing
    /// while a count stays the same, system targets and subscriber misses on the console,
    /// audit targets as a `SYSTEM.audit` warning in the system log.
    #[tokio::test]
    async fn drop_summary_reports_each_loss_once_with_exact_counts() {
        let (console, cap) = ConsoleTarget::capture(ConsoleMode::Json);
        let reg = Registry::new(console, Identity::default());
        // Misses only of kinds it asked for: the summaries (errors) do not add to them.
        let _sub = reg
            .console()
            .subscribe(KindMask::of(&[Kind::Info]), 0)
            .expect("subscribe");
        for _ in 0..SUBSCRIBER_CHANNEL + 3 {
            reg.console().write_entry(&LogEntry::new(Kind::Info));
        }
        assert_eq!(reg.console().subscriber_misses(), 3);
        let logger = Fake::new("logger-f", 2, 3);
        let audit = Fake::new("audit-f", 4, 1);
        let console: Arc<dyn Target> = reg.console().clone();
        reg.system
            .store(Arc::new(vec![console, logger.clone() as Arc<dyn Target>]));
        reg.audit
            .store(Arc::new(vec![audit.clone() as Arc<dyn Target>]));

        reg.start_drop_summary(Duration::from_millis(20));
        logger.ticks(4).await;
        let text = cap.contents();
        assert_once(
            &text,
            "console: log subscribers missed 3 entries in the last 20ms (3 in total)",
        );
        assert_once(&text, "log subscribers missed");
        assert_once(
            &text,
            "logger-f: 5 entries lost in the last 20ms (dropped or given up; 5 in total)",
        );
        assert_eq!(count(&text, "entries lost"), 2, "{text}");
        assert_eq!(count(&text, "console: 0 entries lost"), 0, "{text}");
        let audit_line =
            "audit-f: 5 entries lost in the last 20ms (dropped or given up; 5 in total)";
        assert_once(&text, audit_line);
        // The audit summary went to the system list as a warning entry.
        let got: Vec<Arc<LogEntry>> = logger
            .got
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|r| match r {
                Record::Log(e) => Some(e.clone()),
                Record::Audit(_) => None,
            })
            .collect();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].level, Kind::Warning);
        assert_eq!(
            got[0].api.as_ref().map(|a| a.name.as_str()),
            Some("SYSTEM.audit")
        );
        assert_eq!(
            got[0].error.as_ref().map(|e| e.message.as_str()),
            Some(audit_line)
        );

        // Two more losses: reported as the delta, with the new total.
        *logger.lost.lock().expect("lock") = (4, 3);
        logger.ticks(3).await;
        let text = cap.contents();
        assert_once(
            &text,
            "logger-f: 2 entries lost in the last 20ms (dropped or given up; 7 in total)",
        );
        assert_eq!(count(&text, "entries lost"), 3, "{text}");
    }
}
