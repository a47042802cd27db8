//! PROTOCOL.md §11 scenarios 3, 6, 7, 8, 13, 20 and 23, and §12 items 5, 16 and 17, completed
//! where other suites covered them partly (issue 17). In-memory network under tokio's paused
//! clock; raw peers play the other side where a real node never would misbehave.

mod common;

use bytes::Bytes;
use common::driver::{Driver, StreamPongs};
use common::rawpeer::RawPeer;
use common::wait_for;
use nodegrid::auth::Auth;
use nodegrid::handler::Request;
use nodegrid::transport::MemoryNetwork;
use nodegrid::wire::{Flags, GridTime, Message, Op};
use nodegrid::{
    ConnState, Error, GridConfig, Manager, MuxCounts, RemoteError, StreamContext, StreamInput,
    StreamOptions, StreamOutput, StreamSpec,
};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;

const ECHO: u8 = 78;
/// Single: waits for its token, reports "single:<payload>".
const BLOCK: u8 = 21;
/// Stream without input: waits for its token, reports "stream:<payload>".
const IDLE: u8 = 62;
/// Stream with input capacity 1 that never reads its input; reports "deaf:<payload>".
const DEAF: u8 = 63;
/// Stream with input capacity 4 that reports each input item and how its input ended.
const READER: u8 = 64;
/// Stream without input that returns at once.
const DONE: u8 = 65;
/// Not registered on the node: the raw peer plays its callee.
const REMOTE: u8 = 90;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

struct Node {
    net: MemoryNetwork,
    m: Manager,
    host: String,
    fake: String,
    events: mpsc::UnboundedReceiver<String>,
}

fn payload_text(p: &Option<Bytes>) -> String {
    String::from_utf8_lossy(p.as_deref().unwrap_or_default()).into_owned()
}

fn register(m: &Manager, tx: mpsc::UnboundedSender<String>) {
    m.register_single(
        ECHO,
        |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
    )
    .unwrap();
    let t = tx.clone();
    m.register_single(BLOCK, move |r: Request| {
        let t = t.clone();
        async move {
            r.cancel.cancelled().await;
            let _ = t.send(format!("single:{}", payload_text(&r.payload)));
            Ok::<_, RemoteError>(Bytes::new())
        }
    })
    .unwrap();
    for (id, spec, tag) in [
        (
            IDLE,
            StreamSpec::new().in_capacity(0).out_capacity(1),
            "stream",
        ),
        (
            DEAF,
            StreamSpec::new().in_capacity(1).out_capacity(1),
            "deaf",
        ),
    ] {
        let t = tx.clone();
        m.register_stream(
            id,
            spec,
            move |ctx: StreamContext, _i: StreamInput, _o: StreamOutput| {
                let t = t.clone();
                async move {
                    ctx.cancel.cancelled().await;
                    let _ = t.send(format!("{tag}:{}", payload_text(&ctx.payload)));
                    Ok(())
                }
            },
        )
        .unwrap();
    }
    let t = tx.clone();
    m.register_stream(
        READER,
        StreamSpec::new().in_capacity(4).out_capacity(1),
        move |ctx: StreamContext, mut input: StreamInput, _o: StreamOutput| {
            let t = t.clone();
            async move {
                while let Some(b) = input.recv().await {
                    let _ = t.send(format!("item:{}", String::from_utf8_lossy(&b)));
                }
                let cancelled = ctx.cancel.is_cancelled();
                let _ = t.send(format!("input-end cancelled={cancelled}"));
                // Nothing sent after the end may reach the handler.
                let late = tokio::time::timeout(secs(5), input.recv()).await;
                let _ = t.send(format!("after-end:{late:?}"));
                Ok(())
            }
        },
    )
    .unwrap();
    m.register_stream(
        DONE,
        StreamSpec::new().in_capacity(0).out_capacity(1),
        |_c: StreamContext, _i: StreamInput, _o: StreamOutput| async move { Ok(()) },
    )
    .unwrap();
}

