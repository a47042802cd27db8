//! The connection's state as callers observe it (PROTOCOL.md §4.1). Local only, never sent.

/// State of the connection to one remote host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// No session yet (the acceptor side stays here until the peer dials).
    Unconnected,
    /// A dial attempt is in progress.
    Connecting,
    /// A session is live.
    Connected,
    /// The last session ended or the last attempt failed; the text says why.
    Disconnected(String),
    /// The manager was shut down (terminal).
    Shutdown,
}

impl ConnState {
    /// Whether a session is live.
    pub fn is_connected(&self) -> bool {
        matches!(self, ConnState::Connected)
    }
}

impl std::fmt::Display for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnState::Unconnected => f.write_str("unconnected"),
            ConnState::Connecting => f.write_str("connecting"),
            ConnState::Connected => f.write_str("connected"),
            ConnState::Disconnected(r) => write!(f, "disconnected ({r})"),
            ConnState::Shutdown => f.write_str("shutdown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ConnState;

    #[test]
    fn display_and_is_connected() {
        let all = [
            (ConnState::Unconnected, "unconnected"),
            (ConnState::Connecting, "connecting"),
            (ConnState::Connected, "connected"),
            (ConnState::Disconnected("EOF".into()), "disconnected (EOF)"),
            (ConnState::Shutdown, "shutdown"),
        ];
        for (s, text) in all {
            assert_eq!(s.to_string(), text);
            assert_eq!(s.is_connected(), text == "connected");
        }
    }
}
