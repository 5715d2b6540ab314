//! Reference model: what the tree should do, from the recorded outcomes alone. It walks the
//! definition over what the history says (task outcomes, waits, race winners) and tells
//! where the run must stand, which tasks must be open (with the context they must get) and
//! which waits must be open. Loops are in `model/loops.rs`, waits in `model/waits.rs`, the
//! reading of the history in `model/outcomes.rs`.

use std::collections::{BTreeMap, BTreeSet};

use cronflow_core::{FailureKind, Node, TaskError, TaskNode, WorkflowDef};
use serde_json::Value;

mod loops;
mod outcomes;
mod waits;

pub(crate) use outcomes::{Outcomes, matches};

pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// Why the tree failed.
#[derive(Debug, Clone)]
pub(crate) enum Fail {
    /// The final failure of task `key`; the run's message names it as `what`.
    Task { key: String, what: String },
    /// A node itself failed (a `while` past its limit, items that are not an array, a wait
    /// that timed out, a failed child run).
    Node { kind: FailureKind, id: String },
}

/// Why the tree ended cancelled.
#[derive(Debug, Clone)]
pub(crate) enum Why {
    /// A `cancel` node with this reason.
    Node(Option<String>),
    /// The child run of this subflow was cancelled.
    Child(String),
}

pub(crate) enum Flow {
    Done(Value),
    Pending,
    Failed(Fail),
    Cancelled(Why),
}

impl Flow {
    pub(crate) fn settled(&self) -> bool {
        !matches!(self, Flow::Pending)
    }
}

/// Where the run must stand.
#[derive(Debug)]
pub(crate) enum Expect {
    /// Still running; `failing` when the tree has failed and its `on_failure` hook runs.
    Running {
        failing: bool,
    },
    Complete(Value),
    Fail(Fail),
    Cancel(Why),
}

/// A task that must be in flight or waiting for its retry, with the context it gets.
#[derive(Debug, Clone)]
pub(crate) struct Open {
    pub(crate) last: Value,
    pub(crate) item: Option<Value>,
    pub(crate) index: Option<u32>,
    /// Outputs of steps of the task's loop iterations (added to the run's steps).
    pub(crate) steps: BTreeMap<String, Value>,
    /// The error an `on_error` or `on_failure` handler reads: exactly, or by name only.
    pub(crate) error: Option<(TaskError, bool)>,
}

/// The loop iteration a node is walked in.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub(crate) suffix: String,
    pub(crate) item: Option<Value>,
    pub(crate) index: Option<u32>,
    pub(crate) steps: BTreeMap<String, Value>,
}

impl Scope {
    pub(crate) fn key(&self, id: &str) -> String {
        format!("{id}{}", self.suffix)
    }

    pub(crate) fn tagged(&self, id: &str, tag: &str) -> String {
        format!("{id}#{tag}{}", self.suffix)
    }

    pub(crate) fn iteration(&self, i: usize, item: Option<Value>) -> Scope {
        let suffix =
            if self.suffix.is_empty() { format!("@{i}") } else { format!("{}.{i}", self.suffix) };
        Scope { suffix, item, index: Some(i as u32), steps: self.steps.clone() }
    }
}

pub(crate) enum TaskFlow {
    Done(Value),
    Pending,
    Failed(TaskError),
}

/// Walks the tree over the outcomes recorded so far.
pub(crate) struct Model<'a> {
    pub(crate) o: &'a Outcomes,
    /// Every task that is reachable and not settled.
    pub(crate) open: BTreeMap<String, Open>,
    /// Every wait that is reachable, started and not ended.
    pub(crate) open_waits: BTreeSet<String>,
    /// Reachable waits that have not started (after a turn there must be none).
    pub(crate) missing_waits: Vec<String>,
    /// Undecided races walked, with which of their branches have settled.
    pub(crate) undecided: BTreeMap<String, Vec<bool>>,
    /// States the machine must never be in after a turn.
    pub(crate) violations: Vec<String>,
}

impl<'a> Model<'a> {
    pub(crate) fn new(o: &'a Outcomes) -> Self {
        Model {
            o,
            open: BTreeMap::new(),
            open_waits: BTreeSet::new(),
            missing_waits: Vec::new(),
            undecided: BTreeMap::new(),
            violations: Vec::new(),
        }
    }

