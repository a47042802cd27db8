//! Webhook target against a real HTTP receiver on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use nodegrid_log::test_support::{SendError, Target, WebhookTarget};
use nodegrid_log::{
    AuditEntry, Capture, ConsoleMode, ConsoleTarget, Identity, Record, Stream, WebhookConfig,
    WebhookConfigBuilder,
};

fn identity() -> Identity {
    Identity {
        version: "0.1.0-test".into(),
        deployment_id: "dep-1".into(),
        user_agent: "nodegrid-test/0.1".into(),
    }
}

fn console() -> (Arc<ConsoleTarget>, Capture) {
    let (c, cap) = ConsoleTarget::capture(ConsoleMode::Json);
    (Arc::new(c), cap)
}

fn rec(i: u64) -> Record {
    let mut e = AuditEntry::new();
    e.api.name = "test.Call".into();
    e.tags.insert("id".into(), i.into());
    Record::Audit(Arc::new(e))
}

fn ids(lines: &[serde_json::Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| l["tags"]["id"].as_u64().expect("id tag"))
        .collect()
}

fn start(b: WebhookConfigBuilder, console: &Arc<ConsoleTarget>) -> WebhookTarget {
    let cfg = b.build().expect("valid config");
    WebhookTarget::start(Stream::Audit, cfg, &identity(), console.clone()).expect("start")
}

#[tokio::test]
async fn batches_by_count_with_spec_headers() {
    quiet();
    let r = Receiver::start().await;
    let (c, _cap) = console();
    let t = start(
        WebhookConfig::builder("_", r.url("/audit"))
            .batch_size(10)
            .flush_interval(Duration::from_secs(20))
            .auth_token("Bearer tok"),
        &c,
    );
    for i in 0..20 {
        t.send(rec(i)).expect("accepted");
    }
    bounded(r.wait_lines(20)).await;
    let reqs = r.requests();
    assert_eq!(reqs.len(), 2, "two full batches");
    for q in &reqs {
        assert_eq!(q.lines().len(), 10);
        assert_eq!(
            q.header("x-minio-webhook-payload-count").as_deref(),
            Some("10")
        );
        assert_eq!(q.header("x-minio-version").as_deref(), Some("0.1.0-test"));
        assert_eq!(q.header("x-minio-deployment-id").as_deref(), Some("dep-1"));
        assert_eq!(q.header("user-agent").as_deref(), Some("nodegrid-test/0.1"));
        assert_eq!(q.header("authorization").as_deref(), Some("Bearer tok"));
        assert_eq!(
            q.header("content-type").as_deref(),
            Some("application/x-ndjson")
        );
        assert!(
            q.body.ends_with(b"\n"),
            "NDJSON, each line ends with a newline"
        );
    }
    assert_eq!(ids(&r.lines()), (0..20).collect::<Vec<_>>(), "order kept");
    eventually("sent == 20", || t.stats().sent == 20).await;
    let s = t.stats();
    assert_eq!((s.total, s.sent, s.queued, s.dropped), (20, 20, 0, 0));
    check_invariant(&s);
    t.cancel().await;
}

#[tokio::test]
async fn partial_batch_is_flushed_by_time() {
    quiet();
    let r = Receiver::start().await;
    let (c, _cap) = console();
    let interval = Duration::from_millis(300);
    let t = start(
        WebhookConfig::builder("_", r.url("/"))
            .batch_size(10)
            .flush_interval(interval),
        &c,
    );
    let sent_at = tokio::time::Instant::now();
    for i in 0..3 {
        t.send(rec(i)).expect("accepted");
    }
    bounded(r.wait_lines(3)).await;
    let reqs = r.requests();
    assert_eq!(reqs.len(), 1, "one request for the partial batch");
    assert_eq!(reqs[0].lines().len(), 3);
    assert_eq!(
        reqs[0].header("x-minio-webhook-payload-count").as_deref(),
        Some("3")
    );
    let waited = reqs[0].at - sent_at;
    // A partial batch waits for the flush timer, at most one interval (+ scheduling slack).
    assert!(
        waited < interval + Duration::from_secs(2),
        "flushed too late: {waited:?}"
    );
    t.cancel().await;
}

