//! A message larger than the receiver's `max_message_size` fails its call, not the connection
//! (issue 15, item 2). Two nodes with different limits: `big` accepts 64 MiB, `small` 64 KiB.
//! Each oversized call fails with the typed `Error::TooLarge`, and the next call succeeds on the
//! same session, for single requests and for streams in both directions.

mod common;

use bytes::Bytes;
use nodegrid::auth::Auth;
use nodegrid::handler::Request;
use nodegrid::transport::MemoryNetwork;
use nodegrid::{
    Connection, Error, GridConfig, Manager, RemoteError, StreamContext, StreamInput, StreamOptions,
    StreamOutput, StreamSpec,
};
use std::sync::Mutex;
use std::time::Duration;

const ECHO: u8 = 78;
/// Answers with as many bytes as the request's payload says (decimal).
const SIZED: u8 = 79;
/// Stream: echoes each input item.
const ECHO_STREAM: u8 = 80;
/// Stream: sends one item of the size the initial payload says.
const SIZED_STREAM: u8 = 81;
const SMALL: usize = 64 << 10;

/// Everything WARN and above that the test binary logs.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;
impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn register(m: &Manager) {
    m.register_single(
        ECHO,
        |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
    )
    .unwrap();
    m.register_single(SIZED, |r: Request| async move {
        let n: usize = std::str::from_utf8(&r.bytes()).unwrap().parse().unwrap();
        Ok::<_, RemoteError>(Bytes::from(vec![1u8; n]))
    })
    .unwrap();
    m.register_stream(
        ECHO_STREAM,
        StreamSpec::new().in_capacity(4).out_capacity(4),
        |_c: StreamContext, mut i: StreamInput, o: StreamOutput| async move {
            while let Some(x) = i.recv().await {
                if o.send(x).await.is_err() {
                    break;
                }
            }
            Ok(())
        },
    )
    .unwrap();
    m.register_stream(
        SIZED_STREAM,
        StreamSpec::new().in_capacity(0).out_capacity(4),
        |c: StreamContext, _i: StreamInput, o: StreamOutput| async move {
            let p = c.payload.unwrap_or_default();
            let n: usize = std::str::from_utf8(&p).unwrap().parse().unwrap();
            o.send(Bytes::from(vec![2u8; n]))
                .await
                .map_err(|e| RemoteError::new(e.to_string()))?;
            // Waits to be cancelled when its caller gave up on the item.
            c.cancel.cancelled().await;
            Ok(())
        },
    )
    .unwrap();
}

struct Pair {
    _net: MemoryNetwork,
    big: Manager,
    small: Manager,
}

impl Pair {
    /// Two nodes that do not know each other's limit, as with a peer that announces none:
    /// oversized messages reach the receiver, which skips them.
    async fn new() -> Pair {
        let p = Pair::announcing().await;
        p.to_small().set_peer_max_message_size(None);
        p.to_big().set_peer_max_message_size(None);
        p
    }

    /// Two nodes that learned each other's limit in the handshake (nodegrid's extension).
    async fn announcing() -> Pair {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .without_time()
            .try_init();
        let net = MemoryNetwork::new();
        let hosts = [
            "http://big:9000".to_string(),
            "http://small:9000".to_string(),
        ];
        let mk = |h: &str, max: usize| {
            let mut cfg = GridConfig::default();
            cfg.max_message_size = max;
            let m = Manager::builder(h, hosts.clone())
                .auth(Auth::shared_token("o"))
                .config(cfg)
                .dialer(net.dialer(h))
                .build()
                .unwrap();
            register(&m);
            net.attach(&m);
            m
        };
        let big = mk(&hosts[0], 64 << 20);
        let small = mk(&hosts[1], SMALL);
        big.wait_all_connected(Duration::from_secs(10))
            .await
            .unwrap();
        small
            .wait_all_connected(Duration::from_secs(10))
            .await
            .unwrap();
        Pair {
            _net: net,
            big,
            small,
        }
    }

    fn to_small(&self) -> Connection {
        self.big.connection("http://small:9000").unwrap()
    }

    fn to_big(&self) -> Connection {
        self.small.connection("http://big:9000").unwrap()
    }

    /// Both ends still on their first session.
    fn same_session(&self) {
        for c in [self.to_small(), self.to_big()] {
            let st = c.stats();
            assert!(st.connected, "{:?}", c.last_error());
            assert_eq!((st.connects, st.reconnects), (1, 0), "{}", c.remote());
        }
    }
}

