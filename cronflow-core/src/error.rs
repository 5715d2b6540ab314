//! Every error type of `cronflow-core`, in one place.

use std::fmt;

use crate::id::RunId;

/// One problem found in a workflow definition, with the JSON path where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WdoProblem {
    /// JSON path, such as `$.nodes[2].retry.delay`.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for WdoProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A workflow definition that cannot be used: every problem found, each with its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct WdoError {
    /// The problems, in document order.
    pub problems: Vec<WdoProblem>,
}

impl WdoError {
    /// An error with a single problem.
    pub fn single(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { problems: vec![WdoProblem { path: path.into(), message: message.into() }] }
    }
}

impl fmt::Display for WdoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "invalid workflow definition ({n} problem{})", if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("cannot open the store at {location}: {message}")]
    Open {
        /// File path or URL (without password).
        location: String,
        /// Why.
        message: String,
    },
    /// The file or database is not a cronflow store (or is corrupt); nothing was changed.
    #[error("{location} is not a usable cronflow store: {message}")]
    Incompatible {
        /// File path or URL.
        location: String,
        /// Why.
        message: String,
    },
    /// A write would record something a second time (duplicate event sequence number).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The batch touches runs that the committing instance no longer holds (their lease
    /// expired and another instance claimed them, or the fence is older than the current
    /// claim). Nothing was stored; the instance must stop executing these runs.
    #[error("lease lost on {} run(s): {}", runs.len(), runs.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "))]
    LeaseLost {
        /// The runs no longer held.
        runs: Vec<RunId>,
    },
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(String),
    /// [`Store::state_incr`](crate::Store::state_incr) found a live value that is not an
    /// integer (a JSON number without fraction or exponent that fits an `i64`). Nothing was
    /// changed.
    #[error(
        "state key `{key}` in namespace `{namespace}` holds a value that is not an integer; incr needs an integer"
    )]
    NotAnInteger {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// [`Store::state_incr`](crate::Store::state_incr) would take the value outside the range
    /// of an `i64`. Nothing was changed.
    #[error(
        "incrementing state key `{key}` in namespace `{namespace}` by {by} overflows a 64-bit integer"
    )]
    IncrOverflow {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
        /// The increment.
        by: i64,
    },
}

/// A [`StateHandle`](crate::StateHandle) operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The key is empty, longer than [`MAX_STATE_KEY_BYTES`](crate::MAX_STATE_KEY_BYTES) or
    /// holds a NUL character.
    #[error("invalid state key: {reason}")]
    InvalidKey {
        /// What is wrong with it.
        reason: String,
    },
    /// The TTL is zero or too large to be a point in time.
    #[error("invalid state TTL: {reason}")]
    InvalidTtl {
        /// What is wrong with it.
        reason: String,
    },
    /// The value's JSON text is larger than the limit (the engine's
    /// [`max_payload_bytes`](crate::EngineBuilder::max_payload_bytes)).
    #[error("state value for key `{key}` is {size} bytes, over the limit of {limit} bytes")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// Size of the value's JSON text.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A value could not be serialised to JSON, or a stored value could not be deserialised
    /// into the type asked for.
    #[error("state value for key `{key}`: {source}")]
    Value {
        /// The key.
        key: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// `incr` on a live value that is not an integer; nothing was changed.
    #[error(
        "state key `{key}` in namespace `{namespace}` holds a value that is not an integer; incr needs an integer"
    )]
    NotAnInteger {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
    },
    /// `incr` would overflow an `i64`; nothing was changed.
    #[error(
        "incrementing state key `{key}` in namespace `{namespace}` by {by} overflows a 64-bit integer"
    )]
    Overflow {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
        /// The increment.
        by: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl StateError {
    /// A stable name for the error, as the executor protocol reports it to handlers
    /// (`InvalidStateKey`, `InvalidStateTtl`, `StateValueTooLarge`, `InvalidStateValue`,
    /// `NotAnInteger`, `IncrOverflow`, `StoreError`).
    pub fn name(&self) -> &'static str {
        match self {
            StateError::InvalidKey { .. } => "InvalidStateKey",
            StateError::InvalidTtl { .. } => "InvalidStateTtl",
            StateError::ValueTooLarge { .. } => "StateValueTooLarge",
            StateError::Value { .. } => "InvalidStateValue",
            StateError::NotAnInteger { .. } => "NotAnInteger",
            StateError::Overflow { .. } => "IncrOverflow",
            StateError::Store(_) => "StoreError",
        }
    }

    /// Whether trying again may succeed: only a store failure may be transient; bad input
    /// stays bad.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StateError::Store(_))
    }

    /// The error as a handler's [`TaskError`](crate::TaskError): named by
    /// [`StateError::name`], retryable only if [`StateError::is_retryable`]. (The `?`
    /// operator converts any error into a retryable `TaskError` named `Error`; use this
    /// with `map_err` to keep the name.)
    pub fn into_task_error(self) -> crate::task::TaskError {
        let error = crate::task::TaskError::new(self.name(), self.to_string());
        if self.is_retryable() { error } else { error.non_retryable() }
    }
}

