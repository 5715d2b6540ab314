//! Cron schedules: crontab(5) expressions evaluated in the wall-clock time of an IANA zone.
//!
//! Pure: no I/O, no clock, no async. [`CronSchedule::next_after`] is all a scheduler needs.
//!
//! The syntax and the DST rules are documented on [`CronSchedule`] (this module is private).
//!
//! # Decision: saffron
//!
//! The design names `saffron` (0.1, the Quartz-like parser of Cloudflare's Cron Triggers)
//! for cron. It is not used at run time, only as a test oracle (a dev-dependency), because
//! it cannot express what this module must do:
//! - It evaluates in UTC only (`DateTime<Utc>`), with no time zone or DST handling.
//! - Its day-of-week numbers are Quartz's, 1-7 with Sunday = 1: `0 0 * * 1` is a **Sunday**
//!   for saffron and a Monday in crontab(5); `0 0 * * 0` is refused; `7` is Saturday.
//! - It treats `*/2` in a day field as restricted, so `0 0 */2 * MON` is "odd dates OR
//!   Mondays" for saffron, "odd dates AND Mondays" in crontab(5).
//! - It has no seconds field and accepts Quartz extensions crontab(5) has not (`L`, `W`,
//!   `#`) and reversed ranges (`50-10` wraps around), which are refused here.
//! - Its errors are one opaque "Failed to parse cron expression", where this module names
//!   the field and the problem.
//!
//! So the parser and the search are our own (field bitsets; the search skips whole months,
//! days and hours, never minute by minute), and the tests check them against saffron: for
//! random 5-field UTC schedules written in the syntax both read alike (lists of numbers,
//! weekdays by name, `*`), both give the same next slots; and each difference above is
//! shown by a test (`cron/tests_saffron.rs`).

mod error;
mod next;
mod parse;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_saffron;
#[cfg(test)]
mod tests_time;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

pub use error::{CronError, CronField};

/// A parsed cron expression with its time zone.
///
/// [`next_after`](Self::next_after) gives the next slot after an instant; the rest is
/// parsing and inspection. Pure: no I/O, no clock.
///
/// # Syntax
///
/// Standard 5-field Unix cron as in crontab(5): minute (0-59), hour (0-23), day of month
/// (1-31), month (1-12 or `JAN`-`DEC`), day of week (0-7, 0 and 7 = Sunday, 1 = Monday, or
/// `SUN`-`SAT`); names in any case, also as range bounds (`MON-FRI`). Each field is a list of
/// `*`, `v`, `a-b`, each with an optional step (`*/15`, `1-30/5`, `5/10` = `5-59/10` as in
/// Vixie cron). A 6-field form adds a leading seconds field (0-59); the 5-field form fires at
/// second 0. Macros: `@yearly` = `@annually`, `@monthly`, `@weekly`, `@daily` =
/// `@midnight`, `@hourly`. Refused: reversed ranges (`FRI-MON`, `50-10`), step 0 or larger
/// than the field, Quartz extensions (`?`, `L`, `W`, `#`, a year field), `@reboot`.
///
/// **Day rule** (crontab(5)): if the day-of-month or the day-of-week field starts with `*`, a
/// day must match both (so with a plain `*` only the other one counts); if both are
/// restricted, a day matches when *either* does (`0 0 1,15 * MON` is the 1st, the 15th and
/// every Monday). As in Vixie cron and cronie, `*/2` counts as starting with `*`:
/// `0 0 */2 * MON` is the Mondays with an odd date.
///
/// # Time zones and DST
///
/// A slot is a local wall-clock time in the schedule's zone (UTC unless given by
/// [`parse_in`](Self::parse_in)). A slot that exists once fires then. A slot in a skipped hour
/// (spring forward) fires once at the transition instant, the first instant after the gap:
/// in Europe/Paris on 2026-03-29, `30 2 * * *` fires at 03:00 CEST (01:00 UTC), and the
/// skipped slots 02:00, 02:15... of `*/15 * * * *` all collapse into that one firing at
/// 03:00. A slot in a repeated hour (fall back) fires once, at its first occurrence: on
/// 2026-10-25 `30 2 * * *` fires at 02:30 CEST (00:30 UTC) only, and `0 * * * *` fires at
/// 00:00 UTC (02:00 CEST) but not at 01:00 UTC (02:00 CET again): that 25-hour day has 24
/// hourly firings, one per wall-clock hour, and the 23-hour day of March has 23. Even
/// `* * * * *` is silent during the second pass of the repeated hour (its minutes fired in
/// the first). A schedule fires at most once per local wall-clock slot, and never twice at
/// one instant.
///
/// # Example
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use cronflow_triggers::CronSchedule;
///
/// let weekdays = CronSchedule::parse_in("0 9 * * MON-FRI", "Europe/Paris")?;
/// // Friday 2026-07-03 10:00 UTC is 12:00 in Paris: the next slot is Monday 09:00 CEST.
/// let next = weekdays.next_after(Utc.with_ymd_and_hms(2026, 7, 3, 10, 0, 0).unwrap());
/// assert_eq!(next, Some(Utc.with_ymd_and_hms(2026, 7, 6, 7, 0, 0).unwrap()));
/// # Ok::<(), cronflow_triggers::CronError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CronSchedule {
    source: String,
    timezone: Tz,
    fields: parse::Fields,
}

