//! Tunables of a manager, with the reference's values as defaults (PROTOCOL.md §10).

use std::time::Duration;

/// Default lower bound of the redial delay (PROTOCOL.md §4.6).
pub(crate) const REDIAL_MIN: Duration = Duration::from_secs(1);
/// Default upper bound (exclusive) of the redial delay.
pub(crate) const REDIAL_MAX: Duration = Duration::from_secs(2);

/// Limits and timers of a grid manager. Every field has a production default; tests shorten
/// the timers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GridConfig {
    /// Maximum size of one grid message (payload included). Default 64 MiB.
    pub max_message_size: usize,
    /// Entries in a session's outbound queue before callers wait. Default 65535 (§8).
    pub outbound_queue: usize,
    /// Bytes of data a session's outbound queue holds before its senders wait: requests and
    /// stream opens of callers, stream items of callers and handlers, answers of handlers that
    /// ran in their own task. A message counts its payload plus 128 bytes, from when it is
    /// queued until the writer has written it. Senders wait (callers within their deadline)
    /// until the writer drains below the bound; one message may pass it per sender, so a
    /// message larger than the bound still goes out. Default 64 MiB.
    pub outbound_data_bytes: usize,
    /// Bytes of control messages a session's outbound queue holds before the session stops
    /// reading from its peer: the answers the reader produces itself (errors such as unknown
    /// handlers, answers of handlers that finish at once, stream acks and credits). At the
    /// bound the reader waits until the writer has drained below half of it, so a peer that
    /// sends requests but reads its answers slowly or not at all is slowed to its own reading
    /// speed (counted as `read_pauses`); one that does not read at all is ended by
    /// `write_timeout`. The bound may be passed by one answer. Liveness answers are not
    /// counted here: at most one WebSocket pong and one connection pong are ever pending
    /// (a newer ping replaces an unanswered one). Default 16 MiB.
    pub outbound_control_bytes: usize,
    /// Single-request handlers running at once per connection; beyond this, requests are
    /// answered with a remote error at once (the reader never blocks). Default 10 000.
    pub max_running_handlers: usize,
    /// Streams a peer may have open towards us per connection. Default 10 000.
    pub max_incoming_streams: usize,
    /// Connection ping interval (§4.3). Default 10 s.
    pub ping_interval: Duration,
    /// A session without a connection-level pong for this long is dead. Default 20 s.
    pub pong_timeout: Duration,
    /// A socket write that makes no progress for this long ends the session (§8, §11 item
    /// 11): a peer that stopped reading is detected within it. The reference bounds the whole
    /// frame instead, which can never send a frame that takes longer than this on a slow
    /// link; here a large frame may take as long as it needs while bytes keep moving.
    /// Default 4 s.
    pub write_timeout: Duration,
    /// Dial + TLS + HTTP upgrade must finish within this time (§2.2). Default 2 s.
    pub dial_timeout: Duration,
    /// The whole handshake (HTTP upgrade and grid Connect/ConnectResponse) must finish within
    /// this time, on both sides. The reference has no such limit. Default 10 s.
    pub handshake_timeout: Duration,
    /// Grid handshakes (between the HTTP upgrade and the session's start) in progress at once;
    /// more upgrades are answered 503. Served through [`crate::transport::FrontDoor`] (as
    /// [`crate::Manager::serve`] does), it is also the front door's cap on connections that
    /// have not authenticated yet. Default 256.
    pub max_pending_handshakes: usize,
    /// Grid handshakes in progress at once from one source address; more upgrades from it are
    /// answered 503. Default 32.
    pub max_pending_handshakes_per_source: usize,
    /// After the HTTP upgrade, the dialer's Connect message must arrive within this time. A
    /// dialer sends it at once, so this bounds how long an upgraded but silent socket holds a
    /// handshake slot. Default 2 s.
    pub connect_timeout: Duration,
    /// Maximum clock difference accepted in the grid handshake. Default 5 min.
    pub max_clock_skew: Duration,
    /// Redial delay bounds after a failed attempt (uniform). Default [1 s, 2 s).
    pub redial_min: Duration,
    /// See `redial_min`.
    pub redial_max: Duration,
    /// Default deadline of single requests when the caller gives none. Default 60 s.
    pub default_request_timeout: Duration,
    /// Stream ping interval on the caller side (§6.8). Default 15 s.
    pub stream_ping_interval: Duration,
    /// A caller stream with nothing received for this long fails. Default 30 s.
    pub stream_idle_timeout: Duration,
    /// A callee stream without a ping for this long is cancelled. Default 60 s.
    pub stream_callee_idle_timeout: Duration,
    /// Most messages merged into one WebSocket message. Default 256 (the reference writer
    /// merges at most 51; receivers accept any number, §3.2).
    pub merge_max_messages: usize,
    /// Byte budget of a merged WebSocket message. Default 128 KiB (the reference uses 31 744;
    /// larger envelopes mean fewer writes for streams). At most [`crate::wire::FRAME_SLACK`].
    pub merge_max_bytes: usize,
    /// What to do when a nodegrid peer's host list differs from ours (its handshake carries a
    /// fingerprint of it, PROTOCOL.md §3.6). `false` (default): connect, and log one WARN per
    /// peer per 30 s saying what differs. `true`: refuse the connection with that reason
    /// (both as acceptor and as dialer). MinIO peers announce no host list and are never
    /// refused for it.
    pub strict_host_list: bool,
}

