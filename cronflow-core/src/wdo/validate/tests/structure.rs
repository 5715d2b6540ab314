//! The problems the hand walk of the JSON reports, each with its JSON path.

use serde_json::json;

use super::{err_of, paths, problems};
use crate::wdo::WorkflowDef;

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
    for kind in crate::Node::KINDS {
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
        [("$.id", "missing required field `id`"), ("$.nodes", "missing required field `nodes`")]
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
            ("$.nodes[1].timeout", "a duration in milliseconds must be a whole number, found 1.5"),
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
                 `concurrency`, `rate_limit` or `debounce`"
            ),
        ],
        "{err}"
    );
}
