//! The errors callers see.
//!
//! Texts that travel on the wire or that MinIO's application code compares (PROTOCOL.md §7.5)
//! are reproduced exactly: `remote disconnected`, `context deadline exceeded`, and so on.
//! [`Error::UnknownHandler`] is nodegrid's own: it names the handler, the subroute and the
//! peer (MinIO's callers see `unknown mux handler` or the callee's `Invalid Handler …` text,
//! which still travels on the wire unchanged). Compare on the enum variant, not on the text,
//! in Rust code.

use crate::wire::{is_invalid_handler_text, HandlerId};

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
    /// No handler is registered for the call: the peer said so (recognised from its
    /// `Invalid Handler …` answer, PROTOCOL.md §5.2), or the call was refused before sending
    /// (handler 0; a stream with no local registration to take its capacities from).
    ///
    /// ```text
    /// handler 12 (subroute kv/nope) is not registered on http://10.0.0.2:9000: check the handler ID and subroute, and that the node runs a version that registers it
    /// ```
    #[error("{}", unknown_handler_text(*.handler, .name.as_deref(), .subroute.as_deref(), .remote, *.kind))]
    UnknownHandler {
        /// The handler ID.
        handler: HandlerId,
        /// The handler's name, if one was given: in the typed handle that made the call, or
        /// in this node's registration of the same handler.
        name: Option<String>,
        /// The subroute the call went through, if any.
        subroute: Option<String>,
        /// The peer the call was for.
        remote: String,
        /// Where the handler was found missing.
        kind: UnknownHandlerKind,
    },
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
    #[error("{}: {message}", HandlerLabel::new(*.handler, .name.as_deref(), None))]
    Codec {
        /// The handler ID.
        handler: u8,
        /// The handler's name, if the typed handle has one.
        name: Option<String>,
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

/// Where a handler was found missing ([`Error::UnknownHandler`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnknownHandlerKind {
    /// The peer answered that it has no handler for the call (MinIO's `Invalid Handler …`).
    NotOnRemote,
    /// Handler ID 0, which never names a handler: refused before sending.
    ReservedId,
    /// A stream to a handler ID with no stream registration on this node to take the
    /// capacities from (they are not negotiated, PROTOCOL.md §6.1): refused before sending.
    NoLocalStream,
}

/// How a handler is named in texts: `handler 12`, `handler 12 "kv.get"`, each optionally
/// followed by ` (subroute kv/1)`.
pub(crate) struct HandlerLabel<'a> {
    handler: HandlerId,
    name: Option<&'a str>,
    subroute: Option<&'a str>,
}

impl<'a> HandlerLabel<'a> {
    pub(crate) fn new(
        handler: HandlerId,
        name: Option<&'a str>,
        subroute: Option<&'a str>,
    ) -> Self {
        HandlerLabel {
            handler,
            name,
            subroute,
        }
    }
}

impl std::fmt::Display for HandlerLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "handler {}", self.handler)?;
        if let Some(n) = self.name {
            write!(f, " \"{n}\"")?;
        }
        if let Some(s) = self.subroute {
            write!(f, " (subroute {s})")?;
        }
        Ok(())
    }
}

fn unknown_handler_text(
    handler: HandlerId,
    name: Option<&str>,
    subroute: Option<&str>,
    remote: &str,
    kind: UnknownHandlerKind,
) -> String {
    let label = HandlerLabel::new(handler, name, subroute);
    match kind {
        UnknownHandlerKind::NotOnRemote => {
            let what = if subroute.is_some() {
                "handler ID and subroute"
            } else {
                "handler ID"
            };
            format!(
                "{label} is not registered on {remote}: check the {what}, and that the node \
                 runs a version that registers it"
            )
        }
        UnknownHandlerKind::ReservedId => format!(
            "{label} is reserved and never registered (call to {remote}): use a handler ID from \
             1 to 255"
        ),
        UnknownHandlerKind::NoLocalStream => format!(
            "{label} has no stream registration on this node to size the stream to {remote} \
             (capacities are not negotiated): register the stream handler on this node too, or \
             set StreamOptions::capacities"
        ),
    }
}

