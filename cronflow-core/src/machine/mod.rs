//! The run state machine: pure, sans-IO execution semantics of one run.
//!
//! [`RunMachine`] knows no clock, no tokio, no store and no executor. It takes inputs
//! (a task's result, the current time, a cancel request) and returns [`Command`]s for its
//! driver (the [`Engine`](crate::Engine)) to carry out: events to record, tasks to dispatch,
//! attempts to abort. Its whole state is a function of the events it has recorded, so
//! [`RunMachine::replay`] rebuilds it from a stored history after a crash.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::event::{FailureKind, RecordedEvent, RunEvent, RunFailure, RunStatus};
use crate::id::{RunId, TaskKey};
use crate::json::Json;
use crate::task::{Task, TaskError};
use crate::wdo::{Node, WorkflowDef};

mod eval;

/// What the driver must do after feeding the machine an input. Carry the commands out in
/// order: first make every [`Command::Record`] of a turn durable, then dispatch and abort.
#[derive(Debug, Clone)]
#[must_use]
pub enum Command {
    /// Append this event to the run's history. The state machine has already applied it.
    Record(RecordedEvent),
    /// Hand this task to the executor. Its result goes back through
    /// [`RunMachine::handle_task_result`] with the same key and attempt.
    Dispatch(Box<Task>),
    /// Drop this in-flight attempt: its result is no longer wanted (and would be discarded).
    Abort {
        /// The task.
        key: TaskKey,
        /// The attempt.
        attempt: u32,
    },
}

/// A workflow definition as a run executes it: the definition plus its stored revision.
#[derive(Debug, Clone)]
pub struct RunDefinition {
    /// The definition.
    pub def: WorkflowDef,
    /// Its stored revision.
    pub revision: u32,
    pub(crate) workflow_id: Arc<str>,
    pub(crate) version: Option<Arc<str>>,
    /// Per top-level node, the ids of the `action` nodes inside it (itself included).
    pub(crate) top_level_actions: Vec<Vec<String>>,
}

impl RunDefinition {
    /// Wraps `def`, stored as `revision`.
    pub fn new(def: WorkflowDef, revision: u32) -> Arc<Self> {
        let workflow_id = Arc::from(def.id.as_str());
        let version = def.version.as_deref().map(Arc::from);
        fn collect(node: &Node, into: &mut Vec<String>) {
            if let Node::Action(action) = node {
                into.push(action.id.clone());
            }
            for (_, children) in node.children() {
                children.iter().for_each(|child| collect(child, into));
            }
        }
        let top_level_actions = def
            .nodes
            .iter()
            .map(|node| {
                let mut actions = Vec::new();
                collect(node, &mut actions);
                actions
            })
            .collect();
        Arc::new(Self { def, revision, workflow_id, version, top_level_actions })
    }
}

/// Everything recorded about one task of the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TaskState {
    /// Failed attempts recorded so far.
    pub(crate) failures: u32,
    /// When the next attempt is due, while waiting for a retry.
    pub(crate) retry_at: Option<DateTime<Utc>>,
    /// The final outcome, once there is one.
    pub(crate) outcome: Option<Result<Json, TaskError>>,
    /// The attempt currently with the executor (not part of the recorded state).
    pub(crate) in_flight: Option<InFlight>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct InFlight {
    pub(crate) attempt: u32,
    pub(crate) started_at: DateTime<Utc>,
}

/// The recorded part of a machine's state, for comparing a live machine with a replayed one.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineSnapshot {
    /// Events recorded so far.
    pub recorded: u32,
    /// Terminal status, if finished.
    pub status: RunStatus,
    /// Every task that has recorded something.
    pub tasks: BTreeMap<TaskKey, TaskSnapshot>,
}

/// The recorded state of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSnapshot {
    /// Failed attempts so far.
    pub failures: u32,
    /// When the last failure scheduled the next attempt (kept while that attempt runs).
    pub retry_at: Option<DateTime<Utc>>,
    /// The final outcome, once there is one.
    pub outcome: Option<Result<Json, TaskError>>,
}