async fn node() -> Node {
    let common::MemoryNode {
        net, m, host, fake, ..
    } = common::memory_node("scn");
    let (tx, events) = mpsc::unbounded_channel();
    register(&m, tx);
    net.attach(&m);
    Node {
        net,
        m,
        host,
        fake,
        events,
    }
}

impl Node {
    async fn driver(&self) -> Driver {
        Driver::connect(&self.net, &self.fake, &self.host, "scn", StreamPongs::Never).await
    }

    fn conn(&self) -> nodegrid::Connection {
        self.m.connection(&self.fake).unwrap()
    }

    async fn event(&mut self) -> String {
        tokio::time::timeout(secs(10), self.events.recv())
            .await
            .expect("a handler event within 10 s")
            .unwrap()
    }

    /// The node still answers the peer on `d`.
    async fn still_serving(&self, d: &mut Driver, mux: u64) {
        let mut req = Message::new(Op::Request, mux);
        req.handler = ECHO;
        req.set_payload(Some(Bytes::from_static(b"alive")));
        d.send(req);
        let (resp, _) = d.next(Op::Response, secs(5)).await;
        assert_eq!((resp.mux_id, &resp.payload[..]), (mux, &b"alive"[..]));
    }
}

fn msg(op: Op, mux: u64, seq: u32) -> Message {
    let mut m = Message::new(op, mux);
    m.seq = seq;
    m
}

fn connect_mux(mux: u64, handler: u8, input: bool, name: &str) -> Message {
    let mut m = msg(Op::ConnectMux, mux, 0);
    m.handler = handler;
    if !input {
        m.flags = Flags::EOF;
    }
    m.set_payload(Some(Bytes::copy_from_slice(name.as_bytes())));
    m
}

fn item(mux: u64, seq: u32, text: &str) -> Message {
    let mut m = msg(Op::MuxClientMsg, mux, seq);
    m.set_payload(Some(Bytes::copy_from_slice(text.as_bytes())));
    m
}

// ---------------------------------------------------------------------------------------------
// §11 item 3: the dialer keeps retrying after an in-band rejection.

#[tokio::test(start_paused = true)]
async fn the_dialer_retries_after_an_in_band_rejection() {
    common::init_tracing();
    let net = MemoryNetwork::new();
    let a = "http://node0:9000".to_string();
    let b = (1..100)
        .map(|i| format!("http://node{i}:9000"))
        .find(|b| nodegrid::wire::should_dial(&a, b))
        .unwrap();
    let dialer = Manager::builder(a.clone(), vec![a.clone(), b.clone()])
        .auth(Auth::shared_token("scn"))
        .dialer(net.dialer(&a))
        .build()
        .unwrap();
    // The acceptor does not know the dialer yet: every Connect is refused in band.
    let stale = Manager::builder(b.clone(), vec![b.clone(), "http://node-x:1".to_string()])
        .auth(Auth::shared_token("scn"))
        .build()
        .unwrap();
    net.attach(&stale);
    let conn = dialer.connection(&b).unwrap();
    let reason = format!("unknown incoming host: {a}");
    wait_for("first in-band rejection", secs(5), || {
        conn.last_error().is_some_and(|e| e.contains(&reason))
    })
    .await;
    assert!(matches!(conn.state(), ConnState::Disconnected(r) if r.contains(&reason)));
    // Ten seconds of redials, each 1–2 s after the start of the failed one.
    let d0 = net.dials();
    tokio::time::sleep(secs(10)).await;
    let retries = net.dials() - d0;
    assert!((5..=10).contains(&retries), "{retries} redials in 10 s");
    assert_eq!(conn.stats().handshake_failures, net.dials());
    assert_eq!(conn.stats().connects, 0);
    // Once the acceptor knows the dialer, the next attempt connects.
    let fixed = Manager::builder(b.clone(), vec![a.clone(), b.clone()])
        .auth(Auth::shared_token("scn"))
        .dialer(net.dialer(&b))
        .build()
        .unwrap();
    net.attach(&fixed);
    conn.wait_connected(secs(3)).await.unwrap();
    assert_eq!(conn.stats().connects, 1);
    assert!(conn.last_error().is_none());
    dialer.shutdown();
    fixed.shutdown();
    stale.shutdown();
}

