//! Redial pacing (PROTOCOL.md §4.6): after a failed attempt the next one starts at
//! `start_of_failed_attempt + U`, U uniform in [1 s, 2 s). No exponential growth: a node that
//! comes back is found within 2 s.

use std::time::Duration;

/// The delay after the start of a failed attempt before the next one, given a uniform sample
/// `u` in `[0, 1)`.
pub fn redial_delay(u: f64, min: Duration, max: Duration) -> Duration {
    let u = if u.is_finite() {
        u.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let span = max.saturating_sub(min);
    let d = min + span.mul_f64(u);
    if d >= max && max > min {
        max - Duration::from_nanos(1)
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REDIAL_MIN: Duration = Duration::from_secs(1);
    const REDIAL_MAX: Duration = Duration::from_secs(2);

    #[test]
    fn bounds() {
        assert_eq!(redial_delay(0.0, REDIAL_MIN, REDIAL_MAX), REDIAL_MIN);
        assert!(redial_delay(0.999_999, REDIAL_MIN, REDIAL_MAX) < REDIAL_MAX);
        assert!(redial_delay(1.0, REDIAL_MIN, REDIAL_MAX) < REDIAL_MAX);
        assert_eq!(redial_delay(f64::NAN, REDIAL_MIN, REDIAL_MAX), REDIAL_MIN);
        assert_eq!(
            redial_delay(0.5, REDIAL_MIN, REDIAL_MAX),
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn equal_bounds_give_that_delay() {
        for u in [0.0, 0.5, 1.0, f64::INFINITY] {
            assert_eq!(redial_delay(u, REDIAL_MIN, REDIAL_MIN), REDIAL_MIN);
            assert_eq!(
                redial_delay(u, Duration::ZERO, Duration::ZERO),
                Duration::ZERO
            );
        }
        // An inverted range never panics and never goes below `min`.
        assert_eq!(redial_delay(0.5, REDIAL_MAX, REDIAL_MIN), REDIAL_MAX);
    }
}
