//! Streams between in-process nodes on loopback: round trips, flow control, cancellation,
//! deadlines, congestion, typed streams, disconnects.

mod common;

use bytes::Bytes;
use common::{cluster, wait_for, Cluster};
use futures::StreamExt;
use nodegrid::handler::typed::{TypedHandler, TypedStream};
use nodegrid::handler::Request;
use nodegrid::{
    Error, GridConfig, Manager, RemoteError, StreamContext, StreamInput, StreamOptions,
    StreamOutput, StreamSpec, UnknownHandlerKind,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ECHO_STREAM: u8 = 78; // two-way echo, capacities 4 / 4
const COUNT_OUT: u8 = 79; // no input: payload N, sends "0".."N-1"
const SINK: u8 = 30; // input only: counts inputs, sends the count at the end
const WAIT_CANCEL: u8 = 31; // waits for cancellation, counts it
const FAILING: u8 = 32; // returns an error at once
const SLOW_OUT: u8 = 33; // capacity 1 / 1: sends forever, counting sends
const SINGLE_ECHO: u8 = 40;
const NEVER_READ: u8 = 34; // takes input but never reads it

#[derive(Default)]
struct Probe {
    cancelled: AtomicUsize,
    sent: AtomicUsize,
}

fn setup(m: &Manager, probe: Arc<Probe>) {
    m.register_single(SINGLE_ECHO, |r: Request| async move {
        Ok::<_, RemoteError>(r.bytes())
    })
    .unwrap();
    m.register_stream(
        ECHO_STREAM,
        StreamSpec::new().in_capacity(4).out_capacity(4),
        |_ctx: StreamContext, mut input: StreamInput, output: StreamOutput| async move {
            while let Some(item) = input.recv().await {
                output
                    .send(item)
                    .await
                    .map_err(|e| RemoteError::new(e.to_string()))?;
            }
            Ok(())
        },
    )
    .unwrap();
    m.register_stream(
        COUNT_OUT,
        StreamSpec::new().in_capacity(0).out_capacity(64),
        |ctx: StreamContext, _input: StreamInput, output: StreamOutput| async move {
            let n: u64 = String::from_utf8_lossy(&ctx.payload.unwrap_or_default())
                .parse()
                .map_err(|_| RemoteError::new("bad count"))?;
            for i in 0..n {
                output
                    .send(Bytes::from(i.to_string()))
                    .await
                    .map_err(|e| RemoteError::new(e.to_string()))?;
            }
            Ok(())
        },
    )
    .unwrap();
    m.register_stream(
        SINK,
        StreamSpec::new().in_capacity(8).out_capacity(1),
        |_ctx: StreamContext, mut input: StreamInput, output: StreamOutput| async move {
            let mut n = 0u64;
            let mut bytes = 0usize;
            while let Some(item) = input.recv().await {
                n += 1;
                bytes += item.len();
            }
            output
                .send(Bytes::from(format!("{n}/{bytes}")))
                .await
                .map_err(|e| RemoteError::new(e.to_string()))?;
            Ok(())
        },
    )
    .unwrap();
    let p = probe.clone();
    m.register_stream(
        WAIT_CANCEL,
        StreamSpec::new().in_capacity(2).out_capacity(1),
        move |ctx: StreamContext, _input: StreamInput, _output: StreamOutput| {
            let p = p.clone();
            async move {
                ctx.cancel.cancelled().await;
                p.cancelled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
    )
    .unwrap();
    m.register_stream(
        FAILING,
        StreamSpec::new().in_capacity(0).out_capacity(1),
        |_ctx: StreamContext, _i: StreamInput, _o: StreamOutput| async move {
            Err(RemoteError::new("stream failed on purpose"))
        },
    )
    .unwrap();
    let p = probe.clone();
    m.register_stream(
        SLOW_OUT,
        StreamSpec::new().in_capacity(0).out_capacity(1),
        move |_ctx: StreamContext, _i: StreamInput, output: StreamOutput| {
            let p = p.clone();
            async move {
                let mut i = 0u64;
                loop {
                    if output.send(Bytes::from(i.to_string())).await.is_err() {
                        p.cancelled.fetch_add(1, Ordering::SeqCst);
                        return Ok(());
                    }
                    p.sent.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            }
        },
    )
    .unwrap();
    let p = probe;
    m.register_stream(
        NEVER_READ,
        StreamSpec::new().in_capacity(2).out_capacity(1),
        move |ctx: StreamContext, _input: StreamInput, _o: StreamOutput| {
            let p = p.clone();
            async move {
                ctx.cancel.cancelled().await;
                p.cancelled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
    )
    .unwrap();
}

async fn two_nodes() -> (Cluster, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let c = cluster(2, GridConfig::default(), move |m| setup(m, p.clone())).await;
    (c, probe)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_then_eof() {
    let (c, _) = two_nodes().await;
    for (a, b) in [(0, 1), (1, 0)] {
        let mut s = c
            .conn(a, b)
            .open_stream(ECHO_STREAM, None, StreamOptions::new())
            .await
            .unwrap();
        for i in 0..10 {
            let msg = Bytes::from(format!("round {i}"));
            s.send(msg.clone()).await.unwrap();
            assert_eq!(s.recv().await.unwrap().unwrap(), msg);
        }
        s.close_send().await.unwrap();
        assert!(s.recv().await.is_none(), "clean end after input EOF");
        assert_eq!(
            s.send(Bytes::from_static(b"late")).await.unwrap_err(),
            Error::InputClosed
        );
    }
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_streams_both_directions() {
    let (c, _) = two_nodes().await;
    let conn = c.conn(0, 1);
    // Callee to caller.
    let s = conn
        .open_stream(
            COUNT_OUT,
            Some(Bytes::from_static(b"500")),
            StreamOptions::new(),
        )
        .await
        .unwrap();
    let items: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
    assert_eq!(items.len(), 500);
    assert!(items
        .iter()
        .enumerate()
        .all(|(i, b)| b[..] == *i.to_string().as_bytes()));
    // Caller to callee.
    let mut s = conn
        .open_stream(SINK, None, StreamOptions::new())
        .await
        .unwrap();
    for _ in 0..1000 {
        s.send(Bytes::from_static(b"0123456789")).await.unwrap();
    }
    s.close_send().await.unwrap();
    assert_eq!(&s.recv().await.unwrap().unwrap()[..], b"1000/10000");
    assert!(s.recv().await.is_none());
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_messages_in_order() {
    let (c, _) = two_nodes().await;
    let conn = c.conn(1, 0);
    let mut s = conn
        .open_stream(
            COUNT_OUT,
            Some(Bytes::from_static(b"1000000")),
            StreamOptions::new(),
        )
        .await
        .unwrap();
    let mut expected = 0u64;
    while let Some(item) = s.recv().await {
        let item = item.unwrap();
        assert_eq!(item, Bytes::from(expected.to_string()), "item {expected}");
        expected += 1;
    }
    assert_eq!(expected, 1_000_000);
    assert!(
        s.max_buffered() <= 64,
        "buffer bounded by capacity: {}",
        s.max_buffered()
    );
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_blocks_producer_and_resumes() {
    let (c, probe) = two_nodes().await;
    let conn = c.conn(0, 1);
    let mut s = conn
        .open_stream(SLOW_OUT, None, StreamOptions::new().capacities(0, 1))
        .await
        .unwrap();
    // With capacity 1 and nobody reading, exactly one item goes out; the next send waits.
    wait_for("first send", Duration::from_secs(10), || {
        probe.sent.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        probe.sent.load(Ordering::SeqCst),
        1,
        "producer must block without credit"
    );
    assert!(s.max_buffered() <= 1);
    // Reading resumes the producer, one item per credit.
    for i in 0..50u64 {
        assert_eq!(s.recv().await.unwrap().unwrap(), Bytes::from(i.to_string()));
    }
    wait_for("resumed", Duration::from_secs(10), || {
        probe.sent.load(Ordering::SeqCst) >= 51
    })
    .await;
    assert!(probe.sent.load(Ordering::SeqCst) <= 52);
    assert_eq!(s.max_buffered(), 1, "never more than the capacity buffered");
    drop(s);
    wait_for("handler sees cancel", Duration::from_secs(10), || {
        probe.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_flow_control_is_bounded_by_credits() {
    let (c, probe) = two_nodes().await;
    let conn = c.conn(0, 1);
    // NEVER_READ has input capacity 2 and never reads: two sends pass, the third waits.
    let s = conn
        .open_stream(NEVER_READ, None, StreamOptions::new().capacities(2, 1))
        .await
        .unwrap();
    s.send(Bytes::from_static(b"1")).await.unwrap();
    s.send(Bytes::from_static(b"2")).await.unwrap();
    let third =
        tokio::time::timeout(Duration::from_millis(200), s.send(Bytes::from_static(b"3"))).await;
    assert!(third.is_err(), "third send must wait for credit");
    assert_eq!(
        c.nodes[1]
            .connection(&c.hosts[0])
            .unwrap()
            .mux_counts()
            .incoming_streams,
        1
    );
    s.cancel();
    assert_eq!(
        s.send(Bytes::from_static(b"4")).await.unwrap_err(),
        Error::Cancelled
    );
    wait_for("cancel reaches handler", Duration::from_secs(10), || {
        probe.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_variants_reach_the_handler() {
    let (c, probe) = two_nodes().await;
    let conn = c.conn(0, 1);
    // No input, one buffered input, input filled to capacity before cancel.
    for (k, inputs) in [0usize, 1, 2].into_iter().enumerate() {
        let mut s = conn
            .open_stream(WAIT_CANCEL, None, StreamOptions::new())
            .await
            .unwrap();
        for _ in 0..inputs {
            s.send(Bytes::from_static(b"x")).await.unwrap();
        }
        s.cancel();
        assert_eq!(s.recv().await.unwrap().unwrap_err(), Error::Cancelled);
        wait_for("handler cancelled", Duration::from_secs(10), || {
            probe.cancelled.load(Ordering::SeqCst) == k + 1
        })
        .await;
    }
    // Drop mid-stream frees both sides.
    let s = conn
        .open_stream(WAIT_CANCEL, None, StreamOptions::new())
        .await
        .unwrap();
    wait_for("stream open on callee", Duration::from_secs(10), || {
        c.conn(1, 0).mux_counts().incoming_streams == 1
    })
    .await;
    drop(s);
    wait_for("dropped stream cancelled", Duration::from_secs(10), || {
        probe.cancelled.load(Ordering::SeqCst) == 4
    })
    .await;
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_and_unknown_stream_handler() {
    let (c, _) = two_nodes().await;
    let conn = c.conn(0, 1);
    let mut s = conn
        .open_stream(FAILING, None, StreamOptions::new())
        .await
        .unwrap();
    let e = s.recv().await.unwrap().unwrap_err();
    assert_eq!(e.remote_text(), Some("stream failed on purpose"));
    assert!(s.recv().await.is_none());
    // Without a local registration the caller fails locally (§6.1)...
    let remote = c.hosts[1].clone();
    let e = conn
        .open_stream(77, None, StreamOptions::new())
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Error::UnknownHandler {
            handler: 77,
            name: None,
            subroute: None,
            remote: remote.clone(),
            kind: UnknownHandlerKind::NoLocalStream,
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "handler 77 has no stream registration on this node to size the stream to {remote} \
             (capacities are not negotiated): register the stream handler on this node too, or \
             set StreamOptions::capacities"
        )
    );
    // ...and with explicit capacities the callee answers with the reference's text
    // ("Invalid Handler for type: CheckParts3"), which the caller sees typed.
    let mut s = conn
        .open_stream(77, None, StreamOptions::new().capacities(0, 1))
        .await
        .unwrap();
    assert_eq!(
        s.recv().await.unwrap().unwrap_err(),
        Error::UnknownHandler {
            handler: 77,
            name: None,
            subroute: None,
            remote: remote.clone(),
            kind: UnknownHandlerKind::NotOnRemote,
        }
    );
    assert!(s.recv().await.is_none());
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_reaches_both_sides() {
    let (c, probe) = two_nodes().await;
    let conn = c.conn(0, 1);
    let t0 = tokio::time::Instant::now();
    let mut s = conn
        .open_stream(
            WAIT_CANCEL,
            None,
            StreamOptions::new().timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap();
    assert_eq!(
        s.recv().await.unwrap().unwrap_err(),
        Error::DeadlineExceeded
    );
    assert!(t0.elapsed() >= Duration::from_millis(50));
    wait_for("callee deadline", Duration::from_secs(10), || {
        probe.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singles_pass_while_stream_output_or_input_is_congested() {
    let (c, _) = two_nodes().await;
    let conn = c.conn(0, 1);
    // Output congested: nobody reads a stream with pending output.
    let out = conn
        .open_stream(SLOW_OUT, None, StreamOptions::new().capacities(0, 1))
        .await
        .unwrap();
    // Input congested: the handler never reads and its buffer is full.
    let inp = conn
        .open_stream(NEVER_READ, None, StreamOptions::new().capacities(2, 1))
        .await
        .unwrap();
    inp.send(Bytes::from_static(b"1")).await.unwrap();
    inp.send(Bytes::from_static(b"2")).await.unwrap();
    for i in 0..100 {
        let p = Bytes::from(format!("single {i}"));
        assert_eq!(conn.request(SINGLE_ECHO, p.clone()).await.unwrap(), p);
    }
    drop(out);
    drop(inp);
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_socket_cancels_callee_and_fails_caller() {
    let (c, probe) = two_nodes().await;
    let conn = c.conn(0, 1);
    let mut s = conn
        .open_stream(WAIT_CANCEL, None, StreamOptions::new())
        .await
        .unwrap();
    wait_for("open", Duration::from_secs(10), || {
        c.conn(1, 0).mux_counts().incoming_streams == 1
    })
    .await;
    conn.kill_session();
    let e = tokio::time::timeout(Duration::from_secs(1), s.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e, Error::Disconnected);
    assert_eq!(e.to_string(), "remote disconnected");
    wait_for("callee cancelled", Duration::from_secs(10), || {
        probe.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    conn.wait_connected(Duration::from_secs(10)).await.unwrap();
    c.assert_no_muxes().await;
    c.shutdown();
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Ask {
    name: String,
    n: u32,
}
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Answer {
    greeting: String,
    sub: Option<String>,
}

const TYPED_SINGLE: TypedHandler<Ask, Answer> = TypedHandler::new(50);
const TYPED_STREAM: TypedStream<Ask, u32, Answer> =
    TypedStream::new(51).capacities(2, 2).subroute("subroute/1");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_single_stream_and_errors() {
    let c = cluster(2, GridConfig::default(), |m| {
        TYPED_SINGLE
            .register(m, |a: Ask, _r| async move {
                if a.n == 0 {
                    return Err(RemoteError::new("n must be positive"));
                }
                Ok(Answer {
                    greeting: format!("hello {} x{}", a.name, a.n),
                    sub: None,
                })
            })
            .unwrap();
        TYPED_STREAM
            .register(m, |a: Ask, mut input, output, ctx| async move {
                while let Some(v) = input.recv().await {
                    let v = v.map_err(|e| RemoteError::new(e.to_string()))?;
                    output
                        .send(&Answer {
                            greeting: format!("{} {}", a.name, v * a.n),
                            sub: ctx.subroute.as_deref().map(str::to_string),
                        })
                        .await
                        .map_err(|e| RemoteError::new(e.to_string()))?;
                }
                Ok(())
            })
            .unwrap();
    })
    .await;
    let conn = c.conn(0, 1);
    let r = TYPED_SINGLE
        .call(
            &conn,
            &Ask {
                name: "grid".into(),
                n: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(r.greeting, "hello grid x2");
    let e = TYPED_SINGLE
        .call(
            &conn,
            &Ask {
                name: "grid".into(),
                n: 0,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.remote_text(), Some("n must be positive"));
    // A payload that does not decode is a remote error naming the handler.
    let e = conn.request(50, "not msgpack").await.unwrap_err();
    assert!(
        e.remote_text()
            .unwrap()
            .starts_with("handler 50: decode request"),
        "{e}"
    );
    let mut s = TYPED_STREAM
        .open(
            &conn,
            &Ask {
                name: "n".into(),
                n: 3,
            },
            StreamOptions::new(),
        )
        .await
        .unwrap();
    for v in 1..=5u32 {
        s.send(&v).await.unwrap();
        let a = s.recv().await.unwrap().unwrap();
        assert_eq!(
            a,
            Answer {
                greeting: format!("n {}", v * 3),
                sub: Some("subroute/1".into())
            }
        );
    }
    s.close_send().await.unwrap();
    assert!(s.recv().await.is_none());
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_handler_stream_limit() {
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let c = cluster(2, GridConfig::default(), move |m| {
        let p = p.clone();
        m.register_stream(
            90,
            StreamSpec::new()
                .in_capacity(0)
                .out_capacity(1)
                .max_concurrent(2),
            move |ctx: StreamContext, _i: StreamInput, _o: StreamOutput| {
                let p = p.clone();
                async move {
                    ctx.cancel.cancelled().await;
                    p.cancelled.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            },
        )
        .unwrap();
    })
    .await;
    let conn = c.conn(0, 1);
    let s1 = conn
        .open_stream(90, None, StreamOptions::new())
        .await
        .unwrap();
    let s2 = conn
        .open_stream(90, None, StreamOptions::new())
        .await
        .unwrap();
    wait_for("two running", Duration::from_secs(10), || {
        c.conn(1, 0).mux_counts().incoming_streams == 2
    })
    .await;
    let mut s3 = conn
        .open_stream(90, None, StreamOptions::new())
        .await
        .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), s3.recv())
        .await
        .expect("refused at once")
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.remote_text(),
        Some("server busy: too many concurrent streams for this handler")
    );
    assert_eq!(c.conn(1, 0).stats().rejected_over_limit, 1);
    // Ending one frees its place.
    drop(s1);
    wait_for("first ended", Duration::from_secs(10), || {
        probe.cancelled.load(Ordering::SeqCst) == 1
    })
    .await;
    let s4 = conn
        .open_stream(90, None, StreamOptions::new())
        .await
        .unwrap();
    wait_for("two running again", Duration::from_secs(10), || {
        c.conn(1, 0).mux_counts().incoming_streams == 2
    })
    .await;
    drop((s2, s3, s4));
    c.assert_no_muxes().await;
    c.shutdown();
}
