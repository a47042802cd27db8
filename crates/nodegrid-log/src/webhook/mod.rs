//! The HTTP webhook target (LOGGING.md §2.3, §2.4), used by both lists.
//!
//! Caller path: [`WebhookTarget::send`] is a counter increment and a `try_send` into a bounded
//! tokio channel, nothing else (no lock, no I/O, no online check). A full queue is an
//! immediate, counted drop.
//!
//! One worker task per target collects entries into a batch and flushes it when it holds
//! `batch_size` entries, or when `flush_interval` has passed since the previous flush (a
//! timer guarantees a partial batch waits at most `flush_interval`). With `batch_size == 1`
//! every entry is sent at once. With `batch_size > 1` the worker is not woken per entry:
//! senders signal it once a full batch is queued. It encodes the batch once as NDJSON and
//! POSTs it, retrying per `max_retry` / `retry_interval`. One worker keeps batches in order
//! (LOGGING.md §7.10); the reference's scaling to 16 workers is not implemented.
//!
//! With `queue_dir`, the worker writes each batch to the disk store instead, and a separate
//! replay task POSTs stored files oldest first and deletes them on 2xx; stored files survive
//! restarts and are adopted by the next target of the same name.

mod client;
pub mod config;
mod store;

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::console::ConsoleTarget;
use crate::entry::Record;
use crate::error::Error;
use crate::layer::internal;
use crate::target::{BoxFuture, SendError, ShutdownReport, Target, TargetKind, TargetStats};
use client::{AttemptError, CertResolver, Conn, Endpoint};
pub use config::{RetryBackoff, WebhookConfig, WebhookConfigBuilder};
use store::{ReadError, Store, StoredFile};

/// Which list a webhook serves; decides its name prefix and report wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Server-log webhook (`logger-<key>`).
    Logger,
    /// Audit webhook (`audit-<key>`).
    Audit,
}

impl Stream {
    fn prefix(self) -> &'static str {
        match self {
            Stream::Logger => "logger",
            Stream::Audit => "audit",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Stream::Logger => "log",
            Stream::Audit => "audit",
        }
    }
}

/// Process-wide values sent with every request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// Server version (`x-minio-version`).
    pub version: String,
    /// Deployment id (`x-minio-deployment-id`).
    pub deployment_id: String,
    /// `User-Agent`.
    pub user_agent: String,
}

/// Entries handed over by replaced targets, read by this target's worker. `closed` is set
/// (under the same lock) once the worker stopped reading it; later hand-overs go on to this
/// target's own replacement.
#[derive(Default)]
struct Migration {
    buf: VecDeque<Record>,
    closed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    Run,
    /// Graceful shutdown: deliver until the deadline, persist or drop the rest.
    Drain(Instant),
    /// Stop now (replaced or removed by configuration).
    Cancel,
}

struct Shared {
    name: String,
    stream: Stream,
    cfg: WebhookConfig,
    tx: mpsc::Sender<Record>,
    closed: AtomicBool,
    replacement: OnceLock<Arc<Shared>>,
    migration: Mutex<Migration>,
    wake: Notify,
    /// Signalled by senders when at least a full batch is queued (batch_size > 1).
    ready: Notify,
    total: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    migrated: AtomicU64,
    send_errors: AtomicU64,
    disk_entries: AtomicU64,
    disk_files: AtomicU64,
    online: AtomicBool,
    console: Arc<ConsoleTarget>,
    control: watch::Sender<Control>,
    headers: HeaderMap,
    endpoint: Endpoint,
    resolver: Option<Arc<CertResolver>>,
    store: Option<Arc<Store>>,
    stored: Notify,
    worker_done: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    drained: Mutex<Option<ShutdownReport>>,
}

/// An HTTP webhook target. Cheap to clone; all clones are the same target.
#[derive(Clone)]
pub struct WebhookTarget {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("name", &self.shared.name)
            .field("endpoint", &self.shared.cfg.endpoint_text)
            .finish_non_exhaustive()
    }
}

