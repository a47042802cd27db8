//! An idle webhook target with a disk queue waits for work: its replay loop does not spin.
//! A test binary of its own, so the process CPU time it measures is this test's alone.

#![cfg(target_os = "linux")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use nodegrid_log::test_support::Target;
use nodegrid_log::{AuditEntry, Record, WebhookConfig};

/// User + system CPU time of this process so far (Linux, `/proc/self/stat`).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("command name") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line: 12th and 13th after the name.
    let ticks: u64 = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// After delivering what it found, with nothing stored since, the replay loop waits for the
/// next stored batch (or `replay_interval`) instead of listing the directory again and
/// again: 1 s of idling costs next to no CPU. (A loop that went round again whenever it
/// found nothing used a core the whole time.)
#[tokio::test]
async fn an_idle_disk_queue_target_does_not_spin() {
    quiet();
    let r = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (t, _cap) = audit_target(
        WebhookConfig::builder("_", r.url("/"))
            .queue_dir(dir.path())
            .replay_interval(Duration::from_secs(60))
            .build()
            .expect("cfg"),
    );
    t.send(Record::Audit(Arc::new(AuditEntry::new())))
        .expect("accepted");
    bounded(r.wait_lines(1)).await;
    eventually("sent", || t.stats().sent == 1).await;
    let before = cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_time() - before;
    assert!(
        used < Duration::from_millis(300),
        "{used:?} of CPU in 1 s of idling"
    );
    assert_eq!(r.arrivals(), 1);
    t.cancel().await;
}
