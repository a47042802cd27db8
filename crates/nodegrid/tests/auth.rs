//! Handshake and authentication: every rejection path of §4.2 and the HTTP-level 403.

mod common;

use common::rawpeer::{dialed_host_for, dialing_host_for, RawPeer};
use nodegrid::auth::{Auth, AuthError, TokenSource, TokenValidator};
use nodegrid::wire::GridTime;
use nodegrid::{ConnState, Manager};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "right-token";

/// One node on loopback whose host list contains `extra` hosts (which the tests impersonate).
async fn node(extra: &[String]) -> (Manager, String, String) {
    common::init_tracing();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let me = format!("http://{addr}");
    let mut hosts = vec![me.clone()];
    hosts.extend(extra.iter().cloned());
    let m = Manager::builder(me.clone(), hosts)
        .auth(Auth::shared_token(TOKEN))
        .build()
        .unwrap();
    let m2 = m.clone();
    tokio::spawn(async move { m2.serve(l).await });
    (m, me, addr)
}

async fn raw(addr: &str, token: &str) -> (RawPeer<TcpStream>, u16) {
    let s = TcpStream::connect(addr).await.unwrap();
    RawPeer::upgrade(s, addr, "/minio/grid/v1", token).await
}

#[tokio::test]
async fn rejection_reasons_in_band() {
    // Host strings for the impersonated peers must be known before the node starts.
    let probe_node = "http://127.0.0.1:1";
    let _ = probe_node;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let me = format!("http://{addr}");
    let good = dialing_host_for(&me, &[]);
    let wrong_side = dialed_host_for(&me, std::slice::from_ref(&good));
    common::init_tracing();
    let l = TcpListener::bind(&addr).await.unwrap();
    let m = Manager::builder(
        me.clone(),
        vec![me.clone(), good.clone(), wrong_side.clone()],
    )
    .auth(Auth::shared_token(TOKEN))
    .build()
    .unwrap();
    let m2 = m.clone();
    tokio::spawn(async move { m2.serve(l).await });

    // Unknown host.
    let (mut p, code) = raw(&addr, TOKEN).await;
    assert_eq!(code, 101);
    let r = p.handshake("http://evil:1", TOKEN, GridTime::now()).await;
    assert!(!r.accepted);
    assert_eq!(r.rejected_reason, "unknown incoming host: http://evil:1");
    assert_eq!(
        r.id,
        m.instance_id(),
        "rejection carries the acceptor's instance ID"
    );

    // Bad token in the Connect payload (the HTTP check passed with the right one).
    let (mut p, _) = raw(&addr, TOKEN).await;
    let r = p.handshake(&good, "bad", GridTime::now()).await;
    assert_eq!(
        r.rejected_reason,
        "auth token: Authentication failed, check your access credentials"
    );

    // Clock skew just inside and just outside ±5 minutes.
    let now = GridTime::now();
    let inside = GridTime::from_unix_nanos(now.unix_nanos() - 299 * 1_000_000_000);
    let (mut p, _) = raw(&addr, TOKEN).await;
    let r = p.handshake(&good, TOKEN, inside).await;
    assert!(r.accepted, "{}", r.rejected_reason);
    drop(p);
    let outside = GridTime::from_unix_nanos(now.unix_nanos() - 301 * 1_000_000_000);
    let (mut p, _) = raw(&addr, TOKEN).await;
    let r = p.handshake(&good, TOKEN, outside).await;
    assert!(
        r.rejected_reason
            .starts_with("time difference too large between servers: 5m1"),
        "{}",
        r.rejected_reason
    );
    let future = GridTime::from_unix_nanos(now.unix_nanos() + 301 * 1_000_000_000);
    let (mut p, _) = raw(&addr, TOKEN).await;
    let r = p.handshake(&good, TOKEN, future).await;
    assert!(
        r.rejected_reason
            .starts_with("time difference too large between servers: -5m"),
        "{}",
        r.rejected_reason
    );

    // Wrong side: the node is the designated dialer of this peer.
    let (mut p, _) = raw(&addr, TOKEN).await;
    let r = p.handshake(&wrong_side, TOKEN, GridTime::now()).await;
    assert_eq!(
        r.rejected_reason,
        "grid: expected to be client side, not server side"
    );

    // Garbage first message and wrong op.
    let (mut p, _) = raw(&addr, TOKEN).await;
    p.send_raw(b"\x96\x00").await;
    let f = p.recv_frame().await.unwrap();
    let resp = nodegrid::wire::ConnectResponse::decode(
        &nodegrid::wire::Message::decode(&f).unwrap().payload,
    )
    .unwrap();
    assert!(
        resp.rejected_reason
            .starts_with("error parsing grid connect: "),
        "{}",
        resp.rejected_reason
    );
    let (mut p, _) = raw(&addr, TOKEN).await;
    p.send(&nodegrid::wire::Message::new(nodegrid::wire::Op::Ping, 0))
        .await;
    let f = p.recv_frame().await.unwrap();
    let resp = nodegrid::wire::ConnectResponse::decode(
        &nodegrid::wire::Message::decode(&f).unwrap().payload,
    )
    .unwrap();
    assert_eq!(resp.rejected_reason, "unexpected connect op: Ping");
    assert!(
        p.recv_frame().await.is_none(),
        "socket closed after a rejection"
    );

    // Rejections are counted on the connection they claimed to be.
    let st = m.connection(&good).unwrap().stats();
    assert!(st.handshake_failures >= 3, "{st:?}");
    m.shutdown();
}

