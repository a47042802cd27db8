//! The front door (issue 14, findings 3 and 4): sockets that never authenticate are closed in
//! time, request heads and unauthenticated connections are bounded, slow bodies and idle
//! keep-alive connections are cut, an upgraded but silent grid socket gives its slot back
//! quickly, and one source address cannot hold every handshake slot.
//!
//! Timers are short here (hundreds of milliseconds); each test waits for the event it expects,
//! bounded by the configured limit plus a margin, and checks the counters.

mod common;

use nodegrid::auth::{time_header_value, Auth};
use nodegrid::transport::{Admission, FrontDoor};
use nodegrid::{FrontDoorConfig, GridConfig, Manager};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const SHORT: Duration = Duration::from_millis(400);
/// Margin for a timer to fire and a close to arrive, on a loaded machine.
const MARGIN: Duration = Duration::from_secs(2);

fn limits() -> FrontDoorConfig {
    let mut c = FrontDoorConfig::default();
    c.handshake_timeout = SHORT;
    c.idle_timeout = Duration::from_millis(600);
    c.body_timeout = SHORT;
    c.body_min_bytes = 1024;
    c.max_unauthenticated = 8;
    c
}

/// A route that authenticates requests carrying `x-token: ok`, echoing the body length.
fn app() -> axum::Router {
    axum::Router::new().route(
        "/t",
        axum::routing::post(|req: axum::extract::Request| async move {
            if req.headers().get("x-token").map(|v| v.as_bytes()) != Some(b"ok") {
                return (http::StatusCode::FORBIDDEN, "no".to_string());
            }
            if let Some(a) = Admission::of(&req) {
                a.authenticated();
            }
            match axum::body::to_bytes(req.into_body(), 1 << 20).await {
                Ok(b) => (http::StatusCode::OK, b.len().to_string()),
                Err(e) => (http::StatusCode::BAD_REQUEST, e.to_string()),
            }
        }),
    )
}

async fn start(door: FrontDoor) -> (nodegrid::transport::FrontDoorHandle, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (door.spawn(l).unwrap(), addr)
}

/// Waits until the server closes `s` (EOF or reset), at most `limit`; returns the bytes it
/// sent before closing. Panics if it is still open after `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(r.is_ok(), "still open after {limit:?}");
    got
}

#[tokio::test]
async fn silent_and_half_sent_sockets_are_closed_at_the_handshake_timeout() {
    let (door, addr) = start(FrontDoor::new(app()).config(limits())).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"POST /t HTTP/1.1\r\nHost: x\r\nx-tok")
        .await
        .unwrap();
    for s in [&mut silent, &mut half] {
        assert!(closed_within(s, SHORT + MARGIN).await.is_empty());
    }
    let st = door.stats();
    assert_eq!((st.accepted, st.timed_out, st.open), (2, 2, 0), "{st:?}");
}

