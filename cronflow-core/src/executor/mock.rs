//! [`MockExecutor`]: canned answers and a record of every call, for testing workflows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::time::Instant;

use super::{Executor, unknown_handler};
use crate::id::{RunId, TaskKey};
use crate::json::Json;
use crate::task::{Task, TaskError, TaskKind};

/// A computed answer, see [`MockExecutor::respond_with`].
type Responder = Arc<dyn Fn(&Task) -> Result<Json, TaskError> + Send + Sync>;

/// What the mock answers for a handler (or for one attempt of it).
#[derive(Clone)]
enum Answer {
    /// The same result every time.
    Fixed(Result<Json, TaskError>),
    /// A result computed from the task.
    Computed(Responder),
}

impl Answer {
    fn resolve(self, task: &Task) -> Result<Json, TaskError> {
        match self {
            Self::Fixed(result) => result,
            Self::Computed(responder) => responder(task),
        }
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(result) => f.debug_tuple("Fixed").field(result).finish(),
            Self::Computed(_) => f.write_str("Computed(..)"),
        }
    }
}

/// Everything configured for one handler name.
#[derive(Debug, Default)]
struct HandlerConfig {
    /// The answer for every attempt without an answer of its own.
    answer: Option<Answer>,
    /// Answers for single attempts; they win over `answer`.
    attempts: HashMap<u32, Answer>,
    /// Sleep before answering any attempt without a delay of its own.
    delay: Option<Duration>,
    /// Sleeps before answering single attempts; they win over `delay`.
    attempt_delays: HashMap<u32, Duration>,
}

impl HandlerConfig {
    /// Whether an answer is configured (a delay alone does not make a handler known).
    fn has_answer(&self) -> bool {
        self.answer.is_some() || !self.attempts.is_empty()
    }
}

#[derive(Debug, Default)]
struct State {
    handlers: HashMap<String, HandlerConfig>,
    calls: Vec<MockCall>,
}

/// An [`Executor`] for tests: it answers from canned results and records every call.
///
/// Swap the real executor for a `MockExecutor` to test a workflow without running its
/// handlers. Configure answers by handler name with the builder methods, hand a clone to the
/// engine and keep the original: clones share both the configuration and the recorded calls
/// (they live behind an `Arc<Mutex<..>>`), so the test can assert on
/// [`calls`](MockExecutor::calls) afterwards.
///
/// # Answers
///
/// For each call the mock looks, in this order, for:
///
/// 1. an answer for this exact attempt ([`on_attempt`](MockExecutor::on_attempt));
/// 2. the handler's answer for every attempt ([`returns`](MockExecutor::returns),
///    [`fails`](MockExecutor::fails) or [`respond_with`](MockExecutor::respond_with); the
///    last of these called for a handler replaces the earlier ones);
/// 3. for a handler with no answer at all, the standard
///    [`unknown_handler`](crate::unknown_handler) error (`UnknownHandler`, not retryable).
///    A handler that only has per-attempt answers and is called for another attempt fails
///    with a non-retryable `MockNoAnswer` error.
///
/// [`has_handler`](Executor::has_handler) is true only for handlers with an answer (a
/// [`delay`](MockExecutor::delay) alone does not count), so registering a workflow that
/// names an unconfigured handler fails just as it would with a real executor.
///
/// # Calls and timing
///
/// A call is recorded as a [`MockCall`] at the *start* of
/// [`execute`](Executor::execute), before any delay, so a call the engine cancelled (for
/// instance on timeout, by dropping the future) still shows up. Calls to unconfigured
/// handlers are recorded too. Timestamps are [`tokio::time::Instant`]s, so they follow
/// tokio's paused clock in tests that use `start_paused`.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use cronflow_core::{
///     Executor, Json, MockExecutor, RunId, Task, TaskContext, TaskError, TaskKey, TaskKind,
/// };
/// use serde_json::json;
///
/// // What the engine would hand the executor.
/// fn task(handler: &str, attempt: u32, payload: serde_json::Value) -> Task {
///     let mut task = Task { attempt, ..Task::new("orders", handler) };
///     task.context.payload = Json::from(payload);
///     task
/// }
///
/// #[tokio::main]
/// async fn main() {
///     let mock = MockExecutor::new()
///         .returns("fetch", json!({"id": 1}))
///         .fails("charge", TaskError::new("CardDeclined", "no").non_retryable())
///         .on_attempt("flaky", 1, Err(TaskError::new("Network", "reset")))
///         .on_attempt("flaky", 2, Ok(json!("ok")))
///         .respond_with("echo", |task: &Task| Ok(task.context.payload.clone()))
///         .delay("slow", Duration::from_millis(200))
///         .returns("slow", "finally");
///
///     // Hand a clone to the engine; here we call it directly.
///     let executor = mock.clone();
///
///     let out = executor.execute(task("fetch", 1, json!(null))).await.unwrap();
///     assert_eq!(out.to_value(), json!({"id": 1}));
///
///     let err = executor.execute(task("charge", 1, json!(null))).await.unwrap_err();
///     assert_eq!(err.name, "CardDeclined");
///
///     let first = executor.execute(task("flaky", 1, json!(null))).await;
///     assert_eq!(first.unwrap_err().name, "Network");
///     let second = executor.execute(task("flaky", 2, json!(null))).await;
///     assert_eq!(second.unwrap().to_value(), json!("ok"));
///
///     let echoed = executor.execute(task("echo", 1, json!({"order": 42}))).await.unwrap();
///     assert_eq!(echoed.to_value(), json!({"order": 42}));
///
///     // A timed-out attempt is still recorded.
///     let slow = executor.execute(task("slow", 1, json!(null)));
///     assert!(tokio::time::timeout(Duration::from_millis(10), slow).await.is_err());
///
///     let err = executor.execute(task("typo", 1, json!(null))).await.unwrap_err();
///     assert_eq!(err.name, "UnknownHandler");
///     assert!(!executor.has_handler("typo"));
///
///     // The test's handle sees what the engine's clone did.
///     assert_eq!(mock.call_count("flaky"), 2);
///     let attempts: Vec<u32> = mock.calls_to("flaky").iter().map(|c| c.attempt).collect();
///     assert_eq!(attempts, [1, 2]);
///     assert_eq!(mock.calls_to("echo")[0].payload.to_value(), json!({"order": 42}));
///     let handlers: Vec<String> = mock.calls().iter().map(|c| c.handler.to_string()).collect();
///     assert_eq!(handlers, ["fetch", "charge", "flaky", "flaky", "echo", "slow", "typo"]);
/// }
/// ```
#[derive(Clone, Default)]
pub struct MockExecutor {
    state: Arc<Mutex<State>>,
}

