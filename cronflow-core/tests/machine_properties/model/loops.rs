//! `for_each`, `batch` and `while` in the reference model.

use cronflow_core::{FailureKind, Node, WhileNode};
use serde_json::Value;

use super::{Fail, Flow, Model, Scope, TaskFlow, truthy};

impl Model<'_> {
    /// `for_each` (`chunk: None`) or `batch`: the items handler, then the body per item (or
    /// chunk), at most `concurrency` unfinished iterations at once, the first unfinished
    /// ones; the output is every iteration's output in item order.
    pub(super) fn iterate(
        &mut self,
        id: &str,
        chunk: Option<usize>,
        concurrency: usize,
        body: &[Node],
        last: &Value,
        scope: &Scope,
    ) -> Flow {
        let key = scope.tagged(id, "items");
        let what = format!("the items handler of `{id}`");
        let items = match self.handler(key, what, last, scope) {
            Flow::Done(Value::Array(items)) => items,
            Flow::Done(_) => {
                return Flow::Failed(Fail::Node { kind: FailureKind::NodeFailed, id: id.into() });
            }
            other => return other,
        };
        let items: Vec<Value> = match chunk {
            Some(size) => items.chunks(size).map(|c| Value::Array(c.to_vec())).collect(),
            None => items,
        };
        let mut outputs = Vec::new();
        let mut unfinished = 0;
        for (i, item) in items.iter().enumerate() {
            if unfinished >= concurrency {
                break;
            }
            let mut inner = scope.iteration(i, Some(item.clone()));
            match self.seq(body, last, &mut inner) {
                Flow::Done(out) => outputs.push(out),
                Flow::Pending => unfinished += 1,
                other => return other,
            }
        }
        if outputs.len() == items.len() { Flow::Done(Value::Array(outputs)) } else { Flow::Pending }
    }

    /// `while`: the condition `id#while@i` before iteration `i`, with the previous output.
    pub(super) fn while_(&mut self, node: &WhileNode, last: &Value, scope: &Scope) -> Flow {
        let mut prev = last.clone();
        for i in 0.. {
            let mut inner = scope.iteration(i, None);
            let key = format!("{}#while{}", node.id, inner.suffix);
            match self.task(key.clone(), &prev, &inner, None) {
                TaskFlow::Pending => return Flow::Pending,
                TaskFlow::Failed(_) => {
                    let what = format!("the condition of `{}`", node.id);
                    return Flow::Failed(Fail::Task { key, what });
                }
                TaskFlow::Done(value) if !truthy(&value) => return Flow::Done(prev),
                TaskFlow::Done(_) if i == node.max_iterations as usize => {
                    let id = node.id.clone();
                    return Flow::Failed(Fail::Node { kind: FailureKind::NodeFailed, id });
                }
                TaskFlow::Done(_) => {}
            }
            match self.seq(&node.nodes, &prev, &mut inner) {
                Flow::Done(out) => prev = out,
                other => return other,
            }
        }
        unreachable!()
    }
}
