//! End-to-end throughput: audit entries/s delivered to a local receiver (127.0.0.1) by one
//! webhook target with batch size 100. Plain `main` (not criterion): one timed run.
//!
//!     cargo bench -p nodegrid-log --bench e2e [-- N]

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodegrid_log::test_support::{Target, WebhookTarget};
use nodegrid_log::{
    AuditEntry, ConsoleMode, ConsoleTarget, Identity, Record, Stream, WebhookConfig,
};

#[global_allocator]
static GLOBAL: support::CountingAlloc = support::CountingAlloc;

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (url, count) = support::start_receiver().await;
        let console = Arc::new(ConsoleTarget::with_writer(
            ConsoleMode::Quiet,
            Box::new(std::io::sink()),
        ));
        let t = WebhookTarget::start(
            Stream::Audit,
            WebhookConfig::builder("e2e", url)
                .batch_size(100)
                .queue_size(n as usize)
                .build()
                .expect("cfg"),
            &Identity::default(),
            console,
        )
        .expect("start");
        let start = Instant::now();
        for i in 0..n {
            let mut e = AuditEntry::new();
            e.api.name = "lock.Refresh".into();
            e.request_host = "node-2:9000".into();
            e.api.rx = 64;
            e.api.tx = i as i64;
            t.send(Record::Audit(Arc::new(e))).expect("queue sized for the run");
        }
        let enqueued = start.elapsed();
        let deadline = Instant::now() + Duration::from_secs(120);
        while count.load(Ordering::SeqCst) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let el = start.elapsed();
        let got = count.load(Ordering::SeqCst);
        let s = t.stats();
        println!(
            "e2e batch_size=100: {got}/{n} entries delivered in {:.3} s = {:.0} entries/s (enqueue of all took {:.3} s); requests = {}; stats sent={} dropped={} send_errors={}",
            el.as_secs_f64(),
            got as f64 / el.as_secs_f64(),
            enqueued.as_secs_f64(),
            support::REQUESTS.load(Ordering::Relaxed),
            s.sent,
            s.dropped,
            s.send_errors
        );
        t.cancel().await;
    });
}
