//! Reading and validating workflow definitions.
//!
//! [`WorkflowDef::from_json`] and [`WorkflowDef::from_value`] walk the JSON by hand first
//! (`structure.rs`), so that every problem is reported with its JSON path instead of serde's
//! first error; only a document that is clean is deserialized, then checked again by
//! [`WorkflowDef::validate`], which holds the semantic rules for definitions built in Rust too.

use serde_json::Value;

use super::rules::{Checker, field, index};
use crate::error::WdoError;
use crate::retry::RetryPolicy;
use crate::wdo::{Node, TriggerDef, WorkflowDef, WorkflowOptions};

/// Webhook fields that the settings map must not repeat (they would be written twice).
const WEBHOOK_RESERVED: [&str; 3] = ["type", "path", "method"];

impl WorkflowDef {
    /// Reads a WDO from JSON text, reporting every problem with its JSON path.
    ///
    /// A syntax error is one problem at `$` naming its line and column; otherwise every
    /// structural and semantic problem of the document is reported, in document order.
    ///
    /// ```
    /// use cronflow_core::WorkflowDef;
    /// let err = WorkflowDef::from_json(r#"{"id": "w", "nodes": [{"id": "a", "type": "step"}]}"#)
    ///     .unwrap_err();
    /// assert_eq!(err.problems[0].path, "$.nodes[0].handler");
    /// ```
    pub fn from_json(text: &str) -> Result<WorkflowDef, WdoError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| WdoError::single("$", format!("invalid JSON: {e}")))?;
        Self::from_value(value)
    }

    /// Reads a WDO from a parsed JSON value, reporting every problem with its JSON path.
    pub fn from_value(value: Value) -> Result<WorkflowDef, WdoError> {
        let mut checker = Checker::default();
        checker.workflow_value(&value);
        checker.finish()?;
        // The walk accepts what the model accepts; should serde still disagree, say so.
        let def: WorkflowDef =
            serde_json::from_value(value).map_err(|e| WdoError::single("$", e.to_string()))?;
        def.validate()?;
        Ok(def)
    }

    /// Checks the semantic rules: id syntax, node ids unique in the whole workflow, non-empty
    /// node lists and branches, non-empty handler names, counts of at least one, `sleep` with
    /// exactly one of `duration` and an RFC 3339 `until`, trigger settings, limits.
    ///
    /// [`Workflow::build`](crate::Workflow::build) and [`WorkflowDef::from_json`] call it; call
    /// it yourself on a definition assembled or changed by hand.
    pub fn validate(&self) -> Result<(), WdoError> {
        let mut checker = Checker::default();
        checker.schema("$.schema", self.schema);
        checker.identifier("$.id", &self.id, "workflow id");
        for (i, trigger) in self.triggers.iter().enumerate() {
            checker.trigger_def(&index("$.triggers", i), trigger);
        }
        checker.options_def("$.options", &self.options);
        checker.sequence_def("$.nodes", &self.nodes, 0);
        checker.finish()
    }
}

impl Checker {
    fn trigger_def(&mut self, path: &str, trigger: &TriggerDef) {
        match trigger {
            TriggerDef::Manual => {}
            TriggerDef::Schedule { cron, .. } => self.cron(&field(path, "cron"), cron),
            TriggerDef::Interval { every } => {
                self.positive_duration(&field(path, "every"), *every, "every");
            }
            TriggerDef::Webhook { path: route, settings, .. } => {
                self.webhook_path(&field(path, "path"), route);
                for key in WEBHOOK_RESERVED {
                    if settings.contains_key(key) {
                        self.report(
                            field(path, key),
                            format!("webhook settings must not contain `{key}`"),
                        );
                    }
                }
            }
            TriggerDef::Event { name } => self.name(&field(path, "name"), name, "event name"),
            TriggerDef::Poll { handler, every, .. } => {
                self.name(&field(path, "handler"), handler, "handler");
                self.positive_duration(&field(path, "every"), *every, "every");
            }
        }
    }

    fn options_def(&mut self, path: &str, options: &WorkflowOptions) {
        if let Some(retry) = &options.retry {
            self.retry_def(&field(path, "retry"), retry);
        }
        if let Some(concurrency) = &options.concurrency {
            let path = field(path, "concurrency");
            self.at_least_one(&field(&path, "limit"), concurrency.limit, "limit");
        }
        if let Some(rate) = &options.rate_limit {
            let path = field(path, "rate_limit");
            self.at_least_one(&field(&path, "limit"), rate.limit, "limit");
            self.positive_duration(&field(&path, "period"), rate.period, "period");
        }
    }

