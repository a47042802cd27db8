//! Codec micro-benchmarks (issue 2, part 5).
//!
//! * `request_512`: encode and decode one Request with a 512-byte payload and a CRC trailer;
//! * `merged_50x512`: pack 50 such messages into one merged envelope with `MergedBuilder`, and
//!   split it again, decoding (and CRC-checking) every inner message.
//!
//! Run: `cargo bench -p nodegrid --bench codec -- --warm-up-time 1 --measurement-time 3`.
//! Allocations per operation are counted by the `alloc_count` bench.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use nodegrid::wire::{split_frame, Flags, Limits, MergedBuilder, Message, Op};

const PAYLOAD: usize = 512;
const MERGED: usize = 50;

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

fn bench_request(c: &mut Criterion) {
    let m = request(1);
    let wire = m.to_bytes().expect("encode");
    let mut g = c.benchmark_group("request_512");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| black_box(&m).to_bytes().expect("encode"))
    });
    let mut buf = BytesMut::with_capacity(wire.len());
    g.bench_function("encode_reuse_buf", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&m).encode(&mut buf).expect("encode");
            black_box(buf.len())
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| Message::decode(black_box(&wire)).expect("decode"))
    });
    // Baseline: copying the same wire bytes into a reused buffer, the least any encoder does.
    g.bench_function("baseline_copy", |b| {
        b.iter(|| {
            buf.clear();
            buf.extend_from_slice(black_box(&wire));
            black_box(buf.len())
        })
    });
    g.finish();
}

fn bench_merged(c: &mut Criterion) {
    let msgs: Vec<Message> = (1..=MERGED as u64).map(request).collect();
    let env = merged(&msgs);
    let limits = Limits::default();
    let n = split_frame(env.clone(), &limits).expect("split").count();
    assert_eq!(n, MERGED);
    let mut g = c.benchmark_group("merged_50x512");
    g.throughput(Throughput::Bytes(env.len() as u64));
    g.bench_function("encode", |b| b.iter(|| merged(black_box(&msgs))));
    g.bench_function("split", |b| {
        b.iter(|| {
            let mut n = 0;
            for m in split_frame(black_box(env.clone()), &limits).expect("split") {
                black_box(m.expect("inner message"));
                n += 1;
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench_request, bench_merged);
criterion_main!(benches);
