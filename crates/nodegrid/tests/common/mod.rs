//! Shared helpers of the integration tests: clusters on loopback, quiet tracing, leak checks.
#![allow(dead_code)]

pub mod certs;
pub mod driver;
pub mod rawpeer;

use nodegrid::auth::Auth;
use nodegrid::transport::MemoryNetwork;
use nodegrid::{GridConfig, Manager};
use std::time::Duration;
use tokio::net::TcpListener;

/// A node `http://node0:9000` on a new in-memory network, whose host list also names `fake`,
/// a raw test peer that dials it (`rawpeer::dialing_host_for`). Not attached to the network
/// yet: register handlers, then `net.attach(&m)`.
pub struct MemoryNode {
    pub net: MemoryNetwork,
    pub m: Manager,
    pub host: String,
    pub fake: String,
    /// The shared token of both.
    pub token: &'static str,
}

/// A [`MemoryNode`] with the default configuration and the shared token `token`.
pub fn memory_node(token: &'static str) -> MemoryNode {
    init_tracing();
    let net = MemoryNetwork::new();
    let host = "http://node0:9000".to_string();
    let fake = rawpeer::dialing_host_for(&host, &[]);
    let m = Manager::builder(host.clone(), vec![host.clone(), fake.clone()])
        .auth(Auth::shared_token(token))
        .dialer(net.dialer(&host))
        .build()
        .unwrap();
    MemoryNode {
        net,
        m,
        host,
        fake,
        token,
    }
}

impl MemoryNode {
    /// The raw peer, connected and past the handshake, driven by a [`driver::Driver`].
    pub async fn driver(&self, pongs: driver::StreamPongs) -> driver::Driver {
        driver::Driver::connect(&self.net, &self.fake, &self.host, self.token, pongs).await
    }
}

/// `n` listeners on loopback ports and their host strings with `scheme` (`http` or `https`).
pub async fn listeners(n: usize, scheme: &str) -> (Vec<TcpListener>, Vec<String>) {
    let mut ls = Vec::new();
    let mut hosts = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        hosts.push(format!("{scheme}://{}", l.local_addr().unwrap()));
        ls.push(l);
    }
    (ls, hosts)
}

/// Installs the process's subscriber (once): the test writer at ERROR level unless RUST_LOG is
/// set (tests stay quiet), plus the capture of every WARN and above for [`capture_logs`].
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let shown = tracing_subscriber::fmt::layer()
        .with_test_writer()
        .with_filter(filter);
    let captured = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .without_time()
        .with_writer(|| LogWriter(captured_lines().clone()))
        .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    let _ = tracing_subscriber::registry()
        .with(shown)
        .with(captured)
        .try_init();
}

/// Every WARN (and above) line of this test process, in order.
fn captured_lines() -> &'static Logs {
    static LINES: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LINES.get_or_init(Logs::default)
}

/// Log lines captured by [`capture_logs`].
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<parking_lot::Mutex<Vec<String>>>, usize);

impl Logs {
    /// The lines captured since this handle was made (ANSI-free, one per event). Tests of one
    /// binary run in parallel and share the capture: match on something unique to the test,
    /// such as its host strings.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().iter().skip(self.1).cloned().collect()
    }

    /// The captured lines that contain `needle`.
    pub fn matching(&self, needle: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }
}

struct LogWriter(Logs);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let mut lines = (self.0).0.lock();
        for l in text.lines().filter(|l| !l.is_empty()) {
            lines.push(l.to_string());
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Returned by [`capture_logs`]; kept for the shape of the call sites (the capture is global).
pub struct CaptureGuard;

/// Captures the events at WARN and above emitted from now on, by any thread of this test
/// process (one global subscriber: a thread-local one misses events whose callsites were
/// registered while another thread's subscriber was being installed).
pub fn capture_logs(level: tracing::Level) -> (CaptureGuard, Logs) {
    assert!(
        level <= tracing::Level::WARN,
        "the capture records WARN and above"
    );
    init_tracing();
    let all = captured_lines();
    let start = all.0.lock().len();
    (CaptureGuard, Logs(all.0.clone(), start))
}

pub const TOKEN: &str = "test-cluster-token";

/// Polls `f` until it holds, failing the test after `limit` (works under the paused clock too).
pub async fn wait_for(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let t0 = tokio::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub struct Cluster {
    pub nodes: Vec<Manager>,
    pub hosts: Vec<String>,
}

impl Cluster {
    /// Connection from node `a` to node `b`.
    pub fn conn(&self, a: usize, b: usize) -> nodegrid::Connection {
        self.nodes[a]
            .connection(&self.hosts[b])
            .expect("known host")
    }

    /// Waits (bounded) until no mux, handler or stream entry remains on any node.
    pub async fn assert_no_muxes(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut leftovers = Vec::new();
            for n in &self.nodes {
                for c in n.connections() {
                    let m = c.mux_counts();
                    if m != nodegrid::MuxCounts::default() {
                        leftovers.push(format!("{} -> {}: {m:?}", n.local(), c.remote()));
                    }
                }
            }
            if leftovers.is_empty() {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("mux entries left over: {leftovers:#?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn shutdown(&self) {
        for n in &self.nodes {
            n.shutdown();
        }
    }
}

/// Starts `n` nodes on 127.0.0.1 (TCP), registers handlers with `setup`, serves, and waits
/// until every pair is connected.
pub async fn cluster(n: usize, cfg: GridConfig, setup: impl Fn(&Manager)) -> Cluster {
    init_tracing();
    let mut listeners = Vec::new();
    let mut hosts = Vec::new();
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        hosts.push(format!("http://{}", l.local_addr().expect("addr")));
        listeners.push(l);
    }
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let m = Manager::builder(hosts[i].clone(), hosts.clone())
            .auth(Auth::shared_token(TOKEN))
            .config(cfg.clone())
            .build()
            .expect("build manager");
        setup(&m);
        let m2 = m.clone();
        tokio::spawn(async move { m2.serve(l).await });
        nodes.push(m);
    }
    for m in &nodes {
        m.wait_all_connected(Duration::from_secs(20))
            .await
            .expect("cluster connects");
    }
    Cluster { nodes, hosts }
}
