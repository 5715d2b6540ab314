//! Syntax, day rule, macros, seconds and errors, in UTC.

use chrono::{DateTime, Utc};

use super::{CronError, CronField, CronSchedule};

/// An instant from RFC 3339 text.
pub(super) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap_or_else(|e| panic!("bad test instant {text}: {e}"))
}

/// The first `n` slots of `schedule` after `from`, as `YYYY-MM-DD HH:MM:SS` UTC.
pub(super) fn slots_of(schedule: &CronSchedule, from: &str, n: usize) -> Vec<String> {
    let format = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
    schedule.iter_after(at(from)).take(n).map(format).collect()
}

/// The first `n` slots of UTC expression `expr` after `from`.
fn slots(expr: &str, from: &str, n: usize) -> Vec<String> {
    let schedule = CronSchedule::parse(expr).unwrap_or_else(|e| panic!("{e}"));
    slots_of(&schedule, from, n)
}

fn error(expr: &str) -> CronError {
    CronSchedule::parse(expr).expect_err(expr)
}

// 2026-01-01 is a Thursday.
const NEW_YEAR: &str = "2026-01-01T00:00:00Z";

#[test]
fn next_after_is_strictly_after() {
    assert_eq!(
        slots("* * * * *", "2026-01-01T10:00:30Z", 2),
        ["2026-01-01 10:01:00", "2026-01-01 10:02:00"]
    );
    assert_eq!(slots("* * * * *", "2026-01-01T10:00:00Z", 1), ["2026-01-01 10:01:00"]);
    assert_eq!(slots("0 * * * *", "2026-01-01T09:59:59.999Z", 1), ["2026-01-01 10:00:00"]);
    assert_eq!(slots("0 * * * *", "2026-01-01T10:00:00.001Z", 1), ["2026-01-01 11:00:00"]);
}

#[test]
fn lists_ranges_and_steps() {
    let from = "2026-01-01T00:00:00Z";
    assert_eq!(
        slots("0,15,45 * * * *", from, 3),
        ["2026-01-01 00:15:00", "2026-01-01 00:45:00", "2026-01-01 01:00:00"]
    );
    assert_eq!(slots("10-12 * * * *", from, 4)[3], "2026-01-01 01:10:00");
    assert_eq!(slots("*/15 * * * *", from, 4)[3], "2026-01-01 01:00:00");
    assert_eq!(
        slots("1-30/10 * * * *", from, 4),
        [
            "2026-01-01 00:01:00",
            "2026-01-01 00:11:00",
            "2026-01-01 00:21:00",
            "2026-01-01 01:01:00"
        ]
    );
    // `5/20` is `5-59/20`, as in Vixie cron.
    assert_eq!(
        slots("5/20 * * * *", from, 4),
        [
            "2026-01-01 00:05:00",
            "2026-01-01 00:25:00",
            "2026-01-01 00:45:00",
            "2026-01-01 01:05:00"
        ]
    );
    assert_eq!(slots("0 */6 * * *", from, 4)[3], "2026-01-02 00:00:00");
    assert_eq!(
        slots("0 0 10-20/5,31 * *", from, 4),
        [
            "2026-01-10 00:00:00",
            "2026-01-15 00:00:00",
            "2026-01-20 00:00:00",
            "2026-01-31 00:00:00"
        ]
    );
    assert_eq!(
        slots("0 0 1 */4 *", from, 3),
        ["2026-05-01 00:00:00", "2026-09-01 00:00:00", "2027-01-01 00:00:00"]
    );
    // Overlapping items and a step larger than the range.
    assert_eq!(
        slots("0-10,5-15/50 0 1 1 *", from, 2),
        ["2026-01-01 00:01:00", "2026-01-01 00:02:00"]
    );
    assert_eq!(slots("30/59 0 * * *", from, 1), ["2026-01-01 00:30:00"]);
}

