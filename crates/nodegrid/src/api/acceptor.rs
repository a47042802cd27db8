//! The accepting side of the grid handshake (PROTOCOL.md §4.2): reads the Connect message of
//! an upgraded connection, checks it (the rules are in `proto::handshake`), answers, and
//! starts the session on the connection of the claimed host. The transport's upgrade endpoint
//! hands connections here through its `UpgradeHandler` trait, and tells it of upgrades it
//! refused. Every refusal that points at a misconfiguration is reported (`api::diagnose`);
//! and a peer that should dial us but does not is reported by [`await_dialer`].

use crate::api::common::Common;
use crate::api::connection::ConnShared;
use crate::api::diagnose::{
    host_list_details, host_lists_differ, refused_credentials_incoming, strict_refusal_reason,
    unknown_incoming_host, waiting_for, wrong_side_incoming, Outcome, Problem, Rejection, Stage,
};
use crate::auth::AuthError;
use crate::proto::handshake::{check_connect, AcceptContext};
use crate::proto::state::ConnState;
use crate::stats::ConnCounters;
use crate::transport::diagnose::{auth_failure, WarnLimiter, WARN_INTERVAL};
use crate::transport::endpoint::{PeerInfo, UpgradeHandler, UpgradeRefusal};
use crate::transport::identity::check_peer_identity;
use crate::transport::upgrade::{self as handshake, DialError};
use crate::transport::ws::{FrameDecoder, Role};
use crate::transport::IoHalves;
use crate::wire::{ConnectRequest, ConnectResponse, Message, NodegridExt, Op};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// How long a peer that dials us may take to connect before we say so (and again every
/// [`WARN_INTERVAL`] while it does not).
pub(crate) const DIALER_WAIT: Duration = Duration::from_secs(10);
/// Source addresses (or claimed hosts) remembered for rate-limiting warnings that belong to no
/// connection.
const UNATTRIBUTED_KEYS: usize = 1024;

/// What the acceptor needs: the node's shared state and its connections by host string.
pub(crate) struct Acceptor {
    pub(crate) common: Arc<Common>,
    pub(crate) conns: Arc<HashMap<String, Arc<ConnShared>>>,
    /// Warnings about refused connections that claim no host we know, per source address.
    unattributed: WarnLimiter<String>,
}

impl Acceptor {
    pub(crate) fn new(common: Arc<Common>, conns: Arc<HashMap<String, Arc<ConnShared>>>) -> Self {
        Acceptor {
            common,
            conns,
            unattributed: WarnLimiter::new(WARN_INTERVAL, UNATTRIBUTED_KEYS),
        }
    }

    /// Logs a problem that belongs to no connection, once per source address and kind per
    /// interval.
    fn warn_unattributed(
        &self,
        addr: Option<SocketAddr>,
        claimed: Option<&str>,
        kind: Problem,
        text: &str,
    ) {
        if self.common.shutdown.is_cancelled() {
            return;
        }
        let source = match (addr, claimed) {
            (Some(a), _) => a.ip().to_string(),
            (None, Some(h)) => h.to_string(),
            (None, None) => String::new(),
        };
        let key = format!("{kind:?} {source}");
        if let Some(suppressed) = self.unattributed.due(key) {
            tracing::warn!(local = %self.common.local, suppressed, "{text}");
        }
    }
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