/// The execution state of one run.
///
/// # Contract
///
/// - Inputs: [`RunMachine::start`] or [`RunMachine::replay`] + [`RunMachine::resume`] create
///   it; then [`handle_task_result`](RunMachine::handle_task_result) for every result of a
///   dispatched task, [`handle_timeout`](RunMachine::handle_timeout) whenever the time
///   returned by [`poll_timeout`](RunMachine::poll_timeout) has come, and
///   [`cancel`](RunMachine::cancel). Time (`now`) must not go backwards between calls.
/// - Outputs: each call returns the [`Command`]s to carry out. Every state change is a
///   [`Command::Record`]; the driver must make those durable before it dispatches anything
///   of the same call, or a crash could run a task whose cause was never recorded.
/// - Fencing: a result whose `(key, attempt)` is not the attempt in flight (timed out,
///   aborted, from before a restart) is ignored and returns no command.
/// - Once the run has recorded a terminal event ([`RunMachine::status`] is terminal) every
///   input is ignored.
#[derive(Debug)]
pub struct RunMachine {
    def: Arc<RunDefinition>,
    run_id: RunId,
    payload: Json,
    started_at: DateTime<Utc>,
    status: RunStatus,
    recorded: u32,
    tasks: HashMap<TaskKey, TaskState>,
    /// Retries waiting for their time, earliest first, so that `poll_timeout` costs
    /// O(log n) instead of a scan of every task of the run.
    retries: BTreeSet<(DateTime<Utc>, TaskKey)>,
    /// Outputs of succeeded step and action nodes, by node id, shared with dispatched tasks.
    outputs: Arc<BTreeMap<String, Json>>,
    /// Top-level nodes before this index are finished; `cursor_last` is the output of the
    /// last of them. Saves re-walking a long linear workflow on every event.
    cursor: usize,
    cursor_last: Json,
}

/// A stored history that cannot be replayed against its definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot replay run {run_id}: {message}")]
pub struct ReplayError {
    /// The run.
    pub run_id: RunId,
    /// What is wrong.
    pub message: String,
}

impl RunMachine {
    /// Starts a new run: records `RunStarted` and dispatches the first tasks.
    pub fn start(
        def: Arc<RunDefinition>,
        run_id: RunId,
        payload: Json,
        now: DateTime<Utc>,
    ) -> (Self, Vec<Command>) {
        let mut machine = Self::empty(def, run_id, payload, now);
        let mut out = Vec::new();
        machine.record(now, RunEvent::RunStarted, &mut out);
        machine.advance(now, &mut out);
        (machine, out)
    }

    /// Rebuilds a run from its recorded history. Nothing is dispatched until
    /// [`RunMachine::resume`] is called.
    pub fn replay(
        def: Arc<RunDefinition>,
        run_id: RunId,
        payload: Json,
        history: &[RecordedEvent],
    ) -> Result<Self, ReplayError> {
        let fail = |message: String| ReplayError { run_id, message };
        let first = history.first().ok_or_else(|| fail("the history is empty".into()))?;
        if first.event != RunEvent::RunStarted {
            return Err(fail(format!("the history starts with {}", first.event.kind())));
        }
        let mut machine = Self::empty(def, run_id, payload, first.at);
        for (i, recorded) in history.iter().enumerate() {
            if recorded.seq as usize != i {
                return Err(fail(format!("event {i} has sequence number {}", recorded.seq)));
            }
            if machine.status.is_terminal() {
                return Err(fail(format!("event {i} comes after the run finished")));
            }
            machine.apply(&recorded.event);
            machine.recorded += 1;
        }
        Ok(machine)
    }

    /// After [`RunMachine::replay`]: dispatches every task that was in flight or due when
    /// the history was written (at least once delivery), and handles overdue timers.
    pub fn resume(&mut self, now: DateTime<Utc>) -> Vec<Command> {
        let mut out = Vec::new();
        self.check_deadline(now, &mut out);
        self.advance(now, &mut out);
        out
    }

