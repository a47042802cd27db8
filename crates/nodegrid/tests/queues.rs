//! The outbound queue's lanes are bounded in bytes (issue 14, finding 2): a peer that sends
//! but reads slowly or not at all cannot grow a node's memory. Each flood of the issue is a
//! raw peer here; the node's statistics show the queue's peak staying within its bound and the
//! hits counted. Runs on the in-memory network under tokio's paused clock. (The node's memory
//! itself is measured with /proc against a `nodegrid node` process in
//! `crates/nodegrid-cli/tests/floods.rs`.)

mod common;

use bytes::Bytes;
use common::rawpeer::{client_frame, dialing_host_for, RawPeer};
use nodegrid::auth::Auth;
use nodegrid::handler::Request;
use nodegrid::transport::MemoryNetwork;
use nodegrid::wire::{encode_merged, Flags, GridTime, Message, Op};
use nodegrid::{Connection, Error, GridConfig, Manager, RemoteError, StreamSpec};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

const ECHO: u8 = 78;
const UNREGISTERED: u8 = 200;
const SOURCE: u8 = 41;
/// What one queued message counts besides its payload (`outq::ITEM_OVERHEAD`).
const ITEM_OVERHEAD: u64 = 128;
/// The control bound of the node under attack.
const CONTROL: usize = 256 << 10;

struct Setup {
    net: MemoryNetwork,
    node: Manager,
    node_host: String,
    fake: String,
}

async fn setup(cfg: GridConfig) -> Setup {
    common::init_tracing();
    let net = MemoryNetwork::new();
    let node_host = "http://node0:9000".to_string();
    let fake = dialing_host_for(&node_host, &[]);
    let node = Manager::builder(&node_host, [node_host.clone(), fake.clone()])
        .auth(Auth::shared_token("q"))
        .config(cfg)
        .dialer(net.dialer(&node_host))
        .build()
        .unwrap();
    node.register_single(
        ECHO,
        |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
    )
    .unwrap();
    net.attach(&node);
    Setup {
        net,
        node,
        node_host,
        fake,
    }
}

impl Setup {
    /// A handshaken raw peer, split, and the node's connection to it.
    async fn peer(&self) -> (ReadHalf<DuplexStream>, WriteHalf<DuplexStream>, Connection) {
        let io = self.net.connect_raw(&self.fake, &self.node_host).unwrap();
        let (mut p, code) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", "q").await;
        assert_eq!(code, 101);
        assert!(p.handshake(&self.fake, "q", GridTime::now()).await.accepted);
        let conn = self.node.connection(&self.fake).unwrap();
        conn.wait_connected(Duration::from_secs(5)).await.unwrap();
        let (r, w) = tokio::io::split(p.io);
        (r, w, conn)
    }
}

/// Writes `frames` envelopes of `per` requests to `handler` with `payload` bytes each, until
/// done or the write fails (the node ended the session).
fn flood_requests(
    mut w: WriteHalf<DuplexStream>,
    handler: u8,
    payload: usize,
    frames: usize,
    per: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut mux = 1u64;
        for _ in 0..frames {
            let msgs: Vec<Message> = (0..per)
                .map(|_| {
                    let mut m = Message::new(Op::Request, mux);
                    m.handler = handler;
                    m.flags = Flags::CRC | Flags::EOF;
                    m.payload = Bytes::from(vec![7u8; payload]);
                    mux += 1;
                    m
                })
                .collect();
            let env = encode_merged(&msgs).unwrap();
            if w.write_all(&client_frame(&env)).await.is_err() {
                return;
            }
        }
    })
}

async fn ended_within(conn: &Connection, limit: Duration) -> String {
    let mut rx = conn.watch_state();
    tokio::time::timeout(limit, rx.wait_for(|s| !s.is_connected()))
        .await
        .expect("session not ended")
        .unwrap();
    conn.last_error().unwrap_or_default()
}

