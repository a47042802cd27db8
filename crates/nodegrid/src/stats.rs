//! Per-connection and manager-wide statistics (PROTOCOL.md §9).

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A zero-sized field that starts the next field on a fresh 128-byte line (`repr(C)` keeps
/// the declared order).
#[derive(Default, Debug, Clone, Copy)]
#[repr(align(128))]
pub(crate) struct LineBreak;

/// A value on cache lines of its own, for state that threads update concurrently.
#[derive(Default, Debug)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Live counters of one connection (atomics, updated on the hot path).
///
/// Grouped by who writes them, one cache-line group each: the session's reader, its writer,
/// and the callers (on any thread). Counters written from different threads on one line
/// would make every update a cache miss for the others.
#[derive(Default, Debug)]
#[repr(C)]
pub(crate) struct ConnCounters {
    // The reader.
    pub msgs_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub requests_in: AtomicU64,
    pub streams_in: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub rejected_over_limit: AtomicU64,
    pub last_rtt_ns: AtomicU64,
    pub max_rtt_ns: AtomicU64,
    pub last_pong_unix_ms: AtomicU64,
    pub read_pauses: AtomicU64,
    pub pongs_replaced: AtomicU64,
    pub oversized_in: AtomicU64,
    _reader_end: LineBreak,
    // The writer.
    pub msgs_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub ws_messages_out: AtomicU64,
    _writer_end: LineBreak,
    // The callers.
    pub requests_out: AtomicU64,
    pub streams_out: AtomicU64,
    pub err_disconnected: AtomicU64,
    pub err_remote: AtomicU64,
    pub err_deadline: AtomicU64,
    pub err_cancelled: AtomicU64,
    pub err_other: AtomicU64,
    pub data_waits: AtomicU64,
    _callers_end: LineBreak,
    // Rare: connection attempts.
    pub connects: AtomicU64,
    pub reconnects: AtomicU64,
    pub last_connect_unix_ms: AtomicU64,
    pub handshake_failures: AtomicU64,
    /// Milliseconds after the process's first use of it (see `oversize_warn_due`) of the last
    /// WARN about an oversized message from this peer, plus one (0: never).
    pub last_oversize_warn: AtomicU64,
}

impl AsRef<ConnCounters> for ConnCounters {
    fn as_ref(&self) -> &ConnCounters {
        self
    }
}

impl ConnCounters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub(crate) fn record_error(&self, e: &crate::Error) {
        use crate::Error::*;
        let c = match e {
            Disconnected => &self.err_disconnected,
            Remote(_) => &self.err_remote,
            // The peer's answer, typed: still an error returned by the remote side.
            UnknownHandler {
                kind: crate::error::UnknownHandlerKind::NotOnRemote,
                ..
            } => &self.err_remote,
            DeadlineExceeded => &self.err_deadline,
            Cancelled => &self.err_cancelled,
            _ => &self.err_other,
        };
        c.fetch_add(1, Relaxed);
    }

    /// Whether a WARN about an oversized message from this peer is due (at most one per
    /// `interval`); if so, the time is recorded.
    pub(crate) fn oversize_warn_due(&self, interval: std::time::Duration) -> bool {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let now = EPOCH
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
            + 1;
        let last = self.last_oversize_warn.load(Relaxed);
        if last != 0 && now.saturating_sub(last) < interval.as_millis() as u64 {
            return false;
        }
        self.last_oversize_warn
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
    }

    pub(crate) fn record_rtt(&self, ns: u64) {
        self.last_rtt_ns.store(ns, Relaxed);
        self.max_rtt_ns.fetch_max(ns, Relaxed);
    }
}

/// Errors of calls started by this node, by kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ErrorCounts {
    /// `remote disconnected`.
    pub disconnected: u64,
    /// Errors returned by the remote side.
    pub remote: u64,
    /// Deadlines exceeded.
    pub deadline: u64,
    /// Calls cancelled by the caller.
    pub cancelled: u64,
    /// Anything else.
    pub other: u64,
}

