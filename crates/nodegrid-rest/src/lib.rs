//! # nodegrid-rest
//!
//! The REST path between nodes, for large payloads: the grid carries small, frequent messages;
//! bulk transfers go over plain HTTP/1.1 on the same port, authenticated the same way
//! (`Authorization: Bearer <token>` and `X-Minio-Time`, PROTOCOL.md §2.4, via
//! [`nodegrid::auth::Auth`]).
//!
//! * **Server**: [`RestServer`] holds named [`Handler`]s served at
//!   `POST <prefix>/<version>/<method>?<query>` with a streamed request body and a streamed
//!   answer. [`RestServer::router`] is an axum [`Router`](axum::Router) to merge into the node's
//!   own; [`serve`] runs one alone (plain or TLS). The built-in methods [`builtin::sink`] and
//!   [`builtin::source`] measure the path.
//! * **Client**: one [`RestClient`] per peer, with keep-alive pooling, TLS/mTLS (rustls, ring),
//!   a deadline per call, typed [`RestError`]s, offline detection with a background health
//!   check, and per-peer [`RestStats`].
//!
//! ```
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! use nodegrid::auth::Auth;
//! use nodegrid_rest::{serve, RequestBody, RestClient, RestServer};
//!
//! let auth = Auth::minio_jwt("minioadmin", "minioadmin-secret");
//! // Node A: mount the REST routes next to its other routes.
//! let rest = RestServer::builder(auth.clone()).with_builtins().build()?;
//! let app = axum::Router::new()
//!     .route("/status", axum::routing::get(|| async { "up" }))
//!     .merge(rest.router());
//! let handle = serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?, app, None)?;
//!
//! // Node B: one client per peer.
//! let peer = RestClient::builder(format!("http://{}", handle.local_addr()), auth).build()?;
//! let answer = peer.call("sink", &[], RequestBody::from(vec![0u8; 4096])).await?;
//! assert_eq!(&answer.bytes(64).await?[..], b"4096");
//! let stats = peer.stats(); // plain serde struct for the node's stats snapshot
//! assert_eq!((stats.calls, stats.bytes_sent), (1, 4096));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod body;
pub mod builtin;
mod client;
mod connect;
mod error;
mod handler;
mod route;
mod serve;
mod server;
mod stats;
mod tls;

pub use body::{RequestBody, ResponseBody};
pub use client::{
    health_backoff, RestClient, RestClientBuilder, RestResponse, DEFAULT_CALL_TIMEOUT,
    DEFAULT_DIAL_TIMEOUT, DEFAULT_HEALTH_BACKOFF_MAX, DEFAULT_HEALTH_BACKOFF_START,
    DEFAULT_HEALTH_CHECK_TIMEOUT, DEFAULT_POOL_IDLE_TIMEOUT, DEFAULT_POOL_MAX_IDLE,
    MAX_ERROR_MESSAGE,
};
pub use error::{BoxError, RestError};
pub use handler::{BodyError, Handler, HandlerError, RequestStream, RestReply, RestRequest};
pub use route::{DEFAULT_PREFIX, DEFAULT_VERSION, HEALTH_METHOD};
pub use serve::{serve, ServerHandle};
pub use server::{RestServer, RestServerBuilder};
pub use stats::RestStats;
pub use tls::{server_tls_config, ClientTls};

/// Re-exported so users can build certificates and keys without naming rustls themselves.
pub use rustls::pki_types;
