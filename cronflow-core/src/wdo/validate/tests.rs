//! Tests of reading and validating workflow definitions: documents that are accepted and
//! agree with serde here, the problems the JSON walk reports in `structure`, and the semantic
//! rules of [`WorkflowDef::validate`] in `rules`.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::retry::Backoff;
use crate::wdo::OnTimeout;

mod rules;
mod structure;

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
    assert_eq!(kinds, Node::KINDS);
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
