//! The acceptor's side of the HTTP upgrade (PROTOCOL.md §2.3): the grid's endpoint as a
//! hyper/tower service ([`GridService`]), mountable on a user's server. It checks the upgrade
//! request and its token (check A of §2.4), bounds the handshakes in progress, and hands each
//! upgraded connection to the layer above through [`UpgradeHandler`], which runs the grid
//! handshake.

use super::admission::Admission;
use super::diagnose::{auth_failure, AuthFailure, MAX_CLAIMED_HOST, NODEGRID_HOST_HEADER};
use super::dial::IoHalves;
use super::upgrade::accept_key;
use crate::auth::{Auth, HTTP_MAX_SKEW, TIME_HEADER};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Who is at the other end of an upgraded connection, as far as the transport knows.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerInfo {
    /// The remote address, when the server that accepted the connection told us.
    pub addr: Option<SocketAddr>,
    /// The client certificate presented in the TLS handshake (mTLS), if any.
    pub cert: Option<CertificateDer<'static>>,
}

/// Takes over a connection once its HTTP upgrade has succeeded (implemented above the
/// transport, where the grid handshake and sessions live).
pub(crate) trait UpgradeHandler: Send + Sync + 'static {
    /// Runs the grid handshake on `io` and, if it succeeds, the session; resolves to whether a
    /// session started. `leftover` holds bytes already read past the HTTP head; the handshake
    /// must finish by `deadline`.
    fn upgraded(
        self: Arc<Self>,
        io: IoHalves,
        leftover: BytesMut,
        peer: PeerInfo,
        deadline: Instant,
    ) -> BoxFuture<'static, bool>;

    /// Told when an upgrade request failed the token check (check A), to report it; the
    /// request has been answered 403.
    fn upgrade_refused(&self, refusal: UpgradeRefusal);
}

/// An upgrade request that failed the token check (check A of §2.4).
#[derive(Debug, Clone)]
pub(crate) struct UpgradeRefusal {
    /// Where it came from, when the server that accepted the connection told us.
    pub addr: Option<SocketAddr>,
    /// The host string a nodegrid dialer claims in `X-Nodegrid-Host` (absent: not a nodegrid
    /// peer). Unauthenticated: only for logs, at most [`MAX_CLAIMED_HOST`] bytes.
    pub claimed_host: Option<String>,
    /// Which check failed, in words.
    pub failure: AuthFailure,
}

/// What the endpoint checks, and whom it hands upgraded connections to.
pub(crate) struct Endpoint {
    /// The route path (e.g. `/minio/grid/v1`); other paths get 404.
    pub route: String,
    /// This node's host string, for logs.
    pub local: Arc<str>,
    pub auth: Auth,
    /// The whole handshake (HTTP upgrade and grid handshake) must finish within this.
    pub handshake_timeout: Duration,
    /// After the upgrade, the Connect message must arrive within this.
    pub connect_timeout: Duration,
    /// Handshakes in progress at once.
    pub permits: Arc<Semaphore>,
    /// Handshakes in progress at once from one source address.
    pub per_source: Arc<SourceLimit>,
    pub handler: Arc<dyn UpgradeHandler>,
}

