//! [`Connection`]: the long-lived link to one remote host. It survives reconnects; calls go
//! through whichever session is live. The dialing side runs the reconnect loop here.

use crate::auth::{time_header_value, Auth};
use crate::error::Error;
use crate::handler::Registry;
use crate::proto::backoff::redial_delay;
use crate::proto::state::ConnState;
use crate::stats::{ConnCounters, ConnectionStats, ErrorCounts};
use crate::stream::{StreamCall, StreamOptions};
use crate::transport::handshake::{self, DialError};
use crate::transport::session::{next_mux_id, Outgoing, Session, EXACT_DEADLINE_LIMIT};
use crate::transport::ws::{FrameDecoder, Role};
use crate::transport::{Dialer, Target};
use crate::wire::{
    ConnectRequest, ConnectResponse, Flags, GridTime, HandlerId, Limits, Message, Op, SubrouteId,
};
use crate::GridConfig;
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a repeated connection error of one peer is logged.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// What every connection of a manager shares.
pub(crate) struct Common {
    pub local: Arc<str>,
    pub hosts: Vec<String>,
    pub route: String,
    pub auth: Auth,
    pub cfg: GridConfig,
    pub instance_id: [u8; 16],
    pub registry: Registry,
    pub dialer: Arc<dyn Dialer>,
    pub shutdown: CancellationToken,
    /// Set by [`crate::Manager::shutdown`] before `shutdown` fires: every call checks it, and
    /// an atomic load costs nothing where the token's `is_cancelled` takes a shared lock.
    pub stopped: std::sync::atomic::AtomicBool,
    pub local_tls: bool,
    pub handshake_permits: Arc<Semaphore>,
    pub observer: Option<crate::observe::Observer>,
    session_ids: AtomicU64,
}

impl Common {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        local: Arc<str>,
        hosts: Vec<String>,
        route: String,
        auth: Auth,
        cfg: GridConfig,
        dialer: Arc<dyn Dialer>,
        local_tls: bool,
        observer: Option<crate::observe::Observer>,
    ) -> Common {
        let permits = Arc::new(Semaphore::new(cfg.max_pending_handshakes));
        Common {
            local,
            hosts,
            route,
            auth,
            cfg,
            instance_id: *uuid::Uuid::new_v4().as_bytes(),
            registry: Registry::default(),
            dialer,
            shutdown: CancellationToken::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
            local_tls,
            handshake_permits: permits,
            observer,
            session_ids: AtomicU64::new(1),
        }
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.session_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_message_size: self.cfg.max_message_size,
        }
    }
}

pub(crate) struct ConnShared {
    pub(crate) common: Arc<Common>,
    pub(crate) remote: Arc<str>,
    pub(crate) target: Target,
    pub(crate) dials: bool,
    pub(crate) counters: ConnCounters,
    pub(crate) state: watch::Sender<ConnState>,
    pub(crate) session: ArcSwapOption<Session>,
    next_mux: AtomicU64,
    last_error: Mutex<Option<String>>,
    log_limiter: Mutex<(Option<Instant>, u64)>,
}

impl ConnShared {
    pub(crate) fn new(
        common: Arc<Common>,
        remote: &str,
        target: Target,
        dials: bool,
    ) -> ConnShared {
        // Start far from 1 so MinIO's small sequential IDs never meet ours (§12.4), within
        // [2^31, 2^32) to keep 5-byte encodings.
        let start = rand::random::<u32>() | 0x8000_0000;
        ConnShared {
            common,
            remote: Arc::from(remote),
            target,
            dials,
            counters: ConnCounters::default(),
            state: watch::channel(ConnState::Unconnected).0,
            session: ArcSwapOption::empty(),
            next_mux: AtomicU64::new(start as u64),
            last_error: Mutex::new(None),
            log_limiter: Mutex::new((None, 0)),
        }
    }