/// One recorded call of [`MockExecutor::execute`](Executor::execute): the task's identity
/// and the data it carried.
#[derive(Debug, Clone)]
pub struct MockCall {
    /// The run the task belongs to.
    pub run_id: RunId,
    /// The workflow's id.
    pub workflow_id: Arc<str>,
    /// The node that issued the task.
    pub node_id: Arc<str>,
    /// The task within the run.
    pub key: TaskKey,
    /// What the task was for.
    pub kind: TaskKind,
    /// The handler called.
    pub handler: Arc<str>,
    /// The attempt number, 1 for the first.
    pub attempt: u32,
    /// The task's idempotency key.
    pub idempotency_key: String,
    /// The trigger payload in the task's context.
    pub payload: Json,
    /// The previous node's output in the task's context.
    pub last: Json,
    /// The run's trigger context in the task's context.
    pub trigger: Json,
    /// When the call started (tokio's clock, which honours a paused test clock).
    pub at: Instant,
}

impl MockCall {
    fn new(task: &Task) -> Self {
        Self {
            run_id: task.run_id,
            workflow_id: task.workflow_id.clone(),
            node_id: task.node_id.clone(),
            key: task.key.clone(),
            kind: task.kind,
            handler: task.handler.clone(),
            attempt: task.attempt,
            idempotency_key: task.idempotency_key.clone(),
            payload: task.context.payload.clone(),
            trigger: task.context.trigger.clone(),
            last: task.context.last.clone(),
            at: Instant::now(),
        }
    }
}

