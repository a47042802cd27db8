//! The `queue_dir` disk queue (LOGGING.md §2.4): permissions, the bound in bytes, and what a
//! replacement without the same directory does with the stored files.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use nodegrid_log::test_support::{audit_targets, Target, WebhookTarget};
use nodegrid_log::{
    AuditEntry, ConsoleMode, ConsoleTarget, Identity, Record, Registry, Stream, WebhookConfig,
    WebhookConfigBuilder,
};

fn rec(i: u64) -> Record {
    let mut e = AuditEntry::new();
    e.tags.insert("id".into(), i.into());
    Record::Audit(Arc::new(e))
}

fn entry(i: u64) -> AuditEntry {
    let mut e = AuditEntry::new();
    e.tags.insert("id".into(), i.into());
    e
}

fn ids(r: &Receiver) -> Vec<u64> {
    r.lines()
        .iter()
        .map(|l| l["tags"]["id"].as_u64().expect("id"))
        .collect()
}

fn disk(url: &str, dir: &std::path::Path) -> WebhookConfigBuilder {
    WebhookConfig::builder("_", url)
        .queue_dir(dir)
        .flush_interval(Duration::from_millis(20))
        .retry_interval(Duration::from_millis(20))
        .replay_interval(Duration::from_millis(50))
}

fn start(b: WebhookConfigBuilder) -> (WebhookTarget, nodegrid_log::Capture) {
    audit_target(b.build().expect("cfg"))
}

/// LOGGING.md §6: the directory gets 0770; files 0660 (the spec's 0770 without the execute
/// bit), whatever the umask. Before: files were created 0644 under the usual umask 022.
#[cfg(unix)]
#[tokio::test]
async fn directory_and_files_get_the_spec_permissions() {
    use std::os::unix::fs::PermissionsExt;
    quiet();
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr().await;
    let (t, _cap) = start(disk(&format!("http://{addr}/"), dir.path()));
    for i in 0..3 {
        t.send(rec(i)).expect("accepted");
    }
    let qdir = dir.path().join("nodegrid-http-audit-_");
    // The stats count a file from the start of its write: wait for the renamed files too.
    eventually("3 files", || {
        t.stats().disk_queue_files == 3
            && std::fs::read_dir(&qdir).map_or(0, |d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".snappy"))
                    .count()
            }) == 3
    })
    .await;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&qdir), 0o770, "directory");
    let files: Vec<_> = std::fs::read_dir(&qdir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 3);
    for f in &files {
        assert_eq!(mode(f), 0o660, "{}", f.display());
    }
    t.cancel().await;
}

/// The disk queue is bounded in bytes as well as in files: a batch that does not fit is not
/// written, counted in `disk_queue_full`, reported once, and retried until the replay loop
/// makes room. Before: no bound in bytes existed.
#[tokio::test]
async fn disk_queue_is_bounded_in_bytes() {
    quiet();
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr().await;
    let url = format!("http://{addr}/");
    // Measure one stored entry, then allow two and a half of them.
    let (probe, _) = start(disk(&url, dir.path()).queue_dir_max_bytes(1 << 20));
    probe.send(rec(0)).expect("accepted");
    eventually("probe stored", || probe.stats().disk_queue_bytes > 0).await;
    let one = probe.stats().disk_queue_bytes;
    probe.cancel().await;
    let probe_dir = tempfile::tempdir().expect("tempdir");
    std::fs::rename(
        dir.path().join("nodegrid-http-audit-_"),
        probe_dir.path().join("p"),
    )
    .expect("move the probe's file away");
    let bound = 2 * one + one / 2;
    let (t, cap) = start(disk(&url, dir.path()).queue_dir_max_bytes(bound));
    for i in 0..5 {
        t.send(rec(i)).expect("accepted");
    }
    eventually("the bound was hit twice", || t.stats().disk_queue_full >= 2).await;
    let s = t.stats();
    // Entries differ by a few bytes (their times), so the third never fits in half of one.
    assert_eq!(s.disk_queue_files, 2, "{s:?}");
    assert!(
        s.disk_queue_bytes > one && s.disk_queue_bytes <= bound,
        "{s:?}"
    );
    assert_eq!(
        (s.total, s.queued, s.dropped, s.failed),
        (5, 5, 0, 0),
        "{s:?}"
    );
    let text = cap.contents();
    let full: Vec<&str> = text.lines().filter(|l| l.contains("is full")).collect();
    assert_eq!(full.len(), 1, "reported once: {text}");
    assert!(
        full[0].contains(&format!("limit of {bound} bytes")),
        "{text}"
    );
    let r = Receiver::start_on(addr).await;
    bounded(r.wait_lines(5)).await;
    eventually("all sent", || t.stats().sent == 5).await;
    assert_eq!(ids(&r), vec![0, 1, 2, 3, 4], "oldest first");
    let s = t.stats();
    assert_eq!(
        (s.disk_queue_files, s.disk_queue_bytes, s.queued),
        (0, 0, 0)
    );
    check_invariant(&s);
    t.cancel().await;
}

