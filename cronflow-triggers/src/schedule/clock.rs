//! [`TriggerClock`]: the time schedules run on, real ([`WallClock`]) or simulated
//! ([`SimulatedClock`], for tests that cross a day or a daylight-saving change in
//! milliseconds).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// The time schedules and pollers run on.
///
/// # Contract
///
/// `now` never goes backwards by much (a wall clock may be corrected; schedules tolerate
/// it), and `sleep_until(t)` completes once `now() >= t`, not before.
pub trait TriggerClock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Completes once `now() >= t`.
    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system clock, sleeping on tokio's timer. A sleep re-reads the clock when it wakes, so
/// a wall clock corrected meanwhile delays a slot rather than firing it early.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl TriggerClock for WallClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            loop {
                let Ok(left) = (t - Utc::now()).to_std() else { return };
                if left.is_zero() {
                    return;
                }
                // Sleep in bounded steps, so a clock jumping forward is noticed.
                tokio::time::sleep(left.min(Duration::from_secs(60))).await;
            }
        })
    }
}

/// A clock that moves only when told to: [`SimulatedClock::set`] or
/// [`SimulatedClock::advance`] wake every sleeper whose time has come. Clones share the time.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use cronflow_triggers::{SimulatedClock, TriggerClock};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let clock = SimulatedClock::new(Utc.with_ymd_and_hms(2026, 3, 29, 0, 0, 0).unwrap());
/// let sleeper = clock.clone();
/// let wake = tokio::spawn(async move {
///     sleeper.sleep_until(Utc.with_ymd_and_hms(2026, 3, 29, 9, 0, 0).unwrap()).await
/// });
/// clock.advance(std::time::Duration::from_secs(9 * 3600));
/// wake.await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SimulatedClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl SimulatedClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self { now: Arc::new(watch::Sender::new(start)) }
    }

    /// Sets the time (it may go backwards, as a corrected wall clock can).
    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_replace(t);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        self.now.send_modify(|t| *t = t.checked_add_signed(d).unwrap_or(*t));
    }
}

impl TriggerClock for SimulatedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, t: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|now| *now >= t).await;
        })
    }
}
