//! An in-memory network for tests: nodes attach under their host string, dials become
//! in-process pipes, and links can be cut to simulate partitions.

use super::{Dialer, GridService, IoHalves, Target};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Arc;

/// Buffer of each in-memory pipe direction.
const PIPE_BUFFER: usize = 256 * 1024;

#[derive(Default)]
struct Inner {
    nodes: HashMap<String, GridService>,
    down: HashSet<String>,
}

/// An in-process network connecting managers by host string.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use nodegrid::{auth::Auth, transport::MemoryNetwork, Manager};
/// let net = MemoryNetwork::new();
/// let hosts = ["http://a:1", "http://b:1"];
/// let a = Manager::builder("http://a:1", hosts).auth(Auth::shared_token("t")).dialer(net.clone()).build()?;
/// let b = Manager::builder("http://b:1", hosts).auth(Auth::shared_token("t")).dialer(net.clone()).build()?;
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

    /// Makes a manager reachable under its local host string.
    pub fn attach(&self, mgr: &crate::Manager) {
        self.inner
            .lock()
            .nodes
            .insert(mgr.local().to_string(), mgr.service());
    }

    /// Makes a host unreachable (new dials fail) or reachable again. Live sessions are not
    /// affected; kill them with [`crate::Connection::kill_session`].
    pub fn set_reachable(&self, host: &str, reachable: bool) {
        let mut g = self.inner.lock();
        if reachable {
            g.down.remove(host);
        } else {
            g.down.insert(host.to_string());
        }
    }
}

impl Dialer for MemoryNetwork {
    fn dial(&self, target: &Target) -> BoxFuture<'static, io::Result<IoHalves>> {
        let svc = {
            let g = self.inner.lock();
            if g.down.contains(&target.host_string) {
                None
            } else {
                g.nodes.get(&target.host_string).cloned()
            }
        };
        Box::pin(async move {
            let svc = svc.ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            let (client, server) = tokio::io::duplex(PIPE_BUFFER);
            tokio::spawn(async move { svc.serve_connection(server).await });
            Ok(IoHalves::from_io(client))
        })
    }
}
