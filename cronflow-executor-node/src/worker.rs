//! One worker as the pool sees it: its connection, its in-flight tasks and what it reports.
//! Starting one is in [`crate::startup`]; its process is in [`crate::process`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use cronflow_core::{Json, StateHandle, TaskError};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};

use crate::process::Stop;

/// Name of the retryable error of tasks in flight on a worker that exited or disconnected.
pub const WORKER_CRASHED: &str = "WorkerCrashed";

/// The error of a task lost with its worker.
pub(crate) fn worker_crashed(detail: &str) -> TaskError {
    TaskError::new(WORKER_CRASHED, detail.to_string())
}

/// Internal: the task was lost with a worker stopped for another task's sake; the executor
/// runs it on another worker instead of failing it (never seen by the engine).
pub(crate) const SEND_ELSEWHERE: &str = "cronflow.SendElsewhere";

fn sent_elsewhere(detail: &str) -> TaskError {
    TaskError::new(SEND_ELSEWHERE, detail.to_string())
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a worker tells its pool. Called from the worker's reader and monitor tasks, never
/// with a worker lock held.
pub(crate) trait WorkerEvents: Send + Sync {
    /// A task finished, or an abandoned task finally answered: the worker has a free slot.
    fn slot_freed(self: Arc<Self>, worker: &Arc<Worker>);
    /// The worker reported its V8 heap usage.
    fn heap_reported(self: Arc<Self>, worker: &Arc<Worker>, heap_used: u64);
    /// The process has exited and its in-flight tasks have been failed.
    fn exited(self: Arc<Self>, worker: &Arc<Worker>);
}

/// Whether the worker acknowledged the `cancel` of an abandoned task. If not, its event loop
/// is blocked (a synchronous handler that never returns), and nothing else on it will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acknowledged(pub(crate) bool);

/// A task waiting for its result.
pub(crate) struct Pending {
    /// Where the result goes.
    pub(crate) reply: oneshot::Sender<Result<Json, TaskError>>,
    /// For logs: the run.
    pub(crate) run_id: String,
    /// For logs: the node.
    pub(crate) node_id: Arc<str>,
    /// The task's workflow state, which its handler reaches with `state` messages.
    pub(crate) state: Option<StateHandle>,
}

#[derive(Default)]
struct State {
    /// Set once the worker is gone: no task may be registered any more.
    closed: bool,
    tasks: HashMap<u64, Pending>,
    /// Tasks the engine gave up on (timeout, cancel) whose handler has not returned yet,
    /// with whether the worker acknowledged the `cancel` (its event loop is turning).
    /// While there are any, the worker gets no new task: it may be stuck.
    abandoned: HashMap<u64, bool>,
    /// Tasks ever registered.
    dispatched: u64,
    /// When the worker last became idle; `None` while it has work.
    idle_since: Option<Instant>,
}

impl State {
    fn load(&self) -> usize {
        self.tasks.len() + self.abandoned.len()
    }

    fn mark_idle(&mut self) {
        if self.load() == 0 {
            self.idle_since = Some(Instant::now());
        }
    }
}

/// A running worker. Dropping the last reference kills its process group.
pub(crate) struct Worker {
    /// Number of the worker within its pool (1, 2, ...; replacements get new numbers).
    pub(crate) number: u64,
    /// OS process id, also the id of its process group.
    pub(crate) pid: u32,
    state: Mutex<State>,
    out: mpsc::UnboundedSender<String>,
    stops: mpsc::UnboundedSender<Stop>,
    exited: watch::Receiver<bool>,
    stuck: AtomicBool,
    /// The maximum line size of the protocol, both directions.
    pub(crate) max_frame: usize,
}

impl Worker {
    pub(crate) fn new(
        number: u64,
        pid: u32,
        out: mpsc::UnboundedSender<String>,
        stops: mpsc::UnboundedSender<Stop>,
        exited: watch::Receiver<bool>,
        max_frame: usize,
    ) -> Self {
        let state = State { idle_since: Some(Instant::now()), ..State::default() };
        Self {
            number,
            pid,
            state: Mutex::new(state),
            out,
            stops,
            exited,
            stuck: AtomicBool::new(false),
            max_frame,
        }
    }

    /// The workflow state of task `id`: `Err` with the reason when the task is not in flight
    /// (finished, timed out or cancelled: the engine no longer waits for it) or has none.
    pub(crate) fn task_state(&self, id: u64) -> Result<StateHandle, &'static str> {
        let state = lock(&self.state);
        let pending = state.tasks.get(&id).ok_or("the task is no longer in flight")?;
        pending.state.clone().ok_or("the task has no workflow state")
    }

    /// Tasks in flight that the engine still waits for.
    pub(crate) fn awaited(&self) -> usize {
        lock(&self.state).tasks.len()
    }

    /// Since when the worker has had nothing to do, if it is idle.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        lock(&self.state).idle_since
    }

    /// Whether the process has exited.
    pub(crate) fn has_exited(&self) -> bool {
        *self.exited.borrow()
    }

    /// The load of the worker if it may take a task under `limit`: alive, not suspected of
    /// being stuck, and below the limit.
    pub(crate) fn eligible_load(&self, limit: usize) -> Option<usize> {
        let state = lock(&self.state);
        let load = state.load();
        (!state.closed && state.abandoned.is_empty() && load < limit).then_some(load)
    }

    /// Registers task `id`; returns how many tasks the worker has been given in all, or the
    /// task back when the worker is gone.
    pub(crate) fn register(&self, id: u64, pending: Pending) -> Result<u64, Pending> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(pending);
        }
        state.tasks.insert(id, pending);
        state.dispatched += 1;
        state.idle_since = None;
        Ok(state.dispatched)
    }

    /// The engine gave up on task `id`: its result will be discarded, and until it arrives
    /// the worker takes no new task. True if the task was still in flight.
    pub(crate) fn abandon(&self, id: u64) -> bool {
        let mut state = lock(&self.state);
        if state.tasks.remove(&id).is_none() {
            return false;
        }
        if !state.closed {
            state.abandoned.insert(id, false);
        }
        true
    }

    /// Marks the worker stuck; true the first time.
    pub(crate) fn mark_stuck(&self) -> bool {
        !self.stuck.swap(true, Ordering::AcqRel)
    }

    /// Whether abandoned task `id` is still running: `None` if it has returned, else
    /// whether the worker acknowledged its `cancel`.
    pub(crate) fn abandoned(&self, id: u64) -> Option<Acknowledged> {
        lock(&self.state).abandoned.get(&id).map(|&acked| Acknowledged(acked))
    }

    /// Queues one line (without its newline) for the socket; false if the connection is gone.
    pub(crate) fn send(&self, mut line: String) -> bool {
        line.push('\n');
        self.out.send(line).is_ok()
    }

    /// Asks the worker to finish its tasks and exit.
    pub(crate) fn send_shutdown(&self) {
        self.send(r#"{"type":"shutdown"}"#.to_string());
    }

    /// Stops the process group (see [`Stop`]).
    pub(crate) fn stop(&self, how: Stop) {
        let _ = self.stops.send(how);
    }

    /// Waits until the process has exited.
    pub(crate) async fn wait_exit(&self) {
        let mut rx = self.exited.clone();
        let _ = rx.wait_for(|exited| *exited).await;
    }

    /// Delivers the result of task `id`; true if a slot was freed.
    fn complete(&self, id: u64, result: Result<Json, TaskError>) -> bool {
        let pending = {
            let mut state = lock(&self.state);
            let pending = state.tasks.remove(&id);
            let freed = pending.is_some() || state.abandoned.remove(&id).is_some();
            if !freed {
                return false;
            }
            state.mark_idle();
            pending
        };
        if let Some(p) = pending {
            let _ = p.reply.send(result);
        }
        true
    }

    /// Fails every in-flight task as [`WORKER_CRASHED`] and refuses new ones.
    pub(crate) fn fail_all(&self, detail: &str) {
        let tasks = {
            let mut state = lock(&self.state);
            state.closed = true;
            state.abandoned.clear();
            std::mem::take(&mut state.tasks)
        };
        if !tasks.is_empty() {
            tracing::warn!(
                worker = self.number,
                pid = self.pid,
                tasks = tasks.len(),
                "failing in-flight tasks: {detail}"
            );
        }
        // A worker stopped because *another* task was stuck: its other tasks are not at fault
        // (with a blocked event loop most never started); the executor sends them elsewhere.
        let stuck = self.stuck.load(Ordering::Acquire);
        for (_, p) in tasks {
            let error = if stuck { sent_elsewhere(detail) } else { worker_crashed(detail) };
            let _ = p.reply.send(Err(error));
        }
    }

    /// The run and node of task `id`, for its log lines.
    fn task_fields(&self, id: Option<u64>) -> (String, String) {
        let state = lock(&self.state);
        match id.and_then(|id| state.tasks.get(&id)) {
            Some(p) => (p.run_id.clone(), p.node_id.to_string()),
            None => (String::new(), String::new()),
        }
    }
}

