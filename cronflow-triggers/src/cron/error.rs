//! [`CronError`] and [`CronField`]: why an expression or a time zone was refused.

use std::fmt;

/// A field of a cron expression, as named in a [`CronError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CronField {
    /// The optional leading seconds field of the 6-field form, 0-59.
    Second,
    /// Minute, 0-59.
    Minute,
    /// Hour, 0-23.
    Hour,
    /// Day of month, 1-31.
    DayOfMonth,
    /// Month, 1-12 or `JAN`-`DEC`.
    Month,
    /// Day of week, 0-7 (0 and 7 are Sunday) or `SUN`-`SAT`.
    DayOfWeek,
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CronField::Second => "second",
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        })
    }
}

/// Why a cron expression or its time zone was refused.
///
/// Every message quotes the expression and, when one field is at fault, names it and quotes
/// its text, e.g. ``invalid cron expression `61 * * * *`: minute field `61`: value 61 out of
/// range 0-59``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CronError {
    /// The expression is empty or only white space.
    #[error("invalid cron expression: it is empty")]
    Empty,
    /// Neither 5 fields nor 6.
    #[error(
        "invalid cron expression `{expr}`: expected 5 fields (minute hour day-of-month month \
         day-of-week) or 6 with a leading second, found {found}"
    )]
    FieldCount {
        /// The expression.
        expr: String,
        /// How many fields it has.
        found: usize,
    },
    /// A value that is not a number (or name), is out of the field's range, or is empty.
    #[error("invalid cron expression `{expr}`: {field} field `{text}`: {reason}")]
    BadValue {
        /// The expression.
        expr: String,
        /// The field at fault.
        field: CronField,
        /// The field's text.
        text: String,
        /// What is wrong, e.g. `value 61 out of range 0-59`.
        reason: String,
    },
    /// A malformed range (`a-b`), e.g. a reversed one.
    #[error("invalid cron expression `{expr}`: {field} field `{text}`: {reason}")]
    BadRange {
        /// The expression.
        expr: String,
        /// The field at fault.
        field: CronField,
        /// The field's text.
        text: String,
        /// What is wrong, e.g. `range 30-10 is reversed`.
        reason: String,
    },
    /// A malformed step (`/n`): not a number, 0, or larger than the field allows.
    #[error("invalid cron expression `{expr}`: {field} field `{text}`: {reason}")]
    BadStep {
        /// The expression.
        expr: String,
        /// The field at fault.
        field: CronField,
        /// The field's text.
        text: String,
        /// What is wrong, e.g. `step 0 out of range 1-59`.
        reason: String,
    },
    /// A word that is not a month (`JAN`-`DEC`) or day (`SUN`-`SAT`) name of its field.
    #[error(
        "invalid cron expression `{expr}`: {field} field `{text}`: unknown name `{name}` \
         (expected {})",
        expected_names(*.field)
    )]
    UnknownName {
        /// The expression.
        expr: String,
        /// The field at fault.
        field: CronField,
        /// The field's text.
        text: String,
        /// The unknown word.
        name: String,
    },
    /// An `@` macro other than the ones of crontab(5).
    #[error(
        "invalid cron expression `{expr}`: unknown macro (expected @yearly, @annually, \
         @monthly, @weekly, @daily, @midnight or @hourly)"
    )]
    UnknownMacro {
        /// The expression.
        expr: String,
    },
    /// The time zone is not an IANA time zone name.
    #[error(
        "invalid cron time zone `{timezone}`: not an IANA time zone name (such as \
         `Europe/Paris` or `UTC`)"
    )]
    UnknownTimezone {
        /// The time zone as given.
        timezone: String,
    },
}

impl CronError {
    /// The field at fault, if the error is about one field.
    pub fn field(&self) -> Option<CronField> {
        match self {
            CronError::BadValue { field, .. }
            | CronError::BadRange { field, .. }
            | CronError::BadStep { field, .. }
            | CronError::UnknownName { field, .. } => Some(*field),
            _ => None,
        }
    }
}

fn expected_names(field: CronField) -> &'static str {
    match field {
        CronField::Month => "JAN-DEC",
        CronField::DayOfWeek => "SUN-SAT",
        _ => "a number",
    }
}
