//! Protocol logic without I/O: connection state, redial pacing, handshake checks, mux tables
//! and the stream state machines. Fed messages and time, returns messages and decisions.

pub mod backoff;
pub(crate) mod handshake;
pub(crate) mod muxtable;
pub mod state;
pub(crate) mod stream;
