//! The cronflow [`Store`](cronflow_core::Store) implemented with sea-orm over SQLite (the
//! embedded default, in a file or in memory) and over PostgreSQL (a database server, which
//! several engine instances may share).
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
//! # Backends and Cargo features
//!
//! | feature    | default | store            | database                            |
//! |------------|---------|------------------|-------------------------------------|
//! | `sqlite`   | on      | [`SqliteStore`]  | an embedded SQLite file, or memory  |
//! | `postgres` | off     | `PostgresStore`  | PostgreSQL (tested on 15)           |
//!
//! ```toml
//! # Both backends (choose one at run time):
//! cronflow-store = { version = "0.1", features = ["postgres"] }
//! # PostgreSQL only:
//! cronflow-store = { version = "0.1", default-features = false, features = ["postgres"] }
//! ```
//!
//! Both stores implement the same trait with the same semantics and guarantees, and the same
//! test suite runs on both. At least one of the features must be enabled.
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
//! # Connecting to PostgreSQL
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn example() -> Result<(), cronflow_core::StoreError> {
//! use cronflow_store::{PostgresOptions, PostgresStore};
//!
//! let store = PostgresStore::connect("postgres://cronflow:secret@db.internal/app").await?;
//!
//! // The tables in a schema of their own (it must exist), with a bigger pool:
//! let url = "postgres://cronflow:secret@db.internal/app?options=-c%20search_path%3Dcronflow";
//! let options = PostgresOptions::default().max_connections(16);
//! let dedicated = PostgresStore::connect_with(url, options).await?;
//! # let _ = (store, dedicated);
//! # Ok(())
//! # }
//! ```
//!
//! `PostgresStore::connect` takes a `postgres://` URL (the parameters sqlx accepts, such as
//! `sslmode` and `options`), connects, and applies the migrations the database lacks, in the
//! connection's current schema (the first existing schema of the `search_path`; `public` by
//! default). It fails with
//!
//! - [`StoreError::Open`](cronflow_core::StoreError::Open) when the database cannot be
//!   reached, does not answer within the connect timeout (10 s by default) or refuses the login;
//! - [`StoreError::Incompatible`](cronflow_core::StoreError::Incompatible), changing nothing,
//!   when the schema version is newer than this code knows, when the schema holds tables with
//!   cronflow's names but no `cronflow_meta` (another application's), or when no schema of the
//!   `search_path` exists.
//!
//! Either error names the URL **without its password**. Tables of other names in the schema
//! (the host application's) are left alone.
//!
//! # Migrations
//!
//! In-house and tiny: `cronflow_meta(key, value)` holds `schema_version`, the number of
//! migrations applied; the missing ones are applied in order in one transaction, so a failed
//! migration leaves the schema as it was. SQLite takes the write lock at once (`IMMEDIATE`);
//! PostgreSQL first takes a transaction-scoped advisory lock (`pg_advisory_xact_lock`) keyed
//! by the schema, so that engine instances starting at once migrate one after the other and
//! the later ones find the schema up to date. A version number means the same tables on both
//! backends.
//!
//! # Schema (version 4)
//!
//! ```sql
//! workflows  (id TEXT, revision INTEGER, version TEXT NULL, definition TEXT, created_at BIGINT,
//!             PRIMARY KEY (id, revision))
//! runs       (id TEXT PRIMARY KEY, workflow_id TEXT, revision INTEGER, status TEXT,
//!             payload TEXT, output TEXT NULL, failure TEXT NULL, created_at BIGINT,
//!             finished_at BIGINT NULL,
//!             owner TEXT NULL, lease_until BIGINT NULL, fence BIGINT DEFAULT 0) -- version 2
//!            -- indexes (status, created_at), (workflow_id, created_at), (created_at),
//!            --         (lease_until) WHERE status = 'running'
//! run_events (run_id TEXT, seq INTEGER, at BIGINT, kind TEXT, task TEXT NULL,
//!             attempt INTEGER NULL, data TEXT)
//!            -- UNIQUE INDEX (run_id, seq)
//! runs.context TEXT NULL                                                  -- version 3
//! trigger_keys (key TEXT PRIMARY KEY, run_id TEXT, created_at BIGINT)      -- version 3
//! schedules    (id TEXT PRIMARY KEY, next_slot BIGINT, updated_at BIGINT) -- version 3
//! cronflow_state (namespace TEXT, key TEXT, value TEXT, expires_at BIGINT NULL,
//!                 PRIMARY KEY (namespace, key))                            -- version 4
//!              -- index (expires_at) WHERE expires_at IS NOT NULL
//! ```
//!
//! `cronflow_state` holds workflow state ([`Store::state_get`](cronflow_core::Store::state_get)
//! and its siblings): a value is the JSON text as given; a row whose `expires_at` is at or
//! before the engine's `now` reads as absent and stays until it is overwritten, deleted or
//! purged ([`Store::state_purge_expired`](cronflow_core::Store::state_purge_expired)). An
//! increment is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING` statement on
//! both backends, atomic across instances; its `WHERE` refuses values that are not integers
//! and sums outside `i64`, changing nothing.
//!
//! A keyed trigger inserts its key with `ON CONFLICT DO NOTHING` in the transaction that
//! creates its run, then reads which run holds the key: a run whose key is held by another
//! run is left out of the batch. On PostgreSQL, a concurrent insert of the same key waits for
//! the first transaction and then finds its row, so one run is created across instances.
//!
//! `run_events` is a plain (rowid) table with a unique index rather than a `WITHOUT ROWID`
//! table clustered on `(run_id, seq)`: a group commit appends a few events to each of many
//! runs in flight, and clustering made each commit rewrite one large leaf page per run
//! (measured: 2.8 times the bytes written per commit).
//!
//! On PostgreSQL the tables and columns are the same, with PostgreSQL's types where natural:
//! run ids (`runs.id`, `run_events.run_id`) and instance ids (`runs.owner`) are `UUID` (16 bytes rather than 36 characters, in
//! the table and in its keys); the integers (`revision`, `seq`, `attempt`) are `BIGINT`;
//! `run_events` has `PRIMARY KEY (run_id, seq)` (a heap table with a separate B-tree index, so
//! nothing is clustered). JSON columns are `TEXT`, never `jsonb`, which would not keep the
//! documents byte for byte.
//!
//! - Run ids are stored as their hyphenated lower-case text (SQLite) or as `UUID`s.
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
//! On both backends:
//!
//! - [`Store::commit`](cronflow_core::Store::commit) writes a batch in one transaction with
//!   multi-row statements (new runs, events, and one
//!   `WITH v (...) AS (VALUES ...) UPDATE runs ... FROM v` for the finished runs; at most 128
//!   rows per statement), never a statement per event. A batch of a single statement, such
//!   as one step's event, runs without `BEGIN`/`COMMIT`: one statement is atomic on its own,
//!   and each round trip to the database costs about 70 µs (SQLite's thread) or more (a
//!   server). A duplicate `(run_id, seq)` or run id
//!   fails the whole batch with [`StoreError::Conflict`](cronflow_core::StoreError::Conflict)
//!   and stores nothing, whether the first copy came from this store or from another one on
//!   the same database. (Like `MemoryStore`, finishing a run that is not stored is not an
//!   error; unlike it, gaps in a run's `seq` are not checked.)
//! - [`Store::active_runs`](cronflow_core::Store::active_runs) reads all running runs and
//!   their histories in one snapshot with two queries (on PostgreSQL in a
//!   `REPEATABLE READ READ ONLY` transaction).
//! - Saving a workflow definition picks its revision under a lock (SQLite's write lock, a
//!   PostgreSQL advisory lock on the workflow id), so stores saving the same definition at
//!   once agree on its revision.
//! - Stored data that does not decode is reported as
//!   [`StoreError::Corrupt`](cronflow_core::StoreError::Corrupt) naming the run (and event
//!   `seq`); nothing panics on bad data.
//!
//! Durability: with WAL and `synchronous=NORMAL` a committed SQLite batch survives a crash of
//! the process; [`SqliteOptions::synchronous_full`] extends that to power loss. A committed
//! PostgreSQL batch is as durable as the server makes a commit: it survives a crash of the
//! engine, and of the server with `synchronous_commit = on` (PostgreSQL's default).
//!
//! # Several instances
//!
//! A `PostgresStore` is [shared](cronflow_core::Store::shared): several engine instances, in
//! one process or on many hosts, may use one database (one schema). A [`SqliteStore`] is not:
//! one SQLite file has one engine, which owns every run, and the lease methods keep the
//! trait's defaults.
//!
//! - **Leases.** A running run is held by one instance (`runs.owner`, an
//!   [`InstanceId`](cronflow_core::InstanceId)) until `runs.lease_until`.
//!   [`claim_runs`](cronflow_core::Store::claim_runs) takes, oldest first, up to `limit`
//!   running runs whose lease is unset (never claimed, created unowned, released) or past, in
//!   one transaction: one `UPDATE` of the rows picked with `FOR UPDATE SKIP LOCKED`, so that
//!   instances claiming at once take different runs without waiting for each other, then one
//!   query for their histories. [`renew_leases`](cronflow_core::Store::renew_leases) (the
//!   heartbeat) extends every running run the instance holds and returns them;
//!   [`release_runs`](cronflow_core::Store::release_runs) makes runs claimable at once. A
//!   commit with a [`Claim`](cronflow_core::Claim) creates its new runs held by the committer
//!   (fence 1, no extra statement); without one they are created unowned, claimable by any
//!   instance. Finishing a run ends its lease (`lease_until` becomes NULL); its `owner` stays,
//!   a record of the instance that finished it.
//! - **Fences.** Every claim bumps `runs.fence`. A commit with a claim first checks, in its
//!   transaction and with one statement for the whole batch
//!   (`SELECT ... WHERE id = ANY(...) ORDER BY id FOR UPDATE`), that the committer is the
//!   owner of every existing run the batch touches, with the fence given for it in
//!   [`CommitBatch::fences`](cronflow_core::CommitBatch::fences). Otherwise nothing is stored
//!   (not the batch's new runs, nor the other runs' events) and the commit fails with
//!   [`StoreError::LeaseLost`](cronflow_core::StoreError::LeaseLost) naming every lost run: a
//!   run another instance claimed, a run missing from the fences, or a run not stored. The
//!   checked rows stay locked until the commit ends, so no claim can slip in between the
//!   check and the writes. A lease that expired but that no other instance claimed still
//!   holds (nobody else has executed the run: a claim would have bumped the fence). Run rows
//!   are always locked in id order (by the check, the heartbeat and release), so these never
//!   deadlock with one another. A batch with a claim that touches existing runs costs
//!   `BEGIN`, the check and `COMMIT` on top of its writes; a commit without a claim checks
//!   nothing.
//! - **The database's clock.** `now` in every lease computation is the database server's
//!   `clock_timestamp()`, never the engine's clock: instances whose clocks disagree still
//!   agree on when a lease expires. Leases are times in microseconds since the epoch, like
//!   every other time column.
//!
//! The SQL of each concern lives in its own module (schema, commit, queries, workflows) and is
//! shared by both backends; what differs (placeholders, run id types, transaction modes) is
//! in one small `Dialect`. The lease SQL (its own module too) is PostgreSQL's alone, the only
//! shared store.

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!(
    "cronflow-store needs a backend: enable the `sqlite` feature (the default), `postgres`, or both"
);

mod codec;
mod commit;
mod dialect;
mod error;
mod lease;
mod migrations;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod probe;
mod read;
#[cfg(feature = "postgres")]
mod redact;
mod schedules;
mod schema;
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
mod state;
mod store_impl;
#[cfg(feature = "testing")]
pub mod testing;
mod workflows;

#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore};
