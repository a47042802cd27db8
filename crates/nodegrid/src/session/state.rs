//! One live session with a peer: its tables of calls in both directions, its outbound queue and
//! its lifetime. The tasks that drive it (reader, writer, timers) and the handling of each op
//! live in the sibling files; this file holds the state they share and its end.
//!
//! All per-call state lives in the session, not the connection: when a session ends, its
//! tables close, every call of either direction fails or is cancelled, and its outbound queue is
//! dropped, so nothing crosses into the next session (PROTOCOL.md §4.5, §12.5).

use crate::config::GridConfig;
use crate::error::Error;
use crate::observe::Observer;
use crate::proto::muxtable::MuxTable;
use crate::session::handlers::Handlers;
use crate::session::outq::{Bounds, OutQueue};
use crate::session::stream::client::ClientStream;
use crate::session::stream::server::ServerStream;
use crate::stats::{ConnCounters, Padded};
use crate::transport::ws::Role;
use crate::wire::{Flags, Limits, Message, MuxConnectErrorPayload, MuxId, Op};
use bytes::Bytes;
use futures::task::AtomicWaker;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long a cancelled handler may keep running to observe its cancellation token before
/// it is dropped.
pub(crate) const HANDLER_GRACE: Duration = Duration::from_secs(1);

/// What a session knows of the connection it serves, shared by every session of that
/// connection. The connection (above) creates it; the session only reads it and updates the
/// counters.
pub(crate) struct Link {
    /// The peer's host string.
    pub remote: Arc<str>,
    pub cfg: GridConfig,
    pub counters: ConnCounters,
    pub handlers: Arc<dyn Handlers>,
    pub observer: Option<Observer>,
}

impl AsRef<ConnCounters> for Link {
    fn as_ref(&self) -> &ConnCounters {
        &self.counters
    }
}

/// The owner of a connection's sessions (the connection, above the session layer): told when a
/// session starts and when it ends.
pub(crate) trait SessionOwner: Send + Sync + 'static {
    /// `sess` is about to start: make it the live session, replacing (and ending) any other.
    fn install(&self, sess: &Arc<Session>);
    /// Called once, by a session that ended, with the reason.
    fn session_ended(&self, sess: &Arc<Session>, reason: &str);
}

/// What a caller waits on.
pub(crate) enum Outgoing {
    /// A single request: completed once with the response or an error. The instant, if
    /// any, is the call's deadline, enforced by the session's sweep (long deadlines only; short
    /// ones use an exact timer in the caller).
    Single(
        oneshot::Sender<Result<Option<Bytes>, Error>>,
        Option<Instant>,
    ),
    /// A stream opened by this node.
    Stream(Arc<ClientStream>),
}

pub(crate) struct Session {
    pub(crate) id: u64,
    pub(crate) link: Arc<Link>,
    owner: Arc<dyn SessionOwner>,
    pub(crate) role: Role,
    pub(crate) out: Arc<OutQueue>,
    pub(crate) outgoing: MuxTable<Outgoing>,
    pub(crate) incoming_singles: MuxTable<CancellationToken>,
    pub(crate) incoming_streams: MuxTable<Arc<ServerStream>>,
    pub(crate) cancel: CancellationToken,
    /// CRC on plaintext connections, nothing on TLS ones (§3.5).
    pub(crate) base_flags: Flags,
    pub(crate) started: Instant,
    /// Nanoseconds after `started` of the last connection-level pong.
    pub(crate) last_pong_ns: AtomicU64,
    ended: AtomicBool,
    /// The reader's waker while it waits for bytes, woken by `end` (cheaper to poll per read
    /// than the token, which takes two locks per poll).
    pub(crate) reader_waker: AtomicWaker,
    /// Single-request handlers running for the peer.
    pub(crate) running: Padded<AtomicUsize>,
    /// Our calls in flight (singles and streams), for adaptive write batching (updated by
    /// callers on every thread, so on a line of its own).
    pub(crate) in_flight: Padded<AtomicUsize>,
    pub(crate) peer_instance: [u8; 16],
}

impl Session {
    /// A session that is not running yet (see `session::start`). `tls` turns the CRC trailer
    /// off (both host strings are `https://`, §3.5); `parent` is the manager's shutdown token.
    pub(crate) fn new(
        link: Arc<Link>,
        owner: Arc<dyn SessionOwner>,
        id: u64,
        role: Role,
        tls: bool,
        peer_instance: [u8; 16],
        parent: &CancellationToken,
    ) -> Arc<Session> {
        let bounds = Bounds {
            entries: link.cfg.outbound_queue,
            data_bytes: link.cfg.outbound_data_bytes,
            control_bytes: link.cfg.outbound_control_bytes,
        };
        let out = Arc::new(OutQueue::new(bounds, link.clone()));
        Arc::new(Session {
            id,
            link,
            owner,
            role,
            out,
            outgoing: MuxTable::default(),
            incoming_singles: MuxTable::default(),
            incoming_streams: MuxTable::default(),
            cancel: parent.child_token(),
            base_flags: if tls { Flags::NONE } else { Flags::CRC },
            started: Instant::now(),
            last_pong_ns: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            reader_waker: AtomicWaker::new(),
            running: Padded(AtomicUsize::new(0)),
            in_flight: Padded(AtomicUsize::new(0)),
            peer_instance,
        })
    }