    fn upgrade_refused(&self, r: UpgradeRefusal) {
        let claimed = r.claimed_host.as_deref();
        let text = refused_credentials_incoming(r.addr, claimed, Stage::Upgrade, &r.failure);
        // The claim is not authenticated: it names the connection, but only counts as its
        // last error while it has no live session.
        match claimed.and_then(|h| self.conns.get(h)) {
            Some(c) => c.note_claimed_problem(Problem::Credentials, &text),
            None => self.warn_unattributed(r.addr, claimed, Problem::Credentials, &text),
        }
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
            reject(
                common,
                &mut io,
                format!("reading connect: {e}"),
                None,
                deadline,
            )
            .await;
            return false;
        }
        Ok(Ok(Some((b, _binary)))) => b,
    };
    let first_len = first.len();
    let now = SystemTime::now();
    let ctx = AcceptContext {
        local: &common.local,
        hosts: &common.hosts,
        auth: &common.auth,
        max_skew: common.cfg.max_clock_skew,
        now,
    };
    let decoded = Message::decode_with(&first, &limits);
    // nodegrid's extension (§3.6): answered in kind, never sent to a peer that sent none.
    let peer_ext = decoded
        .as_ref()
        .ok()
        .filter(|m| m.op == Op::Connect)
        .and_then(|m| NodegridExt::decode(&m.payload).ok().flatten());
    let ours = peer_ext
        .as_ref()
        .map(|_| NodegridExt::new(&common.hosts, common.cfg.max_message_size));
    let req = match check_connect(decoded, &ctx) {
        Ok(r) => r,
        Err(reason) => {
            report_rejection(mgr, &peer, &first, &reason, now);
            tracing::debug!(local = %common.local, "grid handshake rejected: {reason}");
            reject(common, &mut io, reason, ours.as_ref(), deadline).await;
            return false;
        }
    };
    let Some(conn) = mgr.conns.get(&req.host) else {
        let reason = format!("unknown incoming host: {}", req.host);
        report_rejection(mgr, &peer, &first, &reason, now);
        reject(common, &mut io, reason, ours.as_ref(), deadline).await;
        return false;
    };
    // With mTLS, the claimed host must be a name of the client certificate (§2.5).
    if let Some(cert) = &peer.cert {
        if let Err(reason) = check_peer_identity(cert, &conn.target) {
            ConnCounters::add(&conn.link.counters.handshake_failures, 1);
            conn.note_problem(
                Problem::Tls,
                &format!("incoming connection rejected: {reason}"),
            );
            reject(common, &mut io, reason, ours.as_ref(), deadline).await;
            return false;
        }
    }
    // Host lists that differ: say what differs; refuse if configured to.
    let mismatch = peer_ext
        .as_ref()
        .filter(|x| !x.same_hosts(&common.hosts))
        .map(|x| host_list_details(&req.host, &common.local, &common.hosts, x));
    if let (Some(details), true) = (&mismatch, common.cfg.strict_host_list) {
        ConnCounters::add(&conn.link.counters.handshake_failures, 1);
        conn.note_problem(
            Problem::HostList,
            &host_lists_differ(&req.host, details, Outcome::RefusedHere),
        );
        let reason = strict_refusal_reason(&common.local);
        reject(common, &mut io, reason, ours.as_ref(), deadline).await;
        return false;
    }
    // Two processes with one host string would replace each other's sessions without pause.
    if let Err(reason) = conn.admit_instance(req.id) {
        ConnCounters::add(&conn.link.counters.handshake_failures, 1);
        reject(common, &mut io, reason, ours.as_ref(), deadline).await;
        return false;
    }
    let resp = ConnectResponse {
        id: common.instance_id,
        accepted: true,
        rejected_reason: String::new(),
    };
    let mut m = Message::new(Op::ConnectResponse, 0);
    m.payload = resp.encode_with(ours.as_ref());
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
    let peer_max = peer_ext
        .as_ref()
        .map(|x| usize::try_from(x.max_message_size).unwrap_or(usize::MAX));
    conn.start_session(io, buf, Role::Acceptor, req.id, peer_max);
    // After the start, which clears the last error: the mismatch stays visible there.
    if let Some(details) = mismatch {
        conn.note_problem(
            Problem::HostList,
            &host_lists_differ(&req.host, &details, Outcome::Connected),
        );
    }
    true
}

/// The Connect request of a first message, for attributing and explaining a rejection.
fn connect_of(first: &Bytes) -> Option<ConnectRequest> {
    let m = Message::decode(first).ok()?;
    ConnectRequest::decode(&m.payload).ok()
}

