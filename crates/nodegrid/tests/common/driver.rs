//! A raw grid peer driven by its own task (see [`Driver`]), for tests that play one side of
//! the protocol by hand on a [`MemoryNetwork`].
#![allow(dead_code)]

use super::rawpeer::RawPeer;
use nodegrid::transport::MemoryNetwork;
use nodegrid::wire::{GridTime, Message, Op, PingPayload, PongPayload};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

/// How the raw peer answers stream pings (it always answers connection pings).
#[derive(Clone, Copy)]
pub enum StreamPongs {
    Never,
    NotFound,
    Error,
}

/// A raw peer driven by its own task: connection pings are answered there, every other
/// message is handed to the test, and the test's messages are sent.
pub struct Driver {
    pub from_node: mpsc::UnboundedReceiver<Message>,
    pub to_node: mpsc::UnboundedSender<Message>,
    /// Connection pongs carry the ping's time minus this many nanoseconds (a negative value:
    /// a time in the future), to make the node's RTT metric read what a test wants.
    pub pong_shift_ns: Arc<AtomicI64>,
}

impl Driver {
    /// Dials `host` on `net` as `fake`, upgrades and completes the grid handshake.
    pub async fn connect(
        net: &MemoryNetwork,
        fake: &str,
        host: &str,
        token: &str,
        pongs: StreamPongs,
    ) -> Driver {
        let io = net.connect_raw(fake, host).unwrap();
        let (p, code) = RawPeer::upgrade(io, "node0:9000", "/minio/grid/v1", token).await;
        assert_eq!(code, 101);
        Self::handshake(p, fake, token, pongs).await
    }

    /// Completes the grid handshake on an upgraded peer and starts driving it.
    pub async fn handshake(
        mut p: RawPeer<DuplexStream>,
        fake: &str,
        token: &str,
        pongs: StreamPongs,
    ) -> Driver {
        let r = p.handshake(fake, token, GridTime::now()).await;
        assert!(r.accepted, "{}", r.rejected_reason);
        let (in_tx, from_node) = mpsc::unbounded_channel();
        let (to_node, out_rx) = mpsc::unbounded_channel();
        let pong_shift_ns = Arc::new(AtomicI64::new(0));
        tokio::spawn(run(p, pongs, pong_shift_ns.clone(), in_tx, out_rx));
        Driver {
            from_node,
            to_node,
            pong_shift_ns,
        }
    }

    pub fn send(&self, m: Message) {
        self.to_node.send(m).expect("raw peer task alive");
    }

    /// Every message received within `d` (the connection's own pings excepted).
    pub async fn collect_for(&mut self, d: Duration) -> Vec<Message> {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(d, async {
            while let Some(m) = self.from_node.recv().await {
                got.push(m);
            }
            std::future::pending::<()>().await
        })
        .await;
        got
    }

    /// The next message with `op` (bounded in time), and those skipped before it.
    pub async fn next(&mut self, op: Op, limit: Duration) -> (Message, Vec<Message>) {
        let mut skipped = Vec::new();
        let r = tokio::time::timeout(limit, async {
            loop {
                let m = self.from_node.recv().await.expect("node closed the socket");
                if m.op == op {
                    return m;
                }
                skipped.push(m);
            }
        })
        .await;
        match r {
            Ok(m) => (m, skipped),
            Err(_) => panic!("no {op:?} within {limit:?}; got {skipped:?}"),
        }
    }
}

async fn run(
    mut p: RawPeer<DuplexStream>,
    pongs: StreamPongs,
    shift: Arc<AtomicI64>,
    in_tx: mpsc::UnboundedSender<Message>,
    mut out_rx: mpsc::UnboundedReceiver<Message>,
) {
    loop {
        tokio::select! {
            m = p.recv_msg() => {
                let Some(m) = m else { return };
                if m.op == Op::Ping && m.mux_id == 0 {
                    let t = PingPayload::decode(&m.payload).unwrap_or_default().t;
                    let shift = shift.load(Ordering::SeqCst) as i128;
                    let t = if shift == 0 || t.is_zero() {
                        t
                    } else {
                        GridTime::from_unix_nanos(t.unix_nanos() - shift)
                    };
                    let mut pong = m.clone();
                    pong.op = Op::Pong;
                    pong.payload = PongPayload { t, ..Default::default() }.encode();
                    p.send(&pong).await;
                    continue;
                }
                if m.op == Op::Ping {
                    let payload = match pongs {
                        StreamPongs::Never => None,
                        StreamPongs::NotFound => Some(PongPayload {
                            not_found: true,
                            ..Default::default()
                        }),
                        StreamPongs::Error => Some(PongPayload {
                            err: Some("stream lost in a test".to_string()),
                            ..Default::default()
                        }),
                    };
                    if let Some(pl) = payload {
                        let mut pong = Message::new(Op::Pong, m.mux_id);
                        pong.seq = m.seq;
                        pong.payload = pl.encode();
                        p.send(&pong).await;
                    }
                }
                if in_tx.send(m).is_err() {
                    return;
                }
            }
            m = out_rx.recv() => {
                let Some(m) = m else { return };
                p.send(&m).await;
            }
        }
    }
}
