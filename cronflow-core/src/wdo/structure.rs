//! The structural walk over a JSON value: object shapes, required and unknown fields, field
//! types, node and trigger kinds, durations and retry policies, plus every semantic rule that
//! can be checked on the parts that are well formed. It never stops at the first problem.
//!
//! The walk accepts exactly what the serde model accepts, so that a document it finds clean
//! deserializes: optional fields (`Option` in the model) may be `null`, defaulted non-optional
//! fields (`triggers`, `options`, `backoff`, `jitter`, `retry_on`, `on_timeout`, `schema`) may
//! be absent but not `null`.

use serde_json::Value;

use super::fields::optional;
use super::rules::{Checker, field, index};
use super::{Node, TriggerDef};

const WORKFLOW_FIELDS: &[&str] =
    &["schema", "id", "version", "name", "description", "triggers", "options", "hooks", "nodes"];
const OPTIONS_FIELDS: &[&str] =
    &["timeout", "step_timeout", "retry", "concurrency", "rate_limit", "debounce"];
const HOOKS: &[&str] = &["on_success", "on_failure"];
const RETRY_FIELDS: &[&str] =
    &["max_attempts", "backoff", "delay", "max_delay", "multiplier", "jitter", "retry_on"];
const BACKOFFS: &[&str] = &["fixed", "linear", "exponential"];
const ON_TIMEOUT: &[&str] = &["fail", "continue"];

/// Fields of a node of `kind` besides `id` and `type`.
fn node_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "step" | "action" => &["handler", "timeout", "retry", "on_error"],
        "if" => &["branches", "else"],
        "parallel" | "race" => &["branches"],
        "for_each" => &["items", "nodes", "concurrency"],
        "batch" => &["items", "size", "nodes"],
        "while" => &["condition", "nodes", "max_iterations"],
        "sleep" => &["duration", "until"],
        "pause" => &["timeout", "on_timeout", "on_pause"],
        "wait_for_event" => &["event", "match", "timeout", "on_timeout"],
        "subflow" => &["workflow", "payload"],
        _ => &["reason"], // "cancel"
    }
}

impl Checker {
    /// Walks a whole workflow definition.
    pub(super) fn workflow_value(&mut self, value: &Value) {
        let path = "$";
        let Some(map) = self.object(path, value, "a workflow definition (a JSON object)") else {
            return;
        };
        if let Some(v) = map.get("schema")
            && let Some(schema) = self.uint("$.schema", v)
        {
            self.schema("$.schema", schema);
        }
        if let Some(id) = self.required_string(path, map, "id") {
            self.identifier("$.id", id, "workflow id");
        }
        for key in ["version", "name", "description"] {
            self.optional_string(path, map, key);
        }
        if let Some(v) = map.get("triggers")
            && let Some(triggers) = self.array("$.triggers", v)
        {
            for (i, trigger) in triggers.iter().enumerate() {
                self.trigger_value(&index("$.triggers", i), trigger);
            }
        }
        if let Some(v) = map.get("options") {
            self.options_value("$.options", v);
        }
        if let Some(v) = map.get("hooks")
            && let Some(hooks) = self.object("$.hooks", v, "a hooks object")
        {
            for hook in HOOKS {
                if let Some(handler) = self.optional_string("$.hooks", hooks, hook) {
                    self.name(&field("$.hooks", hook), handler, "hook handler");
                }
            }
            self.unknown_fields("$.hooks", hooks, HOOKS);
        }
        if let Some(v) = self.required(path, map, "nodes") {
            self.sequence_value("$.nodes", v, 0);
        }
        self.unknown_fields(path, map, WORKFLOW_FIELDS);
    }

