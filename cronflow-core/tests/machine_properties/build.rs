//! Turns generated shapes into a workflow definition, and records what the test knows about
//! every task key it can produce (by key without its loop iteration).

use std::collections::BTreeMap;
use std::time::Duration;

use cronflow_core::{
    BatchNode, Branch, BranchesNode, CancelNode, ConditionalBranch, ForEachNode, IfNode, Node,
    OnTimeout, PauseNode, RetryPolicy, SleepNode, SubflowNode, TaskKey, TaskKind, TaskNode,
    WaitForEventNode, WhileNode,
};
use serde_json::json;

use crate::shapes::{EVENT_NAMES, Shape, TaskShape, Timeout};

/// What the test knows about each task key of a definition (without its `@` iteration).
#[derive(Debug, Clone)]
pub(crate) struct TaskMeta {
    pub(crate) kind: TaskKind,
    pub(crate) handler: String,
    pub(crate) node_id: String,
    /// The effective retry policy: the node's own, else the workflow default.
    pub(crate) policy: Option<RetryPolicy>,
}

impl TaskMeta {
    pub(crate) fn max_attempts(&self) -> u32 {
        self.policy.as_ref().map_or(1, |p| p.max_attempts)
    }
}

/// The workflow every subflow starts.
pub(crate) const CHILD_WORKFLOW: &str = "child-wf";

pub(crate) struct DefBuilder {
    next: usize,
    pub(crate) default_retry: Option<RetryPolicy>,
    pub(crate) tasks: BTreeMap<String, TaskMeta>,
}

impl DefBuilder {
    pub(crate) fn new(default_retry: Option<RetryPolicy>) -> Self {
        Self { next: 0, default_retry, tasks: BTreeMap::new() }
    }

    pub(crate) fn seq(&mut self, shapes: &[Shape]) -> Vec<Node> {
        shapes.iter().map(|s| self.node(s)).collect()
    }

    /// Registers a tagged handler (`id#tag`): they take the workflow's default policy.
    pub(crate) fn tagged(&mut self, key: String, node_id: &str, kind: TaskKind) -> String {
        let handler = format!("h_{}", key.replace('#', "_"));
        let meta = TaskMeta {
            kind,
            handler: handler.clone(),
            node_id: node_id.to_string(),
            policy: self.default_retry.clone(),
        };
        self.tasks.insert(key, meta);
        handler
    }

    fn task(&mut self, shape: &TaskShape, kind: TaskKind) -> TaskNode {
        let id = self.id();
        let handler = format!("do_{id}");
        let policy = shape.retry.clone().or_else(|| self.default_retry.clone());
        let meta = TaskMeta { kind, handler: handler.clone(), node_id: id.clone(), policy };
        self.tasks.insert(id.clone(), meta);
        let on_error =
            shape.on_error.then(|| self.tagged(format!("{id}#on_error"), &id, TaskKind::OnError));
        TaskNode { id, handler, timeout: None, retry: shape.retry.clone(), on_error }
    }

    fn id(&mut self) -> String {
        let id = format!("n{}", self.next);
        self.next += 1;
        id
    }

    fn branches(&mut self, branches: &[Vec<Shape>]) -> Vec<Branch> {
        branches.iter().map(|nodes| Branch { nodes: self.seq(nodes) }).collect()
    }

    fn node(&mut self, shape: &Shape) -> Node {
        match shape {
            Shape::Step(task) => Node::Step(self.task(task, TaskKind::Step)),
            Shape::Action(task) => Node::Action(self.task(task, TaskKind::Action)),
            Shape::If(branches, else_nodes) => {
                let id = self.id();
                let branches = branches
                    .iter()
                    .enumerate()
                    .map(|(i, nodes)| {
                        let key = TaskKey::condition(&id, i).to_string();
                        let condition = self.tagged(key, &id, TaskKind::Condition);
                        ConditionalBranch { condition, nodes: self.seq(nodes) }
                    })
                    .collect();
                let else_nodes = else_nodes.as_ref().map(|nodes| self.seq(nodes));
                Node::If(IfNode { id, branches, else_nodes })
            }
            Shape::Parallel(branches) => {
                let id = self.id();
                Node::Parallel(BranchesNode { id, branches: self.branches(branches) })
            }
            Shape::Race(branches) => {
                let id = self.id();
                Node::Race(BranchesNode { id, branches: self.branches(branches) })
            }
            Shape::ForEach { concurrency, body } => {
                let id = self.id();
                let items = self.tagged(format!("{id}#items"), &id, TaskKind::Items);
                let nodes = self.seq(body);
                Node::ForEach(ForEachNode { id, items, nodes, concurrency: *concurrency })
            }
            Shape::Batch { size, body } => {
                let id = self.id();
                let items = self.tagged(format!("{id}#items"), &id, TaskKind::Items);
                Node::Batch(BatchNode { id, items, size: *size, nodes: self.seq(body) })
            }
            Shape::While { max_iterations, body } => {
                let id = self.id();
                let condition = self.tagged(format!("{id}#while"), &id, TaskKind::Condition);
                let nodes = self.seq(body);
                Node::While(WhileNode { id, condition, nodes, max_iterations: *max_iterations })
            }
            Shape::Sleep { ms } => {
                let duration = Some(Duration::from_millis((*ms).into()));
                Node::Sleep(SleepNode { id: self.id(), duration, until: None })
            }
            Shape::Pause { timeout, on_pause } => {
                let id = self.id();
                let on_pause =
                    on_pause.then(|| self.tagged(format!("{id}#on_pause"), &id, TaskKind::OnPause));
                let (timeout, on_timeout) = wait_timeout(*timeout);
                Node::Pause(PauseNode { id, timeout, on_timeout, on_pause })
            }
            Shape::WaitForEvent { event, matching, timeout } => {
                let match_fields = matching.map(|n| {
                    let mut fields = serde_json::Map::new();
                    fields.insert("order".into(), json!(n));
                    fields
                });
                let (timeout, on_timeout) = wait_timeout(*timeout);
                Node::WaitForEvent(WaitForEventNode {
                    id: self.id(),
                    event: EVENT_NAMES[*event].into(),
                    match_fields,
                    timeout,
                    on_timeout,
                })
            }
            Shape::Subflow { payload } => {
                let id = self.id();
                let payload =
                    payload.then(|| self.tagged(format!("{id}#payload"), &id, TaskKind::Payload));
                Node::Subflow(SubflowNode { id, workflow: CHILD_WORKFLOW.into(), payload })
            }
            Shape::Cancel { reason } => {
                let reason = reason.map(|n| format!("stop {n}"));
                Node::Cancel(CancelNode { id: self.id(), reason })
            }
        }
    }
}

fn wait_timeout(timeout: Timeout) -> (Option<Duration>, OnTimeout) {
    let on_timeout = if timeout.continues { OnTimeout::Continue } else { OnTimeout::Fail };
    (timeout.ms.map(|ms| Duration::from_millis(ms.into())), on_timeout)
}
