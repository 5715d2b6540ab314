//! Cross-checks against `saffron` (the decision is in the module docs), and inputs that must
//! never panic.

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

use super::CronSchedule;
use super::tests::at;

const WEEKDAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// The first `n` slots after `from` by saffron, in UTC.
fn saffron_slots(expr: &str, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let cron: saffron::Cron = expr.parse().unwrap_or_else(|_| panic!("saffron refuses {expr}"));
    std::iter::successors(cron.next_after(from), |t| cron.next_after(*t)).take(n).collect()
}

fn our_slots(expr: &str, from: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    CronSchedule::parse(expr).unwrap().iter_after(from).take(n).collect()
}

fn saffron_accepts(expr: &str) -> bool {
    expr.parse::<saffron::Cron>().is_ok()
}

// 2026-01-01 is a Thursday.
const NEW_YEAR: &str = "2026-01-01T00:00:00Z";

#[test]
fn weekday_numbers_differ_from_saffron() {
    let from = at(NEW_YEAR);
    // `1` is Monday in crontab(5), Sunday (Quartz's 1-7 from Sunday) for saffron.
    assert_eq!(our_slots("0 0 * * 1", from, 1), [at("2026-01-05T00:00:00Z")]);
    assert_eq!(saffron_slots("0 0 * * 1", from, 1), [at("2026-01-04T00:00:00Z")]);
    // `7` is Sunday in crontab(5), Saturday for saffron.
    assert_eq!(our_slots("0 0 * * 7", from, 1), [at("2026-01-04T00:00:00Z")]);
    assert_eq!(saffron_slots("0 0 * * 7", from, 1), [at("2026-01-03T00:00:00Z")]);
    // `0` is Sunday in crontab(5); saffron refuses it.
    assert_eq!(our_slots("0 0 * * 0", from, 1), [at("2026-01-04T00:00:00Z")]);
    assert!(!saffron_accepts("0 0 * * 0"));
    // Names mean the same to both.
    assert_eq!(our_slots("0 9 * * MON-FRI", from, 5), saffron_slots("0 9 * * MON-FRI", from, 5));
}

#[test]
fn a_star_step_day_field_differs_from_saffron() {
    let from = at(NEW_YEAR);
    // crontab(5): `*/2` starts with `*`, so odd dates AND Mondays.
    assert_eq!(
        our_slots("0 0 */2 * MON", from, 3),
        [at("2026-01-05T00:00:00Z"), at("2026-01-19T00:00:00Z"), at("2026-02-09T00:00:00Z")]
    );
    // saffron: odd dates OR Mondays.
    assert_eq!(
        saffron_slots("0 0 */2 * MON", from, 3),
        [at("2026-01-03T00:00:00Z"), at("2026-01-05T00:00:00Z"), at("2026-01-07T00:00:00Z")]
    );
    // With both fields plainly restricted, both use OR.
    assert_eq!(our_slots("0 0 1,15 * MON", from, 6), saffron_slots("0 0 1,15 * MON", from, 6));
}

#[test]
fn syntax_only_one_side_accepts() {
    // Seconds: ours only.
    assert!(CronSchedule::parse("0 0 0 * * *").is_ok());
    assert!(!saffron_accepts("0 0 0 * * *"));
    // Quartz extensions and wrapping ranges: saffron only.
    for expr in ["0 0 L * *", "0 0 15W * *", "0 0 * * 2#1", "0 0 * * 6L", "50-10 * * * *"] {
        assert!(saffron_accepts(expr), "{expr}");
        assert!(CronSchedule::parse(expr).is_err(), "{expr}");
    }
    // Same meaning: `5/10` is 5-59/10; month names; macros are ours only.
    let from = at(NEW_YEAR);
    assert_eq!(our_slots("5/10 * * * *", from, 8), saffron_slots("5/10 * * * *", from, 8));
    assert_eq!(our_slots("0 0 1 jan,JUL *", from, 3), saffron_slots("0 0 1 jan,JUL *", from, 3));
    assert!(!saffron_accepts("@daily"));
}

