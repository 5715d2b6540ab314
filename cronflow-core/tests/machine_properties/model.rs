//! Reference model: what the tree should do, from the recorded outcomes alone.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cronflow_core::{Node, RecordedEvent, RunEvent, TaskError, TaskKey};
use serde_json::Value;

fn truthy(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

pub(crate) enum Flow {
    Done(Value),
    Pending,
    /// The task whose final failure fails the run.
    Failed(String),
}

/// Walks the tree over the final outcomes recorded so far; collects every task that is
/// reachable and not settled (with the `last` value it receives).
pub(crate) struct Model<'a> {
    pub(crate) finals: &'a BTreeMap<String, Result<Value, TaskError>>,
    pub(crate) open: BTreeMap<String, Value>,
}

impl Model<'_> {
    pub(crate) fn seq(&mut self, nodes: &[Node], last: &Value) -> Flow {
        let mut last = last.clone();
        for node in nodes {
            match self.node(node, &last) {
                Flow::Done(out) => last = out,
                other => return other,
            }
        }
        Flow::Done(last)
    }

    fn node(&mut self, node: &Node, last: &Value) -> Flow {
        match node {
            Node::Step(task) => match self.finals.get(&task.id) {
                Some(Ok(out)) => Flow::Done(out.clone()),
                Some(Err(_)) => Flow::Failed(task.id.clone()),
                None => {
                    self.open.insert(task.id.clone(), last.clone());
                    Flow::Pending
                }
            },
            Node::Action(task) => {
                if !self.finals.contains_key(&task.id) {
                    self.open.insert(task.id.clone(), last.clone());
                }
                Flow::Done(last.clone())
            }
            Node::If(node) => {
                for (i, branch) in node.branches.iter().enumerate() {
                    let key = TaskKey::condition(&node.id, i).to_string();
                    match self.finals.get(&key) {
                        Some(Ok(value)) if truthy(value) => return self.seq(&branch.nodes, last),
                        Some(Ok(_)) => {}
                        Some(Err(_)) => return Flow::Failed(key),
                        None => {
                            self.open.insert(key, last.clone());
                            return Flow::Pending;
                        }
                    }
                }
                match &node.else_nodes {
                    Some(nodes) => self.seq(nodes, last),
                    None => Flow::Done(last.clone()),
                }
            }
            Node::Parallel(node) => {
                let mut outputs = Vec::new();
                let mut pending = false;
                for branch in &node.branches {
                    match self.seq(&branch.nodes, last) {
                        Flow::Done(out) => outputs.push(out),
                        Flow::Pending => pending = true,
                        failed @ Flow::Failed(_) => return failed,
                    }
                }
                if pending { Flow::Pending } else { Flow::Done(Value::Array(outputs)) }
            }
            other => panic!("the generator makes no {} nodes", other.kind()),
        }
    }
}

/// What the history says about each task key.
#[derive(Default)]
pub(crate) struct Outcomes {
    /// Final outcomes: a success, or a failure without retry.
    pub(crate) finals: BTreeMap<String, Result<Value, TaskError>>,
    /// Tasks whose last attempt failed with a retry due at this time.
    pub(crate) waiting: BTreeMap<String, DateTime<Utc>>,
    /// Outputs of succeeded steps and actions (what `TaskContext::steps` must hold).
    pub(crate) steps: BTreeMap<String, String>,
}

impl Outcomes {
    pub(crate) fn of(history: &[RecordedEvent]) -> Self {
        let mut this = Self::default();
        for recorded in history {
            match &recorded.event {
                RunEvent::TaskSucceeded { task, output, .. } => {
                    this.waiting.remove(task.as_str());
                    this.finals.insert(task.to_string(), Ok(output.to_value()));
                    if !task.as_str().contains('#') {
                        this.steps.insert(task.to_string(), output.as_str().to_string());
                    }
                }
                RunEvent::TaskFailed { task, error, retry_at, .. } => match retry_at {
                    Some(at) => {
                        this.waiting.insert(task.to_string(), *at);
                    }
                    None => {
                        this.waiting.remove(task.as_str());
                        this.finals.insert(task.to_string(), Err(error.clone()));
                    }
                },
                _ => {}
            }
        }
        this
    }
}
