//! What an executor receives ([`Task`], [`TaskContext`]) and returns on failure ([`TaskError`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::id::{RunId, TaskKey};
use crate::json::Json;
use crate::state::StateHandle;

/// What a task is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// A `step` node: its output is recorded and passed on.
    Step,
    /// An `action` node: its output is recorded but the run does not wait for it.
    Action,
    /// The condition of an `if` branch: its output's truthiness picks the branch.
    Condition,
    /// A polling trigger's handler, called outside any run
    /// ([`EngineHandle::run_handler`](crate::EngineHandle::run_handler)): its output is the
    /// list of items that may start runs.
    Poll,
    /// The items handler of a `for_each` or `batch` node: its output is the JSON array of
    /// items the body runs for.
    Items,
    /// The `on_error` handler of a `step` or `action` whose attempts are exhausted: it reads
    /// the error in [`TaskContext::error`], and its output stands in for the node's output.
    OnError,
    /// The `on_pause` handler of a `pause` node: it reads the resume token in
    /// [`TaskContext::token`] (to send an approval link, say).
    OnPause,
    /// The `payload` handler of a `subflow` node: its output is the child run's payload.
    Payload,
    /// A workflow hook (`on_success`, `on_failure`), run before the run's end is recorded.
    Hook,
}

impl TaskKind {
    /// The kind as the executor protocol writes it (`"step"`, `"on_error"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Step => "step",
            TaskKind::Action => "action",
            TaskKind::Condition => "condition",
            TaskKind::Poll => "poll",
            TaskKind::Items => "items",
            TaskKind::OnError => "on_error",
            TaskKind::OnPause => "on_pause",
            TaskKind::Payload => "payload",
            TaskKind::Hook => "hook",
        }
    }
}

/// One unit of work handed to an [`Executor`](crate::Executor): a handler call.
#[derive(Debug, Clone)]
pub struct Task {
    /// The run it belongs to.
    pub run_id: RunId,
    /// The workflow's id.
    pub workflow_id: Arc<str>,
    /// The author's version label of the workflow, if any.
    pub workflow_version: Option<Arc<str>>,
    /// The store's revision number of the definition the run executes.
    pub revision: u32,
    /// The node that issued the task.
    pub node_id: Arc<str>,
    /// The task within the run (the node id, or `if_id#branch` for a condition).
    pub key: TaskKey,
    /// What the task is for.
    pub kind: TaskKind,
    /// The handler to call.
    pub handler: Arc<str>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// `{run_id}/{task key}`: the same for every attempt, so handlers can make side effects
    /// idempotent.
    pub idempotency_key: String,
    /// The attempt's timeout, if any; the engine enforces it.
    pub timeout: Option<Duration>,
    /// When the attempt times out, if it has a timeout.
    pub deadline: Option<DateTime<Utc>>,
    /// Data the handler reads.
    pub context: TaskContext,
}

impl Task {
    /// Attempt 1 of a step task calling `handler` of workflow `workflow_id`, in a fresh run id
    /// with an empty context: what calling one handler directly needs (an executor's tests or
    /// benchmarks, a polling handler). Set the other fields as the case needs.
    ///
    /// ```
    /// use cronflow_core::{Json, Task, TaskKind};
    ///
    /// let mut task = Task::new("orders", "charge");
    /// task.context.payload = Json::from(serde_json::json!({"order": 42}));
    /// assert_eq!((task.kind, task.attempt, &*task.node_id), (TaskKind::Step, 1, "charge"));
    /// assert_eq!(task.idempotency_key, format!("{}/charge", task.run_id));
    /// ```
    pub fn new(workflow_id: &str, handler: &str) -> Task {
        let run_id = RunId::new();
        Task {
            run_id,
            workflow_id: Arc::from(workflow_id),
            workflow_version: None,
            revision: 1,
            node_id: Arc::from(handler),
            key: TaskKey::new(handler),
            kind: TaskKind::Step,
            handler: Arc::from(handler),
            attempt: 1,
            idempotency_key: format!("{run_id}/{handler}"),
            timeout: None,
            deadline: None,
            context: TaskContext::default(),
        }
    }
}