/// Flood 1: requests to an unregistered handler, never read. Before: 5.9M requests took
/// 1.2–1.6 GB in 4 s. Now the node stops reading once its answers fill the control lane, and
/// the write timeout ends the session.
#[tokio::test(start_paused = true)]
async fn unread_answers_to_an_unregistered_handler_stay_within_the_control_bound() {
    let mut cfg = GridConfig::default();
    cfg.outbound_control_bytes = CONTROL;
    let s = setup(cfg).await;
    let (_r, w, conn) = s.peer().await;
    // 200 000 requests of ~10 bytes: answered in full they would take ~35 MiB of queue.
    let flood = flood_requests(w, UNREGISTERED, 0, 200, 1000);
    common::wait_for("the reader pauses", Duration::from_secs(10), || {
        conn.stats().read_pauses > 0
    })
    .await;
    let st = conn.stats();
    // Each answer is a MuxConnectError of < 100 bytes of payload: the reader checks after each
    // message, so the lane passes its bound by one answer at most.
    let one = 100 + ITEM_OVERHEAD;
    assert!(
        st.outbound_control_peak_bytes >= CONTROL as u64
            && st.outbound_control_peak_bytes < CONTROL as u64 + one,
        "peak {}",
        st.outbound_control_peak_bytes
    );
    assert!(st.outbound_queue_bytes < CONTROL as u64 + one);
    assert!(st.requests_in < 200_000, "{} read", st.requests_in);
    // Nothing is read by the peer: the write timeout ends the session cleanly.
    let why = ended_within(&conn, Duration::from_secs(10)).await;
    assert!(why.contains("write blocked for more than 4s"), "{why}");
    flood.abort();
}

/// Flood 2: a peer that sends echo requests and reads only 64 KiB every 100 ms. Before: with 8
/// MiB read every 2 s the queue reached 2.1 GB and kept growing. Now the node's reading follows
/// the peer's: the queue stays within its bound while the session stays up.
#[tokio::test(start_paused = true)]
async fn a_slow_reader_is_slowed_to_its_own_speed_within_the_control_bound() {
    let mut cfg = GridConfig::default();
    cfg.outbound_control_bytes = CONTROL;
    let s = setup(cfg).await;
    let (mut r, w, conn) = s.peer().await;
    // 2 000 echo requests of 4 KiB (8 MiB), 20 per envelope.
    let flood = flood_requests(w, ECHO, 4096, 100, 20);
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    let mut peak = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        got += r.read(&mut buf).await.unwrap();
        peak = peak.max(conn.stats().outbound_queue_bytes);
    }
    let st = conn.stats();
    assert!(
        st.connected,
        "the session stays up: {:?}",
        conn.last_error()
    );
    assert!(st.read_pauses > 0);
    let one = 4096 + ITEM_OVERHEAD;
    assert!(
        st.outbound_control_peak_bytes < CONTROL as u64 + one,
        "peak {}",
        st.outbound_control_peak_bytes
    );
    assert!(peak < CONTROL as u64 + one, "{peak}");
    // Answers kept flowing at the reader's pace: 30 reads of up to 64 KiB.
    assert!(got > 30 * 32 * 1024, "{got}");
    assert!(st.requests_in < 2000, "{}", st.requests_in);
    flood.abort();
}

/// Flood 3: WebSocket pings (and connection pings), never read. Before: 1.58 GB of pings took
/// 2.5 GB. Now only the latest ping of each kind is answered: the liveness lane holds at most
/// one WebSocket pong and one connection pong.
#[tokio::test(start_paused = true)]
async fn a_ping_flood_keeps_one_pong_of_each_kind() {
    let s = setup(GridConfig::default()).await;
    let (_r, mut w, conn) = s.peer().await;
    let ping = {
        let key = [9u8, 8, 7, 6];
        let mut f = vec![0x89u8, 0x80 | 125];
        f.extend_from_slice(&key);
        f.extend((0..125).map(|i| (i as u8) ^ key[i % 4]));
        f
    };
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 1000)
        .collect();
    for _ in 0..100 {
        w.write_all(&burst).await.unwrap();
    }
    let conn_pings: Vec<Message> = (0..1000)
        .map(|_| {
            let mut m = Message::new(Op::Ping, 0);
            m.flags = Flags::CRC;
            m.payload = nodegrid::wire::PingPayload { t: GridTime::now() }.encode();
            m
        })
        .collect();
    let env = encode_merged(&conn_pings).unwrap();
    for _ in 0..10 {
        w.write_all(&client_frame(&env)).await.unwrap();
    }
    // 100 000 WebSocket pings and 10 000 connection pings: all read (writes completed), and
    // all but those written before the pipe filled (256 KiB, about 2 000 pongs) replaced.
    common::wait_for("pongs replaced", Duration::from_secs(10), || {
        conn.stats().pongs_replaced >= 100_000
    })
    .await;
    let st = conn.stats();
    assert!(st.connected);
    assert!(st.pongs_replaced >= 100_000, "{}", st.pongs_replaced);
    assert!(st.outbound_queue <= 2, "{} queued", st.outbound_queue);
    assert_eq!(st.outbound_queue_bytes, 0);
    // The peer answers none of the node's pings: the pong timeout (20 s, checked every 10 s)
    // ends the session, or the write timeout if the pipe is full.
    let why = ended_within(&conn, Duration::from_secs(31)).await;
    assert!(
        why.contains("no pong from peer") || why.contains("write blocked"),
        "{why}"
    );
}