    /// Makes `sess` the live session, replacing (and ending) any previous one (§2.7).
    pub(crate) fn install(&self, sess: &Arc<Session>) {
        let old = self.session.swap(Some(sess.clone()));
        let n = self.counters.connects.fetch_add(1, Ordering::Relaxed);
        if n > 0 {
            self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.last_connect_unix_ms.store(
            (GridTime::now().unix_nanos() / 1_000_000) as u64,
            Ordering::Relaxed,
        );
        *self.last_error.lock() = None;
        self.state.send_replace(ConnState::Connected);
        tracing::info!(local = %self.common.local, remote = %self.remote, "connected");
        if let Some(old) = old {
            old.end("replaced by a new session");
        }
    }

    /// Called once by a session that ended.
    pub(crate) fn session_ended(&self, sess: &Arc<Session>, reason: &str) {
        let prev = self
            .session
            .compare_and_swap(&Some(sess.clone()), None::<Arc<Session>>);
        let was_current = prev.as_ref().is_some_and(|p| Arc::ptr_eq(p, sess));
        if was_current {
            let state = if self.common.shutdown.is_cancelled() {
                ConnState::Shutdown
            } else {
                ConnState::Disconnected(reason.to_string())
            };
            self.state.send_replace(state);
            self.note_error(&format!("session ended: {reason}"));
        }
    }

    /// Records an error and logs it, at most once per interval per peer.
    pub(crate) fn note_error(&self, e: &str) {
        *self.last_error.lock() = Some(e.to_string());
        if self.common.shutdown.is_cancelled() {
            return;
        }
        let mut lim = self.log_limiter.lock();
        let now = Instant::now();
        let due = lim
            .0
            .is_none_or(|t| now.duration_since(t) >= ERROR_LOG_INTERVAL);
        if due {
            let suppressed = lim.1;
            *lim = (Some(now), 0);
            drop(lim);
            tracing::warn!(local = %self.common.local, remote = %self.remote, suppressed, "grid connection: {e}");
        } else {
            lim.1 += 1;
        }
    }

    fn next_mux(&self) -> u64 {
        next_mux_id(&self.next_mux)
    }

    fn current(&self) -> Result<Arc<Session>, Error> {
        if self.common.stopped.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        match self.session.load_full() {
            Some(s) if !s.is_ended() => Ok(s),
            _ => Err(Error::Disconnected),
        }
    }
}

/// Options of a single request.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    timeout: Option<Duration>,
}

impl CallOptions {
    /// Default options: the manager's default deadline (60 s).
    pub fn new() -> Self {
        Self::default()
    }

    /// The call's deadline, sent to the callee as DeadlineMS.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
}

/// Live mux entries of a connection's current session (for leak checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MuxCounts {
    /// Our calls in flight (singles and streams).
    pub outgoing: usize,
    /// The peer's single requests being handled.
    pub incoming_singles: usize,
    /// The peer's streams being handled.
    pub incoming_streams: usize,
    /// Single-request handlers running.
    pub running_handlers: usize,
}

/// The link to one remote host. Cheap to clone.
///
/// ```no_run
/// # async fn f(conn: nodegrid::Connection) -> Result<(), nodegrid::Error> {
/// use std::time::Duration;
/// conn.wait_connected(Duration::from_secs(5)).await?;
/// let reply = conn.request(78, "hello").await?;
/// assert_eq!(&reply[..], b"hello");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Arc<ConnShared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.inner.remote)
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

struct SingleGuard<'a> {
    sess: &'a Arc<Session>,
    mux: u64,
    done: bool,
}

impl Drop for SingleGuard<'_> {
    fn drop(&mut self) {
        self.sess.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.done && self.sess.outgoing.remove(self.mux).is_some() {
            // We gave up (timeout or drop): tell a nodegrid callee to stop the handler. MinIO
            // ignores it (§12.2), so this is wire-safe.
            let mut m = Message::new(Op::DisconnectServerMux, self.mux);
            m.flags = self.sess.base_flags;
            self.sess.send_control(m);
        }
    }
}

impl Connection {
    /// The remote host string.
    pub fn remote(&self) -> &str {
        &self.inner.remote
    }

    /// Whether this node dials the remote (the other side only accepts).
    pub fn is_dialer(&self) -> bool {
        self.inner.dials
    }

