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
        for (hook, handler) in
            [("on_success", &self.hooks.on_success), ("on_failure", &self.hooks.on_failure)]
        {
            if let Some(handler) = handler {
                checker.name(&field("$.hooks", hook), handler, "hook handler");
            }
        }
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
        if let Some(debounce) = &options.debounce {
            let path = field(path, "debounce");
            self.positive_duration(&field(&path, "window"), debounce.window, "window");
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
                if let Some(handler) = &task.on_error {
                    self.name(&field(path, "on_error"), handler, "on_error handler");
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
mod tests;