fn build_headers(cfg: &WebhookConfig, id: &Identity) -> Result<HeaderMap, String> {
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

/// One async lock per disk-queue directory: only one replay loop (old or new target of the
/// same name) reads a directory at a time, so a file is never sent twice concurrently.
fn dir_lock(dir: &std::path::Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let map = LOCKS.get_or_init(Default::default);
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(dir.to_path_buf()).or_default().clone()
}

impl WebhookTarget {
    /// Starts a target: opens its disk queue (an error here means the target must not be
    /// registered), loads its client certificate (falling back to none, reported, if that
    /// fails), and spawns its worker tasks on the current tokio runtime.
    pub fn start(
        stream: Stream,
        cfg: WebhookConfig,
        identity: &Identity,
        console: Arc<ConsoleTarget>,
    ) -> Result<WebhookTarget, Error> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let name = format!("{}-{}", stream.prefix(), cfg.key);
        let start_err = |reason: String| Error::Start {
            target: name.clone(),
            reason,
        };
        let store = match &cfg.queue_dir {
            Some(dir) => Some(Arc::new(
                Store::open(dir, &name, cfg.queue_size).map_err(start_err)?,
            )),
            None => None,
        };
        let resolver = match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => {
                let r = Arc::new(CertResolver::default());
                match client::load_key_pair(cert, key) {
                    Ok(k) => r.set(Some(k)),
                    Err(e) => {
                        console.report_once(
                            &name,
                            &format!(
                                "{name}: cannot load client certificate, sending without one: {e}"
                            ),
                        );
                    }
                }
                Some(r)
            }
            _ => None,
        };
        let tls = if cfg.endpoint.scheme_str() == Some("https") {
            let mtls = resolver.is_some();
            let r = resolver.clone().unwrap_or_default();
            Some(client::tls_config(cfg.ca_cert.as_ref(), r, mtls).map_err(start_err)?)
        } else {
            None
        };
        let endpoint = Endpoint::new(&cfg.endpoint, tls).map_err(start_err)?;
        let headers = build_headers(&cfg, identity).map_err(start_err)?;
        let (tx, rx) = mpsc::channel(cfg.queue_size);
        let (control, _) = watch::channel(Control::Run);
        let shared = Arc::new(Shared {
            name,
            stream,
            tx,
            closed: AtomicBool::new(false),
            replacement: OnceLock::new(),
            migration: Mutex::new(Migration::default()),
            wake: Notify::new(),
            ready: Notify::new(),
            total: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            migrated: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            disk_entries: AtomicU64::new(0),
            disk_files: AtomicU64::new(0),
            online: AtomicBool::new(false),
            console,
            control,
            headers,
            endpoint,
            resolver,
            store,
            stored: Notify::new(),
            worker_done: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            drained: Mutex::new(None),
            cfg,
        });
        let mut tasks = vec![handle.spawn(internal(worker(shared.clone(), rx)))];
        if let Some(store) = shared.store.clone() {
            tasks.push(handle.spawn(internal(replay(shared.clone(), store))));
        }
        if shared.resolver.is_some() {
            tasks.push(handle.spawn(internal(cert_reloader(shared.clone()))));
        }
        *shared.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(WebhookTarget { shared })
    }

    /// The configuration the target runs with.
    pub fn config(&self) -> &WebhookConfig {
        &self.shared.cfg
    }

    /// Reloads the client certificate and key from their files now (e.g. on SIGHUP). New
    /// connections use the new pair. On error the previous pair stays in use.
    pub fn reload_client_cert(&self) -> Result<(), Error> {
        reload_cert(&self.shared).map_err(|reason| Error::Certificate {
            target: self.shared.name.clone(),
            reason,
        })
    }

    /// Makes `next` the replacement of this target: once this target is closed, entries
    /// offered to it, and its pending entries, go to `next`.
    pub(crate) fn set_replacement(&self, next: &WebhookTarget) {
        let _ = self.shared.replacement.set(next.shared.clone());
    }
}

