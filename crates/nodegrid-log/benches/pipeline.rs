//! Cost of the caller path: one `tracing` event through the layer with one webhook target,
//! and the webhook enqueue path from 2 threads. Only the caller side is timed; between
//! samples the benchmark waits (untimed) until the worker has drained the queue to below a
//! quarter of its capacity (delivering to a local receiver), so the queue never overflows
//! and the drop path is not what is measured (checked: `dropped == 0` at the end).
//!
//!     cargo bench -p nodegrid-log --bench pipeline

#[path = "support/mod.rs"]
mod support;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use nodegrid_log::test_support::{Target, WebhookTarget};
use nodegrid_log::{
    AuditEntry, ConsoleMode, ConsoleTarget, Identity, Record, Registry, Stream, WebhookConfig,
};
use tracing_subscriber::prelude::*;

#[global_allocator]
static GLOBAL: support::CountingAlloc = support::CountingAlloc;

const QUEUE: usize = 1 << 21;

/// Waits (untimed, bounded) until the queue has room for the next sample.
fn wait_room(t: &dyn Target) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.stats().queue_length > (QUEUE / 4) as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn bench_layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (url, _count) = rt.block_on(support::start_receiver());
    let _g = rt.enter();
    // Quiet console into a sink: INFO events are not rendered, so the webhook is the only
    // target doing work.
    let console = ConsoleTarget::with_writer(ConsoleMode::Quiet, Box::new(io::sink()));
    let reg = Registry::new(console, Identity::default());
    reg.update_webhooks(
        Stream::Logger,
        vec![WebhookConfig::builder("bench", url)
            .batch_size(1000)
            .flush_interval(Duration::from_millis(10))
            .queue_size(QUEUE)
            .build()
            .expect("cfg")],
    )
    .expect("webhook");
    let target = nodegrid_log::test_support::system_targets(&reg)[1].clone();
    let sub = tracing_subscriber::registry().with(reg.layer());
    tracing::subscriber::with_default(sub, || {
        // Allocations per event, measured once.
        let n = 10_000u64;
        let before = support::ALLOCS.load(Ordering::Relaxed);
        for i in 0..n {
            tracing::info!(subsystem = "grid", peer = "node-2", n = i, "peer connected");
        }
        let allocs = support::ALLOCS.load(Ordering::Relaxed) - before;
        wait_room(target.as_ref());
        println!(
            "layer: {:.1} allocations per event (caller side)",
            allocs as f64 / n as f64
        );
        c.bench_function("layer/info_event_one_webhook", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters {
                    tracing::info!(subsystem = "grid", peer = "node-2", n = i, "peer connected");
                }
                let el = start.elapsed();
                wait_room(target.as_ref());
                el
            })
        });
    });
    let st = target.stats();
    assert_eq!(st.dropped, 0, "the queue never overflowed: {st:?}");
    rt.block_on(reg.shutdown(Duration::from_secs(5)));
}

/// Baseline: the same event with only the (quiet, sink) console in the system list, i.e.
/// the cost of `tracing` + building the entry without any webhook.
fn bench_layer_console_only(c: &mut Criterion) {
    let console = ConsoleTarget::with_writer(ConsoleMode::Quiet, Box::new(io::sink()));
    let reg = Registry::new(console, Identity::default());
    let sub = tracing_subscriber::registry().with(reg.layer());
    tracing::subscriber::with_default(sub, || {
        c.bench_function("layer/info_event_console_only", |b| {
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                tracing::info!(subsystem = "grid", peer = "node-2", n = i, "peer connected");
            })
        });
    });
}

fn bench_enqueue(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (url, _count) = rt.block_on(support::start_receiver());
    let _g = rt.enter();
    let console = Arc::new(ConsoleTarget::with_writer(
        ConsoleMode::Quiet,
        Box::new(io::sink()),
    ));
    let t = WebhookTarget::start(
        Stream::Audit,
        WebhookConfig::builder("bench", url)
            .batch_size(1000)
            .flush_interval(Duration::from_millis(10))
            .queue_size(QUEUE)
            .build()
            .expect("cfg"),
        &Identity::default(),
        console,
    )
    .expect("start");
    let record = Record::Audit(Arc::new(AuditEntry::new()));
    let before = support::ALLOCS.load(Ordering::Relaxed);
    for _ in 0..10_000 {
        let _ = t.send(record.clone());
    }
    let allocs = support::ALLOCS.load(Ordering::Relaxed) - before;
    wait_room(&t);
    println!(
        "enqueue: {:.2} allocations per send",
        allocs as f64 / 10_000.0
    );
    c.bench_function("enqueue/2_threads", |b| {
        b.iter_custom(|iters| {
            let per = iters / 2 + 1;
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let t = &t;
                    let record = &record;
                    s.spawn(move || {
                        for _ in 0..per {
                            let _ = t.send(record.clone());
                        }
                    });
                }
            });
            // Wall time for `2 * per` sends done by two threads at once, scaled to `iters`.
            let el = start.elapsed().mul_f64(iters as f64 / (2 * per) as f64);
            wait_room(&t);
            el
        })
    });
    let st = t.stats();
    assert_eq!(st.dropped, 0, "the queue never overflowed: {st:?}");
    rt.block_on(t.cancel());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_layer, bench_layer_console_only, bench_enqueue
}
criterion_main!(benches);