// ---------------------------------------------------------------------------------------------
// §11 item 6 and §12 item 5: a replacing session while calls are open on the old one; all of
// them end, and nothing queued for the old session reaches the new one.

#[tokio::test(start_paused = true)]
async fn a_replacing_session_ends_every_call_of_the_old_one() {
    let mut n = node().await;
    let conn = n.conn();
    // Peer 1 opens calls to the node, then stops reading.
    let io = n.net.connect_raw(&n.fake, &n.host).unwrap();
    let (mut p1, _) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", "scn").await;
    assert!(p1.handshake(&n.fake, "scn", GridTime::now()).await.accepted);
    for (mux, name) in [(1u64, "r1"), (2, "r2")] {
        let mut r = msg(Op::Request, mux, 0);
        r.handler = BLOCK;
        r.set_payload(Some(Bytes::copy_from_slice(name.as_bytes())));
        p1.send(&r).await;
    }
    p1.send(&connect_mux(3, IDLE, false, "s3")).await;
    conn.wait_connected(secs(5)).await.unwrap();
    // The node calls peer 1: large requests fill the pipe, the rest waits in the queue.
    let mut calls = Vec::new();
    for i in 0..6u8 {
        let c = conn.clone();
        calls.push(tokio::spawn(async move {
            c.request(REMOTE, Bytes::from(vec![i; 256 * 1024])).await
        }));
    }
    let stream = conn
        .open_stream(REMOTE, None, StreamOptions::new().capacities(0, 1))
        .await
        .unwrap();
    wait_for("calls open", secs(5), || {
        let m = conn.mux_counts();
        m.outgoing == 7 && m.incoming_singles == 2 && m.incoming_streams == 1
    })
    .await;
    // Most of them never left: peer 1 stopped reading after the first one filled its pipe.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        conn.stats().bytes_out < 2 * 256 * 1024,
        "{:?}",
        conn.stats()
    );
    // Peer 2 replaces peer 1.
    let mut d2 = n.driver().await;
    wait_for("second session", secs(5), || conn.stats().connects == 2).await;
    for c in calls {
        let r = tokio::time::timeout(secs(5), c).await.unwrap().unwrap();
        assert_eq!(r.unwrap_err(), Error::Disconnected);
    }
    let mut stream = stream;
    let e = tokio::time::timeout(secs(5), stream.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(e, Error::Disconnected);
    let mut ended: Vec<String> = Vec::new();
    for _ in 0..3 {
        ended.push(n.event().await);
    }
    ended.sort();
    assert_eq!(ended, ["single:r1", "single:r2", "stream:s3"]);
    wait_for("nothing left of the old session", secs(5), || {
        conn.mux_counts() == MuxCounts::default()
    })
    .await;
    // Peer 1's socket was closed by the node.
    let closed =
        tokio::time::timeout(secs(5), async { while p1.recv_frame().await.is_some() {} }).await;
    assert!(closed.is_ok(), "old session's socket still open");
    // Nothing queued for the old session reaches the new one (§12 item 5).
    let leaked: Vec<Message> = d2
        .collect_for(secs(2))
        .await
        .into_iter()
        .filter(|m| m.op != Op::Ping || m.mux_id != 0)
        .collect();
    assert!(
        leaked.is_empty(),
        "old messages on the new session: {leaked:?}"
    );
    // The new session works both ways.
    n.still_serving(&mut d2, 1).await;
    let c = conn.clone();
    let call = tokio::spawn(async move { c.request(REMOTE, "fresh").await });
    let (req, _) = d2.next(Op::Request, secs(5)).await;
    assert_eq!(&req.payload[..], b"fresh");
    let mut resp = msg(Op::Response, req.mux_id, 0);
    resp.flags = Flags::EOF;
    resp.set_payload(Some(Bytes::from_static(b"ok")));
    d2.send(resp);
    assert_eq!(&call.await.unwrap().unwrap()[..], b"ok");
    n.m.shutdown();
}

