//! Wall-clock timestamps as the grid carries them (PROTOCOL.md §3.6, "Timestamp encoding").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time as seconds and nanoseconds since the Unix epoch.
///
/// This is exactly what the wire carries: `i64` seconds (possibly negative) and `u32`
/// nanoseconds in `0..1_000_000_000`. [`GridTime::ZERO`] is Go's zero time (year 1), which the
/// reference sends when a pong answers a ping without a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GridTime {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub secs: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
}

/// Seconds from 0001-01-01T00:00:00Z (Go's zero time) to the Unix epoch, negated.
const GO_ZERO_TIME_SECS: i64 = -62_135_596_800;

impl GridTime {
    /// Go's zero time, 0001-01-01T00:00:00Z.
    pub const ZERO: GridTime = GridTime {
        secs: GO_ZERO_TIME_SECS,
        nanos: 0,
    };

    /// The current wall-clock time.
    pub fn now() -> GridTime {
        SystemTime::now().into()
    }

    /// Whether this is Go's zero time.
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// Nanoseconds since the Unix epoch, saturating at the `i128` range (never overflows).
    pub fn unix_nanos(&self) -> i128 {
        self.secs as i128 * 1_000_000_000 + self.nanos as i128
    }

    /// Builds a time from nanoseconds since the Unix epoch.
    pub fn from_unix_nanos(n: i128) -> GridTime {
        let secs = n.div_euclid(1_000_000_000);
        let nanos = n.rem_euclid(1_000_000_000) as u32;
        GridTime {
            secs: secs.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
            nanos,
        }
    }

    /// Converts to a [`SystemTime`], if representable.
    pub fn to_system_time(&self) -> Option<SystemTime> {
        if self.secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::new(self.secs as u64, self.nanos))
        } else {
            let back = Duration::from_secs(self.secs.unsigned_abs());
            UNIX_EPOCH
                .checked_sub(back)?
                .checked_add(Duration::from_nanos(self.nanos as u64))
        }
    }

    /// The signed difference `self - other` in nanoseconds.
    pub fn nanos_since(&self, other: &GridTime) -> i128 {
        self.unix_nanos() - other.unix_nanos()
    }
}

impl From<SystemTime> for GridTime {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => GridTime {
                secs: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => GridTime::from_unix_nanos(-(e.duration().as_nanos() as i128)),
        }
    }
}

impl std::fmt::Display for GridTime {
    /// RFC 3339 in UTC with nanoseconds, trailing zeros trimmed as Go's `RFC3339Nano` does,
    /// e.g. `2025-01-02T03:04:05.123456789Z` or `0001-01-01T00:00:00Z`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let sod = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            y,
            m,
            d,
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )?;
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats a duration the way Go's `time.Duration.String` does (e.g. `6m0.5s`, `1h0m0s`,
/// `1.5ms`), because the handshake's clock-skew rejection reason carries it (PROTOCOL.md §4.2).
pub fn go_duration_string(nanos: i128) -> String {
    let neg = nanos < 0;
    let n = nanos.unsigned_abs();
    let sign = if neg { "-" } else { "" };
    if n == 0 {
        return "0s".to_string();
    }
    let frac = |v: u128, unit: u128| -> String {
        let whole = v / unit;
        let rem = v % unit;
        if rem == 0 {
            return whole.to_string();
        }
        let digits = unit.ilog10() as usize;
        let s = format!("{:0width$}", rem, width = digits);
        format!("{}.{}", whole, s.trim_end_matches('0'))
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", frac(n, 1_000_000));
    }
    let secs_total = n / 1_000_000_000;
    let sub = n % 1_000_000_000;
    let h = secs_total / 3600;
    let m = (secs_total / 60) % 60;
    let s = secs_total % 60;
    let s_str = frac(s * 1_000_000_000 + sub, 1_000_000_000);
    if h > 0 {
        format!("{sign}{h}h{m}m{s_str}s")
    } else if m > 0 {
        format!("{sign}{m}m{s_str}s")
    } else {
        format!("{sign}{s_str}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        let t = GridTime {
            secs: 1_735_787_045,
            nanos: 123_456_789,
        };
        assert_eq!(t.to_string(), "2025-01-02T03:04:05.123456789Z");
        assert_eq!(GridTime::ZERO.to_string(), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_string(360_500_000_000), "6m0.5s");
        assert_eq!(go_duration_string(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration_string(1_500_000), "1.5ms");
        assert_eq!(go_duration_string(0), "0s");
        assert_eq!(go_duration_string(-301_000_000_000), "-5m1s");
        assert_eq!(go_duration_string(999), "999ns");
        assert_eq!(go_duration_string(2_000), "2µs");
    }

    #[test]
    fn nanos_roundtrip_and_system_time() {
        let t = GridTime::from_unix_nanos(-1);
        assert_eq!(
            t,
            GridTime {
                secs: -1,
                nanos: 999_999_999
            }
        );
        assert_eq!(t.unix_nanos(), -1);
        let now = SystemTime::now();
        assert_eq!(GridTime::from(now).to_system_time(), Some(now));
    }
}
