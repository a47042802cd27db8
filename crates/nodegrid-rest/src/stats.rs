//! Per-peer RPC statistics.
//!
//! The client updates [`StatsCell`] with relaxed atomics on the hot path (a few adds per call
//! and per body chunk); [`RestStats`] is the plain, serializable snapshot a node puts in its
//! stats report next to the grid's.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A snapshot of one peer's REST client statistics. Durations are in nanoseconds, times in
/// Unix nanoseconds (the unit of the `X-Minio-Time` header).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestStats {
    /// The peer's endpoint, e.g. `http://10.0.0.2:9000`.
    pub peer: String,
    /// Whether the peer is currently considered online.
    pub online: bool,
    /// Calls started (every `call`, including those refused because the peer was offline).
    pub calls: u64,
    /// Calls that ended in an error, of any kind (the sum of the kinds below).
    pub errors: u64,
    /// Calls whose connection broke after it was established.
    pub network_errors: u64,
    /// Calls that failed because no connection could be made.
    pub dial_errors: u64,
    /// Calls the peer refused with 403.
    pub auth_errors: u64,
    /// Calls the peer answered with another non-success status.
    pub remote_errors: u64,
    /// Calls that exceeded their deadline.
    pub deadline_errors: u64,
    /// Calls refused at once because the peer was offline.
    pub offline_rejections: u64,
    /// Other failures: invalid requests, failing request body streams.
    pub other_errors: u64,
    /// Successful connection attempts (TCP connect plus TLS handshake).
    pub dials: u64,
    /// Failed connection attempts (a failed call may make one).
    pub failed_dials: u64,
    /// Average time of a successful dial.
    pub avg_dial_time_ns: u64,
    /// Longest successful dial.
    pub max_dial_time_ns: u64,
    /// Average time from sending a request to receiving the response head.
    pub avg_ttfb_ns: u64,
    /// Request body bytes handed to the connection.
    pub bytes_sent: u64,
    /// Response body bytes received.
    pub bytes_received: u64,
    /// When the last error happened.
    pub last_error_unix_nanos: Option<u64>,
    /// How many times the peer went offline.
    pub offline_periods: u64,
    /// Total time spent offline, including the current period if offline now.
    pub offline_total_ns: u64,
}

/// The live counters behind [`RestStats`].
#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    pub(crate) calls: AtomicU64,
    pub(crate) network_errors: AtomicU64,
    pub(crate) dial_errors: AtomicU64,
    pub(crate) auth_errors: AtomicU64,
    pub(crate) remote_errors: AtomicU64,
    pub(crate) deadline_errors: AtomicU64,
    pub(crate) offline_rejections: AtomicU64,
    pub(crate) other_errors: AtomicU64,
    dials: AtomicU64,
    failed_dials: AtomicU64,
    dial_total_ns: AtomicU64,
    dial_max_ns: AtomicU64,
    ttfb_total_ns: AtomicU64,
    ttfb_count: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    last_error_unix_nanos: AtomicU64,
    offline: Mutex<Offline>,
}

#[derive(Debug, Default)]
struct Offline {
    since: Option<Instant>,
    periods: u64,
    total: Duration,
}