#[test]
fn month_names_in_any_case_and_in_ranges() {
    assert_eq!(
        slots("0 0 1 jan,Jul *", NEW_YEAR, 2),
        ["2026-07-01 00:00:00", "2027-01-01 00:00:00"]
    );
    assert_eq!(
        slots("0 0 1 MAR-may *", NEW_YEAR, 3),
        ["2026-03-01 00:00:00", "2026-04-01 00:00:00", "2026-05-01 00:00:00"]
    );
    assert_eq!(slots("0 0 1 nov/1 *", NEW_YEAR, 2), ["2026-11-01 00:00:00", "2026-12-01 00:00:00"]);
}

#[test]
fn weekday_numbers_zero_and_seven_are_sunday_one_is_monday() {
    assert_eq!(slots("0 0 * * 1", NEW_YEAR, 1), ["2026-01-05 00:00:00"]);
    assert_eq!(slots("0 0 * * 0", NEW_YEAR, 1), ["2026-01-04 00:00:00"]);
    assert_eq!(slots("0 0 * * 7", NEW_YEAR, 1), ["2026-01-04 00:00:00"]);
    assert_eq!(slots("0 0 * * 6", NEW_YEAR, 1), ["2026-01-03 00:00:00"]);
    // 5-7 is Friday to Sunday; 0-7 is every day.
    assert_eq!(
        slots("0 0 * * 5-7", NEW_YEAR, 4),
        [
            "2026-01-02 00:00:00",
            "2026-01-03 00:00:00",
            "2026-01-04 00:00:00",
            "2026-01-09 00:00:00"
        ]
    );
    assert_eq!(slots("0 0 * * 0-7", NEW_YEAR, 1), ["2026-01-02 00:00:00"]);
    // */2 over 0-7 is Sunday, Tuesday, Thursday, Saturday.
    assert_eq!(
        slots("0 0 * * */2", NEW_YEAR, 4),
        [
            "2026-01-03 00:00:00",
            "2026-01-04 00:00:00",
            "2026-01-06 00:00:00",
            "2026-01-08 00:00:00"
        ]
    );
}

#[test]
fn weekday_names_in_any_case_and_in_ranges() {
    // Friday 2026-01-02 12:00: the next weekdays skip the weekend.
    assert_eq!(
        slots("0 9 * * MON-FRI", "2026-01-02T12:00:00Z", 2),
        ["2026-01-05 09:00:00", "2026-01-06 09:00:00"]
    );
    assert_eq!(
        slots("0 9 * * sun,Wed", NEW_YEAR, 2),
        ["2026-01-04 09:00:00", "2026-01-07 09:00:00"]
    );
    assert_eq!(
        slots("0 9 * * fri-sat", NEW_YEAR, 2),
        ["2026-01-02 09:00:00", "2026-01-03 09:00:00"]
    );
    assert_eq!(
        CronSchedule::parse("0 9 * * MON-FRI").unwrap().fields,
        CronSchedule::parse("0 9 * * 1-5").unwrap().fields
    );
}

#[test]
fn both_day_fields_restricted_match_either() {
    // The 13ths and every Friday (2026-01-02, 09, 13, 16...).
    assert_eq!(
        slots("0 0 13 * FRI", NEW_YEAR, 4),
        [
            "2026-01-02 00:00:00",
            "2026-01-09 00:00:00",
            "2026-01-13 00:00:00",
            "2026-01-16 00:00:00"
        ]
    );
    assert_eq!(
        slots("0 0 1,15 * MON", NEW_YEAR, 4),
        [
            "2026-01-05 00:00:00",
            "2026-01-12 00:00:00",
            "2026-01-15 00:00:00",
            "2026-01-19 00:00:00"
        ]
    );
}

#[test]
fn a_star_day_field_leaves_the_other_alone() {
    assert_eq!(slots("0 0 13 * *", NEW_YEAR, 2), ["2026-01-13 00:00:00", "2026-02-13 00:00:00"]);
    assert_eq!(slots("0 0 * * FRI", NEW_YEAR, 2), ["2026-01-02 00:00:00", "2026-01-09 00:00:00"]);
    // A field starting with `*` is unrestricted (crontab(5)): both must match, so these are
    // the Mondays with an odd date, and the 13ths that are a Friday.
    assert_eq!(
        slots("0 0 */2 * MON", NEW_YEAR, 3),
        ["2026-01-05 00:00:00", "2026-01-19 00:00:00", "2026-02-09 00:00:00"]
    );
    assert_eq!(slots("0 0 13 * */1", NEW_YEAR, 1), ["2026-01-13 00:00:00"]);
    assert_eq!(slots("0 0 13 * *,FRI", NEW_YEAR, 1), ["2026-01-13 00:00:00"]);
}

