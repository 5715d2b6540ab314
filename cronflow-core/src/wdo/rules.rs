//! What the JSON walk (`structure.rs`) and [`WorkflowDef::validate`](crate::WorkflowDef::validate)
//! share: the problem collector, JSON path helpers and the semantic rules on plain values, so
//! that a rule is written once whether the definition came from JSON or from the Rust builder.

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{WdoError, WdoProblem};
use crate::wdo::SCHEMA_VERSION;

/// How deep node sequences may nest. JSON text cannot get near this (serde_json stops at 128
/// levels of brackets); the limit keeps the recursive walks safe on values built in code.
pub(super) const MAX_DEPTH: usize = 64;

/// Collects problems and the node ids seen so far (for the uniqueness rule).
#[derive(Debug, Default)]
pub(super) struct Checker {
    problems: Vec<WdoProblem>,
    /// Node id -> JSON path of its first `id` field.
    node_ids: HashMap<String, String>,
}

impl Checker {
    /// Records a problem.
    pub(super) fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(WdoProblem { path: path.into(), message: message.into() });
    }

    /// `Ok` when nothing was found, else every problem in the order found.
    pub(super) fn finish(self) -> Result<(), WdoError> {
        if self.problems.is_empty() { Ok(()) } else { Err(WdoError { problems: self.problems }) }
    }

    /// The document's schema version must be the one this crate reads.
    pub(super) fn schema(&mut self, path: &str, schema: u32) {
        if schema != SCHEMA_VERSION {
            self.report(
                path,
                format!(
                    "unsupported schema version {schema}: this version of cronflow reads schema \
                     {SCHEMA_VERSION}"
                ),
            );
        }
    }

    /// A workflow or node id: non-empty and made of `[A-Za-z0-9_.:-]`. `what` names it in the
    /// message ("workflow id", "node id").
    pub(super) fn identifier(&mut self, path: &str, value: &str, what: &str) {
        if value.is_empty() {
            self.report(path, format!("{what} must not be empty"));
        } else if let Some(bad) = value.chars().find(|c| !is_id_char(*c)) {
            self.report(
                path,
                format!(
                    "{what} `{}` may contain only letters, digits, `_`, `.`, `:` and `-` \
                     (found `{bad}`)",
                    shorten(value)
                ),
            );
        }
    }

    /// A node id: [`identifier`](Self::identifier) plus uniqueness in the whole workflow.
    pub(super) fn node_id(&mut self, path: &str, id: &str) {
        self.identifier(path, id, "node id");
        if id.is_empty() {
            return;
        }
        match self.node_ids.get(id) {
            Some(first) => {
                let message =
                    format!("duplicate node id `{}`: already used at {first}", shorten(id));
                self.report(path, message);
            }
            None => {
                self.node_ids.insert(id.to_string(), path.to_string());
            }
        }
    }

    /// A handler or event name: not empty or blank.
    pub(super) fn name(&mut self, path: &str, value: &str, what: &str) {
        if value.trim().is_empty() {
            self.report(path, format!("{what} must not be empty"));
        }
    }

    /// A count that must be at least one.
    pub(super) fn at_least_one(&mut self, path: &str, value: u32, what: &str) {
        if value == 0 {
            self.report(path, format!("{what} must be at least 1, found 0"));
        }
    }

    /// A workflow's, branch's or body's node list must not be empty.
    pub(super) fn nodes_not_empty(&mut self, path: &str, len: usize) {
        if len == 0 {
            self.report(path, "must contain at least one node");
        }
    }

    /// An `if`, `parallel` or `race` needs a branch.
    pub(super) fn branches_not_empty(&mut self, path: &str, len: usize, kind: &str) {
        if len == 0 {
            self.report(path, format!("`{kind}` needs at least one branch"));
        }
    }

    /// Reports and returns true when a sequence is nested too deep to walk.
    pub(super) fn too_deep(&mut self, path: &str, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            self.report(path, format!("nodes are nested more than {MAX_DEPTH} levels deep"));
            return true;
        }
        false
    }

    /// A `sleep` has exactly one of `duration` and `until`; `path` is the node's path.
    pub(super) fn sleep_choice(&mut self, path: &str, has_duration: bool, has_until: bool) {
        match (has_duration, has_until) {
            (false, false) => self.report(path, "`sleep` needs either `duration` or `until`"),
            (true, true) => {
                self.report(path, "`sleep` takes either `duration` or `until`, not both");
            }
            _ => {}
        }
    }

    /// A `sleep`'s `until` is an RFC 3339 date-time.
    pub(super) fn until(&mut self, path: &str, until: &str) {
        if let Err(e) = chrono::DateTime::parse_from_rfc3339(until) {
            self.report(
                path,
                format!(
                    "`{}` is not an RFC 3339 time such as \"2030-01-31T09:00:00Z\": {e}",
                    shorten(until)
                ),
            );
        }
    }

    /// A duration that must be present and greater than zero (`every`, `period`).
    pub(super) fn positive_duration(&mut self, path: &str, value: Option<Duration>, what: &str) {
        match value {
            None => self.report(path, format!("{what} is required, such as \"5m\"")),
            Some(d) if d.is_zero() => {
                self.report(path, format!("{what} must be greater than zero"))
            }
            Some(_) => {}
        }
    }

    /// A retry multiplier is a finite number greater than zero.
    pub(super) fn multiplier(&mut self, path: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.report(path, format!("multiplier must be greater than zero, found {value}"));
        }
    }

    /// A webhook route starts with `/`.
    pub(super) fn webhook_path(&mut self, path: &str, route: &str) {
        if !route.starts_with('/') {
            self.report(
                path,
                format!(
                    "webhook path `{}` must start with `/`, such as \"/hooks/orders\"",
                    shorten(route)
                ),
            );
        }
    }

    /// A cron expression is not empty (`cronflow-triggers` parses it).
    pub(super) fn cron(&mut self, path: &str, cron: &str) {
        if cron.trim().is_empty() {
            self.report(path, "cron expression must not be empty");
        }
    }
}

/// The characters allowed in workflow and node ids. `#` and `/` are excluded because task keys
/// are `node#branch` and idempotency keys `run/node`.
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// `path.key`, or `path["key"]` when the key is not a plain identifier.
pub(super) fn field(path: &str, key: &str) -> String {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{path}.{key}")
    } else {
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""));
        format!("{path}[{quoted}]")
    }
}

/// `path[i]`.
pub(super) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// "`a`, `b` or `c`".
pub(super) fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("`{s}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// A string cut to at most 60 characters for messages.
pub(super) fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}
