//! `nodegrid node`: one node as its own process, serving the built-in handlers.

use crate::builtin;
use crate::cluster::{listen_addr, Credentials};
use anyhow::{Context, Result};
use nodegrid::Manager;
use std::time::Duration;
use tokio::net::TcpListener;

/// Options of `nodegrid node`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// This node's host string, e.g. http://10.0.0.1:9000.
    #[arg(long)]
    pub local: String,
    /// Comma-separated host strings of every node, this one included.
    #[arg(long, value_delimiter = ',', required = true)]
    pub hosts: Vec<String>,
    /// Address to listen on (default: the local host string's host:port).
    #[arg(long)]
    pub listen: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// Print the per-peer statistics every SECS seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    pub stats_interval: u64,
    #[command(flatten)]
    pub creds: Credentials,
}

pub async fn run(args: NodeArgs) -> Result<()> {
    let mut b = Manager::builder(args.local.clone(), args.hosts.clone())
        .auth(args.creds.auth()?)
        .route(args.creds.route.clone());
    if let Some(t) = args.creds.tls()? {
        b = b.tls(t);
    }
    let m = b.build().context("invalid cluster configuration")?;
    builtin::register(&m, builtin::ECHO_CAPACITY)?;
    let addr = match &args.listen {
        Some(a) => a.clone(),
        None => listen_addr(&args.local)?,
    };
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(local = %args.local, listen = %addr, peers = args.hosts.len() - 1, "node started");
    for c in m.connections() {
        let mut rx = c.watch_state();
        tokio::spawn(async move {
            loop {
                let s = rx.borrow_and_update().clone();
                tracing::info!(peer = %c.remote(), state = %s, "peer state");
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    if args.stats_interval > 0 {
        let m2 = m.clone();
        let every = Duration::from_secs(args.stats_interval);
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.tick().await;
            loop {
                t.tick().await;
                match serde_json::to_string(&m2.stats()) {
                    Ok(s) => println!("{s}"),
                    Err(e) => tracing::error!("stats: {e}"),
                }
            }
        });
    }
    let serve = {
        let m = m.clone();
        tokio::spawn(async move { m.serve(listener).await })
    };
    shutdown_signal().await;
    tracing::info!("shutting down");
    m.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), serve).await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
