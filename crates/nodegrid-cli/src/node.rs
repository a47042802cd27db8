//! `nodegrid node`: one node as its own process. It serves the grid and the REST methods on one
//! port, the built-in handlers, and its log and audit trail through `nodegrid-log` (configured
//! from `NODEGRID_*` environment variables, LOGGING.md §5).
//!
//! Signals: SIGTERM and SIGINT stop the node (it ends every call, then flushes queued log and
//! audit entries). SIGHUP reloads certificates without a restart: the node's TLS files and the
//! webhooks' client certificates; a file that cannot be loaded is reported (WARN, naming the
//! file) and the certificate in use stays.

use crate::builtin;
use crate::cluster::{listen_addr, rest_clients, serve_node, Credentials};
use anyhow::{Context, Result};
use nodegrid::observe::{CallKind, CallOutcome, CallRecord};
use nodegrid::transport::TlsConfig;
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
    /// Log as JSON lines (implies --quiet).
    #[arg(long)]
    pub log_json: bool,
    /// Hide INFO lines on the console; warnings, errors and events still show, and log
    /// webhooks still get everything.
    #[arg(long)]
    pub quiet: bool,
    /// Anonymous mode for the server log (console and log webhooks): bucket, object and remote
    /// host become stable hashes, error messages are cut to the error's type, error fields are
    /// dropped.
    #[arg(long)]
    pub anonymous: bool,
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

/// Sets up logging: the console (text, quiet text, or JSON) and any logger or audit webhooks
/// configured in the environment.
pub fn init_logging(args: &NodeArgs) -> Result<Arc<Registry>> {
    let mut cfg = LoggingConfig::from_env().context("logging configuration")?;
    if args.log_json {
        cfg.console_mode = ConsoleMode::Json;
    } else if args.quiet {
        cfg.console_mode = ConsoleMode::Quiet;
    }
    let registry = Registry::from_config(&cfg, ConsoleTarget::stderr(cfg.console_mode))
        .context("logging configuration")?;
    registry.set_anonymous(args.anonymous);
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
    let mut signals = Signals::install();
    let registry = init_logging(&args)?;
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
                // A state change is news, not a problem: INFO. What needs action (a refused
                // token, a certificate, host lists) the grid logs itself, at WARN.
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
    signals
        .wait_for_stop(tls.as_ref(), &args.creds, &registry)
        .await;
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

/// The signals the node handles, installed first thing, so that a SIGHUP can never find the
/// default action (which ends the process) in place once the node runs.
struct Signals {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let unix = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(term), Ok(hup)) => Some((term, hup)),
                _ => {
                    // Logging is not set up yet.
                    eprintln!(
                        "warning: cannot install the SIGTERM / SIGHUP handlers; only Ctrl-C \
                         stops the node"
                    );
                    None
                }
            };
            Signals { unix }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Serves signals until SIGTERM or SIGINT: SIGHUP reloads certificates and the node goes
    /// on.
    async fn wait_for_stop(
        &mut self,
        tls: Option<&TlsConfig>,
        creds: &Credentials,
        registry: &Registry,
    ) {
        #[cfg(unix)]
        if let Some((term, hup)) = &mut self.unix {
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return,
                    _ = term.recv() => return,
                    _ = hup.recv() => reload_certificates(tls, creds, registry),
                }
            }
        }
        let _ = (tls, creds, registry);
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGHUP: reloads the node's TLS files and the webhooks' client certificates. New
/// connections use the new certificates; a file that cannot be loaded is reported with its
/// name and the certificate in use stays.
fn reload_certificates(tls: Option<&TlsConfig>, creds: &Credentials, registry: &Registry) {
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let (cert, key, ca) = (
        path(&creds.tls_cert),
        path(&creds.tls_key),
        path(&creds.tls_ca),
    );
    match tls.map(TlsConfig::reload) {
        None => tracing::info!("SIGHUP: no TLS certificate configured"),
        Some(Ok(())) => tracing::info!(cert, key, ca, "SIGHUP: reloaded the TLS certificate"),
        Some(Err(e)) => tracing::warn!(
            cert,
            key,
            ca,
            error = %e,
            "SIGHUP: cannot reload the TLS certificate, the current one stays in use"
        ),
    }
    let webhooks = registry.reload_client_certs();
    for name in &webhooks.reloaded {
        tracing::info!(webhook = %name, "SIGHUP: reloaded the webhook client certificate");
    }
    for e in &webhooks.failed {
        tracing::warn!(
            error = %e,
            "SIGHUP: cannot reload a webhook client certificate, the current one stays in use"
        );
    }
}
