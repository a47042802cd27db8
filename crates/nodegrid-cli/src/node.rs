//! `nodegrid node`: one node as its own process. It serves the grid and the REST methods on one
//! port, the built-in handlers, and its log and audit trail through `nodegrid-log` (configured
//! from `NODEGRID_*` environment variables, LOGGING.md §5).

use crate::builtin;
use crate::cluster::{listen_addr, rest_clients, serve_node, Credentials};
use anyhow::{Context, Result};
use nodegrid::observe::{CallKind, CallOutcome, CallRecord};
use nodegrid::Manager;
use nodegrid_log::{
    AuditEntry, CallResult, ConsoleMode, ConsoleTarget, GridCall, LoggingConfig, Registry,
};
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::prelude::*;

/// How long shutdown may take to flush queued log and audit entries.
const LOG_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Print the per-peer statistics (grid and REST) as JSON every SECS seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    pub stats_interval: u64,
    #[command(flatten)]
    pub creds: Credentials,
}

/// The audit record of a call: `api.name` is `grid.single.<name>` for a handler registered
/// with a name, else `grid.single.<id>` (`grid.stream.…` for streams).
fn audit_record(r: &CallRecord<'_>) -> AuditEntry {
    let kind = match r.kind {
        CallKind::Single => "single",
        CallKind::Stream => "stream",
    };
    let name = match r.name {
        Some(n) => format!("grid.{kind}.{n}"),
        None => format!("grid.{kind}.{}", r.handler),
    };
    AuditEntry::grid_call(&GridCall {
        handler: &name,
        subroute: r.subroute.unwrap_or(""),
        caller: r.caller,
        time_to_first_byte: r.time_to_first_byte,
        duration: r.duration,
        bytes_in: r.bytes_in as i64,
        bytes_out: r.bytes_out as i64,
        result: match &r.outcome {
            CallOutcome::Ok => CallResult::Ok,
            CallOutcome::RemoteError(t) => CallResult::RemoteError(t.clone()),
            CallOutcome::Cancelled => CallResult::Cancelled,
        },
    })
}

/// Sets up logging: the console (text, or JSON with `--log-json`) and any logger or audit
/// webhooks configured in the environment.
pub fn init_logging(json: bool) -> Result<Arc<Registry>> {
    let mut cfg = LoggingConfig::from_env().context("logging configuration")?;
    if json {
        cfg.console_mode = ConsoleMode::Json;
    }
    let registry = Registry::from_config(&cfg, ConsoleTarget::stderr(cfg.console_mode))
        .context("logging configuration")?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(registry.layer().with_filter(filter))
        .try_init();
    Ok(registry)
}

/// Raises the soft limit on open files to the hard limit: every connection is a descriptor,
/// and a node under a connection flood should hit its own limits (the front door's) before
/// the process's. Logs both values.
#[cfg(unix)]
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(
            "reading the open-files limit failed: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let soft = lim.rlim_cur;
    if soft < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            tracing::warn!(
                soft,
                hard = lim.rlim_max,
                "raising the open-files limit failed: {}",
                std::io::Error::last_os_error()
            );
            return;
        }
    }
    tracing::info!(
        was = soft,
        now = lim.rlim_max.max(soft),
        hard = lim.rlim_max,
        "open-files limit"
    );
}

#[cfg(not(unix))]
fn raise_open_files_limit() {}

pub async fn run(args: NodeArgs) -> Result<()> {
    let registry = init_logging(args.log_json)?;
    raise_open_files_limit();
    let audit = registry.audit();
    let auth = args.creds.auth()?;
    let tls = args.creds.tls()?;
    let mut b = Manager::builder(args.local.clone(), args.hosts.clone())
        .auth(auth.clone())
        .route(args.creds.route.clone());
    if let Some(t) = &tls {
        b = b.tls(t.clone());
    }
    if audit.is_enabled() {
        let audit = audit.clone();
        b = b.observe_calls(move |r| audit.log(audit_record(r)));
    }
    let m = b.build().context("invalid cluster configuration")?;
    builtin::register(&m, builtin::ECHO_CAPACITY)?;
    let addr = match &args.listen {
        Some(a) => a.clone(),
        None => listen_addr(&args.local)?,
    };
    let listener = crate::cluster::bind(&addr).await?;
    let server = serve_node(&m, &auth, listener)?;
    let rest = rest_clients(&m, &auth, tls.as_ref())?;
    tracing::info!(local = %args.local, listen = %addr, peers = args.hosts.len() - 1, "node started");
    for c in m.connections() {
        let mut rx = c.watch_state();
        tokio::spawn(async move {
            loop {
                let s = rx.borrow_and_update().clone();
                if s.is_connected() {
                    tracing::info!(peer = %c.remote(), state = %s, "peer state");
                } else {
                    tracing::warn!(peer = %c.remote(), state = %s, "peer state");
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    if args.stats_interval > 0 {
        let m2 = m.clone();
        let rest = rest.clone();
        let every = Duration::from_secs(args.stats_interval);
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.tick().await;
            loop {
                t.tick().await;
                let rest_stats: serde_json::Map<String, serde_json::Value> = rest
                    .iter()
                    .map(|(h, c)| {
                        (
                            h.clone(),
                            serde_json::to_value(c.stats()).unwrap_or_default(),
                        )
                    })
                    .collect();
                let v = serde_json::json!({"grid": m2.stats(), "rest": rest_stats});
                println!("{v}");
            }
        });
    }
    shutdown_signal().await;
    // Stop accepting and end every call, then flush the log and audit queues.
    tracing::info!("shutting down");
    m.shutdown();
    server.abort();
    let report = registry.shutdown(LOG_FLUSH_TIMEOUT).await;
    if report.dropped > 0 || report.persisted > 0 {
        eprintln!(
            "log shutdown: {} delivered, {} persisted to queue_dir, {} not delivered",
            report.delivered, report.persisted, report.dropped
        );
    }
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
