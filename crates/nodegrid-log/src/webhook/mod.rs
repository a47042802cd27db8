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

mod backoff;
mod certs;
mod client;
mod config;
mod proxy;
mod replay;
mod state;
mod store;
mod worker;

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

pub use backoff::RetryBackoff;
use config::ProxySetting;
pub use config::{WebhookConfig, WebhookConfigBuilder};

use crate::console::ConsoleTarget;
use crate::entry::Record;
use crate::error::Error;
use crate::identity::Identity;
use crate::internal::internal;
use crate::target::{
    BoxFuture, Failure, SendError, ShutdownReport, Stream, Target, TargetKind, TargetStats,
};
use certs::CertResolver;
use client::Endpoint;
use state::{Control, Migration, Shared};
use store::Store;

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
                Store::open(dir, &name, cfg.queue_size, cfg.queue_dir_max_bytes)
                    .map_err(start_err)?,
            )),
            None => None,
        };
        let resolver = match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => {
                let r = Arc::new(CertResolver::default());
                match certs::load_key_pair(cert, key) {
                    Ok(k) => r.set(Some(k)),
                    Err(e) => {
                        console.report(
                            &name,
                            Failure::Certificate,
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
        let proxy = match &cfg.proxy {
            ProxySetting::Url(p) => Some(p.clone()),
            ProxySetting::Direct => None,
            ProxySetting::Environment => {
                let https = cfg.endpoint.scheme_str() == Some("https");
                let host = cfg.endpoint.host().unwrap_or_default();
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let port = cfg
                    .endpoint
                    .port_u16()
                    .unwrap_or(if https { 443 } else { 80 });
                proxy::from_env(https, host, port, |k| std::env::var(k).ok()).map_err(start_err)?
            }
        };
        let endpoint = Endpoint::new(&cfg.endpoint, tls, proxy).map_err(start_err)?;
        let headers = state::build_headers(&cfg, identity).map_err(start_err)?;
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
            disk_bytes: AtomicI64::new(0),
            disk_full: AtomicU64::new(0),
            disk_exits: AtomicU8::new(0),
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
        let mut tasks = vec![handle.spawn(internal(worker::worker(shared.clone(), rx)))];
        if let Some(store) = shared.store.clone() {
            tasks.push(handle.spawn(internal(replay::replay(shared.clone(), store))));
        }
        if shared.resolver.is_some() {
            tasks.push(handle.spawn(internal(cert_reloader(shared.clone()))));
        }
        *shared.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(WebhookTarget { shared })
    }

    /// Cached online state (LOGGING.md §2.3.5); never a probe.
    #[cfg(any(test, feature = "test-support"))]
    pub fn is_online(&self) -> bool {
        self.shared.online.load(Ordering::Relaxed)
    }

    /// The configuration the target runs with.
    pub fn config(&self) -> &WebhookConfig {
        &self.shared.cfg
    }

    /// Reloads the client certificate and key from their files now (e.g. on SIGHUP). New
    /// connections use the new pair. On error the previous pair stays in use; the error
    /// names the file and is not reported to the console (that is the caller's call).
    pub fn reload_client_cert(&self) -> Result<(), Error> {
        self.shared
            .reload_cert(false)
            .map_err(|reason| Error::Certificate {
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

async fn cert_reloader(s: Arc<Shared>) {
    let (Some(cert), Some(key)) = (s.cfg.client_cert.clone(), s.cfg.client_key.clone()) else {
        return;
    };
    let mut ctl = s.control.subscribe();
    let mut stamp = (certs::file_stamp(&cert), certs::file_stamp(&key));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(s.cfg.cert_reload_interval) => {}
            r = ctl.changed() => {
                if r.is_err() || *ctl.borrow() != Control::Run {
                    return;
                }
            }
        }
        let now = (certs::file_stamp(&cert), certs::file_stamp(&key));
        if now != stamp {
            stamp = now;
            let _ = s.reload_cert(true);
        }
    }
}

impl Target for WebhookTarget {
    fn name(&self) -> &str {
        &self.shared.name
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
            disk_queue_bytes: s.disk_bytes.load(Ordering::Relaxed).max(0) as u64,
            disk_queue_full: s.disk_full.load(Ordering::Relaxed),
            online: s.online.load(Ordering::Relaxed),
        }
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
            // Whatever is delivered from here on, a request already in flight included, is
            // delivered during the shutdown.
            let sent_before = s.sent.load(Ordering::Acquire);
            s.closed.store(true, Ordering::Release);
            let draining = s.control.send_if_modified(|c| {
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
            let mut report = s
                .drained
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_default();
            if draining {
                // Counted once both tasks have ended, so no batch is in flight any more.
                report.delivered = s.sent.load(Ordering::Acquire) - sent_before;
                if s.store.is_some() {
                    report.persisted = s.disk_entries.load(Ordering::Acquire);
                }
            }
            report
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
