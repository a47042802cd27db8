//! The log call variants of LOGGING.md §1.7 and §1.8 (`log_if`, `log_once_if`, `event`, …):
//! thin functions that apply the ignore rules and log-once, then emit a `tracing` event.

use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;

use crate::logonce::{root_text, LogOnce};

static LOG_ONCE: LazyLock<LogOnce> = LazyLock::new(LogOnce::default);
static LOG_CALLS_DISABLED: AtomicBool = AtomicBool::new(false);

/// Turns the `log_*` helpers of this module off (or back on) process-wide (LOGGING.md §1.7:
/// the global switch tests use). Plain `tracing` macros are not affected.
pub fn set_log_calls_disabled(disabled: bool) {
    LOG_CALLS_DISABLED.store(disabled, Ordering::Relaxed);
}

/// Texts of errors that [`log_if`] and [`log_once_if`] never log: cancellation, a closed
/// server, a missing drive (LOGGING.md §1.7 "ignorable" errors).
pub const IGNORABLE_ERRORS: &[&str] = &[
    "operation canceled",
    "operation cancelled",
    "context canceled",
    "server closed",
    "drive not found",
];

/// Whether `err` (or its root cause) is one of [`IGNORABLE_ERRORS`].
pub fn is_ignorable(err: &(dyn StdError + 'static)) -> bool {
    let outer = err.to_string().to_ascii_lowercase();
    let root = root_text(err).to_ascii_lowercase();
    IGNORABLE_ERRORS.iter().any(|t| outer == *t || root == *t)
}

/// Logs `err` as an ERROR event of `subsystem` unless it is ignorable (LOGGING.md §1.7
/// `log_if`).
pub fn log_if(subsystem: &str, err: &(dyn StdError + 'static)) {
    if is_ignorable(err) {
        return;
    }
    log_always_if(subsystem, err);
}

/// Logs `err` as an ERROR event of `subsystem`, ignorable or not (`log_always_if`).
pub fn log_always_if(subsystem: &str, err: &(dyn StdError + 'static)) {
    if LOG_CALLS_DISABLED.load(Ordering::Relaxed) {
        return;
    }
    tracing::error!(subsystem = subsystem, error = %err);
}

/// Like [`log_if`], and also skips errors whose text equals one of `ignored` (`log_if_not`).
pub fn log_if_not(subsystem: &str, err: &(dyn StdError + 'static), ignored: &[&str]) {
    let text = err.to_string();
    if ignored.iter().any(|i| *i == text) {
        return;
    }
    log_if(subsystem, err);
}

/// Logs `err` once per `id` and distinct root-cause text per hour (LOGGING.md §1.8
/// `log_once_if`); ignorable errors are skipped. Returns whether it was logged.
pub fn log_once_if(id: &str, subsystem: &str, err: &(dyn StdError + 'static)) -> bool {
    if is_ignorable(err) || LOG_CALLS_DISABLED.load(Ordering::Relaxed) {
        return false;
    }
    let verdict = LOG_ONCE.check(id, &root_text(err));
    for (eid, text, n) in &verdict.expired {
        tracing::warn!(subsystem = subsystem, "{eid}: {text} (repeated {n} times)");
    }
    if verdict.log {
        log_if(subsystem, err);
    }
    verdict.log
}

/// Logs an EVENT of `subsystem` (a noteworthy state change, LOGGING.md §1.2).
pub fn event(subsystem: &str, message: &str) {
    if LOG_CALLS_DISABLED.load(Ordering::Relaxed) {
        return;
    }
    tracing::info!(subsystem = subsystem, kind = "event", "{message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignorable_errors_are_recognised() {
        let cancelled = std::io::Error::other("operation canceled");
        assert!(is_ignorable(&cancelled));
        let real = std::io::Error::other("disk full");
        assert!(!is_ignorable(&real));
    }
}