// ---------------------------------------------------------------------------------------------
// §11 item 7: byte and message counters, handshake included, equal on both ends.

#[tokio::test(start_paused = true)]
async fn message_counters_are_equal_on_both_ends() {
    counters_equal_on_both_ends(false).await;
}

#[tokio::test(start_paused = true)]
async fn byte_counters_are_equal_on_both_ends() {
    counters_equal_on_both_ends(true).await;
}

/// Message counters (and with `bytes`, byte counters) of each direction agree on both ends,
/// after the handshake, after calls and after pings.
async fn counters_equal_on_both_ends(bytes: bool) {
    common::init_tracing();
    let net = MemoryNetwork::new();
    let hosts: Vec<String> = (0..2).map(|i| format!("http://node{i}:9000")).collect();
    let mut nodes = Vec::new();
    for h in &hosts {
        let m = Manager::builder(h.clone(), hosts.clone())
            .auth(Auth::shared_token("scn"))
            .dialer(net.dialer(h))
            .build()
            .unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        register(&m, tx);
        net.attach(&m);
        nodes.push(m);
    }
    for m in &nodes {
        m.wait_all_connected(secs(10)).await.unwrap();
    }
    let ab = nodes[0].connection(&hosts[1]).unwrap();
    let ba = nodes[1].connection(&hosts[0]).unwrap();
    let check = |what: &str| {
        let (x, y) = (ab.stats(), ba.stats());
        assert_eq!(
            (x.messages_out, y.messages_out),
            (y.messages_in, x.messages_in),
            "{what}: messages a→b out vs b in, b→a out vs a in"
        );
        if bytes {
            assert_eq!(
                (x.bytes_out, y.bytes_out),
                (y.bytes_in, x.bytes_in),
                "{what}: bytes a→b out vs b in, b→a out vs a in"
            );
        }
    };
    // After the handshake alone: Connect one way, ConnectResponse the other.
    wait_for("handshake counted", secs(5), || {
        ab.stats().messages_in >= 1 && ba.stats().messages_in >= 1
    })
    .await;
    check("handshake");
    assert_eq!(ab.stats().messages_out + ba.stats().messages_out, 2);
    // Requests both ways, small and large, and a stream.
    let mut payload_bytes = 0;
    for size in [0usize, 1, 100, 4096, 70_000, 1 << 20] {
        let p = Bytes::from(vec![7u8; size]);
        payload_bytes += 2 * size as u64;
        assert_eq!(ab.request(ECHO, p.clone()).await.unwrap().len(), size);
        assert_eq!(ba.request(ECHO, p).await.unwrap().len(), size);
    }
    let mut s = ab
        .open_stream(READER, None, StreamOptions::new())
        .await
        .unwrap();
    for i in 0..5 {
        s.send(Bytes::from(format!("x{i}"))).await.unwrap();
    }
    s.close_send().await.unwrap();
    assert!(s.recv().await.is_none());
    wait_for("all counted", secs(5), || {
        let (x, y) = (ab.stats(), ba.stats());
        x.messages_out == y.messages_in && y.messages_out == x.messages_in
    })
    .await;
    check("after the calls");
    let (x, y) = (ab.stats(), ba.stats());
    assert!(x.bytes_out + y.bytes_out > 2 * payload_bytes);
    // 12 requests and 12 responses, 2 handshake messages, the stream's messages.
    assert!(x.messages_out + y.messages_out >= 26 + 2 + 5);
    // Connection pings and pongs are counted too.
    tokio::time::sleep(secs(25)).await;
    wait_for("pings counted", secs(5), || {
        let (x, y) = (ab.stats(), ba.stats());
        x.messages_out == y.messages_in && y.messages_out == x.messages_in
    })
    .await;
    check("after pings");
    assert!(ab.stats().messages_out > x.messages_out);
    for m in &nodes {
        m.shutdown();
    }
}

