//! Hot-path micro-benchmarks of whole calls between two nodes over the in-memory transport
//! (no kernel sockets, so the figures are the library's own cost per call or item and change
//! when the session, mux tables, queues or codec get slower):
//!
//! * `single_512/1_in_flight`: one echo request of 512 bytes at a time (latency per call);
//! * `single_512/64_in_flight`: 64 concurrent callers (time per call, i.e. 1 / throughput);
//! * `stream_out_1k/item`: one stream whose handler sends 1 KiB items as fast as credit
//!   (capacity 64) allows (time per item).
//!
//! Run: `cargo bench -p nodegrid --bench roundtrip -- --warm-up-time 1 --measurement-time 3`.
//! The end-to-end figures over TCP, with a raw-TCP baseline, come from `nodegrid bench`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nodegrid::auth::Auth;
use nodegrid::handler::Request;
use nodegrid::transport::MemoryNetwork;
use nodegrid::{
    Connection, Manager, RemoteError, StreamContext, StreamInput, StreamOptions, StreamOutput,
    StreamSpec,
};
use std::time::{Duration, Instant};

const ECHO: u8 = 78;
const SOURCE: u8 = 79;

struct Pair {
    _net: MemoryNetwork,
    nodes: Vec<Manager>,
    conn: Connection,
}

fn pair(rt: &tokio::runtime::Runtime) -> Pair {
    rt.block_on(async {
        let net = MemoryNetwork::new();
        let hosts: Vec<String> = (0..2).map(|i| format!("http://node{i}:9000")).collect();
        let mut nodes = Vec::new();
        for h in &hosts {
            let m = Manager::builder(h.clone(), hosts.clone())
                .auth(Auth::shared_token("bench"))
                .dialer(net.dialer(h))
                .build()
                .expect("valid configuration");
            m.register_single(
                ECHO,
                |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
            )
            .expect("register echo");
            m.register_stream(
                SOURCE,
                StreamSpec::new().in_capacity(0).out_capacity(64),
                |ctx: StreamContext, _in: StreamInput, out: StreamOutput| async move {
                    let item = Bytes::from(vec![0x5a; 1024]);
                    let n: u64 = ctx
                        .payload
                        .as_deref()
                        .and_then(|p| std::str::from_utf8(p).ok())
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    for _ in 0..n {
                        if out.send(item.clone()).await.is_err() {
                            break;
                        }
                    }
                    Ok(())
                },
            )
            .expect("register source");
            net.attach(&m);
            nodes.push(m);
        }
        for m in &nodes {
            m.wait_all_connected(Duration::from_secs(10))
                .await
                .expect("nodes connect");
        }
        let conn = nodes[0].connection(&hosts[1]).expect("known host");
        Pair {
            _net: net,
            nodes,
            conn,
        }
    })
}

fn bench_calls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let p = pair(&rt);
    let body = Bytes::from(vec![0xa5; 512]);

    let mut g = c.benchmark_group("single_512");
    g.throughput(Throughput::Elements(1));
    g.bench_function("1_in_flight", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let r = p.conn.request(ECHO, body.clone()).await.expect("echo");
                    assert_eq!(r.len(), 512);
                }
                t0.elapsed()
            })
        })
    });
    g.bench_function("64_in_flight", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let per = iters.div_ceil(64);
                let t0 = Instant::now();
                let tasks: Vec<_> = (0..64)
                    .map(|_| {
                        let conn = p.conn.clone();
                        let body = body.clone();
                        tokio::spawn(async move {
                            for _ in 0..per {
                                conn.request(ECHO, body.clone()).await.expect("echo");
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("caller task");
                }
                // Scaled to the requested count (64 * per may exceed it slightly).
                t0.elapsed().mul_f64(iters as f64 / (per * 64) as f64)
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("stream_out_1k");
    g.throughput(Throughput::Bytes(1024));
    g.bench_function("item", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t0 = Instant::now();
                let mut s = p
                    .conn
                    .open_stream(
                        SOURCE,
                        Some(Bytes::from(iters.to_string())),
                        StreamOptions::new().capacities(0, 64),
                    )
                    .await
                    .expect("open stream");
                let mut n = 0u64;
                while let Some(item) = s.recv().await {
                    assert_eq!(item.expect("item").len(), 1024);
                    n += 1;
                }
                assert_eq!(n, iters, "every item arrives");
                t0.elapsed()
            })
        })
    });
    g.finish();
    for n in &p.nodes {
        n.shutdown();
    }
}

criterion_group!(benches, bench_calls);
criterion_main!(benches);
