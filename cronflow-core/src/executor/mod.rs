//! The [`Executor`] trait and the executors that ship with the core: [`InProcessExecutor`]
//! (Rust closures), [`MockExecutor`] (canned answers for tests) and [`ExecutorRouter`]
//! (several executors in one engine, chosen per workflow).

use async_trait::async_trait;

use crate::json::Json;
use crate::task::{Task, TaskError};

mod in_process;
mod mock;
mod router;

pub use in_process::{HandlerFuture, InProcessExecutor};
pub use mock::{MockCall, MockExecutor};
pub use router::ExecutorRouter;

/// Runs handlers: the engine hands it [`Task`]s and records what comes back.
///
/// # Contract
///
/// - `execute` runs the handler named by `task.handler` once and returns its output, or a
///   [`TaskError`] describing why this attempt failed. An `Err` is an attempt failure: the
///   engine applies the task's retry policy (honouring [`TaskError::retryable`]).
/// - A handler the executor does not know is an error named `UnknownHandler`, marked not
///   retryable, never a panic.
/// - The engine enforces timeouts and cancellation by **dropping** the returned future.
///   An executor must release what the attempt holds when that happens (kill a process,
///   forget a pending request); any answer that arrives later is discarded by the engine,
///   because every result is fenced by its `(task key, attempt)`.
/// - Many `execute` calls run at once (up to the engine's task concurrency); implementations
///   must be `Send + Sync` and must not serialise unrelated tasks.
/// - Delivery is at least once: after a crash a task whose result was not recorded is run
///   again with the same [`Task::idempotency_key`].
/// - At registration the engine asks
///   [`has_workflow_handler(workflow_id, handler)`](Executor::has_workflow_handler) for every
///   handler a workflow names, and refuses the workflow if one answer is `false`. An executor
///   that answers `true` must be able to run that handler for tasks of that workflow.
///   The provided method asks [`has_handler`](Executor::has_handler), so a plain executor
///   implements only that one; an executor whose answer depends on the workflow (such as
///   [`ExecutorRouter`]) overrides `has_workflow_handler`, and an executor that wraps another
///   must forward both methods.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs one attempt of `task`.
    async fn execute(&self, task: Task) -> Result<Json, TaskError>;

    /// Whether this executor can run `handler`. The engine checks every handler of a
    /// workflow at registration so a typo fails fast; the default accepts all names.
    fn has_handler(&self, handler: &str) -> bool {
        let _ = handler;
        true
    }

    /// Whether this executor can run `handler` for tasks of workflow `workflow_id` (their
    /// [`Task::workflow_id`]). This is what the engine checks at registration.
    ///
    /// The default is [`has_handler(handler)`](Executor::has_handler): most executors run a
    /// handler the same way whatever the workflow. [`ExecutorRouter`] overrides it to ask the
    /// executor that `workflow_id` is routed to.
    fn has_workflow_handler(&self, workflow_id: &str, handler: &str) -> bool {
        let _ = workflow_id;
        self.has_handler(handler)
    }
}

#[async_trait]
impl<E: Executor + ?Sized> Executor for std::sync::Arc<E> {
    async fn execute(&self, task: Task) -> Result<Json, TaskError> {
        (**self).execute(task).await
    }

    fn has_handler(&self, handler: &str) -> bool {
        (**self).has_handler(handler)
    }

    fn has_workflow_handler(&self, workflow_id: &str, handler: &str) -> bool {
        (**self).has_workflow_handler(workflow_id, handler)
    }
}

/// The error an executor returns for a handler it does not know.
pub fn unknown_handler(handler: &str) -> TaskError {
    TaskError::new("UnknownHandler", format!("no handler named `{handler}` is registered"))
        .non_retryable()
}