// ---------------------------------------------------------------------------------------------
// §11 item 8: a stream closed twice (EOF then disconnect; cancel racing with EOF), both roles.

/// Opens a stream from the node to the raw peer, which acknowledges it; returns once the node
/// has read the acknowledgement.
async fn open_to_raw(n: &Node, d: &mut Driver) -> (nodegrid::StreamCall, u64) {
    let conn = n.conn();
    let s = conn
        .open_stream(REMOTE, None, StreamOptions::new().capacities(0, 2))
        .await
        .unwrap();
    let (cm, _) = d.next(Op::ConnectMux, secs(5)).await;
    let read = conn.stats().messages_in;
    d.send(msg(Op::AckMux, cm.mux_id, 0));
    wait_for("ack read", secs(5), || conn.stats().messages_in == read + 1).await;
    (s, cm.mux_id)
}

fn server_item(mux: u64, seq: u32, text: &str) -> Message {
    let mut m = msg(Op::MuxServerMsg, mux, seq);
    m.set_payload(Some(Bytes::copy_from_slice(text.as_bytes())));
    m
}

fn server_eof(mux: u64, seq: u32) -> Message {
    let mut m = msg(Op::MuxServerMsg, mux, seq);
    m.flags = Flags::EOF;
    m
}

#[tokio::test(start_paused = true)]
async fn a_stream_closed_twice_as_caller() {
    let n = node().await;
    let mut d = n.driver().await;
    let conn = n.conn();

    // EOF, then the callee's disconnect: a clean end, nothing more sent for the stream.
    let (mut s, mux) = open_to_raw(&n, &mut d).await;
    d.send(server_item(mux, 1, "x"));
    d.send(server_eof(mux, 2));
    d.send(msg(Op::DisconnectClientMux, mux, 0));
    assert_eq!(s.recv().await.unwrap().unwrap(), "x");
    assert!(s.recv().await.is_none());
    let after: Vec<(Op, u64)> = d
        .collect_for(secs(1))
        .await
        .iter()
        .map(|m| (m.op, m.mux_id))
        .collect();
    // The stream had ended: no credit is returned for the last item.
    assert_eq!(after, []);
    // Cancelling the ended stream sends nothing either.
    s.cancel();
    drop(s);
    assert!(d.collect_for(secs(1)).await.is_empty());

    // Cancel first; the callee's EOF and disconnect cross it on the wire.
    let (s, mux) = open_to_raw(&n, &mut d).await;
    s.cancel();
    let (dc, _) = d.next(Op::DisconnectServerMux, secs(5)).await;
    assert_eq!(dc.mux_id, mux);
    d.send(server_item(mux, 1, "late"));
    d.send(server_eof(mux, 2));
    d.send(msg(Op::DisconnectClientMux, mux, 0));
    // The late item is refused with one DisconnectServerMux (the stream is unknown now); the
    // EOF and the disconnect are dropped.
    let after: Vec<(Op, u64)> = d
        .collect_for(secs(1))
        .await
        .iter()
        .map(|m| (m.op, m.mux_id))
        .collect();
    assert_eq!(after, [(Op::DisconnectServerMux, mux)]);
    drop(s);

    // EOF received but not consumed when the consumer cancels: the stream had ended, so the
    // cancel changes nothing (the item is delivered, then the end) and sends nothing.
    let (mut s, mux) = open_to_raw(&n, &mut d).await;
    d.send(server_item(mux, 1, "unread"));
    d.send(server_eof(mux, 2));
    wait_for("item buffered", secs(5), || s.max_buffered() == 1).await;
    s.cancel();
    assert_eq!(s.recv().await.unwrap().unwrap(), "unread");
    assert!(s.recv().await.is_none());
    assert!(d.collect_for(secs(1)).await.is_empty());
    drop(s);

    wait_for("no mux left", secs(5), || {
        conn.mux_counts() == MuxCounts::default()
    })
    .await;
    assert!(conn.state().is_connected());
    assert_eq!(conn.stats().connects, 1);
    n.still_serving(&mut d, 100).await;
    n.m.shutdown();
}

