//! Test support, **not part of the API**: compiled only for this crate's own tests and for
//! builds that enable the `test-support` feature (this crate's integration tests, benches and
//! examples do, through a dev-dependency on itself). Nothing here is stable.
//!
//! It gives the tests what users must not have: a webhook target driven directly (start,
//! send, cancel, shutdown), the registry's live target lists, and a quiet subscriber (S1).

use std::sync::{Arc, Once};

pub use crate::target::{BoxFuture, SendError, Target};
pub use crate::webhook::WebhookTarget;

use crate::registry::{Registry, Snapshot};

/// The registry's current system list (console first).
pub fn system_targets(registry: &Arc<Registry>) -> Snapshot {
    registry.system_targets()
}

/// The registry's current audit list.
pub fn audit_targets(registry: &Arc<Registry>) -> Snapshot {
    registry.audit_targets()
}

/// The filter directive tests use: `RUST_LOG` when set (and valid), else `error`.
pub fn test_filter_directive(rust_log: Option<&str>) -> String {
    match rust_log {
        Some(v) if tracing_subscriber::EnvFilter::try_new(v).is_ok() => v.to_string(),
        _ => "error".to_string(),
    }
}

/// Installs, once per process, a global `fmt` subscriber for tests: ERROR level unless
/// `RUST_LOG` is set, writing through the test harness's capture.
pub fn init_test_subscriber() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let directive = test_filter_directive(std::env::var("RUST_LOG").ok().as_deref());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(directive))
            .with_test_writer()
            .try_init();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_default_to_error_level() {
        assert_eq!(test_filter_directive(None), "error");
        assert_eq!(test_filter_directive(Some("debug")), "debug");
        assert_eq!(
            test_filter_directive(Some("nodegrid_log=info")),
            "nodegrid_log=info"
        );
        let f = tracing_subscriber::EnvFilter::new(test_filter_directive(None));
        assert_eq!(
            f.max_level_hint(),
            Some(tracing_subscriber::filter::LevelFilter::ERROR)
        );
    }
}
