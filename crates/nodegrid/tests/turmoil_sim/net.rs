//! nodegrid over turmoil's simulated TCP: a [`Dialer`] built on `turmoil::net::TcpStream`, an
//! accept loop feeding `turmoil::net::TcpListener` connections to [`GridService`], and one-way
//! read gates.
//!
//! turmoil can partition a link in one direction (segments are dropped) but holds only both
//! directions at once. A one-way hold is done here instead: while the gate `from → to` is
//! held, `to` reads nothing that `from` sent on any connection between them. turmoil's TCP
//! flow control then stops `from`'s writes after its socket capacity, as a peer that stopped
//! reading would. Releasing the gate delivers everything held, in order.

use futures::future::BoxFuture;
use nodegrid::transport::{Dialer, GridService, IoHalves, Target};
use parking_lot::Mutex;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The port every simulated node listens on.
pub const PORT: u16 = 9000;

/// The turmoil host name of node `i`.
pub fn host_name(i: usize) -> String {
    format!("node{i}")
}

/// The grid host string of node `i`.
pub fn host_string(i: usize) -> String {
    format!("http://{}:{PORT}", host_name(i))
}

#[derive(Default)]
struct GateState {
    held: bool,
    wakers: Vec<Waker>,
}

/// Holds the bytes flowing in one direction between two nodes while set.
#[derive(Default)]
pub struct Gate {
    st: Mutex<GateState>,
}

impl Gate {
    /// Holds (true) or releases (false); a release wakes every reader that waited.
    pub fn set(&self, held: bool) {
        let wakers = {
            let mut st = self.st.lock();
            st.held = held;
            if held {
                Vec::new()
            } else {
                std::mem::take(&mut st.wakers)
            }
        };
        for w in wakers {
            w.wake();
        }
    }

    fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.st.lock();
        if !st.held {
            return Poll::Ready(());
        }
        if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            st.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// One gate per ordered pair of nodes.
pub struct Gates {
    n: usize,
    gates: Vec<Arc<Gate>>,
}

impl Gates {
    /// Gates for `n` nodes, all open.
    pub fn new(n: usize) -> Self {
        Gates {
            n,
            gates: (0..n * n).map(|_| Arc::default()).collect(),
        }
    }

    /// The gate of the bytes `from` sends to `to`.
    pub fn get(&self, from: usize, to: usize) -> Arc<Gate> {
        self.gates[from * self.n + to].clone()
    }
}

/// A byte stream (or read half) whose reads pause while its gate is held.
pub struct Gated<T> {
    inner: T,
    gate: Arc<Gate>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Gated<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.gate.poll_open(cx).is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Gated<T> {
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

/// Node index of a grid target (`http://nodeI:PORT`).
fn node_of_target(t: &Target) -> Option<usize> {
    t.hostname.strip_prefix("node")?.parse().ok()
}

/// What the dialer of one node saw towards one peer: TCP connects that succeeded (the
/// library then runs the HTTP upgrade and the grid handshake on them) and those that failed.
#[derive(Default)]
pub struct DialCounters {
    /// Connects that succeeded.
    pub tcp_ok: AtomicUsize,
    /// Connects that failed or were abandoned (dial timeout).
    pub tcp_failed: AtomicUsize,
    /// Simulated time of the last successful connect.
    pub last_ok_at: Mutex<Option<Duration>>,
}

/// The [`Dialer`] of node `local`: turmoil TCP to the target's host name, reads gated by the
/// gate `target → local`.
///
/// turmoil 0.7.2 keeps the socket entry of a connect that fails (refused, or dropped by a dial
/// timeout while waiting for the SYN-ACK) for the rest of the simulation; `leaked_sockets`
/// counts those so a leak check can tell them apart from sockets the grid left behind.
pub struct TurmoilDialer {
    local: usize,
    gates: Arc<Gates>,
    /// Per peer index.
    counters: Arc<Vec<Arc<DialCounters>>>,
    leaked_sockets: Arc<AtomicUsize>,
}

impl TurmoilDialer {
    /// The dialer of node `local`.
    pub fn new(
        local: usize,
        gates: Arc<Gates>,
        counters: Arc<Vec<Arc<DialCounters>>>,
        leaked_sockets: Arc<AtomicUsize>,
    ) -> Self {
        TurmoilDialer {
            local,
            gates,
            counters,
            leaked_sockets,
        }
    }
}

/// Counts a connect when it completes, fails or is dropped (dial timeout).
struct ConnectGuard {
    counters: Arc<DialCounters>,
    leaked: Arc<AtomicUsize>,
    done: bool,
}

impl Drop for ConnectGuard {
    fn drop(&mut self) {
        if self.done {
            self.counters.tcp_ok.fetch_add(1, Ordering::SeqCst);
            *self.counters.last_ok_at.lock() = turmoil::sim_elapsed();
        } else {
            self.counters.tcp_failed.fetch_add(1, Ordering::SeqCst);
            self.leaked.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Dialer for TurmoilDialer {
    fn dial(&self, target: &Target) -> BoxFuture<'static, io::Result<IoHalves>> {
        let remote = node_of_target(target).filter(|r| *r < self.counters.len());
        let found = remote.map(|r| (self.gates.get(r, self.local), self.counters[r].clone()));
        let authority = target.authority.clone();
        let leaked = self.leaked_sockets.clone();
        Box::pin(async move {
            let (gate, counters) =
                found.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
            let mut guard = ConnectGuard {
                counters,
                leaked,
                done: false,
            };
            let s = turmoil::net::TcpStream::connect(authority.as_str()).await?;
            guard.done = true;
            drop(guard);
            let (r, w) = s.into_split();
            Ok(IoHalves {
                read: Box::new(Gated { inner: r, gate }),
                write: Box::new(w),
            })
        })
    }
}

/// Accepts simulated TCP connections and serves each with `svc` (HTTP upgrade, grid
/// handshake, session), gating reads by the gate `peer → local`. Runs until the host stops.
pub async fn accept_loop(
    listener: turmoil::net::TcpListener,
    svc: GridService,
    local: usize,
    gates: Arc<Gates>,
) -> io::Result<()> {
    loop {
        let (s, peer) = listener.accept().await?;
        let from = turmoil::reverse_lookup(peer.ip())
            .and_then(|name| name.strip_prefix("node")?.parse::<usize>().ok());
        let Some(from) = from else {
            // Not one of ours: refuse by dropping.
            continue;
        };
        let io = Gated {
            inner: s,
            gate: gates.get(from, local),
        };
        let svc = svc.clone();
        // A runtime task (not a local one) so the leak check counts a stuck handshake.
        tokio::spawn(async move { svc.serve_connection(io).await });
    }
}
