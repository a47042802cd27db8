//! The acceptor side: the HTTP upgrade endpoint as a hyper/tower service ([`GridService`]),
//! mountable on a user's server, plus the accept loop of [`crate::Manager::serve`].

use super::handshake::{self, accept_key};
use super::session::Session;
use super::ws::{FrameDecoder, Role};
use super::IoHalves;
use crate::auth::TIME_HEADER;
use crate::manager::ManagerShared;
use crate::proto::handshake::{check_connect, AcceptContext};
use crate::stats::ConnCounters;
use crate::wire::{ConnectResponse, Message, Op};
use bytes::{Bytes, BytesMut};
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The grid's upgrade endpoint as a service. Mount it at the route path on any hyper or axum
/// server (see [`crate::Manager::router`]); requests for other paths get 404.
#[derive(Clone)]
pub struct GridService {
    pub(crate) mgr: Arc<ManagerShared>,
    /// When the underlying connection was accepted, if we accepted it (bounds the handshake).
    accepted_at: Option<Instant>,
}

impl std::fmt::Debug for GridService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GridService")
            .field("local", &self.mgr.common.local)
            .finish()
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
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
    pub(crate) fn new(mgr: Arc<ManagerShared>) -> Self {
        GridService {
            mgr,
            accepted_at: None,
        }
    }

    fn handle<B>(&self, mut req: Request<B>) -> Response<Full<Bytes>> {
        let common = &self.mgr.common;
        if req.uri().path() != common.route {
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
        // Check A (§2.4): bearer token and time header, else 403 with an empty body.
        let auth = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let time = h.get(TIME_HEADER).and_then(|v| v.to_str().ok());
        if let Err(e) = common.auth.check_http(auth, time, SystemTime::now()) {
            tracing::debug!(local = %common.local, "grid upgrade refused: {e}");
            return status(StatusCode::FORBIDDEN);
        }
        let Ok(permit) = common.handshake_permits.clone().try_acquire_owned() else {
            return status(StatusCode::SERVICE_UNAVAILABLE);
        };
        let deadline = self.accepted_at.unwrap_or_else(Instant::now) + common.cfg.handshake_timeout;
        let on_upgrade = hyper::upgrade::on(&mut req);
        let mgr = self.mgr.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout_at(deadline, on_upgrade).await {
                Ok(Ok(up)) => {
                    let (io, leftover) = upgraded_to_io(up);
                    accept_grid(&mgr, io, leftover, deadline).await;
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
        let deadline = start + svc.mgr.common.cfg.handshake_timeout;
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(svc.mgr.common.cfg.handshake_timeout)
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

/// Runs the acceptor's half of the grid handshake (§4.2) and starts the session.
async fn accept_grid(
    mgr: &Arc<ManagerShared>,
    mut io: IoHalves,
    leftover: BytesMut,
    deadline: Instant,
) {
    let common = &mgr.common;
    let limits = common.limits();
    let mut dec = FrameDecoder::new(Role::Acceptor, limits.max_frame_size());
    let mut buf = leftover;
    let first = match tokio::time::timeout_at(
        deadline,
        handshake::read_first_message(&mut io.read, &mut buf, &mut dec),
    )
    .await
    {
        Err(_) => {
            tracing::debug!(local = %common.local, "grid handshake timed out");
            return;
        }
        // A peer that hangs up before sending Connect gets nothing (§11 item 30).
        Ok(Ok(None)) => return,
        Ok(Err(handshake::DialError::Io(e))) if e.kind() == io::ErrorKind::UnexpectedEof => return,
        Ok(Err(e)) => {
            reject(common, &mut io, format!("reading connect: {e}"), deadline).await;
            return;
        }
        Ok(Ok(Some((b, _binary)))) => b,
    };
    let first_len = first.len();
    let ctx = AcceptContext {
        local: &common.local,
        hosts: &common.hosts,
        auth: &common.auth,
        max_skew: common.cfg.max_clock_skew,
        now: SystemTime::now(),
    };
    let decoded = Message::decode_with(&first, &limits);
    let req = match check_connect(decoded, &ctx) {
        Ok(r) => r,
        Err(reason) => {
            if let Some(c) = mgr.conns.get(peer_host(&first).as_deref().unwrap_or("")) {
                ConnCounters::add(&c.counters.handshake_failures, 1);
                c.note_error(&format!("incoming connection rejected: {reason}"));
            }
            tracing::debug!(local = %common.local, "grid handshake rejected: {reason}");
            reject(common, &mut io, reason, deadline).await;
            return;
        }
    };
    let Some(conn) = mgr.conns.get(&req.host) else {
        reject(
            common,
            &mut io,
            format!("unknown incoming host: {}", req.host),
            deadline,
        )
        .await;
        return;
    };
    let resp = ConnectResponse {
        id: common.instance_id,
        accepted: true,
        rejected_reason: String::new(),
    };
    let mut m = Message::new(Op::ConnectResponse, 0);
    m.payload = resp.encode();
    let Ok(bytes) = m.to_bytes() else { return };
    let wrote = tokio::time::timeout_at(
        deadline,
        handshake::write_message(&mut io.write, &bytes, Role::Acceptor),
    )
    .await;
    if !matches!(wrote, Ok(Ok(()))) {
        return;
    }
    let c = &conn.counters;
    ConnCounters::add(&c.bytes_in, first_len as u64);
    ConnCounters::add(&c.msgs_in, 1);
    ConnCounters::add(&c.bytes_out, bytes.len() as u64);
    ConnCounters::add(&c.msgs_out, 1);
    Session::spawn(conn, io, buf, Role::Acceptor, req.id);
}

/// The claimed host of a Connect message, for attributing a rejection to a connection.
fn peer_host(first: &Bytes) -> Option<String> {
    let m = Message::decode(first).ok()?;
    crate::wire::ConnectRequest::decode(&m.payload)
        .ok()
        .map(|r| r.host)
}

async fn reject(
    common: &crate::connection::Common,
    io: &mut IoHalves,
    reason: String,
    deadline: Instant,
) {
    let resp = ConnectResponse {
        id: common.instance_id,
        accepted: false,
        rejected_reason: reason,
    };
    let mut m = Message::new(Op::ConnectResponse, 0);
    m.payload = resp.encode();
    if let Ok(b) = m.to_bytes() {
        let _ = tokio::time::timeout_at(
            deadline,
            handshake::write_message(&mut io.write, &b, Role::Acceptor),
        )
        .await;
    }
    let _ =
        tokio::time::timeout_at(deadline, tokio::io::AsyncWriteExt::shutdown(&mut io.write)).await;
}

/// Accept loop of [`crate::Manager::serve`].
pub(crate) async fn serve(mgr: Arc<ManagerShared>, listener: TcpListener) -> io::Result<()> {
    let svc = GridService::new(mgr.clone());
    let _ = TokioExecutor::new();
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) if is_transient(&e) => {
                    tracing::debug!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
                Err(e) => return Err(e),
            },
            _ = mgr.common.shutdown.cancelled() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = mgr.common.handshake_permits.clone().try_acquire_owned() else {
            // Too many connections still in their handshake: refuse this one.
            continue;
        };
        let mut svc = svc.clone();
        svc.accepted_at = Some(Instant::now());
        let tls = mgr.tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let deadline =
                svc.accepted_at.unwrap_or_else(Instant::now) + svc.mgr.common.cfg.handshake_timeout;
            match tls {
                None => svc.serve_connection(tcp).await,
                Some(tls) => {
                    if let Ok(Ok(s)) = tokio::time::timeout_at(deadline, tls.accept(tcp)).await {
                        svc.serve_connection(s).await;
                    }
                }
            }
        });
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(24) // EMFILE: back off and retry
}