impl From<StoreError> for StateError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotAnInteger { namespace, key } => {
                StateError::NotAnInteger { namespace, key }
            }
            StoreError::IncrOverflow { namespace, key, by } => {
                StateError::Overflow { namespace, key, by }
            }
            other => StateError::Store(other),
        }
    }
}

/// An engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No workflow with this id is registered.
    #[error("unknown workflow `{0}`")]
    UnknownWorkflow(String),
    /// No run with this id exists.
    #[error("unknown run {0}")]
    UnknownRun(RunId),
    /// A handler called outside a run ([`EngineHandle::run_handler`](crate::EngineHandle::run_handler)) failed.
    #[error("handler failed: {0}")]
    Handler(crate::task::TaskError),
    /// A workflow failed a check added with
    /// [`EngineBuilder::validator`](crate::EngineBuilder::validator).
    #[error("workflow `{workflow}` is rejected: {reason}")]
    Rejected {
        /// The workflow.
        workflow: String,
        /// What the check said.
        reason: String,
    },
    /// A trigger key is empty or too long.
    #[error("invalid trigger key: {reason}")]
    InvalidTriggerKey {
        /// What is wrong with it.
        reason: String,
    },
    /// The payload is larger than [`EngineBuilder::max_payload_bytes`](crate::EngineBuilder::max_payload_bytes).
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// Size of the rejected payload.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The payload is not valid JSON or could not be serialised.
    #[error("payload is not valid JSON: {0}")]
    InvalidPayload(#[from] serde_json::Error),
    /// A definition is invalid.
    #[error(transparent)]
    InvalidDefinition(#[from] WdoError),
    /// A definition names a handler the executor does not have.
    #[error("workflow `{workflow}`: no executor handles `{handler}` (at {path})")]
    MissingHandler {
        /// The workflow.
        workflow: String,
        /// The handler name.
        handler: String,
        /// JSON path of the node naming it.
        path: String,
    },
    /// The run is unfinished in the store but this engine is not executing it (it could not
    /// be resumed at start: its definition is missing or its history does not replay; the
    /// engine logged why).
    #[error("run {0} is unfinished but not active in this engine (it could not be resumed)")]
    RunNotActive(RunId),
    /// The run cannot be cancelled because it has already finished.
    #[error("run {0} has already finished")]
    RunFinished(RunId),
    /// No open pause has this resume token: it was never issued, or its pause was resumed
    /// already, timed out, or its run has ended.
    #[error("no open pause has this resume token (already resumed, timed out or unknown)")]
    UnknownResumeToken,
    /// Run `run` has no open pause at node `node`.
    #[error("run {run} has no open pause at `{node}`")]
    NoOpenPause {
        /// The run.
        run: RunId,
        /// The pause's key (node id, with its loop iteration).
        node: String,
    },
    /// The engine is shutting down or has stopped and accepts no new work.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
