//! The URL layout of the REST routes, shared by the server and the client:
//! `<prefix>/<version>/<method>`, and the checks of each segment.

/// Default path prefix of the REST routes.
pub const DEFAULT_PREFIX: &str = "/nodegrid/rest";
/// Default API version segment.
pub const DEFAULT_VERSION: &str = "v1";
/// Reserved method name of the health check route (`GET <prefix>/<version>/health`).
pub const HEALTH_METHOD: &str = "health";

/// Whether `s` is a valid path segment: ASCII letters, digits, `-`, `_`, `.`, not `.` or `..`.
pub(crate) fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

/// Checks a method name: ASCII letters, digits, `-`, `_`, `.`.
pub(crate) fn check_method_name(name: &str) -> Result<(), String> {
    if valid_segment(name) {
        Ok(())
    } else {
        Err(format!(
            "method name {name:?} must be non-empty ASCII letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Normalises a path prefix to `/a/b` form and checks its segments.
pub(crate) fn normalize_prefix(prefix: &str) -> Result<String, String> {
    let segs: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(bad) = segs.iter().find(|s| !valid_segment(s)) {
        return Err(format!(
            "prefix segment {bad:?} is not a valid path segment"
        ));
    }
    Ok(segs.iter().map(|s| format!("/{s}")).collect())
}
