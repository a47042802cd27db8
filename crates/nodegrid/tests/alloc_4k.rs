//! PROTOCOL.md §11 item 25: many 4 KiB messages in parallel (the merge path with large
//! messages) do not reallocate per message. A counting global allocator (this test binary has
//! only this test, so nothing else allocates meanwhile) counts reallocations and allocations of
//! a message's size or more while two nodes echo thousands of 4 KiB requests; a buffer grown or
//! copied per message would show up as thousands of them.

mod common;

use bytes::Bytes;
use nodegrid::auth::Auth;
use nodegrid::handler::Request;
use nodegrid::transport::MemoryNetwork;
use nodegrid::{Manager, RemoteError};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BIG_ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// An allocation this large would be a copy of (or room for) a whole message.
const BIG: usize = 4096;

fn count(size: usize, realloc: bool) {
    if COUNTING.load(Relaxed) {
        ALLOCS.fetch_add(1, Relaxed);
        if realloc {
            REALLOCS.fetch_add(1, Relaxed);
        }
        if size >= BIG {
            BIG_ALLOCS.fetch_add(1, Relaxed);
        }
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), false);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), false);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size, true);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ECHO: u8 = 78;
const PARALLEL: usize = 64;

/// Echoes `rounds` × PARALLEL requests of 4 KiB, PARALLEL at a time; returns (reallocations,
/// allocations of 4 KiB or more, all allocations) made meanwhile.
async fn run(conn: &nodegrid::Connection, payload: &Bytes, rounds: usize) -> (u64, u64, u64) {
    for c in [&REALLOCS, &BIG_ALLOCS, &ALLOCS] {
        c.store(0, Relaxed);
    }
    COUNTING.store(true, Relaxed);
    // The test's own bookkeeping allocates nothing that grows: one task per call, joined in
    // order from a vector of fixed capacity.
    let mut calls = Vec::with_capacity(PARALLEL);
    for _ in 0..rounds {
        for _ in 0..PARALLEL {
            let (c, p) = (conn.clone(), payload.clone());
            calls.push(tokio::spawn(async move { c.request(ECHO, p).await }));
        }
        for call in calls.drain(..) {
            assert_eq!(call.await.unwrap().unwrap().len(), payload.len());
        }
    }
    COUNTING.store(false, Relaxed);
    (
        REALLOCS.load(Relaxed),
        BIG_ALLOCS.load(Relaxed),
        ALLOCS.load(Relaxed),
    )
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn many_4k_messages_do_not_reallocate_per_message() {
    common::init_tracing();
    let net = MemoryNetwork::new();
    let hosts: Vec<String> = (0..2).map(|i| format!("http://node{i}:9000")).collect();
    let mut nodes = Vec::new();
    for h in &hosts {
        let m = Manager::builder(h.clone(), hosts.clone())
            .auth(Auth::shared_token("alloc"))
            .dialer(net.dialer(h))
            .build()
            .unwrap();
        m.register_single(
            ECHO,
            |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
        )
        .unwrap();
        net.attach(&m);
        nodes.push(m);
    }
    for m in &nodes {
        m.wait_all_connected(Duration::from_secs(10)).await.unwrap();
    }
    let conn = nodes[0].connection(&hosts[1]).unwrap();
    let payload = Bytes::from(vec![0xa5u8; 4096]);
    // Warm-up: buffers reach their working size.
    run(&conn, &payload, 20).await;
    let back = nodes[1].connection(&hosts[0]).unwrap();
    let ws = || conn.stats().ws_messages_out + back.stats().ws_messages_out;
    let w0 = ws();
    let (r1, b1, a1) = run(&conn, &payload, 50).await;
    let w1 = ws() - w0;
    let (r2, b2, a2) = run(&conn, &payload, 100).await;
    let w2 = ws() - w0 - w1;
    let msgs = |rounds: u64| rounds * PARALLEL as u64 * 2;
    eprintln!(
        "{} messages in {w1} WebSocket messages: {r1} reallocs, {b1} allocations >= 4 KiB, \
         {a1} allocations; {} messages in {w2}: {r2}, {b2}, {a2}",
        msgs(50),
        msgs(100)
    );
    for (rounds, w, r, b, a) in [(50, w1, r1, b1, a1), (100, w2, r2, b2, a2)] {
        let m = msgs(rounds);
        // The parallel 4 KiB messages go out merged, many to a WebSocket message.
        assert!(w <= m / 16, "{w} WebSocket messages for {m} messages");
        // Buffers may be grown or replaced per WebSocket message written or read (the merge
        // buffer, the read buffer), never per grid message: that would be thousands.
        assert!(
            r <= w,
            "{r} reallocations for {w} WebSocket messages ({m} messages)"
        );
        assert!(
            b <= 2 * w,
            "{b} allocations >= 4 KiB for {w} WebSocket messages"
        );
        // Small per-call allocations (a oneshot, the handler's future, the test's task) stay a
        // few per message.
        assert!(a <= 4 * m, "{a} allocations for {m} messages");
    }
    for m in &nodes {
        m.shutdown();
    }
}