fn reload_cert(s: &Shared) -> Result<(), String> {
    let (Some(r), Some(cert), Some(key)) = (&s.resolver, &s.cfg.client_cert, &s.cfg.client_key)
    else {
        return Err(format!("{}: no client certificate configured", s.name));
    };
    match client::load_key_pair(cert, key) {
        Ok(k) => {
            r.set(Some(k));
            Ok(())
        }
        Err(e) => {
            let msg = format!("{}: cannot reload client certificate: {e}", s.name);
            s.console.report_once(&s.name, &msg);
            Err(msg)
        }
    }
}

async fn cert_reloader(s: Arc<Shared>) {
    let (Some(cert), Some(key)) = (s.cfg.client_cert.clone(), s.cfg.client_key.clone()) else {
        return;
    };
    let mut ctl = s.control.subscribe();
    let mut stamp = (client::file_stamp(&cert), client::file_stamp(&key));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(s.cfg.cert_reload_interval) => {}
            r = ctl.changed() => {
                if r.is_err() || *ctl.borrow() != Control::Run {
                    return;
                }
            }
        }
        let now = (client::file_stamp(&cert), client::file_stamp(&key));
        if now != stamp {
            stamp = now;
            let _ = reload_cert(&s);
        }
    }
}

impl Shared {
    fn send(&self, record: Record) -> Result<(), SendError> {
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
    fn adopt(&self, records: Vec<Record>) {
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
                self.report(&format!(
                    "{}: {n} handed-over {} entries dropped: target closed",
                    self.name,
                    self.stream.noun()
                ));
            }
        }
    }

    fn take_migrated(&self, batch: &mut Vec<Record>, max: usize) {
        let mut m = self.migration.lock().unwrap_or_else(|p| p.into_inner());
        while batch.len() < max {
            match m.buf.pop_front() {
                Some(r) => batch.push(r),
                None => break,
            }
        }
    }

    fn report(&self, text: &str) {
        self.console.report_once(&self.name, text);
    }

    fn note_failure(&self, n: usize, e: &AttemptError) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
        if e.is_network() {
            self.online.store(false, Ordering::Relaxed);
        }
        self.report(&format!(
            "could not send {n} {} entries to {}: {e}",
            self.stream.noun(),
            self.name
        ));
    }

    fn headers_for(&self, count: u64) -> HeaderMap {
        let mut h = self.headers.clone();
        h.insert(client::headers::PAYLOAD_COUNT, HeaderValue::from(count));
        h
    }

    /// One bounded POST attempt.
    async fn attempt(
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
}

enum Flush {
    Done,
    /// Cancel requested while retrying; the batch is still held.
    Cancelled,
}

/// Encodes `batch` into `buf` (one NDJSON line each); unencodable entries are counted as
/// failed and left out. Returns how many lines were written.
fn encode(s: &Shared, batch: &[Record], buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    let mut n = 0;
    for r in batch {
        match r.encode_line(buf) {
            Ok(()) => n += 1,
            Err(e) => {
                s.failed.fetch_add(1, Ordering::Relaxed);
                s.report(&format!("{}: cannot encode entry: {e}", s.name));
            }
        }
    }
    n
}

/// Sleeps `d` unless the control changes to `Cancel` first (returns false then). A change
/// to `Drain` ends the sleep early too (the drain deadline bounds further attempts).
async fn pause(ctl: &mut watch::Receiver<Control>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        r = ctl.changed() => r.is_ok() && *ctl.borrow() != Control::Cancel,
    }
}