    pub(crate) fn counters(&self) -> &ConnCounters {
        &self.link.counters
    }

    pub(crate) fn cfg(&self) -> &GridConfig {
        &self.link.cfg
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_message_size: self.link.cfg.max_message_size,
        }
    }

    /// Records the peer's `max_message_size` (announced in the handshake; `None` when the
    /// peer did not announce it). Once known, calls whose payload would not fit fail locally
    /// with `Error::TooLarge` before anything is sent.
    pub(crate) fn set_peer_max_message_size(&self, limit: Option<usize>) {
        self.out.set_peer_max_message(limit);
    }

    /// Makes this session the owner's live one (before its tasks start).
    pub(crate) fn install(self: &Arc<Self>) {
        self.owner.install(self);
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Ends the session: closes the queue and the tables, fails our calls with
    /// `remote disconnected`, cancels the peer's calls. Idempotent.
    pub(crate) fn end(self: &Arc<Self>, reason: &str) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::debug!(remote = %self.link.remote, session = self.id, reason, "session ended");
        self.out.close();
        for o in self.outgoing.close_and_drain() {
            match o {
                Outgoing::Single(tx, _) => {
                    let _ = tx.send(Err(Error::Disconnected));
                }
                Outgoing::Stream(s) => s.fail_local(Error::Disconnected),
            }
        }
        for t in self.incoming_singles.close_and_drain() {
            t.cancel();
        }
        for s in self.incoming_streams.close_and_drain() {
            // Cancels and wakes whatever the handler task waits on (input, a credit).
            s.abort();
        }
        // The connection's state says why this session ended before the token wakes the dial
        // loop, so a quick redial failure is not overwritten by this older reason.
        self.owner.session_ended(self, reason);
        self.reader_waker.wake();
        self.cancel.cancel();
    }

    /// Time since the last connection-level pong (or since the start).
    pub(crate) fn since_last_pong(&self) -> Duration {
        let last = Duration::from_nanos(self.last_pong_ns.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Queues a control message (never waits). Returns false if the session has ended.
    pub(crate) fn send_control(&self, m: Message) -> bool {
        self.out.push(m).is_ok()
    }

    /// A reply to `m` that copies its tuple fields, as MuxConnectError and Pong do.
    pub(crate) fn echo(&self, m: &Message, op: Op, payload: Bytes) -> Message {
        Message {
            mux_id: m.mux_id,
            seq: m.seq,
            deadline_ms: m.deadline_ms,
            handler: m.handler,
            op,
            flags: m.flags.without(Flags::SUBROUTE | Flags::ZERO | Flags::ERR) | self.base_flags,
            payload,
            subroute: None,
        }
    }

    /// Replies MuxConnectError with `text` to a Request or ConnectMux (§5.2).
    pub(crate) fn reply_connect_error(&self, m: &Message, text: &str) {
        let payload = MuxConnectErrorPayload {
            error: text.to_string(),
        }
        .encode();
        let mut r = self.echo(m, Op::MuxConnectError, payload);
        r.flags |= Flags::EOF;
        self.send_control(r);
    }

    /// Number of calls of ours and of the peer currently active (for write batching).
    pub(crate) fn activity(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed) + self.running.load(Ordering::Relaxed)
    }

    /// Our stream `mux`, if it is in the table.
    pub(crate) fn outgoing_stream(&self, mux: MuxId) -> Option<Arc<ClientStream>> {
        self.outgoing.with(mux, |o| match o {
            Outgoing::Stream(s) => Some(s.clone()),
            Outgoing::Single(..) => None,
        })?
    }

    /// Ends our stream `s` with `e`: removes it from the table and, if it was still there,
    /// tells the callee (DisconnectServerMux).
    pub(crate) fn abort_stream(&self, s: &ClientStream, e: Error) {
        let mux = s.inner.lock().st.mux_id;
        if self.outgoing.remove(mux).is_some() {
            let mut g = s.inner.lock();
            let m = g.st.cancel_msg();
            s.queue(m);
        }
        s.fail_local(e);
    }
}

/// Allocates the next mux ID for a call on this connection.
pub(crate) fn next_mux_id(counter: &AtomicU64) -> MuxId {
    loop {
        let id = counter.fetch_add(1, Ordering::Relaxed);
        if id != 0 {
            return id;
        }
    }
}