/// A snapshot of one connection's statistics.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionStats {
    /// The remote host string.
    pub remote: String,
    /// Current state, as text.
    pub state: String,
    /// Whether a session is live.
    pub connected: bool,
    /// Whether this node dials the remote (§2.6).
    pub dialer: bool,
    /// Sessions established.
    pub connects: u64,
    /// Sessions established after the first.
    pub reconnects: u64,
    /// Grid messages received (inner messages of envelopes counted one by one).
    pub messages_in: u64,
    /// Grid messages sent.
    pub messages_out: u64,
    /// Bytes received (WebSocket payloads, handshake included).
    pub bytes_in: u64,
    /// Bytes sent (grid messages, handshake included).
    pub bytes_out: u64,
    /// WebSocket messages written (a merged envelope counts once).
    pub ws_messages_out: u64,
    /// Single requests made to the remote.
    pub requests_out: u64,
    /// Single requests served for the remote.
    pub requests_in: u64,
    /// Streams opened to the remote.
    pub streams_out: u64,
    /// Streams opened by the remote.
    pub streams_in: u64,
    /// Calls (single and stream) of ours currently in flight.
    pub outgoing_in_flight: u64,
    /// Calls of the remote currently being served (single handlers and streams).
    pub incoming_in_flight: u64,
    /// Current length of the outbound queue.
    pub outbound_queue: u64,
    /// Bytes counted on the outbound queue's control and data lanes now (see
    /// `GridConfig::outbound_control_bytes` and `outbound_data_bytes`).
    pub outbound_queue_bytes: u64,
    /// Most bytes the control lane of the current session's outbound queue has held.
    pub outbound_control_peak_bytes: u64,
    /// Most bytes the data lane of the current session's outbound queue has held.
    pub outbound_data_peak_bytes: u64,
    /// Times the reader stopped reading from the peer because the control lane was at its
    /// bound (`outbound_control_bytes`).
    pub read_pauses: u64,
    /// Times a sender waited because the data lane was full (`outbound_queue` entries or
    /// `outbound_data_bytes`).
    pub data_waits: u64,
    /// Pongs (WebSocket or connection-level) replaced by a newer one before they were sent.
    pub pongs_replaced: u64,
    /// Messages from the peer over `max_message_size`, skipped without ending the session
    /// (the call they belonged to failed).
    pub oversized_in: u64,
    /// Last connection-ping round trip, in microseconds.
    pub last_rtt_us: u64,
    /// Largest connection-ping round trip seen, in microseconds.
    pub max_rtt_us: u64,
    /// Unix time (ms) of the last connection-level pong, 0 if none.
    pub last_pong_unix_ms: u64,
    /// Unix time (ms) of the last session start, 0 if none.
    pub last_connect_unix_ms: u64,
    /// Errors of our calls, by kind.
    pub errors: ErrorCounts,
    /// Failed handshakes (dial errors and rejections, both directions).
    pub handshake_failures: u64,
    /// Sessions ended by malformed input from the peer.
    pub protocol_errors: u64,
    /// Incoming calls refused because a limit was reached.
    pub rejected_over_limit: u64,
    /// The last connection error, if any.
    pub last_error: Option<String>,
}

/// Live counters of a front door (atomics, updated per connection, never per request).
#[derive(Default, Debug)]
pub(crate) struct FrontDoorCounters {
    pub accepted: AtomicU64,
    pub open: AtomicU64,
    pub unauthenticated: AtomicU64,
    pub refused_over_limit: AtomicU64,
    pub tls_failed: AtomicU64,
    pub timed_out: AtomicU64,
    pub head_too_large: AtomicU64,
    pub authenticated: AtomicU64,
    pub slow_bodies: AtomicU64,
    pub accept_errors: AtomicU64,
}

impl FrontDoorCounters {
    pub(crate) fn snapshot(&self) -> FrontDoorStats {
        let l = |a: &AtomicU64| a.load(Relaxed);
        FrontDoorStats {
            accepted: l(&self.accepted),
            open: l(&self.open),
            unauthenticated: l(&self.unauthenticated),
            refused_over_limit: l(&self.refused_over_limit),
            tls_failed: l(&self.tls_failed),
            timed_out: l(&self.timed_out),
            head_too_large: l(&self.head_too_large),
            authenticated: l(&self.authenticated),
            slow_bodies: l(&self.slow_bodies),
            accept_errors: l(&self.accept_errors),
        }
    }
}

/// A snapshot of a front door's counters ([`crate::transport::FrontDoor`]).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FrontDoorStats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections open now that have not authenticated yet (against `max_unauthenticated`).
    pub unauthenticated: u64,
    /// Connections closed at once because `max_unauthenticated` was reached.
    pub refused_over_limit: u64,
    /// TLS handshakes that failed or did not finish within `handshake_timeout`.
    pub tls_failed: u64,
    /// Connections closed because they had not authenticated within `handshake_timeout`.
    pub timed_out: u64,
    /// Request heads over `max_head_bytes` (answered 431, connection closed).
    pub head_too_large: u64,
    /// Connections that authenticated (a REST request passed the token check, or a grid
    /// session started).
    pub authenticated: u64,
    /// Request bodies cut for delivering less than `body_min_bytes` per `body_timeout`.
    pub slow_bodies: u64,
    /// Failed `accept` calls (out of file descriptors and the like).
    pub accept_errors: u64,
}

/// A snapshot of every connection of a manager, plus totals.
#[derive(Debug, Clone, Serialize)]
pub struct ManagerStats {
    /// The local host string.
    pub local: String,
    /// The front door of [`crate::Manager::serve`] / [`crate::Manager::front_door`] (zeros if
    /// the node serves the grid some other way).
    pub front_door: FrontDoorStats,
    /// Connections currently connected.
    pub connected: usize,
    /// Connections not connected.
    pub disconnected: usize,
    /// Per connection.
    pub connections: Vec<ConnectionStats>,
}

impl ManagerStats {
    /// Sum of a counter over all connections.
    pub fn total(&self, f: impl Fn(&ConnectionStats) -> u64) -> u64 {
        self.connections.iter().map(f).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn counters_written_by_different_tasks_are_on_different_cache_lines() {
        // Reader, writer, callers, then the rare ones: each group starts a new 128-byte line.
        let groups = [
            offset_of!(ConnCounters, msgs_in),
            offset_of!(ConnCounters, msgs_out),
            offset_of!(ConnCounters, requests_out),
            offset_of!(ConnCounters, connects),
        ];
        for w in groups.windows(2) {
            assert!(w[1] >= w[0] + 128, "groups overlap a line: {groups:?}");
            assert_eq!(w[1] % 128, 0, "group not line-aligned: {groups:?}");
        }
        // The last fields of each group are still before the next group.
        assert!(offset_of!(ConnCounters, oversized_in) < groups[1]);
        assert!(offset_of!(ConnCounters, ws_messages_out) < groups[2]);
        assert!(offset_of!(ConnCounters, data_waits) < groups[3]);
        assert_eq!(std::mem::align_of::<Padded<AtomicU64>>(), 128);
    }
}