    /// The whole run: the tree, then the hook for its end.
    pub(crate) fn run(&mut self, def: &WorkflowDef) -> Expect {
        let root = Scope::default();
        match self.seq(&def.nodes, &Value::Null, &mut root.clone()) {
            Flow::Pending => Expect::Running { failing: false },
            Flow::Cancelled(why) => Expect::Cancel(why),
            // Actions not settled keep the run open.
            Flow::Done(_) if !self.open.is_empty() => Expect::Running { failing: false },
            Flow::Done(out) => {
                if def.hooks.on_success.is_some() {
                    let key = "on_success#hook".to_string();
                    if let TaskFlow::Pending = self.task(key, &out, &root, None) {
                        return Expect::Running { failing: false };
                    }
                }
                Expect::Complete(out)
            }
            Flow::Failed(fail) => {
                if def.hooks.on_failure.is_some() {
                    let error = match &fail {
                        Fail::Task { key, .. } => (self.final_error(key), false),
                        Fail::Node { kind, .. } => (TaskError::new(kind_name(*kind), ""), true),
                    };
                    let key = "on_failure#hook".to_string();
                    if let TaskFlow::Pending = self.task(key, &Value::Null, &root, Some(error)) {
                        return Expect::Running { failing: true };
                    }
                }
                Expect::Fail(fail)
            }
        }
    }

    fn final_error(&self, key: &str) -> TaskError {
        match self.o.finals.get(key) {
            Some(Err(error)) => error.clone(),
            _ => TaskError::msg("?"),
        }
    }

    pub(crate) fn seq(&mut self, nodes: &[Node], last: &Value, scope: &mut Scope) -> Flow {
        let mut last = last.clone();
        for node in nodes {
            match self.node(node, &last, scope) {
                Flow::Done(out) => last = out,
                other => return other,
            }
        }
        Flow::Done(last)
    }

    /// Task `key`: its final outcome, else it is open.
    pub(crate) fn task(
        &mut self,
        key: String,
        last: &Value,
        scope: &Scope,
        error: Option<(TaskError, bool)>,
    ) -> TaskFlow {
        match self.o.finals.get(&key) {
            Some(Ok(out)) => TaskFlow::Done(out.clone()),
            Some(Err(error)) => TaskFlow::Failed(error.clone()),
            None => {
                let open = Open {
                    last: last.clone(),
                    item: scope.item.clone(),
                    index: scope.index,
                    steps: scope.steps.clone(),
                    error,
                };
                self.open.insert(key, open);
                TaskFlow::Pending
            }
        }
    }

    /// A handler task that fails the node when it fails for good.
    pub(crate) fn handler(
        &mut self,
        key: String,
        what: String,
        last: &Value,
        scope: &Scope,
    ) -> Flow {
        match self.task(key.clone(), last, scope, None) {
            TaskFlow::Done(out) => Flow::Done(out),
            TaskFlow::Pending => Flow::Pending,
            TaskFlow::Failed(_) => Flow::Failed(Fail::Task { key, what }),
        }
    }

