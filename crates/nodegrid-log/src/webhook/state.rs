//! The state one webhook target shares between its handle and its tasks: configuration,
//! queue sender, counters, the replacement chain, the control signal, and the helpers of one
//! delivery attempt.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::certs::{self, CertResolver};
use super::client::{self, AttemptError, Conn, Endpoint};
use super::config::WebhookConfig;
use super::store::Store;
use crate::console::ConsoleTarget;
use crate::entry::Record;
use crate::identity::Identity;
use crate::target::{BoxFuture, Failure, SendError, ShutdownReport, Stream};

/// Entries handed over by replaced targets, read by this target's worker. `closed` is set
/// (under the same lock) once the worker stopped reading it; later hand-overs go on to this
/// target's own replacement.
#[derive(Default)]
pub(super) struct Migration {
    pub(super) buf: VecDeque<Record>,
    pub(super) closed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Control {
    Run,
    /// Graceful shutdown: deliver until the deadline, persist or drop the rest.
    Drain(Instant),
    /// Stop now (replaced or removed by configuration).
    Cancel,
}

/// A delivery attempt that owns what it needs, so it can outlive the task that started it.
pub(super) type Attempt = BoxFuture<(Conn, Result<(), AttemptError>)>;

/// Resolves once the control says `Cancel`, and never otherwise.
pub(super) async fn cancelled(ctl: &mut watch::Receiver<Control>) {
    loop {
        if *ctl.borrow_and_update() == Control::Cancel {
            return;
        }
        if ctl.changed().await.is_err() {
            // The target is gone; whoever waits for this is being dropped too.
            std::future::pending::<()>().await;
        }
    }
}

/// Everything a target's handle and tasks share.
pub(super) struct Shared {
    pub(super) name: String,
    pub(super) stream: Stream,
    pub(super) cfg: WebhookConfig,
    pub(super) tx: mpsc::Sender<Record>,
    pub(super) closed: AtomicBool,
    pub(super) replacement: OnceLock<Arc<Shared>>,
    pub(super) migration: Mutex<Migration>,
    pub(super) wake: Notify,
    /// Signalled by senders when at least a full batch is queued (batch_size > 1).
    pub(super) ready: Notify,
    pub(super) total: AtomicU64,
    pub(super) sent: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) migrated: AtomicU64,
    pub(super) send_errors: AtomicU64,
    pub(super) disk_entries: AtomicU64,
    pub(super) disk_files: AtomicU64,
    /// Bytes in the disk queue; may dip below zero for a moment when the replay loop deletes
    /// a file before its writer added it (read as at least zero).
    pub(super) disk_bytes: AtomicI64,
    pub(super) disk_full: AtomicU64,
    /// Tasks (worker, replay loop) that have ended after a cancel; the last one settles the
    /// disk backlog.
    pub(super) disk_exits: AtomicU8,
    pub(super) online: AtomicBool,
    pub(super) console: Arc<ConsoleTarget>,
    pub(super) control: watch::Sender<Control>,
    pub(super) headers: HeaderMap,
    pub(super) endpoint: Endpoint,
    pub(super) resolver: Option<Arc<CertResolver>>,
    pub(super) store: Option<Arc<Store>>,
    pub(super) stored: Notify,
    pub(super) worker_done: AtomicBool,
    pub(super) tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(super) drained: Mutex<Option<ShutdownReport>>,
}

pub(super) fn build_headers(cfg: &WebhookConfig, id: &Identity) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    let val = |key: &str, v: &str| {
        HeaderValue::from_str(v).map_err(|e| format!("{key}: not a valid header value: {e}"))
    };
    if cfg.batch_size == 1 {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    } else if cfg.ndjson_content_type {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
    }
    if !id.version.is_empty() {
        h.insert(client::headers::VERSION, val("version", &id.version)?);
    }
    if !id.deployment_id.is_empty() {
        h.insert(
            client::headers::DEPLOYMENT_ID,
            val("deployment_id", &id.deployment_id)?,
        );
    }
    if !id.user_agent.is_empty() {
        h.insert(http::header::USER_AGENT, val("user_agent", &id.user_agent)?);
    }
    if !cfg.auth_token.is_empty() {
        let mut v = val("auth_token", &cfg.auth_token)?;
        v.set_sensitive(true);
        h.insert(http::header::AUTHORIZATION, v);
    }
    Ok(h)
}

