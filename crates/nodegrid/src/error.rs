//! The errors callers see.
//!
//! Texts that travel on the wire or that MinIO's application code compares (PROTOCOL.md §7.5)
//! are reproduced exactly: `remote disconnected`, `unknown mux handler`, and so on. Compare on
//! the enum variant, not on the text, in Rust code.

/// An error text produced by the remote side (a handler's error, or the callee's framework).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteError(pub String);

impl RemoteError {
    /// A remote error with the given text.
    pub fn new(text: impl Into<String>) -> Self {
        RemoteError(text.into())
    }

    /// The error text.
    pub fn text(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RemoteError {}

impl From<String> for RemoteError {
    fn from(s: String) -> Self {
        RemoteError(s)
    }
}

impl From<&str> for RemoteError {
    fn from(s: &str) -> Self {
        RemoteError(s.to_string())
    }
}

/// Why a call (single request or stream) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not connected, or the session ended while the call was in flight.
    #[error("remote disconnected")]
    Disconnected,
    /// The remote side answered with an error.
    #[error("{0}")]
    Remote(RemoteError),
    /// The handler ID is invalid, or a stream has no local registration.
    #[error("unknown mux handler")]
    UnknownHandler,
    /// The call's deadline passed.
    #[error("context deadline exceeded")]
    DeadlineExceeded,
    /// The call was cancelled by the caller.
    #[error("context canceled")]
    Cancelled,
    /// The remote side broke the sequence numbering of a stream.
    #[error("out-of-sequence item received")]
    OutOfSequence,
    /// The remote side no longer knows the stream (pong with "not found").
    #[error("remote terminated call")]
    RemoteTerminated,
    /// Input was sent on a stream that takes none.
    #[error("stream does not accept requests")]
    NoInput,
    /// The stream's input was already closed.
    #[error("stream input already closed")]
    InputClosed,
    /// The host is not part of the cluster configuration.
    #[error("unknown host: {0}")]
    UnknownHost(String),
    /// A payload does not fit in one message under the message size limit
    /// (`max_message_size`, which also covers the message's framing of at most
    /// [`crate::wire::MAX_MESSAGE_OVERHEAD`] bytes).
    #[error("payload of {size} bytes does not fit in a message of at most {limit} bytes (max_message_size)")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The message size limit.
        limit: usize,
    },
    /// A configured concurrency limit was reached.
    #[error("limit reached: {0}")]
    LimitReached(&'static str),
    /// A typed payload could not be encoded or decoded.
    #[error("handler {handler}: {message}")]
    Codec {
        /// The handler ID.
        handler: u8,
        /// The encoder's or decoder's message.
        message: String,
    },
    /// The stream's flow control was violated by the peer.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The manager was shut down.
    #[error("grid manager shut down")]
    Shutdown,
}

impl Error {
    /// Whether this is the disconnected error (`remote disconnected`).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected)
    }

    /// The remote error text, if the callee produced this error.
    pub fn remote_text(&self) -> Option<&str> {
        match self {
            Error::Remote(r) => Some(r.text()),
            _ => None,
        }
    }
}

/// The text a callee sends when a call's deadline passed on its side.
pub(crate) const DEADLINE_TEXT: &str = "context deadline exceeded";

impl Error {
    /// The error for a remote error text. A callee's deadline expiry maps to
    /// [`Error::DeadlineExceeded`], the same error the caller's own timer gives, so the result
    /// does not depend on which side's timer fired first.
    pub(crate) fn from_remote_text(text: String) -> Error {
        // A receiver's "message too large" (`wire::too_large_text`) is typed again here.
        if let Some((size, limit)) = crate::wire::parse_too_large_text(&text) {
            return Error::TooLarge {
                size: size as usize,
                limit,
            };
        }
        if text == DEADLINE_TEXT {
            Error::DeadlineExceeded
        } else {
            Error::Remote(RemoteError(text))
        }
    }
}

impl From<RemoteError> for Error {
    fn from(r: RemoteError) -> Self {
        Error::Remote(r)
    }
}

/// A configuration problem detected when building a manager.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The local host is missing from the host list, or listed more than once.
    #[error("local host {local} must appear exactly once in the host list (found {count} times)")]
    LocalHost {
        /// The local host string.
        local: String,
        /// How often it appears.
        count: usize,
    },
    /// A remote host appears more than once.
    #[error("host {0} is listed more than once")]
    DuplicateHost(String),
    /// A host string is not `http://host:port` or `https://host:port`.
    #[error("invalid host string {0:?}: expected http://host:port or https://host:port")]
    InvalidHost(String),
    /// The route path does not start with `/`.
    #[error("invalid route path {0:?}: must start with '/'")]
    InvalidRoute(String),
    /// An `https://` host needs TLS configuration.
    #[error("host {0} uses https:// but no TLS configuration was given")]
    TlsRequired(String),
    /// A handler ID outside 1..=255 or already registered.
    #[error("handler {handler}: {reason}")]
    Handler {
        /// The handler ID.
        handler: u8,
        /// What is wrong.
        reason: String,
    },
    /// A limit is zero or otherwise unusable.
    #[error("invalid limit {name}: {reason}")]
    Limit {
        /// The limit's name.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// TLS material could not be loaded.
    #[error("TLS configuration: {0}")]
    Tls(String),
}