/// A message from the worker. One flat struct (not a tagged enum) so `output` keeps its raw
/// text and is parsed only once.
#[derive(Deserialize)]
pub(crate) struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: Cow<'a, str>,
    #[serde(default)]
    pub(crate) id: Option<u64>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default, deserialize_with = "raw_json")]
    output: Option<Json>,
    #[serde(default)]
    pub(crate) error: Option<TaskError>,
    #[serde(default, borrow)]
    level: Option<Cow<'a, str>>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, borrow)]
    fields: Option<&'a RawValue>,
    #[serde(default)]
    pub(crate) workflows: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub(crate) protocol: Option<u32>,
    #[serde(default)]
    heap_used: Option<u64>,
    /// A `state` request: its number, operation, scope, key, value, TTL and increment.
    #[serde(default)]
    pub(crate) req: Option<u64>,
    #[serde(default, borrow)]
    pub(crate) op: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) scope: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) key: Option<String>,
    #[serde(default, deserialize_with = "raw_json")]
    pub(crate) value: Option<Json>,
    #[serde(default)]
    pub(crate) ttl_ms: Option<u64>,
    #[serde(default)]
    pub(crate) by: Option<i64>,
}

fn raw_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize_raw(d).map(Some)
}

/// Handles one line after `ready`.
pub(crate) fn handle_line(
    worker: &Arc<Worker>,
    events: &Weak<dyn WorkerEvents>,
    line: &str,
) -> Result<(), String> {
    let message: Incoming<'_> = serde_json::from_str(line).map_err(|e| e.to_string())?;
    match message.kind.as_ref() {
        "result" => {
            let id = message.id.ok_or("a result without an id")?;
            let result = if message.ok == Some(true) {
                Ok(message.output.unwrap_or_default())
            } else {
                Err(message.error.unwrap_or_else(|| {
                    TaskError::new("ProtocolError", "the worker sent a failed result without error")
                }))
            };
            if worker.complete(id, result)
                && let Some(events) = events.upgrade()
            {
                events.slot_freed(worker);
            }
        }
        "cancelling" => {
            let id = message.id.ok_or("a cancel acknowledgement without an id")?;
            if let Some(acked) = lock(&worker.state).abandoned.get_mut(&id) {
                *acked = true;
            }
        }
        "state" => crate::state::serve(worker, &message)?,
        "log" => log(worker, &message),
        "stats" => {
            if let (Some(heap), Some(events)) = (message.heap_used, events.upgrade()) {
                events.heap_reported(worker, heap);
            }
        }
        other => {
            tracing::debug!(worker = worker.number, "ignored a `{other}` message from the worker")
        }
    }
    Ok(())
}

/// A `ctx.log.*` line (or a worker diagnostic) into `tracing`, with the task's run and node.
fn log(worker: &Worker, message: &Incoming<'_>) {
    let (run, node) = worker.task_fields(message.id);
    let text = message.message.as_deref().unwrap_or_default();
    let fields = message.fields.map(RawValue::get).unwrap_or("{}");
    let (number, pid) = (worker.number, worker.pid);
    match message.level.as_deref() {
        Some("error") => {
            tracing::error!(worker = number, pid, run = %run, node = %node, fields = %fields, "{text}")
        }
        Some("warn") => {
            tracing::warn!(worker = number, pid, run = %run, node = %node, fields = %fields, "{text}")
        }
        Some("debug") => {
            tracing::debug!(worker = number, pid, run = %run, node = %node, fields = %fields, "{text}")
        }
        _ => {
            tracing::info!(worker = number, pid, run = %run, node = %node, fields = %fields, "{text}")
        }
    }
}
