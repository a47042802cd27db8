//! The replay loop of the disk queue (LOGGING.md §2.4): POSTs stored batches oldest first,
//! deletes each on 2xx, and adopts the files an earlier instance left behind.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::{watch, OwnedMutexGuard};
use tokio::time::Instant;

use super::client::Conn;
use super::state::{cancelled, Control, Shared};
use super::store::{ReadError, Store, StoredFile};
use crate::internal::internal;
use crate::target::Failure;

/// One async lock per disk-queue directory: only one replay loop (old or new target of the
/// same name) reads a directory at a time, so a file is never sent twice concurrently.
fn dir_lock(dir: &std::path::Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let map = LOCKS.get_or_init(Default::default);
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    m.entry(dir.to_path_buf()).or_default().clone()
}

/// Replay loop of the disk queue. When it ends (unless a detached attempt ends it later), the
/// target's disk backlog may be settled (see `Shared::disk_task_done`).
pub(super) async fn replay(s: Arc<Shared>, store: Arc<Store>) {
    if run(&s, store).await != Exit::Detached {
        s.disk_task_done();
    }
}

#[derive(PartialEq, Eq)]
enum Exit {
    Ended,
    /// Left an attempt in flight, which calls `disk_task_done` itself.
    Detached,
}

async fn run(s: &Arc<Shared>, store: Arc<Store>) -> Exit {
    let mut ctl = s.control.subscribe();
    let lock = dir_lock(store.dir());
    let mut guard = tokio::select! {
        biased;
        g = lock.lock_owned() => Some(g),
        _ = wait_stop(&mut ctl) => return Exit::Ended,
    };
    // Files of earlier instances (another process, a replaced target) counted so far. They
    // are adopted when first listed, so a file a replaced target writes after this loop
    // started is counted too.
    let mut adopted: HashSet<PathBuf> = HashSet::new();
    let mut conn = Conn::new(s.endpoint.clone(), s.resolver.clone());
    loop {
        let control = *ctl.borrow_and_update();
        let limit = match control {
            Control::Cancel => return Exit::Ended,
            Control::Drain(d) => Some(d),
            Control::Run => None,
        };
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
                s.report(
                    Failure::Disk,
                    &format!("{}: cannot list disk queue: {e}", s.name),
                );
                Vec::new()
            }
        };
        for f in files.iter().filter(|f| f.instance != store.instance()) {
            if adopted.insert(f.path.clone()) {
                s.total.fetch_add(f.count, Ordering::Relaxed);
                s.disk_entries.fetch_add(f.count, Ordering::Relaxed);
                s.disk_files.fetch_add(1, Ordering::Relaxed);
                s.disk_bytes.fetch_add(f.size as i64, Ordering::Relaxed);
            }
        }
        let mut failed_once = false;
        for f in &files {
            if let Some(d) = limit {
                if Instant::now() >= d {
                    break;
                }
            }
            if *ctl.borrow() == Control::Cancel {
                return Exit::Ended;
            }
            match replay_one(s, &store, &mut conn, &mut ctl, &mut guard, f, limit).await {
                Step::Done => {
                    adopted.remove(&f.path);
                }
                Step::Failed => {
                    failed_once = true;
                    break;
                }
                Step::Detached => return Exit::Detached,
            }
        }
        if let Some(d) = limit {
            let empty = s.disk_entries.load(Ordering::Relaxed) == 0;
            // The shutdown counts what was delivered and what stays on disk once this loop
            // and the worker have ended.
            if Instant::now() >= d || (worker_done && empty && !failed_once && files.is_empty()) {
                return Exit::Ended;
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
                    return Exit::Ended;
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

/// Deletes a delivered (or corrupt) file and updates the gauges. Returns false when the file
/// could not be deleted (it would be sent again).
fn forget(s: &Shared, store: &Store, f: &StoredFile) -> bool {
    if let Err(e) = store.remove(f) {
        s.report(Failure::Disk, &format!("{}: disk queue: {e}", s.name));
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
    s.disk_bytes.fetch_sub(f.size as i64, Ordering::Relaxed);
    true
}

/// What became of one stored file.
enum Step {
    /// Delivered (or corrupt) and deleted.
    Done,
    /// Not delivered; retry later.
    Failed,
    /// Cancelled while its request was in flight; the attempt finishes on its own.
    Detached,
}

async fn replay_one(
    s: &Arc<Shared>,
    store: &Arc<Store>,
    conn: &mut Conn,
    ctl: &mut watch::Receiver<Control>,
    guard: &mut Option<OwnedMutexGuard<()>>,
    f: &StoredFile,
    limit: Option<Instant>,
) -> Step {
    let read = {
        let store = store.clone();
        let f = f.clone();
        tokio::task::spawn_blocking(move || store.read(&f))
            .await
            .unwrap_or_else(|e| Err(ReadError::Io(e.to_string())))
    };
    let done = |ok: bool| if ok { Step::Done } else { Step::Failed };
    let body = match read {
        Ok(b) if b.is_empty() => return done(forget(s, store, f)),
        Ok(b) => Bytes::from(b),
        Err(ReadError::Io(e)) => {
            s.report(
                Failure::Disk,
                &format!("{}: cannot read disk queue file: {e}", s.name),
            );
            return Step::Failed;
        }
        Err(ReadError::Corrupt(e)) => {
            s.failed.fetch_add(f.count, Ordering::Relaxed);
            s.report(
                Failure::Corrupt,
                &format!(
                    "{}: corrupt disk queue file deleted, its entries are counted as failed: {e}",
                    s.name
                ),
            );
            return done(forget(s, store, f));
        }
    };
    let idle = Conn::new(s.endpoint.clone(), s.resolver.clone());
    let mut attempt = s.attempt_owned(std::mem::replace(conn, idle), body, f.count, limit);
    let outcome = tokio::select! {
        biased;
        r = &mut attempt => Some(r),
        _ = cancelled(ctl) => None,
    };
    let Some((used, r)) = outcome else {
        // Cancelled mid-request: do not wait. The attempt finishes on its own and keeps the
        // directory lock until then, so a replacement replaying the same directory never
        // sends this file at the same time; on 2xx the file is deleted, else it stays for
        // the next replay. No failure is reported for a cancelled target.
        let (s, store, f, guard) = (s.clone(), store.clone(), f.clone(), guard.take());
        tokio::spawn(internal(async move {
            let (_, r) = attempt.await;
            if r.is_ok() {
                s.sent.fetch_add(f.count, Ordering::Relaxed);
                forget(&s, &store, &f);
            }
            drop(guard);
            s.disk_task_done();
        }));
        return Step::Detached;
    };
    *conn = used;
    match r {
        Ok(()) => {
            s.sent.fetch_add(f.count, Ordering::Relaxed);
            done(forget(s, store, f))
        }
        Err(e) => {
            s.note_failure(&e);
            Step::Failed
        }
    }
}
