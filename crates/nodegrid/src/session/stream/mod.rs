//! Two-way streams (PROTOCOL.md §6), the session's part: each stream's state for both roles
//! (`client.rs` for streams this node opened, `server.rs` for the peer's, with the handler's
//! API), opening one (`open.rs`), and what the reader does with stream messages
//! (`caller_ops.rs`, `callee_ops.rs`). The protocol rules themselves are the state machines of
//! `proto::stream`.

pub(crate) mod callee_ops;
pub(crate) mod caller_ops;
pub(crate) mod client;
pub(crate) mod open;
pub(crate) mod server;