    /// The current state.
    pub fn state(&self) -> ConnState {
        self.inner.state.borrow().clone()
    }

    /// A receiver that observes every state change.
    pub fn watch_state(&self) -> watch::Receiver<ConnState> {
        self.inner.state.subscribe()
    }

    /// Waits until a session is live, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        let mut rx = self.inner.state.subscribe();
        let r = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| matches!(s, ConnState::Connected | ConnState::Shutdown)),
        )
        .await;
        match r {
            Ok(Ok(s)) if s.is_connected() => Ok(()),
            Ok(_) => Err(Error::Shutdown),
            Err(_) => Err(Error::DeadlineExceeded),
        }
    }

    /// The last connection error (dial failure, rejection reason, session end), if any since
    /// the last successful connect.
    pub fn last_error(&self) -> Option<String> {
        self.inner.last_error.lock().clone()
    }

    /// Sends a single request and returns the response bytes (absent responses read as
    /// empty). Uses the default deadline (60 s).
    pub async fn request(
        &self,
        handler: HandlerId,
        payload: impl Into<Bytes>,
    ) -> Result<Bytes, Error> {
        let p: Bytes = payload.into();
        self.call_inner(handler, None, Some(p), CallOptions::default())
            .await
            .map(Option::unwrap_or_default)
    }

    /// Sends a single request with options, distinguishing absent from empty payloads.
    pub async fn call(
        &self,
        handler: HandlerId,
        payload: Option<Bytes>,
        opts: CallOptions,
    ) -> Result<Option<Bytes>, Error> {
        self.call_inner(handler, None, payload, opts).await
    }

    /// A view of this connection that tags calls with a subroute (§3.6a).
    pub fn subroute(&self, name: impl Into<String>) -> Subroute {
        Subroute {
            conn: self.clone(),
            name: name.into(),
        }
    }

    /// Opens a stream to a streaming handler. The capacities come from the local registration
    /// of the same handler ID (as in the reference), or from [`StreamOptions::capacities`].
    pub async fn open_stream(
        &self,
        handler: HandlerId,
        payload: Option<Bytes>,
        opts: StreamOptions,
    ) -> Result<StreamCall, Error> {
        self.open_stream_inner(handler, None, payload, opts).await
    }

    pub(crate) async fn open_stream_inner(
        &self,
        handler: HandlerId,
        subroute: Option<&str>,
        payload: Option<Bytes>,
        opts: StreamOptions,
    ) -> Result<StreamCall, Error> {
        if handler == 0 {
            return Err(Error::UnknownHandler);
        }
        let caps = match opts.capacities {
            Some(c) => c,
            None => {
                let e = self
                    .inner
                    .common
                    .registry
                    .stream_for_caller(handler, subroute.is_some())
                    .ok_or(Error::UnknownHandler)?;
                (e.in_capacity as u32, e.out_capacity)
            }
        };
        self.check_size(payload.as_ref())?;
        let sess = self.inner.current()?;
        let mux = self.inner.next_mux();
        let sub = subroute.map(|s| SubrouteId::new(handler, s));
        crate::stream::open(sess, mux, caps, handler, sub, payload, opts.timeout).await
    }

    fn check_size(&self, payload: Option<&Bytes>) -> Result<(), Error> {
        let limits = self.inner.common.limits();
        match payload {
            Some(p) if p.len() > limits.max_payload() => Err(Error::TooLarge {
                size: p.len(),
                limit: limits.max_message_size,
            }),
            _ => Ok(()),
        }
    }

    pub(crate) async fn call_inner(
        &self,
        handler: HandlerId,
        subroute: Option<&str>,
        payload: Option<Bytes>,
        opts: CallOptions,
    ) -> Result<Option<Bytes>, Error> {
        let r = self.call_raw(handler, subroute, payload, opts).await;
        if let Err(e) = &r {
            self.inner.counters.record_error(e);
        }
        r
    }

    async fn call_raw(
        &self,
        handler: HandlerId,
        subroute: Option<&str>,
        payload: Option<Bytes>,
        opts: CallOptions,
    ) -> Result<Option<Bytes>, Error> {
        if handler == 0 {
            return Err(Error::UnknownHandler);
        }
        self.check_size(payload.as_ref())?;
        let cfg = &self.inner.common.cfg;
        let timeout = opts.timeout.unwrap_or(cfg.default_request_timeout);
        if timeout < Duration::from_millis(1) {
            return Err(Error::DeadlineExceeded);
        }
        let deadline = Instant::now() + timeout;
        let sess = self.inner.current()?;
        let mux = self.inner.next_mux();
        let (tx, mut rx) = oneshot::channel();
        // Long deadlines are enforced by the session's sweep, short ones by an exact timer:
        // no timer registration per call for the common 60 s default.
        let exact = timeout <= EXACT_DEADLINE_LIMIT;
        sess.outgoing
            .insert(mux, Outgoing::Single(tx, (!exact).then_some(deadline)))
            .map_err(|_| Error::Disconnected)?;
        sess.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut guard = SingleGuard {
            sess: &sess,
            mux,
            done: false,
        };
        ConnCounters::add(&self.inner.counters.requests_out, 1);
        let mut m = Message::new(Op::Request, mux);
        m.deadline_ms = timeout.as_millis().min(u32::MAX as u128) as u32;
        m.handler = handler;
        m.flags = sess.base_flags | Flags::EOF;
        // An empty request is sent as "no payload" (ZERO never set by the caller, §3.7).
        m.payload = payload.unwrap_or_default();
        m.subroute = subroute.map(|s| SubrouteId::new(handler, s));
        let wait = async {
            {
                // Queueing may wait for space; the sweep or a disconnect can end the call
                // meanwhile.
                let queued = sess.out.push_wait(m);
                tokio::pin!(queued);
                tokio::select! {
                    biased;
                    r = &mut rx => return r.map_err(|_| Error::Disconnected)?,
                    q = &mut queued => q.map_err(|_| Error::Disconnected)?,
                }
            }
            rx.await.map_err(|_| Error::Disconnected)?
        };
        let res = if exact {
            match tokio::time::timeout_at(deadline, wait).await {
                Ok(r) => r,
                Err(_) => return Err(Error::DeadlineExceeded),
            }
        } else {
            wait.await
        };
        // Answered, failed or expired by the session: the entry is gone, nothing to cancel.
        guard.done = true;
        res
    }

    /// Whether the live session adds CRC trailers (plaintext connections do, TLS ones do not,
    /// §3.5); `None` when not connected.
    pub fn crc_enabled(&self) -> Option<bool> {
        self.inner
            .session
            .load_full()
            .map(|s| s.base_flags.contains(Flags::CRC))
    }

    /// The peer manager's instance ID from the last handshake, if connected.
    pub fn peer_instance_id(&self) -> Option<[u8; 16]> {
        self.inner.session.load_full().map(|s| s.peer_instance)
    }

    /// A statistics snapshot.
    pub fn stats(&self) -> ConnectionStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let state = self.state();
        let (outgoing, incoming, queue) = match self.inner.session.load_full() {
            Some(s) => (
                s.outgoing.len() as u64,
                (s.incoming_singles.len() + s.incoming_streams.len()) as u64,
                s.out.len() as u64,
            ),
            None => (0, 0, 0),
        };
        ConnectionStats {
            remote: self.inner.remote.to_string(),
            state: state.to_string(),
            connected: state.is_connected(),
            dialer: self.inner.dials,
            connects: l(&c.connects),
            reconnects: l(&c.reconnects),
            messages_in: l(&c.msgs_in),
            messages_out: l(&c.msgs_out),
            bytes_in: l(&c.bytes_in),
            bytes_out: l(&c.bytes_out),
            ws_messages_out: l(&c.ws_messages_out),
            requests_out: l(&c.requests_out),
            requests_in: l(&c.requests_in),
            streams_out: l(&c.streams_out),
            streams_in: l(&c.streams_in),
            outgoing_in_flight: outgoing,
            incoming_in_flight: incoming,
            outbound_queue: queue,
            last_rtt_us: l(&c.last_rtt_ns) / 1000,
            max_rtt_us: l(&c.max_rtt_ns) / 1000,
            last_pong_unix_ms: l(&c.last_pong_unix_ms),
            last_connect_unix_ms: l(&c.last_connect_unix_ms),
            errors: ErrorCounts {
                disconnected: l(&c.err_disconnected),
                remote: l(&c.err_remote),
                deadline: l(&c.err_deadline),
                cancelled: l(&c.err_cancelled),
                other: l(&c.err_other),
            },
            handshake_failures: l(&c.handshake_failures),
            protocol_errors: l(&c.protocol_errors),
            rejected_over_limit: l(&c.rejected_over_limit),
            last_error: self.last_error(),
        }
    }

    /// Live mux entries of the current session (all zero when not connected).
    pub fn mux_counts(&self) -> MuxCounts {
        match self.inner.session.load_full() {
            Some(s) => MuxCounts {
                outgoing: s.outgoing.len(),
                incoming_singles: s.incoming_singles.len(),
                incoming_streams: s.incoming_streams.len(),
                running_handlers: s.running.load(Ordering::Relaxed),
            },
            None => MuxCounts::default(),
        }
    }

    /// Sets the next mux ID this node uses towards the peer. Only for tests that need two
    /// nodes to use the same mux number (PROTOCOL.md §11 item 31).
    #[doc(hidden)]
    pub fn set_next_mux_id(&self, id: u64) {
        self.inner.next_mux.store(id, Ordering::Relaxed);
    }

    /// Ends the live session as if the socket had died (the dialer then reconnects). For
    /// tests and operational tooling.
    pub fn kill_session(&self) {
        if let Some(s) = self.inner.session.load_full() {
            s.end("session killed locally");
        }
    }
}

