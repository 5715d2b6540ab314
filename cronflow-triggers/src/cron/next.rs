//! The search for the next slot: field bitsets over local wall-clock time, then the mapping
//! of a local slot to its instant (DST gaps and repeats).

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

use super::parse::Fields;

/// Past this many years without a match the search gives up. Every (month, day, weekday)
/// combination occurs within one 400-year Gregorian cycle, and [`Fields::possible`] has
/// ruled out the combinations that never occur, so this bound is never reached by a
/// schedule that fires at all.
const MAX_YEARS: i32 = 401;

/// Bits 1, 8, 15, 22, 29: the days of a month that share the weekday of the 1st.
const SAME_WEEKDAY: u64 = (1 << 1) | (1 << 8) | (1 << 15) | (1 << 22) | (1 << 29);

/// The first set bit of `mask` at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let bit = (mask & (u64::MAX << from)).trailing_zeros();
    (bit < 64).then_some(bit)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Bits 1..=`days`.
fn valid_days(days: u32) -> u32 {
    ((1u64 << (days + 1)) - 2) as u32
}

impl Fields {
    /// Whether some day ever matches. With both day fields restricted (the OR rule) every
    /// week has a matching day; otherwise a selected day of month must exist in a selected
    /// month (February counting 29), and then it meets every weekday within 400 years.
    pub(super) fn possible(&self) -> bool {
        if !self.days_star && !self.weekdays_star {
            return true;
        }
        (1..=12).any(|month| {
            self.months & (1 << month) != 0 && self.days & valid_days(days_in_month(0, month)) != 0
        })
    }

    /// The matching days (bits 1-31) of the month starting on `first`.
    fn day_mask(&self, first: NaiveDate) -> u32 {
        let weekday_of_first = first.weekday().num_days_from_sunday();
        let mut by_weekday = 0u64;
        for k in 0..7 {
            if self.weekdays & (1 << ((weekday_of_first + k) % 7)) != 0 {
                by_weekday |= SAME_WEEKDAY << k;
            }
        }
        let by_weekday = by_weekday as u32;
        // crontab(5): if either day field starts with `*`, a day must match both (which for
        // a plain `*` means the other alone); if both are restricted, either one.
        let days = if self.days_star || self.weekdays_star {
            self.days & by_weekday
        } else {
            self.days | by_weekday
        };
        days & valid_days(days_in_month(first.year(), first.month()))
    }

    /// The first local wall-clock time at or after `from` (whole seconds) that matches, or
    /// `None` if there is none within [`MAX_YEARS`] or before chrono's last date.
    pub(super) fn first_slot_from(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let (mut year, mut month, mut day) = (from.year(), from.month(), from.day());
        let (mut hour, mut minute, mut second) = (from.hour(), from.minute(), from.second());
        let last_year = year.checked_add(MAX_YEARS)?;
        // Each `continue` moves to the start of the next month, day, hour or minute; a value
        // past its field's end (month 13, hour 24...) finds no bit and carries on up.
        loop {
            if year > last_year {
                return None;
            }
            let Some(m) = next_bit(u64::from(self.months), month) else {
                (year, month, day, hour, minute, second) = (year + 1, 1, 1, 0, 0, 0);
                continue;
            };
            if m != month {
                (month, day, hour, minute, second) = (m, 1, 0, 0, 0);
            }
            let first = NaiveDate::from_ymd_opt(year, month, 1)?;
            let Some(d) = next_bit(u64::from(self.day_mask(first)), day) else {
                (month, day, hour, minute, second) = (month + 1, 1, 0, 0, 0);
                continue;
            };
            if d != day {
                (day, hour, minute, second) = (d, 0, 0, 0);
            }
            let Some(h) = next_bit(u64::from(self.hours), hour) else {
                (day, hour, minute, second) = (day + 1, 0, 0, 0);
                continue;
            };
            if h != hour {
                (hour, minute, second) = (h, 0, 0);
            }
            let Some(min) = next_bit(self.minutes, minute) else {
                (hour, minute, second) = (hour + 1, 0, 0);
                continue;
            };
            if min != minute {
                (minute, second) = (min, 0);
            }
            let Some(s) = next_bit(self.seconds, second) else {
                (minute, second) = (minute + 1, 0);
                continue;
            };
            return NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, minute, s);
        }
    }
}