impl Shared {
    pub(super) fn send(&self, record: Record) -> Result<(), SendError> {
        if self.closed.load(Ordering::Acquire) {
            if let Some(next) = self.replacement.get() {
                return next.send(record);
            }
            self.total.fetch_add(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(SendError::Closed {
                target: self.name.clone(),
            });
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(record) {
            Ok(()) => {
                let bs = self.cfg.batch_size;
                if bs > 1 && self.tx.max_capacity() - self.tx.capacity() >= bs {
                    self.ready.notify_one();
                }
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Err(SendError::QueueFull {
                    target: self.name.clone(),
                })
            }
            Err(mpsc::error::TrySendError::Closed(r)) => match self.replacement.get() {
                Some(next) => {
                    self.migrated.fetch_add(1, Ordering::Relaxed);
                    next.send(r)
                }
                None => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    Err(SendError::Closed {
                        target: self.name.clone(),
                    })
                }
            },
        }
    }

    /// Takes entries handed over by a replaced target (they are counted in `total` here).
    pub(super) fn adopt(&self, records: Vec<Record>) {
        let n = records.len() as u64;
        if n == 0 {
            return;
        }
        {
            let mut m = self.migration.lock().unwrap_or_else(|p| p.into_inner());
            if !m.closed {
                self.total.fetch_add(n, Ordering::Relaxed);
                m.buf.extend(records);
                drop(m);
                self.wake.notify_one();
                return;
            }
        }
        // This target was itself replaced or shut down meanwhile.
        match self.replacement.get() {
            Some(next) => next.adopt(records),
            None => {
                self.total.fetch_add(n, Ordering::Relaxed);
                self.dropped.fetch_add(n, Ordering::Relaxed);
                self.report(
                    Failure::Dropped,
                    &format!(
                        "{}: handed-over {} entries dropped: target closed",
                        self.name,
                        self.stream.noun()
                    ),
                );
            }
        }
    }

    pub(super) fn take_migrated(&self, batch: &mut Vec<Record>, max: usize) {
        let mut m = self.migration.lock().unwrap_or_else(|p| p.into_inner());
        while batch.len() < max {
            match m.buf.pop_front() {
                Some(r) => batch.push(r),
                None => break,
            }
        }
    }

    /// Reports a failure of this target to the console, once per class (LOGGING.md §4.1).
    pub(super) fn report(&self, class: Failure, text: &str) {
        self.console.report(&self.name, class, text);
    }

    pub(super) fn note_failure(&self, e: &AttemptError) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
        if e.is_network() {
            self.online.store(false, Ordering::Relaxed);
        }
        self.report(
            Failure::Send,
            &format!(
                "could not send {} entries to {}: {e}",
                self.stream.noun(),
                self.name
            ),
        );
    }

    pub(super) fn headers_for(&self, count: u64) -> HeaderMap {
        let mut h = self.headers.clone();
        h.insert(client::headers::PAYLOAD_COUNT, HeaderValue::from(count));
        h
    }

    /// One bounded POST attempt.
    pub(super) async fn attempt(
        &self,
        conn: &mut Conn,
        body: &Bytes,
        count: u64,
        limit: Option<Instant>,
    ) -> Result<(), AttemptError> {
        let mut t = self.cfg.http_timeout;
        if let Some(d) = limit {
            t = t.min(d.saturating_duration_since(Instant::now()));
        }
        let headers = self.headers_for(count);
        let r = match tokio::time::timeout(t, conn.post(body.clone(), &headers)).await {
            Ok(r) => r,
            Err(_) => Err(AttemptError::Network(format!("timeout after {t:?}"))),
        };
        match &r {
            Ok(()) => self.online.store(true, Ordering::Relaxed),
            Err(_) => conn.reset(),
        }
        r
    }

