//! How the wait between delivery attempts grows (LOGGING.md §7.4, §8.5 `retry_backoff`).

use std::time::Duration;

/// Upper bound of an exponential retry wait.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How the wait between attempts grows (LOGGING.md §8.5 `retry_backoff`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RetryBackoff {
    /// Always `retry_interval` (the reference's behaviour; default).
    #[default]
    Fixed,
    /// `retry_interval × 2^retry`, capped at 30 s (or `retry_interval` if larger),
    /// with full jitter.
    Exponential,
}

impl RetryBackoff {
    /// The wait before retry number `retry` (0-based) with base `interval`.
    pub fn wait(self, interval: Duration, retry: u32) -> Duration {
        match self {
            RetryBackoff::Fixed => interval,
            RetryBackoff::Exponential => {
                let cap = MAX_BACKOFF.max(interval);
                let d = interval.saturating_mul(1u32 << retry.min(16)).min(cap);
                // Full jitter from the clock's sub-second nanos: no RNG dependency needed.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|t| t.subsec_nanos())
                    .unwrap_or(0);
                let frac = (nanos.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0;
                d.mul_f64(frac).max(Duration::from_millis(10)).min(d)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_waits() {
        let base = Duration::from_millis(100);
        assert_eq!(RetryBackoff::Fixed.wait(base, 7), base);
        for retry in 0..40 {
            let w = RetryBackoff::Exponential.wait(base, retry);
            let bound = base.saturating_mul(1u32 << retry.min(16)).min(MAX_BACKOFF);
            assert!(
                w <= bound && w >= Duration::from_millis(10),
                "{retry}: {w:?}"
            );
        }
    }
}
