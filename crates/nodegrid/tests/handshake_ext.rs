//! nodegrid's handshake extension (PROTOCOL.md §3.6) is invisible to a MinIO peer:
//!
//! * a Connect and a ConnectResponse with the extension, read the way a MinIO peer reads them
//!   (a decoder written here from §3.6 alone: any map form, str or bin keys, known keys by
//!   name, every other key skipped whatever its type), give exactly the reference's fields;
//! * a real nodegrid dialer's upgrade request carries the reference's headers in the
//!   reference's order, its one extra header last, and it connects to an acceptor that answers
//!   as MinIO does (no extension);
//! * a nodegrid acceptor answers a Connect without the extension with the reference's bytes;
//! * between nodegrid nodes, each learns the other's `max_message_size`.

mod common;
#[path = "common/fake_acceptor.rs"]
mod fake_acceptor;

use common::rawpeer::{dialing_host_for, RawPeer};
use nodegrid::auth::Auth;
use nodegrid::wire::{ConnectRequest, ConnectResponse, GridTime, Message, NodegridExt, Op};
use nodegrid::{GridConfig, Manager};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// A MessagePack reader as a MinIO peer uses one for these payloads, written from PROTOCOL.md
/// §3.6 without the crate's own reader.
struct MinioReader<'a> {
    b: &'a [u8],
    p: usize,
}

#[derive(Debug, PartialEq)]
enum Field {
    Str(String),
    Bin(Vec<u8>),
    Bool(bool),
    /// A timestamp: seconds, nanoseconds.
    Time(i64, u32),
}

impl<'a> MinioReader<'a> {
    fn byte(&mut self) -> u8 {
        let v = self.b[self.p];
        self.p += 1;
        v
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        s
    }
    fn be(&mut self, n: usize) -> u64 {
        self.take(n).iter().fold(0, |a, &x| (a << 8) | x as u64)
    }
    fn map_len(&mut self) -> usize {
        match self.byte() {
            b @ 0x80..=0x8f => (b & 0x0f) as usize,
            0xde => self.be(2) as usize,
            0xdf => self.be(4) as usize,
            b => panic!("not a map: {b:#x}"),
        }
    }
    /// A str or bin (keys may be either).
    fn raw(&mut self) -> &'a [u8] {
        let n = match self.byte() {
            b @ 0xa0..=0xbf => (b & 0x1f) as usize,
            0xd9 | 0xc4 => self.be(1) as usize,
            0xda | 0xc5 => self.be(2) as usize,
            0xdb | 0xc6 => self.be(4) as usize,
            b => panic!("not a str or bin: {b:#x}"),
        };
        self.take(n)
    }
    fn value(&mut self) -> Field {
        match self.b[self.p] {
            0xc2 | 0xc3 => Field::Bool(self.byte() == 0xc3),
            0xc4..=0xc6 => Field::Bin(self.raw().to_vec()),
            0xa0..=0xbf | 0xd9..=0xdb => {
                Field::Str(String::from_utf8(self.raw().to_vec()).unwrap())
            }
            0xc7 => {
                self.p += 1;
                assert_eq!(self.byte(), 12, "time ext length");
                assert_eq!(self.byte(), 5, "msgp time ext type");
                Field::Time(self.be(8) as i64, self.be(4) as u32)
            }
            b => panic!("unexpected value type {b:#x}"),
        }
    }
    /// Skips any value, as a reader does for a key it does not know.
    fn skip(&mut self) {
        let b = self.byte();
        let (n, children) = match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
            0x80..=0x8f => (0, 2 * (b & 0x0f) as usize),
            0x90..=0x9f => (0, (b & 0x0f) as usize),
            0xa0..=0xbf => ((b & 0x1f) as usize, 0),
            0xcc | 0xd0 => (1, 0),
            0xcd | 0xd1 => (2, 0),
            0xce | 0xd2 | 0xca => (4, 0),
            0xcf | 0xd3 | 0xcb => (8, 0),
            0xc4 | 0xd9 => (self.be(1) as usize, 0),
            0xc5 | 0xda => (self.be(2) as usize, 0),
            0xc6 | 0xdb => (self.be(4) as usize, 0),
            0xd4..=0xd8 => (1 + (1usize << (b - 0xd4)), 0),
            0xc7 => (self.be(1) as usize + 1, 0),
            0xc8 => (self.be(2) as usize + 1, 0),
            0xc9 => (self.be(4) as usize + 1, 0),
            0xdc => (0, self.be(2) as usize),
            0xdd => (0, self.be(4) as usize),
            0xde => (0, 2 * self.be(2) as usize),
            0xdf => (0, 2 * self.be(4) as usize),
            _ => panic!("invalid type {b:#x}"),
        };
        self.take(n);
        for _ in 0..children {
            self.skip();
        }
    }
}

