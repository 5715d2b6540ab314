//! The cronflow [`Store`](cronflow_core::Store) implemented with sea-orm over SQLite: the
//! embedded default, in a file or in memory.
//!
//! ```no_run
//! use cronflow_core::{RunQuery, Store};
//! use cronflow_store::SqliteStore;
//!
//! # async fn example() -> Result<(), cronflow_core::StoreError> {
//! let store = SqliteStore::open("cronflow.db").await?; // created and migrated if new
//! let recent = store.list_runs(&RunQuery::default()).await?;
//! println!("{} recent runs", recent.len());
//!
//! let scratch = SqliteStore::open_in_memory().await?; // for tests: one connection, shared by clones
//! # let _ = scratch;
//! # Ok(())
//! # }
//! ```
//!
//! # Opening a file
//!
//! [`SqliteStore::open`] creates the file when it is missing, turns on WAL
//! (`journal_mode=WAL`, `synchronous=NORMAL`, a busy timeout; see [`SqliteOptions`]) and
//! applies the schema migrations it lacks. It refuses with
//! [`StoreError::Incompatible`](cronflow_core::StoreError::Incompatible), naming the file and
//! **without changing a byte of it**:
//!
//! - a file that is not a SQLite database ("file is not a database");
//! - a SQLite database that has tables but no `cronflow_meta` table: someone else's database;
//! - a cronflow store whose schema version is newer than this code knows.
//!
//! A missing file, a zero-length file and a SQLite database without tables are initialised.
//! To tell these apart without modifying anything, an existing file is first checked for the
//! SQLite header and then opened read-only; only then is it opened for writing (switching to
//! WAL rewrites the header, so that must not happen to a file that is not ours).
//!
//! # Migrations
//!
//! In-house and tiny: `cronflow_meta(key, value)` holds `schema_version`, the number of
//! migrations applied; the missing ones are applied in order in one `IMMEDIATE` transaction,
//! so a failed migration leaves the schema as it was.
//!
//! # Schema (version 1)
//!
//! ```sql
//! workflows  (id TEXT, revision INTEGER, version TEXT NULL, definition TEXT, created_at BIGINT,
//!             PRIMARY KEY (id, revision))
//! runs       (id TEXT PRIMARY KEY, workflow_id TEXT, revision INTEGER, status TEXT,
//!             payload TEXT, output TEXT NULL, failure TEXT NULL, created_at BIGINT,
//!             finished_at BIGINT NULL)
//!            -- indexes (status, created_at), (workflow_id, created_at), (created_at)
//! run_events (run_id TEXT, seq INTEGER, at BIGINT, kind TEXT, task TEXT NULL,
//!             attempt INTEGER NULL, data TEXT)
//!            -- UNIQUE INDEX (run_id, seq)
//! ```
//!
//! `run_events` is a plain (rowid) table with a unique index rather than a `WITHOUT ROWID`
//! table clustered on `(run_id, seq)`: a group commit appends a few events to each of many
//! runs in flight, and clustering made each commit rewrite one large leaf page per run
//! (measured: 2.8 times the bytes written per commit).
//!
//! - Run ids are stored as their hyphenated lower-case text.
//! - Times are integer microseconds since the Unix epoch: a time with sub-microsecond digits
//!   comes back truncated to the microsecond (the engine only produces whole microseconds).
//! - `definition` is the serde JSON of the `WorkflowDef`; `payload` and `output` are the raw
//!   text of the [`Json`](cronflow_core::Json) documents, stored and read back byte for byte;
//!   `failure` is the serde JSON of the `RunFailure`.
//! - `data` is the serde JSON of the `RunEvent` (with its `kind` tag); `kind`, `task` and
//!   `attempt` repeat parts of it as columns for queries.
//! - A run's `run_started` event (seq 0) is not a `run_events` row: the run row stands for
//!   it (its time is `created_at`), and reads put it back at the head of the history. Accepting
//!   a run is then one statement, which matters for trigger latency.
//!
//! # Guarantees
//!
//! - [`Store::commit`](cronflow_core::Store::commit) writes a batch in one transaction with
//!   multi-row statements (new runs, events, and one
//!   `WITH v (...) AS (VALUES ...) UPDATE runs ... FROM v` for the finished runs; at most 128
//!   rows per statement), never a statement per event. A batch of a single statement, such
//!   as one step's event, runs without `BEGIN`/`COMMIT`: one statement is atomic on its own,
//!   and each round trip to the database thread costs about 70 µs. A duplicate `(run_id, seq)` or run id
//!   fails the whole batch with [`StoreError::Conflict`](cronflow_core::StoreError::Conflict)
//!   and stores nothing. (Like `MemoryStore`, finishing a run that is not stored is not an
//!   error; unlike it, gaps in a run's `seq` are not checked.)
//!   With WAL and `synchronous=NORMAL` a committed batch survives a crash of the process;
//!   [`SqliteOptions::synchronous_full`] extends that to power loss.
//! - [`Store::active_runs`](cronflow_core::Store::active_runs) reads all running runs and
//!   their histories in one snapshot with two queries.
//! - Stored data that does not decode is reported as
//!   [`StoreError::Corrupt`](cronflow_core::StoreError::Corrupt) naming the run (and event
//!   `seq`); nothing panics on bad data.
//!
//! The SQL of each concern lives in its own module (schema, commit, queries, workflows) and
//! sticks to portable SQL where that costs nothing, for the PostgreSQL backend to come.

mod codec;
mod commit;
mod error;
mod probe;
mod read;
mod schema;
mod sql;
mod sqlite;
mod workflows;

pub use sqlite::{SqliteOptions, SqliteStore};

/// The README's examples, compiled as doc tests so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
