//! Test support (S1): quiet subscribers for unit and integration tests.

use std::sync::Once;

/// Installs, once per process, a global `fmt` subscriber for tests: ERROR level unless
/// `RUST_LOG` is set, writing through the test harness's capture.
pub fn init_test_subscriber() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
            .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("error"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