/// The first slot strictly after `t`; the semantics are documented on
/// [`CronSchedule::next_after`](super::CronSchedule::next_after).
pub(super) fn next_after(fields: &Fields, tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !fields.possible() {
        return None;
    }
    // A slot whose instant is after `t` has a local time after `t`'s local time: the mapping
    // from local slots to instants never decreases, and `t`'s own local time maps to `t` or
    // to an earlier first occurrence.
    let offset_at_t = offset_at(tz, t.timestamp())?;
    let mut after = t.naive_utc().checked_add_signed(TimeDelta::seconds(offset_at_t))?;
    // A second round happens only when `t` is in the second pass of a repeated hour and the
    // slot found is in that hour: its first occurrence is past, and so are those of every
    // slot of the hour, so the search goes on from the end of the repeated hour.
    for _ in 0..16 {
        let from = after.with_nanosecond(0)?.checked_add_signed(TimeDelta::seconds(1))?;
        let slot = fields.first_slot_from(from)?;
        let at = instant_of(tz, slot)?;
        if at > t {
            return Some(at);
        }
        let first_offset = (slot - at.naive_utc()).num_seconds();
        let repeat = first_offset - offset_at_t;
        after = match transition(tz, t.timestamp() - repeat, t.timestamp()) {
            // The repeated hour ends at the transition read in the first offset.
            Some(back) if repeat > 0 => {
                DateTime::from_timestamp(back + first_offset - 1, 0)?.naive_utc().max(slot)
            }
            _ => slot,
        };
    }
    None
}

/// The instant of local wall-clock time `local`: itself when it exists once, its first
/// occurrence when it is repeated, and the end of the gap (the transition instant) when it
/// is skipped.
pub(super) fn instant_of(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    if tz == Tz::UTC {
        return Some(local.and_utc());
    }
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => Some(at.to_utc()),
        LocalResult::Ambiguous(a, b) => Some(a.to_utc().min(b.to_utc())),
        LocalResult::None => gap_end(tz, local),
    }
}

/// The UTC offset of `tz` at Unix time `secs`, in seconds.
fn offset_at(tz: Tz, secs: i64) -> Option<i64> {
    let at = DateTime::from_timestamp(secs, 0)?;
    Some(i64::from(tz.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc()))
}

/// The instant in `(lo, hi]` (Unix seconds) at which the offset becomes the offset at `hi`,
/// if the offset at `lo` differs and, as this bisection assumes, changes once between.
fn transition(tz: Tz, mut lo: i64, mut hi: i64) -> Option<i64> {
    let target = offset_at(tz, hi)?;
    if lo >= hi || offset_at(tz, lo)? == target {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(tz, mid)? == target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// The transition instant of the gap that skips `local`: it lies between the readings of
/// `local` in the offsets a day after and a day before.
fn gap_end(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let target = local.and_utc().timestamp();
    let before = offset_at(tz, target.checked_sub(86_400)?)?;
    let after = offset_at(tz, target.checked_add(86_400)?)?;
    match transition(tz, target - after, target - before) {
        // Check the bisection's assumption: `local` is skipped at that instant.
        Some(at) if at - 1 + before < target && at + after > target => {
            DateTime::from_timestamp(at, 0)
        }
        _ => walk_past_gap(tz, local),
    }
}
/// For zones whose offsets around a gap are unusual: the first valid local minute after
/// `local`, within two days.
fn walk_past_gap(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let mut probe = local;
    for _ in 0..2 * 24 * 60 {
        probe = probe.checked_add_signed(TimeDelta::minutes(1))?;
        match tz.from_local_datetime(&probe) {
            LocalResult::Single(at) => return Some(at.to_utc()),
            LocalResult::Ambiguous(a, b) => return Some(a.to_utc().min(b.to_utc())),
            LocalResult::None => {}
        }
    }
    None
}
