//! Running a router alone: an accept loop for a node that has no HTTP server of its own (and
//! for tests and benchmarks). Nodes that have one mount [`RestServer::router`] instead.
//!
//! Connections are served with HTTP/1.1 keep-alive and with upgrades enabled, so the grid's
//! WebSocket endpoint can live in the same router. [`ServerHandle::abort`] stops everything at
//! once: the listener and every open connection are closed without a goodbye, as if the process
//! had died, which is what the failure tests need.
//!
//! [`RestServer::router`]: crate::RestServer::router

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// How long a new connection may take to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits for a request head, counted from the start of a connection or
/// of an idle keep-alive period; longer than the client's pool idle timeout so that the client
/// normally closes idle connections first.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// A running accept loop, started by [`serve`]. Dropping the handle aborts the server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    accepted: watch::Receiver<u64>,
    task: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many TCP connections the server has accepted so far.
    pub fn accepted_connections(&self) -> u64 {
        *self.accepted.borrow()
    }

    /// A receiver of the accepted-connection count, to await a connection without polling.
    pub fn watch_accepted(&self) -> watch::Receiver<u64> {
        self.accepted.clone()
    }

    /// Stops at once: closes the listener and drops every open connection mid-request.
    pub fn abort(&self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }

    /// Aborts and waits until the listener and all connections are closed, so the port can be
    /// bound again.
    pub async fn kill(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Serves `app` on `listener` (TLS if `tls` is given) until the handle is aborted or dropped.
/// Must be called within a Tokio runtime.
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
    let addr = listener.local_addr()?;
    let (count_tx, count_rx) = watch::channel(0u64);
    let acceptor = tls.map(TlsAcceptor::from);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: back off briefly, keep serving.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    count_tx.send_modify(|n| *n += 1);
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(serve_connection(tcp, peer, app.clone(), acceptor.clone()));
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    Ok(ServerHandle {
        addr,
        accepted: count_rx,
        task: Some(task),
    })
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    tls: Option<TlsAcceptor>,
) {
    let service = TowerToHyperService::new(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let result = match tls {
        None => {
            http.serve_connection(TokioIo::new(tcp), service)
                .with_upgrades()
                .await
        }
        Some(acceptor) => {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    http.serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
