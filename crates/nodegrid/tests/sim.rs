//! Simulated-network tests under tokio's paused clock: liveness bounds, blocked writes,
//! reconnects with a full queue, replaced sessions, stream pings and cancellation
//! combinations (PROTOCOL.md §11 items 6, 11, 14, 18, 19, 21, 22, 31). Virtual time makes the
//! 20–60 s protocol timers run in milliseconds, deterministically.

mod common;

use bytes::Bytes;
use common::rawpeer::{dialing_host_for, RawPeer};
use common::{wait_for, Cluster};
use nodegrid::auth::Auth;
use nodegrid::handler::Request;
use nodegrid::transport::MemoryNetwork;
use nodegrid::wire::GridTime;
use nodegrid::{
    ConnState, Error, GridConfig, Manager, RemoteError, StreamContext, StreamInput, StreamOptions,
    StreamOutput, StreamSpec,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const ECHO: u8 = 78;
const BLOCK: u8 = 21;
const SPAM: u8 = 60; // stream: sends forever until cancelled
const DEAF: u8 = 61; // stream: takes input, never reads it, waits for cancel
const IDLE: u8 = 62; // stream: does nothing until cancelled

#[derive(Default)]
struct Probe {
    cancelled: AtomicUsize,
}

fn setup(m: &Manager, probe: Arc<Probe>) {
    m.register_single(
        ECHO,
        |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
    )
    .unwrap();
    m.register_single(BLOCK, |r: Request| async move {
        r.cancel.cancelled().await;
        Ok::<_, RemoteError>(Bytes::new())
    })
    .unwrap();
    let p = probe.clone();
    m.register_stream(
        SPAM,
        StreamSpec::new().in_capacity(0).out_capacity(4),
        move |ctx: StreamContext, _i: StreamInput, o: StreamOutput| {
            let p = p.clone();
            async move {
                loop {
                    tokio::select! {
                        r = o.send(Bytes::from_static(b"spam")) => if r.is_err() { break },
                        _ = ctx.cancel.cancelled() => break,
                    }
                }
                p.cancelled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
    )
    .unwrap();
    for (id, spec) in [
        (DEAF, StreamSpec::new().in_capacity(2).out_capacity(1)),
        (IDLE, StreamSpec::new().in_capacity(0).out_capacity(1)),
    ] {
        let p = probe.clone();
        m.register_stream(
            id,
            spec,
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
    }
}

async fn mem_cluster(n: usize, cfg: GridConfig) -> (MemoryNetwork, Cluster, Arc<Probe>) {
    common::init_tracing();
    let net = MemoryNetwork::new();
    let probe = Arc::new(Probe::default());
    let hosts: Vec<String> = (0..n).map(|i| format!("http://node{i}:9000")).collect();
    let mut nodes = Vec::new();
    for h in &hosts {
        let m = Manager::builder(h.clone(), hosts.clone())
            .auth(Auth::shared_token("sim"))
            .config(cfg.clone())
            .dialer(net.dialer(h))
            .build()
            .unwrap();
        setup(&m, probe.clone());
        net.attach(&m);
        nodes.push(m);
    }
    for m in &nodes {
        m.wait_all_connected(Duration::from_secs(30)).await.unwrap();
    }
    (net, Cluster { nodes, hosts }, probe)
}

async fn wait_state(
    c: &nodegrid::Connection,
    pred: impl Fn(&ConnState) -> bool,
    limit: Duration,
) -> Duration {
    let t0 = Instant::now();
    let mut rx = c.watch_state();
    tokio::time::timeout(limit, rx.wait_for(|s| pred(s)))
        .await
        .unwrap_or_else(|_| panic!("state not reached within {limit:?}: {}", c.state()))
        .unwrap();
    t0.elapsed()
}

#[tokio::test(start_paused = true)]
async fn silent_peer_is_declared_dead_after_20_to_30_s() {
    let (net, c, _) = mem_cluster(2, GridConfig::default()).await;
    let a = c.conn(0, 1);
    // Node 0 stops receiving anything from node 1: no more pongs.
    net.hold(&c.hosts[1], &c.hosts[0], true);
    let took = wait_state(&a, |s| !s.is_connected(), Duration::from_secs(60)).await;
    assert!(
        took > Duration::from_secs(20) && took <= Duration::from_secs(31),
        "detected after {took:?}"
    );
    assert!(
        a.last_error().unwrap().contains("no pong"),
        "{:?}",
        a.last_error()
    );
    net.hold(&c.hosts[1], &c.hosts[0], false);
    a.wait_connected(Duration::from_secs(30)).await.unwrap();
    assert_eq!(&a.request(ECHO, "back").await.unwrap()[..], b"back");
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(start_paused = true)]
async fn peer_that_stops_reading_ends_the_session_within_the_write_timeout() {
    let (net, c, _) = mem_cluster(2, GridConfig::default()).await;
    let a = c.conn(0, 1);
    net.hold(&c.hosts[0], &c.hosts[1], true);
    let a2 = a.clone();
    let big = tokio::spawn(async move { a2.request(ECHO, Bytes::from(vec![1u8; 4 << 20])).await });
    let took = wait_state(&a, |s| !s.is_connected(), Duration::from_secs(60)).await;
    // A blocked write ends the session in about 4 s, well before the 20 s pong timeout.
    assert!(
        took <= Duration::from_secs(6),
        "blocked write detected after {took:?}"
    );
    assert!(
        a.last_error().unwrap().contains("write blocked"),
        "{:?}",
        a.last_error()
    );
    assert_eq!(big.await.unwrap().unwrap_err(), Error::Disconnected);
    net.hold(&c.hosts[0], &c.hosts[1], false);
    a.wait_connected(Duration::from_secs(60)).await.unwrap();
    c.conn(1, 0)
        .wait_connected(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(&a.request(ECHO, "ok").await.unwrap()[..], b"ok");
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(start_paused = true)]
async fn reconnect_while_the_outbound_queue_is_full() {
    let mut cfg = GridConfig::default();
    cfg.outbound_queue = 8;
    let (net, c, _) = mem_cluster(2, cfg).await;
    let a = c.conn(0, 1);
    net.hold(&c.hosts[0], &c.hosts[1], true);
    let mut calls = Vec::new();
    for _ in 0..200 {
        let a = a.clone();
        calls.push(tokio::spawn(async move {
            a.request(ECHO, Bytes::from(vec![7u8; 8 * 1024])).await
        }));
    }
    // Let the pipe and the queue fill, then kill the session: every blocked caller is
    // released at once with `remote disconnected` (§11 items 14, 22, 29a).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.stats().outbound_queue >= 1, "{:?}", a.stats());
    a.kill_session();
    let t0 = Instant::now();
    let mut disconnected = 0;
    for call in calls {
        if call.await.unwrap().unwrap_err() == Error::Disconnected {
            disconnected += 1;
        }
    }
    assert_eq!(disconnected, 200);
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "callers released after {:?}",
        t0.elapsed()
    );
    net.hold(&c.hosts[0], &c.hosts[1], false);
    a.wait_connected(Duration::from_secs(60)).await.unwrap();
    c.conn(1, 0)
        .wait_connected(Duration::from_secs(60))
        .await
        .unwrap();
    for i in 0..20 {
        assert_eq!(
            a.request(ECHO, format!("{i}")).await.unwrap(),
            Bytes::from(format!("{i}"))
        );
    }
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(start_paused = true)]
async fn a_new_incoming_session_replaces_the_old_one() {
    common::init_tracing();
    let net = MemoryNetwork::new();
    let node = "http://node0:9000".to_string();
    let fake = dialing_host_for(&node, &[]);
    let hosts = vec![node.clone(), fake.clone()];
    let m = Manager::builder(node.clone(), hosts)
        .auth(Auth::shared_token("sim"))
        .dialer(net.dialer(&node))
        .build()
        .unwrap();
    net.attach(&m);
    let conn = m.connection(&fake).unwrap();
    let mut rx = conn.watch_state();
    let mut peers = Vec::new();
    for round in 1..=2u64 {
        let io = net.connect_raw(&fake, &node).unwrap();
        let (mut p, code) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", "sim").await;
        assert_eq!(code, 101);
        let r = p.handshake(&fake, "sim", GridTime::now()).await;
        assert!(r.accepted, "{}", r.rejected_reason);
        // "wait for connect" observers wake up on every new session.
        tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| s.is_connected()))
            .await
            .unwrap()
            .unwrap();
        wait_for("connects counted", Duration::from_secs(5), || {
            conn.stats().connects == round
        })
        .await;
        peers.push(p);
    }
    assert_eq!(conn.stats().reconnects, 1);
    // The first session was torn down: its socket is closed by the node.
    let first = &mut peers[0];
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while first.recv_frame().await.is_some() {}
    })
    .await;
    assert!(end.is_ok(), "old session must be closed");
    assert!(conn.state().is_connected());
    m.shutdown();
}

