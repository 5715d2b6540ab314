//! Time zones and DST, leap years, impossible schedules, year boundaries and chrono's range.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;

use super::CronSchedule;
use super::parse::Fields;
use super::tests::{at, slots_of};

fn zoned(expr: &str, zone: &str) -> CronSchedule {
    CronSchedule::parse_in(expr, zone).unwrap_or_else(|e| panic!("{e}"))
}

fn slots(expr: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
    slots_of(&zoned(expr, zone), from, n)
}

// Europe/Paris 2026: 02:00 CET -> 03:00 CEST on 03-29 at 01:00 UTC; 03:00 CEST -> 02:00 CET
// on 10-25 at 01:00 UTC.

#[test]
fn paris_slot_in_the_skipped_hour_fires_at_the_transition() {
    assert_eq!(
        slots("30 2 * * *", "Europe/Paris", "2026-03-27T12:00:00Z", 3),
        ["2026-03-28 01:30:00", "2026-03-29 01:00:00", "2026-03-30 00:30:00"]
    );
    assert_eq!(
        slots("0 30 2 * * *", "Europe/Paris", "2026-03-29T00:00:00Z", 1),
        ["2026-03-29 01:00:00"]
    );
}

#[test]
fn paris_slot_in_the_repeated_hour_fires_at_its_first_occurrence() {
    assert_eq!(
        slots("30 2 * * *", "Europe/Paris", "2026-10-23T12:00:00Z", 3),
        ["2026-10-24 00:30:00", "2026-10-25 00:30:00", "2026-10-26 01:30:00"]
    );
}

#[test]
fn paris_daily_slot_fires_once_every_day_of_2026() {
    let schedule = zoned("30 2 * * *", "Europe/Paris");
    let fired: Vec<_> = schedule
        .iter_after(at("2025-12-31T23:00:00Z"))
        .take_while(|t| *t < at("2026-12-31T23:00:00Z"))
        .collect();
    let days: BTreeSet<NaiveDate> =
        fired.iter().map(|t| t.with_timezone(&chrono_tz::Europe::Paris).date_naive()).collect();
    assert_eq!((fired.len(), days.len()), (365, 365));
}

#[test]
fn paris_hourly_across_both_transitions() {
    // March: the 02:00 slot is skipped into 03:00, which fires once.
    assert_eq!(
        slots("0 * * * *", "Europe/Paris", "2026-03-28T23:30:00Z", 3),
        ["2026-03-29 00:00:00", "2026-03-29 01:00:00", "2026-03-29 02:00:00"]
    );
    // October: 02:00 fires at its first occurrence (00:00 UTC), not again at 01:00 UTC.
    assert_eq!(
        slots("0 * * * *", "Europe/Paris", "2026-10-24T22:30:00Z", 4),
        [
            "2026-10-24 23:00:00",
            "2026-10-25 00:00:00",
            "2026-10-25 02:00:00",
            "2026-10-25 03:00:00"
        ]
    );
    // 8760 wall-clock hours in 2026, one of them skipped.
    let count = zoned("0 * * * *", "Europe/Paris")
        .iter_after(at("2025-12-31T22:59:59Z"))
        .take_while(|t| *t < at("2026-12-31T23:00:00Z"))
        .count();
    assert_eq!(count, 8759);
}

#[test]
fn paris_quarter_hours_across_both_transitions() {
    assert_eq!(
        slots("*/15 * * * *", "Europe/Paris", "2026-03-29T00:30:00Z", 3),
        ["2026-03-29 00:45:00", "2026-03-29 01:00:00", "2026-03-29 01:15:00"]
    );
    assert_eq!(
        slots("*/15 * * * *", "Europe/Paris", "2026-10-24T23:50:00Z", 6),
        [
            "2026-10-25 00:00:00",
            "2026-10-25 00:15:00",
            "2026-10-25 00:30:00",
            "2026-10-25 00:45:00",
            "2026-10-25 02:00:00",
            "2026-10-25 02:15:00"
        ]
    );
    // Every second of the skipped hour collapses into one firing.
    assert_eq!(
        slots("* * 2 * * *", "Europe/Paris", "2026-03-28T12:00:00Z", 3),
        ["2026-03-29 01:00:00", "2026-03-30 00:00:00", "2026-03-30 00:00:01"]
    );
}

