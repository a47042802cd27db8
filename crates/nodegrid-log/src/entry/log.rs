//! The server-log entry (LOGGING.md §1.3) and its parts.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Kind (level) of a log entry; serialized as the upper-case strings of LOGGING.md §1.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Fatal error; only produced by the fatal path, never sent to webhooks.
    #[serde(rename = "FATAL")]
    Fatal,
    /// A warning.
    #[serde(rename = "WARNING")]
    Warning,
    /// An error (the default kind of error-logging calls).
    #[serde(rename = "ERROR")]
    Error,
    /// A noteworthy state change; carries `message`, no stack.
    #[serde(rename = "EVENT")]
    Event,
    /// Informational line.
    #[serde(rename = "INFO")]
    Info,
}

impl Kind {
    /// The wire string of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Fatal => "FATAL",
            Kind::Warning => "WARNING",
            Kind::Error => "ERROR",
            Kind::Event => "EVENT",
            Kind::Info => "INFO",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One object of a multi-object request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// Object key.
    #[serde(rename = "objectName")]
    pub object_name: String,
    /// Version id, if any.
    #[serde(
        rename = "versionId",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub version_id: String,
}

/// `api.args` of a log entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Args {
    /// Bucket of the request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    /// Object key of the request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub object: String,
    /// Version id of the request.
    #[serde(
        rename = "versionId",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub version_id: String,
    /// Objects of a multi-object request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectVersion>,
    /// Free metadata (not filled by the logger).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl Args {
    fn is_empty(&self) -> bool {
        self.bucket.is_empty()
            && self.object.is_empty()
            && self.version_id.is_empty()
            && self.objects.is_empty()
            && self.metadata.is_empty()
    }
}

/// `api` of a log entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Api {
    /// API name (`PutObject`, a grid handler name) or `SYSTEM[.<subsystem>]`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Request arguments.
    #[serde(default, skip_serializing_if = "Args::is_empty")]
    pub args: Args,
}

/// `error` of a log entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Error text (followed by the error type name in parentheses where known).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Call stack, innermost first (`file:line:function()`); at least the call site.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<String>,
    /// Request tags and structured fields of the log call.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, serde_json::Value>,
}

/// A server-log entry (LOGGING.md §1.3). Field order is the JSON order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Site name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub site: String,
    /// Deployment id.
    #[serde(
        rename = "deploymentid",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub deployment_id: String,
    /// Kind of the entry.
    pub level: Kind,
    /// Moment of the log call (S5).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// API and arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    /// Client address.
    #[serde(
        rename = "remotehost",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub remote_host: String,
    /// Node that served the request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Request host (not filled by the logger).
    #[serde(
        rename = "requestHost",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub request_host: String,
    /// Request node (not filled by the logger).
    #[serde(
        rename = "requestNode",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub request_node: String,
    /// Request id.
    #[serde(
        rename = "requestID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub request_id: String,
    /// Client user agent.
    #[serde(
        rename = "userAgent",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub user_agent: String,
    /// Text of an EVENT / INFO entry.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Error details of an ERROR / WARNING entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

impl LogEntry {
    /// A new entry of `level` stamped with the current UTC time and no other field set.
    pub fn new(level: Kind) -> Self {
        Self::at(level, OffsetDateTime::now_utc())
    }

    /// A new entry of `level` with an explicit time.
    pub fn at(level: Kind, time: OffsetDateTime) -> Self {
        LogEntry {
            site: String::new(),
            deployment_id: String::new(),
            level,
            time,
            api: None,
            remote_host: String::new(),
            host: String::new(),
            request_host: String::new(),
            request_node: String::new(),
            request_id: String::new(),
            user_agent: String::new(),
            message: String::new(),
            error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn time_of(json: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        v["time"].as_str().unwrap_or_default().to_string()
    }

    #[test]
    fn time_is_rfc3339_utc_with_trimmed_fraction() {
        for (t, want) in [
            (datetime!(2024-05-01 10:00:00 UTC), "2024-05-01T10:00:00Z"),
            (
                datetime!(2024-05-01 10:00:00.5 UTC),
                "2024-05-01T10:00:00.5Z",
            ),
            (
                datetime!(2024-05-01 10:00:00.123456789 UTC),
                "2024-05-01T10:00:00.123456789Z",
            ),
        ] {
            let e = LogEntry::at(Kind::Error, t);
            let s = serde_json::to_string(&e).expect("encode");
            assert_eq!(time_of(&s), want);
        }
    }

    #[test]
    fn log_entry_omits_empty_fields_and_round_trips() {
        let mut e = LogEntry::at(Kind::Event, datetime!(2024-05-01 10:00:00 UTC));
        e.message = "healing started".into();
        e.api = Some(Api {
            name: "SYSTEM.healing".into(),
            args: Args::default(),
        });
        let s = serde_json::to_string(&e).expect("encode");
        assert_eq!(
            s,
            r#"{"level":"EVENT","time":"2024-05-01T10:00:00Z","api":{"name":"SYSTEM.healing"},"message":"healing started"}"#
        );
        let back: LogEntry = serde_json::from_str(&s).expect("decode");
        assert_eq!(back, e);
    }
}
