//! Reading one field of a JSON value with the type the model wants, reporting a problem at
//! its path when it is missing, of the wrong type, out of range or unknown: the vocabulary
//! of the structural walk (`structure.rs`).

use std::time::Duration;

use serde_json::{Map, Value};

use super::rules::{Checker, field, list, shorten};
use crate::duration::parse_duration;

pub(super) type Object = Map<String, Value>;

/// A field that is present and not `null` (serde reads `null` as `None` for optional fields).
pub(super) fn optional<'v>(map: &'v Object, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// How a value is described in "expected X, found Y" messages.
pub(super) fn show(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string \"{}\"", shorten(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

impl Checker {
    /// The `type` of a node or trigger, when present and one of `kinds`.
    pub(super) fn kind<'v>(
        &mut self,
        path: &str,
        map: &'v Object,
        what: &str,
        kinds: &[&str],
    ) -> Option<&'v str> {
        let path = field(path, "type");
        match map.get("type") {
            None => {
                self.report(
                    path,
                    format!("missing required field `type` (one of {})", list(kinds)),
                );
                None
            }
            Some(v) => self.one_of(&path, v, what, kinds),
        }
    }

    pub(super) fn object<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
        what: &str,
    ) -> Option<&'v Object> {
        match value {
            Value::Object(map) => Some(map),
            other => {
                self.report(path, format!("expected {what}, found {}", show(other)));
                None
            }
        }
    }

    pub(super) fn array<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v [Value]> {
        match value {
            Value::Array(items) => Some(items),
            other => {
                self.report(path, format!("expected an array, found {}", show(other)));
                None
            }
        }
    }

    pub(super) fn string<'v>(&mut self, path: &str, value: &'v Value) -> Option<&'v str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                self.report(path, format!("expected a string, found {}", show(other)));
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, path: &str, value: &Value) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.report(path, format!("expected true or false, found {}", show(other)));
                None
            }
        }
    }

    pub(super) fn number(&mut self, path: &str, value: &Value) -> Option<f64> {
        match value.as_f64() {
            Some(x) => Some(x),
            None => {
                self.report(path, format!("expected a number, found {}", show(value)));
                None
            }
        }
    }

    /// An unsigned 32-bit integer.
    pub(super) fn uint(&mut self, path: &str, value: &Value) -> Option<u32> {
        let message = match value {
            Value::Number(n) => match n.as_u64() {
                Some(n) => match u32::try_from(n) {
                    Ok(n) => return Some(n),
                    Err(_) => format!("must be at most {}, found {n}", u32::MAX),
                },
                None if n.is_i64() => format!("must not be negative, found {n}"),
                None => format!("expected a whole number, found {n}"),
            },
            other => format!("expected a non-negative integer, found {}", show(other)),
        };
        self.report(path, message);
        None
    }

    /// A duration string (`"30s"`, `"1h30m"`) or a non-negative integer of milliseconds.
    pub(super) fn duration(&mut self, path: &str, value: &Value) -> Option<Duration> {
        let message = match value {
            Value::String(text) => match parse_duration(text) {
                Ok(d) => return Some(d),
                Err(e) => format!("invalid duration: {e}"),
            },
            Value::Number(n) => match n.as_u64() {
                Some(ms) => return Some(Duration::from_millis(ms)),
                None if n.is_i64() => format!("a duration must not be negative, found {n}"),
                None => format!("a duration in milliseconds must be a whole number, found {n}"),
            },
            other => format!(
                "expected a duration such as \"30s\", \"5m\" or \"250ms\" (or whole milliseconds), \
                 found {}",
                show(other)
            ),
        };
        self.report(path, message);
        None
    }

    /// A string that must be one of `allowed`.
    pub(super) fn one_of<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
        what: &str,
        allowed: &[&str],
    ) -> Option<&'v str> {
        let s = self.string(path, value)?;
        if allowed.contains(&s) {
            Some(s)
        } else {
            self.report(
                path,
                format!("unknown {what} `{}`: expected one of {}", shorten(s), list(allowed)),
            );
            None
        }
    }

    // --- fields ---

    pub(super) fn required<'v>(
        &mut self,
        path: &str,
        map: &'v Object,
        key: &str,
    ) -> Option<&'v Value> {
        let value = map.get(key);
        if value.is_none() {
            self.report(field(path, key), format!("missing required field `{key}`"));
        }
        value
    }

    pub(super) fn required_string<'v>(
        &mut self,
        path: &str,
        map: &'v Object,
        key: &str,
    ) -> Option<&'v str> {
        let value = self.required(path, map, key)?;
        self.string(&field(path, key), value)
    }

    pub(super) fn required_uint(&mut self, path: &str, map: &Object, key: &str) -> Option<u32> {
        let value = self.required(path, map, key)?;
        self.uint(&field(path, key), value)
    }

    /// A field the model reads as `Option<Duration>` without a default: it must be written, and
    /// the rules want it present and positive.
    pub(super) fn required_positive_duration(&mut self, path: &str, map: &Object, key: &str) {
        let Some(value) = self.required(path, map, key) else { return };
        let path = field(path, key);
        if value.is_null() {
            self.positive_duration(&path, None, key);
        } else if let Some(d) = self.duration(&path, value) {
            self.positive_duration(&path, Some(d), key);
        }
    }

    pub(super) fn optional_string<'v>(
        &mut self,
        path: &str,
        map: &'v Object,
        key: &str,
    ) -> Option<&'v str> {
        let value = optional(map, key)?;
        self.string(&field(path, key), value)
    }

    pub(super) fn optional_duration(
        &mut self,
        path: &str,
        map: &Object,
        key: &str,
    ) -> Option<Duration> {
        let value = optional(map, key)?;
        self.duration(&field(path, key), value)
    }

    /// Reports every field of `map` not in `allowed`.
    pub(super) fn unknown_fields(&mut self, path: &str, map: &Object, allowed: &[&str]) {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                self.report(
                    field(path, key),
                    format!("unknown field `{}`: expected one of {}", shorten(key), list(allowed)),
                );
            }
        }
    }

    /// [`unknown_fields`](Self::unknown_fields) with the fields every object of its family has
    /// (`common`: `id` and `type` for nodes, `type` for triggers) ahead of the kind's `fields`.
    pub(super) fn unknown_fields_of_kind(
        &mut self,
        path: &str,
        map: &Object,
        common: &[&str],
        fields: &[&str],
    ) {
        let allowed: Vec<&str> = common.iter().chain(fields).copied().collect();
        self.unknown_fields(path, map, &allowed);
    }
}
