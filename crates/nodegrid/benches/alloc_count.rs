//! Heap allocations per codec operation, counted with a global allocator (issue 2, part 5).
//!
//! Run: `cargo bench -p nodegrid --bench alloc_count`. The operations are the same as in the
//! `codec` bench: encode/decode of a 512-byte Request (with CRC), MergedBuilder encode and
//! split (with every inner message decoded) of a 50-message envelope of such requests.

use bytes::{Bytes, BytesMut};
use nodegrid::wire::{encode_merged, split_frame, Flags, Limits, MergedBuilder, Message, Op};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
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

const PAYLOAD: usize = 512;
const MERGED: usize = 50;
const ITERS: u64 = 10_000;

fn request(mux: u64) -> Message {
    let mut m = Message::new(Op::Request, mux);
    m.deadline_ms = 60_000;
    m.handler = 78;
    m.flags = Flags::CRC | Flags::EOF;
    m.payload = Bytes::from((0..PAYLOAD).map(|i| i as u8).collect::<Vec<u8>>());
    m
}

fn merged(msgs: &[Message]) -> Bytes {
    let mut b = MergedBuilder::default();
    for m in msgs {
        assert!(b.try_push(m).expect("encode"), "message does not fit");
    }
    b.finish()
}

/// Runs `f` once to warm up, then `ITERS` times, and prints allocations and bytes per call.
fn measure(name: &str, mut f: impl FnMut()) {
    f();
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    for _ in 0..ITERS {
        f();
    }
    let (a1, b1) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    println!(
        "{name:<36} {:>8.2} allocs/op {:>10.0} bytes allocated/op",
        (a1 - a0) as f64 / ITERS as f64,
        (b1 - b0) as f64 / ITERS as f64
    );
}

fn main() {
    let m = request(1);
    let wire = m.to_bytes().expect("encode");
    let msgs: Vec<Message> = (1..=MERGED as u64).map(request).collect();
    let env = merged(&msgs);
    let limits = Limits::default();
    println!(
        "request: {} bytes on the wire; envelope: {} messages, {} bytes",
        wire.len(),
        MERGED,
        env.len()
    );

    measure("request_512/encode", || {
        black_box(black_box(&m).to_bytes().expect("encode"));
    });
    let mut buf = BytesMut::with_capacity(wire.len());
    measure("request_512/encode_reuse_buf", || {
        buf.clear();
        black_box(&m).encode(&mut buf).expect("encode");
    });
    measure("request_512/decode", || {
        black_box(Message::decode(black_box(&wire)).expect("decode"));
    });
    measure("merged_50x512/encode", || {
        black_box(merged(black_box(&msgs)));
    });
    // A writer keeps one builder; finish() hands out the buffer and allocates the next one.
    let mut builder = MergedBuilder::default();
    measure("merged_50x512/encode_reuse_builder", || {
        for m in &msgs {
            assert!(builder.try_push(m).expect("encode"));
        }
        black_box(builder.finish());
    });
    measure("merged_50x512/encode_merged_fn", || {
        black_box(encode_merged(black_box(&msgs)).expect("encode"));
    });
    measure("merged_50x512/split", || {
        let mut n = 0;
        for m in split_frame(black_box(env.clone()), &limits).expect("split") {
            black_box(m.expect("inner message"));
            n += 1;
        }
        assert_eq!(n, MERGED);
    });
}
