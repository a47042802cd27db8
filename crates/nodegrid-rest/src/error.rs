//! The one error type a REST caller sees.
//!
//! Every variant names the peer, so a log line says which node failed and how. The variants are
//! shaped by what a caller does next: a [`RestError::PeerOffline`] or network error means "try
//! another node", a [`RestError::Remote`] means the peer answered and refused, a
//! [`RestError::Deadline`] means the call took too long (the peer is not marked offline for it).

use std::time::Duration;

/// A boxed error from a body stream or from the transport.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestError {
    /// Connecting to the peer failed (TCP connect, TLS handshake or dial timeout). The peer is
    /// marked offline.
    #[error("peer {peer}: dial failed: {source}")]
    Dial {
        /// The peer's endpoint.
        peer: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The connection failed after it was established (reset, closed mid-body, …). The peer is
    /// marked offline.
    #[error("peer {peer}: network error: {source}")]
    Network {
        /// The peer's endpoint.
        peer: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The peer answered with a non-success status other than 403; `message` is the start of
    /// the body it sent (at most [`MAX_ERROR_MESSAGE`](crate::MAX_ERROR_MESSAGE) bytes).
    #[error("peer {peer}: remote error {status}: {message}")]
    Remote {
        /// The peer's endpoint.
        peer: String,
        /// The HTTP status code.
        status: u16,
        /// The text the peer sent with the status.
        message: String,
    },
    /// The peer refused our credentials (HTTP 403). The peer stays online.
    #[error("peer {peer}: authentication refused: {message}")]
    Auth {
        /// The peer's endpoint.
        peer: String,
        /// The reason the peer gave.
        message: String,
    },
    /// The call did not finish (response fully read) within its deadline.
    #[error("peer {peer}: deadline of {deadline:?} exceeded")]
    Deadline {
        /// The peer's endpoint.
        peer: String,
        /// The deadline that was exceeded.
        deadline: Duration,
    },
    /// The peer is marked offline; the call failed at once without touching the network. The
    /// background health check will mark it online again.
    #[error("peer {peer} is offline")]
    PeerOffline {
        /// The peer's endpoint.
        peer: String,
    },
    /// The caller's request body stream returned an error; the call was abandoned. The peer
    /// is not marked offline.
    #[error("peer {peer}: request body failed: {source}")]
    RequestBody {
        /// The peer's endpoint.
        peer: String,
        /// The error, as reported by the HTTP layer (its source chain holds the body's error).
        #[source]
        source: BoxError,
    },
    /// The call was malformed (for example an invalid method name); nothing was sent.
    #[error("peer {peer}: invalid request: {reason}")]
    InvalidRequest {
        /// The peer's endpoint.
        peer: String,
        /// What is wrong.
        reason: String,
    },
    /// A response read whole with [`ResponseBody::bytes`](crate::ResponseBody::bytes) was longer
    /// than the caller's limit. Not counted as a call error in the stats.
    #[error("peer {peer}: response longer than {limit} bytes")]
    ResponseTooLarge {
        /// The peer's endpoint.
        peer: String,
        /// The caller's limit.
        limit: usize,
    },
    /// A client or server configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl RestError {
    /// `true` for errors that mean the peer could not be reached or the connection broke
    /// ([`RestError::Dial`] and [`RestError::Network`]).
    pub fn is_network(&self) -> bool {
        matches!(self, RestError::Dial { .. } | RestError::Network { .. })
    }

    /// The HTTP status of a remote refusal (403 for [`RestError::Auth`]), if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            RestError::Remote { status, .. } => Some(*status),
            RestError::Auth { .. } => Some(403),
            _ => None,
        }
    }
}