/// Delivers (memory mode) or stores (disk mode) one batch, retrying per the config.
/// In `Drain` mode attempts stop at the deadline; what is left is returned to the caller
/// via `Err(batch unchanged)` semantics: the batch is not cleared.
async fn flush(
    s: &Shared,
    conn: &mut Conn,
    ctl: &mut watch::Receiver<Control>,
    batch: &mut Vec<Record>,
    buf: &mut Vec<u8>,
) -> Flush {
    let n = encode(s, batch, buf);
    if n == 0 {
        batch.clear();
        return Flush::Done;
    }
    let body = Bytes::copy_from_slice(buf);
    let mut retries = 0u32;
    loop {
        let limit = match *ctl.borrow() {
            Control::Drain(d) => Some(d),
            _ => None,
        };
        if let Some(d) = limit {
            if Instant::now() >= d {
                return Flush::Cancelled;
            }
        }
        let res = match &s.store {
            Some(store) => {
                let store = store.clone();
                let body = body.clone();
                // Count the file before it becomes visible: the replay loop may deliver and
                // delete it before `put` even returns here.
                s.disk_entries.fetch_add(n, Ordering::Relaxed);
                s.disk_files.fetch_add(1, Ordering::Relaxed);
                let put = tokio::task::spawn_blocking(move || store.put(&body, n))
                    .await
                    .unwrap_or_else(|e| Err(format!("disk queue task: {e}")));
                match put {
                    Ok(_f) => {
                        s.stored.notify_one();
                        Ok(())
                    }
                    Err(e) => {
                        s.disk_entries.fetch_sub(n, Ordering::Relaxed);
                        s.disk_files.fetch_sub(1, Ordering::Relaxed);
                        Err(e)
                    }
                }
            }
            None => match s.attempt(conn, &body, n, limit).await {
                Ok(()) => {
                    s.sent.fetch_add(n, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => {
                    s.note_failure(n as usize, &e);
                    Err(String::new())
                }
            },
        };
        match res {
            Ok(()) => {
                batch.clear();
                return Flush::Done;
            }
            Err(e) => {
                if !e.is_empty() {
                    s.send_errors.fetch_add(1, Ordering::Relaxed);
                    s.report(&format!("{}: {e}", s.name));
                }
            }
        }
        if s.cfg.max_retry > 0 && retries >= s.cfg.max_retry {
            s.failed.fetch_add(n, Ordering::Relaxed);
            s.report(&format!(
                "{}: gave up on {n} {} entries after {} retries",
                s.name,
                s.stream.noun(),
                retries
            ));
            batch.clear();
            return Flush::Done;
        }
        let mut wait = s.cfg.retry_backoff.wait(s.cfg.retry_interval, retries);
        retries += 1;
        if let Some(d) = limit {
            wait = wait.min(d.saturating_duration_since(Instant::now()));
        }
        if !pause(ctl, wait).await {
            return Flush::Cancelled;
        }
    }
}

async fn worker(s: Arc<Shared>, mut rx: mpsc::Receiver<Record>) {
    let mut ctl = s.control.subscribe();
    let mut conn = Conn::new(s.endpoint.clone(), s.resolver.clone());
    let bs = s.cfg.batch_size;
    let mut batch: Vec<Record> = Vec::with_capacity(bs);
    let mut buf = Vec::new();
    let mut last_flush = Instant::now();
    loop {
        let control = *ctl.borrow_and_update();
        match control {
            Control::Run => {}
            Control::Drain(deadline) => {
                let report = drain(&s, &mut conn, &mut ctl, rx, batch, &mut buf, deadline).await;
                s.drained
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(ShutdownReport::default)
                    .add(&report);
                s.worker_done.store(true, Ordering::Release);
                s.stored.notify_one();
                return;
            }
            Control::Cancel => {
                cancel_exit(&s, rx, batch);
                s.worker_done.store(true, Ordering::Release);
                s.stored.notify_one();
                return;
            }
        }
        s.take_migrated(&mut batch, bs);
        if bs > 1 && batch.len() + rx.len() >= bs {
            // A full batch is already queued (its signal was consumed by an earlier wake-up).
            // Partial batches stay in the queue, so the senders' "full batch queued" signal
            // keeps matching what the worker needs.
            fill(&mut rx, &mut batch, bs);
        }
        if batch.len() >= bs {
            if let Flush::Cancelled = flush(&s, &mut conn, &mut ctl, &mut batch, &mut buf).await {
                continue;
            }
            last_flush = Instant::now();
            continue;
        }
        let flush_at = last_flush + s.cfg.flush_interval;
        let do_flush = if bs == 1 {
            tokio::select! {
                biased;
                r = ctl.changed() => {
                    if r.is_err() {
                        // The target object is gone: nothing can be delivered any more.
                        return;
                    }
                    false
                }
                r = rx.recv() => match r {
                    Some(r) => {
                        batch.push(r);
                        true
                    }
                    None => return,
                },
                _ = s.wake.notified() => false,
            }
        } else {
            // Batching: the worker does not wait on the channel (which would wake it for
            // every entry); senders signal `ready` once a full batch is queued, and the
            // timer bounds how long a partial batch waits.
            tokio::select! {
                biased;
                r = ctl.changed() => {
                    if r.is_err() {
                        return;
                    }
                    false
                }
                _ = s.ready.notified() => {
                    if batch.len() + rx.len() >= bs {
                        fill(&mut rx, &mut batch, bs);
                    }
                    batch.len() >= bs || (!batch.is_empty() && Instant::now() >= flush_at)
                }
                _ = tokio::time::sleep_until(flush_at) => {
                    fill(&mut rx, &mut batch, bs);
                    if batch.is_empty() {
                        // Idle: next look one interval from now.
                        last_flush = Instant::now();
                        false
                    } else {
                        true
                    }
                }
                _ = s.wake.notified() => false,
            }
        };
        if do_flush {
            if let Flush::Cancelled = flush(&s, &mut conn, &mut ctl, &mut batch, &mut buf).await {
                continue;
            }
            last_flush = Instant::now();
        }
    }
}

/// Moves queued entries into `batch` until it holds `max` or the queue is empty.
fn fill(rx: &mut mpsc::Receiver<Record>, batch: &mut Vec<Record>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

/// Closes the queue and collects everything still pending, in order: the worker's batch,
/// the migration buffer, then the queue.
fn collect_pending(s: &Shared, mut rx: mpsc::Receiver<Record>, batch: Vec<Record>) -> Vec<Record> {
    rx.close();
    let mut all = batch;
    {
        let mut m = s.migration.lock().unwrap_or_else(|p| p.into_inner());
        m.closed = true;
        all.extend(m.buf.drain(..));
    }
    while let Ok(r) = rx.try_recv() {
        all.push(r);
    }
    all
}

fn cancel_exit(s: &Shared, rx: mpsc::Receiver<Record>, batch: Vec<Record>) {
    let pending = collect_pending(s, rx, batch);
    let n = pending.len() as u64;
    match s.replacement.get() {
        Some(next) => {
            s.migrated.fetch_add(n, Ordering::Relaxed);
            next.adopt(pending);
            // Stored files are adopted by the replacement's replay loop.
            let disk = s.disk_entries.swap(0, Ordering::Relaxed);
            s.migrated.fetch_add(disk, Ordering::Relaxed);
        }
        None => {
            if n > 0 {
                s.dropped.fetch_add(n, Ordering::Relaxed);
                s.report(&format!(
                    "{}: {n} pending {} entries dropped: target removed",
                    s.name,
                    s.stream.noun()
                ));
            }
        }
    }
}

async fn drain(
    s: &Shared,
    conn: &mut Conn,
    ctl: &mut watch::Receiver<Control>,
    rx: mpsc::Receiver<Record>,
    batch: Vec<Record>,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> ShutdownReport {
    let sent_before = s.sent.load(Ordering::Relaxed);
    let pending = collect_pending(s, rx, batch);
    let mut report = ShutdownReport::default();
    let mut left: Vec<Record> = Vec::new();
    let mut it = pending.into_iter().peekable();
    while it.peek().is_some() {
        let mut chunk: Vec<Record> = it.by_ref().take(s.cfg.batch_size).collect();
        if Instant::now() < deadline {
            let _ = flush(s, conn, ctl, &mut chunk, buf).await;
        }
        left.extend(chunk);
    }
    if !left.is_empty() {
        let n = left.len() as u64;
        // Memory mode, or the disk could not take them: lost, counted and reported.
        s.dropped.fetch_add(n, Ordering::Relaxed);
        report.dropped += n;
        s.report(&format!(
            "{}: {n} {} entries not delivered before the shutdown deadline and dropped",
            s.name,
            s.stream.noun()
        ));
    }
    if s.store.is_none() {
        report.delivered = s.sent.load(Ordering::Relaxed) - sent_before;
    }
    report
}

/// Replay loop of the disk queue.
async fn replay(s: Arc<Shared>, store: Arc<Store>) {
    let mut ctl = s.control.subscribe();
    let lock = dir_lock(store.dir());
    let _guard = tokio::select! {
        biased;
        g = lock.lock_owned() => g,
        _ = wait_stop(&mut ctl) => return,
    };
    // `sent` when the shutdown drain started, to report what was delivered during it.
    let mut drain_base: Option<u64> = None;
    // Adopt what earlier instances (another process, a replaced target) left behind.
    if let Ok(files) = store.list() {
        for f in files.iter().filter(|f| f.instance != store.instance()) {
            s.total.fetch_add(f.count, Ordering::Relaxed);
            s.disk_entries.fetch_add(f.count, Ordering::Relaxed);
            s.disk_files.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut conn = Conn::new(s.endpoint.clone(), s.resolver.clone());
    loop {
        let control = *ctl.borrow_and_update();
        let limit = match control {
            Control::Cancel => return,
            Control::Drain(d) => Some(d),
            Control::Run => None,
        };
        if limit.is_some() && drain_base.is_none() {
            drain_base = Some(s.sent.load(Ordering::Relaxed));
        }
        let worker_done = s.worker_done.load(Ordering::Acquire);
        let files = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.list())
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
        };
        let files = match files {
            Ok(f) => f,
            Err(e) => {
                s.report(&format!("{}: cannot list disk queue: {e}", s.name));
                Vec::new()
            }
        };
        let mut failed_once = false;
        for f in &files {
            if let Some(d) = limit {
                if Instant::now() >= d {
                    break;
                }
            }
            if *ctl.borrow() == Control::Cancel {
                return;
            }
            match replay_one(&s, &store, &mut conn, f, limit).await {
                Ok(()) => {}
                Err(()) => {
                    failed_once = true;
                    break;
                }
            }
        }
        if let Some(d) = limit {
            let empty = s.disk_entries.load(Ordering::Relaxed) == 0;
            if Instant::now() >= d || (worker_done && empty && !failed_once && files.is_empty()) {
                let persisted = s.disk_entries.load(Ordering::Relaxed);
                let mut g = s.drained.lock().unwrap_or_else(|p| p.into_inner());
                let r = g.get_or_insert_with(ShutdownReport::default);
                r.persisted = persisted;
                r.delivered += s.sent.load(Ordering::Relaxed) - drain_base.unwrap_or(0);
                return;
            }
        }
        let mut wait = s.cfg.replay_interval;
        if let Some(d) = limit {
            wait = wait.min(d.saturating_duration_since(Instant::now()));
        }
        if !files.is_empty() && !failed_once {
            // Something was delivered: look again right away for what came meanwhile.
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = s.stored.notified(), if !failed_once => {}
            r = ctl.changed() => {
                if r.is_err() {
                    return;
                }
            }
        }
    }
}

/// Resolves on cancel, or at the deadline of a shutdown drain.
async fn wait_stop(ctl: &mut watch::Receiver<Control>) {
    loop {
        let c = *ctl.borrow_and_update();
        match c {
            Control::Cancel => return,
            Control::Drain(d) => {
                tokio::time::sleep_until(d).await;
                return;
            }
            Control::Run => {
                if ctl.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn replay_one(
    s: &Shared,
    store: &Arc<Store>,
    conn: &mut Conn,
    f: &StoredFile,
    limit: Option<Instant>,
) -> Result<(), ()> {
    let read = {
        let store = store.clone();
        let f = f.clone();
        tokio::task::spawn_blocking(move || store.read(&f))
            .await
            .unwrap_or_else(|e| Err(ReadError::Io(e.to_string())))
    };
    // Returns false when the file could not be deleted (it would be sent again).
    let forget = |s: &Shared| -> bool {
        if let Err(e) = store.remove(f) {
            s.report(&format!("{}: disk queue: {e}", s.name));
            return false;
        }
        let _ = s
            .disk_entries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(f.count))
            });
        let _ = s
            .disk_files
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
        true
    };
    let body = match read {
        Ok(b) if b.is_empty() => {
            return if forget(s) { Ok(()) } else { Err(()) };
        }
        Ok(b) => Bytes::from(b),
        Err(ReadError::Io(e)) => {
            s.report(&format!("{}: cannot read disk queue file: {e}", s.name));
            return Err(());
        }
        Err(ReadError::Corrupt(e)) => {
            s.failed.fetch_add(f.count, Ordering::Relaxed);
            s.report(&format!(
                "{}: corrupt disk queue file deleted ({} entries lost): {e}",
                s.name, f.count
            ));
            return if forget(s) { Ok(()) } else { Err(()) };
        }
    };
    match s.attempt(conn, &body, f.count, limit).await {
        Ok(()) => {
            s.sent.fetch_add(f.count, Ordering::Relaxed);
            if forget(s) {
                Ok(())
            } else {
                Err(())
            }
        }
        Err(e) => {
            s.note_failure(f.count as usize, &e);
            Err(())
        }
    }
}

impl Target for WebhookTarget {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn endpoint(&self) -> &str {
        &self.shared.cfg.endpoint_text
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Http
    }

    fn send(&self, record: Record) -> Result<(), SendError> {
        self.shared.send(record)
    }

    fn stats(&self) -> TargetStats {
        let s = &self.shared;
        // Outcome counters first, `total` last: every outcome follows its offer, so the
        // derived `queued` is never negative and the sum always equals `total`.
        let sent = s.sent.load(Ordering::Acquire);
        let failed = s.failed.load(Ordering::Acquire);
        let dropped = s.dropped.load(Ordering::Acquire);
        let migrated = s.migrated.load(Ordering::Acquire);
        let total = s.total.load(Ordering::Acquire);
        let resolved = sent + failed + dropped + migrated;
        TargetStats {
            name: s.name.clone(),
            endpoint: s.cfg.endpoint_text.clone(),
            total: total.max(resolved),
            sent,
            failed,
            dropped,
            migrated,
            queued: total.saturating_sub(resolved),
            send_errors: s.send_errors.load(Ordering::Relaxed),
            queue_length: (s.tx.max_capacity() - s.tx.capacity()) as u64,
            disk_queue_files: s.disk_files.load(Ordering::Relaxed),
            online: s.online.load(Ordering::Relaxed),
        }
    }

    fn is_online(&self) -> bool {
        self.shared.online.load(Ordering::Relaxed)
    }

    fn cancel(&self) -> BoxFuture<()> {
        let s = self.shared.clone();
        Box::pin(async move {
            s.closed.store(true, Ordering::Release);
            s.control.send_replace(Control::Cancel);
            let tasks = std::mem::take(&mut *s.tasks.lock().unwrap_or_else(|p| p.into_inner()));
            for t in tasks {
                let _ = t.await;
            }
        })
    }

    fn shutdown(&self, deadline: std::time::Instant) -> BoxFuture<ShutdownReport> {
        let s = self.shared.clone();
        Box::pin(async move {
            let deadline = Instant::from_std(deadline);
            s.closed.store(true, Ordering::Release);
            s.control.send_if_modified(|c| {
                if *c == Control::Run {
                    *c = Control::Drain(deadline);
                    true
                } else {
                    false
                }
            });
            let tasks = std::mem::take(&mut *s.tasks.lock().unwrap_or_else(|p| p.into_inner()));
            let mut tasks = tasks.into_iter();
            // Worker and replay loop end by themselves at the deadline; the cert reloader
            // ends when it sees the control change.
            for t in tasks.by_ref() {
                let _ = t.await;
            }
            let report = s
                .drained
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_default();
            report
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
