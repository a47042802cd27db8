//! Sockets and bytes only: the WebSocket frame codec (`ws.rs`), the HTTP upgrade on both sides
//! (`upgrade.rs` for the dialer, [`GridService`] in `endpoint.rs` for the acceptor), dialing
//! (`dial.rs`), TLS (`tls.rs`), the front door that accepts connections ([`FrontDoor`] in
//! `accept.rs`) and an in-memory network for tests (`memory.rs`). This layer knows nothing of sessions: an upgraded connection is handed to the
//! layer above through the `UpgradeHandler` trait it defines.
//!
//! Byte streams come from a [`Dialer`] (TCP by default, TLS for `https://` hosts); tests
//! substitute an in-memory network ([`MemoryNetwork`]) or a simulated one.

pub(crate) mod accept;
pub(crate) mod admission;
pub(crate) mod diagnose;
mod dial;
pub(crate) mod endpoint;
pub(crate) mod identity;
mod memory;
pub(crate) mod pace;
pub(crate) mod tls;
pub(crate) mod upgrade;
pub(crate) mod ws;

pub use accept::{FrontDoor, FrontDoorHandle};
pub use admission::Admission;
pub use dial::{BoxRead, BoxWrite, Dialer, IoHalves, Target, TcpDialer};
pub use endpoint::GridService;
pub use memory::{MemoryDialer, MemoryNetwork};
pub use pace::SlowBody;
pub use tls::TlsConfig;
pub use ws::WsError;
