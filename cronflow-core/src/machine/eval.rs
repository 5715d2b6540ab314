//! The walk over the node tree that decides what is finished, what failed and what to
//! dispatch next. It reads only recorded state, so live execution and replay agree.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Command, InFlight, RunMachine};
use crate::event::{FailureKind, RunEvent, RunFailure};
use crate::id::TaskKey;
use crate::json::Json;
use crate::retry::RetryPolicy;
use crate::task::{Task, TaskContext, TaskError, TaskKind};
use crate::wdo::{Node, TaskNode};

/// Where a node or a sequence stands.
enum Flow {
    /// Finished, with its output.
    Done(Json),
    /// Waiting for a task or a timer.
    Pending,
    /// Failed; the run fails with this.
    Failed(RunFailure),
}

/// What a task calls, borrowed from its node: building it costs nothing on the walk.
#[derive(Clone, Copy)]
struct Call<'a> {
    node_id: &'a str,
    handler: &'a str,
    timeout: Option<std::time::Duration>,
}

impl<'a> Call<'a> {
    fn of(node: &'a TaskNode) -> Self {
        Self { node_id: &node.id, handler: &node.handler, timeout: node.timeout }
    }
}

/// Where a single task stands.
enum TaskFlow {
    Done(Json),
    Pending,
    Failed(TaskError, u32),
}

impl RunMachine {
    /// Walks the tree from the first unfinished top-level node, dispatching every task that
    /// is ready, and records the run's end when the tree is finished or has failed.
    pub(super) fn advance(&mut self, now: DateTime<Utc>, out: &mut Vec<Command>) {
        if self.status.is_terminal() {
            return;
        }
        let def = Arc::clone(&self.def);
        let nodes = &def.def.nodes;
        let mut flow = Flow::Done(self.cursor_last.clone());
        let mut last = self.cursor_last.clone();
        // The cursor moves past a finished node only once every action in it has settled:
        // an action waiting for a retry must still be visited to be dispatched again.
        let mut settled = true;
        for (i, node) in nodes.iter().enumerate().skip(self.cursor) {
            match self.eval_node(node, &last, now, out) {
                Flow::Done(output) => {
                    settled = settled && self.actions_settled(&def.top_level_actions[i]);
                    if settled {
                        self.cursor = i + 1;
                        self.cursor_last = output.clone();
                    }
                    last = output.clone();
                    flow = Flow::Done(output);
                }
                other => {
                    flow = other;
                    break;
                }
            }
        }
        match flow {
            Flow::Pending => {}
            Flow::Failed(failure) => self.finish(now, RunEvent::RunFailed { failure }, out),
            // Actions still running or waiting for a retry keep the run open.
            Flow::Done(output) if self.tasks.values().all(|t| t.outcome.is_some()) => {
                self.finish(now, RunEvent::RunCompleted { output }, out);
            }
            Flow::Done(_) => {}
        }
    }

    /// Whether each of these actions has an outcome or was never started.
    fn actions_settled(&self, actions: &[String]) -> bool {
        actions.iter().all(|id| self.tasks.get(id.as_str()).is_none_or(|t| t.outcome.is_some()))
    }

    fn eval_seq(
        &mut self,
        nodes: &[Node],
        last: &Json,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        let mut last = last.clone();
        for node in nodes {
            match self.eval_node(node, &last, now, out) {
                Flow::Done(output) => last = output,
                other => return other,
            }
        }
        Flow::Done(last)
    }

    fn eval_node(
        &mut self,
        node: &Node,
        last: &Json,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        match node {
            Node::Step(step) => {
                match self.eval_task(&step.id, TaskKind::Step, Call::of(step), last, now, out) {
                    TaskFlow::Done(output) => Flow::Done(output),
                    TaskFlow::Pending => Flow::Pending,
                    TaskFlow::Failed(error, attempts) => Flow::Failed(task_failure(
                        format!("step `{}`", step.id),
                        &step.id,
                        error,
                        attempts,
                    )),
                }
            }
            Node::Action(action) => {
                // Started, never waited for: its outcome only keeps the run open.
                let call = Call::of(action);
                let _ = self.eval_task(&action.id, TaskKind::Action, call, last, now, out);
                Flow::Done(last.clone())
            }
            Node::If(node) => {
                for (i, branch) in node.branches.iter().enumerate() {
                    let key = format!("{}#{i}", node.id);
                    let condition =
                        Call { node_id: &node.id, handler: &branch.condition, timeout: None };
                    match self.eval_task(&key, TaskKind::Condition, condition, last, now, out) {
                        TaskFlow::Done(value) if value.is_truthy() => {
                            return self.eval_seq(&branch.nodes, last, now, out);
                        }
                        TaskFlow::Done(_) => {}
                        TaskFlow::Pending => return Flow::Pending,
                        TaskFlow::Failed(error, attempts) => {
                            return Flow::Failed(task_failure(
                                format!("condition {i} of `{}`", node.id),
                                &key,
                                error,
                                attempts,
                            ));
                        }
                    }
                }
                match &node.else_nodes {
                    Some(nodes) => self.eval_seq(nodes, last, now, out),
                    None => Flow::Done(last.clone()),
                }
            }
            Node::Parallel(node) => {
                let mut outputs = Vec::with_capacity(node.branches.len());
                let mut pending = false;
                for branch in &node.branches {
                    match self.eval_seq(&branch.nodes, last, now, out) {
                        Flow::Done(output) => outputs.push(output),
                        Flow::Pending => pending = true,
                        failed @ Flow::Failed(_) => return failed,
                    }
                }
                if pending { Flow::Pending } else { Flow::Done(join_outputs(&outputs)) }
            }
            other => Flow::Failed(RunFailure {
                kind: FailureKind::TaskFailed,
                message: format!("node `{}`: not supported yet: {}", other.id(), other.kind()),
                task: None,
                error: None,
            }),
        }
    }

