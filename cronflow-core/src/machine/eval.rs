//! The walk over the node tree that decides what is finished, what failed and what to
//! dispatch next. It reads only recorded state, so live execution and replay agree.
//! Loops are in `loops.rs`, waits and subflows in `waits.rs`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Command, InFlight, RunMachine};
use crate::event::{FailureKind, RunEvent, RunFailure, WaitOutcome};
use crate::id::TaskKey;
use crate::json::Json;
use crate::retry::RetryPolicy;
use crate::task::{Task, TaskContext, TaskError, TaskKind};
use crate::wdo::{BranchesNode, Node, TaskNode};

/// Where a node or a sequence stands.
pub(super) enum Flow {
    /// Finished, with its output.
    Done(Json),
    /// Waiting for a task, a timer or a signal.
    Pending,
    /// Failed; the run fails with this.
    Failed(Box<RunFailure>),
    /// A `cancel` node (or a cancelled child run) ends the run as cancelled.
    Cancelled(Option<String>),
}

/// What a task calls, borrowed from its node: building it costs nothing on the walk.
#[derive(Clone)]
pub(super) struct Call<'a> {
    pub(super) node_id: &'a str,
    pub(super) handler: &'a str,
    pub(super) kind: TaskKind,
    pub(super) timeout: Option<std::time::Duration>,
    /// For `on_pause`: the resume token.
    pub(super) token: Option<Arc<str>>,
    /// For `on_error` and `on_failure`: the error.
    pub(super) error: Option<TaskError>,
}

impl<'a> Call<'a> {
    pub(super) fn new(node_id: &'a str, handler: &'a str, kind: TaskKind) -> Self {
        Self { node_id, handler, kind, timeout: None, token: None, error: None }
    }

    fn of(node: &'a TaskNode, kind: TaskKind) -> Self {
        Self { timeout: node.timeout, ..Self::new(&node.id, &node.handler, kind) }
    }
}

/// Where a single task stands.
pub(super) enum TaskFlow {
    Done(Json),
    Pending,
    Failed(TaskError, u32),
}

/// The loop iteration a node is walked in: the key suffix, and what its tasks read.
#[derive(Debug, Clone, Default)]
pub(super) struct Scope {
    /// `""` outside loops, else `@i`, `@i.j`, ... (outermost first).
    pub(super) suffix: String,
    pub(super) item: Option<Json>,
    pub(super) index: Option<u32>,
    /// Outputs of this iteration's steps so far, by node id: a loop body's tasks see their
    /// own iteration's steps (and those of enclosing iterations).
    pub(super) steps: BTreeMap<String, Json>,
}

impl Scope {
    /// The scope of iteration `index` of a loop walked in `self`.
    pub(super) fn iteration(&self, index: usize, item: Option<Json>) -> Scope {
        let suffix = if self.suffix.is_empty() {
            format!("@{index}")
        } else {
            format!("{}.{index}", self.suffix)
        };
        let index = u32::try_from(index).ok();
        Scope { suffix, item, index, steps: self.steps.clone() }
    }

    /// The key of node `id` in this scope (no allocation outside loops).
    pub(super) fn key<'a>(&self, id: &'a str) -> Cow<'a, str> {
        if self.suffix.is_empty() {
            Cow::Borrowed(id)
        } else {
            Cow::Owned(format!("{id}{}", self.suffix))
        }
    }

    /// The key of node `id`'s `tag` handler (`items`, `on_error`, ...) in this scope.
    pub(super) fn tagged(&self, id: &str, tag: &str) -> String {
        format!("{id}#{tag}{}", self.suffix)
    }

    /// Whether `key` is in this scope's iteration or one nested in it.
    fn contains(&self, key: &TaskKey) -> bool {
        let own = self.suffix.trim_start_matches('@');
        if own.is_empty() {
            return true;
        }
        let path = key.as_str().split_once('@').map_or("", |(_, p)| p);
        path == own || path.strip_prefix(own).is_some_and(|rest| rest.starts_with('.'))
    }
}

