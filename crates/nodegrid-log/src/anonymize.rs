//! Anonymous mode (LOGGING.md §1.9). The keyed hash is SHA-256 over a fixed key and the
//! value, hex-encoded: stable across restarts, so the same bucket always maps to the same
//! token (the reference uses HighwayHash-256; the spec allows another keyed hash).

use sha2::{Digest, Sha256};

use crate::entry::LogEntry;

/// Fixed 32-byte key of the anonymizing hash.
const KEY: &[u8; 32] = b"nodegrid-log anonymous mode key!";

/// The stable token of `value` (empty stays empty).
pub(crate) fn token(value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    let mut h = Sha256::new();
    h.update(KEY);
    h.update(value.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Rewrites an entry for anonymous mode.
pub(crate) fn anonymize(e: &mut LogEntry) {
    if let Some(api) = e.api.as_mut() {
        api.args.bucket = token(&api.args.bucket);
        api.args.object = token(&api.args.object);
        for o in &mut api.args.objects {
            o.object_name = token(&o.object_name);
        }
    }
    e.remote_host = token(&e.remote_host);
    if let Some(err) = e.error.as_mut() {
        // Messages end with "(TypeName)" when the type is known; keep only that.
        let ty = err
            .message
            .rsplit_once('(')
            .and_then(|(_, t)| t.strip_suffix(')'))
            .filter(|t| !t.is_empty() && !t.contains(' '))
            .unwrap_or("error")
            .to_string();
        err.message = ty;
        err.variables.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Api, Args, ErrorInfo, Kind};

    #[test]
    fn hides_names_and_messages_stably() {
        let mut e = LogEntry::new(Kind::Error);
        e.api = Some(Api {
            name: "PutObject".into(),
            args: Args {
                bucket: "secret-bucket".into(),
                object: "a/b".into(),
                ..Default::default()
            },
        });
        e.remote_host = "10.1.2.3".into();
        e.error = Some(ErrorInfo {
            message: "no such key a/b (ObjectNotFound)".into(),
            variables: [("k".to_string(), serde_json::json!("v"))].into(),
            ..Default::default()
        });
        anonymize(&mut e);
        let api = e.api.clone().unwrap_or_default();
        assert_eq!(api.args.bucket, token("secret-bucket"));
        assert_eq!(api.args.bucket.len(), 64);
        assert_ne!(api.args.bucket, api.args.object);
        assert_eq!(api.name, "PutObject");
        assert_eq!(e.remote_host, token("10.1.2.3"));
        let err = e.error.unwrap_or_default();
        assert_eq!(err.message, "ObjectNotFound");
        assert!(err.variables.is_empty());
        assert_eq!(token(""), "");
    }
}