impl Default for GridConfig {
    fn default() -> Self {
        GridConfig {
            max_message_size: crate::wire::DEFAULT_MAX_MESSAGE_SIZE,
            outbound_queue: 65_535,
            outbound_data_bytes: 64 << 20,
            outbound_control_bytes: 16 << 20,
            max_running_handlers: 10_000,
            max_incoming_streams: 10_000,
            ping_interval: Duration::from_secs(10),
            pong_timeout: Duration::from_secs(20),
            write_timeout: Duration::from_secs(4),
            dial_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(10),
            max_pending_handshakes: 256,
            max_pending_handshakes_per_source: 32,
            connect_timeout: Duration::from_secs(2),
            max_clock_skew: Duration::from_secs(300),
            redial_min: REDIAL_MIN,
            redial_max: REDIAL_MAX,
            default_request_timeout: Duration::from_secs(60),
            stream_ping_interval: Duration::from_secs(15),
            stream_idle_timeout: Duration::from_secs(30),
            stream_callee_idle_timeout: Duration::from_secs(60),
            merge_max_messages: 256,
            merge_max_bytes: 128 * 1024,
            strict_host_list: false,
        }
    }
}

impl GridConfig {
    pub(crate) fn validate(&self) -> Result<(), crate::error::ConfigError> {
        use crate::error::ConfigError::Limit;
        let nz = |v: usize, name| {
            if v == 0 {
                Err(Limit {
                    name,
                    reason: "must be > 0",
                })
            } else {
                Ok(())
            }
        };
        nz(self.max_message_size, "max_message_size")?;
        nz(self.outbound_queue, "outbound_queue")?;
        nz(self.outbound_data_bytes, "outbound_data_bytes")?;
        nz(self.outbound_control_bytes, "outbound_control_bytes")?;
        nz(self.max_running_handlers, "max_running_handlers")?;
        nz(self.max_incoming_streams, "max_incoming_streams")?;
        nz(self.max_pending_handshakes, "max_pending_handshakes")?;
        nz(
            self.max_pending_handshakes_per_source,
            "max_pending_handshakes_per_source",
        )?;
        nz(self.merge_max_messages, "merge_max_messages")?;
        let pos = |d: Duration, name| {
            if d.is_zero() {
                Err(Limit {
                    name,
                    reason: "must be > 0",
                })
            } else {
                Ok(())
            }
        };
        pos(self.ping_interval, "ping_interval")?;
        pos(self.pong_timeout, "pong_timeout")?;
        pos(self.write_timeout, "write_timeout")?;
        pos(self.dial_timeout, "dial_timeout")?;
        pos(self.handshake_timeout, "handshake_timeout")?;
        pos(self.connect_timeout, "connect_timeout")?;
        pos(self.stream_ping_interval, "stream_ping_interval")?;
        if self.merge_max_bytes > crate::wire::FRAME_SLACK {
            return Err(Limit {
                name: "merge_max_bytes",
                reason: "must be at most wire::FRAME_SLACK (256 KiB)",
            });
        }
        if self.redial_max < self.redial_min {
            return Err(Limit {
                name: "redial_max",
                reason: "must be >= redial_min",
            });
        }
        Ok(())
    }
}