impl Error {
    /// Whether this is the disconnected error (`remote disconnected`).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected)
    }

    /// Whether no handler is registered for the call ([`Error::UnknownHandler`]).
    pub fn is_unknown_handler(&self) -> bool {
        matches!(self, Error::UnknownHandler { .. })
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
    /// [`Error::UnknownHandler`] for a call to `handler` (through `subroute`) on `remote`.
    pub(crate) fn unknown_handler(
        handler: HandlerId,
        name: Option<&str>,
        subroute: Option<&str>,
        remote: &str,
        kind: UnknownHandlerKind,
    ) -> Error {
        Error::UnknownHandler {
            handler,
            name: name.map(str::to_string),
            subroute: subroute.map(str::to_string),
            remote: remote.to_string(),
            kind,
        }
    }

    /// Whether this is the callee's answer to a call for a handler it does not have (a remote
    /// error with one of the texts of PROTOCOL.md §5.2), which callers see as
    /// [`Error::UnknownHandler`].
    pub(crate) fn is_invalid_handler_answer(&self) -> bool {
        matches!(self, Error::Remote(r) if is_invalid_handler_text(r.text()))
    }

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
    /// The local host string is not in the host list, but an entry names the same address
    /// spelled differently.
    #[error(
        "local host {local:?} is not in the host list, which spells the same address {listed:?}: \
         write the local host exactly as it is listed"
    )]
    LocalHostSpelling {
        /// The local host string.
        local: String,
        /// The host list's entry for the same address.
        listed: String,
    },
    /// A remote host appears more than once.
    #[error("host {0} is listed more than once: list each node once")]
    DuplicateHost(String),
    /// Two host strings name the same address once default ports (80 for `http://`, 443 for
    /// `https://`) and letter case are normalised.
    #[error(
        "host strings {first:?} and {second:?} both name {address}: list the node once, spelled \
         the same way on every node"
    )]
    SameAddress {
        /// The first host string.
        first: String,
        /// The later host string naming the same address.
        second: String,
        /// The address both name (`host:port`).
        address: String,
    },
    /// A host string is not `http://host:port` or `https://host:port`.
    #[error("invalid host string {0:?}: expected http://host:port or https://host:port")]
    InvalidHost(String),
    /// A host string has something after `host:port`: a path (even a lone trailing `/`), a
    /// query or a fragment. Host strings are compared byte for byte between nodes, so they
    /// must be written without one.
    #[error("{}", host_path_text(.host, .rest, .expected))]
    HostPath {
        /// The host string as given.
        host: String,
        /// What follows `host:port`.
        rest: String,
        /// The host string to write instead.
        expected: String,
    },
    /// The credentials of the authentication provider cannot work (an empty token or key).
    #[error(transparent)]
    Credentials(#[from] CredentialProblem),
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

fn host_path_text(host: &str, rest: &str, expected: &str) -> String {
    if rest == "/" {
        format!("host string {host:?} ends with '/': write {expected:?}")
    } else {
        format!(
            "host string {host:?} has {rest:?} after host:port: write {expected:?} (the route \
             path is set with ManagerBuilder::route)"
        )
    }
}

/// Credentials an authentication provider was built from that cannot work
/// ([`crate::auth::Auth::credential_problem`]). [`crate::ManagerBuilder::build`] refuses them
/// with [`ConfigError::Credentials`]. The texts never contain the secret itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialProblem {
    /// `Auth::shared_token("")`.
    #[error(
        "the shared token is empty (Auth::shared_token(\"\")): give every node the same \
         non-empty token"
    )]
    EmptyToken,
    /// A shared token with a character other than printable ASCII (a newline, a control
    /// character, a non-ASCII letter): the HTTP `Authorization` header cannot carry it as text,
    /// so no peer would accept it.
    #[error(
        "the shared token contains a character other than printable ASCII (such as the newline \
         a token read from a file often ends with), which the HTTP Authorization header cannot \
         carry: use letters, digits and punctuation only"
    )]
    TokenCharacters,
    /// A shared token that starts or ends with a space or tab: the HTTP `Authorization`
    /// header does not keep it, so no peer would accept the token.
    #[error(
        "the shared token starts or ends with a space or tab, which the HTTP Authorization \
         header does not keep: remove it"
    )]
    TokenWhitespace,
    /// `Auth::minio_jwt("", secret_key)`.
    #[error(
        "the access key is empty (Auth::minio_jwt(\"\", secret_key)): give every node the \
         cluster's access key"
    )]
    EmptyAccessKey,
    /// `Auth::minio_jwt(access_key, "")`.
    #[error(
        "the secret key is empty (Auth::minio_jwt(access_key, \"\")): give every node the \
         cluster's secret key"
    )]
    EmptySecretKey,
}