/// Which counter an error goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    Network,
    Dial,
    Auth,
    Remote,
    Deadline,
    Offline,
    Other,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl StatsCell {
    pub(crate) fn error(&self, kind: ErrorKind) {
        let counter = match kind {
            ErrorKind::Network => &self.network_errors,
            ErrorKind::Dial => &self.dial_errors,
            ErrorKind::Auth => &self.auth_errors,
            ErrorKind::Remote => &self.remote_errors,
            ErrorKind::Deadline => &self.deadline_errors,
            ErrorKind::Offline => &self.offline_rejections,
            ErrorKind::Other => &self.other_errors,
        };
        counter.fetch_add(1, Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(nanos)
            .unwrap_or(0);
        self.last_error_unix_nanos.store(now, Relaxed);
    }

    pub(crate) fn dial_ok(&self, took: Duration) {
        let ns = nanos(took);
        self.dials.fetch_add(1, Relaxed);
        self.dial_total_ns.fetch_add(ns, Relaxed);
        self.dial_max_ns.fetch_max(ns, Relaxed);
    }

    pub(crate) fn dial_failed(&self) {
        self.failed_dials.fetch_add(1, Relaxed);
    }

    pub(crate) fn ttfb(&self, took: Duration) {
        self.ttfb_total_ns.fetch_add(nanos(took), Relaxed);
        self.ttfb_count.fetch_add(1, Relaxed);
    }

    fn offline_state(&self) -> std::sync::MutexGuard<'_, Offline> {
        // A poisoned lock only means a panic elsewhere while holding it; the counters are
        // still meaningful.
        self.offline.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn went_offline(&self) {
        let mut o = self.offline_state();
        if o.since.is_none() {
            o.since = Some(Instant::now());
            o.periods += 1;
        }
    }

    pub(crate) fn went_online(&self) {
        let mut o = self.offline_state();
        if let Some(since) = o.since.take() {
            o.total += since.elapsed();
        }
    }

    pub(crate) fn snapshot(&self, peer: &str, online: bool) -> RestStats {
        let g = |a: &AtomicU64| a.load(Relaxed);
        let avg = |total: u64, n: u64| total.checked_div(n).unwrap_or(0);
        let (offline_periods, offline_total) = {
            let o = self.offline_state();
            let current = o.since.map(|s| s.elapsed()).unwrap_or_default();
            (o.periods, o.total + current)
        };
        let network_errors = g(&self.network_errors);
        let dial_errors = g(&self.dial_errors);
        let auth_errors = g(&self.auth_errors);
        let remote_errors = g(&self.remote_errors);
        let deadline_errors = g(&self.deadline_errors);
        let offline_rejections = g(&self.offline_rejections);
        let other_errors = g(&self.other_errors);
        let dials = g(&self.dials);
        let last = g(&self.last_error_unix_nanos);
        RestStats {
            peer: peer.to_string(),
            online,
            calls: g(&self.calls),
            errors: network_errors
                + dial_errors
                + auth_errors
                + remote_errors
                + deadline_errors
                + offline_rejections
                + other_errors,
            network_errors,
            dial_errors,
            auth_errors,
            remote_errors,
            deadline_errors,
            offline_rejections,
            other_errors,
            dials,
            failed_dials: g(&self.failed_dials),
            avg_dial_time_ns: avg(g(&self.dial_total_ns), dials),
            max_dial_time_ns: g(&self.dial_max_ns),
            avg_ttfb_ns: avg(g(&self.ttfb_total_ns), g(&self.ttfb_count)),
            bytes_sent: g(&self.bytes_sent),
            bytes_received: g(&self.bytes_received),
            last_error_unix_nanos: (last != 0).then_some(last),
            offline_periods,
            offline_total_ns: nanos(offline_total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sums_errors_and_averages() {
        let s = StatsCell::default();
        s.calls.fetch_add(4, Relaxed);
        s.error(ErrorKind::Network);
        s.error(ErrorKind::Dial);
        s.error(ErrorKind::Auth);
        s.dial_ok(Duration::from_millis(2));
        s.dial_ok(Duration::from_millis(4));
        s.ttfb(Duration::from_millis(10));
        let snap = s.snapshot("p", true);
        assert_eq!(snap.errors, 3);
        assert_eq!(snap.avg_dial_time_ns, 3_000_000);
        assert_eq!(snap.max_dial_time_ns, 4_000_000);
        assert_eq!(snap.avg_ttfb_ns, 10_000_000);
        assert!(snap.last_error_unix_nanos.is_some());
        assert_eq!(snap.offline_periods, 0);
    }

    #[test]
    fn offline_periods_count_once_per_transition() {
        let s = StatsCell::default();
        s.went_offline();
        s.went_offline();
        assert_eq!(s.snapshot("p", false).offline_periods, 1);
        s.went_online();
        s.went_online();
        s.went_offline();
        let snap = s.snapshot("p", false);
        assert_eq!(snap.offline_periods, 2);
        assert!(snap.offline_total_ns > 0);
    }
}
