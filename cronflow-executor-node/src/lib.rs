//! An [`Executor`](cronflow_core::Executor) that runs JavaScript step handlers in a pool of
//! Node.js worker processes, and the JavaScript SDK that builds workflow definitions.
//!
//! # The JavaScript side (`js/`)
//!
//! The `cronflow` npm package (ESM, zero runtime dependencies): `cronflow.define(...)
//! .step(...).if(...)` builds a workflow whose `toWDO()` is exactly the JSON that
//! [`WorkflowDef::from_json`](cronflow_core::WorkflowDef::from_json) reads
//! (`tests/js_sdk.rs` runs the SDK's `node --test` suite and checks the round trip), and
//! `js/src/worker.js` is the worker runtime speaking the protocol of `js/PROTOCOL.md`.
//!
//! # The Rust side: [`NodeExecutor`]
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cronflow_core::{Engine, MemoryStore};
//! use cronflow_executor_node::NodeExecutor;
//!
//! let (executor, workflows) = NodeExecutor::builder()
//!     .module("workflows.mjs")
//!     .workers(2)
//!     .spawn()
//!     .await?;
//! let engine = Engine::builder()
//!     .store(MemoryStore::new())
//!     .executor(executor.clone())
//!     .workflows(workflows)
//!     .start()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! To run some workflows in Node and others with Rust closures in one engine, put the
//! executors behind a [`cronflow_core::ExecutorRouter`].
//!
//! - **Start-up** ([`NodeExecutorBuilder::spawn`]): per worker, a Unix socket in a private
//!   temporary directory, then `node <js>/src/worker.js` in a process group of its own. The
//!   worker must connect and send `ready` within the start-up timeout; its WDOs are read with
//!   `WorkflowDef::from_value` and returned. A module that fails to load is a
//!   [`NodeExecutorError::ModuleLoad`] naming the module and the JavaScript error.
//! - **Tasks** ([`Executor::execute`](cronflow_core::Executor::execute)): to the
//!   least-loaded worker below its in-flight limit, many at once per worker, keyed by request
//!   id. The `task` line embeds payload and outputs as their raw JSON text; NDJSON framing
//!   with a size cap on both sides and linear-time buffering. JavaScript errors become
//!   [`TaskError`](cronflow_core::TaskError)s `{name, message, stack, code, retryable}`.
//! - **Pool** ([`NodeExecutorBuilder`]): between `min_workers` and `max_workers` workers;
//!   grows when every worker is at its in-flight limit, retires workers idle above the
//!   minimum, recycles a worker after N tasks or over a heap ceiling (it finishes its tasks
//!   while a fresh one takes over), restarts crashed workers with a backoff when starts keep
//!   failing. [`NodeExecutor::stats`] counts all of it.
//! - **Timeouts and cancellation**: the engine drops the `execute` future; the pool sends
//!   `cancel` (aborting `ctx.signal`). A handler still running after the cancel grace marks
//!   its worker stuck: out of rotation, a replacement starts, and its process group gets
//!   SIGTERM, then SIGKILL after the kill grace. If the worker did not even acknowledge the
//!   `cancel` (a synchronous loop blocks it), it is stopped at once and the other tasks queued
//!   on it are sent to another worker (up to three times; the engine sees a slower task, not
//!   a failed attempt).
//! - **Crashes**: a worker that exits (killed, `process.exit`, unhandled rejection, out of
//!   memory under [`max_old_space_mb`](NodeExecutorBuilder::max_old_space_mb)) fails its
//!   in-flight tasks with the retryable [`WORKER_CRASHED`]; the engine retries them on
//!   another worker.
//! - **No orphans**: dropping the last clone kills every worker's process group;
//!   [`NodeExecutor::shutdown`] lets in-flight work finish up to a grace period first. A
//!   worker whose host vanished (even by `kill -9`) kills its own group: on its socket
//!   closing, and from a watchdog thread that notices it was re-parented, even while a
//!   handler blocks the event loop.
//! - **Logs**: `ctx.log.*` and `console.*` inside a handler become `tracing` events with
//!   `run`, `node` and `fields`; other worker output goes to `tracing` line by line with
//!   `worker`, `pid` and `stream`. User output never touches the protocol channel.
//! - **Workflow state**: `ctx.state.get/set/incr/delete` (and `ctx.state.global.*`) in a
//!   handler send `state` requests over the worker's socket; the pool serves them with the
//!   task's [`StateHandle`](cronflow_core::StateHandle) (the engine sets it on every task)
//!   and answers `state_result`. Only a task in flight may use it.
//! - **Handlers**: [`has_handler`](cronflow_core::Executor::has_handler) answers from the
//!   handler names referenced by the module's WDOs.

mod builder;
mod error;
mod executor;
mod framing;
mod pool;
mod process;
mod startup;
mod state;
mod worker;

pub use builder::NodeExecutorBuilder;
pub use error::NodeExecutorError;
pub use executor::{NodeExecutor, PoolStats};
pub use framing::DEFAULT_MAX_FRAME_BYTES;
pub use worker::WORKER_CRASHED;
