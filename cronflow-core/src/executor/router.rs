//! [`ExecutorRouter`]: several executors in one engine, chosen by workflow id.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::Executor;
use crate::json::Json;
use crate::task::{Task, TaskError};

/// An [`Executor`] that hands each task to the executor its workflow is routed to.
///
/// The engine takes a single executor; a router lets one engine run some workflows'
/// handlers in one executor (say JavaScript handlers in `cronflow-executor-node`'s
/// `NodeExecutor`) and others in another (Rust closures in an
/// [`InProcessExecutor`](crate::InProcessExecutor)). Build it with the default executor,
/// then add routes by workflow id:
///
/// - [`execute`](Executor::execute) looks up [`Task::workflow_id`]: a routed workflow's
///   tasks go to its executor, every other workflow's to the default. There is no fallback
///   between executors: a handler the chosen executor lacks fails as that executor says
///   (`UnknownHandler`), even if another executor of the router has it.
/// - [`has_workflow_handler`](Executor::has_workflow_handler), what the engine checks at
///   registration, asks the executor the workflow is routed to. So a workflow that names a
///   handler only the *other* executor has is refused at registration with
///   [`EngineError::MissingHandler`](crate::EngineError::MissingHandler) naming the
///   workflow, the handler and its path, not at run time.
/// - [`has_handler`](Executor::has_handler), which has no workflow to route by, is true if
///   any of the router's executors has the handler.
///
/// Routing is by workflow id, so every revision of a workflow, including the old revision
/// a resumed run keeps executing, goes to the same executor. Routing an id again replaces its
/// earlier route. To refuse workflows nobody routed, make the default an empty
/// `InProcessExecutor::new()`. Routers nest, and clones share their executors (each is held
/// in an [`Arc`]).
///
/// Dropping the future of [`execute`](Executor::execute) drops the chosen executor's future,
/// so timeouts and cancellation reach it as the [`Executor`] contract says.
///
/// # Example
///
/// Two executors that both have a handler named `charge`; the `orders` workflow uses the
/// first one, everything else the second.
///
/// ```
/// use std::time::Duration;
/// use cronflow_core::{
///     Engine, EngineError, ExecutorRouter, InProcessExecutor, MemoryStore, RunStatus, TaskError,
///     Workflow,
/// };
/// use serde_json::json;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let payments = InProcessExecutor::new()
///     .handler("charge", |_| async { Ok::<_, TaskError>("charged by payments") });
/// let fallback = InProcessExecutor::new()
///     .handler("charge", |_| async { Ok::<_, TaskError>("charged by fallback") })
///     .handler("audit", |_| async { Ok::<_, TaskError>("audited") });
///
/// let router = ExecutorRouter::new(fallback).route("orders", payments);
/// let engine = Engine::builder()
///     .store(MemoryStore::new())
///     .executor(router)
///     .workflow(Workflow::new("orders").step("charge").build()?)
///     .workflow(Workflow::new("refunds").step("charge").step("audit").build()?)
///     .start()
///     .await?;
/// let handle = engine.handle();
///
/// let report = handle.wait(handle.trigger("orders", json!({})).await?).await?;
/// assert_eq!(report.status(), RunStatus::Completed);
/// assert_eq!(report.run.output.unwrap().as_str(), r#""charged by payments""#);
///
/// let report = handle.wait(handle.trigger("refunds", json!({})).await?).await?;
/// assert_eq!(report.task_output("charge").unwrap().as_str(), r#""charged by fallback""#);
///
/// // `audit` exists only in the default executor, not in the one `orders` is routed to.
/// let err = handle
///     .register(Workflow::new("orders").step("charge").step("audit").build()?)
///     .await
///     .unwrap_err();
/// assert!(matches!(&err, EngineError::MissingHandler { handler, .. } if handler == "audit"));
/// engine.shutdown(Duration::from_secs(5)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ExecutorRouter {
    default: Arc<dyn Executor>,
    routes: HashMap<String, Arc<dyn Executor>>,
}

impl ExecutorRouter {
    /// A router that sends every workflow's tasks to `default` until routes are added.
    pub fn new(default: impl Executor) -> Self {
        Self { default: Arc::new(default), routes: HashMap::new() }
    }

    /// Sends the tasks of workflow `workflow_id` to `executor`, replacing any earlier route
    /// of that id.
    pub fn route(mut self, workflow_id: impl Into<String>, executor: impl Executor) -> Self {
        self.routes.insert(workflow_id.into(), Arc::new(executor));
        self
    }

