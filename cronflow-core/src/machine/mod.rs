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

use crate::event::{
    FailureKind, RecordedEvent, RunEvent, RunFailure, RunStatus, Wait, WaitOutcome,
};
use crate::id::{RunId, TaskKey};
use crate::json::Json;
use crate::task::{Task, TaskError};
use crate::wdo::WorkflowDef;

mod apply;
mod eval;
mod loops;
mod signals;
mod waits;

pub use waits::token_hash;

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
    /// Start a child run (a `subflow`), in the same commit as this run's events. When it
    /// ends, give its end to [`RunMachine::child_finished`].
    StartRun {
        /// The child's id, already recorded in this run's `wait_started` event.
        child: RunId,
        /// Its workflow.
        workflow: String,
        /// Its payload.
        payload: Json,
        /// The subflow node waiting for it.
        parent_wait: TaskKey,
    },
    /// Cancel a child run: its parent has ended, or its subflow lost a `race`.
    CancelRun {
        /// The child.
        child: RunId,
        /// Why.
        reason: String,
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
}

impl RunDefinition {
    /// Wraps `def`, stored as `revision`.
    pub fn new(def: WorkflowDef, revision: u32) -> Arc<Self> {
        let workflow_id = Arc::from(def.id.as_str());
        let version = def.version.as_deref().map(Arc::from);
        Arc::new(Self { def, revision, workflow_id, version })
    }

    /// Whether runs of this workflow wait for admission (concurrency, rate limit or
    /// debounce) before their nodes start.
    pub fn is_flow_controlled(&self) -> bool {
        let options = &self.def.options;
        options.concurrency.is_some() || options.rate_limit.is_some() || options.debounce.is_some()
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
    /// The `seq` of the event that gave the task its outcome (orders it against waits).
    pub(crate) settled_seq: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct InFlight {
    pub(crate) attempt: u32,
    pub(crate) started_at: DateTime<Utc>,
}

/// Everything recorded about one wait of the run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WaitState {
    pub(crate) on: Wait,
    /// Hashes of every token issued for a pause (the first is in `on`).
    pub(crate) token_hashes: Vec<String>,
    pub(crate) outcome: Option<WaitOutcome>,
    /// The `seq` of the event that ended the wait.
    pub(crate) ended_seq: Option<u32>,
}

/// The finished prefix of a loop: derived from recorded outcomes (a cache, rebuilt by the
/// first walk after a replay), so that a long loop is not walked from its first iteration on
/// every event.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoopProgress {
    /// Iterations before this index are finished and settled.
    pub(crate) done: usize,
    /// Their outputs (`for_each`, `batch`).
    pub(crate) outputs: Vec<Json>,
    /// The last of them (`while`).
    pub(crate) last: Option<Json>,
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
    /// Every wait that has started: what it waits for and how it ended.
    pub waits: BTreeMap<TaskKey, (Wait, Option<WaitOutcome>)>,
    /// Decided races: the winning branch by race key.
    pub races: BTreeMap<TaskKey, u32>,
    /// Whether the run's nodes may run (false while a flow-controlled run waits).
    pub admitted: bool,
    /// The payload the run executes with (the last merged one for a debounced run).
    pub payload: Json,
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
    /// Every wait that has started, by key (ordered, so signals are handled in key order).
    waits: BTreeMap<TaskKey, WaitState>,
    /// Open waits' deadlines (sleep times, timeouts), earliest first.
    wait_deadlines: BTreeSet<(DateTime<Utc>, TaskKey)>,
    /// Decided races: the winning branch by race key.
    races: HashMap<TaskKey, u32>,
    /// False while a flow-controlled run waits for admission.
    admitted: bool,
    /// Resume tokens issued by this process, by pause key: only their hashes are recorded,
    /// the text lives here until `on_pause` has been dispatched with it.
    tokens: HashMap<TaskKey, Arc<str>>,
    /// Derived: finished prefixes of loops, by loop key.
    loops: HashMap<String, LoopProgress>,
    /// Derived: parsed item lists (or batch chunks) by items-task key.
    items: HashMap<String, Arc<[Json]>>,
    /// Set by the walk when it passes an action (or `on_error` of one) without an outcome.
    unsettled: bool,
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

