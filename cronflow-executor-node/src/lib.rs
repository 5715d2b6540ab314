//! An [`Executor`](cronflow_core::Executor) that runs JavaScript step handlers in a pool of
//! Node.js worker processes, and the JavaScript SDK that builds workflow definitions.
//!
//! Built so far: the SDK's definition side, in `js/` (the `cronflow` npm package: ESM, zero
//! runtime dependencies). `cronflow.define(...).step(...).if(...)` builds a workflow whose
//! `toWDO()` is exactly the JSON that [`WorkflowDef::from_json`](cronflow_core::WorkflowDef::from_json)
//! reads; `tests/js_sdk.rs` runs the SDK's `node --test` suite and checks that every WDO it
//! emits round-trips through the Rust model.
//!
//! Not built yet: the worker runtime and the Rust process pool (the `Executor` itself). Until
//! then, handlers run in-process ([`InProcessExecutor`](cronflow_core::InProcessExecutor)).
