//! A `tokio-tungstenite` client (a well-kept WebSocket implementation, not ours) completes the
//! HTTP upgrade against a real node serving on loopback and exchanges grid frames with it:
//! Connect → ConnectResponse accepted, a Request → its Response, and a WebSocket ping → pong
//! (issue 17, "Hand-written parts held against well-kept libraries").

mod common;

use bytes::Bytes;
use common::rawpeer::dialing_host_for;
use futures::{SinkExt, StreamExt};
use nodegrid::auth::{time_header_value, Auth};
use nodegrid::handler::Request;
use nodegrid::wire::{split_frame, ConnectRequest, ConnectResponse, Flags, GridTime, Message, Op};
use nodegrid::{Manager, RemoteError, DEFAULT_ROUTE};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const ECHO: u8 = 78;
const TOKEN: &str = "tungstenite-token";

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// The next binary WebSocket message (bounded in time), skipping nothing else silently.
async fn next_ws(ws: &mut Ws) -> WsMessage {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10 s")
        .expect("stream open")
        .expect("no websocket error")
}

/// Reads grid messages until one has `op` and `mux`; connection pings of the node are skipped.
async fn next_grid(ws: &mut Ws, op: Op, mux: u64) -> Message {
    for _ in 0..100 {
        let WsMessage::Binary(b) = next_ws(ws).await else {
            continue;
        };
        for m in split_frame(b, &Default::default()).expect("a grid frame") {
            let m = m.expect("a grid message");
            if m.op == op && m.mux_id == mux {
                return m;
            }
        }
    }
    panic!("no {op:?} for mux {mux}");
}

#[tokio::test]
async fn a_tungstenite_client_speaks_grid_with_a_node() {
    common::init_tracing();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let node = format!("http://{addr}");
    let client_host = dialing_host_for(&node, &[]);
    let m = Manager::builder(node.clone(), vec![node.clone(), client_host.clone()])
        .auth(Auth::shared_token(TOKEN))
        .build()
        .unwrap();
    m.register_single(
        ECHO,
        |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) },
    )
    .unwrap();
    let served = m.clone();
    tokio::spawn(async move { served.serve(l).await });

    // The HTTP upgrade, done by tungstenite, with the grid's two headers.
    let mut req = format!("ws://{addr}{DEFAULT_ROUTE}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    req.headers_mut().insert(
        "X-Minio-Time",
        time_header_value(SystemTime::now()).parse().unwrap(),
    );
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert_eq!(resp.status(), 101);

    // Connect → ConnectResponse.
    let mut connect = Message::new(Op::Connect, 0);
    connect.payload = ConnectRequest {
        id: [9; 16],
        host: client_host.clone(),
        time: GridTime::now(),
        token: TOKEN.to_string(),
    }
    .encode();
    ws.send(WsMessage::Binary(connect.to_bytes().unwrap()))
        .await
        .unwrap();
    let r = next_grid(&mut ws, Op::ConnectResponse, 0).await;
    let r = ConnectResponse::decode(&r.payload).unwrap();
    assert!(r.accepted, "{}", r.rejected_reason);
    assert_eq!(r.id, m.instance_id());
    let conn = m.connection(&client_host).unwrap();
    conn.wait_connected(Duration::from_secs(10)).await.unwrap();

    // A single request and its response.
    let mut req = Message::new(Op::Request, 1);
    req.handler = ECHO;
    req.deadline_ms = 10_000;
    req.flags = Flags::CRC | Flags::EOF;
    req.payload = Bytes::from_static(b"hello from tungstenite");
    ws.send(WsMessage::Binary(req.to_bytes().unwrap()))
        .await
        .unwrap();
    let resp = next_grid(&mut ws, Op::Response, 1).await;
    assert!(!resp.flags.contains(Flags::ERR), "{:?}", resp.flags);
    assert!(resp.flags.contains(Flags::EOF));
    assert_eq!(&resp.payload[..], b"hello from tungstenite");

    // A WebSocket-level ping is answered with the same payload.
    ws.send(WsMessage::Ping(Bytes::from_static(b"ws-ping")))
        .await
        .unwrap();
    let mut pong = None;
    for _ in 0..100 {
        if let WsMessage::Pong(p) = next_ws(&mut ws).await {
            pong = Some(p);
            break;
        }
    }
    assert_eq!(pong.as_deref(), Some(&b"ws-ping"[..]));

    // The node counted the request; a close from the client ends the session.
    assert_eq!(conn.stats().requests_in, 1);
    ws.close(None).await.unwrap();
    let mut rx = conn.watch_state();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| !s.is_connected()))
        .await
        .expect("session ends after the close")
        .unwrap();
    m.shutdown();
}
