//! The `tracing` layer that turns events into [`LogEntry`]s for the system target list
//! (LOGGING.md §8.2), and the marker that keeps the targets' own activity out of it.
//!
//! `on_event` takes the time first (S5), builds the entry and `try_send`s it to each target
//! of the current snapshot: it never blocks and never does I/O (the console target writes
//! synchronously, like any console logger).
//!
//! No recursion (S3): failure reports go straight to the console sink, never through
//! `tracing`. Events emitted while a target's worker task is being polled (e.g. by hyper or
//! rustls, or by code they call) are ignored: those tasks run inside
//! [`internal`](crate::internal()), which sets a thread-local flag for the duration of each
//! poll. Events with a target starting with [`INTERNAL_TARGET`] are ignored as well.
//!
//! The layer sits below the registry: it hands entries to an [`EntrySink`], which the
//! registry implements.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use time::OffsetDateTime;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use crate::entry::{Api, Args, ErrorInfo, Kind, LogEntry};
use crate::internal::{in_internal, INTERNAL_TARGET};

/// Where the layer hands its entries: the registry implements it. The layer owns this small
/// interface so that it does not depend on the registry built over it.
pub(crate) trait EntrySink: Send + Sync + 'static {
    /// Deployment id put into entries that carry no request info.
    fn deployment_id(&self) -> &str;
    /// Sends an entry to the system list.
    fn log(&self, entry: LogEntry);
}

/// The layer. Build it with [`Registry::layer`](crate::Registry::layer).
pub struct LogLayer {
    sink: Arc<dyn EntrySink>,
    min_level: Level,
}

impl LogLayer {
    pub(crate) fn new(sink: Arc<dyn EntrySink>) -> Self {
        LogLayer {
            sink,
            min_level: Level::INFO,
        }
    }

    /// Forwards only events at `level` or more severe (default INFO; DEBUG and TRACE are
    /// never forwarded).
    pub fn with_min_level(mut self, level: Level) -> Self {
        self.min_level = if level > Level::INFO {
            Level::INFO
        } else {
            level
        };
        self
    }
}

/// Collects an event's fields. For INFO events (whose entries carry `message`, not `error`)
/// structured fields are written straight into `extra` as ` k=v` text instead of a map,
/// which saves several allocations per event.
#[derive(Default)]
struct Fields {
    message: String,
    error: String,
    /// `SYSTEM.<subsystem>` when a `subsystem` field was given.
    api_name: String,
    event_kind: bool,
    inline: bool,
    extra: String,
    variables: BTreeMap<String, serde_json::Value>,
}

impl Fields {
    fn special(&mut self, name: &str, value: &str) -> bool {
        match name {
            "message" => self.message = value.to_string(),
            "error" => self.error = value.to_string(),
            "subsystem" => {
                let mut n = String::with_capacity(7 + value.len());
                n.push_str("SYSTEM.");
                n.push_str(value);
                self.api_name = n;
            }
            "kind" => self.event_kind = value.eq_ignore_ascii_case("event"),
            _ => return false,
        }
        true
    }

    fn var(&mut self, name: &str, v: impl Into<serde_json::Value> + std::fmt::Display) {
        if self.inline {
            let _ = write!(self.extra, " {name}={v}");
        } else {
            self.variables.insert(name.to_string(), v.into());
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.special(field.name(), value) {
            if self.inline {
                let _ = write!(self.extra, " {}={value:?}", field.name());
            } else {
                self.variables
                    .insert(field.name().to_string(), value.into());
            }
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.var(field.name(), value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.var(field.name(), value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.var(field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let name = field.name();
        if self.inline && !matches!(name, "message" | "error" | "subsystem" | "kind") {
            let _ = write!(self.extra, " {name}={value:?}");
            return;
        }
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        match name {
            "message" => self.message = s,
            "error" => self.error = s,
            other => {
                if !self.special(other, &s) {
                    self.variables.insert(other.to_string(), s.into());
                }
            }
        }
    }
}

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // S5: the entry's time is the moment of the call.
        let time = OffsetDateTime::now_utc();
        if in_internal() {
            return;
        }
        let meta = event.metadata();
        let level = *meta.level();
        if level > self.min_level || meta.target().starts_with(INTERNAL_TARGET) {
            return;
        }
        let mut f = Fields {
            inline: level == Level::INFO,
            ..Fields::default()
        };
        event.record(&mut f);
        let kind = if f.event_kind {
            Kind::Event
        } else if level == Level::ERROR {
            Kind::Error
        } else if level == Level::WARN {
            Kind::Warning
        } else {
            Kind::Info
        };
        let mut e = LogEntry::at(kind, time);
        let api_name = if f.api_name.is_empty() {
            "SYSTEM".to_string()
        } else {
            std::mem::take(&mut f.api_name)
        };
        e.api = Some(Api {
            name: api_name,
            args: Args::default(),
        });
        e.deployment_id = self.sink.deployment_id().to_string();
        // Task-local first; else the event's span scope (never `Span::current()` here: a
        // nested dispatch inside a layer callback sees no subscriber).
        let req = crate::req_info::task_current().or_else(|| {
            ctx.event_scope(event).and_then(|scope| {
                scope.from_root().fold(None, |found, span| {
                    span.extensions()
                        .get::<crate::req_info::InSpan>()
                        .map(|i| i.0.clone())
                        .or(found)
                })
            })
        });
        if let Some(req) = req {
            let m = req.snapshot();
            e.api = Some(Api {
                name: req.api.clone(),
                args: Args {
                    bucket: req.bucket.clone(),
                    object: req.object.clone(),
                    version_id: req.version_id.clone(),
                    objects: m.objects,
                    metadata: BTreeMap::new(),
                },
            });
            if !req.deployment_id.is_empty() {
                e.deployment_id = req.deployment_id.clone();
            }
            e.remote_host = req.remote_host.clone();
            e.host = req.host.clone();
            e.request_id = req.request_id.clone();
            e.user_agent = req.user_agent.clone();
            for (k, v) in m.tags {
                f.variables.insert(k, v.into());
            }
        }
        match kind {
            Kind::Event | Kind::Info => {
                e.message = if f.error.is_empty() {
                    f.message
                } else {
                    format!("{}: {}", f.message, f.error)
                };
                // INFO entries have no `error`; structured fields stay visible as text.
                e.message.push_str(&f.extra);
                for (k, v) in &f.variables {
                    let _ = write!(e.message, " {k}={v}");
                }
            }
            _ => {
                let message = match (f.message.is_empty(), f.error.is_empty()) {
                    (_, true) => f.message,
                    (true, false) => f.error,
                    (false, false) => format!("{}: {}", f.message, f.error),
                };
                let source = match (meta.file(), meta.line()) {
                    (Some(file), Some(line)) => {
                        vec![format!(
                            "{file}:{line}:{}",
                            meta.module_path().unwrap_or("")
                        )]
                    }
                    _ => Vec::new(),
                };
                e.error = Some(ErrorInfo {
                    message,
                    source,
                    variables: f.variables,
                });
            }
        }
        self.sink.log(e);
    }
}
