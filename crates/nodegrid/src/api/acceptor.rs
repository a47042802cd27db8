//! The accepting side of the grid handshake (PROTOCOL.md §4.2): reads the Connect message of
//! an upgraded connection, checks it (the rules are in `proto::handshake`), answers, and
//! starts the session on the connection of the claimed host. The transport's upgrade endpoint
//! hands connections here through its `UpgradeHandler` trait.

use crate::api::common::Common;
use crate::api::connection::ConnShared;
use crate::proto::handshake::{check_connect, AcceptContext};
use crate::stats::ConnCounters;
use crate::transport::endpoint::{PeerInfo, UpgradeHandler};
use crate::transport::identity::check_peer_identity;
use crate::transport::upgrade::{self as handshake, DialError};
use crate::transport::ws::{FrameDecoder, Role};
use crate::transport::IoHalves;
use crate::wire::{ConnectRequest, ConnectResponse, Message, Op};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::time::Instant;

/// What the acceptor needs: the node's shared state and its connections by host string.
pub(crate) struct Acceptor {
    pub(crate) common: Arc<Common>,
    pub(crate) conns: Arc<HashMap<String, Arc<ConnShared>>>,
}

impl UpgradeHandler for Acceptor {
    fn upgraded(
        self: Arc<Self>,
        io: IoHalves,
        leftover: BytesMut,
        peer: PeerInfo,
        deadline: Instant,
    ) -> BoxFuture<'static, bool> {
        Box::pin(async move { accept_grid(&self, io, leftover, peer, deadline).await })
    }
}

/// Runs the acceptor's half of the grid handshake (§4.2) and starts the session; returns
/// whether it did.
async fn accept_grid(
    mgr: &Acceptor,
    mut io: IoHalves,
    leftover: BytesMut,
    peer: PeerInfo,
    deadline: Instant,
) -> bool {
    let common = &mgr.common;
    let limits = common.limits();
    let mut dec = FrameDecoder::new(Role::Acceptor, limits.max_frame_size());
    let mut buf = leftover;
    let first = match tokio::time::timeout_at(
        deadline,
        handshake::read_first_message(&mut io.read, &mut buf, &mut dec),
    )
    .await
    {
        Err(_) => {
            tracing::debug!(local = %common.local, "grid handshake timed out");
            return false;
        }
        // A peer that hangs up before sending Connect gets nothing (§11 item 30).
        Ok(Ok(None)) => return false,
        Ok(Err(DialError::Io(e))) if e.kind() == io::ErrorKind::UnexpectedEof => return false,
        Ok(Err(e)) => {
            reject(common, &mut io, format!("reading connect: {e}"), deadline).await;
            return false;
        }
        Ok(Ok(Some((b, _binary)))) => b,
    };
    let first_len = first.len();
    let ctx = AcceptContext {
        local: &common.local,
        hosts: &common.hosts,
        auth: &common.auth,
        max_skew: common.cfg.max_clock_skew,
        now: SystemTime::now(),
    };
    let decoded = Message::decode_with(&first, &limits);
    let req = match check_connect(decoded, &ctx) {
        Ok(r) => r,
        Err(reason) => {
            if let Some(c) = mgr.conns.get(peer_host(&first).as_deref().unwrap_or("")) {
                ConnCounters::add(&c.link.counters.handshake_failures, 1);
                c.note_error(&format!("incoming connection rejected: {reason}"));
            }
            tracing::debug!(local = %common.local, "grid handshake rejected: {reason}");
            reject(common, &mut io, reason, deadline).await;
            return false;
        }
    };
    let Some(conn) = mgr.conns.get(&req.host) else {
        reject(
            common,
            &mut io,
            format!("unknown incoming host: {}", req.host),
            deadline,
        )
        .await;
        return false;
    };
    // With mTLS, the claimed host must be a name of the client certificate (§2.5).
    if let Some(cert) = &peer.cert {
        if let Err(reason) = check_peer_identity(cert, &conn.target) {
            ConnCounters::add(&conn.link.counters.handshake_failures, 1);
            conn.note_error(&format!("incoming connection rejected: {reason}"));
            reject(common, &mut io, reason, deadline).await;
            return false;
        }
    }
    // Two processes with one host string would replace each other's sessions without pause.
    if let Err(reason) = conn.admit_instance(req.id) {
        ConnCounters::add(&conn.link.counters.handshake_failures, 1);
        reject(common, &mut io, reason, deadline).await;
        return false;
    }
    let resp = ConnectResponse {
        id: common.instance_id,
        accepted: true,
        rejected_reason: String::new(),
    };
    let mut m = Message::new(Op::ConnectResponse, 0);
    m.payload = resp.encode();
    let Ok(bytes) = m.to_bytes() else {
        return false;
    };
    let wrote = tokio::time::timeout_at(
        deadline,
        handshake::write_message(&mut io.write, &bytes, Role::Acceptor),
    )
    .await;
    if !matches!(wrote, Ok(Ok(()))) {
        return false;
    }
    let c = &conn.link.counters;
    ConnCounters::add(&c.bytes_in, first_len as u64);
    ConnCounters::add(&c.msgs_in, 1);
    ConnCounters::add(&c.bytes_out, bytes.len() as u64);
    ConnCounters::add(&c.msgs_out, 1);
    conn.start_session(io, buf, Role::Acceptor, req.id);
    true
}

/// The claimed host of a Connect message, for attributing a rejection to a connection.
fn peer_host(first: &Bytes) -> Option<String> {
    let m = Message::decode(first).ok()?;
    ConnectRequest::decode(&m.payload).ok().map(|r| r.host)
}

async fn reject(common: &Common, io: &mut IoHalves, reason: String, deadline: Instant) {
    let resp = ConnectResponse {
        id: common.instance_id,
        accepted: false,
        rejected_reason: reason,
    };
    let mut m = Message::new(Op::ConnectResponse, 0);
    m.payload = resp.encode();
    if let Ok(b) = m.to_bytes() {
        let _ = tokio::time::timeout_at(
            deadline,
            handshake::write_message(&mut io.write, &b, Role::Acceptor),
        )
        .await;
    }
    let _ =
        tokio::time::timeout_at(deadline, tokio::io::AsyncWriteExt::shutdown(&mut io.write)).await;
}
