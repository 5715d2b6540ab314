//! cronflow-core (crate docs to be written).

mod duration;
mod engine;
mod error;
mod event;
mod executor;
mod id;
mod json;
mod machine;
mod retry;
mod store;
mod task;
mod wdo;

pub use duration::{format_duration, parse_duration};
pub use engine::{
    Clock, Engine, EngineBuilder, EngineHandle, ManualClock, NoExecutor, NoStore, SystemClock,
};
pub use error::{EngineError, StoreError, WdoError, WdoProblem};
pub use event::{
    FailureKind, RecordedEvent, RunEvent, RunFailure, RunRecord, RunReport, RunStatus,
};
pub use executor::{
    Executor, HandlerFuture, InProcessExecutor, MockCall, MockExecutor, unknown_handler,
};
pub use id::{RunId, TaskKey};
pub use json::Json;
pub use machine::{Command, MachineSnapshot, ReplayError, RunDefinition, RunMachine};
pub use retry::{Backoff, RetryPolicy};
pub use store::{CommitBatch, FinishedRun, MemoryStore, NewRun, RunQuery, Store, StoredRun};
pub use task::{TIMEOUT_ERROR, Task, TaskContext, TaskError, TaskKind};
pub use wdo::*;
