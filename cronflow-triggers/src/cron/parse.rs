//! crontab(5) syntax to field bitsets.

use super::error::{CronError, CronField};

/// A compiled expression: one bitset per field, bit `v` set when value `v` matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Fields {
    /// Bits 0-59.
    pub(super) seconds: u64,
    /// Bits 0-59.
    pub(super) minutes: u64,
    /// Bits 0-23.
    pub(super) hours: u32,
    /// Bits 1-31.
    pub(super) days: u32,
    /// Bits 1-12.
    pub(super) months: u16,
    /// Bits 0-6, 0 = Sunday (a 7 in the expression sets bit 0).
    pub(super) weekdays: u8,
    /// The day-of-month field starts with `*` (crontab(5): it is not "restricted").
    pub(super) days_star: bool,
    /// The day-of-week field starts with `*`.
    pub(super) weekdays_star: bool,
}

/// The values a field accepts.
struct Spec {
    field: CronField,
    min: u32,
    max: u32,
    /// Three-letter names of the values from `min`, matched in any case.
    names: &'static [&'static str],
}

const MONTHS: [&str; 12] =
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: Spec = Spec { field: CronField::Second, min: 0, max: 59, names: &[] };
const MINUTE: Spec = Spec { field: CronField::Minute, min: 0, max: 59, names: &[] };
const HOUR: Spec = Spec { field: CronField::Hour, min: 0, max: 23, names: &[] };
const DAY: Spec = Spec { field: CronField::DayOfMonth, min: 1, max: 31, names: &[] };
const MONTH: Spec = Spec { field: CronField::Month, min: 1, max: 12, names: &MONTHS };
const WEEKDAY: Spec = Spec { field: CronField::DayOfWeek, min: 0, max: 7, names: &WEEKDAYS };

/// The macros of crontab(5) (`@reboot` is not a schedule).
const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// What is wrong with one field, before the expression and field are attached.
enum Problem {
    Value(String),
    Range(String),
    Step(String),
    Name(String),
}

/// Parses a 5-field (second 0) or 6-field (leading second) expression, or a macro.
pub(super) fn parse(expr: &str) -> Result<Fields, CronError> {
    let trimmed = expr.trim();
    if trimmed.is_empty() {
        return Err(CronError::Empty);
    }
    if trimmed.starts_with('@') {
        let expansion = MACROS.iter().find(|(name, _)| name.eq_ignore_ascii_case(trimmed));
        return match expansion {
            Some((_, fields)) => parse(fields),
            None => Err(CronError::UnknownMacro { expr: expr.to_string() }),
        };
    }
    let texts: Vec<&str> = trimmed.split_whitespace().collect();
    let (second, rest) = match texts.len() {
        5 => (None, &texts[..]),
        6 => (Some(texts[0]), &texts[1..]),
        found => return Err(CronError::FieldCount { expr: expr.to_string(), found }),
    };
    let field = |spec: &Spec, text: &str| {
        parse_field(spec, text).map_err(|problem| {
            let (expr, field, text) = (expr.to_string(), spec.field, text.to_string());
            match problem {
                Problem::Value(reason) => CronError::BadValue { expr, field, text, reason },
                Problem::Range(reason) => CronError::BadRange { expr, field, text, reason },
                Problem::Step(reason) => CronError::BadStep { expr, field, text, reason },
                Problem::Name(name) => CronError::UnknownName { expr, field, text, name },
            }
        })
    };
    let seconds = match second {
        Some(text) => field(&SECOND, text)?,
        None => 1,
    };
    let minutes = field(&MINUTE, rest[0])?;
    let hours = field(&HOUR, rest[1])? as u32;
    let days = field(&DAY, rest[2])? as u32;
    let months = field(&MONTH, rest[3])? as u16;
    let weekdays = field(&WEEKDAY, rest[4])?;
    Ok(Fields {
        seconds,
        minutes,
        hours,
        days,
        months,
        // Fold 7 (Sunday) onto 0.
        weekdays: ((weekdays & 0x7f) | (weekdays >> 7)) as u8,
        days_star: rest[2].starts_with('*'),
        weekdays_star: rest[4].starts_with('*'),
    })
}

/// One field: a comma-separated list of `*`, `v`, `a-b`, each with an optional `/step`
/// (`v/step` is `v-max/step`, as in Vixie cron). Never empty when it succeeds.
fn parse_field(spec: &Spec, text: &str) -> Result<u64, Problem> {
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(Problem::Value("empty list item".to_string()));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(parse_step(spec, step)?)),
            None => (item, None),
        };
        let (start, end) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            if b.contains('-') {
                return Err(Problem::Range(format!("`{range}` is not a range")));
            }
            let (start, end) = (parse_value(spec, a)?, parse_value(spec, b)?);
            if start > end {
                return Err(Problem::Range(format!(
                    "range {a}-{b} is reversed (start {start} is after end {end})"
                )));
            }
            (start, end)
        } else {
            let value = parse_value(spec, range)?;
            (value, if step.is_some() { spec.max } else { value })
        };
        let step = step.unwrap_or(1) as usize;
        for value in (start..=end).step_by(step) {
            bits |= 1 << value;
        }
    }
    Ok(bits)
}

fn parse_step(spec: &Spec, text: &str) -> Result<u32, Problem> {
    let max = spec.max.max(1);
    match parse_number(text) {
        Some(step) if (1..=u64::from(max)).contains(&step) => Ok(step as u32),
        Some(_) => Err(Problem::Step(format!("step {text} out of range 1-{max}"))),
        None => Err(Problem::Step(format!("step `{text}` is not a number"))),
    }
}

fn parse_value(spec: &Spec, text: &str) -> Result<u32, Problem> {
    if text.is_empty() {
        return Err(Problem::Value("empty value".to_string()));
    }
    if let Some(value) = parse_number(text) {
        if value < u64::from(spec.min) || value > u64::from(spec.max) {
            return Err(Problem::Value(format!(
                "value {text} out of range {}-{}",
                spec.min, spec.max
            )));
        }
        return Ok(value as u32);
    }
    if text == "*" {
        return Err(Problem::Range("`*` cannot be a range bound".to_string()));
    }
    if !spec.names.is_empty() && text.chars().all(|c| c.is_ascii_alphabetic()) {
        return match spec.names.iter().position(|name| name.eq_ignore_ascii_case(text)) {
            Some(index) => Ok(spec.min + index as u32),
            None => Err(Problem::Name(text.to_string())),
        };
    }
    let what = if spec.names.is_empty() { "a number" } else { "a number or name" };
    Err(Problem::Value(format!("`{text}` is not {what}")))
}

/// Decimal digits only (no sign); `Some(u64::MAX)` on overflow, which is out of any range.
fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}