#[test]
fn saffron_errors_name_nothing() {
    let saffron = "61 * * * *".parse::<saffron::Cron>().unwrap_err().to_string();
    assert_eq!(saffron, "Failed to parse cron expression");
    let ours = CronSchedule::parse("61 * * * *").unwrap_err().to_string();
    assert!(ours.contains("minute field `61`"), "{ours}");
}

/// `*`, or a list of values of `min..=max`.
fn field(min: u32, max: u32) -> impl Strategy<Value = Option<Vec<u32>>> {
    prop_oneof![
        1 => Just(None),
        3 => prop::collection::btree_set(min..=max, 1..5).prop_map(|s| Some(s.into_iter().collect())),
    ]
}

fn list(values: &Option<Vec<u32>>, name: impl Fn(u32) -> String) -> String {
    match values {
        None => "*".to_string(),
        Some(values) => values.iter().map(|v| name(*v)).collect::<Vec<_>>().join(","),
    }
}

/// A 5-field expression in the syntax crontab(5) and saffron read alike: ours with weekday
/// numbers 0-7, saffron's with the same weekdays by name.
fn same_meaning() -> impl Strategy<Value = (String, String)> {
    (field(0, 59), field(0, 23), field(1, 31), field(1, 12), field(0, 7)).prop_map(
        |(minute, hour, day, month, weekday)| {
            let number = |v: u32| v.to_string();
            let head = format!(
                "{} {} {} {}",
                list(&minute, number),
                list(&hour, number),
                list(&day, number),
                list(&month, number)
            );
            let ours = format!("{head} {}", list(&weekday, number));
            let named = list(&weekday, |v| WEEKDAY_NAMES[(v % 7) as usize].to_string());
            (ours, format!("{head} {named}"))
        },
    )
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let (min, max) = (DateTime::<Utc>::MIN_UTC.timestamp(), DateTime::<Utc>::MAX_UTC.timestamp());
    (min..=max).prop_map(|secs| DateTime::from_timestamp(secs, 0).unwrap_or_default())
}

proptest! {
    #[test]
    fn utc_schedules_agree_with_saffron(
        (ours, theirs) in same_meaning(),
        secs in 0i64..4_102_444_800,
    ) {
        let from = DateTime::from_timestamp(secs, 0).unwrap();
        prop_assert_eq!(our_slots(&ours, from, 4), saffron_slots(&theirs, from, 4), "{} / {}", ours, theirs);
    }

    #[test]
    fn zoned_slots_increase_and_none_is_skipped(
        (expr, _) in same_meaning(),
        zone in prop::sample::select(vec!["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]),
        secs in 0i64..4_102_444_800,
    ) {
        let schedule = CronSchedule::parse_in(&expr, zone).unwrap();
        let mut last = DateTime::from_timestamp(secs, 0).unwrap();
        for slot in schedule.iter_after(last).take(3) {
            prop_assert!(slot > last);
            // Nothing fires between `last` and `slot`.
            prop_assert_eq!(schedule.next_after(slot - TimeDelta::nanoseconds(1)), Some(slot));
            last = slot;
        }
    }

    #[test]
    fn any_text_never_panics(text in "\\PC{0,60}", zone in "\\PC{0,20}", t in instant()) {
        for schedule in [CronSchedule::parse(&text), CronSchedule::parse_in(&text, &zone)].into_iter().flatten() {
            let _ = schedule.next_after(t);
        }
    }

    #[test]
    fn cron_like_text_never_panics(
        text in "[0-9*/,\\-@?#LW a-zA-Z]{0,40}",
        zone in prop::sample::select(vec!["UTC", "Europe/Paris", "Pacific/Kiritimati", "Etc/GMT+12"]),
        t in instant(),
    ) {
        if let Ok(schedule) = CronSchedule::parse_in(&text, zone) {
            let _ = schedule.iter_after(t).take(3).count();
        }
    }
}