    /// [`Shared::attempt`] as an owned future: a cancel does not wait for it (LOGGING.md
    /// §2.3.7), and the caller may leave it to finish in a task of its own.
    pub(super) fn attempt_owned(
        self: &Arc<Self>,
        mut conn: Conn,
        body: Bytes,
        count: u64,
        limit: Option<Instant>,
    ) -> Attempt {
        let s = self.clone();
        Box::pin(async move {
            let r = s.attempt(&mut conn, &body, count, limit).await;
            (conn, r)
        })
    }

    /// Passes on entries this closed target can no longer deliver: to the replacement, or,
    /// without one, dropped (counted and reported).
    pub(super) fn hand_over(&self, records: Vec<Record>) {
        let n = records.len() as u64;
        if n == 0 {
            return;
        }
        match self.replacement.get() {
            Some(next) => {
                self.migrated.fetch_add(n, Ordering::Relaxed);
                next.adopt(records);
            }
            None => {
                self.dropped.fetch_add(n, Ordering::Relaxed);
                self.report(
                    Failure::Dropped,
                    &format!(
                        "{}: pending {} entries dropped: target removed",
                        self.name,
                        self.stream.noun()
                    ),
                );
            }
        }
    }

    /// Called by the worker and by the replay loop (or its detached last attempt) when they
    /// end: once both have, a cancelled target with a disk queue settles its backlog.
    pub(super) fn disk_task_done(&self) {
        if self.store.is_some() && self.disk_exits.fetch_add(1, Ordering::AcqRel) + 1 == 2 {
            self.settle_disk();
        }
    }

    /// The stored files of a cancelled target: when its replacement replays the same
    /// directory they are handed over (counted as migrated here, and in the replacement's
    /// total when its replay loop finds them). Otherwise nobody replays them until a target
    /// with this `queue_dir` starts: they stay on disk and stay `queued` here, and that is
    /// reported once.
    fn settle_disk(&self) {
        if *self.control.borrow() != Control::Cancel {
            return;
        }
        let entries = self.disk_entries.load(Ordering::Acquire);
        let files = self.disk_files.load(Ordering::Acquire);
        if entries == 0 && files == 0 {
            return;
        }
        let dir = self.store.as_ref().map(|s| s.dir());
        let next_dir = self
            .replacement
            .get()
            .and_then(|n| n.store.as_ref())
            .map(|s| s.dir());
        if next_dir.is_some() && next_dir == dir {
            self.disk_entries.store(0, Ordering::Release);
            self.disk_files.store(0, Ordering::Release);
            self.disk_bytes.store(0, Ordering::Release);
            self.migrated.fetch_add(entries, Ordering::Relaxed);
        } else {
            let dir = dir.map(|d| d.display().to_string()).unwrap_or_default();
            // A one-time report per target: the counts cannot defeat the de-duplication.
            self.report(
                Failure::Disk,
                &format!(
                    "{}: {files} files ({entries} {} entries) stay in the disk queue {dir}: no \
                     running target replays it; the next target with this queue_dir will",
                    self.name,
                    self.stream.noun()
                ),
            );
        }
    }

    /// Reloads the client certificate and key from their files. On error the previous pair
    /// stays in use; the error (which names the file) is returned, and reported to the
    /// console when `report` is set (the background poll; an explicit reload leaves the
    /// reporting to its caller).
    pub(super) fn reload_cert(&self, report: bool) -> Result<(), String> {
        let (Some(r), Some(cert), Some(key)) =
            (&self.resolver, &self.cfg.client_cert, &self.cfg.client_key)
        else {
            return Err("no client certificate configured".to_string());
        };
        match certs::load_key_pair(cert, key) {
            Ok(k) => {
                r.set(Some(k));
                Ok(())
            }
            Err(e) => {
                if report {
                    self.report(
                        Failure::Certificate,
                        &format!(
                            "{}: cannot reload the client certificate, the previous one stays \
                             in use: {e}",
                            self.name
                        ),
                    );
                }
                Err(e)
            }
        }
    }
}