/// What a handler can read: the trigger payload, earlier outputs and the previous output.
#[derive(Debug, Clone, Default)]
pub struct TaskContext {
    /// The trigger payload.
    pub payload: Json,
    /// Outputs of the steps completed so far, by node id.
    pub steps: Arc<BTreeMap<String, Json>>,
    /// Output of the node that ran just before, or `null`.
    pub last: Json,
    /// What the trigger source recorded of the delivery that started the run (a webhook's
    /// headers and raw body, ...; see [`TriggerOptions::context`](crate::TriggerOptions)),
    /// or `null`.
    pub trigger: Json,
    /// Inside a `for_each` body, the current item; inside a `batch` body, the current chunk
    /// (a JSON array). `None` outside loops.
    pub item: Option<Json>,
    /// Inside a loop body (`for_each`, `batch`, `while`), the iteration's index from 0.
    pub index: Option<u32>,
    /// For an `on_pause` handler ([`TaskKind::OnPause`]), the token that resumes the pause.
    pub token: Option<Arc<str>>,
    /// For an `on_error` handler or an `on_failure` hook, the error that ended the attempts.
    pub error: Option<TaskError>,
    /// The workflow's durable state (see [`TaskContext::state`]), set by the engine on every
    /// task it hands to an executor; `None` in a context built by hand.
    pub state: Option<StateHandle>,
}

impl TaskContext {
    /// Deserialises the payload.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        // A payload of the wrong shape stays wrong on every retry.
        self.payload
            .parse()
            .map_err(|e| TaskError::new("PayloadError", e.to_string()).non_retryable())
    }

    /// Deserialises the output of step `id`.
    pub fn step<T: DeserializeOwned>(&self, id: &str) -> Result<T, TaskError> {
        let out = self.steps.get(id).ok_or_else(|| {
            TaskError::new("MissingStepOutput", format!("no output of step `{id}` yet"))
                .non_retryable()
        })?;
        out.parse().map_err(|e| {
            TaskError::new("StepOutputError", format!("step `{id}`: {e}")).non_retryable()
        })
    }

    /// The workflow's durable key-value state (namespace `workflow:<id>`); its
    /// [`global`](StateHandle::global) is shared by every workflow. Fails with a
    /// non-retryable `NoState` error when the context has none (built by hand, not by the
    /// engine).
    ///
    /// ```
    /// # use cronflow_core::{InProcessExecutor, TaskError};
    /// let executor = InProcessExecutor::new().handler("count", |task| async move {
    ///     let state = task.context.state()?;
    ///     let seen = state.incr("seen", 1).await.map_err(|e| e.into_task_error())?;
    ///     Ok::<_, TaskError>(seen)
    /// });
    /// # let _ = executor;
    /// ```
    pub fn state(&self) -> Result<&StateHandle, TaskError> {
        self.state.as_ref().ok_or_else(|| {
            TaskError::new(
                "NoState",
                "this task context has no workflow state (it was not built by the engine)",
            )
            .non_retryable()
        })
    }

    /// The global state, shared by every workflow (namespace `global`); fails like
    /// [`TaskContext::state`].
    pub fn global_state(&self) -> Result<StateHandle, TaskError> {
        self.state().map(StateHandle::global)
    }

    /// Deserialises the previous node's output.
    pub fn last<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        self.last
            .parse()
            .map_err(|e| TaskError::new("StepOutputError", e.to_string()).non_retryable())
    }
}

/// A failed task attempt, as recorded in the history: `{name, message, stack, code}`.
///
/// The `name` is what [`RetryPolicy::retry_on`](crate::RetryPolicy::retry_on) matches.
/// Any `std::error::Error` converts into one (like `anyhow`), so handlers can use `?`.
///
/// ```
/// use cronflow_core::TaskError;
/// let e = TaskError::new("PaymentDeclined", "card expired").non_retryable();
/// assert_eq!(e.to_string(), "PaymentDeclined: card expired");
/// assert!(!e.retryable);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    /// Error class, e.g. `TypeError`, `TimeoutError`.
    pub name: String,
    /// Human-readable message.
    pub message: String,
    /// Stack trace, if the executor has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// Machine-readable code, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When false the engine does not retry, whatever the policy says.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub retryable: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Name of the error recorded when an attempt exceeds its timeout.
pub const TIMEOUT_ERROR: &str = "TimeoutError";

impl TaskError {
    /// An error with a name and a message.
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            message: message.into(),
            stack: None,
            code: None,
            retryable: true,
        }
    }

    /// An error named `Error`.
    pub fn msg(message: impl Into<String>) -> Self {
        Self::new("Error", message)
    }

    /// The error recorded when an attempt exceeds `timeout`.
    pub fn timeout(timeout: Duration) -> Self {
        Self::new(TIMEOUT_ERROR, format!("attempt exceeded its timeout of {timeout:?}"))
    }

    /// Marks the error as not worth retrying.
    pub fn non_retryable(mut self) -> Self {
        self.retryable = false;
        self
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

impl<E: std::error::Error> From<E> for TaskError {
    fn from(e: E) -> Self {
        Self::msg(e.to_string())
    }
}