    /// Feeds the result of attempt `attempt` of task `key`.
    pub fn handle_task_result(
        &mut self,
        now: DateTime<Utc>,
        key: &TaskKey,
        attempt: u32,
        result: Result<Json, TaskError>,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        if self.status.is_terminal() {
            return out;
        }
        let late = self.deadline().is_some_and(|deadline| deadline <= now);
        let Some(state) = self.tasks.get_mut(key) else { return out };
        let Some(flight) = state.in_flight.filter(|f| f.attempt == attempt) else {
            return out;
        };
        if late {
            // Too late: the run has timed out, whatever this attempt says.
            state.in_flight = None;
            self.check_deadline(now, &mut out);
            return out;
        }
        let event = match result {
            Ok(output) => RunEvent::TaskSucceeded {
                task: key.clone(),
                attempt,
                started_at: flight.started_at,
                output,
            },
            Err(error) => {
                let retry_at = self.retry_time(now, key, attempt, &error);
                RunEvent::TaskFailed {
                    task: key.clone(),
                    attempt,
                    started_at: flight.started_at,
                    error,
                    retry_at,
                }
            }
        };
        self.record(now, event, &mut out);
        self.advance(now, &mut out);
        out
    }

    /// Handles every timer due at `now`: retries whose delay has passed and the whole-run
    /// timeout.
    pub fn handle_timeout(&mut self, now: DateTime<Utc>) -> Vec<Command> {
        let mut out = Vec::new();
        if self.status.is_terminal() {
            return out;
        }
        if !self.check_deadline(now, &mut out) {
            self.advance(now, &mut out);
        }
        out
    }

    /// Cancels the run: records `RunCancelled` and aborts every attempt in flight.
    /// Does nothing if the run has finished.
    pub fn cancel(&mut self, now: DateTime<Utc>, reason: Option<String>) -> Vec<Command> {
        let mut out = Vec::new();
        if !self.status.is_terminal() {
            self.finish(now, RunEvent::RunCancelled { reason }, &mut out);
        }
        out
    }