#[tokio::test(start_paused = true)]
async fn a_stream_closed_twice_as_callee() {
    let mut n = node().await;
    let mut d = n.driver().await;
    let conn = n.conn();

    // The handler ends (EOF sent), and the caller's cancel crosses it.
    d.send(connect_mux(1, DONE, false, "done"));
    d.send(msg(Op::DisconnectServerMux, 1, 1));
    // The caller's cancel of a stream that ended, sent twice.
    d.send(connect_mux(2, DONE, false, "done"));
    let got: Vec<(Op, u64, bool)> = d
        .collect_for(secs(1))
        .await
        .iter()
        .map(|m| (m.op, m.mux_id, m.flags.contains(Flags::EOF)))
        .collect();
    let ack = |mux| (Op::AckMux, mux, false);
    let eof = |mux| (Op::MuxServerMsg, mux, true);
    let gone = |mux| (Op::DisconnectClientMux, mux, false);
    // Stream 1: cancelled before its handler's end was sent (or just after: then the EOF
    // comes first); stream 2: a clean end.
    assert!(
        got == [ack(1), gone(1), ack(2), eof(2), gone(2)]
            || got == [ack(1), eof(1), gone(1), ack(2), eof(2), gone(2)],
        "{got:?}"
    );
    // Cancels of the ended stream 2 are dropped without a reply.
    d.send(msg(Op::DisconnectServerMux, 2, 1));
    d.send(msg(Op::DisconnectServerMux, 2, 2));
    assert!(d.collect_for(secs(1)).await.is_empty());

    // Input EOF, then the caller's cancel, then more input: the handler sees its input end
    // once, and nothing after the cancel.
    d.send(connect_mux(3, READER, true, "r"));
    d.send(item(3, 1, "a"));
    assert_eq!(n.event().await, "item:a");
    let mut eof = item(3, 2, "");
    eof.flags = Flags::EOF;
    eof.set_payload(None);
    d.send(eof);
    assert_eq!(n.event().await, "input-end cancelled=false");
    assert_eq!(n.event().await, "after-end:Ok(None)");
    d.send(msg(Op::DisconnectServerMux, 3, 3));
    d.send(item(3, 4, "after"));
    wait_for("no mux left", secs(5), || {
        conn.mux_counts() == MuxCounts::default()
    })
    .await;
    assert!(n.events.try_recv().is_err());
    assert!(conn.state().is_connected());
    n.still_serving(&mut d, 100).await;
    n.m.shutdown();
}

// ---------------------------------------------------------------------------------------------
// §11 item 13: a call that meets a closed session ends with `remote disconnected`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_racing_a_session_end_fail_with_remote_disconnected() {
    const ROUNDS: usize = 50;
    common::init_tracing();
    let net = MemoryNetwork::new();
    let hosts: Vec<String> = (0..2).map(|i| format!("http://node{i}:9000")).collect();
    let mut nodes = Vec::new();
    for h in &hosts {
        let mut cfg = GridConfig::default();
        cfg.redial_min = Duration::from_millis(10);
        cfg.redial_max = Duration::from_millis(20);
        let m = Manager::builder(h.clone(), hosts.clone())
            .auth(Auth::shared_token("scn"))
            .config(cfg)
            .dialer(net.dialer(h))
            .build()
            .unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        register(&m, tx);
        net.attach(&m);
        nodes.push(m);
    }
    let c = nodes[0].connection(&hosts[1]).unwrap();
    let mut disconnected = 0;
    for _round in 0..ROUNDS {
        c.wait_connected(secs(10)).await.unwrap();
        let mut calls = Vec::new();
        for i in 0..20u32 {
            let c = c.clone();
            calls.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    c.request(BLOCK, "x").await.map(|_| ())
                } else {
                    match c.open_stream(IDLE, None, StreamOptions::new()).await {
                        Ok(mut s) => match s.recv().await {
                            Some(Err(e)) => Err(e),
                            other => panic!("stream ended with {other:?}"),
                        },
                        Err(e) => Err(e),
                    }
                }
            }));
        }
        // The session ends while the calls start, from another worker thread; no new session
        // comes up until the round is over.
        net.set_reachable(&hosts[0], false);
        let k = c.clone();
        tokio::spawn(async move { k.kill_session() }).await.unwrap();
        for call in calls {
            let e = tokio::time::timeout(secs(10), call)
                .await
                .expect("no call hangs")
                .unwrap()
                .unwrap_err();
            assert_eq!(e, Error::Disconnected);
            assert_eq!(e.to_string(), "remote disconnected");
            assert!(e.is_disconnected());
            disconnected += 1;
        }
        net.set_reachable(&hosts[0], true);
    }
    assert_eq!(disconnected, 50 * 20);
    assert_eq!(
        c.stats().errors.disconnected,
        50 * 10,
        "single requests counted"
    );
    for m in &nodes {
        m.shutdown();
    }
}