impl MockExecutor {
    /// A mock with no handlers configured and no calls recorded.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held cannot leave the state half-updated (every update
        // is a single insert or push), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn configure(self, handler: &str, f: impl FnOnce(&mut HandlerConfig)) -> Self {
        f(self.state().handlers.entry(handler.to_owned()).or_default());
        self
    }

    /// Every attempt of `handler` succeeds with `output`.
    ///
    /// `output` is serialised here. If that fails (e.g. a map with non-string keys) the
    /// builder does not panic: the handler instead fails every attempt with a non-retryable
    /// `SerializationError` naming the problem, as a real handler with such an output would.
    pub fn returns(self, handler: &str, output: impl Serialize) -> Self {
        let answer = Answer::Fixed(to_json(handler, &output));
        self.configure(handler, |config| config.answer = Some(answer))
    }

    /// Every attempt of `handler` fails with `error` (its `retryable` flag is kept, so the
    /// engine's retry policy applies as usual).
    pub fn fails(self, handler: &str, error: TaskError) -> Self {
        self.configure(handler, |config| config.answer = Some(Answer::Fixed(Err(error))))
    }

    /// Every attempt of `handler` answers what `respond` computes from the [`Task`], e.g.
    /// an echo of the payload or a result that depends on an earlier step's output.
    ///
    /// `respond` runs outside the mock's lock, after any [`delay`](Self::delay). Its output
    /// is serialised; a value that is not JSON becomes a non-retryable `SerializationError`.
    pub fn respond_with<F, T>(self, handler: &str, respond: F) -> Self
    where
        F: Fn(&Task) -> Result<T, TaskError> + Send + Sync + 'static,
        T: Serialize,
    {
        let name = handler.to_owned();
        let responder: Responder = Arc::new(move |task: &Task| {
            let value = respond(task)?;
            to_json(&name, &value)
        });
        self.configure(handler, |config| config.answer = Some(Answer::Computed(responder)))
    }

    /// Attempt number `attempt` (1 for the first) of `handler` answers `answer`, whatever
    /// the handler's answer for other attempts is.
    pub fn on_attempt(
        self,
        handler: &str,
        attempt: u32,
        answer: Result<serde_json::Value, TaskError>,
    ) -> Self {
        let answer = Answer::Fixed(answer.map(Json::from));
        self.configure(handler, |config| {
            config.attempts.insert(attempt, answer);
        })
    }

    /// Every attempt of `handler` sleeps `delay` (with `tokio::time::sleep`) before it
    /// answers; use it to exercise timeouts and cancellation. This does not configure an
    /// answer.
    pub fn delay(self, handler: &str, delay: Duration) -> Self {
        self.configure(handler, |config| config.delay = Some(delay))
    }

    /// Attempt number `attempt` of `handler` sleeps `delay` before it answers, instead of
    /// the handler's [`delay`](Self::delay): e.g. a first attempt that times out and a
    /// second that does not.
    pub fn delay_on_attempt(self, handler: &str, attempt: u32, delay: Duration) -> Self {
        self.configure(handler, |config| {
            config.attempt_delays.insert(attempt, delay);
        })
    }

    /// Every call so far, in the order the calls started.
    pub fn calls(&self) -> Vec<MockCall> {
        self.state().calls.clone()
    }

    /// The calls of `handler` so far, in the order they started.
    pub fn calls_to(&self, handler: &str) -> Vec<MockCall> {
        self.state().calls.iter().filter(|call| &*call.handler == handler).cloned().collect()
    }

    /// How many times `handler` has been called (counting every attempt).
    pub fn call_count(&self, handler: &str) -> usize {
        self.state().calls.iter().filter(|call| &*call.handler == handler).count()
    }

    /// Forgets the recorded calls (the configured answers stay).
    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }
}

fn to_json(handler: &str, value: &(impl Serialize + ?Sized)) -> Result<Json, TaskError> {
    Json::from_value(value).map_err(|e| {
        TaskError::new(
            "SerializationError",
            format!("mock output of handler `{handler}` is not JSON: {e}"),
        )
        .non_retryable()
    })
}

impl std::fmt::Debug for MockExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        let mut handlers: Vec<&str> = state.handlers.keys().map(String::as_str).collect();
        handlers.sort_unstable();
        f.debug_struct("MockExecutor")
            .field("handlers", &handlers)
            .field("calls", &state.calls.len())
            .finish()
    }
}

#[async_trait]
impl Executor for MockExecutor {
    async fn execute(&self, task: Task) -> Result<Json, TaskError> {
        // Record and look up under the lock, then release it before sleeping or computing.
        let (answer, delay) = {
            let mut state = self.state();
            state.calls.push(MockCall::new(&task));
            match state.handlers.get(&*task.handler) {
                Some(config) => {
                    let answer = match config.attempts.get(&task.attempt) {
                        Some(answer) => Some(answer.clone()),
                        None => config.answer.clone(),
                    };
                    let delay = config.attempt_delays.get(&task.attempt).or(config.delay.as_ref());
                    let answer = match answer {
                        Some(answer) => Ok(answer),
                        None if config.has_answer() => Err(TaskError::new(
                            "MockNoAnswer",
                            format!(
                                "the mock has no answer for attempt {} of handler `{}`",
                                task.attempt, task.handler
                            ),
                        )
                        .non_retryable()),
                        None => Err(unknown_handler(&task.handler)),
                    };
                    (answer, delay.copied())
                }
                None => (Err(unknown_handler(&task.handler)), None),
            }
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        answer?.resolve(&task)
    }

    fn has_handler(&self, handler: &str) -> bool {
        self.state().handlers.get(handler).is_some_and(HandlerConfig::has_answer)
    }
}

#[cfg(test)]
mod tests;
