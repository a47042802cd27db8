//! Hostile input: every limit is hit, answers with its typed error, and the node keeps serving
//! other peers (issue 6, part 4). Runs on the in-memory network under tokio's paused clock.

mod common;

use bytes::Bytes;
use common::rawpeer::{dialing_host_for, RawPeer};
use nodegrid::auth::Auth;
use nodegrid::handler::Request;
use nodegrid::transport::MemoryNetwork;
use nodegrid::wire::{GridTime, Message, Op};
use nodegrid::{Error, GridConfig, Manager, RemoteError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const ECHO: u8 = 78;
const BLOCK: u8 = 21;

/// A node with a normal peer (`good`, a full nodegrid manager) and a host name `fake` that
/// tests impersonate by hand.
struct Setup {
    net: MemoryNetwork,
    node: Manager,
    good: Manager,
    node_host: String,
    fake: String,
}

async fn setup(cfg: GridConfig) -> Setup {
    common::init_tracing();
    let net = MemoryNetwork::new();
    let node_host = "http://node0:9000".to_string();
    let good_host = "http://node1:9000".to_string();
    let fake = dialing_host_for(&node_host, std::slice::from_ref(&good_host));
    let hosts = vec![node_host.clone(), good_host.clone(), fake.clone()];
    let mk = |h: &str, cfg: GridConfig| {
        Manager::builder(h, hosts.clone())
            .auth(Auth::shared_token("lim"))
            .config(cfg)
            .dialer(net.dialer(h))
            .build()
            .unwrap()
    };
    let node = mk(&node_host, cfg);
    node.register_single(
        ECHO,
        |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
    )
    .unwrap();
    node.register_single(BLOCK, |r: Request| async move {
        r.cancel.cancelled().await;
        Ok::<_, RemoteError>(Bytes::new())
    })
    .unwrap();
    let good = mk(&good_host, GridConfig::default());
    net.attach(&node);
    net.attach(&good);
    good.connection(&node_host)
        .unwrap()
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    Setup {
        net,
        node,
        good,
        node_host,
        fake,
    }
}

impl Setup {
    /// The node still answers its good peer.
    async fn still_serving(&self) {
        let c = self.good.connection(&self.node_host).unwrap();
        c.wait_connected(Duration::from_secs(30)).await.unwrap();
        assert_eq!(&c.request(ECHO, "alive").await.unwrap()[..], b"alive");
    }
}

async fn closed_within(io: &mut tokio::io::DuplexStream, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("socket not closed within {limit:?}"));
    t0.elapsed()
}

#[tokio::test(start_paused = true)]
async fn unfinished_handshakes_are_closed_after_10_s() {
    let s = setup(GridConfig::default()).await;
    // Sends nothing.
    let mut silent = s.net.connect_raw(&s.fake, &s.node_host).unwrap();
    // Half an HTTP request.
    let mut half = s.net.connect_raw(&s.fake, &s.node_host).unwrap();
    half.write_all(b"GET /minio/grid/v1 HTTP/1.1\r\nHost: node0")
        .await
        .unwrap();
    // Only the upgrade, never the grid Connect.
    let io = s.net.connect_raw(&s.fake, &s.node_host).unwrap();
    let (p, code) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", "lim").await;
    assert_eq!(code, 101);
    let mut upgraded = p.io;
    for (name, io) in [
        ("silent", &mut silent),
        ("half request", &mut half),
        ("upgrade only", &mut upgraded),
    ] {
        let took = closed_within(io, Duration::from_secs(15)).await;
        assert!(
            took <= Duration::from_millis(10_100),
            "{name}: closed after {took:?}"
        );
    }
    s.still_serving().await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_handshakes_are_bounded() {
    let mut cfg = GridConfig::default();
    cfg.max_pending_handshakes = 2;
    let s = setup(cfg).await;
    // Two upgraded sockets that never send Connect hold both handshake slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let io = s.net.connect_raw(&s.fake, &s.node_host).unwrap();
        let (p, code) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", "lim").await;
        assert_eq!(code, 101);
        held.push(p);
    }
    // A third upgrade is refused with 503 while they are pending.
    let io = s.net.connect_raw(&s.fake, &s.node_host).unwrap();
    let (_p, code) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", "lim").await;
    assert_eq!(code, 503);
    // Once they time out, handshakes are accepted again.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let io = s.net.connect_raw(&s.fake, &s.node_host).unwrap();
    let (mut p, code) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", "lim").await;
    assert_eq!(code, 101);
    assert!(p.handshake(&s.fake, "lim", GridTime::now()).await.accepted);
    s.still_serving().await;
}

