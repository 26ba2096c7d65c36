//! Time, injected: what "now" is for expiry decisions.
//!
//! Sessions expire by wall-clock seconds (every node compares the same
//! stored deadlines) and age cache entries by a monotonic instant. Both come
//! from a [`Clock`], so tests can run the session layer on
//! [`TokioClock`] under a paused tokio runtime and move time forward with
//! `tokio::time::advance` instead of sleeping.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Where the gateway reads the time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Seconds since the Unix epoch.
    fn unix_now(&self) -> u64;
    /// A monotonic instant, for ages and deadlines on this node.
    fn instant(&self) -> Instant;
}

/// Seconds since the Unix epoch by the system clock (0 if the clock is set
/// before 1970, which makes every deadline look past rather than panic).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The system's wall clock and monotonic clock: what a running gateway uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix_now(&self) -> u64 {
        unix_now()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// Wall-clock seconds that advance with tokio's clock from a starting
/// point: under `tokio::time::pause()`, `tokio::time::advance` moves both
/// readings at once.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    unix_at_start: u64,
    start: Instant,
}

impl TokioClock {
    /// A clock that reads `unix_at_start` now.
    pub fn starting_at(unix_at_start: u64) -> Self {
        TokioClock {
            unix_at_start,
            start: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn unix_now(&self) -> u64 {
        self.unix_at_start + Instant::now().duration_since(self.start).as_secs()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_tokio_clock_moves_only_when_tokio_time_does() {
        let c = TokioClock::starting_at(1_000);
        let at = c.instant();
        assert_eq!(c.unix_now(), 1_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(c.unix_now(), 1_090);
        assert_eq!(c.instant().duration_since(at), Duration::from_secs(90));
    }
}
