//! An in-memory network for tests: nodes attach under their host string, dials become
//! in-process pipes, and links can be cut or held in one direction to simulate partitions and
//! a peer that stops reading. Runs under tokio's paused clock, so liveness timers of tens of
//! seconds are tested in milliseconds.

use super::dial::{Dialer, IoHalves, Target};
use super::endpoint::GridService;
use futures::future::BoxFuture;
use futures::task::AtomicWaker;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffer of each in-memory pipe direction.
const PIPE_BUFFER: usize = 256 * 1024;

/// Holds the bytes flowing in one direction between two hosts while set.
#[derive(Default)]
struct Gate {
    held: AtomicBool,
    waker: AtomicWaker,
}

impl Gate {
    fn set(&self, held: bool) {
        self.held.store(held, Ordering::SeqCst);
        if !held {
            self.waker.wake();
        }
    }
}

/// A pipe end whose reads pause while its gate is held.
struct GatedIo<T> {
    inner: T,
    gate: Arc<Gate>,
}

impl<T: AsyncRead + Unpin> AsyncRead for GatedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.gate.held.load(Ordering::SeqCst) {
            self.gate.waker.register(cx.waker());
            if self.gate.held.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GatedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[derive(Default)]
struct Inner {
    nodes: HashMap<String, GridService>,
    down: HashSet<String>,
    gates: HashMap<(String, String), Arc<Gate>>,
    dials: u64,
}

impl Inner {
    fn gate(&mut self, from: &str, to: &str) -> Arc<Gate> {
        self.gates
            .entry((from.to_string(), to.to_string()))
            .or_default()
            .clone()
    }
}

/// An in-process network connecting managers by host string.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use nodegrid::{auth::Auth, transport::MemoryNetwork, Manager};
/// let net = MemoryNetwork::new();
/// let hosts = ["http://a:1", "http://b:1"];
/// let a = Manager::builder("http://a:1", hosts).auth(Auth::shared_token("t")).dialer(net.dialer("http://a:1")).build()?;
/// let b = Manager::builder("http://b:1", hosts).auth(Auth::shared_token("t")).dialer(net.dialer("http://b:1")).build()?;
/// net.attach(&a);
/// net.attach(&b);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryNetwork")
    }
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// The dialer a node known as `local` uses on this network.
    pub fn dialer(&self, local: &str) -> MemoryDialer {
        MemoryDialer {
            net: self.clone(),
            local: local.to_string(),
        }
    }

    /// Makes a node (a [`crate::Manager`], or its [`GridService`]) reachable under its local
    /// host string.
    pub fn attach(&self, node: impl Into<GridService>) {
        let svc = node.into();
        let host = svc.local().to_string();
        self.attach_service(&host, svc);
    }

    /// Makes a service reachable under `host` (for hand-made peers).
    pub fn attach_service(&self, host: &str, svc: GridService) {
        self.inner.lock().nodes.insert(host.to_string(), svc);
    }

    /// Makes a host unreachable (new dials to it fail) or reachable again. Live sessions are
    /// not affected: combine with [`MemoryNetwork::hold`] or
    /// [`crate::Connection::kill_session`].
    pub fn set_reachable(&self, host: &str, reachable: bool) {
        let mut g = self.inner.lock();
        if reachable {
            g.down.remove(host);
        } else {
            g.down.insert(host.to_string());
        }
    }

    /// Holds (or releases) the bytes flowing from `from` to `to` on every link between them:
    /// `to` stops reading what `from` sends, as if its inbound processing were paused.
    pub fn hold(&self, from: &str, to: &str, held: bool) {
        self.inner.lock().gate(from, to).set(held);
    }

    /// Number of successful dials so far.
    pub fn dials(&self) -> u64 {
        self.inner.lock().dials
    }

    /// Opens a raw pipe from `local` to the node `target` (the HTTP upgrade is up to the
    /// caller), for tests that speak the protocol by hand.
    pub fn connect_raw(&self, local: &str, target: &str) -> io::Result<tokio::io::DuplexStream> {
        let svc = {
            let g = self.inner.lock();
            g.nodes.get(target).cloned()
        }
        .ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))?;
        let (client, server) = tokio::io::duplex(PIPE_BUFFER);
        let gate = self.inner.lock().gate(local, target);
        tokio::spawn(async move {
            svc.serve_connection(GatedIo {
                inner: server,
                gate,
            })
            .await
        });
        Ok(client)
    }
}

/// The [`Dialer`] of one node on a [`MemoryNetwork`].
#[derive(Clone)]
pub struct MemoryDialer {
    net: MemoryNetwork,
    local: String,
}

impl std::fmt::Debug for MemoryDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryDialer({})", self.local)
    }
}

impl Dialer for MemoryDialer {
    fn dial(&self, target: &Target) -> BoxFuture<'static, io::Result<IoHalves>> {
        let found = {
            let mut g = self.net.inner.lock();
            if g.down.contains(&target.host_string) || g.down.contains(&self.local) {
                None
            } else {
                let svc = g.nodes.get(&target.host_string).cloned();
                svc.map(|s| {
                    g.dials += 1;
                    (
                        s,
                        g.gate(&self.local, &target.host_string),
                        g.gate(&target.host_string, &self.local),
                    )
                })
            }
        };
        Box::pin(async move {
            let (svc, to_server, to_client) =
                found.ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            let (client, server) = tokio::io::duplex(PIPE_BUFFER);
            tokio::spawn(async move {
                svc.serve_connection(GatedIo {
                    inner: server,
                    gate: to_server,
                })
                .await
            });
            Ok(IoHalves::from_io(GatedIo {
                inner: client,
                gate: to_client,
            }))
        })
    }
}