#[tokio::test]
async fn a_refused_request_does_not_keep_the_connection_open() {
    let (door, addr) = start(FrontDoor::new(app()).config(limits())).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /t HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    // Closed right after the answer, long before the handshake timeout: an unauthenticated
    // connection gets no keep-alive.
    let got = closed_within(&mut s, SHORT / 2).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    common::wait_for("the place given back", MARGIN, || door.stats().open == 0).await;
    let st = door.stats();
    assert_eq!((st.timed_out, st.unauthenticated), (0, 0), "{st:?}");
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_refused() {
    let (door, addr) = start(FrontDoor::new(app()).config(limits())).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = b"POST /t HTTP/1.1\r\nHost: x\r\n".to_vec();
    head.extend(std::iter::repeat_n(b'a', 70 * 1024));
    // The server may close before it has read everything.
    let _ = s.write_all(&head).await;
    let got = closed_within(&mut s, MARGIN).await;
    assert!(
        got.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(door.stats().head_too_large, 1);
}

#[tokio::test]
async fn beyond_the_cap_new_connections_are_closed_at_once() {
    let cfg = limits();
    let cap = cfg.max_unauthenticated;
    let (door, addr) = start(FrontDoor::new(app()).config(cfg)).await;
    let mut held = Vec::new();
    for _ in 0..cap {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut watch = door.watch_accepted();
    watch.wait_for(|n| *n == cap as u64).await.unwrap();
    common::wait_for("the held sockets counted", MARGIN, || {
        door.stats().unauthenticated == cap as u64
    })
    .await;
    let mut extra = TcpStream::connect(addr).await.unwrap();
    // Closed long before the handshake timeout.
    assert!(closed_within(&mut extra, SHORT / 2).await.is_empty());
    let st = door.stats();
    assert_eq!((st.refused_over_limit, st.unauthenticated), (1, cap as u64));
    // An authenticated connection frees its place at once.
    let mut ok = held.pop().unwrap();
    ok.write_all(b"POST /t HTTP/1.1\r\nHost: x\r\nx-token: ok\r\ncontent-length: 2\r\n\r\nhi")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = ok.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert_eq!(door.stats().unauthenticated, cap as u64 - 1);
}

#[tokio::test]
async fn an_authenticated_connection_stays_open_until_idle() {
    let (door, addr) = start(FrontDoor::new(app()).config(limits())).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = b"POST /t HTTP/1.1\r\nHost: x\r\nx-token: ok\r\ncontent-length: 3\r\n\r\nabc";
    s.write_all(req).await.unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Past the handshake timeout, a second request on the same connection still works.
    tokio::time::sleep(SHORT + Duration::from_millis(100)).await;
    s.write_all(req).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Then, idle, it is closed after the idle timeout.
    assert!(closed_within(&mut s, Duration::from_millis(600) + MARGIN)
        .await
        .is_empty());
    let st = door.stats();
    assert_eq!((st.authenticated, st.timed_out), (1, 0), "{st:?}");
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_pace_is_cut() {
    let (door, addr) = start(FrontDoor::new(app()).config(limits())).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /t HTTP/1.1\r\nHost: x\r\nx-token: ok\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    // One byte every 50 ms: 20 B/s, far below 1 KiB per 400 ms. Bounded: at most 100 chunks.
    let mut answer = Vec::new();
    for _ in 0..100 {
        if s.write_all(b"1\r\na\r\n").await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(
        text.contains("request body too slow: less than 1024 bytes in 400ms"),
        "{text}"
    );
    assert_eq!(door.stats().slow_bodies, 1);
}

/// A grid node served through its front door with short handshake limits.
async fn grid_node(per_source: usize) -> (Manager, String, SocketAddr) {
    common::init_tracing();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let host = format!("http://{addr}");
    let peer = "http://127.0.0.1:1".to_string();
    let mut cfg = GridConfig::default();
    cfg.connect_timeout = SHORT;
    cfg.max_pending_handshakes_per_source = per_source;
    let m = Manager::builder(host.clone(), [host.clone(), peer])
        .auth(Auth::shared_token("t"))
        .config(cfg)
        .build()
        .unwrap();
    let m2 = m.clone();
    tokio::spawn(async move { m2.serve(l).await });
    (m, host, addr)
}

/// Opens a socket from `source` and sends a valid grid upgrade request; returns the socket and
/// the HTTP status line of the answer.
async fn upgrade_from(source: [u8; 4], addr: SocketAddr) -> (TcpStream, String) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((source, 0))).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer t\r\nX-Minio-Time: {}\r\n\r\n",
        nodegrid::DEFAULT_ROUTE,
        time_header_value(SystemTime::now())
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        match s.read(&mut b).await {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    (s, line)
}

#[tokio::test]
async fn an_upgraded_socket_must_send_connect_quickly() {
    let (m, _host, addr) = grid_node(4).await;
    let (mut s, status) = upgrade_from([127, 0, 0, 1], addr).await;
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    // Silent after the upgrade: closed after `connect_timeout`, well before the 10 s
    // handshake timeout.
    closed_within(&mut s, SHORT + MARGIN).await;
    m.shutdown();
}

#[tokio::test]
async fn one_source_cannot_hold_every_handshake_slot() {
    let (m, host, addr) = grid_node(2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let (s, status) = upgrade_from([127, 0, 0, 2], addr).await;
        assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
        held.push(s);
    }
    let (mut refused, status) = upgrade_from([127, 0, 0, 2], addr).await;
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    // The refused connection is closed at once, so it holds no place either.
    closed_within(&mut refused, SHORT / 2).await;
    // Another source is not held up.
    let (_s, status) = upgrade_from([127, 0, 0, 3], addr).await;
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    // Once the silent ones are closed, the first source gets in again.
    for s in &mut held {
        closed_within(s, SHORT + MARGIN).await;
    }
    let (_s, status) = upgrade_from([127, 0, 0, 2], addr).await;
    assert_eq!(status, "HTTP/1.1 101 Switching Protocols");
    let _ = host;
    m.shutdown();
}
