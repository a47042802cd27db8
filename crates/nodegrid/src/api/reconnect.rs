//! The dialing side's loop (PROTOCOL.md §4.6): dial, upgrade, grid handshake, serve the
//! session until it ends, redial.

use crate::api::connection::ConnShared;
use crate::auth::time_header_value;
use crate::proto::backoff::redial_delay;
use crate::proto::state::ConnState;
use crate::session::Session;
use crate::stats::ConnCounters;
use crate::transport::upgrade::{self as handshake, DialError};
use crate::transport::ws::{FrameDecoder, Role};
use crate::wire::{ConnectRequest, ConnectResponse, GridTime, Message, Op};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::time::Instant;

/// The dialer's loop: connect, serve the session until it ends, redial (§4.6).
pub(crate) async fn dial_loop(conn: Arc<ConnShared>) {
    let common = conn.common.clone();
    let mut first = true;
    loop {
        if common.shutdown.is_cancelled() {
            break;
        }
        if first {
            conn.state.send_replace(ConnState::Connecting);
        }
        let start = Instant::now();
        let attempt = tokio::select! {
            r = dial_once(&conn) => r,
            _ = common.shutdown.cancelled() => break,
        };
        match attempt {
            Ok(sess) => {
                first = false;
                tokio::select! {
                    _ = sess.cancel.cancelled() => {}
                    _ = common.shutdown.cancelled() => break,
                }
                // Redial at once after a session ends.
            }
            Err(e) => {
                ConnCounters::add(&conn.link.counters.handshake_failures, 1);
                let text = e.to_string();
                conn.note_error(&text);
                conn.state.send_replace(ConnState::Disconnected(text));
                let u: f64 = rand::random();
                let next = start + redial_delay(u, common.cfg.redial_min, common.cfg.redial_max);
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = common.shutdown.cancelled() => break,
                }
            }
        }
    }
    conn.state.send_replace(ConnState::Shutdown);
}

async fn dial_once(conn: &Arc<ConnShared>) -> Result<Arc<Session>, DialError> {
    let common = &conn.common;
    let cfg = &common.cfg;
    let token = common.auth.token();
    let (mut io, leftover) = tokio::time::timeout(cfg.dial_timeout, async {
        let mut io = common.dialer.dial(&conn.target).await?;
        let leftover = handshake::client_upgrade(
            &mut io.read,
            &mut io.write,
            &conn.target.authority,
            &common.route,
            &token,
            &time_header_value(SystemTime::now()),
        )
        .await?;
        Ok::<_, DialError>((io, leftover))
    })
    .await
    .map_err(|_| DialError::Timeout(cfg.dial_timeout))??;

    let req = ConnectRequest {
        id: common.instance_id,
        host: common.local.to_string(),
        time: GridTime::now(),
        token,
    };
    let mut m = Message::new(Op::Connect, 0);
    m.payload = req.encode();
    let connect = m
        .to_bytes()
        .map_err(|e| DialError::BadResponse(e.to_string()))?;
    let limits = common.limits();
    let (peer, buf) = tokio::time::timeout(cfg.handshake_timeout, async {
        handshake::write_message(&mut io.write, &connect, Role::Dialer).await?;
        ConnCounters::add(&conn.link.counters.bytes_out, connect.len() as u64);
        ConnCounters::add(&conn.link.counters.msgs_out, 1);
        let mut buf = leftover;
        let mut dec = FrameDecoder::new(Role::Dialer, limits.max_frame_size());
        let (b, binary) = handshake::read_first_message(&mut io.read, &mut buf, &mut dec)
            .await?
            .ok_or_else(|| {
                DialError::BadResponse("connection closed before the connect response".into())
            })?;
        ConnCounters::add(&conn.link.counters.bytes_in, b.len() as u64);
        ConnCounters::add(&conn.link.counters.msgs_in, 1);
        if !binary {
            return Err(DialError::BadResponse(
                "connect response is not a binary message".into(),
            ));
        }
        let msg =
            Message::decode_with(&b, &limits).map_err(|e| DialError::BadResponse(e.to_string()))?;
        if msg.op != Op::ConnectResponse {
            return Err(DialError::BadResponse(format!("unexpected op {}", msg.op)));
        }
        let resp = ConnectResponse::decode(&msg.payload)
            .map_err(|e| DialError::BadResponse(e.to_string()))?;
        if !resp.accepted {
            return Err(DialError::Rejected(resp.rejected_reason));
        }
        Ok((resp.id, buf))
    })
    .await
    .map_err(|_| DialError::Timeout(cfg.handshake_timeout))??;
    Ok(conn.start_session(io, buf, Role::Dialer, peer))
}