#[tokio::test(start_paused = true)]
async fn oversized_messages_are_refused() {
    let mut cfg = GridConfig::default();
    cfg.max_message_size = 64 * 1024;
    let s = setup(cfg).await;
    // Locally: a payload over the limit never leaves the caller.
    let c = s.node.connection(s.good.local()).unwrap();
    let e = c
        .request(ECHO, Bytes::from(vec![0u8; 100 * 1024]))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 65536, .. }), "{e:?}");
    // From the network: an oversized request fails alone, answered with the size and the
    // limit; the session stays (issue 15).
    let io = s.net.connect_raw(&s.fake, &s.node_host).unwrap();
    let (mut p, _) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", "lim").await;
    assert!(p.handshake(&s.fake, "lim", GridTime::now()).await.accepted);
    let mut m = Message::new(Op::Request, 1);
    m.handler = ECHO;
    m.payload = Bytes::from(vec![1u8; 200 * 1024]);
    let size = m.encoded_len();
    p.send(&m).await;
    let e = tokio::time::timeout(Duration::from_secs(5), p.recv_op(Op::MuxConnectError))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.mux_id, 1);
    let text = nodegrid::wire::MuxConnectErrorPayload::decode(&e.payload)
        .unwrap()
        .error;
    assert_eq!(text, nodegrid::wire::too_large_text(size as u64, 65536));
    let fake_conn = s.node.connection(&s.fake).unwrap();
    assert!(fake_conn.state().is_connected());
    assert_eq!(fake_conn.stats().protocol_errors, 0);
    assert_eq!(fake_conn.stats().oversized_in, 1);
    // The same session still serves.
    let mut m = Message::new(Op::Request, 2);
    m.handler = ECHO;
    m.payload = Bytes::from_static(b"after");
    p.send(&m).await;
    let r = tokio::time::timeout(Duration::from_secs(5), p.recv_op(Op::Response))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.mux_id, &r.payload[..]), (2, &b"after"[..]));
    s.still_serving().await;
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_requests_is_bounded() {
    let mut cfg = GridConfig::default();
    cfg.max_running_handlers = 10;
    let s = setup(cfg).await;
    let io = s.net.connect_raw(&s.fake, &s.node_host).unwrap();
    let (mut p, _) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", "lim").await;
    assert!(p.handshake(&s.fake, "lim", GridTime::now()).await.accepted);
    // 50 requests to a handler that never finishes: 10 run, 40 are refused at once.
    for mux in 1..=50u64 {
        let mut m = Message::new(Op::Request, mux);
        m.handler = BLOCK;
        m.deadline_ms = 60_000;
        p.send(&m).await;
    }
    let mut refused = 0;
    while refused < 40 {
        let e = tokio::time::timeout(Duration::from_secs(5), p.recv_op(Op::MuxConnectError))
            .await
            .unwrap()
            .unwrap();
        let text = nodegrid::wire::MuxConnectErrorPayload::decode(&e.payload)
            .unwrap()
            .error;
        assert_eq!(text, "server busy: too many concurrent requests");
        refused += 1;
    }
    let fake_conn = s.node.connection(&s.fake).unwrap();
    assert_eq!(fake_conn.mux_counts().running_handlers, 10);
    assert_eq!(fake_conn.stats().rejected_over_limit, 40);
    // Duplicate mux IDs of running requests are ignored, not run twice.
    let mut dup = Message::new(Op::Request, 1);
    dup.handler = BLOCK;
    p.send(&dup).await;
    s.still_serving().await;
    assert_eq!(fake_conn.mux_counts().running_handlers, 10);
    assert_eq!(fake_conn.stats().protocol_errors, 1);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_streams_is_bounded() {
    let mut cfg = GridConfig::default();
    cfg.max_incoming_streams = 5;
    let s = setup(cfg).await;
    s.node
        .register_stream(
            40,
            nodegrid::StreamSpec::new().in_capacity(0).out_capacity(1),
            |ctx: nodegrid::StreamContext,
             _i: nodegrid::StreamInput,
             _o: nodegrid::StreamOutput| async move {
                ctx.cancel.cancelled().await;
                Ok(())
            },
        )
        .unwrap();
    let io = s.net.connect_raw(&s.fake, &s.node_host).unwrap();
    let (mut p, _) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", "lim").await;
    assert!(p.handshake(&s.fake, "lim", GridTime::now()).await.accepted);
    for mux in 1..=20u64 {
        let mut m = Message::new(Op::ConnectMux, mux);
        m.handler = 40;
        m.flags = nodegrid::wire::Flags::EOF;
        p.send(&m).await;
    }
    for _ in 0..15 {
        let e = tokio::time::timeout(Duration::from_secs(5), p.recv_op(Op::MuxConnectError))
            .await
            .unwrap()
            .unwrap();
        let text = nodegrid::wire::MuxConnectErrorPayload::decode(&e.payload)
            .unwrap()
            .error;
        assert_eq!(text, "server busy: too many concurrent streams");
    }
    assert_eq!(
        s.node
            .connection(&s.fake)
            .unwrap()
            .mux_counts()
            .incoming_streams,
        5
    );
    s.still_serving().await;
}