#[tokio::test]
async fn http_level_403() {
    let (m, _me, addr) = node(&["http://127.0.0.9:1".to_string()]).await;
    let (_p, code) = raw(&addr, "wrong").await;
    assert_eq!(code, 403);
    // Missing time header: also 403.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        format!("GET /minio/grid/v1 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 403"));
    m.shutdown();
}

/// A token source whose token can be fixed at run time.
#[derive(Clone)]
struct Switchable(Arc<parking_lot::Mutex<String>>);
impl TokenSource for Switchable {
    fn token(&self) -> String {
        self.0.lock().clone()
    }
}
struct Fixed(String);
impl TokenValidator for Fixed {
    fn validate(&self, t: &str) -> Result<(), AuthError> {
        if t == self.0 {
            Ok(())
        } else {
            Err(AuthError::InvalidToken)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialer_retries_until_config_is_fixed() {
    common::init_tracing();
    let (ls, hosts) = common::listeners(2, "http").await;
    let dialer_idx = usize::from(!nodegrid::wire::should_dial(&hosts[0], &hosts[1]));
    let token = Switchable(Arc::new(parking_lot::Mutex::new("wrong secret".into())));
    let mut nodes = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let auth = if i == dialer_idx {
            Auth::new(token.clone(), Fixed("good".into()))
        } else {
            Auth::new(|| "good".to_string(), Fixed("good".into()))
        };
        let m = Manager::builder(hosts[i].clone(), hosts.clone())
            .auth(auth)
            .build()
            .unwrap();
        let m2 = m.clone();
        tokio::spawn(async move { m2.serve(l).await });
        nodes.push(m);
    }
    let conn = nodes[dialer_idx]
        .connection(&hosts[1 - dialer_idx])
        .unwrap();
    // The dialer keeps failing with the HTTP 403 and exposes why.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let ConnState::Disconnected(r) = conn.state() {
            assert!(r.contains("403"), "{r}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejection observed: {:?}",
            conn.state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(conn.last_error().unwrap().contains("403"));
    assert!(conn.stats().handshake_failures >= 1);
    *token.0.lock() = "good".into();
    conn.wait_connected(Duration::from_secs(10)).await.unwrap();
    assert!(conn.last_error().is_none());
    for n in &nodes {
        n.shutdown();
    }
}

#[tokio::test]
async fn minio_jwt_between_nodes() {
    common::init_tracing();
    let (ls, hosts) = common::listeners(2, "http").await;
    let mut nodes = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let m = Manager::builder(hosts[i].clone(), hosts.clone())
            .auth(Auth::minio_jwt("minioadmin", "minioadmin-secret"))
            .build()
            .unwrap();
        let m2 = m.clone();
        tokio::spawn(async move { m2.serve(l).await });
        nodes.push(m);
    }
    for n in &nodes {
        n.wait_all_connected(Duration::from_secs(10)).await.unwrap();
        // Byte counters include the handshake (§11 item 7).
        let st = &n.stats().connections[0];
        assert!(
            st.bytes_in > 0 && st.bytes_out > 0 && st.messages_in >= 1 && st.messages_out >= 1,
            "{st:?}"
        );
    }
    for n in &nodes {
        n.shutdown();
    }
}