    /// The state of task `key`, dispatching its next attempt if it is ready for one.
    fn eval_task(
        &mut self,
        key: &str,
        kind: TaskKind,
        node: Call<'_>,
        last: &Json,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> TaskFlow {
        let attempt = match self.tasks.get(key) {
            Some(state) => {
                match &state.outcome {
                    Some(Ok(output)) => return TaskFlow::Done(output.clone()),
                    Some(Err(error)) => return TaskFlow::Failed(error.clone(), state.failures),
                    None => {}
                }
                if state.in_flight.is_some() || state.retry_at.is_some_and(|at| at > now) {
                    return TaskFlow::Pending;
                }
                state.failures + 1
            }
            None => 1,
        };
        let key = TaskKey::new(key);
        // `retry_at` stays as recorded: it is history, and replay must see the same state.
        let state = self.tasks.entry(key.clone()).or_default();
        state.in_flight = Some(InFlight { attempt, started_at: now });
        if let Some(at) = state.retry_at {
            self.retries.remove(&(at, key.clone()));
        }
        let timeout = node.timeout.or(self.def.def.options.step_timeout);
        let task = Task {
            run_id: self.run_id,
            workflow_id: Arc::clone(&self.def.workflow_id),
            workflow_version: self.def.version.clone(),
            revision: self.def.revision,
            node_id: Arc::from(node.node_id),
            idempotency_key: format!("{}/{}", self.run_id, key),
            key,
            kind,
            handler: Arc::from(node.handler),
            attempt,
            timeout,
            deadline: timeout.and_then(|t| chrono::Duration::from_std(t).ok()).map(|t| now + t),
            context: TaskContext {
                payload: self.payload.clone(),
                steps: Arc::clone(&self.outputs),
                last: last.clone(),
                // Filled in by the driver, which keeps the run's trigger context.
                trigger: Json::null(),
                ..TaskContext::default()
            },
        };
        out.push(Command::Dispatch(Box::new(task)));
        TaskFlow::Pending
    }

    /// The retry policy of task `key`: its node's own, else the workflow default.
    pub(super) fn retry_policy(&self, key: &TaskKey) -> Option<&RetryPolicy> {
        let own = if key.as_str().contains('#') { None } else { self.def.task_node(key.as_str()) };
        own.and_then(|n| n.retry.as_ref()).or(self.def.def.options.retry.as_ref())
    }
}

impl super::RunDefinition {
    /// The `step` or `action` node with id `id`.
    pub(crate) fn task_node(&self, id: &str) -> Option<&TaskNode> {
        fn find<'a>(nodes: &'a [Node], id: &str) -> Option<&'a TaskNode> {
            nodes.iter().find_map(|node| match node {
                Node::Step(t) | Node::Action(t) if t.id == id => Some(t),
                other => other.children().into_iter().find_map(|(_, seq)| find(seq, id)),
            })
        }
        find(&self.def.nodes, id)
    }
}

fn task_failure(what: String, key: &str, error: TaskError, attempts: u32) -> RunFailure {
    let plural = if attempts == 1 { "" } else { "s" };
    RunFailure {
        kind: FailureKind::TaskFailed,
        message: format!("{what} failed after {attempts} attempt{plural}: {error}"),
        task: Some(TaskKey::new(key)),
        error: Some(error),
    }
}

/// `[out1, out2, ...]` from raw outputs, without re-parsing them.
fn join_outputs(outputs: &[Json]) -> Json {
    let mut text = String::with_capacity(outputs.iter().map(|o| o.len() + 1).sum::<usize>() + 2);
    text.push('[');
    for (i, output) in outputs.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(output.as_str());
    }
    text.push(']');
    Json::from_string(text).unwrap_or_default()
}
