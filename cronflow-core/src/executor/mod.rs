//! The [`Executor`] trait and the executors that ship with the core: [`InProcessExecutor`]
//! (Rust closures) and [`MockExecutor`] (canned answers for tests).

use async_trait::async_trait;

use crate::json::Json;
use crate::task::{Task, TaskError};

mod in_process;
mod mock;

pub use in_process::{HandlerFuture, InProcessExecutor};
pub use mock::{MockCall, MockExecutor};

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
}

#[async_trait]
impl<E: Executor + ?Sized> Executor for std::sync::Arc<E> {
    async fn execute(&self, task: Task) -> Result<Json, TaskError> {
        (**self).execute(task).await
    }

    fn has_handler(&self, handler: &str) -> bool {
        (**self).has_handler(handler)
    }
}

/// The error an executor returns for a handler it does not know.
pub fn unknown_handler(handler: &str) -> TaskError {
    TaskError::new("UnknownHandler", format!("no handler named `{handler}` is registered"))
        .non_retryable()
}