    /// Sends the tasks of every workflow in `workflow_ids` to one shared `executor`, for
    /// instance all the workflows a Node module defined:
    /// `.routes(defs.iter().map(|d| d.id.clone()), node_executor)`.
    pub fn routes<I>(mut self, workflow_ids: I, executor: impl Executor) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let executor: Arc<dyn Executor> = Arc::new(executor);
        for id in workflow_ids {
            self.routes.insert(id.into(), Arc::clone(&executor));
        }
        self
    }

    /// The executor that runs the tasks of workflow `workflow_id`: its route, or the default.
    pub fn executor_for(&self, workflow_id: &str) -> &Arc<dyn Executor> {
        self.routes.get(workflow_id).unwrap_or(&self.default)
    }

    /// The routed workflow ids, sorted.
    pub fn routed_workflows(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.routes.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

impl std::fmt::Debug for ExecutorRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorRouter").field("routes", &self.routed_workflows()).finish()
    }
}

#[async_trait]
impl Executor for ExecutorRouter {
    async fn execute(&self, task: Task) -> Result<Json, TaskError> {
        self.executor_for(&task.workflow_id).execute(task).await
    }

    fn has_handler(&self, handler: &str) -> bool {
        self.default.has_handler(handler) || self.routes.values().any(|e| e.has_handler(handler))
    }

