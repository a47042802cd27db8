//! How the console renders an entry (LOGGING.md §2.2): pretty text blocks, quiet mode, or one
//! JSON object per line.

use time::OffsetDateTime;

use crate::entry::{Kind, LogEntry};

/// Console presentation mode (global, set at start-up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsoleMode {
    /// Human text; error entries as a multi-line block.
    #[default]
    Pretty,
    /// Like pretty, but INFO lines are hidden.
    Quiet,
    /// One JSON object per line (implies quiet, no colour).
    Json,
}

/// Console time layout `HH:MM:SS UTC MM/DD/YYYY` of the entry's own time (S5).
fn console_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:02}:{:02}:{:02} UTC {:02}/{:02}/{:04}",
        t.hour(),
        t.minute(),
        t.second(),
        u8::from(t.month()),
        t.day(),
        t.year()
    )
}

/// Strips ANSI escape sequences (JSON mode).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Renders an entry for the console, `None` when the mode hides it.
pub(crate) fn render(mode: ConsoleMode, e: &LogEntry) -> Option<String> {
    match mode {
        ConsoleMode::Json => {
            let mut e = e.clone();
            e.message = strip_ansi(&e.message);
            if let Some(err) = e.error.as_mut() {
                err.message = strip_ansi(&err.message);
            }
            let mut s = serde_json::to_string(&e).ok()?;
            s.push('\n');
            Some(s)
        }
        ConsoleMode::Quiet if e.level == Kind::Info => None,
        _ => Some(render_pretty(e)),
    }
}

fn render_pretty(e: &LogEntry) -> String {
    use std::fmt::Write as _;
    match (&e.error, e.level) {
        (None, Kind::Info) => format!("INFO: {}\n", e.message),
        (None, _) => format!("{}\n", e.message),
        (Some(err), _) => {
            let mut s = String::from("\n");
            let api = match &e.api {
                Some(api) if !api.name.starts_with("SYSTEM") && !api.name.is_empty() => {
                    let mut parts = Vec::new();
                    let a = &api.args;
                    if !a.bucket.is_empty() {
                        parts.push(format!("bucket={}", a.bucket));
                    }
                    if !a.object.is_empty() {
                        parts.push(format!("object={}", a.object));
                    }
                    if !a.version_id.is_empty() {
                        parts.push(format!("versionId={}", a.version_id));
                    }
                    if !a.objects.is_empty() {
                        parts.push(format!(
                            "multiObject=true, numberOfObjects={}",
                            a.objects.len()
                        ));
                    }
                    format!("{}({})", api.name, parts.join(", "))
                }
                _ => "INTERNAL".to_string(),
            };
            let _ = writeln!(s, "API: {api}");
            let _ = writeln!(s, "Time: {}", console_time(e.time));
            for (label, v) in [
                ("DeploymentID", &e.deployment_id),
                ("RequestID", &e.request_id),
                ("RemoteHost", &e.remote_host),
                ("Host", &e.host),
                ("UserAgent", &e.user_agent),
            ] {
                if !v.is_empty() {
                    let _ = writeln!(s, "{label}: {v}");
                }
            }
            let _ = write!(s, "Error: {} ({})", err.message, e.level);
            for (k, v) in &err.variables {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if !v.is_empty() {
                    let _ = write!(s, " {k}=\"{v}\"");
                }
            }
            s.push('\n');
            let n = err.source.len();
            for (i, frame) in err.source.iter().enumerate() {
                let _ = writeln!(s, "{:>8}: {frame}", n - i);
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::ErrorInfo;
    use time::macros::datetime;

    #[test]
    fn pretty_error_block_prints_entry_time() {
        let mut e = LogEntry::at(Kind::Error, datetime!(2024-05-01 10:02:03.5 UTC));
        e.error = Some(ErrorInfo {
            message: "disk gone".into(),
            source: vec!["a.rs:1:m".into()],
            variables: [("drive".to_string(), serde_json::json!("/d1"))].into(),
        });
        let s = render(ConsoleMode::Pretty, &e).unwrap_or_default();
        assert!(s.contains("API: INTERNAL\n"), "{s}");
        assert!(s.contains("Time: 10:02:03 UTC 05/01/2024\n"), "{s}");
        assert!(
            s.contains("Error: disk gone (ERROR) drive=\"/d1\"\n"),
            "{s}"
        );
        assert!(s.contains("       1: a.rs:1:m\n"), "{s}");
    }

    #[test]
    fn quiet_hides_info_and_json_strips_ansi() {
        let mut e = LogEntry::new(Kind::Info);
        e.message = "\u{1b}[1mhello\u{1b}[0m".into();
        assert_eq!(render(ConsoleMode::Quiet, &e), None);
        let j = render(ConsoleMode::Json, &e).unwrap_or_default();
        assert!(j.contains("\"message\":\"hello\""), "{j}");
    }
}
