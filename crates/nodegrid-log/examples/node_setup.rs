//! How a nodegrid node wires its log and audit trail (until `nodegrid node` exists).
//!
//! 1. Configuration from the environment, `NODEGRID_` prefix (LOGGING.md §5 with
//!    `NODEGRID_` in place of `MINIO_`), e.g.
//!    `NODEGRID_AUDIT_WEBHOOK_ENABLE=on NODEGRID_AUDIT_WEBHOOK_ENDPOINT=http://127.0.0.1:8080/audit`
//!    `NODEGRID_AUDIT_WEBHOOK_BATCH_SIZE=100 NODEGRID_AUDIT_WEBHOOK_QUEUE_DIR=/var/lib/nodegrid/audit`.
//! 2. The tracing layer: the node's own log (peer state changes, errors) goes to the logger
//!    targets through ordinary `tracing` macros.
//! 3. One audit entry per completed incoming grid call.
//! 4. On SIGTERM: stop accepting calls, then flush every queued entry (bounded by a shutdown
//!    timeout, default 10 s); print what could not be delivered (persisted when a queue_dir
//!    is set). SIGHUP reloads client certificates.
//!
//! Run against your own receiver:
//!     NODEGRID_AUDIT_WEBHOOK_ENABLE=on NODEGRID_AUDIT_WEBHOOK_ENDPOINT=http://127.0.0.1:9000/ \
//!     cargo run -p nodegrid-log --example node_setup -- --calls 1000
//! or self-contained, with a receiver started on 127.0.0.1 by the example itself, which checks
//! that exactly N audit entries arrived after the shutdown:
//!     cargo run -p nodegrid-log --example node_setup -- --demo --calls 1000
//! add `--wait` to have the demo wait for a real SIGTERM (`kill -TERM <pid>`) after the calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use nodegrid_log::{
    AuditEntry, CallResult, ConsoleTarget, GridCall, LoggingConfig, Registry, ShutdownReport,
};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::prelude::*;

/// Shutdown grace period of the node (LOGGING.md: bounded flush, default 10 s).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let demo = args.iter().any(|a| a == "--demo");
    // With --wait the demo waits for a real SIGTERM after serving its calls.
    let wait = args.iter().any(|a| a == "--wait");
    let calls: u64 = args
        .iter()
        .position(|a| a == "--calls")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);

    // 1. Configuration (all-or-nothing; errors name the variable).
    let (cfg, receiver) = if demo {
        let (url, count) = start_receiver().await?;
        let vars = std::env::vars().chain([
            (
                "NODEGRID_AUDIT_WEBHOOK_ENABLE".to_string(),
                "on".to_string(),
            ),
            ("NODEGRID_AUDIT_WEBHOOK_ENDPOINT".to_string(), url),
            (
                "NODEGRID_AUDIT_WEBHOOK_BATCH_SIZE".to_string(),
                "100".to_string(),
            ),
        ]);
        (LoggingConfig::from_vars("NODEGRID", vars)?, Some(count))
    } else {
        (LoggingConfig::from_env()?, None)
    };
    let registry = Registry::from_config(&cfg, ConsoleTarget::stderr(cfg.console_mode))?;

    // 2. The tracing layer (INFO and above go to the console and logger webhooks).
    tracing_subscriber::registry().with(registry.layer()).init();
    nodegrid_log::event("grid", "node started");

    // 3. Serve calls; one audit entry per completed call. Stops on SIGTERM (or, in the
    //    demo, after `calls` calls). SIGHUP reloads client certificates.
    let audit = registry.audit();
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut served = 0u64;
    loop {
        if demo && !wait && served >= calls {
            // The demo plays its own SIGTERM once all calls are served.
            break;
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = hup.recv() => {
                for e in registry.reload_client_certs().failed {
                    eprintln!("certificate reload failed, the previous one stays in use: {e}");
                }
            }
            _ = tokio::task::yield_now(), if served < calls => {
                let started = Instant::now();
                // ... the handler would run here ...
                let result = if served % 97 == 96 {
                    CallResult::RemoteError("lock not held".into())
                } else {
                    CallResult::Ok
                };
                if audit.is_enabled() {
                    audit.log(AuditEntry::grid_call(&GridCall {
                        handler: "lock.Refresh",
                        subroute: "",
                        caller: "node-2:9000",
                        time_to_first_byte: started.elapsed(),
                        duration: started.elapsed(),
                        bytes_in: 64,
                        bytes_out: 16,
                        result,
                    }));
                }
                served += 1;
            }
        }
    }
    tracing::warn!(subsystem = "grid", "shutting down: no new calls accepted");

    // 4. Bounded flush of everything queued.
    let report: ShutdownReport = registry.shutdown(SHUTDOWN_TIMEOUT).await;
    eprintln!(
        "served {served} calls; logging shutdown: {} delivered during shutdown, {} persisted, {} dropped",
        report.delivered, report.persisted, report.dropped
    );
    for (name, s) in registry.stats() {
        eprintln!("  {name}: {s:?}");
    }
    if let Some(count) = receiver {
        let got = count.load(Ordering::SeqCst);
        eprintln!("receiver got {got} audit entries");
        if got != served {
            eprintln!("MISMATCH: expected {served}");
            std::process::exit(1);
        }
    }
    Ok(())
}

/// A local audit receiver on 127.0.0.1 counting NDJSON lines.
async fn start_receiver() -> std::io::Result<(String, Arc<AtomicU64>)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/audit", l.local_addr()?);
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(nodegrid_log::internal(async move {
        while let Ok((sock, _)) = l.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let c = c.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let n = body
                                .split(|b| *b == b'\n')
                                .filter(|l| !l.is_empty())
                                .count();
                            c.fetch_add(n as u64, Ordering::SeqCst);
                            Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::new())))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    }));
    Ok((url, count))
}