impl RunMachine {
    /// Walks the tree from the first unfinished top-level node, dispatching every task that
    /// is ready, and records the run's end when the tree is finished or has failed.
    pub(super) fn advance(&mut self, now: DateTime<Utc>, out: &mut Vec<Command>) {
        if self.status.is_terminal() || !self.admitted {
            return;
        }
        let def = Arc::clone(&self.def);
        let mut scope = Scope::default();
        let mut flow = Flow::Done(self.cursor_last.clone());
        let mut last = self.cursor_last.clone();
        // The cursor moves past a finished node only once every action in it has settled:
        // an action waiting for a retry must still be visited to be dispatched again.
        let mut settled = true;
        for (i, node) in def.def.nodes.iter().enumerate().skip(self.cursor) {
            self.unsettled = false;
            match self.eval_node(node, &last, &mut scope, now, out) {
                Flow::Done(output) => {
                    settled = settled && !self.unsettled;
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
            Flow::Cancelled(reason) => self.finish(now, RunEvent::RunCancelled { reason }, out),
            Flow::Failed(failure) => self.end_with_hook(now, Err(*failure), out),
            // Actions still running or waiting for a retry keep the run open.
            Flow::Done(output) if settled => self.end_with_hook(now, Ok(output), out),
            Flow::Done(_) => {}
        }
    }

    /// Runs the workflow's hook for this end, if it has one, then records the end.
    fn end_with_hook(
        &mut self,
        now: DateTime<Utc>,
        end: Result<Json, RunFailure>,
        out: &mut Vec<Command>,
    ) {
        let def = Arc::clone(&self.def);
        let (name, handler) = match &end {
            Ok(_) => ("on_success", def.def.hooks.on_success.as_deref()),
            Err(_) => ("on_failure", def.def.hooks.on_failure.as_deref()),
        };
        if let Some(handler) = handler {
            let key = format!("{name}#hook");
            let (last, error) = match &end {
                Ok(output) => (output.clone(), None),
                Err(failure) => (Json::null(), Some(failure_error(failure))),
            };
            let call = Call { error, ..Call::new(name, handler, TaskKind::Hook) };
            // A hook's own failure is recorded; it does not change the run's outcome.
            if let TaskFlow::Pending =
                self.eval_task(&key, call, &last, &Scope::default(), now, out)
            {
                return;
            }
        }
        let event = match end {
            Ok(output) => RunEvent::RunCompleted { output },
            Err(failure) => RunEvent::RunFailed { failure },
        };
        self.finish(now, event, out);
    }

    pub(super) fn eval_seq(
        &mut self,
        nodes: &[Node],
        last: &Json,
        scope: &mut Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        let mut last = last.clone();
        for node in nodes {
            match self.eval_node(node, &last, scope, now, out) {
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
        scope: &mut Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        match node {
            Node::Step(step) => {
                let flow = self.eval_handler_node(step, TaskKind::Step, last, scope, now, out);
                if let (Flow::Done(output), false) = (&flow, scope.suffix.is_empty()) {
                    scope.steps.insert(step.id.clone(), output.clone());
                }
                flow
            }
            Node::Action(action) => {
                // Started, never waited for: its outcome only keeps the run open.
                let flow = self.eval_handler_node(action, TaskKind::Action, last, scope, now, out);
                if matches!(flow, Flow::Pending) {
                    self.unsettled = true;
                }
                Flow::Done(last.clone())
            }
            Node::If(node) => {
                for (i, branch) in node.branches.iter().enumerate() {
                    let key = scope.tagged(&node.id, &i.to_string());
                    let condition = Call::new(&node.id, &branch.condition, TaskKind::Condition);
                    match self.eval_task(&key, condition, last, scope, now, out) {
                        TaskFlow::Done(value) if value.is_truthy() => {
                            return self.eval_seq(&branch.nodes, last, scope, now, out);
                        }
                        TaskFlow::Done(_) => {}
                        TaskFlow::Pending => return Flow::Pending,
                        TaskFlow::Failed(error, attempts) => {
                            let what = format!("condition {i} of `{}`", node.id);
                            return Flow::Failed(task_failure(what, &key, error, attempts));
                        }
                    }
                }
                match &node.else_nodes {
                    Some(nodes) => self.eval_seq(nodes, last, scope, now, out),
                    None => Flow::Done(last.clone()),
                }
            }
            Node::Parallel(node) => {
                let mut outputs = Vec::with_capacity(node.branches.len());
                let mut pending = false;
                for branch in &node.branches {
                    match self.eval_seq(&branch.nodes, last, scope, now, out) {
                        Flow::Done(output) => outputs.push(output),
                        Flow::Pending => pending = true,
                        other => return other,
                    }
                }
                if pending { Flow::Pending } else { Flow::Done(join_outputs(&outputs)) }
            }
            Node::Race(node) => self.eval_race(node, last, scope, now, out),
            Node::ForEach(node) => self.eval_for_each(node, last, scope, now, out),
            Node::Batch(node) => self.eval_batch(node, last, scope, now, out),
            Node::While(node) => self.eval_while(node, last, scope, now, out),
            Node::Sleep(node) => self.eval_sleep(node, last, scope, now, out),
            Node::Pause(node) => self.eval_pause(node, last, scope, now, out),
            Node::WaitForEvent(node) => self.eval_wait_for_event(node, last, scope, now, out),
            Node::Subflow(node) => self.eval_subflow(node, last, scope, now, out),
            Node::Cancel(node) => Flow::Cancelled(node.reason.clone()),
        }
    }

    /// A `step` or `action`: its task, then its `on_error` handler if the attempts ran out.
    fn eval_handler_node(
        &mut self,
        node: &TaskNode,
        kind: TaskKind,
        last: &Json,
        scope: &Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        let key = scope.key(&node.id);
        let (error, attempts) =
            match self.eval_task(&key, Call::of(node, kind), last, scope, now, out) {
                TaskFlow::Done(output) => return Flow::Done(output),
                TaskFlow::Pending => return Flow::Pending,
                TaskFlow::Failed(error, attempts) => (error, attempts),
            };
        let what = format!("{} `{}`", kind.as_str(), node.id);
        let Some(handler) = &node.on_error else {
            return Flow::Failed(task_failure(what, &key, error, attempts));
        };
        let fallback_key = scope.tagged(&node.id, "on_error");
        let call = Call { error: Some(error), ..Call::new(&node.id, handler, TaskKind::OnError) };
        match self.eval_task(&fallback_key, call, last, scope, now, out) {
            TaskFlow::Done(output) => Flow::Done(output),
            TaskFlow::Pending => Flow::Pending,
            TaskFlow::Failed(error, attempts) => Flow::Failed(task_failure(
                format!("the on_error handler of {what}"),
                &fallback_key,
                error,
                attempts,
            )),
        }
    }

    /// A `race`: the first branch to settle (finish, fail or cancel) decides it; the others
    /// are swept (`abandon`) when that is recorded.
    fn eval_race(
        &mut self,
        node: &BranchesNode,
        last: &Json,
        scope: &mut Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> Flow {
        let key = TaskKey::new(scope.key(&node.id));
        if let Some(&won) = self.races.get(&key) {
            let branch = &node.branches[won as usize];
            return self.eval_seq(&branch.nodes, last, scope, now, out);
        }
        // Only the winner's actions may keep the run open: a loser's are aborted below, so
        // an unsettled mark from walking them would leave the run with nothing to wait for.
        let outer = std::mem::replace(&mut self.unsettled, false);
        let mut unsettled = false;
        for (i, branch) in node.branches.iter().enumerate() {
            self.unsettled = false;
            let flow = self.eval_seq(&branch.nodes, last, scope, now, out);
            let own = std::mem::replace(&mut self.unsettled, outer);
            match flow {
                Flow::Pending => unsettled = unsettled || own,
                settled => {
                    self.unsettled = outer || own;
                    let branch = u32::try_from(i).unwrap_or(u32::MAX);
                    self.record(now, RunEvent::BranchWon { node: key, branch }, out);
                    for (j, loser) in node.branches.iter().enumerate() {
                        if j != i {
                            self.abandon(&loser.nodes, scope, now, out);
                        }
                    }
                    return settled;
                }
            }
        }
        self.unsettled = outer || unsettled;
        Flow::Pending
    }

    /// Sweeps a losing race branch: aborts its attempts in flight, forgets its retries, ends
    /// its open waits as abandoned and cancels its child runs.
    fn abandon(
        &mut self,
        nodes: &[Node],
        scope: &Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) {
        let mut ids = HashSet::new();
        collect_ids(nodes, &mut ids);
        let mine = |key: &TaskKey| ids.contains(key.node_id()) && scope.contains(key);
        for (key, state) in &mut self.tasks {
            if !mine(key) || state.outcome.is_some() {
                continue;
            }
            if let Some(flight) = state.in_flight.take() {
                out.push(Command::Abort { key: key.clone(), attempt: flight.attempt });
            }
            if let Some(at) = state.retry_at {
                self.retries.remove(&(at, key.clone()));
            }
        }
        let open: Vec<TaskKey> = self.open_waits().map(|(k, _)| k.clone()).filter(mine).collect();
        for wait in open {
            if let Some(crate::event::Wait::Subflow { child, .. }) =
                self.waits.get(&wait).map(|w| &w.on)
            {
                let reason = format!("its subflow `{}` lost a race", wait.node_id());
                out.push(Command::CancelRun { child: *child, reason });
            }
            let outcome = WaitOutcome::Abandoned;
            self.record(now, RunEvent::WaitEnded { wait, outcome }, out);
        }
    }

    /// The state of task `key`, dispatching its next attempt if it is ready for one.
    pub(super) fn eval_task(
        &mut self,
        key: &str,
        call: Call<'_>,
        last: &Json,
        scope: &Scope,
        now: DateTime<Utc>,
        out: &mut Vec<Command>,
    ) -> TaskFlow {
        let attempt = match self.next_attempt(key, now) {
            Ok(attempt) => attempt,
            Err(flow) => return flow,
        };
        let key = TaskKey::new(key);
        // `retry_at` stays as recorded: it is history, and replay must see the same state.
        let state = self.tasks.entry(key.clone()).or_default();
        state.in_flight = Some(InFlight { attempt, started_at: now });
        if let Some(at) = state.retry_at {
            self.retries.remove(&(at, key.clone()));
        }
        let timeout = call.timeout.or(self.def.def.options.step_timeout);
        let steps = if scope.steps.is_empty() {
            Arc::clone(&self.outputs)
        } else {
            let mut steps = (*self.outputs).clone();
            steps.extend(scope.steps.iter().map(|(k, v)| (k.clone(), v.clone())));
            Arc::new(steps)
        };
        let task = Task {
            run_id: self.run_id,
            workflow_id: Arc::clone(&self.def.workflow_id),
            workflow_version: self.def.version.clone(),
            revision: self.def.revision,
            node_id: Arc::from(call.node_id),
            idempotency_key: format!("{}/{}", self.run_id, key),
            key,
            kind: call.kind,
            handler: Arc::from(call.handler),
            attempt,
            timeout,
            deadline: timeout.and_then(|t| chrono::Duration::from_std(t).ok()).map(|t| now + t),
            context: TaskContext {
                payload: self.payload.clone(),
                steps,
                last: last.clone(),
                // Filled in by the driver, which keeps the run's trigger context.
                trigger: Json::null(),
                item: scope.item.clone(),
                index: scope.index,
                token: call.token,
                error: call.error,
                // Set by the driver, which holds one state handle per workflow.
                state: None,
            },
        };
        out.push(Command::Dispatch(Box::new(task)));
        TaskFlow::Pending
    }

    /// The attempt task `key` would be dispatched with now, or where it stands if it is
    /// not ready for one (finished, in flight, waiting for its retry time).
    pub(super) fn next_attempt(&self, key: &str, now: DateTime<Utc>) -> Result<u32, TaskFlow> {
        let Some(state) = self.tasks.get(key) else { return Ok(1) };
        match &state.outcome {
            Some(Ok(output)) => return Err(TaskFlow::Done(output.clone())),
            Some(Err(error)) => return Err(TaskFlow::Failed(error.clone(), state.failures)),
            None => {}
        }
        if state.in_flight.is_some() || state.retry_at.is_some_and(|at| at > now) {
            return Err(TaskFlow::Pending);
        }
        Ok(state.failures + 1)
    }

    /// The retry policy of task `key`: its node's own, else the workflow default.
    pub(super) fn retry_policy(&self, key: &TaskKey) -> Option<&RetryPolicy> {
        let own = if key.as_str().contains('#') { None } else { self.def.task_node(key.node_id()) };
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

fn collect_ids<'a>(nodes: &'a [Node], into: &mut HashSet<&'a str>) {
    for node in nodes {
        into.insert(node.id());
        for (_, children) in node.children() {
            collect_ids(children, into);
        }
    }
}

pub(super) fn task_failure(
    what: String,
    key: &str,
    error: TaskError,
    attempts: u32,
) -> Box<RunFailure> {
    let plural = if attempts == 1 { "" } else { "s" };
    Box::new(RunFailure {
        kind: FailureKind::TaskFailed,
        message: format!("{what} failed after {attempts} attempt{plural}: {error}"),
        task: Some(TaskKey::new(key)),
        error: Some(error),
    })
}

/// A failure of a node itself (not of a task).
pub(super) fn node_failure(kind: FailureKind, message: String) -> Box<RunFailure> {
    Box::new(RunFailure { kind, message, task: None, error: None })
}

/// What an `on_failure` hook reads as `error`: the failed task's error, else the failure.
fn failure_error(failure: &RunFailure) -> TaskError {
    failure.error.clone().unwrap_or_else(|| {
        let name = serde_json::to_value(failure.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "RunFailed".into());
        TaskError::new(name, failure.message.clone())
    })
}

/// `[out1, out2, ...]` from raw outputs, without re-parsing them.
pub(super) fn join_outputs(outputs: &[Json]) -> Json {
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