#[test]
fn paris_from_inside_the_second_pass_of_the_repeated_hour() {
    // 01:20 UTC is 02:20 CET, the second 02:20 of the night.
    let t = "2026-10-25T01:20:00Z";
    assert_eq!(slots("*/15 * * * *", "Europe/Paris", t, 1), ["2026-10-25 02:00:00"]);
    assert_eq!(slots("30 2 * * *", "Europe/Paris", t, 1), ["2026-10-26 01:30:00"]);
    // Even every second: each wall-clock second of the hour fired in the first pass.
    assert_eq!(slots("* * * * * *", "Europe/Paris", t, 1), ["2026-10-25 02:00:00"]);
    // 00:30 UTC is the first 02:30: 02:45 is still ahead in the first pass.
    assert_eq!(
        slots("45 2 * * *", "Europe/Paris", "2026-10-25T00:30:00Z", 1),
        ["2026-10-25 00:45:00"]
    );
    assert_eq!(
        slots("0 2 * * *", "Europe/Paris", "2026-10-25T00:30:00Z", 1),
        ["2026-10-26 01:00:00"]
    );
}

// America/New_York 2026: 02:00 EST -> 03:00 EDT on 03-08 at 07:00 UTC; 02:00 EDT -> 01:00 EST
// on 11-01 at 06:00 UTC.

#[test]
fn new_york_across_both_transitions() {
    let zone = "America/New_York";
    assert_eq!(
        slots("30 2 * * *", zone, "2026-03-07T00:00:00Z", 3),
        ["2026-03-07 07:30:00", "2026-03-08 07:00:00", "2026-03-09 06:30:00"]
    );
    assert_eq!(
        slots("30 1 * * *", zone, "2026-10-31T12:00:00Z", 2),
        ["2026-11-01 05:30:00", "2026-11-02 06:30:00"]
    );
    assert_eq!(
        slots("0 * * * *", zone, "2026-03-08T05:30:00Z", 3),
        ["2026-03-08 06:00:00", "2026-03-08 07:00:00", "2026-03-08 08:00:00"]
    );
    assert_eq!(
        slots("0 * * * *", zone, "2026-11-01T03:30:00Z", 4),
        [
            "2026-11-01 04:00:00",
            "2026-11-01 05:00:00",
            "2026-11-01 07:00:00",
            "2026-11-01 08:00:00"
        ]
    );
}

#[test]
fn half_hour_shifts_and_midnight_gaps() {
    // Lord Howe Island moves by 30 minutes: 02:00 -> 02:30 (+10:30 -> +11) on 2026-10-04.
    assert_eq!(
        slots("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T00:00:00Z", 2),
        ["2026-10-03 15:30:00", "2026-10-04 15:15:00"]
    );
    // Sao Paulo skipped midnight in 2018: 00:00 -> 01:00 (-03 -> -02) on 11-04.
    assert_eq!(
        slots("@daily", "America/Sao_Paulo", "2018-11-03T12:00:00Z", 2),
        ["2018-11-04 03:00:00", "2018-11-05 02:00:00"]
    );
}

