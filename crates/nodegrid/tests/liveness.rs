//! Per-stream liveness and the callee's own deadline of single requests, against a raw peer
//! (PROTOCOL.md §5, §6.8; issue 17, "Tests that can fail").
//!
//! Each test fails if the timer it covers never fires: the caller's 30 s and the callee's 60 s
//! stream idle limits, a pong saying "not found", and the callee's deadline for a Request whose
//! caller never sends DisconnectServerMux (as MinIO callers never do). The raw peer answers
//! connection pings, so only the per-stream timers can end the calls. Runs on the in-memory
//! network under tokio's paused clock with the production timer values.

mod common;

use bytes::Bytes;
use common::driver::{Driver, StreamPongs};
use nodegrid::handler::Request;
use nodegrid::transport::MemoryNetwork;
use nodegrid::wire::{Flags, Message, Op};
use nodegrid::{
    Error, Manager, RemoteError, StreamContext, StreamInput, StreamOptions, StreamOutput,
    StreamSpec,
};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Single handler: waits for its cancellation token, then reports it.
const BLOCK: u8 = 21;
/// Stream handler (no input): waits for its cancellation token, then reports it.
const IDLE: u8 = 62;
/// A handler the raw peer plays the callee of (not registered on the node).
const REMOTE: u8 = 90;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A cancelled handler: its name (payload of the call) and when its token fired.
type Event = (String, Instant);

struct Node {
    net: MemoryNetwork,
    m: Manager,
    host: String,
    fake: String,
    events: mpsc::UnboundedReceiver<Event>,
}

async fn node() -> Node {
    let common::MemoryNode {
        net, m, host, fake, ..
    } = common::memory_node("live");
    let (tx, events) = mpsc::unbounded_channel();
    let t = tx.clone();
    m.register_single(BLOCK, move |r: Request| {
        let t = t.clone();
        async move {
            r.cancel.cancelled().await;
            let name = String::from_utf8_lossy(&r.bytes()).into_owned();
            let _ = t.send((name, Instant::now()));
            Ok::<_, RemoteError>(Bytes::from_static(b"too late"))
        }
    })
    .unwrap();
    m.register_stream(
        IDLE,
        StreamSpec::new().in_capacity(0).out_capacity(1),
        move |ctx: StreamContext, _i: StreamInput, _o: StreamOutput| {
            let t = tx.clone();
            async move {
                ctx.cancel.cancelled().await;
                let name = String::from_utf8_lossy(&ctx.payload.unwrap_or_default()).into_owned();
                let _ = t.send((name, Instant::now()));
                Ok(())
            }
        },
    )
    .unwrap();
    net.attach(&m);
    Node {
        net,
        m,
        host,
        fake,
        events,
    }
}

/// Opens a stream from the node to the raw peer, which acknowledges it; returns the call,
/// its mux ID and when it was acknowledged.
async fn open_to_raw(n: &Node, d: &mut Driver) -> (nodegrid::StreamCall, u64, Instant) {
    let conn = n.m.connection(&n.fake).unwrap();
    conn.wait_connected(SECS(5)).await.unwrap();
    let s = conn
        .open_stream(REMOTE, None, StreamOptions::new().capacities(0, 1))
        .await
        .unwrap();
    let (cm, _) = d.next(Op::ConnectMux, SECS(5)).await;
    assert_eq!((cm.seq, cm.handler), (0, REMOTE));
    d.send(Message::new(Op::AckMux, cm.mux_id));
    (s, cm.mux_id, Instant::now())
}

#[tokio::test(start_paused = true)]
async fn a_caller_stream_fails_when_the_callee_never_answers_its_pings() {
    let n = node().await;
    let mut d = Driver::connect(&n.net, &n.fake, &n.host, "live", StreamPongs::Never).await;
    let (mut s, mux, t0) = open_to_raw(&n, &mut d).await;
    let e = tokio::time::timeout(SECS(120), s.recv())
        .await
        .expect("a caller stream without pongs must fail within 120 s")
        .expect("an error, not a clean end")
        .unwrap_err();
    let waited = t0.elapsed();
    assert_eq!(e, Error::Disconnected);
    // 30 s without anything received, checked every 15 s (the stream ping interval).
    assert!(
        waited > SECS(30) && waited <= SECS(61),
        "failed after {waited:?}"
    );
    // Meanwhile it pinged the stream, numbered after the ConnectMux, then cancelled it.
    let (dc, before) = d.next(Op::DisconnectServerMux, SECS(5)).await;
    let pings: Vec<u32> = before
        .iter()
        .filter(|m| m.op == Op::Ping && m.mux_id == mux)
        .map(|m| m.seq)
        .collect();
    assert!(pings.len() >= 2, "stream pings sent: {pings:?}");
    assert_eq!(pings, (1..=pings.len() as u32).collect::<Vec<_>>());
    assert_eq!((dc.mux_id, dc.seq), (mux, pings.len() as u32 + 1));
    // Only the stream ended: the connection stayed up and holds no mux.
    let conn = n.m.connection(&n.fake).unwrap();
    assert!(conn.state().is_connected());
    assert_eq!(conn.stats().connects, 1);
    assert_eq!(conn.mux_counts(), nodegrid::MuxCounts::default());
    n.m.shutdown();
}

