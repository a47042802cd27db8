//! # nodegrid
//!
//! Internode traffic for clusters: each pair of nodes keeps one long-lived, two-way WebSocket
//! connection over which both sides make many concurrent single requests and flow-controlled
//! streams, with deadlines, cancellation, keepalive, automatic reconnect and token
//! authentication. The wire format is MinIO's internode "grid" protocol v1.
//!
//! Layers, each importing only from those below it (docs/ARCHITECTURE.md): [`wire`] (bytes ↔
//! messages, pure), `proto` (state machines, no I/O), [`transport`] (sockets: WebSocket,
//! dialing, TLS, accepting), the session runtime (one live session: reader, writer, dispatch,
//! calls, timers), the handler registry, and the API users touch: [`Manager`],
//! [`Connection`], [`handler`].
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
mod error;
pub mod observe;
pub(crate) mod proto;
pub mod stats;
pub mod transport;
pub mod wire;

mod session;

mod registry;

mod api;

/// Handlers: the code that runs when a peer calls this node.
///
/// Register them on a [`Manager`]: [`Manager::register_single`] for single requests (a
/// [`SingleHandler`](handler::SingleHandler), any
/// `Fn(Request) -> impl Future<Output = Result<Bytes, RemoteError>>`),
/// [`Manager::register_stream`] for streams (a [`StreamHandler`]), or through the typed layer
/// ([`typed`](handler::typed)), which encodes requests, responses and stream items with serde
/// and MessagePack.
pub mod handler {
    pub use crate::api::typed;
    pub use crate::session::{Request, SingleHandler};
    pub use crate::wire::handler_name;
}

pub use api::{
    CallOptions, Connection, Manager, ManagerBuilder, MuxCounts, SingleSpec, StreamCall,
    StreamOptions, StreamReceiver, StreamSender, StreamSpec, Subroute, DEFAULT_ROUTE, LOCK_ROUTE,
};
pub use config::{FrontDoorConfig, GridConfig};
pub use error::{ConfigError, CredentialProblem, Error, RemoteError, UnknownHandlerKind};
pub use proto::state::ConnState;
pub use session::{StreamContext, StreamHandler, StreamInput, StreamOutput};
