//! Shared helpers of the integration tests: clusters on loopback, quiet tracing, leak checks.
#![allow(dead_code)]

pub mod driver;
pub mod rawpeer;

use nodegrid::auth::Auth;
use nodegrid::{GridConfig, Manager};
use std::time::Duration;
use tokio::net::TcpListener;

/// Installs a subscriber at ERROR level unless RUST_LOG is set (tests stay quiet).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
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
