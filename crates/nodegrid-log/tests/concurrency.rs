//! The split-lock, atomic-swap registry under concurrency (LOGGING.md §3, §8.4, §8.7): many
//! threads log to the system list and the audit list while both lists' webhooks are replaced
//! over and over, with console-log subscribers attached. Nothing may be lost or doubled, and
//! the counters must add up across every generation of targets.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use nodegrid_log::test_support::{audit_targets, system_targets, Target};
use nodegrid_log::{
    AuditEntry, ConsoleMode, ConsoleTarget, Identity, Kind, KindMask, LogEntry, Registry, Stream,
    WebhookConfig,
};

/// Target handles of one list.
type Targets = Vec<Arc<dyn Target>>;

const THREADS: u64 = 8;
const PER_THREAD: u64 = 1_500;
/// At least this many swaps, and at most `MAX_SWAPS`, swapping until the producers are done.
const SWAPS: usize = 60;
const MAX_SWAPS: usize = 5_000;
const N: u64 = THREADS * PER_THREAD;

fn config(key: &str, url: String, swap: usize) -> WebhookConfig {
    WebhookConfig::builder(key, url)
        .batch_size([5, 20, 100][swap % 3])
        .flush_interval(Duration::from_millis(20))
        .retry_interval(Duration::from_millis(20))
        .build()
        .expect("cfg")
}

/// Every id of `0..N` exactly once, whatever the order (batches handed over during a swap
/// may overtake each other).
fn assert_each_once(what: &str, mut ids: Vec<u64>) {
    ids.sort_unstable();
    let dups = ids.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(dups, 0, "{what}: {dups} entries delivered twice");
    assert_eq!(
        ids.len() as u64,
        N,
        "{what}: {} of {N} delivered",
        ids.len()
    );
    assert_eq!(ids, (0..N).collect::<Vec<_>>(), "{what}");
}

/// Σ over all generations: every logged entry ended in exactly one of sent / dropped /
/// failed / queued of some target (a migrated entry counts again in the target it moved to).
fn check_generations(what: &str, targets: &[Arc<dyn Target>]) {
    let (mut sent, mut lost, mut queued, mut total, mut migrated) = (0, 0, 0, 0, 0);
    for t in targets {
        let s = t.stats();
        check_invariant(&s);
        sent += s.sent;
        lost += s.dropped + s.failed;
        queued += s.queued;
        total += s.total;
        migrated += s.migrated;
    }
    assert_eq!(
        (sent, lost, queued),
        (N, 0, 0),
        "{what}: sent, dropped + failed, queued over {} targets",
        targets.len()
    );
    assert_eq!(total - migrated, N, "{what}: offered once per entry");
}

