//! The session's timers (`session/timers.rs`) and connection keepalive (`session/keepalive.rs`)
//! at their exact instants, against a raw peer under tokio's paused clock with the production
//! values: connection pings every 10 s and not more often, the session ended at the first ping
//! check more than 20 s after the last pong, stream pings every 15 s, what a pong records, and
//! the deadlines of single requests (`session/single.rs`): exact timers for short ones, the
//! 100 ms sweep for long ones, none for a Request without a deadline.
//!
//! The other suites check that these timers fire within a window; these pin the cadence down
//! (a ping sent on every 100 ms sweep tick, or a first check at the session's start, passes a
//! window but not these).

mod common;

use bytes::Bytes;
use common::driver::{Driver, StreamPongs};
use common::rawpeer::RawPeer;
use nodegrid::handler::Request;
use nodegrid::wire::{Flags, GridTime, Message, Op, PingPayload, PongPayload};
use nodegrid::{CallOptions, RemoteError, StreamOptions};
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::time::Instant;

/// A handler the raw peer plays the callee of (not registered on the node).
const REMOTE: u8 = 90;
/// Single handler: sleeps 5 s (ignoring its token), then answers "slept".
const SLEEP: u8 = 22;

const SECS: fn(u64) -> Duration = Duration::from_secs;

type Node = common::MemoryNode;

fn node() -> Node {
    let n = common::memory_node("timers");
    n.m.register_single(SLEEP, |_r: Request| async {
        tokio::time::sleep(SECS(5)).await;
        Ok::<_, RemoteError>(Bytes::from_static(b"slept"))
    })
    .unwrap();
    n.net.attach(&n.m);
    n
}

/// A raw peer connected to the node, handshake done; returns it and the session's start.
async fn raw_peer(n: &Node) -> (RawPeer<DuplexStream>, Instant) {
    let io = n.net.connect_raw(&n.fake, &n.host).unwrap();
    let (mut p, code) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", n.token).await;
    assert_eq!(code, 101);
    let r = p.handshake(&n.fake, n.token, GridTime::now()).await;
    assert!(r.accepted, "{}", r.rejected_reason);
    (p, Instant::now())
}

fn wall_ms() -> u64 {
    (GridTime::now().unix_nanos() / 1_000_000) as u64
}

/// The raw peer as a [`Driver`] (stream pings unanswered), the session's start, and the
/// node's connection to it, connected.
async fn driver(n: &Node) -> (Driver, Instant, nodegrid::Connection) {
    let d = n.driver(StreamPongs::Never).await;
    let t0 = Instant::now();
    let conn = n.m.connection(&n.fake).unwrap();
    conn.wait_connected(SECS(5)).await.unwrap();
    (d, t0, conn)
}

