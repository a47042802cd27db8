//! # nodegrid
//!
//! Internode traffic for clusters: each pair of nodes keeps one long-lived, two-way WebSocket
//! connection over which both sides make many concurrent single requests and flow-controlled
//! streams, with deadlines, cancellation, keepalive, automatic reconnect and token
//! authentication. The wire format is MinIO's internode "grid" protocol v1.
//!
//! Layers: [`wire`] (bytes ↔ messages, pure), `proto` (state machines, no I/O), [`transport`]
//! (tokio and WebSocket) and the API users touch: [`Manager`], [`Connection`], handlers.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use nodegrid::{auth::Auth, handler::Request, Manager, RemoteError};
//! let hosts = ["http://10.0.0.1:9000", "http://10.0.0.2:9000"];
//! let mgr = Manager::builder("http://10.0.0.1:9000", hosts)
//!     .auth(Auth::shared_token("cluster-secret"))
//!     .build()?;
//! mgr.register_single(78, |req: Request| async move { Ok::<_, RemoteError>(req.bytes()) })?;
//! tokio::spawn({
//!     let mgr = mgr.clone();
//!     async move { mgr.serve(tokio::net::TcpListener::bind("10.0.0.1:9000").await?).await }
//! });
//! let reply = mgr.connection("http://10.0.0.2:9000")?.request(78, "hi").await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
mod config;
mod connection;
mod error;
pub mod handler;
mod manager;
pub mod observe;
pub(crate) mod proto;
pub mod stats;
mod stream;
pub mod transport;
pub mod wire;

pub use config::GridConfig;
pub use connection::{CallOptions, Connection, MuxCounts, Subroute};
pub use error::{ConfigError, Error, RemoteError};
pub use manager::{Manager, ManagerBuilder, StreamSpec, DEFAULT_ROUTE, LOCK_ROUTE};
pub use proto::state::ConnState;
pub use stream::{
    StreamCall, StreamContext, StreamHandler, StreamInput, StreamOptions, StreamOutput,
    StreamReceiver, StreamSender,
};
