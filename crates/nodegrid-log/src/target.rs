//! The target contract (LOGGING.md §2.1): what the registry holds and the layer / audit API
//! hand entries to. Open for other kinds (a Kafka target is planned but out of scope now).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use serde::Serialize;

use crate::entry::Record;

/// A boxed future, as returned by the async parts of [`Target`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Which list a target serves (LOGGING.md §3.1): the system list (server log) or the audit
/// list. For webhooks it also decides the name prefix and the wording of reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Server-log webhook (`logger-<key>`), in the system list.
    Logger,
    /// Audit webhook (`audit-<key>`), in the audit list.
    Audit,
}

impl Stream {
    /// Name prefix of a webhook of this list.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Stream::Logger => "logger",
            Stream::Audit => "audit",
        }
    }

    /// Noun used in reports ("log entries", "audit entries").
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Stream::Logger => "log",
            Stream::Audit => "audit",
        }
    }

    /// Configuration subsystem of this list's webhooks.
    pub(crate) fn subsys(self) -> &'static str {
        match self {
            Stream::Logger => "logger_webhook",
            Stream::Audit => "audit_webhook",
        }
    }
}

/// Kind of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// The console (process output).
    Console,
    /// An HTTP webhook.
    Http,
    /// Kafka (reserved; not implemented yet).
    Kafka,
}

/// Failure classes of a target: with the target name, the de-duplication key of failure
/// reports (LOGGING.md §1.8, §4.1). Each class of each target is reported once per log-once
/// window; the report texts carry no counts (counts are in the stats and the periodic
/// summary), so a persisting problem does not change the text and is not printed again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// An entry was refused because the queue was full.
    QueueFull,
    /// An entry was refused because the target is closed.
    Closed,
    /// A delivery attempt failed.
    Send,
    /// A batch was given up after `max_retry` retries.
    GaveUp,
    /// An entry could not be encoded.
    Encode,
    /// The disk queue could not be written, listed, read or cleaned up.
    Disk,
    /// The disk queue is at its file or byte bound.
    DiskFull,
    /// A corrupt disk-queue file was deleted.
    Corrupt,
    /// The client certificate could not be (re)loaded.
    Certificate,
    /// Entries were dropped because the target was removed or closed.
    Dropped,
    /// Entries were left over at shutdown.
    Shutdown,
    /// A console-log subscriber missed entries.
    Missed,
}

impl Failure {
    /// Short name, part of the de-duplication key.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::QueueFull => "queue-full",
            Failure::Closed => "closed",
            Failure::Send => "send",
            Failure::GaveUp => "gave-up",
            Failure::Encode => "encode",
            Failure::Disk => "disk",
            Failure::DiskFull => "disk-full",
            Failure::Corrupt => "corrupt",
            Failure::Certificate => "certificate",
            Failure::Dropped => "dropped",
            Failure::Shutdown => "shutdown",
            Failure::Missed => "missed",
        }
    }
}

impl TargetKind {
    /// Lower-case name, as used in stats keys.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Console => "console",
            TargetKind::Http => "http",
            TargetKind::Kafka => "kafka",
        }
    }
}

/// Why [`Target::send`] did not accept an entry. Every rejection is also counted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The in-memory queue is full ("log buffer full"); the entry was dropped.
    #[error("{target}: log buffer full, entry dropped")]
    QueueFull {
        /// Target name.
        target: String,
    },
    /// The target is closed and has no replacement; the entry was dropped.
    #[error("{target}: target closed, entry dropped")]
    Closed {
        /// Target name.
        target: String,
    },
}

impl SendError {
    /// The failure class of this refusal.
    pub(crate) fn failure(&self) -> Failure {
        match self {
            SendError::QueueFull { .. } => Failure::QueueFull,
            SendError::Closed { .. } => Failure::Closed,
        }
    }
}

/// Counters of one target (LOGGING.md §2.3.8, with exact semantics).
///
/// Every entry offered is in exactly one of the buckets, so
/// `total == sent + failed + dropped + migrated + queued` holds for every snapshot:
/// `queued` is derived from the others, which are read before `total`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TargetStats {
    /// Target name.
    pub name: String,
    /// Endpoint (empty for the console).
    pub endpoint: String,
    /// Entries offered to the target (accepted or not), plus entries found in its disk queue
    /// at start-up and entries migrated into it from a replaced target.
    pub total: u64,
    /// Entries delivered (2xx).
    pub sent: u64,
    /// Entries given up after delivery was tried (max_retry exhausted, unencodable, corrupt
    /// disk file).
    pub failed: u64,
    /// Entries lost without a delivery attempt failing: queue full, target closed, left over
    /// at shutdown and not persisted.
    pub dropped: u64,
    /// Entries handed over to a same-named replacement target.
    pub migrated: u64,
    /// Entries accepted and not yet resolved (memory queue, worker batch, disk queue).
    pub queued: u64,
    /// Failed HTTP attempts (each retry counts).
    pub send_errors: u64,
    /// Entries currently in the in-memory queue.
    pub queue_length: u64,
    /// Files in the disk queue.
    pub disk_queue_files: u64,
    /// Bytes in the disk queue.
    pub disk_queue_bytes: u64,
    /// Batches that could not be written because the disk queue was at its file or byte
    /// bound (each retry counts).
    pub disk_queue_full: u64,
    /// Cached online state.
    pub online: bool,
}

/// What was left at shutdown (LOGGING.md §2.3.7).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Entries delivered during the shutdown flush.
    pub delivered: u64,
    /// Entries that could not be delivered and were written to the disk queue (or were
    /// already there), to be replayed by the next start.
    pub persisted: u64,
    /// Entries that could not be delivered and are lost (counted as `dropped`).
    pub dropped: u64,
}

impl ShutdownReport {
    /// Adds another report into this one.
    pub fn add(&mut self, other: &ShutdownReport) {
        self.delivered += other.delivered;
        self.persisted += other.persisted;
        self.dropped += other.dropped;
    }
}

/// A log or audit target.
pub trait Target: Send + Sync + 'static {
    /// Stable identity (`logger-<key>`, `audit-<key>`, `console`).
    fn name(&self) -> &str;
    /// Kind.
    fn kind(&self) -> TargetKind;
    /// Offers an entry. MUST NOT block or do I/O: enqueue or fail fast (counted).
    fn send(&self, record: Record) -> Result<(), SendError>;
    /// Counters.
    fn stats(&self) -> TargetStats;
    /// Stops accepting and stops workers; pending entries go to the replacement if one was
    /// assigned, else they are counted as dropped. The future resolves when workers ended;
    /// it does not wait for a request in flight, which finishes on its own (bounded by the
    /// target's http timeout) and is then counted as sent or passed on like the rest.
    fn cancel(&self) -> BoxFuture<()>;
    /// Graceful stop: deliver what can be delivered before `deadline`, persist the rest when
    /// a disk queue exists, count the remainder as dropped.
    fn shutdown(&self, deadline: Instant) -> BoxFuture<ShutdownReport>;
    /// For downcasting (the registry uses it to hand over a webhook's queue).
    fn as_any(&self) -> &dyn Any;
}
