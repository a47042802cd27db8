//! The front door: the one accept loop for everything a node serves on its port — the grid's
//! upgrade endpoint, the REST routes, and any routes the user adds — plain or TLS, with one
//! set of protections for connections that have not authenticated yet.
//!
//! * The TLS handshake, the first request head, and authentication must all happen within
//!   `handshake_timeout` of the accept; otherwise the connection is closed.
//! * A request head is at most `max_head_bytes`.
//! * At most `max_unauthenticated` connections may be unauthenticated at once; beyond it, new
//!   connections are closed as soon as they are accepted. A connection stops counting once it
//!   authenticates: a REST request passes the token check, or a grid session starts.
//!   Established grid sessions never count against it and never wait behind it.
//! * A connection that has not authenticated is closed after each response (no keep-alive), so
//!   refused requests and upgrades give their place back at once.
//! * Authenticated keep-alive connections are closed after `idle_timeout` without a request,
//!   and request bodies must keep a minimum pace (`body_min_bytes` per `body_timeout`).
//!
//! Routes mark their connection authenticated through the [`Admission`] every request carries
//! in its extensions. The limits are in [`FrontDoorConfig`]; the counters in [`FrontDoorStats`].

use super::admission::{Admission, PreAuthSlot};
use super::diagnose::{tls_problem, TlsSide, WarnLimiter, WARN_INTERVAL};
use super::pace::PacedBody;
use super::tls::TlsConfig;
use crate::config::FrontDoorConfig;
use crate::error::ConfigError;
use crate::stats::{FrontDoorCounters, FrontDoorStats};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use rustls::pki_types::CertificateDer;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// How often a repeated accept error is logged at WARN.
const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// Source addresses remembered for rate-limiting TLS failure warnings.
const TLS_WARN_SOURCES: usize = 1024;

