//! The dialing side's loop (PROTOCOL.md §4.6): dial, upgrade, grid handshake, serve the
//! session until it ends, redial. A failed attempt is explained (`api::diagnose`): the
//! connection's last error and, once per kind of problem per 30 s, a WARN line.

use crate::api::connection::ConnShared;
use crate::api::diagnose::{
    dial_failure, host_list_details, host_lists_differ, DialContext, Outcome, Problem,
};
use crate::auth::time_header_value;
use crate::proto::backoff::redial_delay;
use crate::proto::state::ConnState;
use crate::session::Session;
use crate::stats::ConnCounters;
use crate::transport::upgrade::{self as handshake, DialError};
use crate::transport::ws::{FrameDecoder, Role};
use crate::wire::{ConnectRequest, ConnectResponse, GridTime, Message, NodegridExt, Op};
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
            Err(f) => {
                ConnCounters::add(&conn.link.counters.handshake_failures, 1);
                let cx = DialContext {
                    peer: conn.remote(),
                    local: &common.local,
                    hosts: &common.hosts,
                    target: &conn.target,
                    route: &common.route,
                    peer_ext: f.peer_ext.as_ref(),
                };
                let (kind, text) = dial_failure(&cx, &f.err);
                conn.note_problem(kind, &text);
                conn.state
                    .send_replace(ConnState::Disconnected(f.err.to_string()));
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

/// A failed attempt, and what the acceptor's answer told about it.
struct DialFailure {
    err: DialError,
    /// The acceptor's extension fields, when its ConnectResponse carried them.
    peer_ext: Option<NodegridExt>,
}

impl From<DialError> for DialFailure {
    fn from(err: DialError) -> Self {
        DialFailure {
            err,
            peer_ext: None,
        }
    }
}

async fn dial_once(conn: &Arc<ConnShared>) -> Result<Arc<Session>, DialFailure> {
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
            &common.local,
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
    // nodegrid's extension (§3.6): our host list's fingerprint and our message limit.
    let ours = NodegridExt::new(&common.hosts, cfg.max_message_size);
    let mut m = Message::new(Op::Connect, 0);
    m.payload = req.encode_with(Some(&ours));
    let connect = m
        .to_bytes()
        .map_err(|e| DialError::BadResponse(e.to_string()))?;
    let limits = common.limits();
    let (resp, peer_ext, buf) = tokio::time::timeout(cfg.handshake_timeout, async {
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
        // An extension we cannot read is treated as absent.
        let peer_ext = NodegridExt::decode(&msg.payload).ok().flatten();
        Ok((resp, peer_ext, buf))
    })
    .await
    .map_err(|_| DialError::Timeout(cfg.handshake_timeout))??;
    if !resp.accepted {
        return Err(DialFailure {
            err: DialError::Rejected(resp.rejected_reason),
            peer_ext,
        });
    }
    let peer = conn.remote();
    let mismatch = peer_ext
        .as_ref()
        .filter(|x| !x.same_hosts(&common.hosts))
        .map(|x| host_list_details(peer, &common.local, &common.hosts, x));
    if let (Some(details), true) = (&mismatch, cfg.strict_host_list) {
        // Dropping the socket ends the acceptor's new session at once.
        let text = host_lists_differ(peer, details, Outcome::RefusedHere);
        return Err(DialFailure {
            err: DialError::HostList(text),
            peer_ext,
        });
    }
    let peer_max = peer_ext
        .as_ref()
        .map(|x| usize::try_from(x.max_message_size).unwrap_or(usize::MAX));
    let sess = conn.start_session(io, buf, Role::Dialer, resp.id, peer_max);
    // After the start, which clears the last error: the mismatch stays visible there.
    if let Some(details) = mismatch {
        conn.note_problem(
            Problem::HostList,
            &host_lists_differ(peer, &details, Outcome::Connected),
        );
    }
    Ok(sess)
}
