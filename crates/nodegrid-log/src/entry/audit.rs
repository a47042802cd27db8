//! The audit record (LOGGING.md §1.4), and how a grid call becomes one.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::log::ObjectVersion;

/// Audit record wire version (LOGGING.md §1.4).
pub const AUDIT_VERSION: &str = "1";

/// `api` of an audit entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditApi {
    /// API name (for grid calls: the handler id).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Bucket.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    /// Object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub object: String,
    /// Objects of a multi-object request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectVersion>,
    /// Status text (`OK`, remote error text, `cancelled`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Status code (omitted when zero).
    #[serde(rename = "statusCode", default, skip_serializing_if = "is_zero_i32")]
    pub status_code: i32,
    /// Bytes received; -1 when unknown.
    pub rx: i64,
    /// Bytes sent; -1 when unknown.
    pub tx: i64,
    /// Bytes of response headers (omitted when zero).
    #[serde(rename = "txHeaders", default, skip_serializing_if = "is_zero_i64")]
    pub tx_headers: i64,
    /// `"<n>ns"`, omitted when not measured.
    #[serde(
        rename = "timeToFirstByte",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub time_to_first_byte: String,
    /// `"<n>"`.
    #[serde(
        rename = "timeToFirstByteInNS",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub time_to_first_byte_in_ns: String,
    /// `"<n>ns"`, start of request to audit call.
    #[serde(
        rename = "timeToResponse",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub time_to_response: String,
    /// `"<n>"`.
    #[serde(
        rename = "timeToResponseInNS",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub time_to_response_in_ns: String,
}

impl Default for AuditApi {
    fn default() -> Self {
        AuditApi {
            name: String::new(),
            bucket: String::new(),
            object: String::new(),
            objects: Vec::new(),
            status: String::new(),
            status_code: 0,
            rx: -1,
            tx: -1,
            tx_headers: 0,
            time_to_first_byte: String::new(),
            time_to_first_byte_in_ns: String::new(),
            time_to_response: String::new(),
            time_to_response_in_ns: String::new(),
        }
    }
}

impl AuditApi {
    /// Sets `timeToFirstByte` / `timeToFirstByteInNS` (left out when `d` is zero).
    pub fn set_time_to_first_byte(&mut self, d: Duration) {
        let (a, b) = duration_pair(d);
        self.time_to_first_byte = a;
        self.time_to_first_byte_in_ns = b;
    }

    /// Sets `timeToResponse` / `timeToResponseInNS` (left out when `d` is zero).
    pub fn set_time_to_response(&mut self, d: Duration) {
        let (a, b) = duration_pair(d);
        self.time_to_response = a;
        self.time_to_response_in_ns = b;
    }
}

fn duration_pair(d: Duration) -> (String, String) {
    let ns = d.as_nanos();
    if ns == 0 {
        (String::new(), String::new())
    } else {
        (format!("{ns}ns"), ns.to_string())
    }
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// An audit record (LOGGING.md §1.4). Field order is the JSON order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Always [`AUDIT_VERSION`].
    pub version: String,
    /// Deployment id.
    #[serde(
        rename = "deploymentid",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub deployment_id: String,
    /// Site name.
    #[serde(rename = "siteName", default, skip_serializing_if = "String::is_empty")]
    pub site_name: String,
    /// Moment the audit record was created (S5).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Internal activity name; empty (but present) for client requests.
    #[serde(default)]
    pub event: String,
    /// Record class.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// `"incoming"` for client requests, else same as `event`.
    #[serde(default)]
    pub trigger: String,
    /// API details.
    pub api: AuditApi,
    /// Client address.
    #[serde(
        rename = "remotehost",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub remote_host: String,
    /// Request id.
    #[serde(
        rename = "requestID",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub request_id: String,
    /// User agent.
    #[serde(
        rename = "userAgent",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub user_agent: String,
    /// Request path (for grid calls: the subroute).
    #[serde(
        rename = "requestPath",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub request_path: String,
    /// Request host (for grid calls: the caller host).
    #[serde(
        rename = "requestHost",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub request_host: String,
    /// Node that served the request.
    #[serde(
        rename = "requestNode",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub request_node: String,
    /// Claims of the caller's credentials.
    #[serde(
        rename = "requestClaims",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub request_claims: BTreeMap<String, serde_json::Value>,
    /// Query parameters.
    #[serde(
        rename = "requestQuery",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub request_query: BTreeMap<String, String>,
    /// Request headers.
    #[serde(
        rename = "requestHeader",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub request_header: BTreeMap<String, String>,
    /// Response headers.
    #[serde(
        rename = "responseHeader",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub response_header: BTreeMap<String, String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, serde_json::Value>,
    /// Caller's access key.
    #[serde(
        rename = "accessKey",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub access_key: String,
    /// Parent user.
    #[serde(
        rename = "parentUser",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub parent_user: String,
    /// Error text of an internal activity.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl AuditEntry {
    /// A new record for an incoming request, stamped now (`trigger = "incoming"`).
    pub fn new() -> Self {
        Self::at(OffsetDateTime::now_utc())
    }

    /// A new incoming-request record with an explicit time.
    pub fn at(time: OffsetDateTime) -> Self {
        AuditEntry {
            version: AUDIT_VERSION.to_string(),
            deployment_id: String::new(),
            site_name: String::new(),
            time,
            event: String::new(),
            kind: String::new(),
            trigger: "incoming".to_string(),
            api: AuditApi::default(),
            remote_host: String::new(),
            request_id: String::new(),
            user_agent: String::new(),
            request_path: String::new(),
            request_host: String::new(),
            request_node: String::new(),
            request_claims: BTreeMap::new(),
            request_query: BTreeMap::new(),
            request_header: BTreeMap::new(),
            response_header: BTreeMap::new(),
            tags: BTreeMap::new(),
            access_key: String::new(),
            parent_user: String::new(),
            error: String::new(),
        }
    }

    /// A record of an internal activity (`event` and `trigger` set to `event`).
    pub fn internal(event: &str) -> Self {
        let mut e = Self::new();
        e.event = event.to_string();
        e.trigger = event.to_string();
        e
    }

    /// Removes each of `keys` from the claims, query, request and response header maps
    /// (LOGGING.md §1.4 filter keys, e.g. to keep a password out of a record).
    pub fn filter_keys(&mut self, keys: &[&str]) {
        for k in keys {
            self.request_claims.remove(*k);
            self.request_query.remove(*k);
            self.request_header.remove(*k);
            self.response_header.remove(*k);
        }
    }
}