#[tokio::test]
async fn batch_of_one_is_json_content_type_and_keeps_time() {
    quiet();
    let r = Receiver::start().await;
    r.set_delay(Duration::from_millis(300));
    let (c, _cap) = console();
    let t = start(WebhookConfig::builder("_", r.url("/")), &c);
    let e = AuditEntry::new();
    let stamp = e.time;
    t.send(Record::Audit(Arc::new(e))).expect("accepted");
    bounded(r.wait_lines(1)).await;
    let q = &r.requests()[0];
    assert_eq!(
        q.header("content-type").as_deref(),
        Some("application/json")
    );
    let line = &q.lines()[0];
    let got = time::OffsetDateTime::parse(
        line["time"].as_str().expect("time"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    assert_eq!(got, stamp, "the time of the call, not of delivery");
    assert!(line["time"].as_str().unwrap_or_default().ends_with('Z'));
    t.cancel().await;
}

#[tokio::test]
async fn receiver_down_then_up_entries_queue_retry_and_arrive_once() {
    quiet();
    let r = Receiver::start().await;
    r.set_mode(DROP);
    let (c, cap) = console();
    let t = start(
        WebhookConfig::builder("_", r.url("/"))
            .batch_size(5)
            .flush_interval(Duration::from_millis(50))
            .retry_interval(Duration::from_millis(100)),
        &c,
    );
    for i in 0..12 {
        t.send(rec(i)).expect("accepted");
    }
    bounded(r.wait_arrivals(3)).await;
    let s = t.stats();
    assert_eq!(s.sent, 0);
    assert_eq!(s.queued, 12);
    assert!(s.send_errors >= 2, "{s:?}");
    assert!(!s.online);
    check_invariant(&s);
    r.set_mode(OK);
    bounded(r.wait_lines(12)).await;
    eventually("sent == 12", || t.stats().sent == 12).await;
    let got = ids(&r.lines());
    assert_eq!(
        got,
        (0..12).collect::<Vec<_>>(),
        "each entry once, in order"
    );
    let s = t.stats();
    assert_eq!(
        (s.total, s.sent, s.failed, s.dropped, s.queued),
        (12, 12, 0, 0, 0)
    );
    assert!(s.online);
    // The failure was reported to the console, de-duplicated.
    let reports = cap
        .contents()
        .lines()
        .filter(|l| l.contains("could not send"))
        .count();
    assert_eq!(reports, 1, "{}", cap.contents());
    t.cancel().await;
}

#[tokio::test]
async fn queue_full_drops_are_counted_exactly() {
    quiet();
    let r = Receiver::start().await;
    r.set_mode(HOLD);
    let (c, _cap) = console();
    let q = 50u64;
    let t = start(
        WebhookConfig::builder("_", r.url("/")).queue_size(q as usize),
        &c,
    );
    t.send(rec(0)).expect("accepted");
    // The worker took entry 0 and is blocked on the held request.
    bounded(r.wait_arrivals(1)).await;
    check_invariant(&t.stats());
    for i in 1..=q {
        t.send(rec(i)).expect("fits in the queue");
        check_invariant(&t.stats());
    }
    let extra = 17u64;
    let t0 = std::time::Instant::now();
    for i in 0..extra {
        let e = t.send(rec(1000 + i)).expect_err("queue is full");
        assert!(matches!(e, SendError::QueueFull { .. }));
        check_invariant(&t.stats());
    }
    // Enqueue never waits for the (held) endpoint: 17 rejections take far less than the
    // http timeout (5 s); the bound is loose for slow, shared CI machines.
    assert!(
        t0.elapsed() < Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    let s = t.stats();
    assert_eq!(s.total, q + 1 + extra);
    assert_eq!(s.dropped, extra);
    assert_eq!(s.queued, q + 1);
    assert_eq!(s.queue_length, q);
    r.release();
    bounded(r.wait_lines((q + 1) as usize)).await;
    eventually("all sent", || t.stats().sent == q + 1).await;
    let s = t.stats();
    check_invariant(&s);
    assert_eq!(
        (s.sent, s.dropped, s.queued, s.failed),
        (q + 1, extra, 0, 0)
    );
    assert_eq!(r.lines().len() as u64, q + 1);
    t.cancel().await;
}

#[tokio::test]
async fn max_retry_gives_up_after_exact_attempts() {
    quiet();
    let r = Receiver::start().await;
    r.set_mode(500);
    let (c, cap) = console();
    let t = start(
        WebhookConfig::builder("_", r.url("/"))
            .max_retry(2)
            .retry_interval(Duration::from_millis(20)),
        &c,
    );
    t.send(rec(1)).expect("accepted");
    eventually("given up", || t.stats().failed == 1).await;
    assert_eq!(r.arrivals(), 3, "first attempt + 2 retries");
    let s = t.stats();
    assert_eq!(
        (s.total, s.sent, s.failed, s.queued, s.send_errors),
        (1, 0, 1, 0, 3)
    );
    assert!(
        cap.contents()
            .contains("gave up on audit entries after 2 retries"),
        "{}",
        cap.contents()
    );
    assert!(cap.contents().contains("check the endpoint configuration"));
    t.cancel().await;
}

#[tokio::test]
async fn online_state_is_cached_and_only_network_errors_mark_offline() {
    quiet();
    let r = Receiver::start().await;
    let (c, _cap) = console();
    let t = start(
        WebhookConfig::builder("_", r.url("/"))
            .max_retry(1)
            .retry_interval(Duration::from_millis(10)),
        &c,
    );
    assert!(!t.is_online(), "starts offline");
    let mut n = 0;
    let mut step = |mode: u16| {
        r.set_mode(mode);
        n += 1;
        t.send(rec(n)).expect("accepted");
        n
    };
    let k = step(OK);
    eventually("2xx", || t.stats().sent == 1).await;
    assert!(t.is_online(), "2xx -> online");
    let _ = k;
    let k = step(400);
    eventually("400 given up", || t.stats().failed == 1).await;
    assert!(t.is_online(), "400 leaves it unchanged");
    let _ = k;
    step(503);
    eventually("503 given up", || t.stats().failed == 2).await;
    assert!(!t.is_online(), "503 -> offline");
    step(OK);
    eventually("2xx again", || t.stats().sent == 2).await;
    assert!(t.is_online());
    r.stop();
    step(OK);
    eventually("refused given up", || t.stats().failed == 3).await;
    assert!(!t.is_online(), "connection refused -> offline");
    t.cancel().await;
}

#[tokio::test]
async fn queue_dir_survives_a_restart_and_delivers_once() {
    quiet();
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr().await;
    let url = format!("http://{addr}/");
    let (c, _cap) = console();
    let builder = || {
        WebhookConfig::builder("_", url.clone())
            .batch_size(5)
            .queue_dir(dir.path())
            .flush_interval(Duration::from_millis(50))
            .retry_interval(Duration::from_millis(50))
            .replay_interval(Duration::from_millis(100))
    };
    let t = start(builder(), &c);
    for i in 0..20 {
        t.send(rec(i)).expect("accepted");
    }
    eventually("4 files on disk", || t.stats().disk_queue_files == 4).await;
    let s = t.stats();
    assert_eq!((s.total, s.queued, s.sent), (20, 20, 0));
    // "Restart": stop the target; nothing is deliverable, everything is persisted.
    let report = bounded(t.shutdown(std::time::Instant::now() + Duration::from_millis(300))).await;
    assert_eq!(
        (report.persisted, report.dropped, report.delivered),
        (20, 0, 0)
    );
    drop(t);
    let r = Receiver::start_on(addr).await;
    let t2 = start(builder(), &c);
    bounded(r.wait_lines(20)).await;
    eventually("replayed", || t2.stats().sent == 20).await;
    let got = ids(&r.lines());
    assert_eq!(
        got,
        (0..20).collect::<Vec<_>>(),
        "each entry once, replayed oldest first"
    );
    for q in r.requests() {
        assert_eq!(
            q.header("x-minio-webhook-payload-count").as_deref(),
            Some("5")
        );
    }
    let s = t2.stats();
    assert_eq!(
        (s.total, s.sent, s.queued, s.disk_queue_files),
        (20, 20, 0, 0)
    );
    check_invariant(&s);
    t2.cancel().await;
    let left = std::fs::read_dir(dir.path().join("nodegrid-http-audit-_"))
        .expect("dir")
        .count();
    assert_eq!(left, 0, "directory empty after replay");
}

#[tokio::test]
async fn shutdown_flushes_queued_entries_within_the_deadline() {
    quiet();
    let r = Receiver::start().await;
    let (c, _cap) = console();
    let t = start(
        WebhookConfig::builder("_", r.url("/"))
            .batch_size(100)
            .flush_interval(Duration::from_secs(30)),
        &c,
    );
    // A full batch delivered before the shutdown is not counted as delivered during it.
    for i in 0..100 {
        t.send(rec(i)).expect("accepted");
    }
    bounded(r.wait_lines(100)).await;
    eventually("100 sent", || t.stats().sent == 100).await;
    for i in 100..350 {
        t.send(rec(i)).expect("accepted");
    }
    let report = bounded(t.shutdown(std::time::Instant::now() + Duration::from_secs(5))).await;
    assert_eq!(report.dropped, 0);
    assert_eq!(r.lines().len(), 350);
    assert_eq!(report.delivered, 250);
    // After shutdown the target refuses, counted.
    assert!(matches!(t.send(rec(999)), Err(SendError::Closed { .. })));
    let s = t.stats();
    assert_eq!((s.total, s.sent, s.dropped, s.queued), (351, 350, 1, 0));
}

#[tokio::test]
async fn shutdown_counts_and_reports_what_it_could_not_deliver() {
    quiet();
    let addr = free_addr().await;
    let (c, cap) = console();
    let t = start(
        WebhookConfig::builder("_", format!("http://{addr}/"))
            .retry_interval(Duration::from_millis(50)),
        &c,
    );
    for i in 0..7 {
        t.send(rec(i)).expect("accepted");
    }
    let started = std::time::Instant::now();
    let report = bounded(t.shutdown(std::time::Instant::now() + Duration::from_millis(400))).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the deadline"
    );
    assert_eq!(
        (report.delivered, report.dropped, report.persisted),
        (0, 7, 0)
    );
    let s = t.stats();
    assert_eq!((s.total, s.dropped, s.queued), (7, 7, 0));
    assert!(cap
        .contents()
        .contains("7 audit entries not delivered before the shutdown deadline"));
}

#[tokio::test]
async fn corrupt_disk_file_is_deleted_and_counted() {
    quiet();
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let qdir = dir.path().join("nodegrid-http-audit-_");
    std::fs::create_dir_all(&qdir).expect("mkdir");
    // A file in our naming scheme (3 entries) whose content is not Snappy data.
    std::fs::write(
        qdir.join("00000000000000000001-3-dead.ndjson.snappy"),
        b"\xff\xfe garbage",
    )
    .expect("write");
    let (c, cap) = console();
    let t = start(
        WebhookConfig::builder("_", r.url("/"))
            .queue_dir(dir.path())
            .flush_interval(Duration::from_millis(50))
            .replay_interval(Duration::from_millis(50)),
        &c,
    );
    eventually("corrupt file counted", || t.stats().failed == 3).await;
    t.send(rec(1)).expect("accepted");
    bounded(r.wait_lines(1)).await;
    eventually("sent", || t.stats().sent == 1).await;
    let s = t.stats();
    assert_eq!((s.total, s.sent, s.failed, s.queued), (4, 1, 3, 0));
    check_invariant(&s);
    assert!(cap
        .contents()
        .contains("corrupt disk queue file deleted, its entries are counted as failed"));
    assert_eq!(std::fs::read_dir(&qdir).expect("dir").count(), 0);
    t.cancel().await;
}

#[tokio::test]
async fn shutdown_with_queue_dir_delivers_through_the_disk_queue() {
    quiet();
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, _cap) = console();
    let t = start(
        WebhookConfig::builder("_", r.url("/"))
            .batch_size(10)
            .queue_dir(dir.path())
            .flush_interval(Duration::from_secs(30))
            .replay_interval(Duration::from_secs(30)),
        &c,
    );
    // A batch replayed before the shutdown is not counted as delivered during it.
    for i in 0..10 {
        t.send(rec(i)).expect("accepted");
    }
    bounded(r.wait_lines(10)).await;
    eventually("10 sent", || t.stats().sent == 10).await;
    // No await between these sends and the shutdown: all of them are left to the drain.
    for i in 10..45 {
        t.send(rec(i)).expect("accepted");
    }
    let started = std::time::Instant::now();
    let report = bounded(t.shutdown(started + Duration::from_secs(10))).await;
    // It ends once everything is delivered, not at the deadline.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (report.delivered, report.persisted, report.dropped),
        (35, 0, 0),
        "{:?} {}",
        t.stats(),
        r.lines().len()
    );
    let got = ids(&r.lines());
    assert_eq!(got, (0..45).collect::<Vec<_>>(), "in order");
    let s = t.stats();
    assert_eq!(
        (s.total, s.sent, s.queued, s.disk_queue_files),
        (45, 45, 0, 0)
    );
}

