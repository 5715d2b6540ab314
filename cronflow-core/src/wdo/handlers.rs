//! Every handler a workflow names, with where it names it: what registration checks against
//! the executor and what an executor collects to know its workflows' handlers.

use super::{Node, TriggerDef, WorkflowDef};

/// One handler reference in a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerRef<'a> {
    /// JSON path of the field naming the handler, such as `$.nodes[2].on_error`.
    pub path: String,
    /// The handler's name.
    pub handler: &'a str,
}

impl WorkflowDef {
    /// Every handler the definition names, in document order: steps and actions with their
    /// `on_error`, conditions, item producers, `on_pause`, subflow payloads, the hooks and
    /// polling triggers.
    ///
    /// ```
    /// use cronflow_core::Workflow;
    ///
    /// let def = Workflow::new("w").step("a").for_each("each", "list", |s| s.step("b"))
    ///     .build().unwrap();
    /// let names: Vec<_> = def.handlers().into_iter().map(|h| h.handler).collect();
    /// assert_eq!(names, ["a", "list", "b"]);
    /// ```
    pub fn handlers(&self) -> Vec<HandlerRef<'_>> {
        let mut out = Vec::new();
        for (i, trigger) in self.triggers.iter().enumerate() {
            if let TriggerDef::Poll { handler, .. } = trigger {
                out.push(HandlerRef { path: format!("$.triggers[{i}].handler"), handler });
            }
        }
        for (hook, handler) in
            [("on_success", &self.hooks.on_success), ("on_failure", &self.hooks.on_failure)]
        {
            if let Some(handler) = handler {
                out.push(HandlerRef { path: format!("$.hooks.{hook}"), handler });
            }
        }
        collect(&self.nodes, "$.nodes", &mut out);
        out
    }
}

fn collect<'a>(nodes: &'a [Node], path: &str, out: &mut Vec<HandlerRef<'a>>) {
    for (i, node) in nodes.iter().enumerate() {
        let here = format!("{path}[{i}]");
        let mut add = |field: &str, handler: &'a str| {
            out.push(HandlerRef { path: format!("{here}.{field}"), handler });
        };
        match node {
            Node::Step(n) | Node::Action(n) => {
                add("handler", &n.handler);
                if let Some(h) = &n.on_error {
                    add("on_error", h);
                }
            }
            Node::If(n) => {
                for (b, branch) in n.branches.iter().enumerate() {
                    add(&format!("branches[{b}].condition"), &branch.condition);
                }
            }
            Node::ForEach(n) => add("items", &n.items),
            Node::Batch(n) => add("items", &n.items),
            Node::While(n) => add("condition", &n.condition),
            Node::Pause(n) => {
                if let Some(h) = &n.on_pause {
                    add("on_pause", h);
                }
            }
            Node::Subflow(n) => {
                if let Some(h) = &n.payload {
                    add("payload", h);
                }
            }
            _ => {}
        }
        for (suffix, children) in node.children() {
            collect(children, &format!("{here}{suffix}"), out);
        }
    }
}