/// `d` in milliseconds, for messages that compare instants.
fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[tokio::test(start_paused = true)]
async fn connection_pings_go_out_every_10_s_and_pongs_are_recorded() {
    let n = node();
    let (mut p, t0) = raw_peer(&n).await;
    let conn = n.m.connection(&n.fake).unwrap();
    assert_eq!(conn.stats().last_pong_unix_ms, 0);
    let mut at = Vec::new();
    let r = tokio::time::timeout(SECS(45), async {
        while let Some(m) = p.recv_msg().await {
            if m.op != Op::Ping {
                continue;
            }
            let wall = wall_ms();
            at.push(ms(t0.elapsed()));
            // The node's ping (§4.3): mux 0, a 10 s deadline, the send time as payload.
            assert_eq!((m.mux_id, m.seq, m.deadline_ms), (0, 0, 10_000));
            let t = PingPayload::decode(&m.payload).expect("ping payload").t;
            let sent_ms = (t.unix_nanos() / 1_000_000) as u64;
            assert!(
                sent_ms <= wall && wall - sent_ms < 5_000,
                "ping time {sent_ms} ms, now {wall} ms"
            );
            // Answered with its time: the node records when (wall clock, in ms).
            let mut pong = m.clone();
            pong.op = Op::Pong;
            pong.payload = PongPayload {
                t,
                ..Default::default()
            }
            .encode();
            let before = wall_ms();
            p.send(&pong).await;
            if at.len() == 1 {
                // The first pong: recorded (later ones may fall in the same wall-clock ms).
                common::wait_for("the pong recorded", SECS(1), || {
                    conn.stats().last_pong_unix_ms != 0
                })
                .await;
                let got = conn.stats().last_pong_unix_ms;
                assert!(
                    (before..=wall_ms()).contains(&got),
                    "last pong at {got} ms, sent at {before} ms"
                );
            }
        }
    })
    .await;
    assert!(r.is_err(), "the node closed the connection");
    // At 10, 20, 30 and 40 s after the session started (the sweep ticks every 100 ms from the
    // start; a ping is due on the tick at or after the interval), and at no other time.
    assert_eq!(at, vec![10_000, 20_000, 30_000, 40_000], "pings at (ms)");
    assert!(conn.state().is_connected());
    assert_eq!(conn.stats().connects, 1);
    n.m.shutdown();
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_never_answers_pings_is_dropped_at_30_s() {
    let n = node();
    let (mut p, t0) = raw_peer(&n).await;
    let conn = n.m.connection(&n.fake).unwrap();
    let mut pings = Vec::new();
    let closed = tokio::time::timeout(SECS(60), async {
        while let Some(m) = p.recv_msg().await {
            if m.op == Op::Ping {
                pings.push(ms(t0.elapsed()));
            }
        }
        t0.elapsed()
    })
    .await
    .expect("the node must drop a silent peer within 60 s");
    // Pinged at 10 s and at 20 s (20 s since the start is not more than the 20 s pong
    // timeout), dropped at the check at 30 s.
    assert_eq!(pings, vec![10_000, 20_000], "pings at (ms)");
    assert_eq!(ms(closed), 30_000, "dropped after {closed:?}");
    common::wait_for("the session ended", SECS(5), || {
        !conn.state().is_connected()
    })
    .await;
    assert_eq!(
        conn.last_error().as_deref(),
        Some("session ended: no pong from peer for 30s")
    );
    n.m.shutdown();
}

#[tokio::test(start_paused = true)]
async fn caller_streams_are_pinged_every_15_s_and_dropped_after_30_s_idle() {
    let n = node();
    let (mut d, t0, conn) = driver(&n).await;
    let mut s = conn
        .open_stream(REMOTE, None, StreamOptions::new().capacities(0, 1))
        .await
        .unwrap();
    let (cm, _) = d.next(Op::ConnectMux, SECS(5)).await;
    d.send(Message::new(Op::AckMux, cm.mux_id));
    assert_eq!(ms(t0.elapsed()), 0);
    // Everything the node sends on the stream, with when, until it gives up on it.
    let mut got = Vec::new();
    tokio::time::timeout(SECS(120), async {
        loop {
            let m = d.from_node.recv().await.expect("node closed the socket");
            got.push((m.op, m.seq, ms(t0.elapsed())));
            if m.op == Op::DisconnectServerMux {
                break;
            }
        }
    })
    .await
    .expect("the stream must be dropped within 120 s");
    // The stream check runs 15 s after the session's start and every 15 s after. The check
    // at 15 s sees the AckMux (progress), so the stream is idle from then: pings at 15, 30
    // and 45 s (30 s idle is not more than 30 s), dropped at 60 s.
    assert_eq!(
        got,
        vec![
            (Op::Ping, 1, 15_000),
            (Op::Ping, 2, 30_000),
            (Op::Ping, 3, 45_000),
            (Op::DisconnectServerMux, 4, 60_000)
        ]
    );
    let e = tokio::time::timeout(SECS(1), s.recv())
        .await
        .expect("the call ended")
        .expect("an error, not a clean end")
        .unwrap_err();
    assert_eq!(e, nodegrid::Error::Disconnected);
    assert!(conn.state().is_connected());
    n.m.shutdown();
}

// ---------------------------------------------------------------------------------------------
// Deadlines of single requests (`session/single.rs`): short ones by an exact timer, long ones
// by the session's 100 ms sweep; a Request without a deadline is never expired by the callee.

/// Calls the raw peer's REMOTE handler (which never answers) with `timeout`; returns the
/// result and when it came, after the session's start `t0`.
fn call_unanswered(
    conn: &nodegrid::Connection,
    timeout: Duration,
    t0: Instant,
) -> tokio::task::JoinHandle<(Result<Option<Bytes>, nodegrid::Error>, u128)> {
    let conn = conn.clone();
    tokio::spawn(async move {
        let r = conn
            .call(REMOTE, None, CallOptions::new().timeout(timeout))
            .await;
        (r, ms(t0.elapsed()))
    })
}

#[tokio::test(start_paused = true)]
async fn short_deadlines_expire_exactly_and_long_ones_on_the_next_sweep_tick() {
    let n = node();
    let (mut d, t0, conn) = driver(&n).await;
    // Off the sweep's 100 ms grid (it ticks every 100 ms from the session's start).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let short = call_unanswered(&conn, SECS(1), t0);
    let long = call_unanswered(&conn, SECS(3), t0);
    let mut reqs = Vec::new();
    for _ in 0..2 {
        let (m, _) = d.next(Op::Request, SECS(1)).await;
        reqs.push((m.mux_id, m.deadline_ms));
    }
    reqs.sort_by_key(|r| r.1);
    let (short_mux, long_mux) = (reqs[0].0, reqs[1].0);
    assert_eq!((reqs[0].1, reqs[1].1), (1_000, 3_000));
    // 1 s (at most 2 s): its own timer, at 50 + 1,000 ms.
    let (r, at) = tokio::time::timeout(SECS(10), short)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r, at), (Err(nodegrid::Error::DeadlineExceeded), 1_050));
    // 3 s: the sweep's tick at or after 3,050 ms, 3,100 ms.
    let (r, at) = tokio::time::timeout(SECS(10), long)
        .await
        .expect("a 3 s call must end within 10 s")
        .unwrap();
    assert_eq!((r, at), (Err(nodegrid::Error::DeadlineExceeded), 3_100));
    // Each one told the callee it gave up, in that order.
    let mut gave_up = Vec::new();
    for _ in 0..2 {
        let (m, _) = d.next(Op::DisconnectServerMux, SECS(1)).await;
        gave_up.push(m.mux_id);
    }
    assert_eq!(gave_up, vec![short_mux, long_mux]);
    assert_eq!(conn.mux_counts(), nodegrid::MuxCounts::default());
    assert!(conn.state().is_connected());
    n.m.shutdown();
}

#[tokio::test(start_paused = true)]
async fn a_request_without_a_deadline_runs_until_its_handler_answers() {
    let n = node();
    let mut d = n.driver(StreamPongs::Never).await;
    let t0 = Instant::now();
    for (mux, deadline_ms, want, at) in [
        // No deadline (0): answered after the handler's 5 s.
        (1, 0, &b"slept"[..], 5_000),
        // A 1 s deadline: the callee's own deadline answers first, once the handler (which
        // ignores its token) had its 1 s of grace: at 5 + 1 + 1 s.
        (2, 1_000, &b"context deadline exceeded"[..], 7_000),
    ] {
        let mut req = Message::new(Op::Request, mux);
        req.handler = SLEEP;
        req.deadline_ms = deadline_ms;
        req.flags = Flags::CRC | Flags::EOF;
        d.send(req);
        let (resp, skipped) = d.next(Op::Response, SECS(10)).await;
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(resp.mux_id, mux);
        assert_eq!(&resp.payload[..], want);
        assert_eq!(resp.flags.contains(Flags::ERR), mux == 2);
        assert_eq!(ms(t0.elapsed()), at);
    }
    n.m.shutdown();
}
