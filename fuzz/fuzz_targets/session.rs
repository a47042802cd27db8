//! Connection-level fuzzing: arbitrary frames fed to a node's live session (after a valid
//! handshake) through the in-memory transport. The node must never panic, must end the session
//! cleanly on malformed input, and must keep serving another peer with consistent tables.
//!
//! Input layout: a sequence of `[len: u16 LE][len bytes]` chunks, each sent as one masked
//! binary WebSocket frame (the chunk is usually a grid message or merged envelope).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use nodegrid::auth::Auth;
use nodegrid::handler::Request;
use nodegrid::transport::MemoryNetwork;
use nodegrid::wire::{should_dial, ConnectRequest, GridTime, Message, Op};
use nodegrid::{Manager, RemoteError};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    rt: tokio::runtime::Runtime,
    net: MemoryNetwork,
    node: Manager,
    good: Manager,
    fake: String,
}

const NODE: &str = "http://node0:9000";
const GOOD: &str = "http://node1:9000";

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let fake = (20000..30000)
            .map(|p| format!("http://127.0.0.2:{p}"))
            .find(|h| should_dial(h, NODE))
            .expect("a host that dials node0");
        let net = MemoryNetwork::new();
        let hosts = vec![NODE.to_string(), GOOD.to_string(), fake.clone()];
        let (node, good) = rt.block_on(async {
            let mk = |h: &str| {
                Manager::builder(h, hosts.clone())
                    .auth(Auth::shared_token("fuzz"))
                    .dialer(net.dialer(h))
                    .build()
                    .expect("manager")
            };
            let node = mk(NODE);
            node.register_single(78, |r: Request| async move { Ok::<_, RemoteError>(r.bytes()) }).expect("register");
            let good = mk(GOOD);
            net.attach(&node);
            net.attach(&good);
            (node, good)
        });
        World { rt, net, node, good, fake }
    })
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let key = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut v = vec![0x82u8];
    let n = payload.len();
    if n <= 125 {
        v.push(0x80 | n as u8);
    } else {
        v.push(0x80 | 126);
        v.extend_from_slice(&(n as u16).to_be_bytes());
    }
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

async fn session(w: &World, data: &[u8]) {
    let Ok(mut io) = w.net.connect_raw(&w.fake, NODE) else { return };
    let req = format!(
        "GET /minio/grid/v1 HTTP/1.1\r\nHost: node0:9000\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer fuzz\r\nX-Minio-Time: {}\r\n\r\n",
        GridTime::now().unix_nanos()
    );
    if io.write_all(req.as_bytes()).await.is_err() {
        return;
    }
    let mut m = Message::new(Op::Connect, 0);
    m.payload = ConnectRequest { id: [9; 16], host: w.fake.clone(), time: GridTime::now(), token: "fuzz".into() }.encode();
    let Ok(connect) = m.to_bytes() else { return };
    if io.write_all(&frame(&connect)).await.is_err() {
        return;
    }
    let mut rest = data;
    while rest.len() >= 2 {
        let len = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let chunk = &rest[2..2 + len];
        rest = &rest[2 + len..];
        if io.write_all(&frame(chunk)).await.is_err() {
            break;
        }
    }
    // Drain whatever the node answers for a moment, then hang up.
    let mut buf = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(Duration::from_millis(20), async {
        while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    drop(io);
    // Invariants: the node still serves its good peer, and tables stay bounded.
    let c = w.good.connection(NODE).expect("known host");
    if c.wait_connected(Duration::from_secs(5)).await.is_ok() {
        let r = c.request(78, Bytes::from_static(b"still here")).await;
        assert!(matches!(&r, Ok(b) if &b[..] == b"still here") || r.is_err(), "corrupt answer");
    }
    let counts = w.node.connection(&w.fake).expect("fake host").mux_counts();
    assert!(counts.incoming_streams <= 10_000 && counts.running_handlers <= 10_000);
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    w.rt.block_on(session(w, data));
});
