//! [`Connection`]: the long-lived link to one remote host. It survives reconnects; calls go
//! through whichever session is live.

use crate::api::call::{CallOptions, StreamCall, StreamOptions, StreamTarget};
use crate::api::claims::Claims;
use crate::api::common::Common;
use crate::api::diagnose::Problem;
use crate::error::{Error, UnknownHandlerKind};
use crate::proto::state::ConnState;
use crate::session::single;
use crate::session::state::next_mux_id;
use crate::session::stream::open;
use crate::session::{self, Link, Session, SessionOwner};
use crate::stats::{ConnCounters, ConnectionStats, ErrorCounts};
use crate::transport::diagnose::{WarnLimiter, WARN_INTERVAL};
use crate::transport::ws::Role;
use crate::transport::{IoHalves, Target};
use crate::wire::{Flags, GridTime, HandlerId, SubrouteId};
use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often a repeated connection problem of one peer (of one kind) is logged.
const ERROR_LOG_INTERVAL: Duration = WARN_INTERVAL;

pub(crate) struct ConnShared {
    pub(crate) common: Arc<Common>,
    /// What the sessions of this connection read (remote host, config, counters, handlers).
    pub(crate) link: Arc<Link>,
    pub(crate) target: Target,
    pub(crate) dials: bool,
    pub(crate) state: watch::Sender<ConnState>,
    pub(crate) session: ArcSwapOption<Session>,
    next_mux: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// One WARN per kind of problem per interval.
    warned: WarnLimiter<Problem>,
    claims: Mutex<Claims>,
    /// The peer's `max_message_size` from its handshake extension (PROTOCOL.md §3.6); 0 when
    /// it announced none (a MinIO peer) or no session has started yet.
    peer_max_message_size: AtomicU64,
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
        let link = Arc::new(Link {
            remote: Arc::from(remote),
            cfg: common.cfg.clone(),
            counters: ConnCounters::default(),
            handlers: common.registry.clone(),
            observer: common.observer.clone(),
        });
        ConnShared {
            common,
            link,
            target,
            dials,
            state: watch::channel(ConnState::Unconnected).0,
            session: ArcSwapOption::empty(),
            next_mux: AtomicU64::new(start as u64),
            last_error: Mutex::new(None),
            warned: WarnLimiter::new(ERROR_LOG_INTERVAL, 16),
            claims: Mutex::new(Claims::default()),
            peer_max_message_size: AtomicU64::new(0),
        }
    }

    /// Makes `sess` the live session, replacing (and ending) any previous one (§2.7).
    fn install_session(&self, sess: &Arc<Session>) {
        let old = self.session.swap(Some(sess.clone()));
        let n = self.link.counters.connects.fetch_add(1, Ordering::Relaxed);
        if n > 0 {
            self.link
                .counters
                .reconnects
                .fetch_add(1, Ordering::Relaxed);
        }
        self.link.counters.last_connect_unix_ms.store(
            (GridTime::now().unix_nanos() / 1_000_000) as u64,
            Ordering::Relaxed,
        );
        *self.last_error.lock() = None;
        self.state.send_replace(ConnState::Connected);
        tracing::info!(local = %self.common.local, remote = %self.link.remote, "connected");
        if let Some(old) = old {
            old.end("replaced by a new session");
        }
    }

    /// Called once by a session that ended.
    fn end_session(&self, sess: &Arc<Session>, reason: &str) {
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
            self.note_session_end(&format!("session ended: {reason}"));
        }
    }

    /// Records why a session ended (a state change, logged at INFO; the dialer redials, and a
    /// problem that persists shows as a problem of its own).
    fn note_session_end(&self, e: &str) {
        *self.last_error.lock() = Some(e.to_string());
        if !self.common.shutdown.is_cancelled() {
            tracing::info!(local = %self.common.local, remote = %self.link.remote, "{e}");
        }
    }

    /// Records a problem as the last error and logs it at WARN, at most once per kind per
    /// interval for this peer. `text` names the peer, what is wrong and what to check.
    pub(crate) fn note_problem(&self, kind: Problem, text: &str) {
        *self.last_error.lock() = Some(text.to_string());
        self.warn_problem(kind, text);
    }

    /// Like [`ConnShared::note_problem`], for a problem an unauthenticated party claims about
    /// this peer: logged, but not recorded as the last error while a session is live.
    pub(crate) fn note_claimed_problem(&self, kind: Problem, text: &str) {
        if !self.state.borrow().is_connected() {
            *self.last_error.lock() = Some(text.to_string());
        }
        self.warn_problem(kind, text);
    }

    fn warn_problem(&self, kind: Problem, text: &str) {
        if self.common.shutdown.is_cancelled() {
            return;
        }
        if let Some(suppressed) = self.warned.due(kind) {
            tracing::warn!(local = %self.common.local, remote = %self.link.remote, suppressed, "{text}");
        }
    }

    fn next_mux(&self) -> u64 {
        next_mux_id(&self.next_mux)
    }

    /// Decides whether a new session from `instance` may replace the live one (§2.7); see
    /// [`Claims::admit`].
    pub(crate) fn admit_instance(&self, instance: [u8; 16]) -> Result<(), String> {
        let live = self
            .session
            .load_full()
            .filter(|s| !s.is_ended())
            .map(|s| s.peer_instance);
        self.claims
            .lock()
            .admit(live, instance, &self.common.local, self.remote())
    }

    /// The peer's host string.
    pub(crate) fn remote(&self) -> &Arc<str> {
        &self.link.remote
    }

    /// Starts a handshaken session on `io` as this connection's live one. `peer_max_message`
    /// is the peer's `max_message_size` when its handshake announced it (nodegrid peers).
    pub(crate) fn start_session(
        self: &Arc<Self>,
        io: IoHalves,
        leftover: BytesMut,
        role: Role,
        peer_instance: [u8; 16],
        peer_max_message: Option<usize>,
    ) -> Arc<Session> {
        let common = &self.common;
        // CRC unless both host strings are https:// (§3.5).
        let tls = self.target.tls && common.local_tls;
        let sess = Session::new(
            self.link.clone(),
            self.clone(),
            common.next_session_id(),
            role,
            tls,
            peer_instance,
            &common.shutdown,
        );
        // The peer's limit, from its handshake extension: calls that would not fit fail here,
        // before sending. Kept on the connection too, for `Connection::peer_max_message_size`.
        self.peer_max_message_size
            .store(peer_max_message.unwrap_or(0) as u64, Ordering::Relaxed);
        sess.set_peer_max_message_size(peer_max_message);
        session::start(&sess, io, leftover);
        sess
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

impl SessionOwner for ConnShared {
    fn install(&self, sess: &Arc<Session>) {
        self.install_session(sess);
    }

    fn session_ended(&self, sess: &Arc<Session>, reason: &str) {
        self.end_session(sess, reason);
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
            .field("remote", self.inner.remote())
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

impl Connection {
    /// The remote host string.
    pub fn remote(&self) -> &str {
        self.inner.remote()
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
        self.call_inner(handler, None, Some(p), CallOptions::default(), None)
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
        self.call_inner(handler, None, payload, opts, None).await
    }

    /// Opens a stream to a streaming handler. The capacities come from the local registration
    /// of the same handler ID (as in the reference), or from [`StreamOptions::capacities`].
    pub async fn open_stream(
        &self,
        handler: HandlerId,
        payload: Option<Bytes>,
        opts: StreamOptions,
    ) -> Result<StreamCall, Error> {
        self.open_stream_inner(handler, None, payload, opts, None)
            .await
    }

    /// Opens a stream; `name` is the typed handle's name of the handler, if any (else this
    /// node's registration names it in errors).
    pub(crate) async fn open_stream_inner(
        &self,
        handler: HandlerId,
        subroute: Option<&str>,
        payload: Option<Bytes>,
        opts: StreamOptions,
        name: Option<&'static str>,
    ) -> Result<StreamCall, Error> {
        let registry = &self.inner.common.registry;
        let unknown = |kind| {
            let registered = match name {
                Some(_) => None,
                None => registry.stream_name(handler, subroute),
            };
            let name = name.or(registered.as_deref());
            Error::unknown_handler(handler, name, subroute, self.remote(), kind)
        };
        if handler == 0 {
            return Err(unknown(UnknownHandlerKind::ReservedId));
        }
        let caps = match opts.capacities {
            Some(c) => c,
            None => {
                let e = registry
                    .stream_for_caller(handler, subroute.is_some())
                    .ok_or_else(|| unknown(UnknownHandlerKind::NoLocalStream))?;
                (e.in_capacity as u32, e.out_capacity)
            }
        };
        self.check_size(payload.as_ref())?;
        let sess = self.inner.current()?;
        let mux = self.inner.next_mux();
        let sub = subroute.map(|s| SubrouteId::new(handler, s));
        let h = open::open(sess, mux, caps, handler, sub, payload, opts.timeout).await?;
        let target = StreamTarget {
            handler,
            name,
            subroute: subroute.map(Arc::from),
            remote: self.inner.remote().clone(),
            registry: registry.clone(),
        };
        Ok(StreamCall::new(h, target))
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

    /// Sends a single request; `name` is the typed handle's name of the handler, if any
    /// (else this node's registration names it in errors).
    pub(crate) async fn call_inner(
        &self,
        handler: HandlerId,
        subroute: Option<&str>,
        payload: Option<Bytes>,
        opts: CallOptions,
        name: Option<&'static str>,
    ) -> Result<Option<Bytes>, Error> {
        let mut r = self.call_raw(handler, subroute, payload, opts, name).await;
        if let Err(e) = &mut r {
            if e.is_invalid_handler_answer() {
                *e = self.unknown_single(handler, subroute, name);
            }
            self.inner.link.counters.record_error(e);
        }
        r
    }

    /// [`Error::UnknownHandler`] for a single request that found no handler (named from the
    /// typed handle, else from this node's registration of the same handler).
    fn unknown_single(
        &self,
        handler: HandlerId,
        subroute: Option<&str>,
        name: Option<&str>,
    ) -> Error {
        let registered = match name {
            Some(_) => None,
            None => self.inner.common.registry.single_name(handler, subroute),
        };
        let kind = if handler == 0 {
            UnknownHandlerKind::ReservedId
        } else {
            UnknownHandlerKind::NotOnRemote
        };
        let name = name.or(registered.as_deref());
        Error::unknown_handler(handler, name, subroute, self.remote(), kind)
    }

    async fn call_raw(
        &self,
        handler: HandlerId,
        subroute: Option<&str>,
        payload: Option<Bytes>,
        opts: CallOptions,
        name: Option<&str>,
    ) -> Result<Option<Bytes>, Error> {
        if handler == 0 {
            return Err(self.unknown_single(handler, subroute, name));
        }
        self.check_size(payload.as_ref())?;
        let timeout = opts.timeout_or(self.inner.common.cfg.default_request_timeout);
        if timeout < Duration::from_millis(1) {
            return Err(Error::DeadlineExceeded);
        }
        let sess = self.inner.current()?;
        let mux = self.inner.next_mux();
        let sub = subroute.map(|s| SubrouteId::new(handler, s));
        single::call(&sess, mux, handler, sub, payload, timeout).await
    }

    /// Whether the live session adds CRC trailers (plaintext connections do, TLS ones do not,
    /// §3.5); `None` when not connected.
    pub fn crc_enabled(&self) -> Option<bool> {
        self.inner
            .session
            .load_full()
            .map(|s| s.base_flags.contains(Flags::CRC))
    }

    /// The peer's `max_message_size` as it announced it in the last handshake; `None` for a
    /// peer that announces none (MinIO) or before the first session.
    pub fn peer_max_message_size(&self) -> Option<usize> {
        match self.inner.peer_max_message_size.load(Ordering::Relaxed) {
            0 => None,
            n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        }
    }

    /// The peer manager's instance ID from the last handshake, if connected.
    pub fn peer_instance_id(&self) -> Option<[u8; 16]> {
        self.inner.session.load_full().map(|s| s.peer_instance)
    }

    /// A statistics snapshot.
    pub fn stats(&self) -> ConnectionStats {
        let c = &self.inner.link.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let state = self.state();
        let (outgoing, incoming, q) = match self.inner.session.load_full() {
            Some(s) => (
                s.outgoing.len() as u64,
                (s.incoming_singles.len() + s.incoming_streams.len()) as u64,
                s.out.size(),
            ),
            None => (0, 0, Default::default()),
        };
        ConnectionStats {
            remote: self.inner.remote().to_string(),
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
            outbound_queue: q.entries as u64,
            outbound_queue_bytes: (q.control + q.data) as u64,
            outbound_control_peak_bytes: q.control_peak as u64,
            outbound_data_peak_bytes: q.data_peak as u64,
            read_pauses: l(&c.read_pauses),
            data_waits: l(&c.data_waits),
            pongs_replaced: l(&c.pongs_replaced),
            oversized_in: l(&c.oversized_in),
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

    /// Sets the peer's `max_message_size` on the live session, as the handshake does when the
    /// peer announces it: calls larger than it then fail locally with [`Error::TooLarge`]. Only
    /// for tests.
    #[doc(hidden)]
    pub fn set_peer_max_message_size(&self, limit: Option<usize>) {
        if let Some(s) = self.inner.session.load_full() {
            s.set_peer_max_message_size(limit);
        }
    }

    /// Ends the live session as if the socket had died (the dialer then reconnects). For
    /// tests and operational tooling.
    pub fn kill_session(&self) {
        if let Some(s) = self.inner.session.load_full() {
            s.end("session killed locally");
        }
    }
}
