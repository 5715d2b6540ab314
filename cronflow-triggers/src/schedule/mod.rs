//! Durable schedules: cron and interval triggers that fire once per slot, across restarts and
//! across engine instances sharing a store.
//!
//! Each schedule has a **cursor** in the store: the next slot it fires. A scheduler sleeps
//! until the cursor, starts the slot's run with the trigger key `schedule:<id>:<slot>` (so the
//! store creates it once, whoever fires it and however often), and only then moves the
//! cursor to the first slot after now, with compare-and-set. A crash between the two fires
//! the slot again on restart, which the key turns into nothing; several instances racing on
//! a slot create one run and one of them moves the cursor.
//!
//! Slots found already past when the scheduler looks (the engine was down) are *missed* once
//! older than the [misfire grace](crate::Triggers::misfire_grace); the [`MisfirePolicy`]
//! says what happens to them. Slots within the grace fire normally.
//!
//! The logic deciding what to fire is pure ([`plan`]); [`TriggerClock`] lets tests run it
//! on a [`SimulatedClock`] instead of waiting for real minutes.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::CronSchedule;

mod clock;
pub(crate) mod plan;
pub(crate) mod runner;

pub use clock::{SimulatedClock, TriggerClock, WallClock};

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cadence {
    /// At the slots of a cron expression (see [`CronSchedule::next_after`] for time zones
    /// and daylight-saving changes).
    Cron(CronSchedule),
    /// Every `Duration`, at whole multiples of it since the Unix epoch (an interval of 5
    /// minutes fires at :00, :05, ...), so every instance and every restart agrees on the
    /// slots.
    Every(Duration),
}

impl Cadence {
    /// The first slot strictly after `t`, or `None` if there is none.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Cadence::Cron(cron) => cron.next_after(t),
            Cadence::Every(every) => {
                let step = i64::try_from(every.as_micros()).ok().filter(|s| *s > 0)?;
                let now = t.timestamp_micros();
                let next = now.div_euclid(step).checked_add(1)?.checked_mul(step)?;
                DateTime::from_timestamp_micros(next)
            }
        }
    }
}

/// What happens to slots that were missed (older than the misfire grace when the scheduler
/// saw them, typically because the engine was down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MisfirePolicy {
    /// Missed slots are dropped.
    Skip,
    /// One run stands for all missed slots (the default): it is the run of the first missed
    /// slot, and its trigger context says how many were missed.
    #[default]
    FireOnce,
    /// Each missed slot fires, oldest first, up to `max` of them; the rest are dropped.
    FireEach {
        /// The most missed slots fired.
        max: u32,
    },
}

/// One schedule: which workflow it starts and when. Its id names its cursor in the store, so
/// changing the cadence of a workflow makes a new schedule.
///
/// ```
/// use cronflow_triggers::{CronSchedule, Schedule};
///
/// let a = Schedule::cron("report", CronSchedule::parse_in("0 9 * * MON", "Europe/Paris")?);
/// let b = Schedule::cron("report", CronSchedule::parse_in(" 0  9 * *\tMON ", "Europe/Paris")?);
/// assert_eq!(a.id, "schedule:report:0 9 * * MON@Europe/Paris");
/// assert_eq!(a.id, b.id);
/// # Ok::<(), cronflow_triggers::CronError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The store id of the schedule's cursor: `schedule:<workflow>:<cron>@<zone>` (the
    /// expression with its whitespace normalised) or `interval:<workflow>:<milliseconds>ms`.
    pub id: String,
    /// The workflow it starts.
    pub workflow_id: String,
    /// When.
    pub cadence: Cadence,
}

impl Schedule {
    /// A cron schedule of `workflow_id`.
    pub fn cron(workflow_id: &str, cron: CronSchedule) -> Self {
        // Whitespace normalised, so reformatting an expression keeps its cursor.
        let text = cron.as_str().split_whitespace().collect::<Vec<_>>().join(" ");
        let id = format!("schedule:{workflow_id}:{text}@{}", cron.timezone().name());
        Schedule { id, workflow_id: workflow_id.to_string(), cadence: Cadence::Cron(cron) }
    }

    /// An interval schedule of `workflow_id`.
    pub fn every(workflow_id: &str, every: Duration) -> Self {
        let id = format!("interval:{workflow_id}:{}ms", every.as_millis());
        Schedule { id, workflow_id: workflow_id.to_string(), cadence: Cadence::Every(every) }
    }
}