    fn options_value(&mut self, path: &str, value: &Value) {
        let Some(map) = self.object(path, value, "an options object") else { return };
        self.optional_duration(path, map, "timeout");
        self.optional_duration(path, map, "step_timeout");
        if let Some(v) = optional(map, "retry") {
            self.retry_value(&field(path, "retry"), v);
        }
        if let Some(v) = optional(map, "concurrency") {
            let path = field(path, "concurrency");
            if let Some(limit) = self.object(&path, v, "a concurrency object") {
                if let Some(n) = self.required_uint(&path, limit, "limit") {
                    self.at_least_one(&field(&path, "limit"), n, "limit");
                }
                self.optional_string(&path, limit, "key");
                self.unknown_fields(&path, limit, &["limit", "key"]);
            }
        }
        if let Some(v) = optional(map, "rate_limit") {
            let path = field(path, "rate_limit");
            if let Some(limit) = self.object(&path, v, "a rate limit object") {
                if let Some(n) = self.required_uint(&path, limit, "limit") {
                    self.at_least_one(&field(&path, "limit"), n, "limit");
                }
                self.required_positive_duration(&path, limit, "period");
                self.optional_string(&path, limit, "key");
                self.unknown_fields(&path, limit, &["limit", "period", "key"]);
            }
        }
        if let Some(v) = optional(map, "debounce") {
            let path = field(path, "debounce");
            if let Some(debounce) = self.object(&path, v, "a debounce object") {
                self.required_positive_duration(&path, debounce, "window");
                self.optional_string(&path, debounce, "key");
                self.unknown_fields(&path, debounce, &["window", "key"]);
            }
        }
        self.unknown_fields(path, map, OPTIONS_FIELDS);
    }

    fn trigger_value(&mut self, path: &str, value: &Value) {
        let Some(map) = self.object(path, value, "a trigger object") else { return };
        let Some(kind) = self.kind(path, map, "trigger type", &TriggerDef::KINDS) else { return };
        let fields: &[&str] = match kind {
            "manual" => &[],
            "schedule" => {
                if let Some(cron) = self.required_string(path, map, "cron") {
                    self.cron(&field(path, "cron"), cron);
                }
                self.optional_string(path, map, "timezone");
                &["cron", "timezone"]
            }
            "interval" => {
                self.required_positive_duration(path, map, "every");
                &["every"]
            }
            "webhook" => {
                if let Some(route) = self.required_string(path, map, "path") {
                    self.webhook_path(&field(path, "path"), route);
                }
                self.optional_string(path, map, "method");
                // Further webhook settings are free-form.
                return;
            }
            "event" => {
                if let Some(name) = self.required_string(path, map, "name") {
                    self.name(&field(path, "name"), name, "event name");
                }
                &["name"]
            }
            // "poll", the last of TriggerDef::KINDS.
            _ => {
                if let Some(handler) = self.required_string(path, map, "handler") {
                    self.name(&field(path, "handler"), handler, "handler");
                }
                self.required_positive_duration(path, map, "every");
                self.optional_string(path, map, "key");
                &["handler", "every", "key"]
            }
        };
        self.unknown_fields_of_kind(path, map, &["type"], fields);
    }

    fn retry_value(&mut self, path: &str, value: &Value) {
        let Some(map) = self.object(path, value, "a retry policy object") else { return };
        if let Some(n) = self.required_uint(path, map, "max_attempts") {
            self.at_least_one(&field(path, "max_attempts"), n, "max_attempts");
        }
        if let Some(v) = map.get("backoff") {
            self.one_of(&field(path, "backoff"), v, "backoff", BACKOFFS);
        }
        self.optional_duration(path, map, "delay");
        self.optional_duration(path, map, "max_delay");
        if let Some(v) = optional(map, "multiplier") {
            let path = field(path, "multiplier");
            if let Some(x) = self.number(&path, v) {
                self.multiplier(&path, x);
            }
        }
        if let Some(v) = map.get("jitter") {
            self.boolean(&field(path, "jitter"), v);
        }
        if let Some(v) = map.get("retry_on") {
            let path = field(path, "retry_on");
            if let Some(names) = self.array(&path, v) {
                for (i, name) in names.iter().enumerate() {
                    self.string(&index(&path, i), name);
                }
            }
        }
        self.unknown_fields(path, map, RETRY_FIELDS);
    }

    fn sequence_value(&mut self, path: &str, value: &Value, depth: usize) {
        let Some(nodes) = self.array(path, value) else { return };
        if self.too_deep(path, depth) {
            return;
        }
        self.nodes_not_empty(path, nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            self.node_value(&index(path, i), node, depth);
        }
    }