/// Callers' data is bounded in bytes, not only in entries: towards a peer that does not read,
/// callers wait, and fail when the write timeout ends the session.
#[tokio::test(start_paused = true)]
async fn callers_wait_for_room_in_bytes_towards_a_peer_that_does_not_read() {
    let mut cfg = GridConfig::default();
    cfg.outbound_data_bytes = 1 << 20;
    let s = setup(cfg).await;
    let (_r, _w, conn) = s.peer().await;
    // 200 calls of 64 KiB (12.5 MiB) at once; the pipe takes 256 KiB.
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let c = conn.clone();
            tokio::spawn(async move { c.request(ECHO, Bytes::from(vec![1u8; 64 << 10])).await })
        })
        .collect();
    common::wait_for("callers wait", Duration::from_secs(10), || {
        conn.stats().data_waits > 0
    })
    .await;
    let one = (64 << 10) + ITEM_OVERHEAD;
    let st = conn.stats();
    assert!(
        st.outbound_data_peak_bytes < (1 << 20) + one,
        "peak {}",
        st.outbound_data_peak_bytes
    );
    for c in calls {
        let r = tokio::time::timeout(Duration::from_secs(10), c)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r, Err(Error::Disconnected));
    }
}

/// Stream items of handlers wait for room too: 50 streams with 64 credits each of 16 KiB
/// items could queue 50 MiB towards a caller that does not read; the data lane holds 1 MiB
/// plus at most one item per stream.
#[tokio::test(start_paused = true)]
async fn stream_handlers_wait_for_room_towards_a_caller_that_does_not_read() {
    let mut cfg = GridConfig::default();
    cfg.outbound_data_bytes = 1 << 20;
    let s = setup(cfg).await;
    s.node
        .register_stream(
            SOURCE,
            StreamSpec::new().in_capacity(0).out_capacity(64),
            |_ctx: nodegrid::StreamContext,
             _i: nodegrid::StreamInput,
             o: nodegrid::StreamOutput| async move {
                let item = Bytes::from(vec![3u8; 16 << 10]);
                while o.send(item.clone()).await.is_ok() {}
                Ok(())
            },
        )
        .unwrap();
    let (_r, mut w, conn) = s.peer().await;
    let opens: Vec<Message> = (1..=50)
        .map(|mux| {
            let mut m = Message::new(Op::ConnectMux, mux);
            m.handler = SOURCE;
            m.flags = Flags::CRC | Flags::EOF;
            m
        })
        .collect();
    w.write_all(&client_frame(&encode_merged(&opens).unwrap()))
        .await
        .unwrap();
    common::wait_for("handlers wait", Duration::from_secs(10), || {
        conn.stats().data_waits >= 50
    })
    .await;
    let st = conn.stats();
    let one = (16 << 10) + ITEM_OVERHEAD;
    assert!(
        st.outbound_data_peak_bytes < (1 << 20) + 50 * one,
        "peak {}",
        st.outbound_data_peak_bytes
    );
    assert_eq!(st.streams_in, 50);
    ended_within(&conn, Duration::from_secs(10)).await;
}