/// LOGGING.md §1.8, §4.1: a failing target is reported once per failure class, however many
/// entries fail; the report texts carry no counts (those are in the stats and the periodic
/// summary). Before: 20 console lines for 10 entries (the two classes alternated under one
/// de-duplication key).
#[tokio::test]
async fn failure_reports_are_once_per_target_and_class() {
    quiet();
    let r = Receiver::start().await;
    r.set_mode(500);
    let (c, cap) = console();
    let t = start(
        WebhookConfig::builder("_", r.url("/"))
            .max_retry(1)
            .retry_interval(Duration::from_millis(10)),
        &c,
    );
    for i in 0..10 {
        t.send(rec(i)).expect("accepted");
    }
    eventually("all given up", || t.stats().failed == 10).await;
    let s = t.stats();
    assert_eq!((s.total, s.failed, s.send_errors), (10, 10, 20), "{s:?}");
    assert_eq!(r.arrivals(), 20, "first attempt + 1 retry per entry");
    let text = cap.contents();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one line per failure class: {text}");
    let with = |what: &str| lines.iter().filter(|l| l.contains(what)).count();
    assert_eq!(with("could not send audit entries to audit-_"), 1, "{text}");
    assert_eq!(
        with("audit-_: gave up on audit entries after 1 retry"),
        1,
        "{text}"
    );
    t.cancel().await;
}

