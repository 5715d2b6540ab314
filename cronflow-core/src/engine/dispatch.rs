//! [`Dispatcher`]: hands tasks to the executor under the concurrency limit, enforces their
//! timeouts, and turns whatever happens to them (output, error, timeout, panic) into a result
//! for the driver.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::debug;

use crate::engine::clock::Clock;
use crate::engine::driver::Input;
use crate::executor::Executor;
use crate::id::{RunId, TaskKey};
use crate::json::Json;
use crate::task::{Task, TaskError};

type AttemptId = (RunId, TaskKey, u32);

pub(crate) struct Dispatcher {
    executor: Arc<dyn Executor>,
    results: mpsc::UnboundedSender<Input>,
    clock: Arc<dyn Clock>,
    limit: usize,
    /// Submitted this turn; handed over only after the turn's events are durable.
    pending: Vec<Task>,
    /// Waiting for a free slot.
    queue: VecDeque<Task>,
    running: HashMap<AttemptId, AbortHandle>,
    stopped: bool,
}

impl Dispatcher {
    pub(crate) fn new(
        executor: Arc<dyn Executor>,
        results: mpsc::UnboundedSender<Input>,
        clock: Arc<dyn Clock>,
        limit: usize,
    ) -> Self {
        Self {
            executor,
            results,
            clock,
            limit,
            pending: Vec::new(),
            queue: VecDeque::new(),
            running: HashMap::new(),
            stopped: false,
        }
    }

    pub(crate) fn submit(&mut self, task: Task) {
        if !self.stopped {
            self.pending.push(task);
        }
    }

    /// Called after a commit: queues this turn's tasks and starts as many as slots allow.
    pub(crate) fn flush(&mut self) {
        self.queue.extend(self.pending.drain(..));
        while self.running.len() < self.limit {
            let Some(task) = self.queue.pop_front() else { break };
            self.spawn(task);
        }
    }

    pub(crate) fn done(&mut self, run_id: RunId, key: &TaskKey, attempt: u32) {
        self.running.remove(&(run_id, key.clone(), attempt));
    }

    pub(crate) fn abort(&mut self, run_id: RunId, key: &TaskKey, attempt: u32) {
        if let Some(handle) = self.running.remove(&(run_id, key.clone(), attempt)) {
            handle.abort();
        }
        let same = |t: &Task| t.run_id == run_id && t.key == *key && t.attempt == attempt;
        self.pending.retain(|t| !same(t));
        self.queue.retain(|t| !same(t));
    }

    /// Aborts and forgets every attempt of `run_id` (its lease moved to another instance).
    pub(crate) fn forget_run(&mut self, run_id: RunId) {
        self.running.retain(|(run, _, _), handle| {
            if *run == run_id {
                handle.abort();
            }
            *run != run_id
        });
        self.pending.retain(|t| t.run_id != run_id);
        self.queue.retain(|t| t.run_id != run_id);
    }

    /// Stops handing out work (shutdown): queued tasks stay undone and are re-dispatched
    /// when their runs are resumed on the next start.
    pub(crate) fn stop_dispatching(&mut self) {
        self.stopped = true;
        self.pending.clear();
        self.queue.clear();
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.running.len()
    }

    /// Aborts every running attempt; returns how many there were.
    pub(crate) fn abort_all(&mut self) -> usize {
        let n = self.running.len();
        for (_, handle) in self.running.drain() {
            handle.abort();
        }
        n
    }

    fn spawn(&mut self, mut task: Task) {
        let id: AttemptId = (task.run_id, task.key.clone(), task.attempt);
        let timeout = task.timeout;
        // The timeout runs from the hand-over, not from when the task was queued.
        task.deadline =
            timeout.and_then(|t| chrono::Duration::from_std(t).ok()).map(|t| self.clock.now() + t);
        debug!(run_id = %task.run_id, node_id = %task.node_id, task = %task.key,
            attempt = task.attempt, handler = %task.handler, "task dispatched");
        let executor = Arc::clone(&self.executor);
        let results = self.results.clone();
        let (run_id, key, attempt) = id.clone();
        let handle = tokio::spawn(async move {
            let attempt_future = CatchPanic(executor.execute(task));
            let outcome = match timeout {
                Some(limit) => tokio::time::timeout(limit, attempt_future)
                    .await
                    .unwrap_or_else(|_| Ok(Err(TaskError::timeout(limit)))),
                None => attempt_future.await,
            };
            let result = outcome.unwrap_or_else(|message| {
                Err(TaskError::new("Panic", format!("handler panicked: {message}")))
            });
            let _ = results.send(Input::TaskDone { run_id, key, attempt, result });
        });
        self.running.insert(id, handle.abort_handle());
    }
}

type AttemptFuture<'a> = Pin<Box<dyn Future<Output = Result<Json, TaskError>> + Send + 'a>>;

/// Turns a panic inside a handler into an error, so a buggy handler fails its task instead of
/// leaving the run waiting forever.
struct CatchPanic<'a>(AttemptFuture<'a>);

impl Future for CatchPanic<'_> {
    type Output = Result<Result<Json, TaskError>, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Ready(result)) => Poll::Ready(Ok(result)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Poll::Ready(Err(message))
            }
        }
    }
}