    /// The earliest time at which [`RunMachine::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<DateTime<Utc>> {
        if self.status.is_terminal() {
            return None;
        }
        let retry = self.retries.first().map(|(at, _)| *at);
        retry.into_iter().chain(self.deadline()).min()
    }

    /// The run's status: [`RunStatus::Running`] until a terminal event is recorded.
    pub fn status(&self) -> RunStatus {
        self.status
    }

    /// The run's id.
    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    /// The definition the run executes.
    pub fn definition(&self) -> &Arc<RunDefinition> {
        &self.def
    }

    /// Attempts currently in flight, as `(key, attempt)`.
    pub fn in_flight(&self) -> impl Iterator<Item = (&TaskKey, u32)> {
        self.tasks.iter().filter_map(|(k, t)| t.in_flight.map(|f| (k, f.attempt)))
    }

    /// The recorded part of the state (everything but attempts in flight).
    pub fn snapshot(&self) -> MachineSnapshot {
        MachineSnapshot {
            recorded: self.recorded,
            status: self.status,
            tasks: self
                .tasks
                .iter()
                .filter(|(_, t)| t.failures > 0 || t.outcome.is_some())
                .map(|(k, t)| {
                    let snapshot = TaskSnapshot {
                        failures: t.failures,
                        retry_at: t.retry_at,
                        outcome: t.outcome.clone(),
                    };
                    (k.clone(), snapshot)
                })
                .collect(),
        }
    }

    fn empty(def: Arc<RunDefinition>, run_id: RunId, payload: Json, now: DateTime<Utc>) -> Self {
        Self {
            def,
            run_id,
            payload,
            started_at: now,
            status: RunStatus::Running,
            recorded: 0,
            tasks: HashMap::new(),
            retries: BTreeSet::new(),
            outputs: Arc::default(),
            cursor: 0,
            cursor_last: Json::null(),
        }
    }

    fn deadline(&self) -> Option<DateTime<Utc>> {
        let timeout = self.def.def.options.timeout?;
        Some(self.started_at + chrono::Duration::from_std(timeout).ok()?)
    }

    /// Fails the run if its timeout has passed; returns whether it did.
    fn check_deadline(&mut self, now: DateTime<Utc>, out: &mut Vec<Command>) -> bool {
        let Some(deadline) = self.deadline().filter(|d| *d <= now) else { return false };
        if self.status.is_terminal() {
            return false;
        }
        let timeout = self.def.def.options.timeout.unwrap_or_default();
        let failure = RunFailure {
            kind: FailureKind::RunTimedOut,
            message: format!("run timed out after {timeout:?} (deadline {deadline})"),
            task: None,
            error: None,
        };
        self.finish(now, RunEvent::RunFailed { failure }, out);
        true
    }

    fn retry_time(
        &self,
        now: DateTime<Utc>,
        key: &TaskKey,
        attempt: u32,
        error: &TaskError,
    ) -> Option<DateTime<Utc>> {
        if !error.retryable {
            return None;
        }
        let policy = self.retry_policy(key)?;
        if !policy.retries_error(&error.name) {
            return None;
        }
        let delay = policy.delay_before(attempt + 1, self.jitter_seed(key, attempt))?;
        let delay = chrono::Duration::from_std(delay).ok()?;
        // Truncate to whole microseconds, the precision stores keep.
        let at = now + delay;
        Some(at - chrono::Duration::nanoseconds(i64::from(at.timestamp_subsec_nanos() % 1000)))
    }

    fn jitter_seed(&self, key: &TaskKey, attempt: u32) -> u64 {
        // FNV-1a over run id, key and attempt: stable across processes and versions.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let bytes = self.run_id.as_uuid().into_bytes();
        for b in bytes.iter().chain(key.as_str().as_bytes()).chain(&attempt.to_le_bytes()) {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }

    /// Appends `event` to the history (as a command) and applies it.
    fn record(&mut self, now: DateTime<Utc>, event: RunEvent, out: &mut Vec<Command>) {
        self.apply(&event);
        out.push(Command::Record(RecordedEvent { seq: self.recorded, at: now, event }));
        self.recorded += 1;
    }

    /// Records a terminal event and aborts whatever is still in flight.
    fn finish(&mut self, now: DateTime<Utc>, event: RunEvent, out: &mut Vec<Command>) {
        for (key, state) in &mut self.tasks {
            if let Some(flight) = state.in_flight.take() {
                out.push(Command::Abort { key: key.clone(), attempt: flight.attempt });
            }
        }
        self.record(now, event, out);
    }

    /// The one place where recorded events change the state, live and in replay alike.
    fn apply(&mut self, event: &RunEvent) {
        match event {
            RunEvent::RunStarted => {}
            RunEvent::TaskSucceeded { task, attempt, output, .. } => {
                let state = self.tasks.entry(task.clone()).or_default();
                if let Some(at) = state.retry_at {
                    self.retries.remove(&(at, task.clone()));
                }
                state.failures = attempt.saturating_sub(1);
                state.retry_at = None;
                state.in_flight = None;
                state.outcome = Some(Ok(output.clone()));
                if !task.as_str().contains('#') {
                    Arc::make_mut(&mut self.outputs).insert(task.to_string(), output.clone());
                }
            }
            RunEvent::TaskFailed { task, attempt, error, retry_at, .. } => {
                let state = self.tasks.entry(task.clone()).or_default();
                if let Some(at) = state.retry_at {
                    self.retries.remove(&(at, task.clone()));
                }
                state.failures = *attempt;
                state.in_flight = None;
                state.retry_at = *retry_at;
                match retry_at {
                    Some(at) => {
                        self.retries.insert((*at, task.clone()));
                    }
                    None => state.outcome = Some(Err(error.clone())),
                }
            }
            other => {
                if let Some(status) = other.terminal_status() {
                    self.status = status;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
