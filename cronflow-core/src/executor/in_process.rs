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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::task::TaskContext;

    fn task(handler: &str, context: TaskContext) -> Task {
        Task { context, ..Task::new("wf", handler) }
    }

    fn payload(value: serde_json::Value) -> TaskContext {
        TaskContext { payload: Json::from(value), ..TaskContext::default() }
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Order {
        id: u32,
        items: Vec<String>,
    }

    #[tokio::test]
    async fn handler_output_is_serialised() {
        let executor = InProcessExecutor::new()
            .handler("order", |_task| async {
                Ok::<_, TaskError>(Order { id: 7, items: vec!["a".into()] })
            })
            .handler("unit", |_task| async { Ok::<_, TaskError>(()) })
            .handler("text", |_task| async { Ok::<_, TaskError>("hi") });
        let out = executor.execute(task("order", TaskContext::default())).await.unwrap();
        assert_eq!(out.as_str(), r#"{"id":7,"items":["a"]}"#);
        let out = executor.execute(task("unit", TaskContext::default())).await.unwrap();
        assert_eq!(out.as_str(), "null");
        let out = executor.execute(task("text", TaskContext::default())).await.unwrap();
        assert_eq!(out.as_str(), r#""hi""#);
    }

    #[tokio::test]
    async fn unserialisable_output_is_a_non_retryable_error() {
        let executor = InProcessExecutor::new().handler("bad", |_task| async {
            Ok::<_, TaskError>(BTreeMap::from([((1u8, 2u8), 3u8)]))
        });
        let err = executor.execute(task("bad", TaskContext::default())).await.unwrap_err();
        assert_eq!(err.name, "SerializationError");
        assert!(!err.retryable);
    }

    #[tokio::test]
    async fn std_error_via_question_mark_becomes_error_named_error() {
        let executor = InProcessExecutor::new().handler("parse", |_task| async {
            let v: serde_json::Value = serde_json::from_str("{not json")?;
            Ok::<_, TaskError>(v)
        });
        let err = executor.execute(task("parse", TaskContext::default())).await.unwrap_err();
        let expected = serde_json::from_str::<serde_json::Value>("{not json").unwrap_err();
        assert_eq!(err.name, "Error");
        assert_eq!(err.message, expected.to_string());
        assert!(err.retryable);
    }

    #[tokio::test]
    async fn handler_error_type_converts_into_task_error() {
        let executor = InProcessExecutor::new()
            .handler("io", |_task| async { Err::<(), _>(std::io::Error::other("disk on fire")) })
            .handler("typed", |_task| async {
                Err::<(), _>(TaskError::new("CardDeclined", "no").non_retryable())
            });
        let err = executor.execute(task("io", TaskContext::default())).await.unwrap_err();
        assert_eq!((err.name.as_str(), err.message.as_str()), ("Error", "disk on fire"));
        let err = executor.execute(task("typed", TaskContext::default())).await.unwrap_err();
        assert_eq!(err, TaskError::new("CardDeclined", "no").non_retryable());
    }

    #[tokio::test]
    async fn payload_accessor_deserialises_or_fails_with_payload_error() {
        let executor = InProcessExecutor::new().handler("count", |task| async move {
            let order: Order = task.context.payload()?;
            Ok::<_, TaskError>(order.items.len())
        });
        let ctx = payload(json!({"id": 1, "items": ["a", "b"]}));
        assert_eq!(executor.execute(task("count", ctx)).await.unwrap().as_str(), "2");

        let err = executor.execute(task("count", payload(json!("nope")))).await.unwrap_err();
        assert_eq!(err.name, "PayloadError");
    }

    #[tokio::test]
    async fn step_and_last_accessors_read_earlier_outputs() {
        let executor = InProcessExecutor::new().handler("total", |task| async move {
            let order: Order = task.context.step("fetch")?;
            let factor: u32 = task.context.last()?;
            Ok::<_, TaskError>(order.id * factor)
        });
        let steps =
            BTreeMap::from([("fetch".to_owned(), Json::from(json!({"id": 21, "items": []})))]);
        let ctx = TaskContext {
            payload: Json::null(),
            steps: Arc::new(steps),
            last: Json::from(json!(2)),
            ..TaskContext::default()
        };
        assert_eq!(executor.execute(task("total", ctx.clone())).await.unwrap().as_str(), "42");

        // A step that has not run yet is not worth retrying.
        let err = executor.execute(task("total", TaskContext::default())).await.unwrap_err();
        assert_eq!(err.name, "MissingStepOutput");
        assert!(err.message.contains("`fetch`"), "{}", err.message);
        assert!(!err.retryable);

        // A step output of the wrong shape is a StepOutputError.
        let wrong = TaskContext {
            steps: Arc::new(BTreeMap::from([("fetch".to_owned(), Json::from(json!(1)))])),
            ..ctx
        };
        let err = executor.execute(task("total", wrong)).await.unwrap_err();
        assert_eq!(err.name, "StepOutputError");
    }

    #[tokio::test]
    async fn handler_sees_the_whole_task() {
        let executor = InProcessExecutor::new().handler("who", |task| async move {
            Ok::<_, TaskError>(json!({
                "handler": &*task.handler,
                "attempt": task.attempt,
                "key": task.idempotency_key,
            }))
        });
        let t = task("who", TaskContext::default());
        let key = t.idempotency_key.clone();
        let out = executor.execute(t).await.unwrap().to_value();
        assert_eq!(out, json!({"handler": "who", "attempt": 1, "key": key}));
    }

    #[tokio::test]
    async fn unknown_handler_is_a_non_retryable_error() {
        let executor =
            InProcessExecutor::new().handler("known", |_task| async { Ok::<_, TaskError>(1) });
        let err = executor.execute(task("missing", TaskContext::default())).await.unwrap_err();
        assert_eq!(err.name, "UnknownHandler");
        assert!(!err.retryable);
        assert_eq!(err, unknown_handler("missing"));
    }

    #[test]
    fn has_handler_and_names_report_registered_handlers() {
        let ok = |_task: Task| async { Ok::<_, TaskError>(()) };
        let executor = InProcessExecutor::new().handler("a", ok).handler("b", ok).handler("a", ok);
        assert!(executor.has_handler("a"));
        assert!(executor.has_handler("b"));
        assert!(!executor.has_handler("c"));
        let mut names: Vec<&str> = executor.handler_names().collect();
        names.sort_unstable();
        assert_eq!(names, ["a", "b"]);
        assert!(!InProcessExecutor::new().has_handler("a"));
    }

    #[tokio::test]
    async fn registering_again_replaces_the_handler() {
        let executor = InProcessExecutor::new()
            .handler("x", |_task| async { Ok::<_, TaskError>(1) })
            .handler("x", |_task| async { Ok::<_, TaskError>(2) });
        assert_eq!(
            executor.execute(task("x", TaskContext::default())).await.unwrap().as_str(),
            "2"
        );
    }

    #[tokio::test]
    async fn clones_and_arcs_run_the_same_handlers() {
        let executor =
            InProcessExecutor::new().handler("x", |_task| async { Ok::<_, TaskError>(1) });
        let shared: Arc<dyn Executor> = Arc::new(executor.clone());
        assert!(shared.has_handler("x"));
        assert_eq!(shared.execute(task("x", TaskContext::default())).await.unwrap().as_str(), "1");
        assert!(format!("{executor:?}").contains("\"x\""));
    }
}