/// LOGGING.md §2.3.4, §2.3.7: cancelling a target does not wait for the attempt in flight and
/// reports no failure for it; the attempt finishes on its own and its entry is counted once.
/// Before: cancel() waited for the endpoint (the http_timeout, 3.0 s, in the issue) and printed
/// "could not send".
#[tokio::test]
async fn cancel_does_not_wait_for_the_attempt_in_flight() {
    quiet();
    let r = Receiver::start().await;
    r.set_mode(HOLD);
    let (c, cap) = console();
    let t = start(
        WebhookConfig::builder("_", r.url("/")).http_timeout(Duration::from_secs(60)),
        &c,
    );
    t.send(rec(1)).expect("accepted");
    bounded(r.wait_arrivals(1)).await;
    bounded(t.cancel()).await;
    // The endpoint still holds the request: cancel did not wait for its answer.
    assert!(r.requests().is_empty(), "cancel waited for the endpoint");
    assert_eq!(cap.contents(), "", "no failure is reported on cancel");
    assert!(matches!(t.send(rec(2)), Err(SendError::Closed { .. })));
    r.release();
    bounded(r.wait_lines(1)).await;
    eventually("the attempt in flight is counted", || t.stats().sent == 1).await;
    let s = t.stats();
    assert_eq!(
        (
            s.total,
            s.sent,
            s.dropped,
            s.failed,
            s.queued,
            s.send_errors
        ),
        (2, 1, 1, 0, 0, 0)
    );
    check_invariant(&s);
    assert_eq!(cap.contents(), "", "still no failure report");
}