    /// Starts a flow-controlled run: records `RunStarted` only. Its nodes start when the
    /// driver calls [`RunMachine::admit`]; until then [`RunMachine::merge_trigger`] may
    /// replace its payload (debounce).
    pub fn start_gated(
        def: Arc<RunDefinition>,
        run_id: RunId,
        payload: Json,
        now: DateTime<Utc>,
    ) -> (Self, Vec<Command>) {
        let mut machine = Self::empty(def, run_id, payload, now);
        machine.admitted = false;
        let mut out = Vec::new();
        machine.record(now, RunEvent::RunStarted, &mut out);
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
        machine.admitted = !machine.def.is_flow_controlled();
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

    /// Handles every timer due at `now`: retries whose delay has passed, sleeps whose time
    /// has come, pause and event timeouts, and the whole-run timeout.
    pub fn handle_timeout(&mut self, now: DateTime<Utc>) -> Vec<Command> {
        let mut out = Vec::new();
        if self.status.is_terminal() || self.check_deadline(now, &mut out) {
            return out;
        }
        self.end_due_waits(now, &mut out);
        self.advance(now, &mut out);
        // A due retry the walk did not take is unreachable (a race's loser, an `on_pause`
        // whose pause has ended): forget it rather than wake up for it again.
        while let Some((at, _)) = self.retries.first() {
            if *at > now {
                break;
            }
            self.retries.pop_first();
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
        let wait = self.wait_deadlines.first().map(|(at, _)| *at);
        retry.into_iter().chain(wait).chain(self.deadline()).min()
    }

    /// Whether the run's nodes may run: false while a flow-controlled run waits for
    /// [`RunMachine::admit`].
    pub fn admitted(&self) -> bool {
        self.admitted
    }

    /// The payload the run executes with.
    pub fn payload(&self) -> &Json {
        &self.payload
    }

    /// When the run started.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// The waits that have started and not ended, in key order.
    pub fn open_waits(&self) -> impl Iterator<Item = (&TaskKey, &Wait)> {
        self.waits.iter().filter(|(_, w)| w.outcome.is_none()).map(|(k, w)| (k, &w.on))
    }

    /// The token hashes of every open pause, with its key.
    pub fn open_pause_tokens(&self) -> impl Iterator<Item = (&TaskKey, &str)> {
        self.waits
            .iter()
            .filter(|(_, w)| w.outcome.is_none())
            .flat_map(|(k, w)| w.token_hashes.iter().map(move |h| (k, h.as_str())))
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
            waits: self
                .waits
                .iter()
                .map(|(k, w)| (k.clone(), (w.on.clone(), w.outcome.clone())))
                .collect(),
            races: self.races.iter().map(|(k, b)| (k.clone(), *b)).collect(),
            admitted: self.admitted,
            payload: self.payload.clone(),
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
            waits: BTreeMap::new(),
            wait_deadlines: BTreeSet::new(),
            races: HashMap::new(),
            admitted: true,
            tokens: HashMap::new(),
            loops: HashMap::new(),
            items: HashMap::new(),
            unsettled: false,
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

    /// Records a terminal event, aborts whatever is still in flight and cancels the child
    /// runs still waited for.
    fn finish(&mut self, now: DateTime<Utc>, event: RunEvent, out: &mut Vec<Command>) {
        for (key, state) in &mut self.tasks {
            if let Some(flight) = state.in_flight.take() {
                out.push(Command::Abort { key: key.clone(), attempt: flight.attempt });
            }
        }
        let status = event.terminal_status().map_or("ended", |s| s.as_str());
        for (_, wait) in self.open_waits() {
            if let Wait::Subflow { child, .. } = wait {
                let reason = format!("its parent run {} {status}", self.run_id);
                out.push(Command::CancelRun { child: *child, reason });
            }
        }
        self.record(now, event, out);
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_control;