#[tokio::test(start_paused = true)]
async fn a_pong_saying_not_found_terminates_the_caller_stream() {
    for (mode, want) in [
        (StreamPongs::NotFound, Error::RemoteTerminated),
        (
            StreamPongs::Error,
            Error::Remote(RemoteError::new("stream lost in a test")),
        ),
    ] {
        let n = node().await;
        let mut d = Driver::connect(&n.net, &n.fake, &n.host, "live", mode).await;
        let (mut s, mux, t0) = open_to_raw(&n, &mut d).await;
        let e = tokio::time::timeout(SECS(60), s.recv())
            .await
            .expect("the first stream pong ends the stream")
            .expect("an error, not a clean end")
            .unwrap_err();
        assert_eq!(e, want);
        assert_eq!(e.to_string(), want.to_string());
        // At the first stream ping (every 15 s).
        assert!(t0.elapsed() <= SECS(16), "after {:?}", t0.elapsed());
        let (ping, _) = d.next(Op::Ping, SECS(1)).await;
        assert_eq!((ping.mux_id, ping.seq), (mux, 1));
        let conn = n.m.connection(&n.fake).unwrap();
        assert_eq!(conn.mux_counts(), nodegrid::MuxCounts::default());
        assert!(conn.state().is_connected());
        n.m.shutdown();
    }
}

/// A ConnectMux for the IDLE handler with `name` as payload (no input: EOF set).
fn connect_mux(mux: u64, name: &str) -> Message {
    let mut m = Message::new(Op::ConnectMux, mux);
    m.handler = IDLE;
    m.flags = Flags::EOF;
    m.set_payload(Some(Bytes::copy_from_slice(name.as_bytes())));
    m
}

#[tokio::test(start_paused = true)]
async fn a_callee_stream_without_pings_is_cancelled_after_60_s() {
    let mut n = node().await;
    let mut d = Driver::connect(&n.net, &n.fake, &n.host, "live", StreamPongs::Never).await;
    let conn = n.m.connection(&n.fake).unwrap();
    // Stream "silent" is never pinged; stream "pinged" is pinged every 10 s.
    d.send(connect_mux(1, "silent"));
    d.send(connect_mux(2, "pinged"));
    for mux in [1, 2] {
        let (ack, _) = d.next(Op::AckMux, SECS(5)).await;
        assert_eq!((ack.mux_id, ack.seq), (mux, 0));
    }
    let t0 = Instant::now();
    let mut tick = tokio::time::interval_at(t0 + SECS(10), SECS(10));
    let mut seq = 1;
    let (name, at) = loop {
        tokio::select! {
            _ = tick.tick() => {
                assert!(
                    t0.elapsed() < SECS(120),
                    "a callee stream without pings must be cancelled within 120 s"
                );
                let mut ping = Message::new(Op::Ping, 2);
                ping.seq = seq;
                seq += 1;
                d.send(ping);
            }
            ev = n.events.recv() => break ev.expect("handler events"),
        }
    };
    assert_eq!(name, "silent");
    let waited = at - t0;
    // 60 s without a ping, checked every 15 s.
    assert!(
        waited > SECS(60) && waited <= SECS(76),
        "cancelled after {waited:?}"
    );
    // The caller is told; the pinged stream was answered and still runs.
    let (dc, before) = d.next(Op::DisconnectClientMux, SECS(5)).await;
    assert_eq!(dc.mux_id, 1);
    let pongs = before
        .iter()
        .filter(|m| m.op == Op::Pong && m.mux_id == 2)
        .count();
    assert!(pongs >= 6, "pongs for the pinged stream: {pongs}");
    assert_eq!(conn.mux_counts().incoming_streams, 1);
    assert!(n.events.try_recv().is_err());
    // Cancelling it by hand ends it too, and nothing is left.
    let mut cancel = Message::new(Op::DisconnectServerMux, 2);
    cancel.seq = seq;
    d.send(cancel);
    let (name, _) = tokio::time::timeout(SECS(5), n.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(name, "pinged");
    common::wait_for("streams gone", SECS(5), || {
        conn.mux_counts() == nodegrid::MuxCounts::default()
    })
    .await;
    assert!(conn.state().is_connected());
    n.m.shutdown();
}

#[tokio::test(start_paused = true)]
async fn the_callee_enforces_a_single_requests_deadline_itself() {
    let mut n = node().await;
    let mut d = Driver::connect(&n.net, &n.fake, &n.host, "live", StreamPongs::Never).await;
    let conn = n.m.connection(&n.fake).unwrap();
    // A MinIO caller: a 100 ms deadline and no DisconnectServerMux when it gives up.
    let mut req = Message::new(Op::Request, 7);
    req.handler = BLOCK;
    req.deadline_ms = 100;
    req.flags = Flags::CRC | Flags::EOF;
    req.set_payload(Some(Bytes::from_static(b"minio-call")));
    let t0 = Instant::now();
    d.send(req);
    let (resp, skipped) = d.next(Op::Response, SECS(10)).await;
    let waited = t0.elapsed();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(resp.mux_id, 7);
    assert!(
        resp.flags.contains(Flags::ERR | Flags::EOF),
        "{:?}",
        resp.flags
    );
    assert_eq!(&resp.payload[..], b"context deadline exceeded");
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_millis(200),
        "answered after {waited:?}"
    );
    // The handler saw its token fire at the deadline.
    let (name, at) = tokio::time::timeout(SECS(5), n.events.recv())
        .await
        .expect("handler cancelled")
        .unwrap();
    assert_eq!(name, "minio-call");
    assert!(at - t0 >= Duration::from_millis(100) && at - t0 < Duration::from_millis(200));
    common::wait_for("request entry released", SECS(5), || {
        conn.mux_counts() == nodegrid::MuxCounts::default()
    })
    .await;
    // Its late result is never sent.
    let late = tokio::time::timeout(SECS(5), async {
        while let Some(m) = d.from_node.recv().await {
            if m.op == Op::Response {
                return m;
            }
        }
        std::future::pending().await
    })
    .await;
    assert!(late.is_err(), "a second response was sent: {late:?}");
    n.m.shutdown();
}