/// Reads a payload map keeping only `known` keys, as MinIO does; returns them and the keys it
/// skipped. Panics unless the map ends exactly at the payload's end.
fn minio_decode(payload: &[u8], known: &[&str]) -> (Vec<(String, Field)>, Vec<String>) {
    let mut r = MinioReader { b: payload, p: 0 };
    let (mut kept, mut skipped) = (Vec::new(), Vec::new());
    for _ in 0..r.map_len() {
        let key = String::from_utf8(r.raw().to_vec()).unwrap();
        if known.contains(&key.as_str()) {
            let v = r.value();
            kept.push((key, v));
        } else {
            r.skip();
            skipped.push(key);
        }
    }
    assert_eq!(r.p, payload.len(), "the map is the whole payload");
    (kept, skipped)
}

const CONNECT_KEYS: &[&str] = &["ID", "Host", "Time", "Token"];
const RESPONSE_KEYS: &[&str] = &["ID", "Accepted", "RejectedReason"];
const EXT_KEYS: [&str; 4] = ["NgExt", "NgHosts", "NgHostIDs", "NgMaxMsg"];

fn sample_ext() -> NodegridExt {
    let hosts: Vec<String> = (1..=35)
        .map(|i| format!("http://10.0.0.{i}:9000"))
        .collect();
    NodegridExt::new(&hosts, 64 << 20)
}

#[test]
fn a_minio_peer_reads_a_connect_with_the_extension_as_one_without() {
    let req = ConnectRequest {
        id: core::array::from_fn(|i| i as u8),
        host: "http://10.0.0.1:9000".into(),
        time: GridTime {
            secs: 1_700_000_000,
            nanos: 123_456_789,
        },
        token: "debug".into(),
    };
    let plain = req.encode();
    let with = req.encode_with(Some(&sample_ext()));
    // Without the extension, the Appendix A bytes; with it, the same fields first.
    assert_eq!(plain[0], 0x84);
    assert_eq!(with[0], 0x88);
    assert_eq!(with[1..plain.len()], plain[1..]);
    let (kept, skipped) = minio_decode(&with, CONNECT_KEYS);
    assert_eq!(kept, minio_decode(&plain, CONNECT_KEYS).0);
    assert_eq!(
        kept,
        vec![
            ("ID".into(), Field::Bin((0..16).collect())),
            ("Host".into(), Field::Str("http://10.0.0.1:9000".into())),
            ("Time".into(), Field::Time(1_700_000_000, 123_456_789)),
            ("Token".into(), Field::Str("debug".into())),
        ]
    );
    assert_eq!(skipped, EXT_KEYS);
    // And nodegrid reads both.
    assert_eq!(ConnectRequest::decode(&with).unwrap(), req);
    assert_eq!(NodegridExt::decode(&with).unwrap(), Some(sample_ext()));
    assert_eq!(NodegridExt::decode(&plain).unwrap(), None);
}

#[test]
fn a_minio_peer_reads_a_connect_response_with_the_extension_as_one_without() {
    for (accepted, reason) in [(true, ""), (false, "host lists differ")] {
        let resp = ConnectResponse {
            id: [9; 16],
            accepted,
            rejected_reason: reason.into(),
        };
        let plain = resp.encode();
        let with = resp.encode_with(Some(&sample_ext()));
        let (kept, skipped) = minio_decode(&with, RESPONSE_KEYS);
        assert_eq!(kept, minio_decode(&plain, RESPONSE_KEYS).0);
        assert_eq!(
            kept,
            vec![
                ("ID".into(), Field::Bin(vec![9; 16])),
                ("Accepted".into(), Field::Bool(accepted)),
                ("RejectedReason".into(), Field::Str(reason.into())),
            ]
        );
        assert_eq!(skipped, EXT_KEYS);
        assert_eq!(ConnectResponse::decode(&with).unwrap(), resp);
    }
}

