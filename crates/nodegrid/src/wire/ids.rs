//! The identifiers that messages carry (PROTOCOL.md §3.1, §7.1).

/// A handler ID (one byte; 0 is reserved, PROTOCOL.md §7.1).
pub type HandlerId = u8;
/// A mux (call) ID chosen by the caller; 0 is connection level.
pub type MuxId = u64;
