//! What a target is handed: an entry of either stream, shared.

use time::OffsetDateTime;

use super::audit::AuditEntry;
use super::log::LogEntry;

/// What a target is handed: either stream's entry, shared so fan-out to several targets
/// does not copy it.
#[derive(Clone, Debug)]
pub enum Record {
    /// A server-log entry.
    Log(std::sync::Arc<LogEntry>),
    /// An audit record.
    Audit(std::sync::Arc<AuditEntry>),
}

impl Record {
    /// Appends the JSON of the entry and a `\n` to `buf` (one NDJSON line).
    pub fn encode_line(&self, buf: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let start = buf.len();
        let r = match self {
            Record::Log(e) => serde_json::to_writer(&mut *buf, e.as_ref()),
            Record::Audit(e) => serde_json::to_writer(&mut *buf, e.as_ref()),
        };
        match r {
            Ok(()) => {
                buf.push(b'\n');
                Ok(())
            }
            Err(e) => {
                buf.truncate(start);
                Err(e)
            }
        }
    }

    /// The time of the entry.
    pub fn time(&self) -> OffsetDateTime {
        match self {
            Record::Log(e) => e.time,
            Record::Audit(e) => e.time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Kind, LogEntry};
    use time::macros::datetime;

    #[test]
    fn encode_line_appends_newline() {
        let r = Record::Log(std::sync::Arc::new(LogEntry::at(
            Kind::Info,
            datetime!(2024-05-01 10:00:00 UTC),
        )));
        let mut buf = Vec::new();
        r.encode_line(&mut buf).expect("encode");
        r.encode_line(&mut buf).expect("encode");
        let text = String::from_utf8(buf).expect("utf8");
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with("}\n"));
    }
}