/// The same with a disk queue: cancel does not wait for the replay request in flight; when the
/// endpoint answers, the file is deleted and its entry counted as sent.
#[tokio::test]
async fn cancel_does_not_wait_for_the_replay_in_flight() {
    quiet();
    let r = Receiver::start().await;
    r.set_mode(HOLD);
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, cap) = console();
    let t = start(
        WebhookConfig::builder("_", r.url("/"))
            .queue_dir(dir.path())
            .http_timeout(Duration::from_secs(60))
            .replay_interval(Duration::from_millis(50)),
        &c,
    );
    t.send(rec(1)).expect("accepted");
    bounded(r.wait_arrivals(1)).await;
    bounded(t.cancel()).await;
    assert!(r.requests().is_empty(), "cancel waited for the endpoint");
    r.release();
    bounded(r.wait_lines(1)).await;
    eventually("delivered and deleted", || t.stats().disk_queue_files == 0).await;
    let s = t.stats();
    assert_eq!((s.total, s.sent, s.queued), (1, 1, 0), "{s:?}");
    assert_eq!(cap.contents(), "", "no failure is reported on cancel");
    let qdir = dir.path().join("nodegrid-http-audit-_");
    assert_eq!(std::fs::read_dir(&qdir).expect("dir").count(), 0);
}

