//! The two record types of LOGGING.md §1: [`LogEntry`] (server log) and [`AuditEntry`].
//!
//! Both keep their timestamp as a [`time::OffsetDateTime`] taken at the call site (S5); it is
//! only turned into text when the entry is serialized (RFC 3339, UTC, trailing zeros of the
//! fraction trimmed, `Z` suffix).

mod audit;
mod log;
mod record;

pub use audit::{AuditApi, AuditEntry, CallResult, GridCall, AUDIT_VERSION};
pub use log::{Api, Args, ErrorInfo, Kind, LogEntry, ObjectVersion};
pub use record::Record;