/// Two nodes that both reach their control bound stop reading at the same time, each waiting
/// for the other to read: the write timeout ends the session cleanly, every call returns (with
/// its answer or `remote disconnected`, never hanging), and the connection serves again.
#[tokio::test(start_paused = true)]
async fn two_nodes_that_both_stop_reading_recover_through_the_write_timeout() {
    common::init_tracing();
    let net = MemoryNetwork::new();
    let hosts = ["http://a:9000".to_string(), "http://b:9000".to_string()];
    let mut cfg = GridConfig::default();
    cfg.outbound_control_bytes = 64 << 10;
    let nodes: Vec<Manager> = hosts
        .iter()
        .map(|h| {
            let m = Manager::builder(h, hosts.clone())
                .auth(Auth::shared_token("q"))
                .config(cfg.clone())
                .dialer(net.dialer(h))
                .build()
                .unwrap();
            m.register_single(
                ECHO,
                |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
            )
            .unwrap();
            net.attach(&m);
            m
        })
        .collect();
    for m in &nodes {
        m.wait_all_connected(Duration::from_secs(10)).await.unwrap();
    }
    let conns = [
        nodes[0].connection(&hosts[1]).unwrap(),
        nodes[1].connection(&hosts[0]).unwrap(),
    ];
    // 64 callers on each side, 20 echo calls of 64 KiB each: far more answers in flight than
    // either control lane holds.
    let mut calls = Vec::new();
    for c in &conns {
        for _ in 0..64 {
            let c = c.clone();
            calls.push(tokio::spawn(async move {
                let (mut ok, mut lost) = (0, 0);
                for _ in 0..20 {
                    match c.request(ECHO, Bytes::from(vec![5u8; 64 << 10])).await {
                        Ok(b) if b.len() == 64 << 10 => ok += 1,
                        Err(Error::Disconnected) => lost += 1,
                        r => panic!("unexpected {r:?}"),
                    }
                }
                (ok, lost)
            }));
        }
    }
    let (mut ok, mut lost) = (0, 0);
    for c in calls {
        let (o, l) = tokio::time::timeout(Duration::from_secs(120), c)
            .await
            .expect("a call hung")
            .unwrap();
        ok += o;
        lost += l;
    }
    assert_eq!(ok + lost, 2 * 64 * 20);
    let pauses: u64 = conns.iter().map(|c| c.stats().read_pauses).sum();
    assert!(pauses > 0);
    eprintln!(
        "ok {ok}, lost {lost}, read pauses {pauses}, sessions {} / {}",
        conns[0].stats().connects,
        conns[1].stats().connects
    );
    // Whatever happened, the connection serves again.
    for c in &conns {
        c.wait_connected(Duration::from_secs(30)).await.unwrap();
        assert_eq!(&c.request(ECHO, "again").await.unwrap()[..], b"again");
    }
}

/// Heavy legitimate traffic in both directions never reaches the default bounds: 64 callers
/// each way with 4 KiB echoes, and 16 echo streams each way with 64 credits, on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_two_way_traffic_stays_clear_of_the_default_bounds() {
    let c = common::cluster(2, GridConfig::default(), |m| {
        m.register_single(
            ECHO,
            |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
        )
        .unwrap();
        m.register_stream(
            ECHO,
            StreamSpec::new().in_capacity(64).out_capacity(64),
            |_c: nodegrid::StreamContext,
             mut i: nodegrid::StreamInput,
             o: nodegrid::StreamOutput| async move {
                while let Some(x) = i.recv().await {
                    if o.send(x).await.is_err() {
                        break;
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    })
    .await;
    let end = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for (a, b) in [(0, 1), (1, 0)] {
        for _ in 0..64 {
            let conn = c.conn(a, b);
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while tokio::time::Instant::now() < end {
                    let r = conn.request(ECHO, Bytes::from(vec![1u8; 4096])).await;
                    assert_eq!(r.unwrap().len(), 4096);
                    n += 1;
                }
                n
            }));
        }
        for _ in 0..16 {
            let conn = c.conn(a, b);
            tasks.push(tokio::spawn(async move {
                let mut s = conn
                    .open_stream(ECHO, None, nodegrid::StreamOptions::new())
                    .await
                    .unwrap();
                let mut n = 0u64;
                while tokio::time::Instant::now() < end {
                    for _ in 0..32 {
                        s.send(Bytes::from(vec![2u8; 1024])).await.unwrap();
                    }
                    for _ in 0..32 {
                        assert_eq!(s.recv().await.unwrap().unwrap().len(), 1024);
                    }
                    n += 32;
                }
                n
            }));
        }
    }
    let mut total = 0;
    for t in tasks {
        total += tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(total > 1000, "{total}");
    for (a, b) in [(0, 1), (1, 0)] {
        let st = c.conn(a, b).stats();
        assert_eq!((st.read_pauses, st.data_waits), (0, 0), "{}", st.remote);
        assert!(st.outbound_control_peak_bytes < 16 << 20);
        assert!(st.outbound_data_peak_bytes < 64 << 20);
        assert_eq!((st.connects, st.errors.disconnected), (1, 0));
    }
    c.shutdown();
}