    /// Checks one node's own fields, then walks its child sequences in document order.
    fn node_value(&mut self, path: &str, value: &Value, depth: usize) {
        let Some(map) = self.object(path, value, "a node object") else { return };
        if let Some(id) = self.required_string(path, map, "id") {
            self.node_id(&field(path, "id"), id);
        }
        let Some(kind) = self.kind(path, map, "node type", &Node::KINDS) else { return };
        let mut children: Vec<(String, &Value)> = Vec::new();
        match kind {
            "step" | "action" => {
                if let Some(handler) = self.required_string(path, map, "handler") {
                    self.name(&field(path, "handler"), handler, "handler");
                }
                self.optional_duration(path, map, "timeout");
                if let Some(v) = optional(map, "retry") {
                    self.retry_value(&field(path, "retry"), v);
                }
                if let Some(handler) = self.optional_string(path, map, "on_error") {
                    self.name(&field(path, "on_error"), handler, "on_error handler");
                }
            }
            "if" | "parallel" | "race" => {
                let branches_path = field(path, "branches");
                if let Some(v) = self.required(path, map, "branches")
                    && let Some(branches) = self.array(&branches_path, v)
                {
                    self.branches_not_empty(&branches_path, branches.len(), kind);
                    for (i, branch) in branches.iter().enumerate() {
                        let path = index(&branches_path, i);
                        let Some(branch) = self.object(&path, branch, "a branch object") else {
                            continue;
                        };
                        let fields: &[&str] = if kind == "if" {
                            if let Some(c) = self.required_string(&path, branch, "condition") {
                                self.name(&field(&path, "condition"), c, "condition handler");
                            }
                            &["condition", "nodes"]
                        } else {
                            &["nodes"]
                        };
                        if let Some(v) = self.required(&path, branch, "nodes") {
                            children.push((field(&path, "nodes"), v));
                        }
                        self.unknown_fields(&path, branch, fields);
                    }
                }
                if kind == "if"
                    && let Some(v) = optional(map, "else")
                {
                    children.push((field(path, "else"), v));
                }
            }
            "for_each" | "batch" => {
                if let Some(items) = self.required_string(path, map, "items") {
                    self.name(&field(path, "items"), items, "items handler");
                }
                if kind == "batch" {
                    if let Some(size) = self.required_uint(path, map, "size") {
                        self.at_least_one(&field(path, "size"), size, "size");
                    }
                } else if let Some(v) = optional(map, "concurrency") {
                    let path = field(path, "concurrency");
                    if let Some(n) = self.uint(&path, v) {
                        self.at_least_one(&path, n, "concurrency");
                    }
                }
                if let Some(v) = self.required(path, map, "nodes") {
                    children.push((field(path, "nodes"), v));
                }
            }
            "while" => {
                if let Some(condition) = self.required_string(path, map, "condition") {
                    self.name(&field(path, "condition"), condition, "condition handler");
                }
                if let Some(n) = self.required_uint(path, map, "max_iterations") {
                    self.at_least_one(&field(path, "max_iterations"), n, "max_iterations");
                }
                if let Some(v) = self.required(path, map, "nodes") {
                    children.push((field(path, "nodes"), v));
                }
            }
            "sleep" => {
                let duration = optional(map, "duration");
                if let Some(v) = duration {
                    self.duration(&field(path, "duration"), v);
                }
                let until = optional(map, "until");
                if let Some(v) = until {
                    let path = field(path, "until");
                    if let Some(until) = self.string(&path, v) {
                        self.until(&path, until);
                    }
                }
                self.sleep_choice(path, duration.is_some(), until.is_some());
            }
            "pause" => {
                self.optional_duration(path, map, "timeout");
                if let Some(v) = map.get("on_timeout") {
                    self.one_of(&field(path, "on_timeout"), v, "on_timeout", ON_TIMEOUT);
                }
                if let Some(handler) = self.optional_string(path, map, "on_pause") {
                    self.name(&field(path, "on_pause"), handler, "on_pause handler");
                }
            }
            "wait_for_event" => {
                if let Some(event) = self.required_string(path, map, "event") {
                    self.name(&field(path, "event"), event, "event name");
                }
                if let Some(v) = optional(map, "match") {
                    self.object(&field(path, "match"), v, "an object of fields to match");
                }
                self.optional_duration(path, map, "timeout");
                if let Some(v) = map.get("on_timeout") {
                    self.one_of(&field(path, "on_timeout"), v, "on_timeout", ON_TIMEOUT);
                }
            }
            "subflow" => {
                if let Some(workflow) = self.required_string(path, map, "workflow") {
                    self.identifier(&field(path, "workflow"), workflow, "workflow id");
                }
                if let Some(handler) = self.optional_string(path, map, "payload") {
                    self.name(&field(path, "payload"), handler, "payload handler");
                }
            }
            // "cancel", the last of Node::KINDS.
            _ => {
                self.optional_string(path, map, "reason");
            }
        }
        self.unknown_fields_of_kind(path, map, &["id", "type"], node_fields(kind));
        for (path, value) in children {
            self.sequence_value(&path, value, depth + 1);
        }
    }
}
