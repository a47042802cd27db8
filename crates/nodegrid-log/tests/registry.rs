//! Registry, tracing layer, hot swap and failure routing.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use nodegrid_log::{
    internal, req_info, AuditEntry, ConsoleMode, ConsoleTarget, Identity, LoggingConfig, Registry,
    ReqInfo, ShutdownReport, Stream, WebhookConfig,
};
use tracing_subscriber::prelude::*;

fn audit_entry(i: u64) -> AuditEntry {
    let mut e = AuditEntry::new();
    e.api.name = "test.Call".into();
    e.tags.insert("id".into(), i.into());
    e
}

fn ids(lines: &[serde_json::Value]) -> Vec<u64> {
    let mut v: Vec<u64> = lines
        .iter()
        .filter_map(|l| l["tags"]["id"].as_u64())
        .collect();
    v.sort_unstable();
    v
}

fn fast(key: &str, url: String) -> nodegrid_log::WebhookConfigBuilder {
    WebhookConfig::builder(key, url)
        .flush_interval(Duration::from_millis(50))
        .retry_interval(Duration::from_millis(50))
}

/// A registry whose system log goes to a capturing console and to one webhook, `cfg`.
fn logging_to(cfg: nodegrid_log::WebhookConfigBuilder) -> (Arc<Registry>, nodegrid_log::Capture) {
    let (console, cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    reg.update_webhooks(Stream::Logger, vec![cfg.build().expect("cfg")])
        .expect("logger");
    (reg, cap)
}

/// The layer maps levels and fields, fills request info, skips DEBUG, and the console
/// prints the entry (JSON mode) — no server needed.
#[test]
fn layer_builds_log_entries_from_events() {
    let (console, cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _g = rt.enter();
    let reg = Registry::new(
        console,
        Identity {
            deployment_id: "dep-9".into(),
            ..Default::default()
        },
    );
    let sub = tracing_subscriber::registry().with(reg.layer());
    tracing::subscriber::with_default(sub, || {
        let before = time::OffsetDateTime::now_utc();
        tracing::error!(
            subsystem = "healing",
            error = "disk gone",
            drive = "/d1",
            "heal failed"
        );
        let after = time::OffsetDateTime::now_utc();
        tracing::warn!("careful");
        tracing::debug!("never forwarded");
        nodegrid_log::event("healing", "healing started");
        let mut info = ReqInfo::new("lock.Refresh");
        info.request_id = "REQ1".into();
        info.remote_host = "10.0.0.1".into();
        let info = Arc::new(info);
        info.set_tag("peer", "n2");
        req_info::sync_scope(info, || tracing::error!("in request"));
        // The span carrier: attached to a request span, visible to events in child spans.
        let mut via_span = ReqInfo::new("lock.Unlock");
        via_span.request_id = "REQ2".into();
        let via_span = Arc::new(via_span);
        let span = tracing::info_span!("request");
        assert!(req_info::attach(&span, via_span.clone()));
        span.in_scope(|| {
            assert_eq!(
                req_info::current().map(|r| r.request_id.clone()).as_deref(),
                Some("REQ2")
            );
            tracing::info_span!("inner").in_scope(|| tracing::error!("in span"));
        });
        let lines: Vec<serde_json::Value> = cap
            .contents()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 5, "{}", cap.contents());
        let e = &lines[0];
        assert_eq!(e["level"], "ERROR");
        assert_eq!(e["api"]["name"], "SYSTEM.healing");
        assert_eq!(e["deploymentid"], "dep-9");
        assert_eq!(e["error"]["message"], "heal failed: disk gone");
        assert_eq!(e["error"]["variables"]["drive"], "/d1");
        assert!(e["error"]["source"][0]
            .as_str()
            .unwrap_or_default()
            .contains("registry.rs:"));
        let t = time::OffsetDateTime::parse(
            e["time"].as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("time");
        assert!(before <= t && t <= after, "time is the moment of the call");
        assert_eq!(lines[1]["level"], "WARNING");
        assert_eq!(lines[2]["level"], "EVENT");
        assert_eq!(lines[2]["message"], "healing started");
        assert!(lines[2].get("error").is_none());
        let r = &lines[3];
        assert_eq!(r["api"]["name"], "lock.Refresh");
        assert_eq!(r["requestID"], "REQ1");
        assert_eq!(r["remotehost"], "10.0.0.1");
        assert_eq!(r["error"]["variables"]["peer"], "n2");
        assert_eq!(lines[4]["api"]["name"], "lock.Unlock");
        assert_eq!(lines[4]["requestID"], "REQ2");
    });
}

/// A failing logger webhook: its failures reach the console only (de-duplicated), never
/// the other logger webhook, never the audit list, and never itself; events emitted by
/// target tasks are ignored by the layer.
#[test]
fn failing_target_never_causes_events_to_other_targets() {
    quiet_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (console, cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let (reg, bad, good, aud) = rt.block_on(async {
        let bad = Receiver::start().await;
        bad.set_mode(500);
        let good = Receiver::start().await;
        let aud = Receiver::start().await;
        let reg = Registry::new(console, Identity::default());
        reg.update_webhooks(
            Stream::Logger,
            vec![
                fast("bad", bad.url("/")).build().expect("cfg"),
                fast("good", good.url("/")).build().expect("cfg"),
            ],
        )
        .expect("logger webhooks");
        reg.update_webhooks(
            Stream::Audit,
            vec![fast("a", aud.url("/")).build().expect("cfg")],
        )
        .expect("audit webhook");
        (reg, bad, good, aud)
    });
    // Every task of the runtime runs on this thread, under this dispatcher: an event from
    // a worker task would reach the layer if it were not excluded.
    let sub = tracing_subscriber::registry().with(reg.layer());
    tracing::subscriber::with_default(sub, || {
        rt.block_on(async {
            for i in 0..5 {
                tracing::error!(n = i, "application error {i}");
            }
            tokio::spawn(internal(async {
                tracing::error!("emitted inside a target task");
            }))
            .await
            .expect("task");
            tracing::error!(target: "nodegrid_log::internal", "internal target");
            bounded(good.wait_lines(5)).await;
            bounded(bad.wait_arrivals(3)).await;
        })
    });
    let good_msgs: Vec<String> = good
        .lines()
        .iter()
        .map(|l| {
            l["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        good_msgs,
        (0..5)
            .map(|i| format!("application error {i}"))
            .collect::<Vec<_>>(),
        "only the application's events"
    );
    assert!(aud.lines().is_empty(), "nothing reaches the audit list");
    let console_text = cap.contents();
    let reports = console_text
        .lines()
        .filter(|l| l.contains("could not send") && l.contains("logger-bad"))
        .count();
    assert_eq!(reports, 1, "de-duplicated console report: {console_text}");
    assert!(!console_text.contains("emitted inside a target task"));
    assert!(!console_text.contains("internal target"));
    let stats = reg.stats();
    assert_eq!(stats["sys_logger-good"].sent, 5);
    assert_eq!(stats["sys_logger-bad"].sent, 0);
    assert_eq!(stats["sys_logger-bad"].total, 5);
    rt.block_on(async {
        let _ = reg.shutdown(Duration::from_millis(200)).await;
    });
}

fn quiet_env() {
    quiet();
}

/// A full audit queue is reported to the system log (console + logger webhooks), once.
#[tokio::test]
async fn audit_enqueue_failure_goes_to_the_system_log() {
    quiet();
    let logr = Receiver::start().await;
    let audr = Receiver::start().await;
    audr.set_mode(HOLD);
    let (console, cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    reg.update_webhooks(
        Stream::Logger,
        vec![fast("_", logr.url("/")).build().expect("cfg")],
    )
    .expect("logger");
    reg.update_webhooks(
        Stream::Audit,
        vec![fast("_", audr.url("/")).queue_size(2).build().expect("cfg")],
    )
    .expect("audit");
    let audit = reg.audit();
    assert!(audit.is_enabled());
    audit.log(audit_entry(0));
    bounded(audr.wait_arrivals(1)).await;
    for i in 1..=2 {
        audit.log(audit_entry(i));
    }
    for i in 3..13 {
        audit.log(audit_entry(i));
    }
    let s = &reg.stats()["audit_audit-_"];
    assert_eq!((s.total, s.dropped, s.queued), (13, 10, 3));
    bounded(logr.wait_lines(1)).await;
    let l = logr.lines();
    assert_eq!(l.len(), 1, "reported once: {l:?}");
    assert!(l[0]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("log buffer full"));
    assert_eq!(l[0]["api"]["name"], "SYSTEM.audit", "{:?}", l[0]);
    assert_eq!(
        cap.contents()
            .lines()
            .filter(|x| x.contains("log buffer full"))
            .count(),
        1
    );
    audr.release();
    bounded(audr.wait_lines(3)).await;
    assert_eq!(ids(&audr.lines()), vec![0, 1, 2]);
    let _ = reg.shutdown(Duration::from_secs(2)).await;
}

/// Replacing the audit webhooks (same name) many times under a concurrent stream of
/// entries loses nothing that was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load_loses_nothing() {
    quiet();
    let r = Receiver::start().await;
    let (console, _cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    reg.update_webhooks(
        Stream::Audit,
        vec![fast("_", r.url("/")).build().expect("cfg")],
    )
    .expect("audit");
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let audit = reg.audit();
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let mut i = 0u64;
            // Bounded: at most 200k entries even if the swapper never stops us.
            while !stop.load(Ordering::SeqCst) && i < 200_000 {
                audit.log(audit_entry(i));
                i += 1;
                if i % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            i
        })
    };
    for swaps in 0..40usize {
        let bs = [100, 1, 20][swaps % 3];
        reg.update_webhooks(
            Stream::Audit,
            vec![fast("_", r.url("/")).batch_size(bs).build().expect("cfg")],
        )
        .expect("swap");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let n = producer.await.expect("producer");
    reg.update_webhooks(
        Stream::Audit,
        vec![fast("_", r.url("/")).batch_size(100).build().expect("cfg")],
    )
    .expect("last swap");
    assert!(n > 1000, "the stream ran during the swaps ({n} entries)");
    let live = reg.stats()["audit_audit-_"].clone();
    assert_eq!(live.dropped + live.failed, 0, "{live:?}");
    bounded(r.wait_lines(n as usize)).await;
    let got = ids(&r.lines());
    assert_eq!(got.len() as u64, n, "no duplicates, no loss");
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    let rep = reg.shutdown(Duration::from_secs(2)).await;
    assert_eq!(rep.dropped, 0);
}

/// Configuration errors apply nothing; the console stays when webhooks change.
#[tokio::test]
async fn bad_config_is_not_partially_applied() {
    quiet();
    let r = Receiver::start().await;
    let (console, _cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    reg.update_webhooks(
        Stream::Logger,
        vec![fast("a", r.url("/")).build().expect("cfg")],
    )
    .expect("first");
    let file = tempfile::NamedTempFile::new().expect("file");
    // Second target's queue_dir is a plain file: cannot be opened -> whole update refused.
    let err = reg
        .update_webhooks(
            Stream::Logger,
            vec![
                fast("b", r.url("/")).build().expect("cfg"),
                fast("c", r.url("/"))
                    .queue_dir(file.path())
                    .build()
                    .expect("cfg"),
            ],
        )
        .expect_err("unusable queue_dir");
    assert!(err.to_string().contains("logger-c"), "{err}");
    let names: Vec<String> = reg.stats().into_keys().collect();
    assert_eq!(names, vec!["sys_console", "sys_logger-a"]);
    // Environment config with one bad variable: error names it, nothing built.
    let e = LoggingConfig::from_vars(
        "NODEGRID",
        [
            (
                "NODEGRID_AUDIT_WEBHOOK_ENABLE".to_string(),
                "on".to_string(),
            ),
            ("NODEGRID_AUDIT_WEBHOOK_ENDPOINT".to_string(), r.url("/")),
            (
                "NODEGRID_AUDIT_WEBHOOK_QUEUE_SIZE".to_string(),
                "0".to_string(),
            ),
        ],
    )
    .expect_err("queue_size 0");
    assert_eq!(e.key, "NODEGRID_AUDIT_WEBHOOK_QUEUE_SIZE");
    let _ = reg.shutdown(Duration::from_millis(100)).await;
}

/// 1 000 entries queued against a paused endpoint move to the same-named replacement when
/// the configuration changes; after the endpoint resumes, all arrive exactly once.
#[tokio::test]
async fn reconfigure_moves_pending_entries_to_the_replacement() {
    quiet();
    let r = Receiver::start().await;
    r.set_mode(HOLD);
    let (console, _cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    reg.update_webhooks(
        Stream::Audit,
        vec![fast("_", r.url("/")).batch_size(10).build().expect("cfg")],
    )
    .expect("audit");
    let audit = reg.audit();
    for i in 0..1000 {
        audit.log(audit_entry(i));
    }
    // The old worker holds one batch in a held request; the rest is queued.
    bounded(r.wait_arrivals(1)).await;
    let old = nodegrid_log::test_support::audit_targets(&reg)[0].clone();
    assert_eq!(old.stats().queued, 1000);
    reg.update_webhooks(
        Stream::Audit,
        vec![fast("_", r.url("/")).batch_size(50).build().expect("cfg")],
    )
    .expect("reconfigure");
    assert!(!Arc::ptr_eq(
        &old,
        &nodegrid_log::test_support::audit_targets(&reg)[0]
    ));
    // Entries offered to the old target after the swap are forwarded, not lost.
    for i in 1000..1010 {
        assert!(old
            .send(nodegrid_log::Record::Audit(Arc::new(audit_entry(i))))
            .is_ok());
    }
    r.release();
    bounded(r.wait_lines(1010)).await;
    let got = ids(&r.lines());
    assert_eq!(got, (0..1010).collect::<Vec<_>>(), "all arrive, each once");
    let o = old.stats();
    assert_eq!(o.dropped + o.failed, 0, "{o:?}");
    // The 10 late entries either entered the old queue (then migrated) or were forwarded
    // directly (then not counted here).
    assert_eq!(o.sent + o.migrated, o.total, "{o:?}");
    assert!(o.total == 1000 || o.total == 1010, "{o:?}");
    assert!(
        o.migrated >= 980,
        "most of the queue was handed over: {o:?}"
    );
    let rep = reg.shutdown(Duration::from_secs(2)).await;
    assert_eq!(rep.dropped, 0);
}

/// Drops are summarised periodically: system targets on the console, audit targets in the
/// system log.
#[tokio::test]
async fn lost_entries_are_summarised_periodically() {
    quiet();
    let logr = Receiver::start().await;
    logr.set_mode(HOLD);
    let audr = Receiver::start().await;
    audr.set_mode(HOLD);
    let (console, cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    reg.update_webhooks(
        Stream::Logger,
        vec![fast("l", logr.url("/")).queue_size(1).build().expect("cfg")],
    )
    .expect("logger");
    reg.update_webhooks(
        Stream::Audit,
        vec![fast("a", audr.url("/")).queue_size(1).build().expect("cfg")],
    )
    .expect("audit");
    reg.start_drop_summary(Duration::from_millis(100));
    let mut e = nodegrid_log::LogEntry::new(nodegrid_log::Kind::Info);
    e.message = "x".into();
    reg.log(e.clone());
    reg.audit().log(audit_entry(0));
    bounded(logr.wait_arrivals(1)).await;
    bounded(audr.wait_arrivals(1)).await;
    for i in 1..=6 {
        reg.log(e.clone()); // 1 fits, 5 dropped
        reg.audit().log(audit_entry(i)); // 1 fits, 5 dropped
    }
    let ok = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let c = cap.contents();
            // The logger webhook also loses the audit failure reports routed to the system
            // log, so its count is 5 + those; the audit count is exact.
            if c.lines()
                .any(|l| l.contains("logger-l: ") && l.contains("entries lost in the last"))
                && c.contains("audit-a: 5 entries lost in the last")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "no summaries: {}", cap.contents());
    logr.release();
    audr.release();
    let _ = reg.shutdown(Duration::from_secs(2)).await;
}

/// A refused endpoint behind a full queue: "log buffer full" and "could not send" are two
/// failure classes of one target, each reported once. Before: 44 console lines in 1 s,
/// alternating between the two (one de-duplication key per target).
#[tokio::test]
async fn full_queue_and_refused_endpoint_are_reported_once_per_class() {
    quiet();
    let addr = free_addr().await;
    let (reg, cap) = logging_to(
        fast("x", format!("http://{addr}/"))
            .queue_size(2)
            .retry_interval(Duration::from_millis(20)),
    );
    for i in 0..50 {
        let mut e = nodegrid_log::LogEntry::new(nodegrid_log::Kind::Warning);
        e.message = format!("entry {i}");
        reg.log(e);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually("a few failed attempts", || {
        reg.stats()["sys_logger-x"].send_errors >= 5
    })
    .await;
    let s = reg.stats()["sys_logger-x"].clone();
    assert_eq!(s.total, 50, "{s:?}");
    assert!(
        s.dropped >= 40,
        "the queue was full most of the time: {s:?}"
    );
    let text = cap.contents();
    let reports: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("SYSTEM.logging"))
        .collect();
    assert_eq!(
        reports.len(),
        2,
        "one report per failure class: {reports:#?}"
    );
    assert_eq!(
        reports
            .iter()
            .filter(|l| l.contains("log buffer full"))
            .count(),
        1
    );
    assert_eq!(
        reports
            .iter()
            .filter(|l| l.contains("could not send log entries to logger-x"))
            .count(),
        1
    );
    let _ = reg.shutdown(Duration::from_millis(100)).await;
}

/// Replacing a target whose endpoint holds a request: the queued entries move to the
/// replacement at once (the old worker does not wait for its attempt in flight), and the
/// held entry is delivered once when the endpoint answers. Before: the hand-over waited for
/// the held request.
#[tokio::test]
async fn replacing_a_target_does_not_wait_for_its_attempt_in_flight() {
    quiet();
    let old_ep = Receiver::start().await;
    old_ep.set_mode(HOLD);
    let new_ep = Receiver::start().await;
    let (console, cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    let cfg = |url: String| {
        fast("_", url)
            .http_timeout(Duration::from_secs(60))
            .build()
            .expect("cfg")
    };
    reg.update_webhooks(Stream::Audit, vec![cfg(old_ep.url("/"))])
        .expect("audit");
    let audit = reg.audit();
    audit.log(audit_entry(0));
    bounded(old_ep.wait_arrivals(1)).await;
    for i in 1..6 {
        audit.log(audit_entry(i));
    }
    reg.update_webhooks(Stream::Audit, vec![cfg(new_ep.url("/"))])
        .expect("replace");
    bounded(new_ep.wait_lines(5)).await;
    assert!(
        old_ep.requests().is_empty(),
        "the old endpoint still holds its request"
    );
    assert_eq!(ids(&new_ep.lines()), vec![1, 2, 3, 4, 5]);
    old_ep.release();
    bounded(old_ep.wait_lines(1)).await;
    assert_eq!(ids(&old_ep.lines()), vec![0]);
    assert!(
        !cap.contents().contains("could not send"),
        "{}",
        cap.contents()
    );
    let _ = reg.shutdown(Duration::from_secs(2)).await;
}

/// A console-log subscriber that does not keep up: reported once at its first miss, and its
/// misses summarised periodically (LOGGING.md §4.3). Before: counted, never reported.
#[tokio::test]
async fn subscriber_misses_are_reported_and_summarised() {
    quiet();
    let (console, cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    let sub = reg
        .console()
        .subscribe(nodegrid_log::KindMask::ALL, 0)
        .expect("subscribe");
    reg.start_drop_summary(Duration::from_millis(100));
    for i in 0..(nodegrid_log::SUBSCRIBER_CHANNEL + 5) {
        let mut e = nodegrid_log::LogEntry::new(nodegrid_log::Kind::Info);
        e.message = format!("entry {i}");
        reg.log(e);
    }
    assert!(
        sub.missed() >= 6,
        "5 entries and the report: {}",
        sub.missed()
    );
    eventually("summary", || {
        cap.contents().contains("console: log subscribers missed ")
    })
    .await;
    let text = cap.contents();
    assert_eq!(text.matches("does not keep up").count(), 1);
    let summary = text
        .lines()
        .find(|l| l.contains("console: log subscribers missed "))
        .unwrap_or_default();
    assert!(summary.contains("in total"), "{summary}");
    let _ = reg.shutdown(Duration::from_millis(100)).await;
}

/// `Debug` of a registry names the targets of both lists, in list order.
#[tokio::test]
async fn debug_names_the_targets_of_both_lists() {
    quiet();
    let r = Receiver::start().await;
    let (console, _cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    assert_eq!(
        format!("{reg:?}"),
        r#"Registry { system: ["console"], audit: [] }"#
    );
    reg.update_webhooks(
        Stream::Logger,
        vec![fast("l", r.url("/")).build().expect("cfg")],
    )
    .expect("logger");
    reg.update_webhooks(
        Stream::Audit,
        vec![
            fast("a", r.url("/")).build().expect("cfg"),
            fast("b", r.url("/")).build().expect("cfg"),
        ],
    )
    .expect("audit");
    assert_eq!(
        format!("{reg:?}"),
        r#"Registry { system: ["console", "logger-l"], audit: ["audit-a", "audit-b"] }"#
    );
    let _ = reg.shutdown(Duration::from_millis(100)).await;
}

/// The accessors: the identity given at creation, and no audit API enabled while the audit
/// list is empty.
#[tokio::test]
async fn identity_and_audit_enabled_follow_the_configuration() {
    quiet();
    let r = Receiver::start().await;
    let (console, _cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let id = Identity {
        deployment_id: "dep-7".into(),
        version: "v9".into(),
        ..Default::default()
    };
    let reg = Registry::new(console, id);
    assert_eq!(reg.identity().deployment_id, "dep-7");
    assert_eq!(reg.identity().version, "v9");
    let audit = reg.audit();
    assert!(!audit.is_enabled(), "no audit target yet");
    reg.update_webhooks(
        Stream::Audit,
        vec![fast("a", r.url("/")).build().expect("cfg")],
    )
    .expect("audit");
    assert!(audit.is_enabled());
    reg.update_webhooks(Stream::Audit, Vec::new())
        .expect("remove");
    assert!(!audit.is_enabled(), "audit target removed");
    let _ = reg.shutdown(Duration::from_millis(100)).await;
}

/// Two webhooks of one list with the same key: refused, naming the key, nothing applied.
#[tokio::test]
async fn a_key_configured_twice_is_refused() {
    quiet();
    let r = Receiver::start().await;
    let (console, _cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    let err = reg
        .update_webhooks(
            Stream::Logger,
            vec![
                fast("a", r.url("/")).build().expect("cfg"),
                fast("b", r.url("/")).build().expect("cfg"),
                fast("a", r.url("/x")).build().expect("cfg"),
            ],
        )
        .expect_err("key a twice");
    assert_eq!(
        err.to_string(),
        "invalid logging configuration: `logger_webhook:a`: target configured twice"
    );
    let names: Vec<String> = reg.stats().into_keys().collect();
    assert_eq!(names, vec!["sys_console"]);
    let _ = reg.shutdown(Duration::from_millis(100)).await;
}

/// Anonymous mode rewrites server-log entries before any target sees them; off again, they
/// pass unchanged.
#[tokio::test]
async fn anonymous_mode_hides_the_remote_host_and_the_error_text() {
    quiet();
    let (console, cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = Registry::new(console, Identity::default());
    let entry = |host: &str| {
        let mut e = nodegrid_log::LogEntry::new(nodegrid_log::Kind::Error);
        e.remote_host = host.into();
        e.error = Some(nodegrid_log::entry::ErrorInfo {
            message: "secret bucket gone (NoSuchBucket)".into(),
            ..Default::default()
        });
        e
    };
    reg.set_anonymous(true);
    reg.log(entry("10.9.8.7"));
    reg.set_anonymous(false);
    reg.log(entry("10.9.8.6"));
    let text = cap.contents();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["error"]["message"], "NoSuchBucket", "{text}");
    let host = lines[0]["remotehost"].as_str().unwrap_or_default();
    assert_eq!(host.len(), 64, "a hex SHA-256 token: {text}");
    assert!(!text.contains("10.9.8.7"), "{text}");
    assert_eq!(
        lines[1]["error"]["message"],
        "secret bucket gone (NoSuchBucket)"
    );
    assert_eq!(lines[1]["remotehost"], "10.9.8.6");
}

/// Shutdown through the registry: queued entries are delivered before the deadline and
/// reported as delivered, without a summary line; entries that cannot be delivered are
/// dropped (memory) or persisted (disk queue), and the console gets the exact summary.
#[tokio::test]
async fn shutdown_reports_delivered_dropped_and_persisted_entries() {
    quiet();
    let entry = |i: u64| {
        let mut e = nodegrid_log::LogEntry::new(nodegrid_log::Kind::Info);
        e.message = format!("entry {i}");
        e
    };
    let summary = |persisted: u64, dropped: u64| {
        format!(
            "logging shutdown: 0 entries delivered during shutdown, {persisted} undelivered \
             entries persisted to the disk queue, {dropped} undelivered entries dropped"
        )
    };

    // Delivered: three entries wait in the queue (the flush interval is long) until the
    // shutdown flushes them.
    let r = Receiver::start().await;
    let (reg, cap) = logging_to(
        fast("d", r.url("/"))
            .batch_size(10)
            .flush_interval(Duration::from_secs(60)),
    );
    for i in 0..3 {
        reg.log(entry(i));
    }
    let rep = bounded(reg.shutdown(Duration::from_secs(5))).await;
    assert_eq!(
        rep,
        ShutdownReport {
            delivered: 3,
            persisted: 0,
            dropped: 0
        }
    );
    assert_eq!(r.lines().len(), 3);
    assert!(
        !cap.contents().contains("logging shutdown"),
        "{}",
        cap.contents()
    );

    // Dropped: nothing listens.
    let addr = free_addr().await;
    let (reg, cap) = logging_to(
        fast("x", format!("http://{addr}/"))
            .batch_size(10)
            .flush_interval(Duration::from_secs(60))
            .retry_interval(Duration::from_millis(20)),
    );
    for i in 0..3 {
        reg.log(entry(i));
    }
    let rep = bounded(reg.shutdown(Duration::from_millis(200))).await;
    assert_eq!(
        rep,
        ShutdownReport {
            delivered: 0,
            persisted: 0,
            dropped: 3
        }
    );
    assert_eq!(
        cap.contents().matches(&summary(0, 3)).count(),
        1,
        "{}",
        cap.contents()
    );

    // Persisted: the batches wait in the disk queue.
    let dir = tempfile::tempdir().expect("tempdir");
    let (reg, cap) = logging_to(fast("p", format!("http://{addr}/")).queue_dir(dir.path()));
    for i in 0..3 {
        reg.log(entry(i));
    }
    eventually("3 stored batches", || {
        reg.stats()["sys_logger-p"].disk_queue_files == 3
    })
    .await;
    let rep = bounded(reg.shutdown(Duration::from_millis(200))).await;
    assert_eq!(
        rep,
        ShutdownReport {
            delivered: 0,
            persisted: 3,
            dropped: 0
        }
    );
    assert_eq!(
        cap.contents().matches(&summary(3, 0)).count(),
        1,
        "{}",
        cap.contents()
    );
}