/// How a grid call ended, for [`AuditEntry::grid_call`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// Completed normally.
    Ok,
    /// The handler returned an error (its text).
    RemoteError(String),
    /// The caller or the connection cancelled the call.
    Cancelled,
}

/// Facts about one completed incoming grid call (single request or stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridCall<'a> {
    /// Handler id (e.g. `lock.Refresh`).
    pub handler: &'a str,
    /// Subroute, empty for none.
    pub subroute: &'a str,
    /// Caller host.
    pub caller: &'a str,
    /// Time to the first response byte (zero when not measured).
    pub time_to_first_byte: Duration,
    /// Duration of the whole call.
    pub duration: Duration,
    /// Payload bytes received (-1 unknown).
    pub bytes_in: i64,
    /// Payload bytes sent (-1 unknown).
    pub bytes_out: i64,
    /// Outcome.
    pub result: CallResult,
}

impl AuditEntry {
    /// The audit record of a completed incoming grid call, stamped now: `api.name` = handler,
    /// `requestPath` = subroute, `remotehost`/`requestHost` = caller, `api.rx`/`api.tx` =
    /// bytes in/out, `api.status` = `OK` / the remote error text / `cancelled` (status codes
    /// 200 / 500 / 499).
    pub fn grid_call(call: &GridCall<'_>) -> AuditEntry {
        let mut e = AuditEntry::new();
        e.kind = "grid".into();
        e.api.name = call.handler.to_string();
        e.request_path = call.subroute.to_string();
        e.remote_host = call.caller.to_string();
        e.request_host = call.caller.to_string();
        e.api.rx = call.bytes_in;
        e.api.tx = call.bytes_out;
        e.api.set_time_to_first_byte(call.time_to_first_byte);
        e.api.set_time_to_response(call.duration);
        let (status, code) = match &call.result {
            CallResult::Ok => ("OK".to_string(), 200),
            CallResult::RemoteError(t) => (t.clone(), 500),
            CallResult::Cancelled => ("cancelled".to_string(), 499),
        };
        e.api.status = status;
        e.api.status_code = code;
        if let CallResult::RemoteError(t) = &call.result {
            e.error = t.clone();
        }
        e
    }
}

impl Default for AuditEntry {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn audit_entry_keeps_mandatory_fields() {
        let mut e = AuditEntry::at(datetime!(2024-05-01 10:00:00.25 UTC));
        e.api.name = "lock.Refresh".into();
        e.api.set_time_to_response(Duration::from_nanos(1500));
        e.request_header.insert("Authorization".into(), "x".into());
        e.filter_keys(&["Authorization"]);
        let s = serde_json::to_string(&e).expect("encode");
        assert_eq!(
            s,
            r#"{"version":"1","time":"2024-05-01T10:00:00.25Z","event":"","trigger":"incoming","api":{"name":"lock.Refresh","rx":-1,"tx":-1,"timeToResponse":"1500ns","timeToResponseInNS":"1500"}}"#
        );
    }
}