#[tokio::test(start_paused = true)]
async fn stream_pings_keep_busy_streams_alive() {
    let (_net, c, probe) = mem_cluster(2, GridConfig::default()).await;
    let a = c.conn(0, 1);
    // Output congested (nobody reads) and input congested (handler never reads).
    let out = a
        .open_stream(SPAM, None, StreamOptions::new())
        .await
        .unwrap();
    let inp = a
        .open_stream(DEAF, None, StreamOptions::new())
        .await
        .unwrap();
    inp.send(Bytes::from_static(b"1")).await.unwrap();
    inp.send(Bytes::from_static(b"2")).await.unwrap();
    let idle = a
        .open_stream(IDLE, None, StreamOptions::new())
        .await
        .unwrap();
    // Five virtual minutes: far beyond the 30 s caller and 60 s callee idle limits.
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(
        probe.cancelled.load(Ordering::SeqCst),
        0,
        "no stream may time out while pinging"
    );
    assert_eq!(c.conn(1, 0).mux_counts().incoming_streams, 3);
    assert!(a.stats().connects == 1, "the connection stayed up");
    drop((out, inp, idle));
    wait_for("handlers cancelled", Duration::from_secs(10), || {
        probe.cancelled.load(Ordering::SeqCst) == 3
    })
    .await;
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(start_paused = true)]
async fn streams_fail_on_both_sides_when_the_peer_stops_processing() {
    for two_way in [false, true] {
        let (net, c, probe) = mem_cluster(2, GridConfig::default()).await;
        let a = c.conn(0, 1);
        let mut s = if two_way {
            a.open_stream(DEAF, None, StreamOptions::new())
                .await
                .unwrap()
        } else {
            a.open_stream(IDLE, None, StreamOptions::new())
                .await
                .unwrap()
        };
        wait_for("open", Duration::from_secs(5), || {
            c.conn(1, 0).mux_counts().incoming_streams == 1
        })
        .await;
        net.hold(&c.hosts[0], &c.hosts[1], true);
        let t0 = Instant::now();
        let e = tokio::time::timeout(Duration::from_secs(90), s.recv())
            .await
            .expect("caller fails")
            .unwrap()
            .unwrap_err();
        assert_eq!(e, Error::Disconnected);
        wait_for("callee cancelled", Duration::from_secs(90), || {
            probe.cancelled.load(Ordering::SeqCst) == 1
        })
        .await;
        assert!(
            t0.elapsed() <= Duration::from_secs(61),
            "both sides failed after {:?}",
            t0.elapsed()
        );
        net.hold(&c.hosts[0], &c.hosts[1], false);
        c.shutdown();
    }
}