/// Replacing a target by a same-named one without its `queue_dir`: the stored files are not
/// "migrated" (nobody replays them); they stay on disk, stay `queued` in the old target, are
/// reported once, and a later target with that directory delivers them. Before: the old
/// target counted them as migrated.
#[tokio::test]
async fn replacement_without_the_queue_dir_does_not_claim_the_files() {
    quiet();
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr().await;
    let url = format!("http://{addr}/");
    let (console, cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    reg.update_webhooks(
        Stream::Audit,
        vec![disk(&url, dir.path()).build().expect("cfg")],
    )
    .expect("with queue_dir");
    let old = audit_targets(&reg)[0].clone();
    let audit = reg.audit();
    for i in 0..3 {
        audit.log(entry(i));
    }
    eventually("3 files", || old.stats().disk_queue_files == 3).await;
    let other = Receiver::start().await;
    reg.update_webhooks(
        Stream::Audit,
        vec![WebhookConfig::builder("_", other.url("/"))
            .build()
            .expect("cfg")],
    )
    .expect("without queue_dir");
    let report = "stay in the disk queue";
    eventually("reported", || cap.contents().contains(report)).await;
    let s = old.stats();
    assert_eq!(
        (s.total, s.migrated, s.queued, s.disk_queue_files),
        (3, 0, 3, 3),
        "{s:?}"
    );
    check_invariant(&s);
    assert!(
        cap.contents()
            .contains("3 files (3 audit entries) stay in the disk queue"),
        "{}",
        cap.contents()
    );
    assert!(
        other.lines().is_empty(),
        "the replacement does not replay them"
    );
    // A target with the directory delivers them.
    let r = Receiver::start_on(addr).await;
    reg.update_webhooks(
        Stream::Audit,
        vec![disk(&url, dir.path()).build().expect("cfg")],
    )
    .expect("with queue_dir again");
    bounded(r.wait_lines(3)).await;
    assert_eq!(ids(&r), vec![0, 1, 2]);
    let _ = reg.shutdown(Duration::from_secs(2)).await;
}

/// The same with the same `queue_dir`: the files are handed over (migrated) and the
/// replacement delivers and counts them.
#[tokio::test]
async fn replacement_with_the_same_queue_dir_takes_over_the_files() {
    quiet();
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr().await;
    let url = format!("http://{addr}/");
    let (console, _cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    reg.update_webhooks(
        Stream::Audit,
        vec![disk(&url, dir.path()).build().expect("cfg")],
    )
    .expect("first");
    let old = audit_targets(&reg)[0].clone();
    let audit = reg.audit();
    for i in 0..3 {
        audit.log(entry(i));
    }
    eventually("3 files", || old.stats().disk_queue_files == 3).await;
    reg.update_webhooks(
        Stream::Audit,
        vec![disk(&url, dir.path()).batch_size(2).build().expect("cfg")],
    )
    .expect("replacement");
    let new = audit_targets(&reg)[0].clone();
    eventually("old settled", || old.stats().migrated == 3).await;
    // The receiver comes up only now: the old target, cancelled, cannot deliver a file itself
    // (an attempt it had in flight at the cancel would have, seen in 2 of 40 runs).
    let r = Receiver::start_on(addr).await;
    bounded(r.wait_lines(3)).await;
    assert_eq!(ids(&r), vec![0, 1, 2]);
    eventually("new counted", || new.stats().sent == 3).await;
    let (o, n) = (old.stats(), new.stats());
    assert_eq!((o.total, o.migrated, o.queued), (3, 3, 0), "{o:?}");
    assert_eq!((n.total, n.sent, n.queued), (3, 3, 0), "{n:?}");
    check_invariant(&o);
    check_invariant(&n);
    let _ = reg.shutdown(Duration::from_secs(2)).await;
}

/// A stored file that holds no entries (an empty batch) is deleted without a request.
#[tokio::test]
async fn an_empty_stored_file_is_deleted_without_a_request() {
    quiet();
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let qdir = dir.path().join("nodegrid-http-audit-_");
    std::fs::create_dir_all(&qdir).expect("mkdir");
    // Snappy (raw block format) of the empty string.
    let empty = qdir.join("00000000000000000001-0-dead.ndjson.snappy");
    std::fs::write(&empty, [0u8]).expect("write");
    let (t, _cap) = start(disk(&r.url("/"), dir.path()));
    eventually("the empty file deleted", || !empty.exists()).await;
    // Oldest first: the empty file went before this entry.
    t.send(rec(7)).expect("accepted");
    bounded(r.wait_lines(1)).await;
    assert_eq!(ids(&r), vec![7]);
    assert_eq!(r.arrivals(), 1, "no request for the empty file");
    t.cancel().await;
}

/// After a failed replay the loop waits `replay_interval` before it tries again: one
/// request in a window shorter than the interval, not a stream of them.
#[tokio::test]
async fn a_failed_replay_waits_for_the_replay_interval() {
    quiet();
    let r = Receiver::start().await;
    r.set_mode(500);
    let dir = tempfile::tempdir().expect("tempdir");
    let (t, _cap) = start(disk(&r.url("/"), dir.path()).replay_interval(Duration::from_secs(5)));
    t.send(rec(1)).expect("accepted");
    bounded(r.wait_arrivals(1)).await;
    // A window well inside the interval: nothing may arrive in it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.arrivals(), 1, "retried before the replay interval");
    assert_eq!(t.stats().send_errors, 1);
    t.cancel().await;
}

/// During a shutdown the replay loop does not end while the worker may still write a
/// batch: the queue holds one file (queue_size 1), the next batch waits for room, and once
/// the held file is delivered and deleted the waiting batch is written and delivered too,
/// before the deadline.
#[tokio::test]
async fn shutdown_replays_the_batch_the_worker_writes_last() {
    quiet();
    let r = Receiver::start().await;
    r.set_mode(HOLD);
    let dir = tempfile::tempdir().expect("tempdir");
    let (t, _cap) = start(
        disk(&r.url("/"), dir.path())
            .queue_size(1)
            .retry_interval(Duration::from_millis(300)),
    );
    t.send(rec(0)).expect("accepted");
    bounded(r.wait_arrivals(1)).await;
    t.send(rec(1)).expect("accepted");
    eventually("the second batch waits for room", || {
        t.stats().disk_queue_full >= 1
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (report, ()) = bounded(async {
        tokio::join!(t.shutdown(deadline), async {
            // The drain is on; the worker tried again and still found no room.
            eventually("no room during the drain", || {
                t.stats().disk_queue_full >= 2
            })
            .await;
            r.release();
        })
    })
    .await;
    assert_eq!(
        (report.delivered, report.persisted, report.dropped),
        (2, 0, 0)
    );
    assert_eq!(ids(&r), vec![0, 1]);
}