// ---------------------------------------------------------------------------------------------
// §11 item 20: the callee checks the sequence before the capacity, and stops forwarding input
// once the stream is cancelled.

#[tokio::test(start_paused = true)]
async fn the_callee_checks_the_sequence_before_the_capacity() {
    let mut n = node().await;
    let mut d = n.driver().await;
    for (mux, seq, want) in [
        // Full (capacity 1, never read) and out of sequence: the sequence error wins.
        (
            1u64,
            3u32,
            "receive sequence number mismatch. want 2, got 3",
        ),
        // Full and in sequence: the capacity error.
        (2, 2, "handler blocked"),
    ] {
        d.send(connect_mux(mux, DEAF, true, &format!("m{mux}")));
        let (ack, _) = d.next(Op::AckMux, secs(5)).await;
        assert_eq!(ack.mux_id, mux);
        d.send(item(mux, 1, "fills the inbox"));
        d.send(item(mux, seq, "one too many"));
        let (err, _) = d.next(Op::MuxServerMsg, secs(5)).await;
        assert_eq!(err.mux_id, mux);
        assert!(
            err.flags.contains(Flags::ERR | Flags::EOF),
            "{:?}",
            err.flags
        );
        assert_eq!(String::from_utf8_lossy(&err.payload), want);
        let (dc, _) = d.next(Op::DisconnectClientMux, secs(5)).await;
        assert_eq!(dc.mux_id, mux);
        assert_eq!(n.event().await, format!("deaf:m{mux}"));
    }
    assert_eq!(n.conn().stats().protocol_errors, 2);
    n.m.shutdown();
}

#[tokio::test(start_paused = true)]
async fn input_forwarding_stops_when_the_stream_is_cancelled() {
    let mut n = node().await;
    let mut d = n.driver().await;
    d.send(connect_mux(1, READER, true, "r"));
    d.send(item(1, 1, "one"));
    assert_eq!(n.event().await, "item:one");
    d.send(msg(Op::DisconnectServerMux, 1, 2));
    assert_eq!(n.event().await, "input-end cancelled=true");
    // Items sent after the cancel are refused by the node, never handed to the handler.
    d.send(item(1, 3, "late"));
    let (dc, _) = d.next(Op::DisconnectClientMux, secs(5)).await;
    assert_eq!(dc.mux_id, 1);
    assert_eq!(n.event().await, "after-end:Ok(None)");
    assert!(n.events.try_recv().is_err());
    wait_for("no mux left", secs(5), || {
        n.conn().mux_counts() == MuxCounts::default()
    })
    .await;
    n.m.shutdown();
}

// ---------------------------------------------------------------------------------------------
// §11 item 23: the RTT metric, measured on connection pongs (no root, no traffic shaping).

