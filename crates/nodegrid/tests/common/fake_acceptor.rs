//! A hand-driven acceptor for tests: it answers a real dialer's HTTP upgrade with 101, hands
//! back the request head and the first grid message (the Connect) exactly as they arrived, and
//! writes whatever answer the test chooses. Used where a test must see the dialer's bytes or
//! play a peer a nodegrid acceptor would never be (MinIO, or one that rejects in-band).
#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One accepted connection after the upgrade: the request head as text, the Connect message's
/// bytes (unmasked), and the socket.
pub struct Upgraded {
    pub head: String,
    pub connect: Vec<u8>,
    pub io: TcpStream,
}

/// The value of header `name` in `head`, if present.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Accepts one connection on `l`, answers its upgrade with 101 and reads its first message.
pub async fn accept_upgrade(l: &TcpListener) -> Upgraded {
    let (mut io, _) = l.accept().await.unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed during the upgrade");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let key = header(&head, "Sec-WebSocket-Key").expect("a key");
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = STANDARD.encode(h.finalize());
    io.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut rest = buf[head_end..].to_vec();
    let connect = read_masked_frame(&mut io, &mut rest).await;
    Upgraded { head, connect, io }
}

/// Reads one masked (dialer-to-acceptor) frame's payload; `pending` holds bytes already read.
async fn read_masked_frame(io: &mut TcpStream, pending: &mut Vec<u8>) -> Vec<u8> {
    loop {
        if pending.len() >= 2 {
            let len7 = (pending[1] & 0x7f) as usize;
            let (len, at) = match len7 {
                126 if pending.len() >= 4 => {
                    (u16::from_be_bytes([pending[2], pending[3]]) as usize, 4)
                }
                127 if pending.len() >= 10 => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&pending[2..10]);
                    (u64::from_be_bytes(a) as usize, 10)
                }
                126 | 127 => (usize::MAX, 0),
                n => (n, 2),
            };
            if len != usize::MAX && pending.len() >= at + 4 + len {
                let key = [
                    pending[at],
                    pending[at + 1],
                    pending[at + 2],
                    pending[at + 3],
                ];
                let body = &pending[at + 4..at + 4 + len];
                return body
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[i % 4])
                    .collect();
            }
        }
        let mut chunk = [0u8; 4096];
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the first message");
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// Writes one unmasked binary frame (acceptor to dialer).
pub async fn write_frame(io: &mut TcpStream, payload: &[u8]) {
    let mut f = vec![0x82u8];
    let n = payload.len();
    if n <= 125 {
        f.push(n as u8);
    } else if n <= 0xffff {
        f.push(126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(payload);
    io.write_all(&f).await.unwrap();
}
