//! Server log and audit log for nodegrid (and any tokio service), on top of `tracing`.
//!
//! The behaviour follows LOGGING.md (`docs/LOGGING.md`). In brief:
//!
//! * Application code logs with `tracing` macros; the [`LogLayer`] turns each event into a
//!   [`LogEntry`] (time taken at the call) and hands it to the **system list** of targets
//!   (the console plus logger webhooks).
//! * Request handlers hand one [`AuditEntry`] per completed call to [`AuditLog::log`], which
//!   goes to the **audit list** (audit webhooks). Audit does not go through `tracing`.
//! * Both lists live in a [`Registry`] as immutable snapshots read without locks.
//! * Adding an entry never blocks and never does I/O; a full queue is a counted drop;
//!   failures of targets are reported to the console only.
//!
//! A node wires it like this (see `examples/node_setup.rs`):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tracing_subscriber::prelude::*;
//! use nodegrid_log::{ConsoleTarget, LoggingConfig, Registry, AuditEntry};
//!
//! let cfg = LoggingConfig::from_env()?; // NODEGRID_LOGGER_WEBHOOK_*, NODEGRID_AUDIT_WEBHOOK_*
//! let registry = Registry::from_config(&cfg, ConsoleTarget::stderr(cfg.console_mode))?;
//! tracing_subscriber::registry().with(registry.layer()).init();
//! let audit = registry.audit();
//! if audit.is_enabled() {
//!     audit.log(AuditEntry::new());
//! }
//! let report = registry.shutdown(Duration::from_secs(10)).await;
//! eprintln!("undelivered: {} dropped, {} persisted", report.dropped, report.persisted);
//! # Ok(()) }
//! ```
//!
//! The public surface is what users configure and observe. The targets themselves are not
//! handed out (nobody but the registry cancels or replaces them), and the internals are not
//! importable:
//!
//! ```compile_fail
//! # fn f(registry: std::sync::Arc<nodegrid_log::Registry>) {
//! let targets = registry.system_targets(); // not public
//! # }
//! ```
//!
//! ```compile_fail
//! use nodegrid_log::webhook::WebhookTarget; // private module
//! ```
//!
//! ```compile_fail
//! use nodegrid_log::Target; // the target contract is internal
//! ```
#![warn(missing_docs)]

// Layers, lowest first; a module imports only from layers below it, never from above (the
// layer owns a trait where a lower one must call up, e.g. `layer::EntrySink`):
//   error, entry/{log, audit, record}, identity, internal, logonce
//   req_info, anonymize, calls            (entry / logonce)
//   target                                (entry)
//   console/{render, feed, mod}           (entry, logonce, target)
//   webhook/{backoff, proxy, config, store, certs} (error)
//     -> client -> state -> worker, replay -> webhook/mod   (console, entry, target, ...)
//   layer                                 (entry, internal, req_info)
//   config                                (console, identity, webhook::config)
//   registry                              (all of the above)
//   test_support                          (registry, webhook, target; tests only)
// `entry` and `req_info` are public for their data types and functions; the rest is private
// and re-exported below as far as users configure and observe it.
mod anonymize;
mod calls;
mod config;
mod console;
pub mod entry;
mod error;
mod identity;
mod internal;
mod layer;
mod logonce;
mod registry;
pub mod req_info;
mod target;
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub mod test_support;
mod webhook;

pub use calls::{
    event, is_ignorable, log_always_if, log_if, log_if_not, log_once_if, set_log_calls_disabled,
    IGNORABLE_ERRORS,
};
pub use config::{LoggingConfig, ENV_PREFIX};
pub use console::{
    Capture, ConsoleMode, ConsoleSubscription, ConsoleTarget, KindMask, TooManySubscribers,
    CONSOLE_RING_SIZE, MAX_CONSOLE_SUBSCRIBERS, SUBSCRIBER_CHANNEL,
};
pub use entry::{AuditApi, AuditEntry, CallResult, GridCall, Kind, LogEntry, Record};
pub use error::{ConfigError, Error};
pub use identity::Identity;
pub use internal::{internal, Internal, INTERNAL_TARGET};
pub use layer::LogLayer;
pub use registry::{AuditLog, CertReload, Registry, DROP_SUMMARY_INTERVAL};
pub use req_info::ReqInfo;
pub use target::{ShutdownReport, Stream, TargetKind, TargetStats};
pub use webhook::{RetryBackoff, WebhookConfig, WebhookConfigBuilder};
