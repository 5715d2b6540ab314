//! [`InProcessExecutor`]: handlers are async Rust closures in the host process.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use super::{Executor, unknown_handler};
use crate::json::Json;
use crate::task::{Task, TaskError};

/// The boxed future a registered handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Json, TaskError>> + Send>>;

type BoxedHandler = Arc<dyn Fn(Task) -> HandlerFuture + Send + Sync>;

/// Runs handlers registered as async Rust closures, by name.
///
/// A handler takes the [`Task`] (its `context` holds the payload and earlier outputs) and
/// returns any serialisable value, or an error convertible into [`TaskError`] (every
/// `std::error::Error` is, so `?` works).
///
/// ```
/// use cronflow_core::{InProcessExecutor, TaskError};
/// use serde_json::json;
///
/// let executor = InProcessExecutor::new()
///     .handler("double", |task| async move {
///         let n: i64 = task.context.payload()?;
///         Ok::<_, TaskError>(n * 2)
///     })
///     .handler("greet", |_task| async { Ok::<_, TaskError>(json!({"hello": "world"})) });
/// ```
#[derive(Clone, Default)]
pub struct InProcessExecutor {
    handlers: HashMap<String, BoxedHandler>,
}

impl InProcessExecutor {
    /// An executor with no handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` under `name`, replacing any handler of that name.
    pub fn handler<F, Fut, T, E>(mut self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(Task) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Serialize,
        E: Into<TaskError>,
    {
        let boxed: BoxedHandler = Arc::new(move |task: Task| {
            let fut = handler(task);
            Box::pin(async move {
                let value = fut.await.map_err(Into::into)?;
                Json::from_value(&value).map_err(|e| {
                    TaskError::new("SerializationError", format!("handler output is not JSON: {e}"))
                        .non_retryable()
                })
            }) as HandlerFuture
        });
        self.handlers.insert(name.into(), boxed);
        self
    }

    /// Names of the registered handlers.
    pub fn handler_names(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for InProcessExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessExecutor").field("handlers", &self.handlers.keys()).finish()
    }
}

#[async_trait]
impl Executor for InProcessExecutor {
    async fn execute(&self, task: Task) -> Result<Json, TaskError> {
        match self.handlers.get(&*task.handler) {
            Some(handler) => handler(task).await,
            None => Err(unknown_handler(&task.handler)),
        }
    }

    fn has_handler(&self, handler: &str) -> bool {
        self.handlers.contains_key(handler)
    }
}