/// A view of a [`Connection`] whose calls carry a subroute (§3.6a).
#[derive(Debug, Clone)]
pub struct Subroute {
    conn: Connection,
    name: String,
}

impl Subroute {
    /// The subroute string.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A nested subroute (`parent/child`).
    pub fn subroute(&self, child: &str) -> Subroute {
        Subroute {
            conn: self.conn.clone(),
            name: format!("{}/{}", self.name, child),
        }
    }

    /// Sends a single request through this subroute.
    pub async fn request(
        &self,
        handler: HandlerId,
        payload: impl Into<Bytes>,
    ) -> Result<Bytes, Error> {
        self.conn
            .call_inner(
                handler,
                Some(&self.name),
                Some(payload.into()),
                CallOptions::default(),
            )
            .await
            .map(Option::unwrap_or_default)
    }

    /// Sends a single request with options.
    pub async fn call(
        &self,
        handler: HandlerId,
        payload: Option<Bytes>,
        opts: CallOptions,
    ) -> Result<Option<Bytes>, Error> {
        self.conn
            .call_inner(handler, Some(&self.name), payload, opts)
            .await
    }

    /// Opens a stream through this subroute.
    pub async fn open_stream(
        &self,
        handler: HandlerId,
        payload: Option<Bytes>,
        opts: StreamOptions,
    ) -> Result<StreamCall, Error> {
        self.conn
            .open_stream_inner(handler, Some(&self.name), payload, opts)
            .await
    }
}

// ---------------------------------------------------------------------------------------------
// Dialing

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
                ConnCounters::add(&conn.counters.handshake_failures, 1);
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
        ConnCounters::add(&conn.counters.bytes_out, connect.len() as u64);
        ConnCounters::add(&conn.counters.msgs_out, 1);
        let mut buf = leftover;
        let mut dec = FrameDecoder::new(Role::Dialer, limits.max_frame_size());
        let (b, binary) = handshake::read_first_message(&mut io.read, &mut buf, &mut dec)
            .await?
            .ok_or_else(|| {
                DialError::BadResponse("connection closed before the connect response".into())
            })?;
        ConnCounters::add(&conn.counters.bytes_in, b.len() as u64);
        ConnCounters::add(&conn.counters.msgs_in, 1);
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
    Ok(Session::spawn(conn, io, buf, Role::Dialer, peer))
}