impl CronSchedule {
    /// Parses a crontab(5) expression (see [`CronSchedule`]) evaluated in UTC.
    ///
    /// ```
    /// use cronflow_triggers::CronSchedule;
    ///
    /// assert!(CronSchedule::parse("*/15 9-17 * * MON-FRI").is_ok());
    /// let err = CronSchedule::parse("61 * * * *").unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid cron expression `61 * * * *`: minute field `61`: value 61 out of range 0-59"
    /// );
    /// ```
    pub fn parse(expr: &str) -> Result<CronSchedule, CronError> {
        Self::with_zone(expr, Tz::UTC)
    }

    /// Parses a crontab(5) expression evaluated in the wall-clock time of `timezone`, an IANA
    /// name such as `Europe/Paris` (case-sensitive) or `UTC`.
    ///
    /// ```
    /// use cronflow_triggers::{CronError, CronSchedule};
    ///
    /// let daily = CronSchedule::parse_in("@daily", "America/New_York")?;
    /// assert_eq!(daily.timezone().name(), "America/New_York");
    /// assert!(matches!(
    ///     CronSchedule::parse_in("@daily", "Mars/Olympus"),
    ///     Err(CronError::UnknownTimezone { .. })
    /// ));
    /// # Ok::<(), CronError>(())
    /// ```
    pub fn parse_in(expr: &str, timezone: &str) -> Result<CronSchedule, CronError> {
        let tz = timezone
            .parse::<Tz>()
            .map_err(|_| CronError::UnknownTimezone { timezone: timezone.to_string() })?;
        Self::with_zone(expr, tz)
    }

    fn with_zone(expr: &str, timezone: Tz) -> Result<CronSchedule, CronError> {
        let fields = parse::parse(expr)?;
        Ok(CronSchedule { source: expr.to_string(), timezone, fields })
    }

    /// The expression as it was given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The time zone the schedule is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first slot strictly after `t`, or `None` if the schedule never fires again
    /// (`0 0 30 2 *`: February has no 30th) or the next slot is past chrono's last date.
    ///
    /// Slots are local wall-clock times of the schedule's zone; across DST changes:
    /// - a slot in a **skipped** hour (spring forward) fires once, at the transition instant
    ///   (02:30 on a day that jumps from 02:00 to 03:00 fires at 03:00 local); several
    ///   skipped slots of one gap, and a slot at 03:00 itself, make one firing;
    /// - a slot in a **repeated** hour (fall back) fires once, at its first occurrence: the
    ///   second pass of that hour has no slot (`0 * * * *` does not fire at the second
    ///   02:00).
    ///
    /// The search skips whole months, days and hours, and gives up after 400 years (every
    /// schedule that can fire at all fires within them).
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use cronflow_triggers::CronSchedule;
    ///
    /// let schedule = CronSchedule::parse_in("30 2 * * *", "Europe/Paris")?;
    /// // 2026-03-29 has no 02:30 in Paris: the slot fires at 03:00 CEST, 01:00 UTC.
    /// let t = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
    /// assert_eq!(schedule.next_after(t), Some(Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap()));
    /// assert_eq!(CronSchedule::parse("0 0 30 2 *")?.next_after(t), None);
    /// # Ok::<(), cronflow_triggers::CronError>(())
    /// ```
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        next::next_after(&self.fields, self.timezone, t)
    }

    /// The slots strictly after `t`, in order (each is [`next_after`](Self::next_after) of
    /// the one before).
    ///
    /// ```
    /// use chrono::{TimeZone, Utc};
    /// use cronflow_triggers::CronSchedule;
    ///
    /// let schedule = CronSchedule::parse("0 0 29 2 *")?;
    /// let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    /// let years: Vec<_> = schedule.iter_after(t).take(3).map(|s| s.format("%Y").to_string()).collect();
    /// assert_eq!(years, ["2028", "2032", "2036"]);
    /// # Ok::<(), cronflow_triggers::CronError>(())
    /// ```
    pub fn iter_after(&self, t: DateTime<Utc>) -> CronIter<'_> {
        CronIter { schedule: self, after: Some(t) }
    }
}

impl FromStr for CronSchedule {
    type Err = CronError;

    /// [`CronSchedule::parse`]: in UTC.
    fn from_str(expr: &str) -> Result<Self, Self::Err> {
        CronSchedule::parse(expr)
    }
}

/// Writes the expression as given (without the zone, so it parses back with
/// [`CronSchedule::parse_in`] and [`timezone`](CronSchedule::timezone)).
impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The slots of a [`CronSchedule`] after an instant: see [`CronSchedule::iter_after`].
#[derive(Debug, Clone)]
pub struct CronIter<'a> {
    schedule: &'a CronSchedule,
    after: Option<DateTime<Utc>>,
}

impl Iterator for CronIter<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        let next = self.schedule.next_after(self.after?);
        self.after = next;
        next
    }
}

impl std::iter::FusedIterator for CronIter<'_> {}