/// The size of a Request (or ConnectMux) message for a payload of `n` bytes with a 60 s
/// deadline and CRC, as the caller's node encodes it.
fn request_size(n: usize, op: nodegrid::wire::Op) -> usize {
    let mut m = nodegrid::wire::Message::new(op, 0x8000_0000);
    m.deadline_ms = 60_000;
    m.handler = ECHO;
    m.flags = nodegrid::wire::Flags::CRC | nodegrid::wire::Flags::EOF;
    m.payload = Bytes::from(vec![0u8; n]);
    m.encoded_len()
}

fn too_large(e: Error) -> (usize, usize) {
    match e {
        Error::TooLarge { size, limit } => (size, limit),
        e => panic!("expected TooLarge, got {e:?}"),
    }
}

#[tokio::test]
async fn oversized_single_requests_fail_alone_with_the_typed_error() {
    let p = Pair::new().await;
    let c = p.to_small();
    // 200 KiB: over the limit, within the frame limit (read, then refused); 1 MiB: beyond the
    // frame limit too (skipped as it arrives).
    for n in [200 << 10, 1 << 20] {
        let (size, limit) = too_large(c.request(ECHO, vec![0u8; n]).await.unwrap_err());
        // The mux ID's encoding may vary by one byte: it is a 32-bit number above 2^31.
        let want = request_size(n, nodegrid::wire::Op::Request);
        assert!(size.abs_diff(want) <= 1, "{size} vs {want}");
        assert_eq!(limit, SMALL);
        assert_eq!(&c.request(ECHO, "next").await.unwrap()[..], b"next");
    }
    p.same_session();
    let st = p.to_big().stats();
    assert_eq!((st.oversized_in, st.protocol_errors), (2, 0));
    assert_eq!(p.to_small().stats().errors.other, 2);
    // One WARN for the two, naming the peer, the size, the limit and what to change.
    let logs = String::from_utf8(LOGS.lock().unwrap().clone()).unwrap();
    let warns: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("skipped a grid message") && l.contains("op=Request"))
        .collect();
    assert_eq!(warns.len(), 1, "{logs}");
    let size = request_size(200 << 10, nodegrid::wire::Op::Request);
    let text = format!(
        "skipped a grid message of {size} bytes from http://big:9000: over this node's \
         max_message_size of 65536 bytes, so its call failed (the connection stays up); raise \
         max_message_size on this node to at least {size} bytes, or send smaller payloads"
    );
    let w = warns[0];
    assert!(w.contains(" WARN "), "{w}");
    // The mux ID's width may make the size one byte more or less: compare around it.
    let (head, tail) = text.split_once(&size.to_string()).unwrap();
    assert!(w.contains(head) && w.contains(&tail[..40]), "{w}");
}

#[tokio::test]
async fn an_oversized_response_fails_the_call_on_the_caller() {
    let p = Pair::new().await;
    let c = p.to_big();
    let (size, limit) = too_large(c.request(SIZED, "300000").await.unwrap_err());
    assert!((300_000..300_000 + 64).contains(&size), "{size}");
    assert_eq!(limit, SMALL);
    assert_eq!(c.request(SIZED, "1000").await.unwrap().len(), 1000);
    assert_eq!(c.stats().oversized_in, 1);
    p.same_session();
}