    fn has_workflow_handler(&self, workflow_id: &str, handler: &str) -> bool {
        self.executor_for(workflow_id).has_workflow_handler(workflow_id, handler)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::engine::Engine;
    use crate::error::EngineError;
    use crate::event::RunStatus;
    use crate::executor::{InProcessExecutor, MockExecutor};
    use crate::store::MemoryStore;
    use crate::wdo::Workflow;

    fn task(workflow: &str, handler: &str) -> Task {
        Task::new(workflow, handler)
    }

    async fn output(router: &ExecutorRouter, workflow: &str, handler: &str) -> String {
        router.execute(task(workflow, handler)).await.unwrap().as_str().to_owned()
    }

    #[tokio::test]
    async fn tasks_go_to_the_executor_their_workflow_is_routed_to() {
        let default = MockExecutor::new().returns("charge", "default");
        let orders = MockExecutor::new().returns("charge", "orders");
        let router = ExecutorRouter::new(default.clone()).route("orders", orders.clone());

        assert_eq!(output(&router, "orders", "charge").await, r#""orders""#);
        assert_eq!(output(&router, "refunds", "charge").await, r#""default""#);
        assert_eq!(output(&router, "other", "charge").await, r#""default""#);

        let workflows = |mock: &MockExecutor| -> Vec<String> {
            mock.calls().iter().map(|c| c.workflow_id.to_string()).collect()
        };
        assert_eq!(workflows(&orders), ["orders"]);
        assert_eq!(workflows(&default), ["refunds", "other"]);
    }

    #[tokio::test]
    async fn there_is_no_fallback_to_another_executor() {
        let router = ExecutorRouter::new(MockExecutor::new().returns("audit", 1))
            .route("orders", MockExecutor::new().returns("charge", 2));
        let err = router.execute(task("orders", "audit")).await.unwrap_err();
        assert_eq!(err.name, "UnknownHandler");
        assert!(!err.retryable);
        let err = router.execute(task("refunds", "charge")).await.unwrap_err();
        assert_eq!(err.name, "UnknownHandler");
    }

    #[test]
    fn has_workflow_handler_asks_the_routed_executor_and_has_handler_asks_any() {
        let router = ExecutorRouter::new(MockExecutor::new().returns("audit", 1))
            .route("orders", MockExecutor::new().returns("charge", 2));
        assert!(router.has_workflow_handler("orders", "charge"));
        assert!(!router.has_workflow_handler("orders", "audit"));
        assert!(router.has_workflow_handler("refunds", "audit"));
        assert!(!router.has_workflow_handler("refunds", "charge"));

        assert!(router.has_handler("charge") && router.has_handler("audit"));
        assert!(!router.has_handler("nope"));
    }

    #[test]
    fn the_provided_method_and_arc_forward_to_has_handler_and_the_router() {
        let mock = MockExecutor::new().returns("charge", 1);
        assert!(mock.has_workflow_handler("any", "charge"));
        assert!(!mock.has_workflow_handler("any", "audit"));

        let router = ExecutorRouter::new(MockExecutor::new())
            .route("orders", MockExecutor::new().returns("charge", 1));
        let shared: Arc<dyn Executor> = Arc::new(router);
        assert!(shared.has_workflow_handler("orders", "charge"));
        assert!(!shared.has_workflow_handler("refunds", "charge"));
        let twice: Arc<Arc<dyn Executor>> = Arc::new(shared);
        assert!(twice.has_workflow_handler("orders", "charge"));
        assert!(!twice.has_workflow_handler("refunds", "charge"));
    }

    #[tokio::test]
    async fn routes_share_an_executor_and_a_later_route_replaces_an_earlier_one() {
        let node = MockExecutor::new().returns("step", "node");
        let router = ExecutorRouter::new(MockExecutor::new().returns("step", "default"))
            .routes(["a", "b"], node.clone())
            .route("c", MockExecutor::new().returns("step", "c"))
            .route("b", MockExecutor::new().returns("step", "b"));
        assert_eq!(router.routed_workflows(), ["a", "b", "c"]);
        assert_eq!(output(&router, "a", "step").await, r#""node""#);
        assert_eq!(output(&router, "b", "step").await, r#""b""#);
        assert_eq!(output(&router, "c", "step").await, r#""c""#);
        assert_eq!(output(&router, "d", "step").await, r#""default""#);
        assert_eq!(node.call_count("step"), 1);
        assert!(Arc::ptr_eq(router.executor_for("a"), router.executor_for("a")));
        assert!(!Arc::ptr_eq(router.executor_for("a"), router.executor_for("d")));
        assert_eq!(format!("{router:?}"), r#"ExecutorRouter { routes: ["a", "b", "c"] }"#);
    }

    #[tokio::test]
    async fn routers_nest() {
        let inner = ExecutorRouter::new(MockExecutor::new().returns("h", "inner default"))
            .route("x", MockExecutor::new().returns("h", "inner x"));
        let router = ExecutorRouter::new(MockExecutor::new().returns("h", "outer default"))
            .routes(["x", "y"], inner);
        assert_eq!(output(&router, "x", "h").await, r#""inner x""#);
        assert_eq!(output(&router, "y", "h").await, r#""inner default""#);
        assert_eq!(output(&router, "z", "h").await, r#""outer default""#);
        assert!(router.has_workflow_handler("x", "h"));
    }

    #[tokio::test]
    async fn dropping_the_future_drops_the_routed_attempt() {
        let slow = MockExecutor::new().returns("wait", 1).delay("wait", Duration::from_secs(60));
        let router = ExecutorRouter::new(MockExecutor::new()).route("slow", slow.clone());
        let attempt = router.execute(task("slow", "wait"));
        assert!(tokio::time::timeout(Duration::from_millis(10), attempt).await.is_err());
        assert_eq!(slow.call_count("wait"), 1);
    }

    #[tokio::test]
    async fn the_engine_routes_runs_and_checks_handlers_per_workflow() {
        let rust = InProcessExecutor::new()
            .handler("double", |task| async move {
                let n: i64 = task.context.payload()?;
                Ok::<_, TaskError>(n * 2)
            })
            .handler("shared", |_| async { Ok::<_, TaskError>("rust") });
        let other = MockExecutor::new().returns("shared", "other").returns("only-other", 0);
        let router = ExecutorRouter::new(rust).route("o", other.clone());
        let engine = Engine::builder()
            .store(MemoryStore::new())
            .executor(router)
            .workflow(Workflow::new("r").step("double").step("shared").build().unwrap())
            .workflow(Workflow::new("o").step("shared").build().unwrap())
            .start()
            .await
            .unwrap();
        let handle = engine.handle();

        let report = handle.wait(handle.trigger("r", json!(21)).await.unwrap()).await.unwrap();
        assert_eq!(report.status(), RunStatus::Completed);
        assert_eq!(report.task_output("double").unwrap().as_str(), "42");
        assert_eq!(report.run.output.unwrap().as_str(), r#""rust""#);
        let report = handle.wait(handle.trigger("o", json!(null)).await.unwrap()).await.unwrap();
        assert_eq!(report.run.output.unwrap().as_str(), r#""other""#);
        assert_eq!(other.call_count("shared"), 1);

        // A handler that exists, but only in the executor of another workflow.
        let def = Workflow::new("r").step("double").step("only-other").build().unwrap();
        match handle.register(def).await {
            Err(EngineError::MissingHandler { workflow, handler, path }) => {
                assert_eq!((workflow.as_str(), handler.as_str()), ("r", "only-other"));
                assert_eq!(path, "$.nodes[1].handler");
            }
            other => panic!("expected MissingHandler, got {other:?}"),
        }
        let def = Workflow::new("o").step("shared").step("double").build().unwrap();
        let err = handle.register(def).await.unwrap_err();
        assert!(err.to_string().contains("`double`"), "{err}");

        // The same check applies to workflows given to the builder.
        let start = Engine::builder()
            .store(MemoryStore::new())
            .executor(ExecutorRouter::new(MockExecutor::new()).route("o", other))
            .workflow(Workflow::new("o").step("double").build().unwrap())
            .start()
            .await;
        assert!(matches!(start, Err(EngineError::MissingHandler { .. })), "{:?}", start.err());
        engine.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}