#[tokio::test(start_paused = true)]
async fn the_rtt_metric_comes_from_pong_timestamps() {
    let n = node().await;
    let d = n.driver().await;
    let conn = n.conn();
    assert_eq!((conn.stats().last_rtt_us, conn.stats().max_rtt_us), (0, 0));
    // The peer answers as if each ping had left 250 ms (then 100 ms) before it did.
    for (shift_ms, last, max) in [(250u64, 250_000u64, 250_000u64), (100, 100_000, 250_000)] {
        d.pong_shift_ns
            .store(shift_ms as i64 * 1_000_000, Ordering::SeqCst);
        let pongs = conn.stats().last_pong_unix_ms;
        wait_for("a pong", secs(30), || {
            conn.stats().last_pong_unix_ms != pongs && conn.stats().last_rtt_us >= last
        })
        .await;
        let st = conn.stats();
        // The wall clock moved on a little while the pong was handled.
        assert!(
            (last..last + 500_000).contains(&st.last_rtt_us),
            "{shift_ms} ms: last {}",
            st.last_rtt_us
        );
        assert!((max..max + 500_000).contains(&st.max_rtt_us));
    }
    // A pong from the future (a peer's clock ahead) does not change the metric.
    let before = conn.stats();
    d.pong_shift_ns.store(-3_600_000_000_000, Ordering::SeqCst);
    wait_for("a pong", secs(30), || {
        conn.stats().last_pong_unix_ms != before.last_pong_unix_ms
    })
    .await;
    let st = conn.stats();
    assert_eq!(
        (st.last_rtt_us, st.max_rtt_us),
        (before.last_rtt_us, before.max_rtt_us)
    );
    n.m.shutdown();
}

// ---------------------------------------------------------------------------------------------
// §12 items 16 and 17: error fidelity, and duplicate ConnectMux / Request for a live mux.

#[tokio::test(start_paused = true)]
async fn duplicate_connect_mux_and_request_are_ignored_and_counted() {
    let mut n = node().await;
    let mut d = n.driver().await;
    let conn = n.conn();
    d.send(connect_mux(1, IDLE, false, "first"));
    d.send(connect_mux(1, IDLE, false, "second"));
    let mut r = msg(Op::Request, 2, 0);
    r.handler = BLOCK;
    r.set_payload(Some(Bytes::from_static(b"once")));
    d.send(r.clone());
    d.send(r);
    wait_for("both counted", secs(5), || {
        conn.stats().protocol_errors == 2
    })
    .await;
    let m = conn.mux_counts();
    assert_eq!((m.incoming_streams, m.incoming_singles), (1, 1));
    // One AckMux only.
    let acks = d
        .collect_for(secs(1))
        .await
        .iter()
        .filter(|m| m.op == Op::AckMux)
        .count();
    assert_eq!(acks, 1);
    // Each runs once: cancelling ends the one handler of each.
    d.send(msg(Op::DisconnectServerMux, 1, 1));
    d.send(msg(Op::DisconnectServerMux, 2, 0));
    let mut ended = vec![n.event().await, n.event().await];
    ended.sort();
    assert_eq!(ended, ["single:once", "stream:first"]);
    assert!(n.events.try_recv().is_err());
    n.m.shutdown();
}

#[test]
fn error_texts_are_the_references() {
    // The texts callers match on (§11 item 10, §12 item 16).
    for (e, text) in [
        (Error::Disconnected, "remote disconnected"),
        (Error::RemoteTerminated, "remote terminated call"),
        (Error::DeadlineExceeded, "context deadline exceeded"),
        (Error::Cancelled, "context canceled"),
        (
            Error::Remote(RemoteError::new("disk not found")),
            "disk not found",
        ),
    ] {
        assert_eq!(e.to_string(), text);
        assert_eq!(e.is_disconnected(), text == "remote disconnected");
    }
    assert_eq!(
        Error::Remote(RemoteError::new("x")).remote_text(),
        Some("x")
    );
    assert_eq!(Error::Disconnected.remote_text(), None);
}
