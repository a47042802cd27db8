//! The public API users touch: [`Manager`] (one per node), [`Connection`] (one per peer), the
//! call options and stream handle, the typed layer, and the machinery only they drive: the
//! dialer's reconnect loop and the accepting side of the grid handshake.

pub(crate) mod acceptor;
pub(crate) mod call;
pub(crate) mod claims;
pub(crate) mod common;
pub(crate) mod connection;
pub(crate) mod diagnose;
pub(crate) mod manager;
pub(crate) mod reconnect;
pub(crate) mod subroute;
pub mod typed;

pub use self::call::{CallOptions, StreamCall, StreamOptions, StreamReceiver, StreamSender};
pub use self::connection::{Connection, MuxCounts};
pub use self::manager::{
    Manager, ManagerBuilder, SingleSpec, StreamSpec, DEFAULT_ROUTE, LOCK_ROUTE,
};
pub use self::subroute::Subroute;