/// Limits of the [`crate::transport::FrontDoor`], the accept loop that serves a node's port
/// (the grid's upgrade endpoint, the REST routes, and any routes of the user). Every field has
/// a production default; see SECURITY.md for what each one protects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FrontDoorConfig {
    /// From the TCP accept, the TLS handshake and a complete first request head must arrive
    /// within this time, and a connection must authenticate (a REST request that passes the
    /// token check, or a grid upgrade) within it; otherwise it is closed. Default 10 s.
    pub handshake_timeout: Duration,
    /// Largest request head (request line and headers), in bytes; a larger one is answered
    /// 431 and the connection closed. At least 8 KiB. Default 64 KiB.
    pub max_head_bytes: usize,
    /// Connections that have not authenticated yet, at once. Beyond it, new connections are
    /// closed as soon as they are accepted. Authenticated connections and established grid
    /// sessions never count against it. Default 256.
    pub max_unauthenticated: usize,
    /// An authenticated keep-alive connection waiting for its next request, or sending a
    /// request head, is closed after this long. Longer than the REST client's pool idle
    /// timeout (60 s), so clients normally close idle connections first. Default 90 s.
    pub idle_timeout: Duration,
    /// A request body must deliver at least [`FrontDoorConfig::body_min_bytes`] within every
    /// period of this length (or end); a slower body fails with an error and the connection
    /// is closed. Default 10 s.
    pub body_timeout: Duration,
    /// See [`FrontDoorConfig::body_timeout`]. Default 16 KiB (a body slower than 1.6 KB/s is
    /// cut).
    pub body_min_bytes: u64,
}

impl Default for FrontDoorConfig {
    fn default() -> Self {
        FrontDoorConfig {
            handshake_timeout: Duration::from_secs(10),
            max_head_bytes: 64 * 1024,
            max_unauthenticated: 256,
            idle_timeout: Duration::from_secs(90),
            body_timeout: Duration::from_secs(10),
            body_min_bytes: 16 * 1024,
        }
    }
}

impl FrontDoorConfig {
    /// Checks every limit; the error names the field and what is wrong.
    pub fn validate(&self) -> Result<(), crate::error::ConfigError> {
        use crate::error::ConfigError::Limit;
        if self.max_head_bytes < MIN_HEAD_BYTES {
            return Err(Limit {
                name: "max_head_bytes",
                reason: "must be at least 8192 bytes (HTTP/1 parser minimum)",
            });
        }
        if self.max_unauthenticated == 0 {
            return Err(Limit {
                name: "max_unauthenticated",
                reason: "must be > 0",
            });
        }
        for (d, name) in [
            (self.handshake_timeout, "handshake_timeout"),
            (self.idle_timeout, "idle_timeout"),
            (self.body_timeout, "body_timeout"),
        ] {
            if d.is_zero() {
                return Err(Limit {
                    name,
                    reason: "must be > 0",
                });
            }
        }
        Ok(())
    }
}

/// The smallest request-head limit the HTTP/1 parser accepts.
pub(crate) const MIN_HEAD_BYTES: usize = 8192;