/// A nodegrid dialer against an acceptor that behaves as MinIO: the upgrade request is the
/// reference's plus one header at the end; the Connect reads as the reference's; an answer
/// without the extension connects, and no peer limit is known.
#[tokio::test]
async fn a_nodegrid_dialer_connects_to_an_acceptor_that_answers_as_minio() {
    common::init_tracing();
    let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_host = format!("http://{}", fake.local_addr().unwrap());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = format!("http://{}", l.local_addr().unwrap());
    // We need the node to dial the fake: pick the node's host string accordingly.
    let me = if nodegrid::wire::should_dial(&me, &fake_host) {
        me
    } else {
        // A host string that dials the fake; the node never listens, it only dials.
        (20000..30000)
            .map(|p| format!("http://127.0.0.4:{p}"))
            .find(|h| nodegrid::wire::should_dial(h, &fake_host))
            .unwrap()
    };
    drop(l);
    let m = Manager::builder(me.clone(), [me.clone(), fake_host.clone()])
        .auth(Auth::shared_token("t"))
        .build()
        .unwrap();
    let mut up = tokio::time::timeout(
        Duration::from_secs(10),
        fake_acceptor::accept_upgrade(&fake),
    )
    .await
    .unwrap();
    let names: Vec<&str> = up
        .head
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Host",
            "Upgrade",
            "Connection",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Key",
            "Authorization",
            "X-Minio-Time",
            "X-Nodegrid-Host"
        ]
    );
    assert_eq!(
        fake_acceptor::header(&up.head, "X-Nodegrid-Host"),
        Some(me.as_str())
    );
    let msg = Message::decode(&bytes::Bytes::from(up.connect.clone())).unwrap();
    assert_eq!(msg.op, Op::Connect);
    let (kept, skipped) = minio_decode(&msg.payload, CONNECT_KEYS);
    assert_eq!(kept[1], ("Host".into(), Field::Str(me.clone())));
    assert_eq!(kept[3], ("Token".into(), Field::Str("t".into())));
    assert_eq!(skipped, EXT_KEYS);
    let ext = NodegridExt::decode(&msg.payload).unwrap().unwrap();
    assert_eq!(
        ext.max_message_size,
        GridConfig::default().max_message_size as u64
    );
    assert_eq!(
        ext.hosts_fingerprint,
        NodegridExt::fingerprint(&[fake_host.clone(), me.clone()])
    );
    // MinIO's answer: the three reference fields only.
    let mut r = Message::new(Op::ConnectResponse, 0);
    r.payload = ConnectResponse {
        id: [5; 16],
        accepted: true,
        rejected_reason: String::new(),
    }
    .encode();
    fake_acceptor::write_frame(&mut up.io, &r.to_bytes().unwrap()).await;
    let c = m.connection(&fake_host).unwrap();
    c.wait_connected(Duration::from_secs(10)).await.unwrap();
    assert_eq!(c.peer_instance_id(), Some([5; 16]));
    assert_eq!(c.peer_max_message_size(), None);
    assert_eq!(
        c.last_error(),
        None,
        "no mismatch is claimed without a host list"
    );
    m.shutdown();
}

/// A dialer without the extension (as MinIO) gets the reference's ConnectResponse bytes.
#[tokio::test]
async fn a_nodegrid_acceptor_answers_a_minio_connect_with_the_reference_bytes() {
    common::init_tracing();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let me = format!("http://{addr}");
    let peer = dialing_host_for(&me, &[]);
    let m = Manager::builder(me.clone(), [me.clone(), peer.clone()])
        .auth(Auth::shared_token("t"))
        .build()
        .unwrap();
    tokio::spawn({
        let m = m.clone();
        async move { m.serve(l).await }
    });
    let s = TcpStream::connect(&addr).await.unwrap();
    let (mut p, code) = RawPeer::upgrade(s, &addr, "/minio/grid/v1", "t").await;
    assert_eq!(code, 101);
    let mut c = Message::new(Op::Connect, 0);
    c.payload = ConnectRequest {
        id: [7; 16],
        host: peer.clone(),
        time: GridTime::now(),
        token: "t".into(),
    }
    .encode();
    p.send(&c).await;
    let f = p.recv_frame().await.unwrap();
    let r = Message::decode(&f).unwrap();
    assert_eq!(r.op, Op::ConnectResponse);
    let want = ConnectResponse {
        id: m.instance_id(),
        accepted: true,
        rejected_reason: String::new(),
    }
    .encode();
    assert_eq!(r.payload, want);
    let conn = m.connection(&peer).unwrap();
    conn.wait_connected(Duration::from_secs(5)).await.unwrap();
    assert_eq!(conn.peer_max_message_size(), None);
    m.shutdown();
}

/// Between nodegrid nodes each side learns the other's `max_message_size`.
#[tokio::test]
async fn nodegrid_peers_learn_each_others_message_limit() {
    common::init_tracing();
    let (ls, hosts) = common::listeners(2, "http").await;
    let limits = [1 << 20, 3 << 20];
    let mut nodes = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let mut cfg = GridConfig::default();
        cfg.max_message_size = limits[i];
        let m = Manager::builder(hosts[i].clone(), hosts.clone())
            .auth(Auth::shared_token("t"))
            .config(cfg)
            .build()
            .unwrap();
        let m2 = m.clone();
        tokio::spawn(async move { m2.serve(l).await });
        nodes.push(m);
    }
    for (i, n) in nodes.iter().enumerate() {
        let c = n.connection(&hosts[1 - i]).unwrap();
        c.wait_connected(Duration::from_secs(10)).await.unwrap();
        assert_eq!(c.peer_max_message_size(), Some(limits[1 - i]));
        assert_eq!(c.last_error(), None);
    }
    for n in &nodes {
        n.shutdown();
    }
}
