//! The worker of a webhook target (LOGGING.md §2.3.3, §2.3.4, §2.3.7): collects entries
//! from the queue and the migration buffer into batches, encodes each batch once as NDJSON,
//! and delivers it (memory mode) or writes it to the disk queue (`queue_dir`), retrying per
//! `max_retry` / `retry_interval`. On cancel it hands its pending entries to the replacement;
//! on shutdown it delivers until the deadline.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::client::Conn;
use super::state::{cancelled, Attempt, Control, Shared};
use super::store::PutError;
use crate::entry::Record;
use crate::internal::internal;
use crate::target::{Failure, ShutdownReport};

enum Flush {
    Done,
    /// Cancel requested while retrying; the batch is still held.
    Cancelled,
}

/// Encodes `batch` into `buf` (one NDJSON line each); unencodable entries are counted as
/// failed and removed from the batch. Returns how many lines were written.
fn encode(s: &Shared, batch: &mut Vec<Record>, buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    batch.retain(|r| match r.encode_line(buf) {
        Ok(()) => true,
        Err(e) => {
            s.failed.fetch_add(1, Ordering::Relaxed);
            s.report(
                Failure::Encode,
                &format!("{}: cannot encode entry: {e}", s.name),
            );
            false
        }
    });
    batch.len() as u64
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
    s: &Arc<Shared>,
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
                    .unwrap_or_else(|e| Err(PutError::Io(format!("disk queue task: {e}"))));
                match put {
                    Ok(f) => {
                        s.disk_bytes.fetch_add(f.size as i64, Ordering::Relaxed);
                        s.stored.notify_one();
                        Ok(())
                    }
                    Err(e) => {
                        s.disk_entries.fetch_sub(n, Ordering::Relaxed);
                        s.disk_files.fetch_sub(1, Ordering::Relaxed);
                        Err(Some(e))
                    }
                }
            }
            None => {
                let idle = Conn::new(s.endpoint.clone(), s.resolver.clone());
                let mut attempt =
                    s.attempt_owned(std::mem::replace(conn, idle), body.clone(), n, limit);
                let done = tokio::select! {
                    biased;
                    r = &mut attempt => Some(r),
                    _ = cancelled(ctl) => None,
                };
                let Some((used, r)) = done else {
                    detach(s, attempt, std::mem::take(batch));
                    return Flush::Cancelled;
                };
                *conn = used;
                match r {
                    Ok(()) => {
                        s.sent.fetch_add(n, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(e) => {
                        s.note_failure(&e);
                        Err(None)
                    }
                }
            }
        };
        match res {
            Ok(()) => {
                batch.clear();
                return Flush::Done;
            }
            Err(Some(PutError::Full(e))) => {
                s.disk_full.fetch_add(1, Ordering::Relaxed);
                s.report(Failure::DiskFull, &format!("{}: {e}", s.name));
            }
            Err(Some(PutError::Io(e))) => {
                s.send_errors.fetch_add(1, Ordering::Relaxed);
                s.report(Failure::Disk, &format!("{}: {e}", s.name));
            }
            // A failed attempt, counted and reported by `note_failure`.
            Err(None) => {}
        }
        if s.cfg.max_retry > 0 && retries >= s.cfg.max_retry {
            s.failed.fetch_add(n, Ordering::Relaxed);
            s.report(
                Failure::GaveUp,
                &format!(
                    "{}: gave up on {} entries after {} (counted as failed)",
                    s.name,
                    s.stream.noun(),
                    if retries == 1 {
                        "1 retry".to_string()
                    } else {
                        format!("{retries} retries")
                    }
                ),
            );
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

/// The worker task: collects entries into batches and delivers (or stores) them.
pub(super) async fn worker(s: Arc<Shared>, mut rx: mpsc::Receiver<Record>) {
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
                cancel_exit(&s, rx, batch).await;
                s.worker_done.store(true, Ordering::Release);
                s.stored.notify_one();
                s.disk_task_done();
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

/// Cancelled while a request is in flight: the worker does not wait for it. The attempt
/// finishes in a task of its own (bounded by `http_timeout`); then its entries are counted as
/// sent, or passed on like the rest of the target's pending entries. Either way no failure
/// is reported: the target was cancelled (LOGGING.md §2.3.4).
fn detach(s: &Arc<Shared>, attempt: Attempt, records: Vec<Record>) {
    let s = s.clone();
    tokio::spawn(internal(async move {
        let (_, r) = attempt.await;
        match r {
            Ok(()) => {
                s.sent.fetch_add(records.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                s.send_errors.fetch_add(1, Ordering::Relaxed);
                s.hand_over(records);
            }
        }
    }));
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
///
/// The queue is read with `recv` until it reports its end: a sender that got its slot just
/// before the close may still be writing its entry, and `try_recv` would call the queue empty
/// meanwhile, leaving that entry in a queue nobody reads (found by the concurrency test: one
/// entry in about thirty runs).
async fn collect_pending(
    s: &Shared,
    mut rx: mpsc::Receiver<Record>,
    batch: Vec<Record>,
) -> Vec<Record> {
    rx.close();
    let mut all = batch;
    {
        let mut m = s.migration.lock().unwrap_or_else(|p| p.into_inner());
        m.closed = true;
        all.extend(m.buf.drain(..));
    }
    while let Some(r) = rx.recv().await {
        all.push(r);
    }
    all
}

async fn cancel_exit(s: &Shared, rx: mpsc::Receiver<Record>, batch: Vec<Record>) {
    let pending = collect_pending(s, rx, batch).await;
    s.hand_over(pending);
}

async fn drain(
    s: &Arc<Shared>,
    conn: &mut Conn,
    ctl: &mut watch::Receiver<Control>,
    rx: mpsc::Receiver<Record>,
    batch: Vec<Record>,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> ShutdownReport {
    let pending = collect_pending(s, rx, batch).await;
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
        // A one-time report per target, so its count cannot defeat the de-duplication.
        s.report(
            Failure::Shutdown,
            &format!(
                "{}: {n} {} entries not delivered before the shutdown deadline and dropped",
                s.name,
                s.stream.noun()
            ),
        );
    }
    report
}
