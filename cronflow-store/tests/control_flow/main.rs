//! Every control-flow node of the engine, end to end: a real engine with Rust handlers
//! (`InProcessExecutor`) on a real SQLite file and on PostgreSQL (when
//! `CRONFLOW_TEST_DATABASE_URL` is set, e.g. `postgres://postgres@127.0.0.1:5432/test`; each
//! test in a schema of its own, with the store's leases as in production).
//!
//! One file per concept; `restart_*.rs` stop the engine in the middle of a wait or of work
//! and start a new one on the same database. Every wait is bounded by [`harness::LIMIT`], so
//! a bug fails a test instead of hanging it; sleeps are tens to hundreds of milliseconds.

mod harness;

mod combined;
mod events;
mod flow;
mod loops;
mod nodes;
mod pause;
mod race;
mod restart_waits;
mod restart_work;
mod sleep;
mod subflow;
