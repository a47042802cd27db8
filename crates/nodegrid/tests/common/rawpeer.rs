//! A hand-driven grid peer for tests: it speaks the wire format directly (HTTP upgrade,
//! WebSocket frames, grid messages) so tests can misbehave in ways a real node never would.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use nodegrid::wire::{ConnectRequest, ConnectResponse, GridTime, Message, Op};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub struct RawPeer<S> {
    pub io: S,
    buf: BytesMut,
    /// Messages of a merged frame not yet handed out by `recv_op`.
    pending: std::collections::VecDeque<Message>,
}

pub fn upgrade_request(authority: &str, path: &str, token: &str) -> String {
    let now = GridTime::now().unix_nanos();
    format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer {token}\r\nX-Minio-Time: {now}\r\n\r\n"
    )
}

/// A masked (client-to-server) binary frame.
pub fn client_frame(payload: &[u8]) -> Vec<u8> {
    let key = [0x11u8, 0x22, 0x33, 0x44];
    let mut v = vec![0x82u8];
    let n = payload.len();
    if n <= 125 {
        v.push(0x80 | n as u8);
    } else if n <= 0xffff {
        v.push(0x80 | 126);
        v.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        v.push(0x80 | 127);
        v.extend_from_slice(&(n as u64).to_be_bytes());
    }
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawPeer<S> {
    /// Sends the upgrade request and reads the response head; returns the status code.
    pub async fn upgrade(io: S, authority: &str, path: &str, token: &str) -> (Self, u16) {
        let mut p = RawPeer {
            io,
            buf: BytesMut::new(),
            pending: Default::default(),
        };
        p.io.write_all(upgrade_request(authority, path, token).as_bytes())
            .await
            .unwrap();
        loop {
            if let Some(pos) = p.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&p.buf[..pos]).to_string();
                let _ = p.buf.split_to(pos + 4);
                let code: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                return (p, code);
            }
            let n = p.io.read_buf(&mut p.buf).await.unwrap();
            assert!(n > 0, "closed during upgrade");
        }
    }

    pub async fn send(&mut self, m: &Message) {
        let b = m.to_bytes().unwrap();
        self.send_raw(&b).await;
    }

    pub async fn send_raw(&mut self, grid_bytes: &[u8]) {
        self.io.write_all(&client_frame(grid_bytes)).await.unwrap();
    }

    /// Reads one (unmasked, unfragmented) frame's payload; `None` on EOF.
    pub async fn recv_frame(&mut self) -> Option<Bytes> {
        loop {
            if self.buf.len() >= 2 {
                let len7 = (self.buf[1] & 0x7f) as usize;
                let (len, hl) = match len7 {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(a) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n, 2),
                };
                if len != usize::MAX && self.buf.len() >= hl + len {
                    let _ = self.buf.split_to(hl);
                    return Some(self.buf.split_to(len).freeze());
                }
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads the next message (splitting merged frames); `None` on EOF or garbage. Cancel-safe:
    /// partial frames stay buffered.
    pub async fn recv_msg(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            let f = self.recv_frame().await?;
            for m in nodegrid::wire::split_frame(f, &Default::default()).ok()? {
                self.pending.push_back(m.ok()?);
            }
        }
    }

    /// Reads messages (splitting merged frames) until one has `op`; `None` on EOF or garbage.
    pub async fn recv_op(&mut self, op: Op) -> Option<Message> {
        loop {
            while let Some(m) = self.pending.pop_front() {
                if m.op == op {
                    return Some(m);
                }
            }
            let f = self.recv_frame().await?;
            for m in nodegrid::wire::split_frame(f, &Default::default()).ok()? {
                self.pending.push_back(m.ok()?);
            }
        }
    }

    /// Sends Connect and returns the response.
    pub async fn handshake(&mut self, host: &str, token: &str, time: GridTime) -> ConnectResponse {
        let mut m = Message::new(Op::Connect, 0);
        m.payload = ConnectRequest {
            id: [7; 16],
            host: host.to_string(),
            time,
            token: token.to_string(),
        }
        .encode();
        self.send(&m).await;
        let f = self.recv_frame().await.expect("connect response");
        let r = Message::decode(&f).unwrap();
        assert_eq!(r.op, Op::ConnectResponse);
        ConnectResponse::decode(&r.payload).unwrap()
    }
}

/// A host string that dials `node` (so `node` accepts it), not equal to any in `taken`.
pub fn dialing_host_for(node: &str, taken: &[String]) -> String {
    for port in 20000..30000 {
        let h = format!("http://127.0.0.2:{port}");
        if !taken.contains(&h) && nodegrid::wire::should_dial(&h, node) {
            return h;
        }
    }
    unreachable!("no dialing host found")
}

/// A host string that `node` dials (so `node` rejects it as acceptor).
pub fn dialed_host_for(node: &str, taken: &[String]) -> String {
    for port in 20000..30000 {
        let h = format!("http://127.0.0.3:{port}");
        if !taken.contains(&h) && nodegrid::wire::should_dial(node, &h) {
            return h;
        }
    }
    unreachable!("no dialed host found")
}