impl CredentialProblem {
    /// The problem with a shared token, if any.
    pub(crate) fn of_token(token: &str) -> Option<CredentialProblem> {
        if token.is_empty() {
            Some(CredentialProblem::EmptyToken)
        } else if !token
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            Some(CredentialProblem::TokenCharacters)
        } else if token.trim() != token {
            Some(CredentialProblem::TokenWhitespace)
        } else {
            None
        }
    }

    /// The problem with MinIO root credentials, if any.
    pub(crate) fn of_keys(access_key: &str, secret_key: &str) -> Option<CredentialProblem> {
        if access_key.is_empty() {
            Some(CredentialProblem::EmptyAccessKey)
        } else if secret_key.is_empty() {
            Some(CredentialProblem::EmptySecretKey)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_labels() {
        let l = |n, s| HandlerLabel::new(12, n, s).to_string();
        assert_eq!(l(None, None), "handler 12");
        assert_eq!(l(Some("kv.get"), None), "handler 12 \"kv.get\"");
        assert_eq!(l(None, Some("kv/1")), "handler 12 (subroute kv/1)");
        assert_eq!(
            l(Some("kv.get"), Some("kv/1")),
            "handler 12 \"kv.get\" (subroute kv/1)"
        );
    }

    #[test]
    fn unknown_handler_texts() {
        let e = |kind, name, sub| {
            Error::unknown_handler(12, name, sub, "http://10.0.0.2:9000", kind).to_string()
        };
        assert_eq!(
            e(UnknownHandlerKind::NotOnRemote, None, Some("kv/nope")),
            "handler 12 (subroute kv/nope) is not registered on http://10.0.0.2:9000: check the \
             handler ID and subroute, and that the node runs a version that registers it"
        );
        assert_eq!(
            e(UnknownHandlerKind::NotOnRemote, Some("kv.get"), None),
            "handler 12 \"kv.get\" is not registered on http://10.0.0.2:9000: check the handler \
             ID, and that the node runs a version that registers it"
        );
        assert_eq!(
            e(UnknownHandlerKind::NoLocalStream, Some("kv.watch"), None),
            "handler 12 \"kv.watch\" has no stream registration on this node to size the stream \
             to http://10.0.0.2:9000 (capacities are not negotiated): register the stream \
             handler on this node too, or set StreamOptions::capacities"
        );
        assert_eq!(
            Error::unknown_handler(0, None, None, "http://h:1", UnknownHandlerKind::ReservedId)
                .to_string(),
            "handler 0 is reserved and never registered (call to http://h:1): use a handler ID \
             from 1 to 255"
        );
    }

    #[test]
    fn invalid_handler_answers() {
        let r = |t: &str| Error::Remote(RemoteError::new(t));
        assert!(r("Invalid Handler").is_invalid_handler_answer());
        assert!(r("Invalid Handler for type: ReadVersion").is_invalid_handler_answer());
        assert!(!r("handler failed").is_invalid_handler_answer());
        assert!(!Error::Disconnected.is_invalid_handler_answer());
    }

    #[test]
    fn credential_problems() {
        use CredentialProblem::*;
        assert_eq!(CredentialProblem::of_token(""), Some(EmptyToken));
        assert_eq!(CredentialProblem::of_token("t\n"), Some(TokenCharacters));
        assert_eq!(
            CredentialProblem::of_token("t\r\nX: y"),
            Some(TokenCharacters)
        );
        assert_eq!(CredentialProblem::of_token("tö"), Some(TokenCharacters));
        assert_eq!(CredentialProblem::of_token("t "), Some(TokenWhitespace));
        assert_eq!(CredentialProblem::of_token("\tt"), Some(TokenWhitespace));
        assert_eq!(CredentialProblem::of_token("a b\tc!~"), None);
        assert_eq!(CredentialProblem::of_keys("", ""), Some(EmptyAccessKey));
        assert_eq!(CredentialProblem::of_keys("ak", ""), Some(EmptySecretKey));
        assert_eq!(CredentialProblem::of_keys("ak", "sk"), None);
        assert_eq!(
            ConfigError::Credentials(EmptyToken).to_string(),
            "the shared token is empty (Auth::shared_token(\"\")): give every node the same \
             non-empty token"
        );
    }
}