#[tokio::test]
async fn oversized_stream_messages_end_their_stream_in_both_directions() {
    let p = Pair::new().await;
    // Input too large for the callee: the stream ends with the typed error.
    let c = p.to_small();
    let mut s = c
        .open_stream(ECHO_STREAM, None, StreamOptions::new().capacities(4, 4))
        .await
        .unwrap();
    s.send(Bytes::from(vec![0u8; 200 << 10])).await.unwrap();
    let e = s.recv().await.unwrap().unwrap_err();
    assert_eq!(too_large(e).1, SMALL);
    // The next stream on the same session works.
    let mut s = c
        .open_stream(ECHO_STREAM, None, StreamOptions::new().capacities(4, 4))
        .await
        .unwrap();
    s.send(Bytes::from_static(b"ok")).await.unwrap();
    assert_eq!(&s.recv().await.unwrap().unwrap()[..], b"ok");
    drop(s);
    // An initial payload too large: the stream is refused with the typed error.
    let e = c
        .open_stream(
            ECHO_STREAM,
            Some(Bytes::from(vec![0u8; 100 << 10])),
            StreamOptions::new().capacities(4, 4),
        )
        .await
        .unwrap()
        .recv()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(too_large(e).1, SMALL);
    // Output too large for the caller: the caller's stream fails locally, the callee's handler
    // is cancelled.
    let c = p.to_big();
    let mut s = c
        .open_stream(
            SIZED_STREAM,
            Some(Bytes::from_static(b"200000")),
            StreamOptions::new().capacities(0, 4),
        )
        .await
        .unwrap();
    let (size, limit) = too_large(s.recv().await.unwrap().unwrap_err());
    assert!((200_000..200_064).contains(&size), "{size}");
    assert_eq!(limit, SMALL);
    let mut s = c
        .open_stream(
            SIZED_STREAM,
            Some(Bytes::from_static(b"10")),
            StreamOptions::new().capacities(0, 4),
        )
        .await
        .unwrap();
    assert_eq!(s.recv().await.unwrap().unwrap().len(), 10);
    drop(s);
    p.same_session();
    // All three were met by `small`: the input, the initial payload and the output.
    assert_eq!(p.to_big().stats().oversized_in, 3);
    assert_eq!(p.to_small().stats().oversized_in, 0);
    // Nothing is left running on either side.
    for (m, other) in [(&p.big, "http://small:9000"), (&p.small, "http://big:9000")] {
        let c = m.connection(other).unwrap();
        common::wait_for("no mux left", Duration::from_secs(10), || {
            c.mux_counts() == nodegrid::MuxCounts::default()
        })
        .await;
    }
}

#[tokio::test]
async fn the_limit_announced_in_the_handshake_fails_the_call_before_sending() {
    let p = Pair::announcing().await;
    let c = p.to_small();
    assert_eq!(c.peer_max_message_size(), Some(SMALL));
    let limit = nodegrid::wire::Limits {
        max_message_size: SMALL,
    }
    .max_payload();
    let received = p.to_big().stats().bytes_in;
    assert_eq!(
        c.request(ECHO, vec![0u8; limit + 1]).await.unwrap_err(),
        Error::TooLarge {
            size: limit + 1,
            limit: SMALL
        }
    );
    // Nothing was sent: the receiver saw no bytes and skipped nothing.
    assert_eq!(p.to_big().stats().bytes_in, received);
    assert_eq!(p.to_big().stats().oversized_in, 0);
    assert_eq!(
        &c.request(ECHO, vec![1u8; limit]).await.unwrap().len(),
        &limit
    );
    p.same_session();
}

#[tokio::test]
async fn with_the_peers_limit_known_the_caller_fails_before_sending() {
    let p = Pair::new().await;
    let c = p.to_small();
    c.set_peer_max_message_size(Some(SMALL));
    let limit = nodegrid::wire::Limits {
        max_message_size: SMALL,
    }
    .max_payload();
    let received = p.to_big().stats().bytes_in;
    assert_eq!(
        c.request(ECHO, vec![0u8; limit + 1]).await.unwrap_err(),
        Error::TooLarge {
            size: limit + 1,
            limit: SMALL
        }
    );
    let e = c
        .open_stream(
            ECHO_STREAM,
            Some(Bytes::from(vec![0u8; 100 << 10])),
            StreamOptions::new().capacities(4, 4),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Error::TooLarge {
            size: 100 << 10,
            limit: SMALL
        }
    );
    let s = c
        .open_stream(ECHO_STREAM, None, StreamOptions::new().capacities(4, 4))
        .await
        .unwrap();
    assert_eq!(
        s.send(Bytes::from(vec![0u8; limit + 1])).await.unwrap_err(),
        Error::TooLarge {
            size: limit + 1,
            limit: SMALL
        }
    );
    drop(s);
    // Nothing oversized reached the peer: only the stream's open and its cancel.
    common::wait_for("the cancel arrives", Duration::from_secs(5), || {
        p.to_big().mux_counts() == nodegrid::MuxCounts::default()
    })
    .await;
    assert!(p.to_big().stats().bytes_in - received < 1024);
    // The largest payload that fits still goes.
    assert_eq!(
        c.request(ECHO, vec![0u8; limit]).await.unwrap().len(),
        limit
    );
    assert_eq!(p.to_big().stats().oversized_in, 0);
    // A handler's answer larger than the caller accepts becomes the caller's TooLarge.
    let back = p.to_big();
    back.set_peer_max_message_size(Some(SMALL));
    let (size, limit) = too_large(back.request(SIZED, "100000").await.unwrap_err());
    assert_eq!((size, limit), (100_000, SMALL));
    assert_eq!(p.to_big().stats().oversized_in, 0);
    p.same_session();
}
