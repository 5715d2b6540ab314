//! [`NodeExecutor`]: the handle the engine calls, and [`PoolStats`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cronflow_core::{Executor, Json, Task, TaskError, WorkflowDef};
use tokio::sync::oneshot;

use crate::builder::NodeExecutorBuilder;
use crate::framing;
use crate::pool::{Pool, Refusal};
use crate::worker::{Pending, SEND_ELSEWHERE, Worker, worker_crashed};

/// Runs JavaScript handlers in a pool of Node.js worker processes. Cheap to clone: clones
/// share the pool; its processes are killed when the last clone is dropped.
#[derive(Clone)]
pub struct NodeExecutor {
    pool: Arc<Pool>,
    handlers: Arc<HashSet<String>>,
}

/// A snapshot of a pool, from [`NodeExecutor::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Workers taking new tasks.
    pub workers: usize,
    /// Workers being started (including those waiting out a restart backoff).
    pub starting: usize,
    /// Workers finishing their tasks before they exit (retired or stuck).
    pub draining: usize,
    /// Tasks in flight whose result the engine still waits for.
    pub in_flight: usize,
    /// Workers started successfully since the pool was spawned, the first ones included.
    pub started: u64,
    /// Worker starts that failed (the module did not load, `node` did not start, ...).
    pub failed_starts: u64,
    /// Workers retired: recycled after their task quota or over the heap ceiling, or idle
    /// above the minimum.
    pub retired: u64,
    /// Workers stopped because a cancelled or timed-out handler did not return.
    pub stuck: u64,
}

impl std::fmt::Debug for NodeExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeExecutor")
            .field("module", &self.pool.config.module)
            .field("stats", &self.pool.stats())
            .finish_non_exhaustive()
    }
}

impl NodeExecutor {
    /// A builder; set at least [`NodeExecutorBuilder::module`].
    pub fn builder() -> NodeExecutorBuilder {
        NodeExecutorBuilder::default()
    }

    pub(crate) fn new(pool: Arc<Pool>, workflows: &[WorkflowDef]) -> Self {
        let mut handlers = HashSet::new();
        for def in workflows {
            handlers.extend(def.handlers().into_iter().map(|h| h.handler.to_owned()));
        }
        Self { pool, handlers: Arc::new(handlers) }
    }

    /// Process ids of the workers taking new tasks (for operations and tests).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.pool.pids()
    }

    /// Number of tasks in flight over all workers.
    pub fn in_flight(&self) -> usize {
        self.pool.stats().in_flight
    }

    /// Counts of workers and tasks, for metrics and tests.
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Stops the pool: asks each worker to finish its in-flight tasks and exit, waits up to
    /// `grace`, then kills the process groups still running. New tasks fail with
    /// `ShuttingDown`.
    pub async fn shutdown(&self, grace: Duration) {
        self.pool.shutdown(grace).await;
    }
}

/// If the `execute` future is dropped before its result (the engine's timeout or a
/// cancellation), abandons the task: sends `cancel` and watches for a stuck handler.
struct AbandonOnDrop {
    pool: Arc<Pool>,
    worker: Arc<Worker>,
    id: u64,
    armed: bool,
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if self.armed && self.worker.abandon(self.id) {
            self.worker.send(format!(r#"{{"type":"cancel","id":{}}}"#, self.id));
            self.pool.watch_abandoned(self.worker.clone(), self.id);
        }
    }
}

/// How often a task lost with a worker stopped for another task is sent again.
const MAX_RESENDS: u32 = 3;

impl NodeExecutor {
    /// One attempt at running `task` on some worker.
    async fn execute_once(&self, task: &Task) -> Result<Json, TaskError> {
        let pool = &self.pool;
        let shutting_down = || TaskError::new("ShuttingDown", "the Node executor is shutting down");
        if pool.shutting_down() {
            return Err(shutting_down());
        }
        let id = pool.next_task_id();
        let mut line = framing::task_line(id, task);
        let limit = pool.config.max_frame;
        if line.len() > limit {
            return Err(TaskError::new(
                "PayloadTooLarge",
                format!(
                    "the task message for handler `{}` is {} bytes, over the maximum frame of \
                     {limit} bytes",
                    task.handler,
                    line.len()
                ),
            )
            .non_retryable());
        }
        let (reply, answer) = oneshot::channel();
        let mut pending = Pending {
            reply,
            run_id: task.run_id.to_string(),
            node_id: task.node_id.clone(),
            state: task.context.state.clone(),
        };
        let no_worker_limit = tokio::time::Instant::now() + pool.config.startup_timeout;
        let worker = loop {
            let notified = pool.capacity.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let refusal = match pool.try_acquire(id, pending, line) {
                Ok(worker) => break worker,
                Err((p, l, refusal)) => {
                    (pending, line) = (p, l);
                    refusal
                }
            };
            if pool.shutting_down() {
                return Err(shutting_down());
            }
            if refusal == Refusal::NoWorker {
                if tokio::time::Instant::now() >= no_worker_limit {
                    return Err(TaskError::new("NoWorker", "no Node worker is running"));
                }
                let _ = tokio::time::timeout_at(no_worker_limit, notified).await;
            } else {
                notified.await;
            }
        };
        let mut guard = AbandonOnDrop { pool: pool.clone(), worker, id, armed: true };
        let result = answer.await;
        guard.armed = false;
        result.unwrap_or_else(|_| Err(worker_crashed("the worker dropped the task")))
    }
}

#[async_trait]
impl Executor for NodeExecutor {
    async fn execute(&self, task: Task) -> Result<Json, TaskError> {
        // A task lost with a worker stopped because another task was stuck is sent again, to
        // another worker: other runs do not pay for one handler's blocked event loop. At
        // least once, as ever: its idempotency key is the same.
        let mut resends = 0;
        loop {
            match self.execute_once(&task).await {
                Err(e) if e.name == SEND_ELSEWHERE && resends < MAX_RESENDS => resends += 1,
                Err(e) if e.name == SEND_ELSEWHERE => {
                    return Err(worker_crashed(&format!(
                        "{} (the task was sent to {} workers)",
                        e.message,
                        resends + 1
                    )));
                }
                result => return result,
            }
        }
    }

    fn has_handler(&self, handler: &str) -> bool {
        self.handlers.contains(handler)
    }
}
