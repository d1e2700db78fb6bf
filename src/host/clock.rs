//! The host's clocks: monotonic time backed by `tokio::time::Instant` (so paused-time tests
//! control it) and wall time in unix milliseconds for status documents.
//!
//! The only place in the host that reads a clock; `wa/` never does.

use std::time::{Duration, Instant};

/// Monotonic now, as a std `Instant` (what the sans-IO client takes).
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Wall-clock now in unix milliseconds.
#[expect(clippy::disallowed_methods, reason = "host::clock is the one place the host reads wall time")]
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Wall-clock now in unix seconds.
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

/// Milliseconds of a duration, saturating.
pub fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// RFC 3339 (UTC, second precision) of a unix-millisecond timestamp, for API bodies.
pub fn rfc3339(unix_ms: u64) -> String {
    crate::types::rfc3339_utc(unix_ms / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3339 rendering matches known timestamps (epoch, a leap day).
    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000_000), "2027-01-15T08:00:00Z");
    }
}