    fn retry_def(&mut self, path: &str, retry: &RetryPolicy) {
        self.at_least_one(&field(path, "max_attempts"), retry.max_attempts, "max_attempts");
        if let Some(multiplier) = retry.multiplier {
            self.multiplier(&field(path, "multiplier"), multiplier);
        }
    }

    fn sequence_def(&mut self, path: &str, nodes: &[Node], depth: usize) {
        if self.too_deep(path, depth) {
            return;
        }
        self.nodes_not_empty(path, nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            self.node_def(&index(path, i), node, depth);
        }
    }

    /// Checks one node's own fields, then its child sequences in document order (the same
    /// order as the JSON walk).
    fn node_def(&mut self, path: &str, node: &Node, depth: usize) {
        self.node_id(&field(path, "id"), node.id());
        match node {
            Node::Step(task) | Node::Action(task) => {
                self.name(&field(path, "handler"), &task.handler, "handler");
                if let Some(retry) = &task.retry {
                    self.retry_def(&field(path, "retry"), retry);
                }
            }
            Node::If(n) => {
                let branches = field(path, "branches");
                self.branches_not_empty(&branches, n.branches.len(), node.kind());
                for (i, branch) in n.branches.iter().enumerate() {
                    let condition = field(&index(&branches, i), "condition");
                    self.name(&condition, &branch.condition, "condition handler");
                }
            }
            Node::Parallel(n) | Node::Race(n) => {
                self.branches_not_empty(&field(path, "branches"), n.branches.len(), node.kind());
            }
            Node::ForEach(n) => {
                self.name(&field(path, "items"), &n.items, "items handler");
                if let Some(concurrency) = n.concurrency {
                    self.at_least_one(&field(path, "concurrency"), concurrency, "concurrency");
                }
            }
            Node::Batch(n) => {
                self.name(&field(path, "items"), &n.items, "items handler");
                self.at_least_one(&field(path, "size"), n.size, "size");
            }
            Node::While(n) => {
                self.name(&field(path, "condition"), &n.condition, "condition handler");
                let max = field(path, "max_iterations");
                self.at_least_one(&max, n.max_iterations, "max_iterations");
            }
            Node::Sleep(n) => {
                if let Some(until) = &n.until {
                    self.until(&field(path, "until"), until);
                }
                self.sleep_choice(path, n.duration.is_some(), n.until.is_some());
            }
            Node::Pause(n) => {
                if let Some(handler) = &n.on_pause {
                    self.name(&field(path, "on_pause"), handler, "on_pause handler");
                }
            }
            Node::WaitForEvent(n) => self.name(&field(path, "event"), &n.event, "event name"),
            Node::Subflow(n) => {
                self.identifier(&field(path, "workflow"), &n.workflow, "workflow id");
                if let Some(handler) = &n.payload {
                    self.name(&field(path, "payload"), handler, "payload handler");
                }
            }
            Node::Cancel(_) => {}
        }
        for (suffix, nodes) in node.children() {
            self.sequence_def(&format!("{path}{suffix}"), nodes, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::retry::Backoff;
    use crate::wdo::{
        BranchesNode, ConcurrencyDef, IfNode, OnTimeout, RateLimitDef, SleepNode, TaskNode,
    };

    /// The problems as `(path, message)` pairs.
    fn problems(err: &WdoError) -> Vec<(&str, &str)> {
        err.problems.iter().map(|p| (p.path.as_str(), p.message.as_str())).collect()
    }

    fn paths(err: &WdoError) -> Vec<&str> {
        err.problems.iter().map(|p| p.path.as_str()).collect()
    }

    fn err_of(value: serde_json::Value) -> WdoError {
        WorkflowDef::from_value(value).expect_err("the document should be rejected")
    }

    fn full_document() -> serde_json::Value {
        json!({
            "schema": 1,
            "id": "everything",
            "version": "2.1",
            "name": "Every kind",
            "description": "One node of each kind and one trigger of each type.",
            "triggers": [
                {"type": "manual"},
                {"type": "schedule", "cron": "0 9 * * 1-5", "timezone": "Europe/Paris"},
                {"type": "interval", "every": "15m"},
                {"type": "webhook", "path": "/hooks/orders", "method": "PUT"},
                {"type": "event", "name": "order.created"},
                {"type": "poll", "handler": "list-new-files", "every": 30000, "key": "/name"}
            ],
            "options": {
                "timeout": "1h30m",
                "step_timeout": "30s",
                "retry": {"max_attempts": 3, "backoff": "linear", "delay": "250ms",
                          "max_delay": "10s", "multiplier": 1.5, "jitter": true,
                          "retry_on": ["NetworkError"]},
                "concurrency": {"limit": 4, "key": "/customer"},
                "rate_limit": {"limit": 10, "period": "1m", "key": "/customer"}
            },
            "nodes": [
                {"id": "fetch", "type": "step", "handler": "fetch-order", "timeout": 5000,
                 "retry": {"max_attempts": 2}},
                {"id": "notify", "type": "action", "handler": "send-email", "timeout": null},
                {"id": "route", "type": "if",
                 "branches": [{"condition": "is-big", "nodes": [
                     {"id": "review", "type": "step", "handler": "review"}]}],
                 "else": [{"id": "approve", "type": "step", "handler": "approve"}]},
                {"id": "fan-out", "type": "parallel", "branches": [
                    {"nodes": [{"id": "email", "type": "step", "handler": "email"}]},
                    {"nodes": [{"id": "sms", "type": "step", "handler": "sms"}]}]},
                {"id": "fastest", "type": "race", "branches": [
                    {"nodes": [{"id": "quote-a", "type": "step", "handler": "quote-a"}]}]},
                {"id": "each-line", "type": "for_each", "items": "lines", "concurrency": 2,
                 "nodes": [{"id": "pick", "type": "step", "handler": "pick"}]},
                {"id": "chunks", "type": "batch", "items": "lines", "size": 50,
                 "nodes": [{"id": "upload", "type": "step", "handler": "upload"}]},
                {"id": "poll-status", "type": "while", "condition": "not-done",
                 "max_iterations": 10,
                 "nodes": [{"id": "nap", "type": "sleep", "duration": "1s"}]},
                {"id": "until-nine", "type": "sleep", "until": "2030-01-31T09:00:00+01:00"},
                {"id": "approval", "type": "pause", "timeout": "2d", "on_timeout": "continue",
                 "on_pause": "ask-manager"},
                {"id": "paid", "type": "wait_for_event", "event": "payment.settled",
                 "match": {"order": 42}, "timeout": "1h", "on_timeout": "fail"},
                {"id": "ship", "type": "subflow", "workflow": "shipping", "payload": "ship-input"},
                {"id": "stop", "type": "cancel", "reason": "done early"}
            ]
        })
    }

    #[test]
    fn a_full_document_with_every_kind_and_trigger_parses() {
        let text = serde_json::to_string_pretty(&full_document()).unwrap();
        let def = WorkflowDef::from_json(&text).unwrap();
        assert_eq!(def.id, "everything");
        let kinds: Vec<&str> = def.nodes.iter().map(Node::kind).collect();
        assert_eq!(
            kinds,
            [
                "step",
                "action",
                "if",
                "parallel",
                "race",
                "for_each",
                "batch",
                "while",
                "sleep",
                "pause",
                "wait_for_event",
                "subflow",
                "cancel"
            ]
        );
        assert_eq!(def.triggers.len(), 6);
        match &def.triggers[3] {
            TriggerDef::Webhook { path, method, settings } => {
                assert_eq!(path, "/hooks/orders");
                assert_eq!(method.as_deref(), Some("PUT"));
                assert!(settings.is_empty());
            }
            other => panic!("expected a webhook, got {other:?}"),
        }
        assert_eq!(def.options.timeout, Some(Duration::from_secs(5400)));
        let retry = def.options.retry.as_ref().unwrap();
        assert_eq!(retry.backoff, Backoff::Linear);
        assert_eq!(retry.multiplier, Some(1.5));
        assert_eq!(def.options.rate_limit.as_ref().unwrap().period, Some(Duration::from_secs(60)));
        match &def.nodes[0] {
            Node::Step(task) => assert_eq!(task.timeout, Some(Duration::from_millis(5000))),
            other => panic!("expected a step, got {other:?}"),
        }
        match &def.nodes[9] {
            Node::Pause(pause) => assert_eq!(pause.on_timeout, OnTimeout::Continue),
            other => panic!("expected a pause, got {other:?}"),
        }
        // What was read writes back to the same definition.
        let again = WorkflowDef::from_json(&serde_json::to_string(&def).unwrap()).unwrap();
        assert_eq!(again, def);
    }

    #[test]
    fn several_problems_are_all_reported_with_exact_paths() {
        let text = r#"{
            "id": "order-fulfilment",
            "options": {"timeout": "soon"},
            "nodes": [
                {"id": "charge", "type": "step", "handler": "charge"},
                {"id": "fan-out", "type": "parallel", "branches": [
                    {"nodes": [{"id": "charge", "type": "step", "handler": "charge-again"}]},
                    {"nodes": []}
                ]},
                {"id": "spin", "type": "loop", "handler": "x"},
                {"id": "wait", "type": "sleep", "duration": "5 minutes"},
                {"id": "retrying", "type": "step", "handler": "h",
                 "retry": {"max_attempts": "three"}},
                {"id": "route", "type": "if", "branches": [
                    {"condition": "small", "nodes": [{"id": "ok", "type": "step", "handler": "ok"}]},
                    {"condition": "big", "nodes": [{"id": "review", "type": "step"}]}
                ]},
                {"id": "paint", "type": "step", "handler": "paint", "colour": "red"}
            ]
        }"#;
        let err = WorkflowDef::from_json(text).unwrap_err();
        assert_eq!(
            paths(&err),
            [
                "$.options.timeout",
                "$.nodes[1].branches[0].nodes[0].id",
                "$.nodes[1].branches[1].nodes",
                "$.nodes[2].type",
                "$.nodes[3].duration",
                "$.nodes[4].retry.max_attempts",
                "$.nodes[5].branches[1].nodes[0].handler",
                "$.nodes[6].colour",
            ],
            "{err}"
        );
        let p = problems(&err);
        assert!(p[0].1.contains("`soon`"), "{}", p[0].1);
        assert!(p[1].1.contains("duplicate node id `charge`"), "{}", p[1].1);
        assert!(p[1].1.contains("$.nodes[0].id"), "{}", p[1].1);
        assert_eq!(p[2].1, "must contain at least one node");
        assert!(p[3].1.contains("`loop`"), "{}", p[3].1);
        for kind in NODE_KINDS_IN_MESSAGE {
            assert!(p[3].1.contains(&format!("`{kind}`")), "{kind} missing from {}", p[3].1);
        }
        assert!(p[4].1.contains("invalid duration") && p[4].1.contains("5 minutes"), "{}", p[4].1);
        assert!(p[5].1.contains("\"three\"") && p[5].1.contains("integer"), "{}", p[5].1);
        assert_eq!(p[6].1, "missing required field `handler`");
        assert!(p[7].1.contains("unknown field `colour`"), "{}", p[7].1);
        assert!(p[7].1.contains("`handler`"), "{}", p[7].1);
        // The Display lists them all.
        let shown = err.to_string();
        assert!(shown.starts_with("invalid workflow definition (8 problems)"), "{shown}");
        assert!(shown.contains("$.nodes[6].colour: unknown field"), "{shown}");
    }

    const NODE_KINDS_IN_MESSAGE: [&str; 13] = [
        "step",
        "action",
        "if",
        "parallel",
        "race",
        "for_each",
        "batch",
        "while",
        "sleep",
        "pause",
        "wait_for_event",
        "subflow",
        "cancel",
    ];

    #[test]
    fn a_syntax_error_is_one_problem_at_the_root_with_line_and_column() {
        let err = WorkflowDef::from_json("{\n  \"id\": \"w\",\n  \"nodes\": [}\n").unwrap_err();
        assert_eq!(paths(&err), ["$"]);
        let message = &err.problems[0].message;
        assert!(message.starts_with("invalid JSON"), "{message}");
        assert!(message.contains("line 3 column"), "{message}");
        let err = WorkflowDef::from_json("").unwrap_err();
        assert_eq!(paths(&err), ["$"]);
    }

    #[test]
    fn schema_two_is_rejected() {
        let err = err_of(json!({"schema": 2, "id": "w", "nodes": [
            {"id": "a", "type": "step", "handler": "a"}]}));
        assert_eq!(paths(&err), ["$.schema"]);
        assert!(err.problems[0].message.contains("schema version 2"));
        let err = err_of(json!({"schema": "1", "id": "w", "nodes": [
            {"id": "a", "type": "step", "handler": "a"}]}));
        assert_eq!(paths(&err), ["$.schema"]);
        let ok = WorkflowDef::from_value(json!({"schema": 1, "id": "w", "nodes": [
            {"id": "a", "type": "step", "handler": "a"}]}));
        assert!(ok.is_ok());
    }

    #[test]
    fn the_top_level_must_be_an_object_with_id_and_nodes() {
        let err = err_of(json!([1, 2]));
        assert_eq!(paths(&err), ["$"]);
        assert!(err.problems[0].message.contains("found an array"));
        let err = err_of(json!({}));
        assert_eq!(
            problems(&err),
            [
                ("$.id", "missing required field `id`"),
                ("$.nodes", "missing required field `nodes`")
            ]
        );
        let err = err_of(json!({"id": "w", "nodes": [], "triggers": null, "options": 5,
                                "name": 3, "extra": true, "odd key": 1}));
        assert_eq!(
            paths(&err),
            ["$.name", "$.triggers", "$.options", "$.nodes", "$.extra", "$[\"odd key\"]"],
            "{err}"
        );
    }

    #[test]
    fn field_types_and_values_are_checked() {
        let err = err_of(json!({"id": "w", "nodes": [
            {"id": "a", "type": "step", "handler": 7, "timeout": -5},
            {"id": "b", "type": "step", "handler": "b", "timeout": 1.5,
             "retry": {"max_attempts": 0, "backoff": "random", "delay": true,
                       "multiplier": 0, "jitter": "yes", "retry_on": ["A", 3], "extra": 1}},
            {"id": "c", "type": "batch", "items": "", "size": 4294967296u64,
             "nodes": [{"id": "d", "type": "cancel"}]},
            {"id": "e", "type": "for_each", "items": "xs", "concurrency": 0, "nodes": {}},
            {"id": "f", "type": "while", "condition": "c", "max_iterations": -1, "nodes": [
                {"id": "g", "type": "pause", "on_timeout": "explode", "on_pause": " "}]},
            {"id": "h", "type": "wait_for_event", "event": "x", "match": [1]},
            {"id": "i", "type": "subflow", "workflow": "has space"},
            {"id": "j", "type": "sleep"},
            {"id": "k", "type": "sleep", "duration": "1s", "until": "tomorrow"},
            "not a node",
            {"type": "step", "handler": "x"},
            {"id": "l"},
            {"id": "m", "type": "if", "branches": [], "else": []},
            {"id": "n", "type": "race", "branches": [{"condition": "x", "nodes": [
                {"id": "o", "type": "step", "handler": "o"}]}]}
        ]}));
        assert_eq!(
            problems(&err),
            [
                ("$.nodes[0].handler", "expected a string, found the number 7"),
                ("$.nodes[0].timeout", "a duration must not be negative, found -5"),
                (
                    "$.nodes[1].timeout",
                    "a duration in milliseconds must be a whole number, found 1.5"
                ),
                ("$.nodes[1].retry.max_attempts", "max_attempts must be at least 1, found 0"),
                (
                    "$.nodes[1].retry.backoff",
                    "unknown backoff `random`: expected one of `fixed`, `linear` or `exponential`"
                ),
                (
                    "$.nodes[1].retry.delay",
                    "expected a duration such as \"30s\", \"5m\" or \"250ms\" (or whole \
                     milliseconds), found the boolean true"
                ),
                ("$.nodes[1].retry.multiplier", "multiplier must be greater than zero, found 0"),
                ("$.nodes[1].retry.jitter", "expected true or false, found the string \"yes\""),
                ("$.nodes[1].retry.retry_on[1]", "expected a string, found the number 3"),
                (
                    "$.nodes[1].retry.extra",
                    "unknown field `extra`: expected one of `max_attempts`, `backoff`, `delay`, \
                     `max_delay`, `multiplier`, `jitter` or `retry_on`"
                ),
                ("$.nodes[2].items", "items handler must not be empty"),
                ("$.nodes[2].size", "must be at most 4294967295, found 4294967296"),
                ("$.nodes[3].concurrency", "concurrency must be at least 1, found 0"),
                // A node's own fields come first, then its child sequences.
                ("$.nodes[3].nodes", "expected an array, found an object"),
                ("$.nodes[4].max_iterations", "must not be negative, found -1"),
                (
                    "$.nodes[4].nodes[0].on_timeout",
                    "unknown on_timeout `explode`: expected one of `fail` or `continue`"
                ),
                ("$.nodes[4].nodes[0].on_pause", "on_pause handler must not be empty"),
                ("$.nodes[5].match", "expected an object of fields to match, found an array"),
                (
                    "$.nodes[6].workflow",
                    "workflow id `has space` may contain only letters, digits, `_`, `.`, `:` \
                     and `-` (found ` `)"
                ),
                ("$.nodes[7]", "`sleep` needs either `duration` or `until`"),
                (
                    "$.nodes[8].until",
                    "`tomorrow` is not an RFC 3339 time such as \"2030-01-31T09:00:00Z\": \
                     premature end of input"
                ),
                ("$.nodes[8]", "`sleep` takes either `duration` or `until`, not both"),
                ("$.nodes[9]", "expected a node object, found the string \"not a node\""),
                ("$.nodes[10].id", "missing required field `id`"),
                (
                    "$.nodes[11].type",
                    "missing required field `type` (one of `step`, `action`, `if`, `parallel`, \
                     `race`, `for_each`, `batch`, `while`, `sleep`, `pause`, `wait_for_event`, \
                     `subflow` or `cancel`)"
                ),
                ("$.nodes[12].branches", "`if` needs at least one branch"),
                ("$.nodes[12].else", "must contain at least one node"),
                (
                    "$.nodes[13].branches[0].condition",
                    "unknown field `condition`: expected one of `nodes`"
                ),
            ],
            "{err}"
        );
    }

    #[test]
    fn triggers_and_options_are_checked() {
        let err = err_of(json!({
            "id": "w",
            "triggers": [
                {"type": "cron", "cron": "* * * * *"},
                {"cron": "x"},
                {"type": "schedule", "cron": " ", "every": "1m"},
                {"type": "interval"},
                {"type": "interval", "every": null},
                {"type": "interval", "every": "0s"},
                {"type": "webhook", "path": "hooks", "method": 1, "anything": {"goes": true}},
                {"type": "event", "name": ""},
                {"type": "poll", "handler": "h", "every": "5x"},
                "manual"
            ],
            "options": {
                "concurrency": {"limit": 0, "key": 1},
                "rate_limit": {"limit": 5},
                "retry": null,
                "timeout": null,
                "budget": 3
            },
            "nodes": [{"id": "a", "type": "step", "handler": "a"}]
        }));
        assert_eq!(
            problems(&err),
            [
                (
                    "$.triggers[0].type",
                    "unknown trigger type `cron`: expected one of `manual`, `schedule`, \
                     `interval`, `webhook`, `event` or `poll`"
                ),
                (
                    "$.triggers[1].type",
                    "missing required field `type` (one of `manual`, `schedule`, `interval`, \
                     `webhook`, `event` or `poll`)"
                ),
                ("$.triggers[2].cron", "cron expression must not be empty"),
                (
                    "$.triggers[2].every",
                    "unknown field `every`: expected one of `type`, `cron` or `timezone`"
                ),
                ("$.triggers[3].every", "missing required field `every`"),
                ("$.triggers[4].every", "every is required, such as \"5m\""),
                ("$.triggers[5].every", "every must be greater than zero"),
                (
                    "$.triggers[6].path",
                    "webhook path `hooks` must start with `/`, such as \"/hooks/orders\""
                ),
                ("$.triggers[6].method", "expected a string, found the number 1"),
                ("$.triggers[7].name", "event name must not be empty"),
                (
                    "$.triggers[8].every",
                    "invalid duration: `5x` has unknown unit `x` (use ms, s, m, h or d)"
                ),
                ("$.triggers[9]", "expected a trigger object, found the string \"manual\""),
                ("$.options.concurrency.limit", "limit must be at least 1, found 0"),
                ("$.options.concurrency.key", "expected a string, found the number 1"),
                ("$.options.rate_limit.period", "missing required field `period`"),
                (
                    "$.options.budget",
                    "unknown field `budget`: expected one of `timeout`, `step_timeout`, `retry`, \
                     `concurrency` or `rate_limit`"
                ),
            ],
            "{err}"
        );
    }

    #[test]
    fn node_ids_are_checked_and_unique_across_the_tree() {
        let err = err_of(json!({"id": "bad/id", "nodes": [
            {"id": "a", "type": "step", "handler": "a"},
            {"id": "", "type": "step", "handler": "b"},
            {"id": "c#1", "type": "step", "handler": "c"},
            {"id": "loop", "type": "for_each", "items": "xs", "nodes": [
                {"id": "a", "type": "step", "handler": "a"},
                {"id": "loop", "type": "cancel"}
            ]},
            {"id": "a", "type": "pause"},
            {"id": 5, "type": "pause"}
        ]}));
        assert_eq!(
            problems(&err),
            [
                (
                    "$.id",
                    "workflow id `bad/id` may contain only letters, digits, `_`, `.`, `:` and \
                     `-` (found `/`)"
                ),
                ("$.nodes[1].id", "node id must not be empty"),
                (
                    "$.nodes[2].id",
                    "node id `c#1` may contain only letters, digits, `_`, `.`, `:` and `-` \
                     (found `#`)"
                ),
                ("$.nodes[3].nodes[0].id", "duplicate node id `a`: already used at $.nodes[0].id"),
                (
                    "$.nodes[3].nodes[1].id",
                    "duplicate node id `loop`: already used at $.nodes[3].id"
                ),
                ("$.nodes[4].id", "duplicate node id `a`: already used at $.nodes[0].id"),
                ("$.nodes[5].id", "expected a string, found the number 5"),
            ],
            "{err}"
        );
    }

    #[test]
    fn documents_the_walk_accepts_deserialize() {
        // Optional fields may be null; defaulted ones may be absent.
        let def = WorkflowDef::from_value(json!({
            "id": "w", "version": null, "options": {"retry": null, "rate_limit": null},
            "nodes": [
                {"id": "a", "type": "step", "handler": "a", "retry": null, "timeout": null},
                {"id": "b", "type": "if", "branches": [{"condition": "c", "nodes": [
                    {"id": "c", "type": "cancel", "reason": null}]}], "else": null},
                {"id": "d", "type": "wait_for_event", "event": "e", "match": null},
                {"id": "e", "type": "sleep", "duration": 0, "until": null},
                {"id": "f", "type": "for_each", "items": "i", "concurrency": null, "nodes": [
                    {"id": "g", "type": "subflow", "workflow": "other", "payload": null}]}
            ],
            "triggers": [{"type": "webhook", "path": "/x", "method": null}]
        }))
        .unwrap();
        assert_eq!(def.nodes.len(), 5);
        assert_eq!(def.triggers, [TriggerDef::webhook("/x")]);
        // Non-optional defaulted fields may not be null, as serde says too.
        let err = err_of(json!({"id": "w", "nodes": [
            {"id": "a", "type": "pause", "on_timeout": null},
            {"id": "b", "type": "step", "handler": "b",
             "retry": {"max_attempts": 1, "jitter": null, "backoff": null, "retry_on": null}}
        ]}));
        assert_eq!(
            paths(&err),
            [
                "$.nodes[0].on_timeout",
                "$.nodes[1].retry.backoff",
                "$.nodes[1].retry.jitter",
                "$.nodes[1].retry.retry_on"
            ]
        );
    }

    fn step(id: &str) -> Node {
        Node::Step(TaskNode { id: id.into(), handler: id.into(), timeout: None, retry: None })
    }

    fn workflow(nodes: Vec<Node>) -> WorkflowDef {
        WorkflowDef {
            schema: 1,
            id: "w".into(),
            version: None,
            name: None,
            description: None,
            triggers: Vec::new(),
            options: WorkflowOptions::default(),
            nodes,
        }
    }

    #[test]
    fn validate_checks_definitions_built_in_code() {
        let mut def = workflow(vec![
            Node::Step(TaskNode {
                id: "a".into(),
                handler: "".into(),
                timeout: None,
                retry: Some(RetryPolicy {
                    multiplier: Some(-1.0),
                    ..RetryPolicy::fixed(0, Duration::ZERO)
                }),
            }),
            Node::If(IfNode { id: "b".into(), branches: Vec::new(), else_nodes: Some(Vec::new()) }),
            Node::Race(BranchesNode { id: "c".into(), branches: Vec::new() }),
            Node::Sleep(SleepNode {
                id: "d".into(),
                duration: None,
                until: Some("2030-01-31T09:00:00Z".into()),
            }),
            Node::Sleep(SleepNode {
                id: "e".into(),
                duration: None,
                until: Some("2030-01-31".into()),
            }),
        ]);
        def.schema = 3;
        def.id = String::new();
        def.triggers = vec![
            TriggerDef::schedule(""),
            TriggerDef::Interval { every: None },
            TriggerDef::poll("", Duration::ZERO),
            TriggerDef::Webhook {
                path: "/ok".into(),
                method: None,
                settings: [("type".to_string(), json!("x"))].into_iter().collect(),
            },
        ];
        def.options.concurrency = Some(ConcurrencyDef { limit: 0, key: None });
        def.options.rate_limit = Some(RateLimitDef { limit: 0, period: None, key: None });
        let err = def.validate().unwrap_err();
        assert_eq!(
            paths(&err),
            [
                "$.schema",
                "$.id",
                "$.triggers[0].cron",
                "$.triggers[1].every",
                "$.triggers[2].handler",
                "$.triggers[2].every",
                "$.triggers[3].type",
                "$.options.concurrency.limit",
                "$.options.rate_limit.limit",
                "$.options.rate_limit.period",
                "$.nodes[0].handler",
                "$.nodes[0].retry.max_attempts",
                "$.nodes[0].retry.multiplier",
                "$.nodes[1].branches",
                "$.nodes[1].else",
                "$.nodes[2].branches",
                "$.nodes[4].until",
            ],
            "{err}"
        );
        assert!(workflow(Vec::new()).validate().unwrap_err().problems[0].path == "$.nodes");
        assert!(workflow(vec![step("a")]).validate().is_ok());
    }

    #[test]
    fn nesting_is_bounded() {
        let mut nodes = vec![step("leaf")];
        for depth in 0..100 {
            nodes = vec![Node::Parallel(BranchesNode {
                id: format!("p{depth}"),
                branches: vec![crate::wdo::Branch { nodes }],
            })];
        }
        let err = workflow(nodes).validate().unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].message.contains("nested more than 64 levels"));
        // JSON text that deep is refused by the parser already.
        let mut text = r#"{"id": "leaf", "type": "step", "handler": "h"}"#.to_string();
        for depth in 0..100 {
            text = format!(
                r#"{{"id": "p{depth}", "type": "parallel", "branches": [{{"nodes": [{text}]}}]}}"#
            );
        }
        let err =
            WorkflowDef::from_json(&format!(r#"{{"id": "w", "nodes": [{text}]}}"#)).unwrap_err();
        assert_eq!(paths(&err), ["$"]);
    }

    /// JSON pointers of every value inside `value`, parents first.
    fn pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let child = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(child.clone());
                    pointers(v, child, out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let child = format!("{at}/{i}");
                    out.push(child.clone());
                    pointers(v, child, out);
                }
            }
            _ => {}
        }
    }

    /// Every single-spot mutation of the full document (removing a field or array item, or
    /// replacing a value by one of a set of odd values) is either accepted or rejected by the
    /// hand walk with paths; serde never has to be the one that objects, and nothing panics.
    #[test]
    fn the_walk_and_serde_agree_on_every_mutation() {
        let doc = full_document();
        let mut all = Vec::new();
        pointers(&doc, String::new(), &mut all);
        let replacements = [
            json!(null),
            json!(0),
            json!(-1),
            json!(1.5),
            json!(4_294_967_296u64),
            json!(""),
            json!("x"),
            json!("/x"),
            json!(true),
            json!([]),
            json!({}),
        ];
        let mut checked = 0;
        for pointer in &all {
            let (parent, last) = pointer.rsplit_once('/').unwrap();
            let mut mutations = Vec::new();
            let mut removed = doc.clone();
            match removed.pointer_mut(parent).unwrap() {
                serde_json::Value::Object(map) => {
                    map.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                serde_json::Value::Array(items) => {
                    items.remove(last.parse::<usize>().unwrap());
                }
                _ => unreachable!("a pointer's parent is a container"),
            }
            mutations.push(removed);
            for replacement in &replacements {
                let mut replaced = doc.clone();
                *replaced.pointer_mut(pointer).unwrap() = replacement.clone();
                mutations.push(replaced);
            }
            for mutated in mutations {
                checked += 1;
                if let Err(err) = WorkflowDef::from_value(mutated.clone()) {
                    assert!(!err.problems.is_empty());
                    for problem in &err.problems {
                        assert!(problem.path.starts_with('$'), "{problem}");
                        assert!(
                            problem.path != "$" || problem.message.starts_with("expected"),
                            "serde objected where the walk did not, after changing {pointer}: \
                             {problem}\n{mutated:#}"
                        );
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }
}
