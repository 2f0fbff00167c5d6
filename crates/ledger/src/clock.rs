//! Time as the ledger sees it: milliseconds since the Unix epoch, UTC, read
//! from an injected [`Clock`] so that tests walk through days in microseconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

/// The source of "now" for every ledger operation.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now_ms(&self) -> Millis;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that moves only when told to; shared by clones.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Millis) -> Self {
        Self(Arc::new(AtomicI64::new(start)))
    }

    /// Moves the clock forward (or back, for tests of a clock that jumps).
    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1000, Ordering::SeqCst);
    }

    /// Moves the clock by `ms` milliseconds.
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, at: Millis) {
        self.0.store(at, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

/// Formats a time as ISO 8601 UTC with a `Z`, as the API and messages show it.
pub fn iso8601(at: Millis) -> String {
    match chrono::DateTime::from_timestamp_millis(at) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => format!("@{at}ms"),
    }
}

/// Seconds to milliseconds, saturating: an interval so long that it overflows
/// is, for every purpose here, "never".
pub fn secs_to_ms(secs: i64) -> Millis {
    secs.saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_is_utc_with_z() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_795_000_000_000), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn manual_clock_is_shared_by_clones() {
        let clock = ManualClock::new(1000);
        let other = clock.clone();
        clock.advance_secs(2);
        assert_eq!(other.now_ms(), 3000);
    }
}