#[test]
fn many_threads_log_and_audit_while_targets_are_swapped() {
    quiet();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (logr, audr) = rt.block_on(async { (Receiver::start().await, Receiver::start().await) });
    let (console, _cap) = ConsoleTarget::capture(ConsoleMode::Json);
    let reg = {
        let _g = rt.enter();
        let reg = Registry::new(console, Identity::default());
        reg.update_webhooks(Stream::Logger, vec![config("l", logr.url("/"), 0)])
            .expect("logger");
        reg.update_webhooks(Stream::Audit, vec![config("a", audr.url("/"), 0)])
            .expect("audit");
        reg
    };
    // Two console subscribers: one reads everything, one reads nothing (it misses entries,
    // which must be counted).
    let reader = reg
        .console()
        .subscribe(KindMask::ALL, 0)
        .expect("subscribe");
    let stuck = reg
        .console()
        .subscribe(KindMask::ALL, 0)
        .expect("subscribe");
    let received = Arc::new(AtomicU64::new(0));
    let reading = {
        let received = received.clone();
        let mut reader = reader;
        rt.spawn(async move {
            while reader.entries.recv().await.is_some() {
                received.fetch_add(1, Ordering::Relaxed);
            }
            reader
        })
    };
    // Every target each list ever had: (system, audit).
    let mut generations: (Targets, Targets) = (Vec::new(), Vec::new());
    let mut remember = |reg: &Arc<Registry>| {
        for (list, snap) in [
            (&mut generations.0, system_targets(reg)),
            (&mut generations.1, audit_targets(reg)),
        ] {
            for t in snap.iter().filter(|t| t.name() != "console") {
                if !list.iter().any(|k| Arc::ptr_eq(k, t)) {
                    list.push(t.clone());
                }
            }
        }
    };
    remember(&reg);

    let started = Instant::now();
    let finished = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..THREADS)
        .map(|th| {
            let reg = reg.clone();
            let audit = reg.audit();
            let finished = finished.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let id = th * PER_THREAD + i;
                    let mut e = LogEntry::new(Kind::Info);
                    e.message = id.to_string();
                    reg.log(e);
                    let mut a = AuditEntry::new();
                    a.tags.insert("id".into(), id.into());
                    audit.log(a);
                    if i % 100 == 0 {
                        std::thread::yield_now();
                    }
                }
                finished.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    // The swapper: replaces both lists' webhooks, alternately, while the producers run.
    let mut swaps_while_logging = 0;
    for swap in 1..=MAX_SWAPS {
        let logging = finished.load(Ordering::SeqCst) < THREADS;
        if !logging && swap > SWAPS {
            break;
        }
        swaps_while_logging += usize::from(logging);
        {
            let _g = rt.enter();
            if swap % 2 == 0 {
                reg.update_webhooks(Stream::Logger, vec![config("l", logr.url("/"), swap)])
                    .expect("swap logger");
            } else {
                reg.update_webhooks(Stream::Audit, vec![config("a", audr.url("/"), swap)])
                    .expect("swap audit");
            }
        }
        remember(&reg);
        std::thread::sleep(Duration::from_millis(1));
    }
    for p in producers {
        p.join().expect("producer");
    }
    let logging_took = started.elapsed();

    rt.block_on(async {
        bounded(logr.wait_lines(N as usize)).await;
        bounded(audr.wait_lines(N as usize)).await;
    });
    let log_ids: Vec<u64> = logr
        .lines()
        .iter()
        .map(|l| {
            l["message"]
                .as_str()
                .and_then(|m| m.parse().ok())
                .expect("id")
        })
        .collect();
    assert_each_once("logger webhook", log_ids);
    let audit_ids: Vec<u64> = audr
        .lines()
        .iter()
        .map(|l| l["tags"]["id"].as_u64().expect("id"))
        .collect();
    assert_each_once("audit webhook", audit_ids);

    // Old targets settle in the background (their cancel runs after the swap); wait until
    // every generation has nothing queued, then check the counters.
    rt.block_on(async {
        eventually("every generation settled", || {
            generations
                .0
                .iter()
                .chain(&generations.1)
                .all(|t| t.stats().queued == 0)
        })
        .await;
    });
    assert!(
        swaps_while_logging >= 10,
        "only {swaps_while_logging} swaps overlapped the logging"
    );
    assert!(generations.0.len() > SWAPS / 2 && generations.1.len() > SWAPS / 2);
    check_generations("system list", &generations.0);
    check_generations("audit list", &generations.1);
    // The console got each log entry once, plus its own reports (the subscribers' misses).
    let console = reg.stats()["sys_console"].clone();
    let published = console.total;
    assert_eq!(published, N + reg.console().reports(), "{console:?}");

    // The subscribers: what each read (or holds) plus what it missed is what was published.
    let stuck_missed = stuck.missed();
    let reader_missed = || reg.console().subscriber_misses() - stuck_missed;
    rt.block_on(async {
        eventually("reader caught up", || {
            received.load(Ordering::Relaxed) + reader_missed() == published
        })
        .await;
    });
    reading.abort();
    assert_eq!(
        received.load(Ordering::Relaxed) + reader_missed(),
        published,
        "reading subscriber: received + missed == published"
    );
    // The stuck one holds a full channel and missed the rest.
    assert_eq!(
        nodegrid_log::SUBSCRIBER_CHANNEL as u64 + stuck_missed,
        published,
        "stuck subscriber: held + missed == published"
    );
    assert!(stuck_missed > 0);
    eprintln!(
        "{N} log + {N} audit entries from {THREADS} threads in {logging_took:?}, \
         {swaps_while_logging} swaps meanwhile, {} + {} targets",
        generations.0.len(),
        generations.1.len()
    );
    rt.block_on(async {
        let rep = reg.shutdown(Duration::from_secs(2)).await;
        assert_eq!(rep.dropped, 0);
    });
}