/// Shuts `t` down while `r` holds a request, and lets `r` answer once the shutdown started.
async fn shutdown_releasing(t: &WebhookTarget, r: &Receiver) -> nodegrid_log::ShutdownReport {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (report, ()) = bounded(async {
        tokio::join!(t.shutdown(deadline), async {
            // The shutdown future set the drain on its first poll, before this one runs.
            tokio::task::yield_now().await;
            r.release();
        })
    })
    .await;
    report
}

/// A batch whose request is in flight when the shutdown starts, and is answered during it,
/// counts as delivered during the shutdown (memory mode and disk queue): every entry pending
/// at the start is delivered, persisted or dropped. Before: the report said 0 delivered (the
/// drain took its base count after that request ended).
#[tokio::test]
async fn shutdown_counts_the_request_in_flight_as_delivered() {
    quiet();
    let (c, _cap) = console();
    let dir = tempfile::tempdir().expect("tempdir");
    for (id, queue_dir) in [(0, None), (1, Some(dir.path()))] {
        let r = Receiver::start().await;
        r.set_mode(HOLD);
        let b = WebhookConfig::builder("_", r.url("/"));
        let t = start(
            match queue_dir {
                Some(d) => b.queue_dir(d),
                None => b,
            },
            &c,
        );
        t.send(rec(id)).expect("accepted");
        bounded(r.wait_arrivals(1)).await;
        let report = shutdown_releasing(&t, &r).await;
        assert_eq!(
            (report.delivered, report.persisted, report.dropped),
            (1, 0, 0),
            "queue_dir {queue_dir:?}"
        );
        assert_eq!(ids(&r.lines()), vec![id]);
        assert_eq!(t.stats().disk_queue_files, 0);
    }
}

/// A batch completed by entries sent while the previous request was in flight goes out at
/// once, not at the flush timer: the worker leaves a partial batch in the queue, where the
/// senders' "full batch queued" signal counts it.
#[tokio::test]
async fn a_batch_completed_after_a_request_goes_out_without_the_timer() {
    quiet();
    let r = Receiver::start().await;
    r.set_mode(HOLD);
    let (c, _cap) = console();
    let t = start(
        WebhookConfig::builder("_", r.url("/"))
            .batch_size(10)
            .flush_interval(Duration::from_secs(60)),
        &c,
    );
    for i in 0..10 {
        t.send(rec(i)).expect("accepted");
    }
    bounded(r.wait_arrivals(1)).await;
    for i in 10..13 {
        t.send(rec(i)).expect("accepted");
    }
    r.release();
    bounded(r.wait_lines(10)).await;
    eventually("first batch sent", || t.stats().sent == 10).await;
    for i in 13..20 {
        t.send(rec(i)).expect("accepted");
    }
    // Well before the 60 s timer.
    bounded(r.wait_lines(20)).await;
    assert_eq!(ids(&r.lines()), (0..20).collect::<Vec<_>>());
    let sizes: Vec<usize> = r.requests().iter().map(|q| q.lines().len()).collect();
    assert_eq!(sizes, vec![10, 10]);
    t.cancel().await;
}