/// Serves a router on a listener with the node's protections. Build one with
/// [`FrontDoor::new`] (or [`crate::Manager::front_door`], which starts from the grid's route,
/// TLS and limits), add routes with [`FrontDoor::merge`], then [`FrontDoor::serve`] or
/// [`FrontDoor::spawn`].
///
/// ```no_run
/// # async fn f(mgr: nodegrid::Manager) -> std::io::Result<()> {
/// use nodegrid::transport::Admission;
/// let status = axum::Router::new().route(
///     "/status",
///     axum::routing::get(|req: axum::extract::Request| async move {
///         // An open route: mark the connection authenticated so it may stay open.
///         if let Some(a) = Admission::of(&req) {
///             a.authenticated();
///         }
///         "up"
///     }),
/// );
/// let listener = tokio::net::TcpListener::bind("10.0.0.1:9000").await?;
/// mgr.front_door().merge(status).serve(listener).await
/// # }
/// ```
pub struct FrontDoor {
    router: Router,
    tls: Option<TlsSource>,
    cfg: FrontDoorConfig,
    counters: Arc<FrontDoorCounters>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for FrontDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontDoor")
            .field("tls", &self.tls.is_some())
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Where the server certificate comes from: a reloadable [`TlsConfig`] (read at every accept,
/// so a reload reaches new connections) or a fixed rustls configuration.
#[derive(Clone)]
enum TlsSource {
    Reloadable(TlsConfig),
    Fixed(Arc<rustls::ServerConfig>),
}

impl TlsSource {
    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        match self {
            TlsSource::Reloadable(t) => tokio_rustls::TlsAcceptor::from(t.server_config()),
            TlsSource::Fixed(c) => tokio_rustls::TlsAcceptor::from(c.clone()),
        }
    }
}

impl FrontDoor {
    /// A front door serving `router` in plain HTTP with the default limits.
    pub fn new(router: Router) -> FrontDoor {
        FrontDoor {
            router,
            tls: None,
            cfg: FrontDoorConfig::default(),
            counters: Arc::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Adds the routes of `router` (see [`axum::Router::merge`]).
    pub fn merge(mut self, router: Router) -> FrontDoor {
        self.router = self.router.merge(router);
        self
    }

    /// Serves TLS with the certificate of `tls`, read again at every accept (so
    /// [`TlsConfig::reload`] reaches new connections). With a CA and client certificates
    /// required, peers must present a certificate signed by that CA (mTLS).
    pub fn tls(mut self, tls: TlsConfig) -> FrontDoor {
        self.tls = Some(TlsSource::Reloadable(tls));
        self
    }

    /// Serves TLS with a fixed rustls server configuration.
    pub fn tls_server_config(mut self, cfg: Arc<rustls::ServerConfig>) -> FrontDoor {
        self.tls = Some(TlsSource::Fixed(cfg));
        self
    }

    /// The limits (see [`FrontDoorConfig`] for each default).
    pub fn config(mut self, cfg: FrontDoorConfig) -> FrontDoor {
        self.cfg = cfg;
        self
    }

    /// Stops accepting when `token` fires; [`FrontDoor::serve`] then returns.
    pub fn shutdown_on(mut self, token: CancellationToken) -> FrontDoor {
        self.shutdown = token;
        self
    }

    /// Counts into `counters` (a manager's, so its stats show the front door).
    pub(crate) fn with_counters(mut self, counters: Arc<FrontDoorCounters>) -> FrontDoor {
        self.counters = counters;
        self
    }

    /// The counters so far.
    pub fn stats(&self) -> FrontDoorStats {
        self.counters.snapshot()
    }

    /// Accepts connections on `listener` until the shutdown token fires (see
    /// [`FrontDoor::shutdown_on`]); open connections are then dropped.
    pub async fn serve(self, listener: TcpListener) -> io::Result<()> {
        self.cfg.validate().map_err(invalid_config)?;
        let (accepted, _) = watch::channel(0);
        Arc::new(Door::from(self, accepted)).run(listener).await
    }

    /// Serves in a task of its own and returns a handle to it. Dropping or aborting the
    /// handle closes the listener and every connection at once.
    pub fn spawn(self, listener: TcpListener) -> io::Result<FrontDoorHandle> {
        self.cfg.validate().map_err(invalid_config)?;
        let addr = listener.local_addr()?;
        let counters = self.counters.clone();
        let (accepted, watch_accepted) = watch::channel(0);
        let door = Arc::new(Door::from(self, accepted));
        let task = tokio::spawn(async move {
            if let Err(e) = door.run(listener).await {
                tracing::warn!("front door stopped: accept failed: {e}");
            }
        });
        Ok(FrontDoorHandle {
            addr,
            counters,
            accepted: watch_accepted,
            task: Some(task),
        })
    }
}

fn invalid_config(e: ConfigError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// A front door serving in its own task ([`FrontDoor::spawn`]). Dropping the handle stops it.
#[derive(Debug)]
pub struct FrontDoorHandle {
    addr: SocketAddr,
    counters: Arc<FrontDoorCounters>,
    accepted: watch::Receiver<u64>,
    task: Option<JoinHandle<()>>,
}

impl FrontDoorHandle {
    /// The address the front door listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters so far.
    pub fn stats(&self) -> FrontDoorStats {
        self.counters.snapshot()
    }

    /// A receiver of the number of accepted connections, to await one without polling.
    pub fn watch_accepted(&self) -> watch::Receiver<u64> {
        self.accepted.clone()
    }

    /// Stops at once: closes the listener and drops every open connection mid-request, as if
    /// the process had died. Upgraded grid sessions are not affected (they belong to their
    /// manager).
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

impl Drop for FrontDoorHandle {
    fn drop(&mut self) {
        self.abort();
    }
}

/// The running front door, shared by its connection tasks.
struct Door {
    router: Router,
    tls: Option<TlsSource>,
    cfg: FrontDoorConfig,
    counters: Arc<FrontDoorCounters>,
    shutdown: CancellationToken,
    accepted: watch::Sender<u64>,
    /// When an accept error was last logged at WARN.
    last_accept_warn: Mutex<Option<Instant>>,
    /// TLS failures that name a certificate problem: one WARN per source address per 30 s.
    tls_warned: WarnLimiter<IpAddr>,
}

impl Door {
    fn from(f: FrontDoor, accepted: watch::Sender<u64>) -> Door {
        Door {
            router: f.router,
            tls: f.tls,
            cfg: f.cfg,
            counters: f.counters,
            shutdown: f.shutdown,
            accepted,
            last_accept_warn: Mutex::new(None),
            tls_warned: WarnLimiter::new(WARN_INTERVAL, TLS_WARN_SOURCES),
        }
    }

    async fn run(self: Arc<Self>, listener: TcpListener) -> io::Result<()> {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((tcp, peer)) => self.admit(tcp, peer, &mut conns),
                    Err(e) if is_transient(&e) => {
                        self.accept_failed(&e);
                        // Out of descriptors and the like: back off briefly, keep serving.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => return Err(e),
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                _ = self.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    fn accept_failed(&self, e: &io::Error) {
        self.counters.accept_errors.fetch_add(1, Relaxed);
        let mut last = self.last_accept_warn.lock();
        if last.is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(
                "accepting a connection failed: {e}; if this says 'too many open files', raise \
                 the open-files limit (ulimit -n) or lower the number of connections"
            );
        }
    }

    /// Reports a failed TLS handshake: a certificate problem (or a peer that does not speak
    /// TLS) at WARN, once per source address per interval, since this side cannot know which
    /// peer it was; resets and hang-ups only at DEBUG.
    fn tls_failed(&self, peer: SocketAddr, e: &io::Error) {
        tracing::debug!(%peer, "TLS handshake failed: {e}");
        let Some(p) = tls_problem(e, TlsSide::Acceptor) else {
            return;
        };
        if self.shutdown.is_cancelled() {
            return;
        }
        if let Some(suppressed) = self.tls_warned.due(peer.ip()) {
            tracing::warn!(
                %peer,
                suppressed,
                "TLS handshake with {peer} failed: {}; {}",
                p.what,
                p.fix
            );
        }
    }

    /// Takes a new connection in, or closes it at once when too many are unauthenticated.
    fn admit(self: &Arc<Self>, tcp: TcpStream, peer: SocketAddr, conns: &mut JoinSet<()>) {
        let c = &self.counters;
        c.accepted.fetch_add(1, Relaxed);
        self.accepted.send_modify(|n| *n += 1);
        let Some(slot) = PreAuthSlot::take(c, self.cfg.max_unauthenticated) else {
            c.refused_over_limit.fetch_add(1, Relaxed);
            return; // dropping the stream closes it
        };
        let _ = tcp.set_nodelay(true);
        // Counted from the accept, not from when the connection's task first runs.
        let deadline = Instant::now() + self.cfg.handshake_timeout;
        conns.spawn(self.clone().serve_one(tcp, peer, slot, deadline));
    }

    async fn serve_one(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        slot: PreAuthSlot,
        deadline: Instant,
    ) {
        let _open = Gauge::up(&self.counters.open);
        let Some(tls) = &self.tls else {
            return self.serve_http(tcp, peer, None, slot, deadline).await;
        };
        match tokio::time::timeout_at(deadline, tls.acceptor().accept(tcp)).await {
            Ok(Ok(s)) => {
                let cert = s
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.clone().into_owned());
                self.serve_http(s, peer, cert, slot, deadline).await
            }
            Ok(Err(e)) => {
                self.counters.tls_failed.fetch_add(1, Relaxed);
                self.tls_failed(peer, &e);
            }
            Err(_) => {
                self.counters.tls_failed.fetch_add(1, Relaxed);
                tracing::debug!(%peer, "TLS handshake did not finish in time");
            }
        }
    }

    async fn serve_http<I>(
        self: &Arc<Self>,
        io: I,
        peer: SocketAddr,
        cert: Option<CertificateDer<'static>>,
        slot: PreAuthSlot,
        deadline: Instant,
    ) where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let admission = Admission::new(peer, cert, slot, self.counters.clone());
        let door = self.clone();
        let a = admission.clone();
        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let mut req = req.map(|b| {
                axum::body::Body::new(PacedBody::new(b, &door.cfg, door.counters.clone()))
            });
            req.extensions_mut().insert(a.clone());
            let mut router = door.router.clone();
            let a = a.clone();
            async move {
                let mut resp = router.call(req).await?;
                // A connection that has not authenticated gets no keep-alive: refused upgrades
                // and requests must not keep holding a place among the unauthenticated ones.
                if !a.is_authenticated() && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .max_buf_size(self.cfg.max_head_bytes)
            // Applies to every request head, and to the wait for the next request of an idle
            // keep-alive connection; the first head is bounded by `deadline` below.
            .header_read_timeout(self.cfg.idle_timeout)
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    if e.is_parse_too_large() {
                        self.counters.head_too_large.fetch_add(1, Relaxed);
                    }
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            }
            _ = admission.unauthenticated_at(deadline) => {
                self.counters.timed_out.fetch_add(1, Relaxed);
                tracing::debug!(%peer, "closing a connection that did not authenticate in time");
            }
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}

/// Counts one open connection while it lives.
struct Gauge<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Gauge<'a> {
    fn up(g: &'a std::sync::atomic::AtomicU64) -> Gauge<'a> {
        g.fetch_add(1, Relaxed);
        Gauge(g)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}
