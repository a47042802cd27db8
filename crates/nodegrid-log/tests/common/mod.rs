//! Test support: a webhook receiver on 127.0.0.1 (plain or TLS requiring a client
//! certificate) that records every request and can be told to fail, hang or refuse.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Longest any test waits for an expected event.
pub const WAIT: Duration = Duration::from_secs(10);

/// One received request.
#[derive(Clone, Debug)]
pub struct Req {
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub at: tokio::time::Instant,
    /// DER of the client certificate presented on this connection (TLS only).
    pub client_cert: Option<Vec<u8>>,
}

impl Req {
    pub fn lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// Behaviour of the receiver.
pub const OK: u16 = 200;
/// Drop the connection without answering (network-class failure).
pub const DROP: u16 = 1;
/// Hold requests until [`Receiver::release`].
pub const HOLD: u16 = 2;

#[derive(Default)]
pub struct State {
    pub requests: Mutex<Vec<Req>>,
    /// Requests that arrived (including failed / held ones).
    pub arrivals: AtomicU64,
    /// NDJSON lines received with a 2xx answer (kept so waits need not parse every body).
    pub line_count: AtomicU64,
    pub changed: Notify,
    mode: AtomicU16,
    release: Notify,
    delay_ms: AtomicU64,
}

/// A recording HTTP receiver.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    stop: Arc<Notify>,
}

impl Receiver {
    /// Starts a plain HTTP receiver on a fresh 127.0.0.1 port.
    pub async fn start() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(l, None)
    }

    /// Starts a plain HTTP receiver on a given port (for "receiver comes back up").
    pub async fn start_on(addr: SocketAddr) -> Receiver {
        let l = TcpListener::bind(addr).await.expect("rebind");
        Self::serve(l, None)
    }

    /// Starts an HTTPS receiver with the given server config.
    pub async fn start_tls(cfg: Arc<rustls::ServerConfig>) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::serve(l, Some(tokio_rustls::TlsAcceptor::from(cfg)))
    }

    fn serve(l: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let addr = l.local_addr().expect("addr");
        let state = Arc::new(State::default());
        state.mode.store(OK, Ordering::SeqCst);
        let stop = Arc::new(Notify::new());
        let r = Receiver {
            addr,
            state: state.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(async move {
            loop {
                let (sock, _) = tokio::select! {
                    a = l.accept() => match a { Ok(a) => a, Err(_) => continue },
                    _ = stop.notified() => return,
                };
                let state = state.clone();
                let tls = tls.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_conn(TokioIo::new(sock), state, None, stop).await,
                        Some(acc) => {
                            let Ok(s) = acc.accept(sock).await else {
                                state.changed.notify_waiters();
                                return;
                            };
                            let cert = s
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| c.as_ref().to_vec());
                            serve_conn(TokioIo::new(s), state, cert, stop).await
                        }
                    }
                });
            }
        });
        r
    }

    /// Stops accepting and closes open connections (the port then refuses).
    pub fn stop(&self) {
        self.stop.notify_waiters();
        self.stop.notify_one();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn set_mode(&self, mode: u16) {
        self.state.mode.store(mode, Ordering::SeqCst);
    }

    pub fn set_delay(&self, d: Duration) {
        self.state
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Lets held requests answer 200.
    pub fn release(&self) {
        self.set_mode(OK);
        self.state.release.notify_waiters();
    }

    pub fn requests(&self) -> Vec<Req> {
        self.state.requests.lock().expect("lock").clone()
    }

    /// All JSON lines received with a 2xx answer, in arrival order.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.requests().iter().flat_map(|r| r.lines()).collect()
    }

    pub fn arrivals(&self) -> u64 {
        self.state.arrivals.load(Ordering::SeqCst)
    }

    /// Waits until `cond` holds for this receiver, at most [`WAIT`].
    pub async fn wait_for(&self, what: &str, cond: impl Fn(&Receiver) -> bool) {
        let ok = tokio::time::timeout(WAIT, async {
            loop {
                let n = self.state.changed.notified();
                if cond(self) {
                    return;
                }
                n.await;
            }
        })
        .await;
        assert!(ok.is_ok(), "timed out waiting for: {what}");
    }

    pub async fn wait_lines(&self, n: usize) {
        self.wait_for(&format!("{n} lines"), |r| {
            r.state.line_count.load(Ordering::SeqCst) >= n as u64
        })
        .await;
    }

    pub async fn wait_arrivals(&self, n: u64) {
        self.wait_for(&format!("{n} arrivals"), |r| r.arrivals() >= n)
            .await;
    }
}

async fn serve_conn<I>(io: I, state: Arc<State>, cert: Option<Vec<u8>>, stop: Arc<Notify>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let state = state.clone();
        let cert = cert.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            state.arrivals.fetch_add(1, Ordering::SeqCst);
            state.changed.notify_waiters();
            let delay = state.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let mut mode = state.mode.load(Ordering::SeqCst);
            if mode == HOLD {
                let rel = state.release.notified();
                if state.mode.load(Ordering::SeqCst) == HOLD {
                    let _ = tokio::time::timeout(WAIT, rel).await;
                }
                mode = state.mode.load(Ordering::SeqCst);
            }
            if mode == DROP {
                return Err("dropped by test");
            }
            let status = if mode == HOLD { OK } else { mode };
            if (200..300).contains(&status) {
                let n = body.iter().filter(|b| **b == b'\n').count() as u64;
                state.requests.lock().expect("lock").push(Req {
                    headers: parts.headers,
                    body,
                    at: tokio::time::Instant::now(),
                    client_cert: cert,
                });
                // After the push: whoever sees the count sees the lines.
                state.line_count.fetch_add(n, Ordering::SeqCst);
            }
            state.changed.notify_waiters();
            let mut resp = http::Response::new(Full::new(Bytes::from_static(b"ok")));
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
            Ok::<_, &'static str>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
    tokio::select! {
        _ = conn => {}
        _ = stop.notified() => {}
    }
}

#[allow(unused)]
fn _assert_infallible(_: Infallible) {}

/// Waits (bounded) until `cond` is true, checking every few milliseconds. For state that has
/// no notification (target counters).
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let ok = tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for: {what}");
}

/// Runs a future with the standard test timeout.
pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test step timed out")
}

/// Quiet tests (S1).
pub fn quiet() {
    nodegrid_log::test_support::init_test_subscriber();
}

/// An address on which nothing listens (bound then released).
pub async fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

/// An audit webhook target for `cfg`, reporting its failures to a console that captures them.
pub fn audit_target(
    cfg: nodegrid_log::WebhookConfig,
) -> (
    nodegrid_log::test_support::WebhookTarget,
    nodegrid_log::Capture,
) {
    let (console, cap) = nodegrid_log::ConsoleTarget::capture(nodegrid_log::ConsoleMode::Json);
    let t = nodegrid_log::test_support::WebhookTarget::start(
        nodegrid_log::Stream::Audit,
        cfg,
        &nodegrid_log::Identity::default(),
        Arc::new(console),
    )
    .expect("start");
    (t, cap)
}

/// Checks the counter invariant of a stats snapshot.
pub fn check_invariant(s: &nodegrid_log::TargetStats) {
    assert_eq!(
        s.total,
        s.sent + s.failed + s.dropped + s.migrated + s.queued,
        "invariant broken: {s:?}"
    );
}