#[tokio::test(start_paused = true)]
async fn cancel_blocked_input_blocked_output_deadline_grid() {
    let (_net, c, probe) = mem_cluster(2, GridConfig::default()).await;
    let a = c.conn(0, 1);
    let mut expected = 0;
    for use_deadline in [false, true] {
        for blocked_in in [false, true] {
            for blocked_out in [false, true] {
                let (handler, opts) = match (blocked_in, blocked_out) {
                    (_, true) => (SPAM, StreamOptions::new()),
                    (true, false) => (DEAF, StreamOptions::new()),
                    (false, false) => (IDLE, StreamOptions::new()),
                };
                let opts = if use_deadline {
                    opts.timeout(Duration::from_secs(20))
                } else {
                    opts
                };
                let mut s = a.open_stream(handler, None, opts).await.unwrap();
                if blocked_in && handler == SPAM {
                    assert_eq!(s.send(Bytes::new()).await.unwrap_err(), Error::NoInput);
                }
                if blocked_in && handler == DEAF {
                    s.send(Bytes::from_static(b"1")).await.unwrap();
                    s.send(Bytes::from_static(b"2")).await.unwrap();
                }
                // Let output pile up (blocked_out) and pings run for a while.
                tokio::time::sleep(Duration::from_secs(16)).await;
                let want = if use_deadline {
                    // Past the 20 s deadline (virtual time only advances while nothing runs,
                    // so do not read a spamming stream while waiting for it).
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Error::DeadlineExceeded
                } else {
                    s.cancel();
                    Error::Cancelled
                };
                // Buffered output (at most the capacity) may come first; then the error.
                let mut got = None;
                for _ in 0..100 {
                    match tokio::time::timeout(Duration::from_secs(30), s.recv())
                        .await
                        .expect("stream ends")
                    {
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => {
                            got = Some(e);
                            break;
                        }
                        None => panic!("clean end instead of an error"),
                    }
                }
                let got = got.expect("an error within 100 items");
                assert_eq!(
                    got, want,
                    "deadline={use_deadline} in={blocked_in} out={blocked_out}"
                );
                expected += 1;
                wait_for("handler cancelled", Duration::from_secs(30), || {
                    probe.cancelled.load(Ordering::SeqCst) == expected
                })
                .await;
                c.assert_no_muxes().await;
            }
        }
    }
    assert_eq!(expected, 8);
    c.shutdown();
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_stream_never_kills_the_peers_call_with_the_same_mux_id() {
    let (_net, c, probe) = mem_cluster(2, GridConfig::default()).await;
    let (a, b) = (c.conn(0, 1), c.conn(1, 0));
    let same = 0x8000_1234u64;
    // B's own stream to A, with mux number `same`.
    b.set_next_mux_id(same);
    let mut b_stream = b
        .open_stream(DEAF, None, StreamOptions::new())
        .await
        .unwrap();
    // A's stream to B with the same number and output in flight, cancelled mid-flow: B keeps
    // sending items for a mux A no longer knows.
    for round in 0..20 {
        a.set_next_mux_id(same);
        let mut s = a
            .open_stream(SPAM, None, StreamOptions::new())
            .await
            .unwrap();
        for _ in 0..3 {
            s.recv().await.unwrap().unwrap();
        }
        s.cancel();
        wait_for("spam handler cancelled", Duration::from_secs(10), || {
            probe.cancelled.load(Ordering::SeqCst) == round + 1
        })
        .await;
    }
    // B's unrelated stream is alive: it still takes input and was never failed.
    b_stream.send(Bytes::from_static(b"x")).await.unwrap();
    let still = tokio::time::timeout(Duration::from_millis(100), b_stream.recv()).await;
    assert!(
        still.is_err(),
        "B's stream must still be open (no item, no error): {still:?}"
    );
    assert_eq!(
        a.mux_counts().incoming_streams,
        1,
        "B's stream still registered on A"
    );
    drop(b_stream);
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(start_paused = true)]
async fn long_deadlines_expire_through_the_session_sweep() {
    let (_net, c, _) = mem_cluster(2, GridConfig::default()).await;
    let a = c.conn(0, 1);
    let t0 = Instant::now();
    let e = a
        .call(
            BLOCK,
            None,
            nodegrid::CallOptions::new().timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert_eq!(e, Error::DeadlineExceeded);
    assert!(
        took >= Duration::from_secs(5) && took <= Duration::from_millis(5_200),
        "expired after {took:?}"
    );
    // The sweep also told the callee, whose handler was cancelled and forgotten.
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(start_paused = true)]
async fn single_requests_default_to_a_60_s_deadline() {
    let (_net, c, _) = mem_cluster(2, GridConfig::default()).await;
    let a = c.conn(0, 1);
    let t0 = Instant::now();
    assert_eq!(
        a.request(BLOCK, "x").await.unwrap_err(),
        Error::DeadlineExceeded
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(60) && took <= Duration::from_millis(60_200),
        "{took:?}"
    );
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(start_paused = true)]
async fn pings_and_pongs_without_payload_are_accepted() {
    let common::MemoryNode {
        net,
        m,
        host: node,
        fake,
        ..
    } = common::memory_node("sim");
    net.attach(&m);
    let io = net.connect_raw(&fake, &node).unwrap();
    let (mut p, _) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", "sim").await;
    assert!(p.handshake(&fake, "sim", GridTime::now()).await.accepted);
    // A ping without payload is answered with the zero time (§4.3, §11 item 23).
    let mut ping = nodegrid::wire::Message::new(nodegrid::wire::Op::Ping, 0);
    ping.deadline_ms = 10_000;
    p.send(&ping).await;
    let pong = p.recv_op(nodegrid::wire::Op::Pong).await.unwrap();
    let pl = nodegrid::wire::PongPayload::decode(&pong.payload).unwrap();
    assert!(pl.t.is_zero() && !pl.not_found && pl.err.is_none());
    assert_eq!(
        (pong.deadline_ms, pong.mux_id),
        (10_000, 0),
        "tuple fields copied from the ping"
    );
    // With a timestamp, it is copied back.
    let t = GridTime {
        secs: 1_700_000_000,
        nanos: 5,
    };
    ping.payload = nodegrid::wire::PingPayload { t }.encode();
    p.send(&ping).await;
    let pong = p.recv_op(nodegrid::wire::Op::Pong).await.unwrap();
    assert_eq!(
        nodegrid::wire::PongPayload::decode(&pong.payload)
            .unwrap()
            .t,
        t
    );
    // The node's own ping, answered by a pong without payload, still counts as alive.
    let conn = m.connection(&fake).unwrap();
    for _ in 0..4 {
        let their_ping = p.recv_op(nodegrid::wire::Op::Ping).await.unwrap();
        let mut reply = their_ping.clone();
        reply.op = nodegrid::wire::Op::Pong;
        reply.payload = bytes::Bytes::new();
        p.send(&reply).await;
    }
    assert!(
        conn.state().is_connected(),
        "40 s of payload-less pongs keep the session alive"
    );
    assert!(conn.stats().last_pong_unix_ms > 0);
    m.shutdown();
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_hangs_up_before_connect_gets_nothing() {
    let common::MemoryNode {
        net,
        m,
        host: node,
        fake,
        ..
    } = common::memory_node("sim");
    net.attach(&m);
    let io = net.connect_raw(&fake, &node).unwrap();
    let (mut p, code) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", "sim").await;
    assert_eq!(code, 101);
    use tokio::io::AsyncWriteExt;
    p.io.shutdown().await.unwrap();
    // No rejection is written (§11 item 30): the next read is the end of the stream.
    assert!(p.recv_frame().await.is_none());
    assert_eq!(m.connection(&fake).unwrap().stats().handshake_failures, 0);
    m.shutdown();
}

#[tokio::test(start_paused = true)]
async fn a_stream_deadline_also_bounds_waiting_for_queue_space() {
    // Found by the turmoil simulation (tests/turmoil_sim.rs): opening a stream waits for space
    // in a full outbound queue, and its deadline must bound that wait too, as it does for
    // single requests (§8: a caller gives up when its context ends).
    let mut cfg = GridConfig::default();
    cfg.outbound_queue = 1;
    let (net, c, _) = mem_cluster(2, cfg).await;
    let a = c.conn(0, 1);
    // Node 1 stops reading: the writer blocks on a full pipe and the queue fills up.
    net.hold(&c.hosts[0], &c.hosts[1], true);
    let mut calls = Vec::new();
    for _ in 0..16 {
        let a = a.clone();
        calls.push(tokio::spawn(async move {
            a.request(ECHO, Bytes::from(vec![3u8; 64 * 1024])).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.stats().outbound_queue, 1, "{:?}", a.stats());
    let t0 = Instant::now();
    let r = a
        .open_stream(
            IDLE,
            None,
            StreamOptions::new().timeout(Duration::from_secs(1)),
        )
        .await;
    let took = t0.elapsed();
    assert_eq!(r.unwrap_err(), Error::DeadlineExceeded, "after {took:?}");
    assert!(
        took <= Duration::from_millis(1_050),
        "gave up after {took:?}"
    );
    // The blocked write then ends the session; every request fails.
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap_err(), Error::Disconnected);
    }
    net.hold(&c.hosts[0], &c.hosts[1], false);
    a.wait_connected(Duration::from_secs(60)).await.unwrap();
    c.conn(1, 0)
        .wait_connected(Duration::from_secs(60))
        .await
        .unwrap();
    c.assert_no_muxes().await;
    c.shutdown();
}

#[tokio::test(start_paused = true)]
async fn a_finished_stream_handler_waiting_for_a_credit_ends_with_its_session() {
    // Found by the turmoil simulation: a stream handler that returned while the caller had no
    // credit left waits for one more credit before its final message; when the session ended
    // meanwhile, that wait was never woken and the handler's task (holding the dead session)
    // stayed forever.
    const ONE: u8 = 63;
    let (_net, c, _) = mem_cluster(2, GridConfig::default()).await;
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    c.nodes[1]
        .register_stream(
            ONE,
            StreamSpec::new().in_capacity(0).out_capacity(1),
            move |_ctx: StreamContext, _i: StreamInput, o: StreamOutput| {
                let d = d.clone();
                async move {
                    o.send(Bytes::from_static(b"only")).await.ok();
                    d.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            },
        )
        .unwrap();
    let a = c.conn(0, 1);
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let before = tasks();
    // The caller never reads: the handler's one item uses the only credit.
    let s = a
        .open_stream(ONE, None, StreamOptions::new().capacities(0, 1))
        .await
        .unwrap();
    wait_for("handler returned", Duration::from_secs(5), || {
        done.load(Ordering::SeqCst) == 1
    })
    .await;
    c.conn(1, 0).kill_session();
    drop(s);
    a.wait_connected(Duration::from_secs(30)).await.unwrap();
    c.conn(1, 0)
        .wait_connected(Duration::from_secs(30))
        .await
        .unwrap();
    c.assert_no_muxes().await;
    // Same sessions and dial loops as before, nothing else.
    wait_for("no task left behind", Duration::from_secs(10), || {
        tasks() == before
    })
    .await;
    c.shutdown();
}
