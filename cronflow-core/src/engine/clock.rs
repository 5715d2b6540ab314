//! [`Clock`]: where the engine reads the time, so tests can control it.

use chrono::{DateTime, SubsecRound, Utc};

/// The engine's source of wall-clock time.
///
/// Every timestamp the engine records comes from here, truncated to whole microseconds
/// (the precision the stores keep). Timers are slept on tokio's clock for the difference
/// between a deadline and `now()`, so the clock must advance with tokio's: in tests under
/// `tokio::time::pause()`, use [`TokioClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// Wall time that follows tokio's clock, for tests in virtual time.
///
/// It starts at the system time when created and then advances exactly as
/// `tokio::time::Instant` does. Under `tokio::time::pause()` (or
/// `#[tokio::test(start_paused = true)]`) tokio jumps over idle waits, so an engine built with
/// this clock runs an hour of retry backoff in no real time, and its recorded timestamps agree
/// with the timers it slept on.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// use std::time::Duration;
/// use cronflow_core::{Clock, TokioClock};
/// let clock = TokioClock::new();
/// let before = clock.now();
/// tokio::time::sleep(Duration::from_secs(3600)).await; // instant under a paused clock
/// assert_eq!((clock.now() - before).num_seconds(), 3600);
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: DateTime<Utc>,
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading the system time now, advancing with tokio's clock from here on.
    pub fn new() -> Self {
        Self { wall: Utc::now().trunc_subsecs(6), origin: tokio::time::Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed =
            chrono::Duration::from_std(self.origin.elapsed()).unwrap_or(chrono::Duration::MAX);
        (self.wall + elapsed).trunc_subsecs(6)
    }
}