/// Counts handshakes in progress per source address, up to a limit each.
pub(crate) struct SourceLimit {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl SourceLimit {
    pub(crate) fn new(max: usize) -> SourceLimit {
        SourceLimit {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A place for one more handshake from `ip`, or `None` at the limit.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let mut open = self.open.lock();
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SourceSlot(self.clone(), ip))
    }
}

/// One handshake of a source address; given back when dropped.
struct SourceSlot(Arc<SourceLimit>, IpAddr);

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.0.open.lock();
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

/// The grid's upgrade endpoint as a service. Mount it at the route path on any hyper or axum
/// server (see [`crate::Manager::router`]); requests for other paths get 404.
#[derive(Clone)]
pub struct GridService {
    ep: Arc<Endpoint>,
    /// When the underlying connection was accepted, if we accepted it (bounds the handshake).
    accepted_at: Option<Instant>,
}

impl std::fmt::Debug for GridService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridService")
            .field("local", &self.ep.local)
            .finish()
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// A 403 whose body says which check failed (a nodegrid dialer shows it; MinIO's ignores it).
fn forbidden(reason: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(reason.to_string())));
    *r.status_mut() = StatusCode::FORBIDDEN;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn header_has(req_headers: &http::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    req_headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

impl GridService {
    pub(crate) fn new(ep: Arc<Endpoint>) -> Self {
        GridService {
            ep,
            accepted_at: None,
        }
    }

    /// The host string of the node this endpoint belongs to.
    pub fn local(&self) -> &str {
        &self.ep.local
    }

    fn handle<B>(&self, mut req: Request<B>) -> Response<Full<Bytes>> {
        let ep = &self.ep;
        if req.uri().path() != ep.route {
            return status(StatusCode::NOT_FOUND);
        }
        let h = req.headers();
        if req.method() != http::Method::GET
            || !header_has(h, header::UPGRADE, "websocket")
            || !header_has(h, header::CONNECTION, "upgrade")
        {
            return status(StatusCode::UPGRADE_REQUIRED);
        }
        if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
            let mut r = status(StatusCode::UPGRADE_REQUIRED);
            r.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                http::HeaderValue::from_static("13"),
            );
            return r;
        }
        let Some(key) = h
            .get(header::SEC_WEBSOCKET_KEY)
            .map(|k| k.as_bytes().to_vec())
        else {
            return status(StatusCode::BAD_REQUEST);
        };
        let admission = req.extensions().get::<Admission>().cloned();
        let peer = PeerInfo {
            addr: admission.as_ref().map(Admission::peer_addr).or_else(|| {
                req.extensions()
                    .get::<axum::extract::ConnectInfo<SocketAddr>>()
                    .map(|c| c.0)
            }),
            cert: admission
                .as_ref()
                .and_then(|a| a.peer_certificate().cloned()),
        };
        // Check A (§2.4): bearer token and time header, else 403 saying which check failed.
        let auth = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let time = h.get(TIME_HEADER).and_then(|v| v.to_str().ok());
        let now = SystemTime::now();
        if let Err(e) = ep.auth.check_http(auth, time, now) {
            tracing::debug!(local = %ep.local, "grid upgrade refused: {e}");
            let token = auth.map(|a| a.strip_prefix("Bearer ").unwrap_or(""));
            let peer_nanos = time.and_then(|t| t.trim().parse::<i128>().ok());
            let failure = auth_failure(&e, token, peer_nanos, now, HTTP_MAX_SKEW);
            let reply = forbidden(&failure.body);
            let claimed_host = h
                .get(NODEGRID_HOST_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(MAX_CLAIMED_HOST).collect());
            ep.handler.upgrade_refused(UpgradeRefusal {
                addr: peer.addr,
                claimed_host,
                failure,
            });
            return reply;
        }
        let source_slot = match peer.addr {
            Some(a) => match ep.per_source.clone().take(a.ip()) {
                Some(s) => Some(s),
                None => return status(StatusCode::SERVICE_UNAVAILABLE),
            },
            None => None,
        };
        let Ok(permit) = ep.permits.clone().try_acquire_owned() else {
            return status(StatusCode::SERVICE_UNAVAILABLE);
        };
        let deadline = self.accepted_at.unwrap_or_else(Instant::now) + ep.handshake_timeout;
        let connect_timeout = ep.connect_timeout;
        let on_upgrade = hyper::upgrade::on(&mut req);
        let handler = ep.handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _source_slot = source_slot;
            match tokio::time::timeout_at(deadline, on_upgrade).await {
                Ok(Ok(up)) => {
                    let (io, leftover) = upgraded_to_io(up);
                    // The dialer sends Connect at once: an upgraded but silent socket holds
                    // its handshake slot for `connect_timeout` at most.
                    let deadline = deadline.min(Instant::now() + connect_timeout);
                    let started = handler.upgraded(io, leftover, peer, deadline).await;
                    if started {
                        if let Some(a) = admission {
                            a.authenticated();
                        }
                    }
                }
                Ok(Err(e)) => tracing::debug!("grid upgrade failed: {e}"),
                Err(_) => tracing::debug!("grid upgrade timed out"),
            }
        });
        let mut r = status(StatusCode::SWITCHING_PROTOCOLS);
        let hs = r.headers_mut();
        hs.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
        hs.insert(
            header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        if let Ok(v) = http::HeaderValue::from_str(&accept_key(&key)) {
            hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        r
    }

    /// Serves HTTP/1.1 on one already-accepted byte stream (plain TCP, TLS, or in-memory),
    /// upgrading grid requests. Completes when the connection is upgraded or closed, or when
    /// the handshake time runs out.
    pub async fn serve_connection<I>(&self, io: I)
    where
        I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let mut svc = self.clone();
        let start = svc.accepted_at.unwrap_or_else(Instant::now);
        svc.accepted_at = Some(start);
        let deadline = start + svc.ep.handshake_timeout;
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(svc.ep.handshake_timeout)
            .serve_connection(TokioIo::new(io), HyperSvc(svc))
            .with_upgrades();
        let _ = tokio::time::timeout_at(deadline, conn).await;
    }
}

/// Adapter to hyper's `Service` trait.
struct HyperSvc(GridService);

impl hyper::service::Service<Request<hyper::body::Incoming>> for HyperSvc {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;
    fn call(&self, req: Request<hyper::body::Incoming>) -> Self::Future {
        ready(Ok(self.0.handle(req)))
    }
}

impl<B> tower_service::Service<Request<B>> for GridService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.handle(req)))
    }
}

fn upgraded_to_io(up: hyper::upgrade::Upgraded) -> (IoHalves, BytesMut) {
    let up = match up.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            return (
                IoHalves::from_tcp(parts.io.into_inner()),
                BytesMut::from(&parts.read_buf[..]),
            )
        }
        Err(up) => up,
    };
    (IoHalves::from_io(TokioIo::new(up)), BytesMut::new())
}
