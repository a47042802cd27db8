//! `queue_dir` across a real process restart: a child process (this test binary, re-run on
//! one ignored test) writes entries while the receiver is down and exits; the parent then
//! starts the receiver and a new target on the same directory and gets each entry once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use nodegrid_log::test_support::Target;
use nodegrid_log::{AuditEntry, Record, WebhookConfig};

const DIR_VAR: &str = "NODEGRID_LOG_TEST_QUEUE_DIR";
const URL_VAR: &str = "NODEGRID_LOG_TEST_URL";
const N: u64 = 23;

fn config(url: &str, dir: &str) -> WebhookConfig {
    WebhookConfig::builder("restart", url)
        .batch_size(4)
        .queue_dir(dir)
        .flush_interval(Duration::from_millis(50))
        .retry_interval(Duration::from_millis(50))
        .replay_interval(Duration::from_millis(100))
        .build()
        .expect("cfg")
}

/// The child: only runs when the parent sets the variables.
#[tokio::test]
#[ignore = "run by queue_dir_survives_a_process_restart in a child process"]
async fn child_writes_while_receiver_is_down() {
    let (Ok(dir), Ok(url)) = (std::env::var(DIR_VAR), std::env::var(URL_VAR)) else {
        return;
    };
    let (t, _cap) = audit_target(config(&url, &dir));
    for i in 0..N {
        let mut e = AuditEntry::new();
        e.tags.insert("id".into(), i.into());
        t.send(Record::Audit(Arc::new(e))).expect("accepted");
    }
    let report = t
        .shutdown(std::time::Instant::now() + Duration::from_millis(500))
        .await;
    assert_eq!((report.persisted, report.dropped), (N, 0), "{report:?}");
}

#[tokio::test]
async fn queue_dir_survives_a_process_restart() {
    quiet();
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr().await;
    let url = format!("http://{addr}/");
    let exe = std::env::current_exe().expect("test binary");
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(exe)
            .args([
                "--exact",
                "child_writes_while_receiver_is_down",
                "--ignored",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .env(URL_VAR, &url)
            // A child that hangs (as under some cargo-mutants mutants) must not outlive the
            // test: the timeout drops the future, which kills it.
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("child finished in time")
    .expect("child ran");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {text}");
    assert!(text.contains("1 passed"), "child ran its test: {text}");

    let r = Receiver::start_on(addr).await;
    let (t, _cap) = audit_target(config(&url, &dir.path().to_string_lossy()));
    bounded(r.wait_lines(N as usize)).await;
    eventually("all replayed", || t.stats().sent == N).await;
    let ids: Vec<u64> = r
        .lines()
        .iter()
        .map(|l| l["tags"]["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(
        ids,
        (0..N).collect::<Vec<_>>(),
        "each entry once, replayed oldest first"
    );
    let s = t.stats();
    assert_eq!(
        (s.total, s.sent, s.queued, s.disk_queue_files),
        (N, N, 0, 0)
    );
    check_invariant(&s);
    t.cancel().await;
}