#[test]
fn macros_are_their_expansions() {
    let pairs = [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("  @DAILY\t", "0 0 * * *"),
    ];
    for (name, expansion) in pairs {
        let schedule = CronSchedule::parse(name).unwrap();
        assert_eq!(schedule.fields, CronSchedule::parse(expansion).unwrap().fields, "{name}");
        assert_eq!(schedule.as_str(), name);
    }
    assert_eq!(slots("@weekly", NEW_YEAR, 1), ["2026-01-04 00:00:00"]);
    assert_eq!(slots("@yearly", NEW_YEAR, 1), ["2027-01-01 00:00:00"]);
}

#[test]
fn six_fields_lead_with_seconds() {
    assert_eq!(
        slots("*/20 * * * * *", NEW_YEAR, 3),
        ["2026-01-01 00:00:20", "2026-01-01 00:00:40", "2026-01-01 00:01:00"]
    );
    assert_eq!(slots("30 0 12 * * *", NEW_YEAR, 2), ["2026-01-01 12:00:30", "2026-01-02 12:00:30"]);
    assert_eq!(
        slots("* * * * * *", "2026-01-01T00:00:00.5Z", 2),
        ["2026-01-01 00:00:01", "2026-01-01 00:00:02"]
    );
    assert_eq!(slots("59 59 23 31 12 *", NEW_YEAR, 1), ["2026-12-31 23:59:59"]);
    // Five fields fire at second 0.
    assert_eq!(slots("* * * * *", "2026-01-01T00:00:01Z", 1), ["2026-01-01 00:01:00"]);
}

#[test]
fn white_space_between_fields_is_free() {
    let schedule = CronSchedule::parse(" \t0  9\t* *   1-5 \n").unwrap();
    assert_eq!(schedule.fields, CronSchedule::parse("0 9 * * 1-5").unwrap().fields);
}

#[test]
fn keeps_text_and_zone() {
    let schedule: CronSchedule = "*/5 * * * *".parse().unwrap();
    assert_eq!(schedule.as_str(), "*/5 * * * *");
    assert_eq!(schedule.to_string(), "*/5 * * * *");
    assert_eq!(schedule.timezone(), chrono_tz::Tz::UTC);
    let paris = CronSchedule::parse_in("0 9 * * MON", "Europe/Paris").unwrap();
    assert_eq!(paris.timezone(), chrono_tz::Europe::Paris);
    assert_eq!(paris.to_string(), "0 9 * * MON");
    assert_ne!(paris, CronSchedule::parse("0 9 * * MON").unwrap());
}

