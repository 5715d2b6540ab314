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
//! # The Rust side: [`NodeExecutor`] (first cut)
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
//! What exists:
//!
//! - **Start-up** ([`NodeExecutorBuilder::spawn`]): per worker, a Unix socket in a private
//!   temporary directory, then `node <js>/src/worker.js` (`js/` of this crate unless
//!   [`NodeExecutorBuilder::runtime`] says otherwise) with `CRONFLOW_MODULE`,
//!   `CRONFLOW_SOCKET` and `CRONFLOW_MAX_FRAME`, `kill_on_drop` and its own process group.
//!   The worker must connect and send `ready` within the start-up timeout (10 s by default);
//!   its WDOs are read with `WorkflowDef::from_value` and returned. A `load_error` becomes
//!   [`NodeExecutorError::ModuleLoad`] naming the module and the JavaScript error.
//! - **Logs**: each worker's stdout (info) and stderr (warn) go to `tracing` line by line
//!   with `worker` and `pid` fields; `ctx.log.*` messages arrive over the socket and are
//!   logged at their level with `run`, `node` and `fields`. User output never touches the
//!   protocol channel.
//! - **Tasks** ([`Executor::execute`](cronflow_core::Executor::execute)): round-robin over
//!   live workers, many tasks in flight per worker, keyed by request id. The `task` line is
//!   built by concatenating the raw text of payload, step outputs and last output (no
//!   re-serialisation); outputs are read once into a [`Json`](cronflow_core::Json).
//!   Framing is NDJSON with a size cap on both sides and linear-time buffering. A task line
//!   over the cap fails as `PayloadTooLarge` (not retryable). JavaScript errors map to
//!   [`TaskError`](cronflow_core::TaskError) `{name, message, stack, code, retryable}`.
//! - **Cancellation**: dropping the `execute` future (the engine's timeout or cancel) forgets
//!   the request and sends `{"type":"cancel","id":N}`, which aborts `ctx.signal`.
//! - **Crashes**: when a worker process exits or its connection closes, its in-flight tasks
//!   fail with the retryable error [`WORKER_CRASHED`], and a fresh worker is started in its
//!   slot in the background (backoff from 50 ms to 5 s between failed starts); new tasks go
//!   to live workers (waiting up to the start-up timeout when none is live).
//! - **Handlers**: [`has_handler`](cronflow_core::Executor::has_handler) answers from the
//!   handler names referenced by the module's WDOs (steps, actions, conditions, items,
//!   `on_pause`, subflow payloads).
//! - **Shutdown**: [`NodeExecutor::shutdown`] sends `shutdown`, waits up to the grace period
//!   for in-flight work, then kills. Dropping the last clone kills every worker.
//!
//! Not built yet: killing a worker stuck past a task's deadline (SIGTERM then SIGKILL; today
//! the engine's timeout only sends `cancel`, and a handler that ignores `ctx.signal` keeps
//! running in its worker), min/max pool sizing, per-worker in-flight limits, recycling after
//! N tasks or over a heap threshold, killing the whole process group (only the `node`
//! process itself is killed), and the benchmarks.

mod builder;
mod error;
mod executor;
mod framing;
mod pool;
mod process;
mod startup;
mod worker;

pub use builder::NodeExecutorBuilder;
pub use error::NodeExecutorError;
pub use executor::{NodeExecutor, PoolStats};
pub use framing::DEFAULT_MAX_FRAME_BYTES;
pub use worker::WORKER_CRASHED;