/// An independent reference: every local minute of a window tested field by field, mapped
/// to its instant by a linear scan.
fn reference(
    fields: &Fields,
    tz: Tz,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> Vec<DateTime<Utc>> {
    let bit = |mask: u64, v: u32| mask & (1 << v) != 0;
    let matches = |l: NaiveDateTime| {
        let dom = bit(u64::from(fields.days), l.day());
        let dow = bit(u64::from(fields.weekdays), l.weekday().num_days_from_sunday());
        let day = if fields.days_star || fields.weekdays_star { dom && dow } else { dom || dow };
        day && bit(u64::from(fields.months), l.month())
            && bit(u64::from(fields.hours), l.hour())
            && bit(fields.minutes, l.minute())
            && bit(fields.seconds, l.second())
    };
    let mut out = BTreeSet::new();
    let mut l = from;
    while l < to {
        if matches(l) {
            out.insert(match tz.from_local_datetime(&l) {
                LocalResult::Single(t) => t.to_utc(),
                LocalResult::Ambiguous(a, b) => a.to_utc().min(b.to_utc()),
                LocalResult::None => {
                    let mut x = l.and_utc() - TimeDelta::hours(15);
                    while x.with_timezone(&tz).naive_local() <= l {
                        x += TimeDelta::seconds(1);
                    }
                    x
                }
            });
        }
        l += TimeDelta::minutes(1);
    }
    out.into_iter().collect()
}

/// The local midnights two days before and after each offset change of `year`.
fn windows(tz: Tz, year: i32) -> Vec<(NaiveDateTime, NaiveDateTime)> {
    let offset = |t: DateTime<Utc>| t.with_timezone(&tz).offset().fix();
    let mut t = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
    let mut out = Vec::new();
    while t.year() == year {
        let next = t + TimeDelta::hours(1);
        if offset(next) != offset(t) {
            let day = next.with_timezone(&tz).date_naive();
            let from = (day - TimeDelta::days(2)).and_hms_opt(0, 0, 0).unwrap();
            out.push((from, from + TimeDelta::days(4)));
        }
        t = next;
    }
    out
}

#[test]
fn matches_a_brute_force_reference_around_transitions() {
    let exprs = [
        "30 2 * * *",
        "0 * * * *",
        "*/15 * * * *",
        "*/7 1-3 * * *",
        "0,30 2 * * SUN",
        "59 1,2 25,29 3,10 *",
        "5 0 1-5 * 0",
    ];
    let zones = [
        ("Europe/Paris", 2026),
        ("America/New_York", 2026),
        ("Australia/Lord_Howe", 2026),
        ("America/Sao_Paulo", 2018),
    ];
    for (zone, year) in zones {
        let tz: Tz = zone.parse().unwrap();
        let windows = windows(tz, year);
        assert_eq!(windows.len(), 2, "{zone}");
        for expr in exprs {
            let schedule = zoned(expr, zone);
            for (from, to) in &windows {
                let start = tz.from_local_datetime(from).single().unwrap().to_utc();
                let end = tz.from_local_datetime(to).single().unwrap().to_utc();
                let ours: Vec<_> = schedule
                    .iter_after(start - TimeDelta::seconds(1))
                    .take_while(|t| *t < end)
                    .collect();
                let expected = reference(&schedule.fields, tz, *from, *to);
                assert_eq!(ours, expected, "{expr} in {zone} from {from}");
                // From any instant of the window, including both passes of a repeated hour.
                let mut t = start;
                while t < end {
                    let next = schedule.next_after(t);
                    match expected.iter().find(|slot| **slot > t) {
                        Some(want) => assert_eq!(next, Some(*want), "{expr} in {zone} after {t}"),
                        None => assert!(next.is_some_and(|n| n >= end), "{expr} in {zone}"),
                    }
                    t += TimeDelta::seconds(7 * 60 + 13);
                }
            }
        }
    }
}

#[test]
fn leap_days() {
    let leap = CronSchedule::parse("0 0 29 2 *").unwrap();
    assert_eq!(
        slots_of(&leap, "2026-01-01T00:00:00Z", 2),
        ["2028-02-29 00:00:00", "2032-02-29 00:00:00"]
    );
    // 2100 is not a leap year, 2000 was.
    assert_eq!(slots_of(&leap, "2096-03-01T00:00:00Z", 1), ["2104-02-29 00:00:00"]);
    assert_eq!(slots_of(&leap, "1999-01-01T00:00:00Z", 1), ["2000-02-29 00:00:00"]);
    // The last day of February, every year.
    let ends = CronSchedule::parse("0 0 28,29 2 *").unwrap();
    assert_eq!(
        slots_of(&ends, "2027-03-01T00:00:00Z", 3),
        ["2028-02-28 00:00:00", "2028-02-29 00:00:00", "2029-02-28 00:00:00"]
    );
    // Leap day on a Monday (both restricted: the 29th OR Mondays, in February).
    let or = CronSchedule::parse("0 0 29 2 MON").unwrap();
    assert_eq!(slots_of(&or, "2026-01-01T00:00:00Z", 1), ["2026-02-02 00:00:00"]);
}

#[test]
fn impossible_schedules_never_fire_and_return_at_once() {
    let started = Instant::now();
    for expr in ["0 0 30 2 *", "0 0 31 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 2 *", "0 0 30 2 */1"] {
        let schedule = CronSchedule::parse(expr).unwrap();
        for _ in 0..100 {
            assert_eq!(schedule.next_after(at("2026-01-01T00:00:00Z")), None, "{expr}");
        }
        assert_eq!(schedule.iter_after(at("2026-01-01T00:00:00Z")).count(), 0);
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    // Restricted weekdays make the OR rule apply: Mondays of February.
    let or = CronSchedule::parse("0 0 30 2 MON").unwrap();
    assert_eq!(slots_of(&or, "2026-01-01T00:00:00Z", 1), ["2026-02-02 00:00:00"]);
    // Days 1 and 31 (`*/30`) that are Mondays, in February: only the 1st can be.
    let rare = CronSchedule::parse("0 0 */30 2 MON").unwrap();
    assert_eq!(
        slots_of(&rare, "2026-01-01T00:00:00Z", 2),
        ["2027-02-01 00:00:00", "2038-02-01 00:00:00"]
    );
}

#[test]
fn year_boundaries() {
    let utc = CronSchedule::parse("0 0 1 1 *").unwrap();
    assert_eq!(slots_of(&utc, "2026-12-31T23:59:59Z", 1), ["2027-01-01 00:00:00"]);
    let last = CronSchedule::parse("59 23 31 12 *").unwrap();
    assert_eq!(slots_of(&last, "2026-12-31T23:59:00Z", 1), ["2027-12-31 23:59:00"]);
    assert_eq!(
        slots("0 0 1 1 *", "Europe/Paris", "2026-06-01T00:00:00Z", 1),
        ["2026-12-31 23:00:00"]
    );
    assert_eq!(
        slots("@yearly", "America/New_York", "2026-12-31T23:00:00Z", 1),
        ["2027-01-01 05:00:00"]
    );
    // A new year's slot seen from the other side of the date line.
    assert_eq!(
        slots("0 0 1 1 *", "Pacific/Kiritimati", "2026-12-31T09:59:59Z", 1),
        ["2026-12-31 10:00:00"]
    );
}

#[test]
fn the_ends_of_chrono_range_do_not_panic() {
    for expr in ["* * * * * *", "0 0 29 2 *", "0 0 31 12 *", "@yearly"] {
        for zone in ["UTC", "Europe/Paris", "Pacific/Kiritimati", "Etc/GMT+12"] {
            let schedule = zoned(expr, zone);
            assert_eq!(schedule.next_after(DateTime::<Utc>::MAX_UTC), None, "{expr} {zone}");
            let near_end = DateTime::<Utc>::MAX_UTC - TimeDelta::minutes(5);
            let _ = schedule.iter_after(near_end).count();
            let _ = schedule.next_after(DateTime::<Utc>::MIN_UTC);
            let near_start = DateTime::<Utc>::MIN_UTC + TimeDelta::days(1);
            assert!(schedule.next_after(near_start).is_some(), "{expr} {zone}");
        }
    }
}
