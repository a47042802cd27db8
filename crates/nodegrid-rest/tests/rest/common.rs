//! Shared helpers: quiet tracing, servers on loopback, bounded waits, byte-flow accounting.
#![allow(dead_code)]

use axum::Router;
use bytes::Bytes;
use futures_util::Stream;
use nodegrid::auth::Auth;
use nodegrid_rest::{
    serve, RestClient, RestClientBuilder, RestServer, RestServerBuilder, ServerHandle,
};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const TOKEN: &str = "test-token";
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Installs a subscriber printing errors only, unless RUST_LOG says otherwise.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

pub fn auth() -> Auth {
    Auth::shared_token(TOKEN)
}

pub fn server() -> RestServerBuilder {
    RestServer::builder(auth()).with_builtins()
}

/// Serves `router` on a fresh loopback port.
pub async fn start(router: Router) -> ServerHandle {
    start_at("127.0.0.1:0".parse().expect("addr"), router).await
}

/// Serves `router` on `addr` (to restart a killed server on the same port).
pub async fn start_at(addr: SocketAddr, router: Router) -> ServerHandle {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind loopback");
    serve(listener, router, None).expect("serve")
}

pub fn client_for(handle: &ServerHandle) -> RestClientBuilder {
    RestClient::builder(format!("http://{}", handle.local_addr()), auth())
}

/// Awaits `fut`, failing the test if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Bytes handed to the transport by a producer versus bytes taken by the consumer at the
/// other end. `peak` is the most ever in flight, i.e. buffered somewhere in between (socket
/// buffers, hyper's buffers, and any buffering the code under test would add).
#[derive(Default, Debug)]
pub struct Flow {
    pub produced: AtomicU64,
    pub consumed: AtomicU64,
    pub peak: AtomicU64,
}

impl Flow {
    pub fn produce(&self, n: u64) {
        let p = self.produced.fetch_add(n, SeqCst) + n;
        let c = self.consumed.load(SeqCst);
        self.peak.fetch_max(p.saturating_sub(c), SeqCst);
    }

    pub fn consume(&self, n: u64) {
        self.consumed.fetch_add(n, SeqCst);
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(SeqCst)
    }
}

/// `total` bytes in 1 MiB chunks, all slices of one shared buffer (nothing allocated per
/// chunk), counted into `flow` as they are produced.
pub fn counted_stream(
    flow: Arc<Flow>,
    total: u64,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let chunk = Bytes::from(vec![0x5au8; MIB as usize]);
    futures_util::stream::unfold(total, move |left| {
        let flow = flow.clone();
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(MIB);
            flow.produce(n);
            Some((Ok(chunk.slice(..n as usize)), left - n))
        }
    })
}

/// Sends a raw HTTP/1.1 request and returns the status code of the answer.
pub async fn raw_status(addr: SocketAddr, head: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 1024];
    let mut got = 0;
    while got < 12 {
        let n = s.read(&mut buf[got..]).await.expect("read");
        assert!(n > 0, "connection closed before a status line");
        got += n;
    }
    let line = String::from_utf8_lossy(&buf[..got]).to_string();
    line[9..12].parse().expect("status code")
}

/// A raw request head with optional auth headers.
pub fn raw_head(
    method: &str,
    path: &str,
    addr: SocketAddr,
    auth_headers: Option<(&str, &str)>,
) -> String {
    let mut h = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n"
    );
    if let Some((bearer, time)) = auth_headers {
        h.push_str(&format!(
            "Authorization: Bearer {bearer}\r\nX-Minio-Time: {time}\r\n"
        ));
    }
    h.push_str("\r\n");
    h
}
