//! An [`Executor`](cronflow_core::Executor) that runs JavaScript step handlers in a pool of
//! Node.js worker processes, and the JavaScript SDK that builds workflow definitions.
//!
//! Not built yet: this crate holds its place in the workspace so the crate map of
//! `ARCHITECTURE.md` is complete. Until it lands, handlers run in-process
//! ([`InProcessExecutor`](cronflow_core::InProcessExecutor)).
