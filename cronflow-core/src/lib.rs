//! The core of cronflow, an embeddable durable workflow engine: workflow definitions, the
//! pure run state machine, and the [`Engine`] that drives it over a [`Store`] and an
//! [`Executor`].
//!
//! # Quick start
//!
//! Define a workflow, give the engine a store and an executor, trigger a run and wait for it.
//! [`MemoryStore`] keeps this example self-contained; a host uses `cronflow_store::SqliteStore`
//! (or any other [`Store`]) to make runs survive crashes.
//!
//! ```
//! use std::time::Duration;
//! use cronflow_core::{Engine, InProcessExecutor, MemoryStore, RetryPolicy, RunStatus, TaskError, Workflow};
//! use serde_json::{json, Value};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let flow = Workflow::new("greet")
//!     .retry(RetryPolicy::exponential(3, Duration::from_millis(10)))
//!     .step("lookup")
//!     .if_("vip-check", |b| b
//!         .when("is-vip", |s| s.step("red-carpet"))
//!         .otherwise(|s| s.step("wave")))
//!     .build()?;
//!
//! let executor = InProcessExecutor::new()
//!     .handler("lookup", |task| async move {
//!         let who: Value = task.context.payload()?;
//!         Ok::<_, TaskError>(json!({ "name": who["name"], "vip": who["name"] == "Ada" }))
//!     })
//!     .handler("is-vip", |task| async move {
//!         let user: Value = task.context.step("lookup")?;
//!         Ok::<_, TaskError>(user["vip"].clone())
//!     })
//!     .handler("red-carpet", |_| async { Ok::<_, TaskError>("welcome, Ada") })
//!     .handler("wave", |_| async { Ok::<_, TaskError>("hi") });
//!
//! let engine = Engine::builder()
//!     .store(MemoryStore::new())
//!     .executor(executor)
//!     .workflow(flow)
//!     .start()
//!     .await?;
//! let handle = engine.handle();
//! let run = handle.trigger("greet", json!({ "name": "Ada" })).await?;
//! let report = handle.wait(run).await?;
//! assert_eq!(report.status(), RunStatus::Completed);
//! assert_eq!(report.run.output.unwrap().as_str(), r#""welcome, Ada""#);
//! engine.shutdown(Duration::from_secs(5)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Concepts
//!
//! - **Workflow definitions** ([`WorkflowDef`], built with [`Workflow`] or read from JSON with
//!   [`WorkflowDef::from_json`]): the WDO, a tree of nodes (`step`, `action`, `if`,
//!   `parallel`, and the kinds later versions run: `race`, `for_each`, `batch`, `while`,
//!   `sleep`, `pause`, `wait_for_event`, `subflow`, `cancel`). Validation reports every
//!   problem with its JSON path ([`WdoError`]).
//! - **The run state machine** ([`RunMachine`]): pure and synchronous; events in,
//!   [`Command`]s out. A run's history ([`RunEvent`]s) is the audit trail, and replaying it
//!   rebuilds the run exactly.
//! - **The engine** ([`Engine`], [`EngineBuilder`], [`EngineHandle`]): one tokio task that owns
//!   the active runs, group-commits their events to the store, then dispatches tasks under a
//!   concurrency limit, enforces timeouts, schedules retries ([`RetryPolicy`]) and resumes
//!   unfinished runs at start.
//! - **Executors** ([`Executor`]): where handlers run. [`InProcessExecutor`] runs Rust
//!   closures, [`MockExecutor`] answers from a script and records calls for tests;
//!   `cronflow-executor-node` runs JavaScript handlers in Node.js workers.
//!   [`ExecutorRouter`] mixes them in one engine: each workflow's tasks go to the executor
//!   its id is routed to, the rest to a default.
//! - **Stores** ([`Store`]): where runs live. [`MemoryStore`] for tests;
//!   `cronflow-store` for SQLite.
//! - **Workflow state** ([`StateHandle`]): a durable key-value store per workflow
//!   (`workflow:<id>`) and a global one, with TTLs and atomic `incr`; handlers reach it
//!   through [`TaskContext::state`], hosts through [`EngineHandle::state`].
//!
//! # Guarantees
//!
//! - A run whose trigger returned its [`RunId`] is durable (on a durable store).
//! - Every state transition is recorded exactly once (the store rejects a duplicate event
//!   sequence number); a handler runs at least once, with an idempotency key
//!   (`{run_id}/{task}`) that is the same for every attempt.
//! - A late result of a timed-out, aborted or superseded attempt is discarded.

mod duration;
mod engine;
mod error;
mod event;
mod executor;
mod id;
mod json;
mod machine;
mod retry;
mod state;
mod store;
mod task;
mod wdo;

pub use duration::{DurationError, format_duration, parse_duration};
pub use engine::{
    Clock, Engine, EngineBuilder, EngineHandle, MAX_TRIGGER_KEY_BYTES, NoExecutor, NoStore,
    PausedRun, Published, SystemClock, TokioClock, TriggerOptions, Triggered,
};
pub use error::{EngineError, StateError, StoreError, WdoError, WdoProblem};
pub use event::{
    FailureKind, RecordedEvent, RunEvent, RunFailure, RunRecord, RunReport, RunStatus, Wait,
    WaitOutcome,
};
pub use executor::{
    Executor, ExecutorRouter, HandlerFuture, InProcessExecutor, MockCall, MockExecutor,
    unknown_handler,
};
pub use id::{InstanceId, RunId, TaskKey};
pub use json::Json;
pub use machine::{
    Command, MachineSnapshot, ReplayError, RunDefinition, RunMachine, TaskSnapshot, token_hash,
};
pub use retry::{Backoff, RetryPolicy};
pub use state::{
    DEFAULT_MAX_STATE_VALUE_BYTES, GLOBAL_STATE_NAMESPACE, MAX_STATE_KEY_BYTES, StateHandle,
    WORKFLOW_STATE_PREFIX,
};
pub use store::{
    Claim, ClaimedRun, CommitBatch, CommitOutcome, DuplicateRun, FinishedRun, MemoryStore, NewRun,
    RunQuery, Store, StoredRun,
};
pub use task::{TIMEOUT_ERROR, Task, TaskContext, TaskError, TaskKind};
pub use wdo::*;