#[test]
fn errors_name_the_field_and_the_problem() {
    let cases: &[(&str, &str)] = &[
        (
            "61 * * * *",
            "invalid cron expression `61 * * * *`: minute field `61`: value 61 out of range 0-59",
        ),
        ("1,61 * * * *", "minute field `1,61`: value 61 out of range 0-59"),
        ("* 24 * * *", "hour field `24`: value 24 out of range 0-23"),
        ("* * 0 * *", "day-of-month field `0`: value 0 out of range 1-31"),
        ("* * 32 * *", "day-of-month field `32`: value 32 out of range 1-31"),
        ("* * * 13 *", "month field `13`: value 13 out of range 1-12"),
        ("* * * * 8", "day-of-week field `8`: value 8 out of range 0-7"),
        ("60 * * * * *", "second field `60`: value 60 out of range 0-59"),
        (
            "99999999999999999999999 * * * *",
            "minute field `99999999999999999999999`: value 99999999999999999999999 out of range 0-59",
        ),
        ("MON * * * *", "minute field `MON`: `MON` is not a number"),
        ("* * * * 1.5", "day-of-week field `1.5`: `1.5` is not a number or name"),
        ("* * * * ?", "day-of-week field `?`: `?` is not a number or name"),
        ("* * L * *", "day-of-month field `L`: `L` is not a number"),
        ("* * * * 5#3", "day-of-week field `5#3`: `5#3` is not a number or name"),
        ("* * 15W * *", "day-of-month field `15W`: `15W` is not a number"),
        ("1,,2 * * * *", "minute field `1,,2`: empty list item"),
        ("-5 * * * *", "minute field `-5`: empty value"),
        ("* * * FOO *", "month field `FOO`: unknown name `FOO` (expected JAN-DEC)"),
        (
            "* * * * MON-FREE",
            "day-of-week field `MON-FREE`: unknown name `FREE` (expected SUN-SAT)",
        ),
        ("* * * January *", "month field `January`: unknown name `January` (expected JAN-DEC)"),
        (
            "30-10 * * * *",
            "minute field `30-10`: range 30-10 is reversed (start 30 is after end 10)",
        ),
        (
            "* * * * FRI-MON",
            "day-of-week field `FRI-MON`: range FRI-MON is reversed (start 5 is after end 1)",
        ),
        ("*-5 * * * *", "minute field `*-5`: `*` cannot be a range bound"),
        ("1-2-3 * * * *", "minute field `1-2-3`: `1-2-3` is not a range"),
        ("*/0 * * * *", "minute field `*/0`: step 0 out of range 1-59"),
        ("*/60 * * * *", "minute field `*/60`: step 60 out of range 1-59"),
        ("0 0 * * */8", "day-of-week field `*/8`: step 8 out of range 1-7"),
        ("*/x * * * *", "minute field `*/x`: step `x` is not a number"),
        ("1/ * * * *", "minute field `1/`: step `` is not a number"),
        ("1/2/3 * * * *", "minute field `1/2/3`: step `2/3` is not a number"),
        (
            "* * * *",
            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading second, found 4",
        ),
        ("0 0 0 1 1 * 2026", "found 7"),
        ("@reboot", "invalid cron expression `@reboot`: unknown macro"),
        ("@every 5m", "unknown macro"),
        ("", "invalid cron expression: it is empty"),
        (" \t ", "invalid cron expression: it is empty"),
    ];
    for (expr, expected) in cases {
        let message = error(expr).to_string();
        assert!(message.contains(expected), "{expr:?}: {message}");
    }
}

#[test]
fn error_variants_and_fields() {
    assert!(matches!(error(""), CronError::Empty));
    assert!(matches!(error("* *"), CronError::FieldCount { found: 2, .. }));
    assert!(matches!(error("61 * * * *"), CronError::BadValue { field: CronField::Minute, .. }));
    assert!(matches!(error("* 5-1 * * *"), CronError::BadRange { field: CronField::Hour, .. }));
    assert!(matches!(
        error("* * */0 * *"),
        CronError::BadStep { field: CronField::DayOfMonth, .. }
    ));
    assert!(matches!(error("* * * XYZ *"), CronError::UnknownName { field: CronField::Month, .. }));
    assert!(matches!(error("@often"), CronError::UnknownMacro { .. }));
    assert_eq!(error("* * * * SUNDAY").field(), Some(CronField::DayOfWeek));
    assert_eq!(error("x * * * * *").field(), Some(CronField::Second));
    assert_eq!(error("@often").field(), None);
}

#[test]
fn unknown_time_zones_are_named() {
    for zone in ["Europe/Pariss", "europe/paris", "", "CEST+2"] {
        let err = CronSchedule::parse_in("* * * * *", zone).unwrap_err();
        assert_eq!(err, CronError::UnknownTimezone { timezone: zone.to_string() });
        assert!(err.to_string().contains(&format!("`{zone}`")), "{err}");
    }
    // The zone is checked first.
    assert!(matches!(
        CronSchedule::parse_in("61 * * * *", "Nowhere/Land"),
        Err(CronError::UnknownTimezone { .. })
    ));
    assert!(CronSchedule::parse_in("* * * * *", "Etc/UTC").is_ok());
}