/// Reports a rejected Connect: on the connection of the claimed host when we know it, else
/// once per source address per interval. Malformed first messages only reach DEBUG unless
/// they name a connection.
fn report_rejection(mgr: &Acceptor, peer: &PeerInfo, first: &Bytes, reason: &str, now: SystemTime) {
    let common = &mgr.common;
    let req = connect_of(first);
    let claimed = req.as_ref().map(|r| r.host.as_str());
    let conn = claimed.and_then(|h| mgr.conns.get(h));
    if let Some(c) = conn {
        ConnCounters::add(&c.link.counters.handshake_failures, 1);
    }
    let (kind, text) = match (Rejection::of(reason), &req) {
        (Rejection::Credentials, Some(r)) => {
            let err = if Rejection::is_clock(reason) {
                AuthError::ClockSkew(String::new())
            } else {
                common
                    .auth
                    .validate(&r.token)
                    .err()
                    .unwrap_or(AuthError::InvalidToken)
            };
            let f = auth_failure(
                &err,
                Some(&r.token),
                Some(r.time.unix_nanos()),
                now,
                common.cfg.max_clock_skew,
            );
            (
                Problem::Credentials,
                refused_credentials_incoming(peer.addr, claimed, Stage::Connect, &f),
            )
        }
        (Rejection::UnknownHost, Some(r)) => (
            Problem::UnknownHost,
            unknown_incoming_host(peer.addr, &r.host, &common.hosts),
        ),
        (Rejection::WrongSide, Some(r)) => (
            Problem::WrongSide,
            wrong_side_incoming(peer.addr, &r.host, &common.local),
        ),
        _ => (
            Problem::Rejected,
            format!("incoming connection rejected: {reason}"),
        ),
    };
    match conn {
        Some(c) => c.note_problem(kind, &text),
        None if kind != Problem::Rejected => mgr.warn_unattributed(peer.addr, claimed, kind, &text),
        None => {}
    }
}

async fn reject(
    common: &Common,
    io: &mut IoHalves,
    reason: String,
    ext: Option<&NodegridExt>,
    deadline: Instant,
) {
    let resp = ConnectResponse {
        id: common.instance_id,
        accepted: false,
        rejected_reason: reason,
    };
    let mut m = Message::new(Op::ConnectResponse, 0);
    m.payload = resp.encode_with(ext);
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

/// On the accepting side of a pair: while no session is live, says every so often that the
/// peer has not dialed us, with what to check (its host list must name us exactly). Runs until
/// shutdown.
pub(crate) async fn await_dialer(conn: Arc<ConnShared>) {
    let common = conn.common.clone();
    let mut rx = conn.state.subscribe();
    let mut wait = DIALER_WAIT;
    loop {
        // Some(true): shut down; Some(false): connected; None: not within `wait`.
        let r = tokio::select! {
            r = tokio::time::timeout(
                wait,
                rx.wait_for(|s| s.is_connected() || matches!(s, ConnState::Shutdown)),
            ) => r.map(|r| r.map(|s| matches!(*s, ConnState::Shutdown))),
            _ = common.shutdown.cancelled() => return,
        };
        match r {
            Ok(Ok(false)) => {
                // Connected: wait for the session to end, then give the peer its time again.
                let ended = tokio::select! {
                    r = rx.wait_for(|s| !s.is_connected()) => {
                        r.map(|s| matches!(*s, ConnState::Shutdown))
                    }
                    _ = common.shutdown.cancelled() => return,
                };
                if !matches!(ended, Ok(false)) {
                    return;
                }
                wait = DIALER_WAIT;
            }
            Ok(_) => return,
            Err(_) => {
                conn.note_problem(Problem::Waiting, &waiting_for(conn.remote(), &common.local));
                wait = WARN_INTERVAL;
            }
        }
    }
}
