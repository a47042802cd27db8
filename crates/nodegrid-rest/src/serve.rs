//! Running a router alone: for a node that has no HTTP server of its own (and for tests and
//! benchmarks). It runs nodegrid's front door ([`nodegrid::transport::FrontDoor`]), with its
//! limits on connections that have not authenticated, request heads, idle keep-alive
//! connections and slow bodies; REST requests that pass the token check mark their connection
//! authenticated. Nodes that serve the grid too should build one front door for both instead
//! (`Manager::front_door().merge(rest.router())`).
//!
//! [`ServerHandle::abort`] stops everything at once: the listener and every open connection are
//! closed without a goodbye, as if the process had died, which is what the failure tests need.

use axum::Router;
use nodegrid::stats::FrontDoorStats;
use nodegrid::transport::{FrontDoor, FrontDoorHandle};
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// A running server, started by [`serve`]. Dropping the handle aborts the server.
#[derive(Debug)]
pub struct ServerHandle {
    door: FrontDoorHandle,
}

impl ServerHandle {
    /// Wraps a front door started with [`FrontDoor::spawn`].
    pub fn from_front_door(door: FrontDoorHandle) -> ServerHandle {
        ServerHandle { door }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.door.local_addr()
    }

    /// How many TCP connections the server has accepted so far.
    pub fn accepted_connections(&self) -> u64 {
        *self.door.watch_accepted().borrow()
    }

    /// A receiver of the accepted-connection count, to await a connection without polling.
    pub fn watch_accepted(&self) -> watch::Receiver<u64> {
        self.door.watch_accepted()
    }

    /// The front door's counters (accepted, refused, timed out, authenticated, …).
    pub fn stats(&self) -> FrontDoorStats {
        self.door.stats()
    }

    /// Stops at once: closes the listener and drops every open connection mid-request.
    pub fn abort(&self) {
        self.door.abort();
    }

    /// Aborts and waits until the listener and all connections are closed, so the port can be
    /// bound again.
    pub async fn kill(self) {
        self.door.kill().await;
    }
}

/// Serves `app` on `listener` (TLS if `tls` is given) until the handle is aborted or dropped,
/// with the front door's default limits. Must be called within a Tokio runtime.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use nodegrid::auth::Auth;
/// use nodegrid_rest::{serve, RestServer};
/// let server = RestServer::builder(Auth::shared_token("secret")).with_builtins().build().expect("config");
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9000").await?;
/// let handle = serve(listener, server.router(), None)?;
/// println!("listening on {}", handle.local_addr());
/// # Ok(()) }
/// ```
pub fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ServerConfig>>,
) -> std::io::Result<ServerHandle> {
    let mut door = FrontDoor::new(app);
    if let Some(t) = tls {
        door = door.tls_server_config(t);
    }
    Ok(ServerHandle {
        door: door.spawn(listener)?,
    })
}