    fn node(&mut self, node: &Node, last: &Value, scope: &mut Scope) -> Flow {
        match node {
            Node::Step(task) => {
                let flow = self.task_node(task, "step", last, scope);
                if let (Flow::Done(out), false) = (&flow, scope.suffix.is_empty()) {
                    scope.steps.insert(task.id.clone(), out.clone());
                }
                flow
            }
            Node::Action(task) => {
                // Never waited for, never fatal.
                self.task_node(task, "action", last, scope);
                Flow::Done(last.clone())
            }
            Node::If(node) => {
                for (i, branch) in node.branches.iter().enumerate() {
                    let key = scope.tagged(&node.id, &i.to_string());
                    match self.task(key.clone(), last, scope, None) {
                        TaskFlow::Done(value) if truthy(&value) => {
                            return self.seq(&branch.nodes, last, scope);
                        }
                        TaskFlow::Done(_) => {}
                        TaskFlow::Pending => return Flow::Pending,
                        TaskFlow::Failed(_) => {
                            let what = format!("condition {i} of `{}`", node.id);
                            return Flow::Failed(Fail::Task { key, what });
                        }
                    }
                }
                match &node.else_nodes {
                    Some(nodes) => self.seq(nodes, last, scope),
                    None => Flow::Done(last.clone()),
                }
            }
            Node::Parallel(node) => {
                let mut outputs = Vec::new();
                let mut pending = false;
                for branch in &node.branches {
                    match self.seq(&branch.nodes, last, scope) {
                        Flow::Done(out) => outputs.push(out),
                        Flow::Pending => pending = true,
                        other => return other,
                    }
                }
                if pending { Flow::Pending } else { Flow::Done(Value::Array(outputs)) }
            }
            Node::Race(node) => {
                let key = scope.key(&node.id);
                if let Some(&won) = self.o.races.get(&key) {
                    let Some(branch) = node.branches.get(won as usize) else {
                        self.violations.push(format!("race {key} won by missing branch {won}"));
                        return Flow::Pending;
                    };
                    return self.seq(&branch.nodes, last, scope);
                }
                let mut settled = Vec::new();
                let mut first = None;
                for branch in &node.branches {
                    let flow = self.seq(&branch.nodes, last, scope);
                    settled.push(flow.settled());
                    if flow.settled() && first.is_none() {
                        first = Some(flow);
                    }
                }
                self.undecided.insert(key.clone(), settled);
                match first {
                    Some(flow) => {
                        self.violations.push(format!("race {key} has a settled branch, no winner"));
                        flow
                    }
                    None => Flow::Pending,
                }
            }
            Node::ForEach(node) => {
                let concurrency = node.concurrency.unwrap_or(1).max(1) as usize;
                self.iterate(&node.id, None, concurrency, &node.nodes, last, scope)
            }
            Node::Batch(node) => {
                self.iterate(&node.id, Some(node.size.max(1) as usize), 1, &node.nodes, last, scope)
            }
            Node::While(node) => self.while_(node, last, scope),
            Node::Sleep(node) => self.sleep(node, last, scope),
            Node::Pause(node) => self.pause(node, scope),
            Node::WaitForEvent(node) => self.wait_for_event(node, scope),
            Node::Subflow(node) => self.subflow(node, last, scope),
            Node::Cancel(node) => Flow::Cancelled(Why::Node(node.reason.clone())),
        }
    }

    /// A step or action: its task, then its `on_error` handler once the attempts ran out.
    fn task_node(&mut self, node: &TaskNode, kind: &str, last: &Value, scope: &Scope) -> Flow {
        let key = scope.key(&node.id);
        let error = match self.task(key.clone(), last, scope, None) {
            TaskFlow::Done(out) => return Flow::Done(out),
            TaskFlow::Pending => return Flow::Pending,
            TaskFlow::Failed(error) => error,
        };
        let what = format!("{kind} `{}`", node.id);
        if node.on_error.is_none() {
            return Flow::Failed(Fail::Task { key, what });
        }
        let key = scope.tagged(&node.id, "on_error");
        match self.task(key.clone(), last, scope, Some((error, false))) {
            TaskFlow::Done(out) => Flow::Done(out),
            TaskFlow::Pending => Flow::Pending,
            TaskFlow::Failed(_) => {
                Flow::Failed(Fail::Task { key, what: format!("the on_error handler of {what}") })
            }
        }
    }
}

/// The name an `on_failure` hook's error has when a node (not a task) failed.
pub(crate) fn kind_name(kind: FailureKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The node a task or wait key belongs to (the text before any `#` or `@`).
pub(crate) fn node_of(key: &str) -> &str {
    key.split(['#', '@']).next().unwrap_or(key)
}

/// Whether `key` belongs to the iteration `suffix` (`""`, `@1`, `@1.0`) or one nested in it.
pub(crate) fn in_scope(key: &str, suffix: &str) -> bool {
    let own = suffix.trim_start_matches('@');
    if own.is_empty() {
        return true;
    }
    let path = key.split_once('@').map_or("", |(_, p)| p);
    path == own || path.strip_prefix(own).is_some_and(|rest| rest.starts_with('.'))
}
